#![doc = include_str!("../README.md")]

pub mod adaptive;
pub mod backend;
pub mod codec;
mod config;
mod engine;
mod error;
pub mod freshness;
mod future;
mod handle;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod lower;
mod metrics;
mod service;
pub mod singleflight;
mod status;
pub mod validation;

pub use config::{AdaptiveConfig, CacheConfig, EvictionPolicy, ValidationMode, WritePolicy};
pub use engine::{Directive, StoreAction};
pub use error::{FlushError, InvalidKey, PutError, SharedError, TierFlushError, ValueTooLarge};
pub use future::ResponseFuture;
pub use handle::{CacheHandle, CacheStats};
pub use layer::{CacheKey, CacheLayer, CacheLayerBuilder};
pub use service::{Cache, WarmReport};
pub use status::{CacheStatus, Forwarded};
