//! [`SemanticHandle`]: invalidation, statistics and health of a semantic cache.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_layer::CacheHandle;
use reliability_core::health::{
    CacheSnapshot, ComponentDetail, ComponentHealth, HealthSource, HealthStatus, ratio,
};

use crate::embedder::{EmbeddingCache, EmbeddingStats};
use crate::engine::{Engine, ExactKey};

/// A cheap, cloneable handle on a semantic cache, shared with every clone of its layer.
pub struct SemanticHandle<V> {
    pub(crate) engine: Arc<Engine<V>>,
}

impl<V> Clone for SemanticHandle<V> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<V> fmt::Debug for SemanticHandle<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticHandle")
            .field("engine", &self.engine)
            .finish()
    }
}

/// Background rebuilds of namespaces' HNSW graphs, as [`SemanticHandle::rebuilds`]
/// reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilds {
    /// Rebuilds whose snapshot was taken and whose graph is being (or was) built.
    pub started: u64,
    /// Rebuilds that ended, swapped in or abandoned (cancelled by a clear, a shrink, or a
    /// delta log that outgrew the index).
    pub finished: u64,
    /// Rebuilds whose graph was swapped in.
    pub swapped: u64,
}

/// Counters of a semantic cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SemanticStats {
    /// Answers found under the request's exact key.
    pub exact_hits: u64,
    /// Answers found under a similar entry.
    pub similar_hits: u64,
    /// Upstream calls made for the cache.
    pub misses: u64,
    /// Requests that joined another's upstream call.
    pub coalesced: u64,
    /// Requests that bypassed the cache.
    pub bypassed: u64,
    /// Misses whose text could not be embedded (served from the upstream, not cached).
    pub embed_failures: u64,
    /// Entries evicted for room.
    pub evictions: u64,
    /// Failed store operations.
    pub store_errors: u64,
    /// Entries loaded from the store into the index.
    pub loaded: u64,
    /// Entries indexed now, across namespaces.
    pub entries: u64,
    /// The embedding cache's counters.
    pub embeddings: EmbeddingStats,
}

impl<V: Clone + Send + Sync + 'static> SemanticHandle<V> {
    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.engine.config.name
    }

    /// Removes the entry of `text` in `namespace` (its vector, its answer, its stored
    /// copy); upstream calls in flight in the namespace will not store their answers.
    pub async fn invalidate(&self, namespace: &str, text: &str) {
        let key = ExactKey::of(namespace, text).as_str().to_owned();
        self.engine.remove(namespace, vec![key]).await;
    }

    /// Removes every entry of `namespace`.
    pub async fn invalidate_namespace(&self, namespace: &str) {
        let keys = self.engine.keys_of(namespace);
        self.engine.remove(namespace, keys).await;
    }

    /// Removes every entry of every namespace this instance knows.
    pub async fn clear(&self) {
        for ns in self.engine.namespace_names() {
            self.invalidate_namespace(&ns).await;
        }
    }

    /// Entries indexed in `namespace`.
    pub fn len(&self, namespace: &str) -> usize {
        self.engine.indexed(namespace)
    }

    /// The answer cache (`cache-layer`) holding the values.
    pub fn answers(&self) -> &CacheHandle<V> {
        &self.engine.answers
    }

    /// The embedding cache, for batch pre-embedding and its counters.
    pub fn embeddings(&self) -> &EmbeddingCache {
        &self.engine.embeddings
    }

    /// Background rebuilds of the namespaces' HNSW graphs (started, finished), as a
    /// `watch` receiver: `rx.wait_for(|r| r.started > 0)` waits for one to start. A
    /// rebuild runs on a blocking thread from a snapshot; lookups meanwhile use the
    /// previous graph (or the exact scan) and are never blocked by it.
    pub fn rebuilds(&self) -> tokio::sync::watch::Receiver<Rebuilds> {
        self.engine.rebuilds.subscribe()
    }

    /// Every counter.
    pub fn stats(&self) -> SemanticStats {
        let m = &self.engine.metrics;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SemanticStats {
            exact_hits: r(&m.exact_hits),
            similar_hits: r(&m.similar_hits),
            misses: r(&m.misses),
            coalesced: r(&m.coalesced),
            bypassed: r(&m.bypassed),
            embed_failures: r(&m.embed_failures),
            evictions: r(&m.evictions),
            store_errors: r(&m.store_errors),
            loaded: r(&m.loaded),
            entries: self.engine.total.load(Ordering::Relaxed) as u64,
            embeddings: self.engine.embeddings.stats(),
        }
    }

    /// The health snapshot's figures (levels are the answer cache's).
    pub fn snapshot(&self) -> CacheSnapshot {
        let s = self.stats();
        let hits = s.exact_hits + s.similar_hits + s.coalesced;
        CacheSnapshot {
            levels: self.engine.answers.snapshot().levels,
            hits,
            misses: s.misses,
            stale_served: 0,
            coalesced: s.coalesced,
            rejected_too_large: 0,
            hit_rate: ratio(hits, hits + s.misses),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> HealthSource for SemanticHandle<V> {
    /// One component named after the cache: DEGRADED for a minute after the embedder or
    /// the store failed (requests then go to the upstream without semantic lookup, or
    /// entries are not persisted), HEALTHY otherwise.
    fn health(&self) -> Vec<ComponentHealth> {
        let recent = self
            .engine
            .since_last_failure()
            .filter(|ago| *ago < Duration::from_secs(60));
        let detail = ComponentDetail::Cache(self.snapshot());
        vec![match recent {
            Some(ago) => ComponentHealth::new(self.name(), HealthStatus::Degraded, detail)
                .with_message(format!("embedder or store failed {}s ago", ago.as_secs())),
            None => ComponentHealth::new(self.name(), HealthStatus::Healthy, detail),
        }]
    }
}
