//! The shared vocabulary of the reliability layers.
//!
//! Small on purpose: only what two or more layers need, so that no layer depends on
//! another.
//!
//! - [`classify`]: what a finished call means (`Success | Failure | Ignore`, and for retries
//!   `Transient | Recoverable | Permanent | Critical`), with classifiers for any `Result`,
//!   HTTP responses and gRPC statuses.
//! - [`error`]: the [`DoNotRetry`](error::DoNotRetry) marker by which one layer's error
//!   tells another "do not retry me", and the [`ConfigError`](error::ConfigError) of every
//!   builder.
//! - [`failure`]: the one mapping of a stack's failures (caller limited, quota spent,
//!   circuit open, timed out, upstream failed...) to HTTP statuses, gRPC codes and
//!   `Retry-After`, used by every layer's HTTP and gRPC mode.
//! - [`clock`]: injectable time that follows tokio's paused clock in tests.
//! - [`redis`]: [`RedisConfig`](redis::RedisConfig) for a node or a cluster, and the shared
//!   connection it opens.
//! - [`key`]: namespacing that makes any user string safe inside a Redis key.
//! - [`health`]: the serde snapshot types layers fill and the facade serves.
//! - `harness` (feature `test-util`): starts real `redis-server` nodes and clusters for
//!   tests.
//!
//! # Example
//!
//! ```
//! use reliability_core::classify::{classify_http_status, Outcome, RetryClass};
//! use reliability_core::key::KeySpace;
//!
//! assert_eq!(classify_http_status(503).outcome, Outcome::Failure);
//! assert_eq!(classify_http_status(503).retry, Some(RetryClass::Recoverable));
//! assert_eq!(classify_http_status(404).outcome, Outcome::Success);
//!
//! let keys = KeySpace::new("app:rl").unwrap();
//! assert_eq!(keys.key("{user}", "day"), "app:rl:{%7Buser%7D}:day");
//! ```
//!
//! # Feature flags
//!
//! - `http`: [`HttpClassifier`](classify::HttpClassifier) for `http::Response`.
//! - `grpc`: [`GrpcClassifier`](classify::GrpcClassifier) for `tonic::Status`.
//! - `test-util`: the Redis test harness.

pub mod classify;
pub mod clock;
pub mod error;
pub mod failure;
#[cfg(feature = "test-util")]
pub mod harness;
pub mod health;
pub mod key;
pub mod redis;
