//! A circuit breaker for tower services.
//!
//! A breaker watches the outcomes of the calls it lets through and stops calling an
//! upstream that is failing, so that the upstream gets room to recover and callers fail
//! in nanoseconds instead of waiting for a timeout.
//!
//! - States CLOSED → OPEN → HALF_OPEN → CLOSED | OPEN, plus FORCED_OPEN for operators
//!   ([`state`] has the rules, which a model check in `tests/` restates).
//! - Windows by count (the last N calls) or by time (the last T seconds, one bucket per
//!   second, running totals): see [`window`].
//! - Trips on failure rate, slow-call rate and consecutive failures, never on rates before
//!   `minimum_calls`; a limited number of HALF_OPEN probes decide whether to close.
//! - What counts as failure comes from a [`Classify`](reliability_core::classify::Classify)
//!   of `reliability-core`: errors, HTTP statuses, gRPC codes; "ignore" counts neither way.
//! - Modes: a typed [`CircuitOpen`] error (generic, marked "do not retry"), a `503` with
//!   `Retry-After` ([`http`]), gRPC `UNAVAILABLE` (`grpc`, feature `grpc`), or a [`fallback`].
//! - Per-key breakers through a bounded [`registry`].
//! - Manual [`reset`](Breaker::reset), [`force_open`](Breaker::force_open),
//!   [`isolate`](Breaker::isolate) / [`release`](Breaker::release); listeners,
//!   `tracing` events, and [`metrics`](Breaker::metrics) that fill the core's
//!   [`BreakerSnapshot`](reliability_core::health::BreakerSnapshot).
//!
//! The CLOSED path takes no lock and allocates nothing: one atomic load to admit, a few
//! atomic adds to record.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breaker_layer::{CircuitBreakerLayer, CircuitOpen};
//! use reliability_core::health::BreakerState;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::builder("exchange")
//!     .consecutive_failures(3)
//!     .open_wait(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|_: ()| async { Err::<(), BoxError>("upstream down".into()) }));
//!
//! for _ in 0..3 {
//!     assert!(svc.ready().await.unwrap().call(()).await.is_err());
//! }
//! assert_eq!(layer.breaker().state(), BreakerState::Open);
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("fails fast");
//! assert_eq!(open.name(), "exchange");
//! assert!(reliability_core::error::is_do_not_retry(&*err));
//! # }
//! ```
//!
//! # Feature flags
//!
//! - `http` (default): [`http::AsHttp`], 503 + `Retry-After`.
//! - `grpc`: `grpc::AsGrpc`, gRPC `UNAVAILABLE`, and `From<CircuitOpen> for tonic::Status`.

mod breaker;
pub mod config;
mod error;
pub mod fallback;
mod future;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
mod layer;
pub mod registry;
mod respond;
mod service;
pub mod state;
pub mod window;

pub use breaker::{Breaker, BreakerMetrics, Listener};
pub use config::{CircuitBreakerConfig, RegistryConfig, WindowConfig};
pub use error::CircuitOpen;
pub use fallback::{FallbackCause, WithFallback};
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerBuilder, CircuitBreakerLayer};
pub use registry::{BreakerRegistry, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
pub use respond::{AsError, Respond};
pub use service::CircuitBreaker;
pub use state::{Transition, TransitionCause};
