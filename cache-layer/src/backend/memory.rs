//! L1: the in-process tier, on `moka`.
//!
//! Bounded by entry count and by bytes at once. moka weighs entries against one capacity,
//! so with both bounds each entry weighs `max(its size, max_bytes / max_entries)` against a
//! capacity of `max_bytes`: the sum of weights stays under `max_bytes`, hence the bytes do,
//! and since each weight is at least `max_bytes / max_entries`, so does the count.
//!
//! Each entry expires (in moka) at the end of its longest stale window, through moka's
//! per-entry `Expiry`; that only reclaims memory. Whether an entry may be served is decided
//! by the [freshness model](crate::freshness) on the cache's own clock, which follows
//! tokio's paused time in tests while moka's does not.
//!
//! This uses `moka::sync::Cache`: its lookups are synchronous, so the layer decides a hit
//! inside `Service::call` and answers with a ready future, with no allocation and no
//! boxed future (moka's `future::Cache::get` is an `async fn`, whose future cannot be
//! named in a hand-written `ResponseFuture` without boxing it).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use futures_util::future::BoxFuture;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy as MokaPolicy;
use reliability_core::clock::{Instant, SharedClock};
use reliability_core::health::CacheLevelSnapshot;

use super::{EntryMeta, Invalidation, Stored, Tier, TierError};
use crate::EvictionPolicy;
use crate::freshness::{Freshness, StaleWindows};
use crate::metrics::LevelMetrics;

/// An L1 entry: the value, its freshness and what the cache learns about it.
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) freshness: Freshness,
    pub(crate) negative: bool,
    /// Whether shared tiers (L2/L3) may hold it (not `private`).
    pub(crate) shared: bool,
    pub(crate) tags: Box<[String]>,
    /// Size in bytes, as measured by the cache's size function.
    pub(crate) size: u32,
    pub(crate) hits: AtomicU32,
    /// Adaptive TTL to use at the next store of this key.
    pub(crate) next_ttl_nanos: AtomicU64,
}

impl<V> Entry<V> {
    pub(crate) fn next_ttl(&self) -> Duration {
        Duration::from_nanos(self.next_ttl_nanos.load(Ordering::Relaxed))
    }

    /// Applies `f` to the adaptive TTL (a CAS loop; contention only on one hot key).
    pub(crate) fn update_next_ttl(&self, f: impl Fn(Duration) -> Duration) {
        let _ = self
            .next_ttl_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(nanos(f(Duration::from_nanos(n))))
            });
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Bounds of L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBounds {
    /// Most entries held.
    pub max_entries: Option<u64>,
    /// Most bytes held (keys plus values as measured by the size function).
    pub max_bytes: Option<u64>,
    /// Eviction policy.
    pub eviction: EvictionPolicy,
}

impl Default for MemoryBounds {
    fn default() -> Self {
        Self {
            max_entries: Some(10_000),
            max_bytes: None,
            eviction: EvictionPolicy::TinyLfu,
        }
    }
}

struct EntryExpiry;

impl<V> moka::Expiry<String, Arc<Entry<V>>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry<V>>,
        _created_at: StdInstant,
    ) -> Option<Duration> {
        Some(value.freshness.lifetime())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Entry<V>>,
        _updated_at: StdInstant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.freshness.lifetime())
    }
}

/// The in-process tier.
pub struct MemoryTier<V> {
    cache: moka::sync::Cache<String, Arc<Entry<V>>>,
    pub(crate) metrics: Arc<LevelMetrics>,
    clock: SharedClock,
}

impl<V> fmt::Debug for MemoryTier<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> MemoryTier<V> {
    /// A tier with these bounds, reading time from `clock`.
    pub fn new(bounds: MemoryBounds, clock: SharedClock) -> Self {
        Self::with_metrics(bounds, clock, LevelMetrics::default())
    }

    /// The L1 of the cache `source`, its figures exported under that name.
    pub(crate) fn named(bounds: MemoryBounds, clock: SharedClock, source: &str) -> Self {
        Self::with_metrics(
            bounds,
            clock,
            LevelMetrics::named(source, crate::metrics::facade::TierName::L1),
        )
    }

