//! The cache's shared state and how it carries out its decisions: the L1 lookup, the
//! completion of upstream calls, stores, explicit writes and invalidation.
//!
//! Both the generic service and the HTTP mode drive this engine; it knows nothing of
//! requests, only keys and values. The rules themselves are pure functions in
//! [`decide`]; the tiers below L1 sit behind [`LowerTier`], in a list the engine walks
//! without knowing which tiers were built.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use reliability_core::clock::{Instant, SharedClock};
use tower::BoxError;

use crate::adaptive::AdaptiveRule;
use crate::backend::Invalidation;
use crate::backend::memory::{Entry, MemoryBounds, MemoryTier, nanos};
use crate::freshness::{Freshness, Phase, jittered_ttl};
use crate::lower::{FlightLock, LowerTier};
use crate::metrics::{Metrics, bump};
use crate::singleflight::{Flights, Join, LeaderGuard};
use crate::status::CacheStatus;

pub(crate) mod decide;
mod settings;

pub use decide::{Directive, StoreAction};
pub(crate) use decide::{Origin, Serving};
pub(crate) use settings::{Hooks, Settings};

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
    /// The tiers below L1, nearest first (L2, then L3); empty without any.
    pub(crate) lower: Vec<Arc<dyn LowerTier<V>>>,
    /// Distributed single-flight across instances, when configured.
    pub(crate) flight_lock: Option<Arc<dyn FlightLock<V>>>,
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
        lower: Vec<Arc<dyn LowerTier<V>>>,
        flight_lock: Option<Arc<dyn FlightLock<V>>>,
    ) -> Self {
        let ttl_memory = settings.adaptive.map(|_| {
            moka::sync::Cache::builder()
                .max_capacity(bounds.max_entries.unwrap_or(10_000))
                .build()
        });
        Self {
            l1: MemoryTier::named(bounds, clock.clone(), &settings.name),
            clock: clock.clone(),
            flights: Arc::new(Flights::new(max_in_flight)),
            metrics: Metrics::named(&settings.name),
            epoch: AtomicU64::new(0),
            ttl_memory,
            lower,
            flight_lock,
            created: clock.now(),
            last_failure: AtomicU64::new(0),
            settings,
        }
    }

    /// Shares the engine and lets its lower tiers start what needs it (L2's pub/sub
    /// subscriber).
    pub(crate) fn start(self) -> Arc<Self> {
        let engine = Arc::new(self);
        for tier in &engine.lower {
            tier.attach(&engine);
        }
        engine
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
            self.l1.metrics.miss();
            return Lookup::Miss { prior: None };
        };
        let Serving::Now(status) = decide::serving(&entry.freshness, now) else {
            self.l1.metrics.miss();
            return Lookup::Miss { prior: Some(entry) };
        };
        // L1 hits are counted as lookups minus misses: one atomic less per hit. The
        // exported counter needs its own add (a scrape cannot subtract).
        self.l1.metrics.exported.hit();
        entry.hits.fetch_add(1, Ordering::Relaxed);
        if entry.negative {
            bump(&self.metrics.negative_hits);
        }
        if let Some(a) = &self.settings.adaptive
            && a.rule == AdaptiveRule::Popularity
        {
            entry.update_next_ttl(|t| a.on_hit(t));
        }
        if matches!(status, CacheStatus::Stale { .. }) {
            self.metrics.stale_revalidating();
        }
        let refresh = decide::refresh_due(
            &status,
            &entry.freshness,
            now,
            self.settings.xfetch_beta,
            || 1.0 - rand::random::<f64>(),
        );
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
                        (finish(guard, Err(e)), MISS_NOT_STORED)
                    }
                };
            }
        };
        let directive = decide::directive(&self.settings, &value);
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
            StoreAction::DoNotShare => {
                if let Some(g) = guard {
                    g.finish_unshareable();
                }
                return (Ok(value), MISS_NOT_STORED);
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
            self.metrics.stale_upstream_error();
            bump(&self.metrics.hits);
            self.note_failure(now);
            tracing::warn!(cache = %self.settings.name, key, error = %err, ?staleness, "upstream failed; serving stale (stale-if-error)");
        }
        (
            finish(guard, Ok(stale.value.clone())),
            CacheStatus::StaleIfError { staleness },
        )
    }

    /// Stores `value` in L1 (validated) and queues it for the lower tiers; true when
    /// stored.
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
        let ttl = decide::store_ttl(s, &d, |a| {
            let known = prior.map(|e| e.next_ttl()).or_else(|| {
                self.ttl_memory
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .map(Duration::from_nanos)
            });
            let changed = || match (prior, &s.hooks.same_value) {
                (Some(p), Some(same)) => Some(!same(&p.value, value)),
                _ => None,
            };
            let t = decide::adaptive_ttl(a, known, s.ttl, origin, changed);
            if let Some(m) = &self.ttl_memory {
                m.insert(key.to_owned(), nanos(t));
            }
            t
        });
        let windows = decide::stale_windows(s, &d);
        let entry = Entry {
            value: value.clone(),
            freshness: Freshness::new(now, jittered_ttl(ttl, s.jitter, rand::random()), &windows)
                .with_fetch_cost(now.saturating_duration_since(started)),
            negative: d.negative,
            shared: d.shared,
            tags: d.tags.into_boxed_slice(),
            size: u32::try_from(size).unwrap_or(u32::MAX),
            hits: AtomicU32::new(0),
            // The adaptive TTL moves from the unjittered one.
            next_ttl_nanos: AtomicU64::new(nanos(ttl)),
        };
        let entry = Arc::new(entry);
        self.l1.insert_entry(key.to_owned(), entry.clone());
        // Write-through stores are written by their caller before it answers.
        let behind = !s.write_through || origin == Origin::Write;
        if behind && entry.shared && !self.lower.is_empty() {
            let meta = self.l1.to_meta(&entry);
            for tier in &self.lower {
                tier.write_behind(key, &entry.value, meta.clone(), origin == Origin::Write);
            }
        }
        true
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
        let mut d = decide::directive(&self.settings, &value);
        d.action = StoreAction::Store;
        let prior = self.l1.get_entry(key);
        self.store(key, &value, d, prior.as_ref(), now, now, Origin::Write);
        Ok(())
    }

    /// Keeps `value` in L1 for `retention` with no stale windows, for a mode that
    /// judges freshness itself (HTTP's RFC 9111 mode): `false` when it is too large.
    /// Discards any in-flight store of the key; lower tiers are not written.
    pub(crate) fn retain(&self, key: &str, value: V, retention: Duration) -> bool {
        let size = (self.settings.value_size)(&value);
        if self.settings.limits.check_key(key).is_err() {
            return false;
        }
        if self.settings.limits.check_value(size).is_err() {
            bump(&self.metrics.rejected_too_large);
            return false;
        }
        self.flights.discard(key);
        let entry = Entry {
            value,
            freshness: Freshness::new(
                self.clock.now(),
                retention,
                &crate::freshness::StaleWindows::NONE,
            ),
            negative: false,
            shared: true,
            tags: Box::new([]),
            size: u32::try_from(size).unwrap_or(u32::MAX),
            hits: AtomicU32::new(0),
            next_ttl_nanos: AtomicU64::new(nanos(retention)),
        };
        self.l1.insert_entry(key.to_owned(), Arc::new(entry));
        true
    }

    /// The entry held for `key` while its retention lasts, counted as one L1 lookup.
    pub(crate) fn held(&self, key: &str) -> Option<Arc<Entry<V>>> {
        let _ = self.l1.metrics.start_lookup();
        let found = self
            .l1
            .get_entry(key)
            .filter(|e| e.freshness.phase(self.clock.now()) == Phase::Fresh);
        if found.is_some() {
            self.l1.metrics.exported.hit();
        } else {
            self.l1.metrics.miss();
        }
        found
    }

    /// Invalidates L1 here, every lower tier, and (through them) other instances.
    pub(crate) fn invalidate(&self, scope: &Invalidation) {
        self.invalidate_local(scope);
        for tier in &self.lower {
            tier.invalidate(scope);
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

/// A miss whose answer was not stored.
const MISS_NOT_STORED: CacheStatus = CacheStatus::Miss {
    stored: false,
    collapsed: false,
};

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
