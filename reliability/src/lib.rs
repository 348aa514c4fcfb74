//! Reliability stacks for tower: the facade.
//!
//! - [`config`]: the settings of the CEX, DEX and social presets: each layer's own
//!   configuration, from the preset tables, a TOML file and `RELIABILITY__*` environment
//!   variables.
//! - [`client`]: outgoing HTTP clients (hyper-util over HTTPS with rustls, reqwest) as
//!   buffered tower services.
//! - [`presets`]: the CEX, DEX and social stacks, built around any service.
//! - `grpc` (feature `grpc`): `Preset::grpc_client`, a tonic `Channel` in a preset's
//!   stack (retry, breaker, client quota, SLA, attempt timeout; no cache).
//! - [`health`]: one health document for every SLA monitor, breaker, cache and limiter.
//! - `admin` (feature `admin`): the token-guarded admin router for axum and the live
//!   dashboard.
//! - [`Error`]: one error type for a whole stack, with `is_*` questions, an HTTP answer
//!   and a tonic `Status`.
//! - [`cache`], [`breaker`], [`retry`], [`ratelimit`], [`sla`]: the layers, re-exported.
//! - [`core`]: the shared vocabulary (classification, clock, Redis, health snapshots).
//!
//! ```
//! use reliability::config::{Settings, SourceKind};
//!
//! let settings = Settings::default();
//! assert_eq!(settings.source(SourceKind::Cex).breaker.consecutive_failures, Some(5));
//! ```

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