    fn with_metrics(bounds: MemoryBounds, clock: SharedClock, metrics: LevelMetrics) -> Self {
        let metrics = Arc::new(metrics);
        let evictions = metrics.clone();
        let mut builder = moka::sync::Cache::builder()
            .expire_after(EntryExpiry)
            .eviction_policy(match bounds.eviction {
                EvictionPolicy::TinyLfu => MokaPolicy::tiny_lfu(),
                EvictionPolicy::Lru => MokaPolicy::lru(),
            })
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            });
        builder = match (bounds.max_entries, bounds.max_bytes) {
            (entries, Some(bytes)) => {
                let slot = entries.map_or(1, |n| (bytes / n.max(1)).max(1));
                let slot = u32::try_from(slot).unwrap_or(u32::MAX);
                builder
                    .max_capacity(bytes)
                    .weigher(move |k: &String, v: &Arc<Entry<V>>| {
                        let own = v
                            .size
                            .saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX));
                        own.max(slot)
                    })
            }
            (Some(entries), None) => builder.max_capacity(entries),
            (None, None) => builder,
        };
        Self {
            cache: builder.build(),
            metrics,
            clock,
        }
    }

    #[inline]
    pub(crate) fn get_entry(&self, key: &str) -> Option<Arc<Entry<V>>> {
        self.cache.get(key)
    }

    pub(crate) fn insert_entry(&self, key: String, entry: Arc<Entry<V>>) {
        self.cache.insert(key, entry);
    }

    /// Removes every entry `scope` names, at once.
    pub(crate) fn invalidate_now(&self, scope: &Invalidation) {
        match scope {
            Invalidation::Key(k) => self.cache.invalidate(k.as_str()),
            Invalidation::All => self.cache.invalidate_all(),
            _ => {
                // A full scan: prefix and tag invalidations are administrative, rare, and
                // must take effect before the call returns (moka's predicate invalidation
                // is lazy).
                for (k, v) in self.cache.iter() {
                    if scope.matches(&k, &v.tags) {
                        self.cache.invalidate(k.as_str());
                    }
                }
            }
        }
    }

    /// Keys and hit counts of every entry.
    pub(crate) fn hit_counts(&self) -> Vec<(String, u32)> {
        self.cache
            .iter()
            .map(|(k, v)| ((*k).clone(), v.hits.load(Ordering::Relaxed)))
            .collect()
    }

    /// Entries held (approximate until moka runs its pending tasks).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Weight held: bytes when bounded by bytes.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs moka's pending maintenance (eviction, counts); for tests and reports.
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }

    pub(crate) fn to_freshness(&self, meta: &EntryMeta) -> Freshness {
        let now = self.clock.now();
        let age = self
            .clock
            .wall()
            .duration_since(meta.stored_at)
            .unwrap_or_default();
        let stored_at: Instant = now.checked_sub(age).unwrap_or(now);
        let windows = StaleWindows {
            stale_while_revalidate: meta.stale_while_revalidate,
            stale_if_error: meta.stale_if_error,
            max_staleness: Duration::MAX,
        };
        Freshness::new(stored_at, meta.ttl, &windows).with_fetch_cost(meta.fetch_cost)
    }

    pub(crate) fn to_meta(&self, e: &Entry<V>) -> EntryMeta {
        let age = self
            .clock
            .now()
            .saturating_duration_since(e.freshness.stored_at);
        EntryMeta {
            stored_at: self.clock.wall() - age,
            ttl: e.freshness.ttl,
            stale_while_revalidate: e.freshness.stale_while_revalidate,
            stale_if_error: e.freshness.stale_if_error,
            fetch_cost: e.freshness.fetch_cost,
            negative: e.negative,
            tags: e.tags.to_vec(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Tier<V> for MemoryTier<V> {
    fn level(&self) -> &'static str {
        "l1"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored<V>>, TierError>> {
        let found = self.get_entry(key).map(|e| Stored {
            value: e.value.clone(),
            meta: self.to_meta(&e),
        });
        Box::pin(std::future::ready(Ok(found)))
    }

    fn set<'a>(&'a self, key: &'a str, entry: Stored<V>) -> BoxFuture<'a, Result<(), TierError>> {
        let freshness = self.to_freshness(&entry.meta);
        let e = Entry {
            value: entry.value,
            freshness,
            negative: entry.meta.negative,
            shared: true,
            tags: entry.meta.tags.into_boxed_slice(),
            size: 0,
            hits: AtomicU32::new(0),
            next_ttl_nanos: AtomicU64::new(nanos(freshness.ttl)),
        };
        self.insert_entry(key.to_owned(), Arc::new(e));
        Box::pin(std::future::ready(Ok(())))
    }

    fn invalidate<'a>(&'a self, scope: &'a Invalidation) -> BoxFuture<'a, Result<(), TierError>> {
        self.invalidate_now(scope);
        Box::pin(std::future::ready(Ok(())))
    }

    fn stats(&self) -> CacheLevelSnapshot {
        let mut s =
            self.metrics
                .snapshot("l1", self.cache.entry_count(), self.cache.weighted_size());
        s.hits = self.metrics.hits_by_difference();
        s
    }
}
