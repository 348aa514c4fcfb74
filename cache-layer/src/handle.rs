//! [`CacheHandle`]: invalidation, explicit writes, hot keys and metrics of a cache.

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, select};
use tokio::sync::watch;

use reliability_core::health::{
    CacheSnapshot, ComponentDetail, ComponentHealth, HealthSource, HealthStatus, ratio,
};

use crate::backend::Invalidation;
use crate::engine::Engine;
use crate::error::{FlushError, PutError, TierFlushError};
use crate::freshness::Phase;
use crate::metrics::read;

/// A cheap, cloneable handle on a cache, shared with every clone of its layer.
pub struct CacheHandle<V> {
    pub(crate) engine: Arc<Engine<V>>,
}

impl<V> Clone for CacheHandle<V> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<V> fmt::Debug for CacheHandle<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle")
            .field("engine", &self.engine)
            .finish()
    }
}

/// Counters beyond the health snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests served from the cache, fresh or stale.
    pub hits: u64,
    /// Requests that made an upstream call.
    pub misses: u64,
    /// Stale values served at once (stale-while-revalidate).
    pub stale_revalidate: u64,
    /// Stale values served because the upstream failed (stale-if-error).
    pub stale_if_error: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// Of which XFetch early refreshes (the entry was still fresh).
    pub early_refreshes: u64,
    /// Background refreshes that failed.
    pub refresh_failures: u64,
    /// Requests that joined another's upstream call.
    pub coalesced: u64,
    /// Upstream errors passed to callers.
    pub errors: u64,
    /// Values not stored because they were too large.
    pub rejected_too_large: u64,
    /// Requests that bypassed the cache because their key was invalid.
    pub rejected_key: u64,
    /// Requests without a key.
    pub bypassed: u64,
    /// Misses not coalesced because the in-flight table was full.
    pub flight_overflow: u64,
    /// Hits on cached negative answers.
    pub negative_hits: u64,
    /// L1 evictions for lack of room.
    pub evictions: u64,
    /// L2 lookups that found the key.
    pub l2_hits: u64,
    /// L2 lookups that did not.
    pub l2_misses: u64,
    /// Failed L2 operations (Redis down or slow, corrupt entries).
    pub l2_errors: u64,
    /// L2 writes dropped because the write-behind queue was full.
    pub l2_queue_overflow: u64,
    /// Invalidations received from other instances over pub/sub.
    pub pubsub_messages: u64,
    /// Invalidations published for other instances over pub/sub.
    pub pubsub_published: u64,
    /// Pub/sub re-subscriptions (each flushed L1: messages may have been lost).
    pub pubsub_resyncs: u64,
    /// Misses that waited for another instance's distributed single-flight lock.
    pub l2_lock_waits: u64,
    /// L3 lookups that found the key.
    pub l3_hits: u64,
    /// L3 lookups that did not.
    pub l3_misses: u64,
    /// Corrupt L3 entries dropped (never returned).
    pub l3_corrupt: u64,
    /// Bytes of live L3 entries.
    pub l3_bytes: u64,
}

