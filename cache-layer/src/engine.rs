//! The cache's shared state and decisions: lookup, store, refresh, invalidation.
//!
//! Both the generic service and the HTTP mode drive this engine; it knows nothing of
//! requests, only keys and values.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use reliability_core::clock::{Instant, SharedClock};
use tower::BoxError;

use crate::adaptive::{AdaptiveRule, AdaptiveTtl};
use crate::backend::Invalidation;
use crate::backend::memory::{Entry, MemoryBounds, MemoryTier, nanos};
use crate::config::CacheConfig;
use crate::freshness::{Freshness, Phase, StaleWindows, jittered_ttl};
use crate::metrics::{Metrics, bump};
use crate::singleflight::{Flights, Join, LeaderGuard};
use crate::status::CacheStatus;
use crate::validation::Limits;

pub(crate) type ValueFn<V, T> = Arc<dyn Fn(&V) -> T + Send + Sync>;
pub(crate) type SameFn<V> = Arc<dyn Fn(&V, &V) -> bool + Send + Sync>;
pub(crate) type DirectiveFn<V> = Arc<dyn Fn(&V, Directive) -> Directive + Send + Sync>;

/// What to do with an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAction {
    /// Store it, and share it with the callers that joined the call.
    Store,
    /// Do not store it; still share it with joined callers.
    Skip,
    /// Do not store it and do not share it: each joined caller makes its own call
    /// (a private or `no-store` HTTP response).
    Private,
    /// It is a failure in disguise (an HTTP 5xx): stale-if-error applies; not stored.
    Failure,
}

/// The storage decision for one upstream answer: the cache's defaults, which an
/// integration (HTTP `Cache-Control`) may override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// What to do.
    pub action: StoreAction,
    /// A TTL for this answer (HTTP `max-age`); `None` uses the cache's (adaptive) TTL.
    pub ttl: Option<Duration>,
    /// Stale windows for this answer; `None` uses the cache's.
    pub windows: Option<StaleWindows>,
    /// Whether it is a negative answer ("not found"), stored under the negative TTL.
    pub negative: bool,
    /// Whether shared tiers (Redis, disk) may hold it.
    pub shared: bool,
    /// Tags for invalidation.
    pub tags: Vec<String>,
}

/// Settings the engine runs with.
pub(crate) struct Settings<V> {
    pub(crate) name: String,
    pub(crate) ttl: Duration,
    pub(crate) windows: StaleWindows,
    pub(crate) jitter: f64,
    pub(crate) xfetch_beta: f64,
    pub(crate) adaptive: Option<AdaptiveTtl>,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) limits: Limits,
    pub(crate) write_through: bool,
    pub(crate) value_size: ValueFn<V, usize>,
    pub(crate) hooks: Hooks<V>,
}

/// The closures a builder may set; all optional.
pub(crate) struct Hooks<V> {
    pub(crate) value_size: Option<ValueFn<V, usize>>,
    pub(crate) is_negative: Option<ValueFn<V, bool>>,
    pub(crate) is_failure: Option<ValueFn<V, bool>>,
    pub(crate) store_if: Option<ValueFn<V, bool>>,
    pub(crate) tags: Option<ValueFn<V, Vec<String>>>,
    pub(crate) same_value: Option<SameFn<V>>,
    pub(crate) directive: Option<DirectiveFn<V>>,
    pub(crate) annotate: Option<fn(&mut V, &CacheStatus, &str)>,
}

impl<V> Default for Hooks<V> {
    fn default() -> Self {
        Self {
            value_size: None,
            is_negative: None,
            is_failure: None,
            store_if: None,
            tags: None,
            same_value: None,
            directive: None,
            annotate: None,
        }
    }
}

impl<V> Settings<V> {
    pub(crate) fn new(c: &CacheConfig, mut hooks: Hooks<V>) -> Self {
        Self {
            name: c.name.clone(),
            ttl: c.ttl,
            windows: StaleWindows {
                stale_while_revalidate: c.stale_while_revalidate,
                stale_if_error: c.effective_stale_if_error(),
                max_staleness: c.max_staleness,
            },
            jitter: c.ttl_jitter,
            xfetch_beta: c.xfetch_beta,
            adaptive: c.adaptive.map(|a| AdaptiveTtl::new(a.rule, a.min, a.max)),
            negative_ttl: c.negative_ttl,
            limits: Limits::of(c.validation),
            write_through: c.write_policy == crate::config::WritePolicy::WriteThrough,
            value_size: hooks
                .value_size
                .take()
                .unwrap_or_else(|| Arc::new(|_| std::mem::size_of::<V>())),
            hooks,
        }
    }
}

