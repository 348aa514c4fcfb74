//! Reliability stacks for tower: the facade.
//!
//! - [`config`]: the settings of the CEX, DEX and social presets, from the source tables,
//!   a TOML file and `RELIABILITY__*` environment variables.
//! - [`client`]: outgoing HTTP clients (hyper-util, reqwest) as buffered tower services.
//! - [`presets`]: the CEX, DEX and social stacks, built around any service.
//! - [`health`]: one health document for every SLA monitor, breaker, cache and limiter.
//! - `admin` (feature `admin`): the token-guarded admin router for axum and the live
//!   dashboard.
//! - [`core`]: the shared vocabulary (classification, clock, Redis, health snapshots).
//!
//! ```
//! use reliability::config::{Settings, SourceKind};
//!
//! let settings = Settings::default();
//! assert_eq!(settings.source(SourceKind::Cex).breaker.failure_threshold, 5);
//! ```

#[cfg(feature = "admin")]
pub mod admin;
pub mod client;
pub mod config;
pub mod health;
pub mod presets;

pub use reliability_core as core;
