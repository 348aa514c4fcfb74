//! Distributed, tiered rate limiting for tower services.
//!
//! A [`RateLimiter`] decides, per subject (user, API key, client IP, …), whether a request
//! fits its [`Quota`]: up to four windows (second, minute, hour, day), each counted by GCRA
//! or a sliding-window counter, **all decided atomically** — a request refused by one window
//! consumes from none. Users get a [`tier`] (the default table: free, basic, pro,
//! enterprise); custom limits per user and per endpoint override it. State lives in
//! [`MemoryBackend`] (default; bounded memory, idle keys reclaimed) or [`RedisBackend`]
//! (single node or cluster, one Lua script per decision, fail-open onto a local fallback).
//!
//! [`RateLimitLayer`] puts it in front of a service: generic mode (a [`RateLimited`]
//! error), HTTP server mode (429 + `Retry-After` + IETF `RateLimit` fields), gRPC server mode
//! (`RESOURCE_EXHAUSTED`) and client mode (wait for the quota, bounded). A request whose key
//! cannot be extracted is refused ([`KeyNotFound`]: HTTP 400 or 500) unless
//! [`MissingKey`] says to count it globally or let it through.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_layer::{Quota, RateLimitLayer, RateLimited, RateLimiter, key::key_fn, Subject};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limiter = RateLimiter::builder()
//!     .quota(Quota::per(2, Duration::from_secs(1)).unwrap())
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter.clone()).key(key_fn(|user: &&str| Some(Subject::new(*user)))))
//!     .service(service_fn(|_: &str| async { Ok::<_, std::convert::Infallible>("hello") }));
//!
//! assert_eq!(svc.clone().oneshot("alice").await.unwrap(), "hello");
//! assert_eq!(svc.clone().oneshot("alice").await.unwrap(), "hello");
//! let refused = svc.clone().oneshot("alice").await.unwrap_err();
//! assert!(refused.downcast_ref::<RateLimited>().is_some());
//! assert_eq!(svc.oneshot("bob").await.unwrap(), "hello");
//! assert_eq!(limiter.snapshot().rejected, 1);
//! # }
//! ```
//!
//! # Modules
//! - [`gcra`], [`window`], [`quota`]: the pure core (no I/O, time as an argument);
//! - [`tier`]: tier tables; [`limiter`]: policy resolution, metrics, operations API;
//! - [`backend`]: [`MemoryBackend`], [`RedisBackend`];
//! - [`key`]: key extractors; [`http`] and [`grpc`] integrations (features `http`, `grpc`).

pub mod backend;
pub mod error;
pub mod future;
pub mod gcra;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
pub mod layer;
pub mod limiter;
pub mod quota;
pub mod service;
pub mod tier;
pub mod window;

pub use backend::{Backend, FailureMode, Leased, MemoryBackend, RedisBackend};
pub use error::{KeyNotFound, RateLimited, Reason};
pub use key::{KeyExtractor, KeyExtractorExt, MissingKey, Subject};
pub use layer::RateLimitLayer;
pub use limiter::{RateLimiter, RateLimiterBuilder, RateLimiterConfig};
pub use quota::{Algorithm, Decision, Quota, Window, WindowConfig};
pub use service::RateLimit;
pub use tier::{Tier, TierTable, TiersConfig};
