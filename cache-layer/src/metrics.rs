//! Counters of the cache, read into [`CacheSnapshot`](reliability_core::health::CacheSnapshot).
//!
//! Plain relaxed atomics: each is a monotonic count read for reporting, never used to
//! decide anything. Latency is sampled (one lookup in [`LATENCY_SAMPLE`]) so that the hit
//! path does not read the clock on every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reliability_core::health::CacheLevelSnapshot;

/// One lookup in this many is timed.
pub(crate) const LATENCY_SAMPLE: u64 = 64;

/// Figures of one tier.
#[derive(Debug, Default)]
pub(crate) struct LevelMetrics {
    pub(crate) lookups: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) evictions: AtomicU64,
    latency_nanos: AtomicU64,
    latency_samples: AtomicU64,
}

impl LevelMetrics {
    pub(crate) fn record_latency(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.latency_samples.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup; true when this one should be timed.
    #[inline]
    pub(crate) fn start_lookup(&self) -> bool {
        self.lookups
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(LATENCY_SAMPLE)
    }

    /// Lookups minus misses, for a tier that does not count hits on its hot path.
    pub(crate) fn hits_by_difference(&self) -> u64 {
        let misses = self.misses.load(Ordering::Relaxed);
        self.lookups.load(Ordering::Relaxed).saturating_sub(misses)
    }

    pub(crate) fn snapshot(&self, level: &str, entries: u64, bytes: u64) -> CacheLevelSnapshot {
        let samples = self.latency_samples.load(Ordering::Relaxed);
        let mean_latency_us = if samples == 0 {
            0.0
        } else {
            self.latency_nanos.load(Ordering::Relaxed) as f64 / samples as f64 / 1_000.0
        };
        CacheLevelSnapshot {
            level: level.to_owned(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            entries,
            bytes,
            mean_latency_us,
        }
    }
}

/// Figures of the whole cache.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Requests answered from the cache other than by an L1 lookup (stale-if-error,
    /// L2, L3); L1 hits are its lookups minus its misses.
    pub(crate) hits: AtomicU64,
    /// Requests that went upstream as leaders (or uncoalesced).
    pub(crate) misses: AtomicU64,
    /// Stale served at once (stale-while-revalidate).
    pub(crate) stale_revalidate: AtomicU64,
    /// Stale served because the upstream failed (stale-if-error).
    pub(crate) stale_if_error: AtomicU64,
    /// Background refreshes started (stale-while-revalidate and XFetch).
    pub(crate) refreshes: AtomicU64,
    /// Of which XFetch early refreshes.
    pub(crate) early_refreshes: AtomicU64,
    /// Background refreshes that failed.
    pub(crate) refresh_failures: AtomicU64,
    /// Requests that joined another's upstream call.
    pub(crate) coalesced: AtomicU64,
    /// Upstream errors passed to callers.
    pub(crate) errors: AtomicU64,
    /// Values not stored: too large.
    pub(crate) rejected_too_large: AtomicU64,
    /// Requests that bypassed the cache because their key was invalid.
    pub(crate) rejected_key: AtomicU64,
    /// Requests with no key (bypass by the key function).
    pub(crate) bypassed: AtomicU64,
    /// Misses not coalesced because the in-flight table was full.
    pub(crate) flight_overflow: AtomicU64,
    /// Hits on cached negative answers.
    pub(crate) negative_hits: AtomicU64,
    /// Misses that waited for another instance's distributed single-flight lock.
    pub(crate) lock_waits: AtomicU64,
}

/// Adds one to a counter.
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn read(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
