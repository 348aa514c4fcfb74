//! The [`Embedder`] trait the user implements, and the [`EmbeddingCache`] in front of it.
//!
//! The embedding cache maps (model, text) to the text's normalized vector. A model maps a
//! text to the same vector for ever, so entries do not expire by default; they sit in a
//! `cache-layer` memory tier (bounded, TinyLFU) and, when given, in a lower tier such as
//! Redis, so that a text is embedded once per fleet rather than once per process.
//!
//! Keys are a SHA-256 digest of the model name and the text (length-prefixed, so no two
//! pairs collide by concatenation): texts are never stored in keys.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cache_layer::backend::memory::{MemoryBounds, MemoryTier};
use cache_layer::backend::{EntryMeta, Stored, Tier};
use futures_util::future::BoxFuture;
use reliability_core::clock::SharedClock;
use tower::BoxError;

use crate::error::EmbeddingError;
use crate::metrics::Embeddings;
use crate::vector::normalize;
use crate::wire;

/// Turns texts into vectors: the model the user brings (an HTTP embeddings API, a local
/// model). Batched: one call may carry many texts.
///
/// ```
/// use futures_util::future::BoxFuture;
/// use semantic_cache::Embedder;
/// use tower::BoxError;
///
/// /// Counts letters: a toy model.
/// struct Letters;
///
/// impl Embedder for Letters {
///     fn model(&self) -> &str {
///         "letters-v1"
///     }
///     fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>> {
///         Box::pin(async move {
///             Ok(texts
///                 .iter()
///                 .map(|t| {
///                     let mut v = vec![0.0; 26];
///                     for b in t.bytes().filter(u8::is_ascii_lowercase) {
///                         v[usize::from(b - b'a')] += 1.0;
///                     }
///                     v
///                 })
///                 .collect())
///         })
///     }
/// }
/// ```
pub trait Embedder: Send + Sync + 'static {
    /// The model's name: part of every embedding-cache key, so that two models never
    /// share vectors.
    fn model(&self) -> &str;

    /// One vector per text, in order. Vectors need not be normalized; they must all have
    /// the model's dimension.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>>;
}

