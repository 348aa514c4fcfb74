//! Reliability stacks for tower: the facade.
//!
//! Re-exports the shared vocabulary today; presets (`cex`, `dex`, `social`), config
//! loading, reliable-client builders and the admin router arrive with the layers.
//!
//! ```
//! use reliability::core::classify::{classify_http_status, Outcome};
//! assert_eq!(classify_http_status(503).outcome, Outcome::Failure);
//! ```

pub use reliability_core as core;
