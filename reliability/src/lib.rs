#![doc = include_str!("../README.md")]

#[cfg(feature = "admin")]
pub mod admin;
pub mod client;
pub mod config;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod health;
pub mod presets;

pub use error::Error;

// The README's examples are compiled as doctests, so its one-line client cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use reliability_core as core;

/// The concurrency-limit layer ([`concurrency_layer`]): bulkheads, adaptive limits, load
/// shedding.
pub use concurrency_layer as concurrency;

/// The hedging layer ([`hedge_layer`]): a second copy of a slow idempotent read, within a
/// budget.
pub use hedge_layer as hedge;

/// The fault-injection layer ([`chaos_layer`]): errors, latency and answers at a seeded
/// rate, switchable at run time. Feature `chaos`.
#[cfg(feature = "chaos")]
pub use chaos_layer as chaos;

/// The circuit-breaker layer ([`breaker_layer`]).
pub use breaker_layer as breaker;
/// The cache layer ([`cache_layer`]).
pub use cache_layer as cache;
/// The rate-limit layer ([`ratelimit_layer`]).
pub use ratelimit_layer as ratelimit;
/// The retry layer ([`retry_layer`]).
pub use retry_layer as retry;
/// The SLA-monitor layer ([`sla_layer`]).
pub use sla_layer as sla;
