//! Counters of the cache, read into [`CacheSnapshot`](reliability_core::health::CacheSnapshot).
//!
//! Plain relaxed atomics: each is a monotonic count read for reporting, never used to
//! decide anything. Latency is sampled (one lookup in [`LATENCY_SAMPLE`]) so that the hit
//! path does not read the clock on every call.
//!
//! With feature `metrics`, every count here is also recorded through the `metrics` facade
//! at the same point, by handles registered once per cache ([`facade`]): the snapshot
//! and a Prometheus scrape cannot drift apart. Without it the handles are empty types and
//! their methods compile to nothing.

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
    /// The same figures through the `metrics` facade (unbound until the cache is built).
    pub(crate) exported: facade::Level,
}

impl LevelMetrics {
    /// Figures of `tier` of the cache `source`, exported under those labels.
    pub(crate) fn named(source: &str, tier: facade::TierName) -> Self {
        Self {
            exported: facade::Level::new(source, tier),
            ..Self::default()
        }
    }

    /// Binds the exported figures to `source` (a tier built before its cache).
    #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
    pub(crate) fn bind(&mut self, source: &str, tier: facade::TierName) {
        self.exported = facade::Level::new(source, tier);
    }

    /// A lookup that found the key (tiers that count hits).
    #[inline]
    #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.exported.hit();
    }

    /// A lookup that did not.
    #[inline]
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.exported.miss();
    }

    /// A failed operation of the tier.
    #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.exported.error();
    }

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
    /// The exported families of the whole cache.
    pub(crate) exported: facade::Cache,
}

impl Metrics {
    /// The figures of the cache `source`.
    pub(crate) fn named(source: &str) -> Self {
        Self {
            exported: facade::Cache::new(source),
            ..Self::default()
        }
    }

    /// A stale value served at once while it is refreshed behind.
    #[inline]
    pub(crate) fn stale_revalidating(&self) {
        bump(&self.stale_revalidate);
        self.exported.stale_revalidating();
    }

    /// A stale value served because the upstream failed.
    pub(crate) fn stale_upstream_error(&self) {
        bump(&self.stale_if_error);
        self.exported.stale_upstream_error();
    }

    /// A request that joined another's upstream call.
    pub(crate) fn coalesced(&self) {
        bump(&self.coalesced);
        self.exported.coalesced();
    }
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

/// The `metrics` facade's handles of a cache and of its tiers.
pub(crate) mod facade {
    /// The tier label.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum TierName {
        L1,
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        L2,
        #[cfg_attr(not(feature = "disk"), allow(dead_code))]
        L3,
    }