/// Why an upstream call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A caller is waiting for it.
    Request,
    /// A background refresh (stale-while-revalidate or XFetch).
    Refresh,
    /// An explicit write.
    Write,
}

/// The answer of an L1 lookup.
pub(crate) enum Lookup<V> {
    /// Serve this now; `refresh` asks for a background refresh.
    Hit {
        value: V,
        status: CacheStatus,
        refresh: Option<Arc<Entry<V>>>,
    },
    /// Go upstream; `prior` is the entry held, if any (for stale-if-error and the
    /// adaptive TTL).
    Miss { prior: Option<Arc<Entry<V>>> },
}

pub(crate) struct Engine<V> {
    pub(crate) settings: Settings<V>,
    pub(crate) l1: MemoryTier<V>,
    pub(crate) flights: Arc<Flights<V>>,
    pub(crate) metrics: Metrics,
    pub(crate) clock: SharedClock,
    /// Bumped by prefix, tag and clear-all invalidations: a flight that started before
    /// does not store its (possibly older) answer.
    epoch: AtomicU64,
    /// The Redis tier, when configured.
    #[cfg(feature = "redis")]
    pub(crate) lower: Option<crate::distributed::Lower<V>>,
    /// The disk tier, when configured.
    #[cfg(feature = "disk")]
    pub(crate) disk: Option<crate::persistent::Disk<V>>,
    /// Adaptive TTLs of keys whose entries were evicted (bounded like L1).
    ttl_memory: Option<moka::sync::Cache<String, u64>>,
    created: Instant,
    /// Nanoseconds after `created` of the last upstream failure seen by a caller, plus one
    /// (0: never).
    last_failure: AtomicU64,
}