impl<E: Embedder + ?Sized> Embedder for Arc<E> {
    fn model(&self) -> &str {
        (**self).model()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>> {
        (**self).embed(texts)
    }
}

/// "No expiry": ten years, which every tier accepts as a TTL.
const NO_EXPIRY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Counters of an [`EmbeddingCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddingStats {
    /// Texts answered from the memory tier.
    pub memory_hits: u64,
    /// Texts answered from the lower tier.
    pub lower_hits: u64,
    /// Texts sent to the embedder.
    pub embedded: u64,
    /// Calls made to the embedder.
    pub batches: u64,
    /// Calls that failed or returned unusable vectors.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    lower_hits: AtomicU64,
    embedded: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    exported: Embeddings,
}

/// Embeddings by (model, text hash), on `cache-layer` tiers, in front of an [`Embedder`].
///
/// Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct EmbeddingCache {
    inner: Arc<Inner>,
}

struct Inner {
    embedder: Arc<dyn Embedder>,
    memory: MemoryTier<Arc<[f32]>>,
    lower: Option<Arc<dyn Tier<Bytes>>>,
    ttl: Duration,
    clock: SharedClock,
    counters: Counters,
}

impl fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingCache")
            .field("model", &self.inner.embedder.model())
            .field("memory", &self.inner.memory)
            .field("lower", &self.inner.lower)
            .finish()
    }
}

impl EmbeddingCache {
    /// A cache of at most `max_entries` vectors in memory, kept for `ttl` (`None`: until
    /// evicted), over `lower` when given.
    pub fn new(
        embedder: Arc<dyn Embedder>,
        max_entries: u64,
        ttl: Option<Duration>,
        lower: Option<Arc<dyn Tier<Bytes>>>,
        clock: SharedClock,
    ) -> Self {
        Self::exported(embedder, max_entries, ttl, lower, clock, Default::default())
    }

    /// The embedding cache of the semantic cache `source`, its counters exported under
    /// that name.
    pub(crate) fn named(
        embedder: Arc<dyn Embedder>,
        max_entries: u64,
        ttl: Option<Duration>,
        lower: Option<Arc<dyn Tier<Bytes>>>,
        clock: SharedClock,
        source: &str,
    ) -> Self {
        let exported = Embeddings::new(source);
        Self::exported(embedder, max_entries, ttl, lower, clock, exported)
    }

    fn exported(
        embedder: Arc<dyn Embedder>,
        max_entries: u64,
        ttl: Option<Duration>,
        lower: Option<Arc<dyn Tier<Bytes>>>,
        clock: SharedClock,
        exported: Embeddings,
    ) -> Self {
        let bounds = MemoryBounds {
            max_entries: Some(max_entries.max(1)),
            ..MemoryBounds::default()
        };
        Self {
            inner: Arc::new(Inner {
                embedder,
                memory: MemoryTier::new(bounds, clock.clone()),
                lower,
                ttl: ttl.unwrap_or(NO_EXPIRY),
                clock,
                counters: Counters {
                    exported,
                    ..Counters::default()
                },
            }),
        }
    }

    /// The embedder's model name.
    pub fn model(&self) -> &str {
        self.inner.embedder.model()
    }

    /// The cache key of `text` under this model.
    pub fn key(&self, text: &str) -> String {
        format!(
            "emb:{}",
            wire::digest(&[self.model().as_bytes(), text.as_bytes()])
        )
    }

    /// The normalized vector of `text`.
    pub async fn embed_one(&self, text: &str) -> Result<Arc<[f32]>, EmbeddingError> {
        let mut v = self.embed(&[text]).await?;
        Ok(v.swap_remove(0))
    }

    /// The normalized vectors of `texts`, in order: cached ones from the tiers, the others
    /// from one embedder call (each distinct text sent once).
    pub async fn embed(&self, texts: &[&str]) -> Result<Vec<Arc<[f32]>>, EmbeddingError> {
        let c = &self.inner.counters;
        let mut out: Vec<Option<Arc<[f32]>>> = vec![None; texts.len()];
        let mut missing: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, text) in texts.iter().enumerate() {
            let key = self.key(text);
            if let Some(v) = self.lookup(&key).await {
                out[i] = Some(v);
            } else {
                missing.entry(text).or_default().push(i);
            }
        }
        if !missing.is_empty() {
            let batch: Vec<String> = missing.keys().map(|t| (*t).to_owned()).collect();
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.embedded.fetch_add(batch.len() as u64, Ordering::Relaxed);
            c.exported.computed(batch.len() as u64);
            let vectors = self.call(&batch).await.inspect_err(|_| {
                c.errors.fetch_add(1, Ordering::Relaxed);
            })?;
            for (text, vector) in batch.iter().zip(vectors) {
                self.store(&self.key(text), &vector).await;
                for &i in &missing[text.as_str()] {
                    out[i] = Some(vector.clone());
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    async fn call(&self, batch: &[String]) -> Result<Vec<Arc<[f32]>>, EmbeddingError> {
        let raw = self
            .inner
            .embedder
            .embed(batch)
            .await
            .map_err(EmbeddingError::Embedder)?;
        if raw.len() != batch.len() {
            return Err(EmbeddingError::WrongCount {
                expected: batch.len(),
                got: raw.len(),
            });
        }
        raw.into_iter()
            .map(|mut v| {
                normalize(&mut v)?;
                Ok(Arc::from(v))
            })
            .collect()
    }

    async fn lookup(&self, key: &str) -> Option<Arc<[f32]>> {
        let c = &self.inner.counters;
        if let Ok(Some(s)) = self.inner.memory.get(key).await
            && self.live(&s.meta)
        {
            c.memory_hits.fetch_add(1, Ordering::Relaxed);
            c.exported.cached();
            return Some(s.value);
        }
        let lower = self.inner.lower.as_ref()?;
        match lower.get(key).await {
            Ok(Some(s)) if self.live(&s.meta) => {
                let v: Arc<[f32]> = wire::decode_vector(&s.value)?.into();
                c.lower_hits.fetch_add(1, Ordering::Relaxed);
                c.exported.cached();
                self.remember(key, &v, s.meta).await;
                Some(v)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "embedding lower tier unavailable");
                None
            }
        }
    }

    async fn store(&self, key: &str, vector: &Arc<[f32]>) {
        let meta = EntryMeta {
            stored_at: self.inner.clock.wall(),
            ttl: self.inner.ttl,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            fetch_cost: Duration::ZERO,
            negative: false,
            tags: Vec::new(),
        };
        self.remember(key, vector, meta.clone()).await;
        if let Some(lower) = &self.inner.lower {
            let value = wire::encode_vector(vector);
            if let Err(e) = lower.set(key, Stored { value, meta }).await {
                tracing::debug!(error = %e, "embedding not written to the lower tier");
            }
        }
    }

    /// Keeps `vector` in the memory tier (which cannot fail).
    async fn remember(&self, key: &str, vector: &Arc<[f32]>, meta: EntryMeta) {
        let value = vector.clone();
        let _ = self.inner.memory.set(key, Stored { value, meta }).await;
    }

    fn live(&self, meta: &EntryMeta) -> bool {
        self.inner
            .clock
            .wall()
            .duration_since(meta.stored_at)
            .map_or(true, |age| age < meta.ttl)
    }

    /// Every counter.
    pub fn stats(&self) -> EmbeddingStats {
        let c = &self.inner.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EmbeddingStats {
            memory_hits: r(&c.memory_hits),
            lower_hits: r(&c.lower_hits),
            embedded: r(&c.embedded),
            batches: r(&c.batches),
            errors: r(&c.errors),
        }
    }
}
