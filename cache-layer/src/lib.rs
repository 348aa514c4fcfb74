//! Multi-level caching for tower services, with stale-while-revalidate, stale-if-error and
//! single-flight.
//!
//! [`CacheLayer`] wraps any [`Service`](tower_service::Service) whose responses can be
//! cloned. A key function turns each request into a cache key (`None` bypasses the
//! cache); answers are kept in an in-process `moka` tier (L1) under a per-entry
//! [freshness model](freshness):
//!
//! - **fresh** until the TTL: served from memory, with a ready future (no allocation);
//! - **stale-while-revalidate**: served at once while exactly one background refresh runs;
//! - **stale-if-error** (default 2× TTL): served when the upstream fails, logged, counted;
//! - then gone, and never staler than `max_staleness`.
//!
//! Concurrent misses of one key make one upstream call ([single-flight](singleflight)
//! semantics: everyone gets the same value or the same error; a cancelled leader hands
//! over at once). Hot keys are refreshed early by XFetch; TTLs may be jittered and adapt
//! per key; negative answers may be cached on their own TTL; keys and values are
//! validated. [`CacheHandle`] invalidates (key, prefix, tag, all), writes, exports the hot
//! keys and reports [`CacheSnapshot`](reliability_core::health::CacheSnapshot) health.
//! The `http` feature adds [`http::HttpCacheLayer`] (Vary, `Cache-Control`, credential
//! isolation, RFC 9211 `Cache-Status`). The `redis` feature adds L2
//! ([`backend::redis::RedisTier`], [`CacheLayerBuilder::l2`]): read-through, write-behind,
//! pub/sub invalidation across instances, distributed single-flight. The `disk` feature
//! adds L3 ([`backend::disk::DiskTier`], [`CacheLayerBuilder::l3`]): crash-safe, bounded,
//! warm start.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_layer::CacheLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt, BoxError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let cache = CacheLayer::builder(|symbol: &String| Some(format!("price:{symbol}")))
//!     .ttl(Duration::from_secs(5))
//!     .stale_while_revalidate(Duration::from_secs(10))
//!     .build()?;
//! let handle = cache.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(cache)
//!     .service(service_fn(|s: String| async move { Ok::<_, BoxError>(s.len() as u64) }));
//!
//! assert_eq!(svc.clone().oneshot("BTC".to_owned()).await?, 3); // miss: upstream
//! assert_eq!(svc.oneshot("BTC".to_owned()).await?, 3); // hit
//! assert_eq!(handle.stats().hits, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! - [`freshness`], [`adaptive`]: the pure cores (take `now`, no I/O).
//! - [`backend`]: the [`Tier`](backend::Tier) trait, L1 ([`backend::memory`]), L2
//!   (`backend::redis`), L3 (`backend::disk`) and their byte format (`backend::wire`).
//! - [`codec`]: how values become bytes for L2 and L3.
//! - [`singleflight`]: how concurrent misses share one upstream call.
//! - [`validation`]: key and value limits.

pub mod adaptive;
pub mod backend;
pub mod codec;
mod config;
#[cfg(feature = "redis")]
mod distributed;
mod engine;
mod error;
pub mod freshness;
mod future;
mod handle;

#[cfg(feature = "http")]
pub mod http;
mod layer;
mod metrics;
#[cfg(feature = "disk")]
mod persistent;
mod service;
pub mod singleflight;
mod status;
pub mod validation;

pub use backend::memory::EvictionPolicy;
pub use config::{AdaptiveConfig, CacheConfig, WritePolicy};
pub use engine::{Directive, StoreAction};
pub use error::{InvalidKey, PutError, SharedError, ValueTooLarge};
pub use future::ResponseFuture;
pub use handle::{CacheHandle, CacheStats};
pub use layer::{CacheKey, CacheLayer, CacheLayerBuilder};
pub use service::{Cache, WarmReport};
pub use status::CacheStatus;
pub use validation::ValidationMode;
