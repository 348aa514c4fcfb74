//! A tower cache that answers by meaning: "What is the capital of France?" and "What's
//! France's capital city?" share one answer when their embeddings are close enough.
//!
//! [`SemanticCacheLayer`] wraps a service whose requests carry a text (an LLM prompt, a
//! search query). A [`PromptOf`] function names each request's namespace and text; then:
//!
//! 1. **exact key first**: a digest of namespace and text, looked up in a `cache-layer`
//!    cache; a hit is answered by a ready future;
//! 2. **by meaning**: the text is embedded (through the [`EmbeddingCache`], so a text is
//!    embedded once) and compared with the live entries of the same namespace by cosine
//!    similarity (an exact scan, or an HNSW graph above `approximate_above` entries); the
//!    most similar one found answers if it reaches the threshold (default 0.95);
//! 3. **single-flight**: a miss whose text is equal or similar to one in flight waits for
//!    that call instead of making its own;
//! 4. otherwise the upstream answers; the answer is cached for the TTL (default 1 h),
//!    indexed, and persisted in an [`EntryStore`](backend::EntryStore) when one is set, so
//!    that a restart or another instance rebuilds its index.
//!
//! Every response is a [`SemanticResponse`]: the value and its [`Lookup`] (exact, similar
//! with its similarity, coalesced, miss, bypass).
//!
//! # Example
//!
//! ```
//! use futures_util::future::BoxFuture;
//! use semantic_cache::{Embedder, Lookup, Prompt, SemanticCacheLayer};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! /// Embeds by the set of words: a stand-in for a real model.
//! struct Words;
//! impl Embedder for Words {
//!     fn model(&self) -> &str { "words" }
//!     fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, BoxError>> {
//!         let vector = |t: &String| {
//!             let mut v = vec![0.0f32; 64];
//!             for w in t.split_whitespace() {
//!                 v[w.bytes().map(usize::from).sum::<usize>() % 64] += 1.0;
//!             }
//!             v
//!         };
//!         Box::pin(async move { Ok(texts.iter().map(vector).collect()) })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let cache = SemanticCacheLayer::builder(
//!     |q: &String| Some(Prompt::new("geo", q.clone())),
//!     Words,
//! )
//! .threshold(0.8)
//! .build()?;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(cache)
//!     .service(service_fn(|_q: String| async { Ok::<_, BoxError>("Paris") }));
//!
//! let first = svc.clone().oneshot("capital of France".to_owned()).await?;
//! assert_eq!(first.lookup, Lookup::Miss);
//! let again = svc.oneshot("capital of France please".to_owned()).await?;
//! assert_eq!(again.value, "Paris");
//! assert!(again.lookup.similarity().unwrap() >= 0.8);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! - [`vector`], [`index`], [`hnsw`]: the pure core (normalization, cosine, threshold, the
//!   per-namespace index: an exact scan, and an HNSW graph above `approximate_above`
//!   entries), no I/O, no clock reads.
//! - [`backend`]: where entries persist ([`backend::memory`], `backend::redis`).
//! - [`Embedder`] and [`EmbeddingCache`]: the user's model and the cache in front of it.

pub mod backend;
mod config;
mod embedder;
mod engine;
mod error;
mod future;
mod handle;
pub mod hnsw;
pub mod index;
mod layer;
mod response;
mod service;
pub mod vector;
mod wire;

pub use config::SemanticConfig;
pub use embedder::{Embedder, EmbeddingCache, EmbeddingStats};
pub use error::{CoalescedError, EmbeddingError};
pub use future::ResponseFuture;
pub use handle::{SemanticHandle, SemanticStats};
pub use layer::{Prompt, PromptOf, SemanticCacheLayer, SemanticCacheLayerBuilder};
pub use response::{Lookup, SemanticResponse};
pub use service::SemanticCache;