    #[cfg(feature = "metrics")]
    impl TierName {
        fn label(self) -> &'static str {
            match self {
                Self::L1 => "l1",
                Self::L2 => "l2",
                Self::L3 => "l3",
            }
        }
    }

    #[cfg(feature = "metrics")]
    mod imp {
        use std::time::Duration;

        use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

        use super::TierName;

        /// Handles of one tier. Unbound ones are the facade's no-op handles.
        #[derive(Debug)]
        pub(crate) struct Level {
            hits: Counter,
            misses: Counter,
            errors: Counter,
            /// Tiers that do I/O only: L1 never reads a clock for it.
            #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
            duration: Option<Histogram>,
            /// Tiers whose size is known (L1, L3).
            size: Option<(Gauge, Gauge)>,
        }

        impl Default for Level {
            fn default() -> Self {
                Self {
                    hits: Counter::noop(),
                    misses: Counter::noop(),
                    errors: Counter::noop(),
                    duration: None,
                    size: None,
                }
            }
        }

        impl Level {
            pub(crate) fn new(source: &str, tier: TierName) -> Self {
                super::super::describe();
                let t = tier.label();
                let lookups = |result: &'static str| counter!("cache_lookups_total", "source" => source.to_owned(), "tier" => t, "result" => result);
                Self {
                    hits: lookups("hit"),
                    misses: lookups("miss"),
                    errors: counter!("cache_errors_total", "source" => source.to_owned(), "tier" => t),
                    duration: (tier != TierName::L1).then(|| {
                        histogram!("cache_lookup_duration_seconds", "source" => source.to_owned(), "tier" => t)
                    }),
                    size: (tier != TierName::L2).then(|| {
                        (
                            gauge!("cache_entries", "source" => source.to_owned(), "tier" => t),
                            gauge!("cache_size_bytes", "source" => source.to_owned(), "tier" => t),
                        )
                    }),
                }
            }

            #[inline]
            pub(crate) fn hit(&self) {
                self.hits.increment(1);
            }

            #[inline]
            pub(crate) fn miss(&self) {
                self.misses.increment(1);
            }

            pub(crate) fn error(&self) {
                self.errors.increment(1);
            }

            /// Whether lookups of this tier are timed for the histogram.
            #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
            pub(crate) fn timed(&self) -> bool {
                self.duration.is_some()
            }

            #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
            pub(crate) fn lookup_took(&self, d: Duration) {
                if let Some(h) = &self.duration {
                    h.record(d.as_secs_f64());
                }
            }

            pub(crate) fn size(&self, entries: u64, bytes: u64) {
                if let Some((e, b)) = &self.size {
                    e.set(entries as f64);
                    b.set(bytes as f64);
                }
            }
        }

        /// Handles of the whole cache.
        #[derive(Debug)]
        pub(crate) struct Cache {
            stale_revalidating: Counter,
            stale_upstream_error: Counter,
            coalesced: Counter,
        }

        impl Default for Cache {
            fn default() -> Self {
                Self {
                    stale_revalidating: Counter::noop(),
                    stale_upstream_error: Counter::noop(),
                    coalesced: Counter::noop(),
                }
            }
        }

        impl Cache {
            pub(crate) fn new(source: &str) -> Self {
                let stale = |reason: &'static str| counter!("cache_stale_served_total", "source" => source.to_owned(), "reason" => reason);
                Self {
                    stale_revalidating: stale("revalidating"),
                    stale_upstream_error: stale("upstream_error"),
                    coalesced: counter!("cache_coalesced_total", "source" => source.to_owned()),
                }
            }

            #[inline]
            pub(crate) fn stale_revalidating(&self) {
                self.stale_revalidating.increment(1);
            }

            pub(crate) fn stale_upstream_error(&self) {
                self.stale_upstream_error.increment(1);
            }

            pub(crate) fn coalesced(&self) {
                self.coalesced.increment(1);
            }
        }

        /// Handles of L2's pub/sub invalidations.
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        #[derive(Debug)]
        pub(crate) struct Invalidations {
            sent: Counter,
            received: Counter,
        }

        impl Default for Invalidations {
            fn default() -> Self {
                Self {
                    sent: Counter::noop(),
                    received: Counter::noop(),
                }
            }
        }

        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        impl Invalidations {
            pub(crate) fn new(source: &str) -> Self {
                let dir = |direction: &'static str| counter!("cache_invalidations_total", "source" => source.to_owned(), "direction" => direction);
                Self {
                    sent: dir("sent"),
                    received: dir("received"),
                }
            }

            pub(crate) fn sent(&self) {
                self.sent.increment(1);
            }

            pub(crate) fn received(&self) {
                self.received.increment(1);
            }
        }
    }

    #[cfg(not(feature = "metrics"))]
    mod imp {
        use std::time::Duration;

        use super::TierName;

        #[derive(Debug, Default)]
        pub(crate) struct Level;

        impl Level {
            pub(crate) fn new(_: &str, _: TierName) -> Self {
                Self
            }
            #[inline(always)]
            pub(crate) fn hit(&self) {}
            #[inline(always)]
            pub(crate) fn miss(&self) {}
            #[inline(always)]
            #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
            pub(crate) fn error(&self) {}
            #[inline(always)]
            #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
            pub(crate) fn timed(&self) -> bool {
                false
            }
            #[inline(always)]
            #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
            pub(crate) fn lookup_took(&self, _: Duration) {}
            #[inline(always)]
            pub(crate) fn size(&self, _: u64, _: u64) {}
        }

        #[derive(Debug, Default)]
        pub(crate) struct Cache;

        impl Cache {
            pub(crate) fn new(_: &str) -> Self {
                Self
            }
            #[inline(always)]
            pub(crate) fn stale_revalidating(&self) {}
            #[inline(always)]
            pub(crate) fn stale_upstream_error(&self) {}
            #[inline(always)]
            pub(crate) fn coalesced(&self) {}
        }

        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        #[derive(Debug, Default)]
        pub(crate) struct Invalidations;

        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        impl Invalidations {
            pub(crate) fn new(_: &str) -> Self {
                Self
            }
            #[inline(always)]
            pub(crate) fn sent(&self) {}
            #[inline(always)]
            pub(crate) fn received(&self) {}
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) use imp::Invalidations;
    pub(crate) use imp::{Cache, Level};
}

/// The families' help texts (registered once per recorder; repeating them is harmless).
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "cache_lookups_total",
        "Cache lookups, by tier and result (hit or miss)."
    );
    describe_counter!(
        "cache_errors_total",
        "Failed cache-tier operations (I/O, corrupt entries), by tier."
    );
    describe_histogram!(
        "cache_lookup_duration_seconds",
        metrics::Unit::Seconds,
        "Lookup time of the tiers that do I/O (L2, L3)."
    );
    describe_gauge!("cache_entries", "Entries held, by tier.");
    describe_gauge!(
        "cache_size_bytes",
        metrics::Unit::Bytes,
        "Bytes held, by tier."
    );
    describe_counter!(
        "cache_stale_served_total",
        "Stale answers served, by reason (revalidating or upstream_error)."
    );
    describe_counter!(
        "cache_coalesced_total",
        "Requests that joined another's in-flight upstream call."
    );
    describe_counter!(
        "cache_invalidations_total",
        "Invalidation messages, sent and received."
    );
}