impl<V: Clone + Send + Sync + 'static> CacheHandle<V> {
    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.engine.settings.name
    }

    /// Removes `key`; an upstream call in flight for it will not store its answer.
    pub fn invalidate(&self, key: &str) {
        self.engine.invalidate(&Invalidation::Key(key.to_owned()));
    }

    /// Removes every key starting with `prefix`.
    pub fn invalidate_prefix(&self, prefix: &str) {
        self.engine
            .invalidate(&Invalidation::Prefix(prefix.to_owned()));
    }

    /// Removes every entry tagged `tag`.
    pub fn invalidate_tag(&self, tag: &str) {
        self.engine.invalidate(&Invalidation::Tag(tag.to_owned()));
    }

    /// Removes everything.
    pub fn clear(&self) {
        self.engine.invalidate(&Invalidation::All);
    }

    /// Stores `value` under `key`, fresh from now; an upstream call in flight for the key
    /// will not overwrite it.
    pub fn put(&self, key: &str, value: V) -> Result<(), PutError> {
        self.engine.put(key, value)
    }

    /// The value cached under `key` if it may be served now (fresh or within
    /// stale-while-revalidate), without counting a lookup.
    pub fn peek(&self, key: &str) -> Option<V> {
        let e = self.engine.l1.get_entry(key)?;
        matches!(
            e.freshness.phase(self.engine.clock.now()),
            Phase::Fresh | Phase::Revalidate
        )
        .then(|| e.value.clone())
    }

    /// The value held under `key` in any phase short of gone (fresh, or stale within a
    /// window), without counting a lookup: what a conditional refresh revalidates.
    pub fn peek_stale(&self, key: &str) -> Option<V> {
        let e = self.engine.l1.get_entry(key)?;
        (e.freshness.phase(self.engine.clock.now()) != Phase::Gone).then(|| e.value.clone())
    }

    /// Freshness left for `key` (zero once stale), `None` when not held.
    pub fn remaining_ttl(&self, key: &str) -> Option<Duration> {
        let e = self.engine.l1.get_entry(key)?;
        Some(e.freshness.ttl_remaining(self.engine.clock.now()))
    }

    /// Up to `limit` keys, most hit first: the set to re-warm after a restart.
    pub fn hot_keys(&self, limit: usize) -> Vec<String> {
        let mut keys = self.engine.l1.hit_counts();
        keys.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.into_iter().take(limit).map(|(k, _)| k).collect()
    }

    /// Entries in L1 (after pending maintenance).
    pub fn entry_count(&self) -> u64 {
        self.engine.l1.sync();
        self.engine.l1.entry_count()
    }

    /// Upstream calls in flight.
    pub fn in_flight(&self) -> usize {
        self.engine.flights.len()
    }

    /// Every counter.
    pub fn stats(&self) -> CacheStats {
        let m = &self.engine.metrics;
        CacheStats {
            hits: read(&m.hits) + self.engine.l1.metrics.hits_by_difference(),
            misses: read(&m.misses),
            stale_revalidate: read(&m.stale_revalidate),
            stale_if_error: read(&m.stale_if_error),
            refreshes: read(&m.refreshes),
            early_refreshes: read(&m.early_refreshes),
            refresh_failures: read(&m.refresh_failures),
            coalesced: read(&m.coalesced),
            errors: read(&m.errors),
            rejected_too_large: read(&m.rejected_too_large),
            rejected_key: read(&m.rejected_key),
            bypassed: read(&m.bypassed),
            flight_overflow: read(&m.flight_overflow),
            negative_hits: read(&m.negative_hits),
            evictions: read(&self.engine.l1.metrics.evictions),
            ..self.lower_stats()
        }
    }

    fn lower_stats(&self) -> CacheStats {
        let mut s = CacheStats {
            l2_lock_waits: read(&self.engine.metrics.lock_waits),
            ..CacheStats::default()
        };
        for tier in &self.engine.lower {
            tier.report(&mut s);
        }
        s
    }

    /// Saves the `limit` hottest keys in L3, to re-warm a later process (written behind;
    /// nothing without L3).
    pub fn save_hot_keys(&self, limit: usize) {
        if self.engine.lower.is_empty() {
            return;
        }
        let keys = self.hot_keys(limit);
        for tier in &self.engine.lower {
            tier.save_hot_keys(&keys);
        }
    }

    /// The hot keys a previous process saved in L3 (empty without L3): map them to
    /// requests and pass them to [`Cache::warm`](crate::Cache::warm).
    pub fn saved_hot_keys(&self) -> Vec<String> {
        self.engine
            .lower
            .iter()
            .find_map(|tier| tier.saved_hot_keys())
            .unwrap_or_default()
    }

    /// Whether the lower tier is in use now (`None` without one; `Some(false)` while
    /// Redis is skipped after an error).
    pub fn l2_available(&self) -> Option<bool> {
        self.engine.lower.iter().find_map(|tier| tier.available())
    }

    /// Sets the exported gauges `cache_entries` and `cache_size_bytes` of each tier whose
    /// size is known (L1, L3) from its figures now: call it before rendering a scrape.
    /// Counters need no such call. Does nothing without feature `metrics`.
    pub fn publish_metrics(&self) {
        if !cfg!(feature = "metrics") {
            return;
        }
        let l1 = &self.engine.l1;
        l1.sync();
        l1.metrics
            .exported
            .size(l1.entry_count(), l1.weighted_size());
        for tier in &self.engine.lower {
            tier.publish_metrics();
        }
    }

    /// Resolves once every write and invalidation queued before the call (write-behind
    /// stores, [`put`](Self::put), invalidations and their pub/sub announcements,
    /// [`save_hot_keys`](Self::save_hot_keys)) has reached L2 and L3, or failed there: a
    /// marker goes through each tier's queue behind them and comes back. `Ok` at once
    /// without lower tiers.
    ///
    /// `Err` lists each tier that fell short: writes lost (failed, or dropped from a full
    /// queue) since the previous flush ([`TierFlushError::Lost`]), or a writer that is not
    /// running ([`TierFlushError::Stopped`]: shut down, or its tokio runtime is gone). On
    /// L3 everything flushed is committed, hence survives a crash. Not bounded in time:
    /// a hung Redis delays it; [`shutdown`](Self::shutdown) takes a deadline. Runs on any
    /// executor.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let flushes = self.engine.lower.iter().map(|tier| tier.flush());
        let tiers: Vec<_> = futures_util::future::join_all(flushes)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if tiers.is_empty() {
            Ok(())
        } else {
            Err(FlushError { tiers })
        }
    }

    /// [`flush`](Self::flush)es, then stops the cache's background work (the L2 writer
    /// and pub/sub subscriber tasks, the L3 writer thread), all within `deadline`.
    /// Returns at the latest at `deadline` (plus scheduling), whether or not Redis or the
    /// disk answers; [`TierFlushError::Deadline`] says how many operations each tier still
    /// held then, and they are dropped. The cache goes on serving from L1 (and reading
    /// L2 and L3), but writes to L2 and L3 made afterwards are dropped and counted as queue
    /// overflow, and no more invalidations arrive from other instances. Calling it again
    /// returns [`TierFlushError::Stopped`]. Runs on any executor (the deadline is kept by
    /// a short-lived thread, not by tokio's timer).
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), FlushError> {
        let timer = Timer::after(deadline);
        let flushes = self.engine.lower.iter().map(|tier| {
            let timer = &timer;
            async move {
                match select(tier.flush(), pin!(timer.wait())).await {
                    Either::Left((r, _)) => r.err(),
                    Either::Right(_) => Some(TierFlushError::Deadline {
                        tier: tier.level(),
                        pending: tier.pending(),
                    }),
                }
            }
        });
        let tiers: Vec<_> = futures_util::future::join_all(flushes)
            .await
            .into_iter()
            .flatten()
            .collect();
        let stops = futures_util::future::join_all(self.engine.lower.iter().map(|t| t.stop()));
        // Stopping is immediate (tasks aborted; the thread ends after the operation it is
        // in): the wait is bounded by the deadline all the same.
        let _ = select(stops, pin!(timer.wait())).await;
        if tiers.is_empty() {
            Ok(())
        } else {
            Err(FlushError { tiers })
        }
    }

    /// The health snapshot's figures.
    pub fn snapshot(&self) -> CacheSnapshot {
        use crate::backend::Tier;
        let s = self.stats();
        self.engine.l1.sync();
        let levels = std::iter::once(self.engine.l1.stats())
            .chain(self.engine.lower.iter().map(|tier| tier.snapshot()))
            .collect();
        CacheSnapshot {
            levels,
            hits: s.hits,
            misses: s.misses,
            stale_served: s.stale_revalidate + s.stale_if_error,
            coalesced: s.coalesced,
            rejected_too_large: s.rejected_too_large,
            hit_rate: ratio(s.hits, s.hits + s.misses),
        }
    }
}

