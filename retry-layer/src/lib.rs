//! Retries with jittered backoff for tower services, within a budget that keeps retries
//! from amplifying an outage.
//!
//! - [`backoff`]: constant and exponential backoff with no, full, equal and decorrelated
//!   jitter, exactly as the AWS Architecture Blog defines them; seeded for reproducible
//!   tests.
//! - [`budget`]: the AWS SDK's token-bucket retry quota and an Envoy-style ratio budget,
//!   shared by every clone of a layer.
//! - [`schedule`]: the pure decision core (attempts, `Retry-After`, elapsed limit).
//! - [`RetryLayer`] / [`Retry`] / [`ResponseFuture`]: the tower shell, with a per-attempt
//!   timeout and an overall deadline; failures are judged by
//!   [`reliability_core::classify`] (transient: retry at once; recoverable: back off;
//!   permanent: never; critical: never, and report). Errors marked
//!   [`DoNotRetry`](reliability_core::error::DoNotRetry) (an open circuit) are never
//!   retried.
//! - [`backend`]: the dead-letter sinks (bounded memory, Redis Streams).
//! - `http` (feature `http`) and `grpc` (feature `grpc`): `http::Request<B>` with a bounded
//!   body buffer, one idempotency rule (`http::may_replay`) and `Retry-After`; tonic
//!   clients. The HTTP builder's `build` makes the layer with its body buffer: a retry
//!   layer without it cannot be built from it (the builder's mode type says which).
//!
//! # Feature flags
//!
//! - `http` (default): `http::Request<B>` retries with a bounded body buffer, idempotency
//!   rules and `Retry-After`.
//! - `grpc` (default): tonic channels; gRPC statuses, `grpc-retry-pushback-ms` and
//!   `google.rpc.RetryInfo`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//! use retry_layer::{backoff::{Backoff, Jitter}, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2), Jitter::Full))
//!     .build()
//!     .unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let flaky = service_fn(move |_req: &'static str| {
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move { if n < 2 { Err::<&str, BoxError>("busy".into()) } else { Ok("done") } }
//! });
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(flaky);
//! let answer = svc.ready().await.unwrap().call("order").await.unwrap();
//! assert_eq!(answer, "done");
//! assert_eq!(layer.handle().snapshot().retries, 2);
//! # }
//! ```

pub mod backend;
pub mod backoff;
pub mod budget;
mod error;
mod future;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
mod layer;
mod metrics;
mod policy;
pub mod schedule;
mod service;

pub use self::backend::{DeadLetter, DeadLetterSink, MemorySink, RedisStreamSink};
pub use self::error::{AttemptTimedOut, BoxError, BudgetExhausted, DeadlineExceeded, RetryStopped};
pub use self::future::ResponseFuture;
pub use self::layer::{Plain, RetryBuilder, RetryConfig, RetryEvent, RetryLayer};
pub use self::metrics::RetryHandle;
pub use self::policy::{ClassifierPolicy, Describe, NoDescription, RetryPolicy};
pub use self::schedule::StopReason;
pub use self::service::Retry;
