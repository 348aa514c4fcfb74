//! [`SemanticCacheLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_layer::CacheLayer;
use cache_layer::backend::Tier;
use cache_layer::codec::Codec;
use reliability_core::clock::{SharedClock, default_clock};
use reliability_core::error::ConfigError;
use tower_layer::Layer;

use crate::backend::EntryStore;
use crate::config::SemanticConfig;
use crate::embedder::{Embedder, EmbeddingCache};
use crate::engine::{Engine, Persist};
use crate::handle::SemanticHandle;
use crate::service::SemanticCache;

/// What the cache compares: a text, within a namespace (an agent type, a model, a
/// tenant). Entries of different namespaces never match each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The namespace.
    pub namespace: String,
    /// The text whose meaning is compared.
    pub text: String,
}

impl Prompt {
    /// `text` in `namespace`.
    pub fn new(namespace: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            text: text.into(),
        }
    }
}

/// Extracts the [`Prompt`] of a request; `None` makes the request bypass the cache.
///
/// Any `Fn(&Req) -> Option<Prompt>` is one.
pub trait PromptOf<Req>: Send + Sync + 'static {
    /// The prompt of `req`, or `None` to bypass the cache.
    fn prompt(&self, req: &Req) -> Option<Prompt>;
}

impl<Req, F> PromptOf<Req> for F
where
    F: Fn(&Req) -> Option<Prompt> + Send + Sync + 'static,
{
    #[inline]
    fn prompt(&self, req: &Req) -> Option<Prompt> {
        self(req)
    }
}

pub(crate) struct Shared<P, V> {
    pub(crate) prompt: P,
    pub(crate) engine: Arc<Engine<V>>,
}

/// Caches answers by meaning: see the [crate docs](crate).
pub struct SemanticCacheLayer<P, V> {
    shared: Arc<Shared<P, V>>,
}

impl<P, V> Clone for SemanticCacheLayer<P, V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<P, V> fmt::Debug for SemanticCacheLayer<P, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCacheLayer")
            .field("engine", &self.shared.engine)
            .finish()
    }
}

impl<S, P, V> Layer<S> for SemanticCacheLayer<P, V> {
    type Service = SemanticCache<S, P, V>;

    fn layer(&self, inner: S) -> Self::Service {
        SemanticCache {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl<P, V: Clone + Send + Sync + 'static> SemanticCacheLayer<P, V> {
    /// A builder that finds prompts with `prompt` and embeds them with `embedder`.
    pub fn builder(prompt: P, embedder: impl Embedder) -> SemanticCacheLayerBuilder<P, V> {
        SemanticCacheLayerBuilder {
            prompt,
            embedder: Arc::new(embedder),
            config: SemanticConfig::default(),
            clock: None,
            persist: None,
            embedding_tier: None,
        }
    }

    /// A layer from a deserialized configuration.
    pub fn from_config(
        config: SemanticConfig,
        prompt: P,
        embedder: impl Embedder,
    ) -> Result<Self, ConfigError> {
        Self::builder(prompt, embedder).config(config).build()
    }

    /// The handle for invalidation, statistics and health.
    pub fn handle(&self) -> SemanticHandle<V> {
        SemanticHandle {
            engine: self.shared.engine.clone(),
        }
    }
}

/// Builds a [`SemanticCacheLayer`]. Defaults: threshold 0.95, TTL 1 h, 10,000 entries,
/// embeddings kept until evicted (100,000 in memory), nothing persisted.
#[must_use]
pub struct SemanticCacheLayerBuilder<P, V> {
    prompt: P,
    embedder: Arc<dyn Embedder>,
    config: SemanticConfig,
    clock: Option<SharedClock>,
    persist: Option<Persist<V>>,
    embedding_tier: Option<Arc<dyn Tier<Bytes>>>,
}

impl<P, V> fmt::Debug for SemanticCacheLayerBuilder<P, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCacheLayerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<P, V: Clone + Send + Sync + 'static> SemanticCacheLayerBuilder<P, V> {
    /// Replaces every setting with `config`.
    pub fn config(mut self, config: SemanticConfig) -> Self {
        self.config = config;
        self
    }

    /// Name in health reports and logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Least cosine similarity for a semantic hit, in `(0, 1]`.
    pub fn threshold(mut self, threshold: f32) -> Self {
        self.config.threshold = threshold;
        self
    }

    /// How long an answer is served.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Most entries held across namespaces.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.config.max_entries = n;
        self
    }

    /// Most namespaces; further ones bypass the cache.
    pub fn max_namespaces(mut self, n: usize) -> Self {
        self.config.max_namespaces = n;
        self
    }

    /// Most vectors in the embedding cache's memory tier.
    pub fn embedding_cache_entries(mut self, n: u64) -> Self {
        self.config.embedding_cache_entries = n;
        self
    }

    /// Expires embeddings after `ttl` (by default they are kept until evicted).
    pub fn embedding_ttl(mut self, ttl: Duration) -> Self {
        self.config.embedding_ttl = Some(ttl);
        self
    }

    /// How often a namespace catches up with entries other instances stored.
    pub fn resync_interval(mut self, every: Duration) -> Self {
        self.config.resync_interval = every;
        self
    }

    /// Above `n` entries a namespace's index answers from an HNSW graph instead of an exact
    /// scan (default 10,000; `usize::MAX`: always exact).
    pub fn approximate_above(mut self, n: usize) -> Self {
        self.config.approximate_above = n;
        self
    }

    /// Longer texts bypass the cache.
    pub fn max_text_bytes(mut self, n: usize) -> Self {
        self.config.max_text_bytes = n;
        self
    }

    /// The clock (default: tokio's, which follows paused test time).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Persists entries in `store`, values encoded by `codec` (values it refuses stay in
    /// memory only).
    pub fn store(mut self, store: Arc<dyn EntryStore>, codec: impl Codec<V>) -> Self {
        self.persist = Some(Persist {
            store,
            codec: Arc::new(codec),
        });
        self
    }

    /// Keeps embeddings in `tier` below the memory tier too (e.g.
    /// [`RedisStore::tier`](crate::backend::redis::RedisStore::tier)), shared by every
    /// instance.
    pub fn embedding_tier(mut self, tier: Arc<dyn Tier<Bytes>>) -> Self {
        self.embedding_tier = Some(tier);
        self
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<SemanticCacheLayer<P, V>, ConfigError> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_else(default_clock);
        let answers = CacheLayer::<fn(&()) -> Option<String>, V>::builder(no_key)
            .name(self.config.name.clone())
            .ttl(self.config.ttl)
            .stale_if_error(Duration::ZERO)
            .max_entries(self.config.max_entries)
            .clock(clock.clone())
            .build()
            .map_err(|e| e.within("answers"))?
            .handle();
        let embeddings = EmbeddingCache::named(
            self.embedder,
            self.config.embedding_cache_entries,
            self.config.embedding_ttl,
            self.embedding_tier,
            clock.clone(),
            &self.config.name,
        );
        let engine = Engine::new(self.config, clock, answers, embeddings, self.persist);
        Ok(SemanticCacheLayer {
            shared: Arc::new(Shared {
                prompt: self.prompt,
                engine: Arc::new(engine),
            }),
        })
    }
}

/// The answer cache is only written and read through its handle.
fn no_key(_: &()) -> Option<String> {
    None
}
