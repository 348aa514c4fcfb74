//! Errors of the monitor and the registry. The layer itself never fails a call: the
//! inner service's errors pass through unchanged.

use std::fmt;

use reliability_core::error::ConfigError;

/// A data-quality score outside 0..=1, or NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidScore(pub f64);

impl fmt::Display for InvalidScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data-quality score {} is outside [0, 1]", self.0)
    }
}

impl std::error::Error for InvalidScore {}

/// Why the registry could not hand out a monitor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry already holds its maximum number of monitors.
    #[error("the SLA registry is full ({max} monitors)")]
    Full {
        /// The registry's limit.
        max: usize,
    },
    /// The monitor's name or the registry's default configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}