/// A deadline kept by a thread that sleeps until it (or until the timer is dropped), so
/// that [`CacheHandle::shutdown`] needs neither a tokio runtime nor its time driver.
struct Timer {
    fired: watch::Receiver<()>,
    /// Dropped with the timer: wakes the thread, which then ends at once.
    _cancel: std::sync::mpsc::Sender<()>,
}

impl Timer {
    fn after(deadline: Duration) -> Self {
        let (fire, fired) = watch::channel(());
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        // Should the thread not start, the closure (and `fire`) is dropped: the deadline
        // is then already past, and shutdown only stops.
        let _ = std::thread::Builder::new()
            .name("cache-shutdown".to_owned())
            .spawn(move || {
                let _ = cancelled.recv_timeout(deadline);
                drop(fire);
            });
        Self {
            fired,
            _cancel: cancel,
        }
    }

    /// Resolves once the deadline has passed.
    async fn wait(&self) {
        let mut fired = self.fired.clone();
        // Nothing is ever sent: this ends when the thread drops the sender.
        while fired.changed().await.is_ok() {}
    }
}

impl<V: Clone + Send + Sync + 'static> HealthSource for CacheHandle<V> {
    /// One component named after the cache: DEGRADED while L2 is unavailable, and for a
    /// minute after a caller saw the upstream fail (served stale instead, or got the
    /// error); HEALTHY otherwise.
    fn health(&self) -> Vec<ComponentHealth> {
        let problem = if self.l2_available() == Some(false) {
            Some("L2 unavailable: serving from L1".to_owned())
        } else {
            self.engine
                .since_last_failure()
                .filter(|ago| *ago < Duration::from_secs(60))
                .map(|ago| format!("upstream failed {}s ago", ago.as_secs()))
        };
        let status = match problem {
            Some(_) => HealthStatus::Degraded,
            None => HealthStatus::Healthy,
        };
        let c = ComponentHealth::new(self.name(), status, ComponentDetail::Cache(self.snapshot()));
        vec![match problem {
            Some(m) => c.with_message(m),
            None => c,
        }]
    }
}
