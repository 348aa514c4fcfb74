//! The cache's counters, and the `metrics` facade's handles of a semantic cache,
//! registered once when it is built (label `source` = the cache's name) and added to
//! where the cache's own counters are, so [`SemanticStats`](crate::SemanticStats) and a
//! scrape agree. Without feature `metrics` the handles are empty types whose methods
//! compile to nothing.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) exact_hits: AtomicU64,
    pub(crate) similar_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) embed_failures: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) loaded: AtomicU64,
    /// Monotonic nanoseconds since `started` of the last embedder or store failure, +1.
    pub(crate) last_failure: AtomicU64,
    /// The exported lookup counters.
    pub(crate) exported: Lookups,
}

pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[cfg(feature = "metrics")]
mod imp {
    use metrics::{Counter, counter};

    /// `semantic_cache_lookups_total{result}`.
    pub(crate) struct Lookups {
        exact: Counter,
        similar: Counter,
        miss: Counter,
    }

    impl Default for Lookups {
        fn default() -> Self {
            Self {
                exact: Counter::noop(),
                similar: Counter::noop(),
                miss: Counter::noop(),
            }
        }
    }

    impl Lookups {
        pub(crate) fn new(source: &str) -> Self {
            metrics::describe_counter!(
                "semantic_cache_lookups_total",
                "Semantic-cache lookups, by result (exact, similar, miss)."
            );
            let result = |r: &'static str| counter!("semantic_cache_lookups_total", "source" => source.to_owned(), "result" => r);
            Self {
                exact: result("exact"),
                similar: result("similar"),
                miss: result("miss"),
            }
        }

        #[inline]
        pub(crate) fn exact(&self) {
            self.exact.increment(1);
        }

        pub(crate) fn similar(&self) {
            self.similar.increment(1);
        }

        pub(crate) fn miss(&self) {
            self.miss.increment(1);
        }
    }

    /// `semantic_cache_embeddings_total{result}`.
    pub(crate) struct Embeddings {
        computed: Counter,
        cached: Counter,
    }

    impl Default for Embeddings {
        fn default() -> Self {
            Self {
                computed: Counter::noop(),
                cached: Counter::noop(),
            }
        }
    }

    impl Embeddings {
        pub(crate) fn new(source: &str) -> Self {
            metrics::describe_counter!(
                "semantic_cache_embeddings_total",
                "Embeddings of requests, by result (computed by the embedder, or cached)."
            );
            let result = |r: &'static str| counter!("semantic_cache_embeddings_total", "source" => source.to_owned(), "result" => r);
            Self {
                computed: result("computed"),
                cached: result("cached"),
            }
        }

        pub(crate) fn computed(&self, texts: u64) {
            self.computed.increment(texts);
        }

        pub(crate) fn cached(&self) {
            self.cached.increment(1);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    #[derive(Default)]
    pub(crate) struct Lookups;

    impl Lookups {
        pub(crate) fn new(_: &str) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn exact(&self) {}
        #[inline(always)]
        pub(crate) fn similar(&self) {}
        #[inline(always)]
        pub(crate) fn miss(&self) {}
    }

    #[derive(Default)]
    pub(crate) struct Embeddings;

    impl Embeddings {
        pub(crate) fn new(_: &str) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn computed(&self, _: u64) {}
        #[inline(always)]
        pub(crate) fn cached(&self) {}
    }
}

pub(crate) use imp::{Embeddings, Lookups};
