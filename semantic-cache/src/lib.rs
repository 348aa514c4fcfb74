#![doc = include_str!("../README.md")]

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
mod metrics;
mod response;
mod service;
pub mod vector;
mod wire;

pub use config::SemanticConfig;
pub use embedder::{Embedder, EmbeddingCache, EmbeddingStats};
pub use error::{CoalescedError, EmbeddingError};
pub use future::ResponseFuture;
pub use handle::{Rebuilds, SemanticHandle, SemanticStats};
pub use layer::{Prompt, PromptOf, SemanticCacheLayer, SemanticCacheLayerBuilder};
pub use response::{Lookup, SemanticResponse};
pub use service::SemanticCache;