impl<V> fmt::Debug for Engine<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.settings.name)
            .field("l1", &self.l1)
            .field("in_flight", &self.flights.len())
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> Engine<V> {
    pub(crate) fn new(
        settings: Settings<V>,
        bounds: MemoryBounds,
        max_in_flight: usize,
        clock: SharedClock,
    ) -> Self {
        let ttl_memory = settings.adaptive.map(|_| {
            moka::sync::Cache::builder()
                .max_capacity(bounds.max_entries.unwrap_or(10_000))
                .build()
        });
        Self {
            l1: MemoryTier::new(bounds, clock.clone()),
            clock: clock.clone(),
            flights: Arc::new(Flights::new(max_in_flight)),
            metrics: Metrics::default(),
            epoch: AtomicU64::new(0),
            ttl_memory,
            #[cfg(feature = "redis")]
            lower: None,
            #[cfg(feature = "disk")]
            disk: None,
            created: clock.now(),
            last_failure: AtomicU64::new(0),
            settings,
        }
    }

    fn note_failure(&self, now: Instant) {
        let since = nanos(now.saturating_duration_since(self.created));
        self.last_failure
            .store(since.saturating_add(1), Ordering::Relaxed);
    }

    /// How long ago a caller last saw the upstream fail (served stale or an error).
    pub(crate) fn since_last_failure(&self) -> Option<Duration> {
        let at = self.last_failure.load(Ordering::Relaxed).checked_sub(1)?;
        let at = self.created + Duration::from_nanos(at);
        Some(self.clock.now().saturating_duration_since(at))
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Looks `key` up in L1 at `now`. The hit path: one moka read, one clone, counters.
    #[inline]
    pub(crate) fn lookup(&self, key: &str, now: Instant) -> Lookup<V> {
        let timed = self.l1.metrics.start_lookup();
        let started = timed.then(std::time::Instant::now);
        let found = self.l1.get_entry(key);
        if let Some(t) = started {
            self.l1.metrics.record_latency(t.elapsed());
        }
        let Some(entry) = found else {
            bump(&self.l1.metrics.misses);
            return Lookup::Miss { prior: None };
        };
        let status = match entry.freshness.phase(now) {
            Phase::Fresh => CacheStatus::Hit {
                ttl_remaining: entry.freshness.ttl_remaining(now),
            },
            Phase::Revalidate => CacheStatus::Stale {
                staleness: now.saturating_duration_since(entry.freshness.stale_at()),
            },
            Phase::IfErrorOnly | Phase::Gone => {
                bump(&self.l1.metrics.misses);
                return Lookup::Miss { prior: Some(entry) };
            }
        };
        // L1 hits are counted as lookups minus misses: one atomic less per hit.
        entry.hits.fetch_add(1, Ordering::Relaxed);
        if entry.negative {
            bump(&self.metrics.negative_hits);
        }
        if let Some(a) = &self.settings.adaptive
            && a.rule == AdaptiveRule::Popularity
        {
            entry.update_next_ttl(|t| a.on_hit(t));
        }
        let refresh = match status {
            CacheStatus::Stale { .. } => {
                bump(&self.metrics.stale_revalidate);
                true
            }
            _ => {
                self.settings.xfetch_beta > 0.0
                    && entry.freshness.xfetch_due(
                        now,
                        self.settings.xfetch_beta,
                        1.0 - rand::random::<f64>(),
                    )
            }
        };
        let value = entry.value.clone();
        Lookup::Hit {
            value,
            status,
            refresh: (refresh && !self.flights.contains(key)).then_some(entry),
        }
    }

    /// Starts leading a background refresh of `key`, unless one runs already.
    pub(crate) fn lead_refresh(
        &self,
        key: &str,
        prior: &Entry<V>,
        now: Instant,
    ) -> Option<LeaderGuard<V>> {
        match self.flights.join(key, self.epoch()) {
            Join::Lead(guard) => {
                bump(&self.metrics.refreshes);
                if prior.freshness.phase(now) == Phase::Fresh {
                    bump(&self.metrics.early_refreshes);
                }
                Some(guard)
            }
            _ => None,
        }
    }

    /// The cache's default directive for `value`, then the integration's override.
    fn directive(&self, value: &V) -> Directive {
        let s = &self.settings;
        let negative = s.hooks.is_negative.as_ref().is_some_and(|f| f(value));
        let action = if s.hooks.is_failure.as_ref().is_some_and(|f| f(value)) {
            StoreAction::Failure
        } else if (negative && s.negative_ttl.is_none())
            || !s.hooks.store_if.as_ref().is_none_or(|f| f(value))
        {
            StoreAction::Skip
        } else {
            StoreAction::Store
        };
        let base = Directive {
            action,
            ttl: None,
            windows: None,
            negative,
            shared: true,
            tags: s.hooks.tags.as_ref().map(|f| f(value)).unwrap_or_default(),
        };
        match &s.hooks.directive {
            Some(f) => f(value, base),
            None => base,
        }
    }

    /// Finishes an upstream call: decides what to store and what the caller gets.
    pub(crate) fn complete(
        &self,
        guard: Option<LeaderGuard<V>>,
        key: &str,
        result: Result<V, BoxError>,
        prior: Option<&Arc<Entry<V>>>,
        started: Instant,
        origin: Origin,
    ) -> (Result<V, BoxError>, CacheStatus) {
        let now = self.clock.now();
        let fallback = prior.filter(|e| e.freshness.usable_on_error(now));
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                return match fallback {
                    Some(stale) => self.serve_stale(guard, key, stale, now, origin, &*e),
                    None => {
                        if origin == Origin::Refresh {
                            bump(&self.metrics.refresh_failures);
                        } else {
                            bump(&self.metrics.errors);
                            self.note_failure(now);
                        }
                        (
                            finish(guard, Err(e)),
                            CacheStatus::Miss {
                                stored: false,
                                collapsed: false,
                            },
                        )
                    }
                };
            }
        };
        let directive = self.directive(&value);
        let stored = match directive.action {
            StoreAction::Failure => {
                if let Some(stale) = fallback {
                    let err = UpstreamFailure;
                    return self.serve_stale(guard, key, stale, now, origin, &err);
                }
                if origin == Origin::Refresh {
                    bump(&self.metrics.refresh_failures);
                }
                false
            }
            StoreAction::Private => {
                if let Some(g) = guard {
                    g.finish_unshareable();
                }
                return (
                    Ok(value),
                    CacheStatus::Miss {
                        stored: false,
                        collapsed: false,
                    },
                );
            }
            StoreAction::Skip => false,
            StoreAction::Store => {
                let discarded = guard
                    .as_ref()
                    .is_some_and(|g| g.discarded() || g.epoch() != self.epoch());
                !discarded && self.store(key, &value, directive, prior, now, started, origin)
            }
        };
        (
            finish(guard, Ok(value)),
            CacheStatus::Miss {
                stored,
                collapsed: false,
            },
        )
    }

    fn serve_stale(
        &self,
        guard: Option<LeaderGuard<V>>,
        key: &str,
        stale: &Arc<Entry<V>>,
        now: Instant,
        origin: Origin,
        err: &(dyn std::error::Error + 'static),
    ) -> (Result<V, BoxError>, CacheStatus) {
        let staleness = now.saturating_duration_since(stale.freshness.stale_at());
        if origin == Origin::Refresh {
            bump(&self.metrics.refresh_failures);
            tracing::warn!(cache = %self.settings.name, key, error = %err, "background refresh failed; the stale copy stays");
        } else {
            bump(&self.metrics.stale_if_error);
            bump(&self.metrics.hits);
            self.note_failure(now);
            tracing::warn!(cache = %self.settings.name, key, error = %err, ?staleness, "upstream failed; serving stale (stale-if-error)");
        }
        (
            finish(guard, Ok(stale.value.clone())),
            CacheStatus::StaleIfError { staleness },
        )
    }

    /// Stores `value` in L1 (validated); true when stored.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        key: &str,
        value: &V,
        d: Directive,
        prior: Option<&Arc<Entry<V>>>,
        now: Instant,
        started: Instant,
        origin: Origin,
    ) -> bool {
        let s = &self.settings;
        let size = (s.value_size)(value);
        if let Err(e) = s.limits.check_value(size) {
            bump(&self.metrics.rejected_too_large);
            tracing::warn!(cache = %s.name, key, error = %e, "value not cached");
            return false;
        }
        let (ttl, next_ttl) = if d.negative {
            let t = s.negative_ttl.unwrap_or(s.ttl);
            (t, t)
        } else if let Some(t) = d.ttl {
            (t, t)
        } else if let Some(a) = &s.adaptive {
            let known = prior.map(|e| e.next_ttl()).or_else(|| {
                self.ttl_memory
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .map(Duration::from_nanos)
            });
            let base = a.clamp(known.unwrap_or(s.ttl));
            let t = match (a.rule, origin) {
                (AdaptiveRule::Popularity, Origin::Request) => a.on_miss(base),
                (_, Origin::Write) | (AdaptiveRule::Popularity, Origin::Refresh) => base,
                (AdaptiveRule::Volatility, _) => match (prior, &s.hooks.same_value) {
                    (Some(p), Some(same)) => a.on_refresh(base, !same(&p.value, value)),
                    _ => base,
                },
            };
            if let Some(m) = &self.ttl_memory {
                m.insert(key.to_owned(), nanos(t));
            }
            (t, t)
        } else {
            (s.ttl, s.ttl)
        };
        let ttl = jittered_ttl(ttl, s.jitter, rand::random::<f64>());
        let windows = if d.negative {
            StaleWindows::NONE
        } else {
            d.windows.unwrap_or(s.windows)
        };
        let entry = Entry {
            value: value.clone(),
            freshness: Freshness::new(now, ttl, &windows)
                .with_fetch_cost(now.saturating_duration_since(started)),
            negative: d.negative,
            shared: d.shared,
            tags: d.tags.into_boxed_slice(),
            size: u32::try_from(size).unwrap_or(u32::MAX),
            hits: AtomicU32::new(0),
            next_ttl_nanos: AtomicU64::new(nanos(next_ttl)),
        };
        let entry = Arc::new(entry);
        self.l1.insert_entry(key.to_owned(), entry.clone());
        // Write-through stores are written by their caller before it answers.
        let behind = !self.settings.write_through || origin == Origin::Write;
        #[cfg(feature = "redis")]
        if behind && let Some(lower) = &self.lower {
            lower.write(
                key,
                &entry,
                self.l1.to_meta(&entry),
                origin == Origin::Write,
            );
        }
        #[cfg(feature = "disk")]
        if behind && let Some(disk) = &self.disk {
            disk.write(key, &entry, self.l1.to_meta(&entry));
        }
        let _ = behind;
        true
    }

    /// Write-through: writes the L1 entry of `key` to every lower tier now.
    #[cfg(any(feature = "redis", feature = "disk"))]
    pub(crate) async fn write_through(&self, key: &str) {
        if !self.settings.write_through {
            return;
        }
        let Some(entry) = self.l1.get_entry(key) else {
            return;
        };
        if !entry.shared {
            return;
        }
        let meta = self.l1.to_meta(&entry);
        #[cfg(feature = "redis")]
        if let Some(lower) = &self.lower
            && let Some(value) = lower.codec.encode(&entry.value)
        {
            let stored = crate::backend::Stored {
                value,
                meta: meta.clone(),
            };
            let _ = lower.tier.set_blob(key, &stored).await;
        }
        #[cfg(feature = "disk")]
        if let Some(disk) = &self.disk
            && let Some(value) = disk.codec.encode(&entry.value)
        {
            let tier = disk.tier.clone();
            let key = key.to_owned();
            let stored = crate::backend::Stored { value, meta };
            let _ = tokio::task::spawn_blocking(move || tier.set_blocking(&key, &stored)).await;
        }
    }

    /// Whether a tier below L1 is configured.
    #[inline]
    #[cfg(any(feature = "redis", feature = "disk"))]
    pub(crate) fn has_lower(&self) -> bool {
        #[cfg(feature = "redis")]
        if self.lower.is_some() {
            return true;
        }
        #[cfg(feature = "disk")]
        if self.disk.is_some() {
            return true;
        }
        false
    }

    /// Puts an entry found in a lower tier into L1 (not written back).
    #[cfg(any(feature = "redis", feature = "disk"))]
    pub(crate) fn promote(&self, key: &str, found: crate::backend::Stored<V>) -> Arc<Entry<V>> {
        let freshness = self.l1.to_freshness(&found.meta);
        let size = (self.settings.value_size)(&found.value);
        let entry = Arc::new(Entry {
            value: found.value,
            freshness,
            negative: found.meta.negative,
            shared: true,
            tags: found.meta.tags.into_boxed_slice(),
            size: u32::try_from(size).unwrap_or(u32::MAX),
            hits: AtomicU32::new(0),
            next_ttl_nanos: AtomicU64::new(nanos(freshness.ttl)),
        });
        self.l1.insert_entry(key.to_owned(), entry.clone());
        entry
    }

    /// Looks `key` up in L2, then L3; errors and undecodable values are misses.
    #[cfg(any(feature = "redis", feature = "disk"))]
    pub(crate) async fn lower_get(&self, key: &str) -> Option<crate::backend::Stored<V>> {
        #[cfg(feature = "redis")]
        if let Some(lower) = &self.lower
            && let Ok(Some(found)) = lower.tier.get_blob(key).await
            && let Some(value) = lower.codec.decode(&found.value)
        {
            return Some(crate::backend::Stored {
                value,
                meta: found.meta,
            });
        }
        #[cfg(feature = "disk")]
        if let Some(disk) = &self.disk {
            return disk.get(key).await;
        }
        None
    }

    /// An explicit write: stored fresh now, discarding any in-flight refresh of the key.
    pub(crate) fn put(&self, key: &str, value: V) -> Result<(), crate::error::PutError> {
        self.settings.limits.check_key(key)?;
        let size = (self.settings.value_size)(&value);
        if let Err(e) = self.settings.limits.check_value(size) {
            bump(&self.metrics.rejected_too_large);
            return Err(e.into());
        }
        self.flights.discard(key);
        let now = self.clock.now();
        let mut d = self.directive(&value);
        d.action = StoreAction::Store;
        let prior = self.l1.get_entry(key);
        self.store(key, &value, d, prior.as_ref(), now, now, Origin::Write);
        Ok(())
    }

    pub(crate) fn invalidate(&self, scope: &Invalidation) {
        self.invalidate_local(scope);
        #[cfg(feature = "redis")]
        if let Some(lower) = &self.lower {
            lower.enqueue(crate::distributed::Op::Invalidate(scope.clone()));
        }
        #[cfg(feature = "disk")]
        if let Some(disk) = &self.disk {
            disk.enqueue(crate::persistent::DiskOp::Invalidate(scope.clone()));
        }
    }

    /// Invalidates this instance's L1 (and its in-flight stores) only.
    pub(crate) fn invalidate_local(&self, scope: &Invalidation) {
        match scope {
            Invalidation::Key(k) => self.flights.discard(k),
            _ => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.l1.invalidate_now(scope);
    }

    /// Runs `f` with the ready-made status annotation of this cache.
    #[inline]
    pub(crate) fn annotate(&self, value: &mut V, status: &CacheStatus) {
        if let Some(f) = self.settings.hooks.annotate {
            f(value, status, &self.settings.name);
        }
    }
}

/// Finishes a flight if this caller leads one.
fn finish<V: Clone>(guard: Option<LeaderGuard<V>>, r: Result<V, BoxError>) -> Result<V, BoxError> {
    match guard {
        Some(g) => g.finish(r),
        None => r,
    }
}

/// The upstream answered with a response its classifier calls a failure.
#[derive(Debug)]
struct UpstreamFailure;

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the upstream answered with a failure response")
    }
}

impl std::error::Error for UpstreamFailure {}
