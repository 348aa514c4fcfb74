//! Reliability stacks for tower: the facade.
//!
//! - [`config`]: the settings of the CEX, DEX and social presets, from the source tables,
//!   a TOML file and `RELIABILITY__*` environment variables.
//! - [`core`]: the shared vocabulary (classification, clock, Redis, health snapshots).
//!
//! ```
//! use reliability::config::{Settings, SourceKind};
//!
//! let settings = Settings::default();
//! assert_eq!(settings.source(SourceKind::Cex).breaker.failure_threshold, 5);
//! ```

pub mod config;

pub use reliability_core as core;
