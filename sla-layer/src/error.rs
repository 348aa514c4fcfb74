//! Errors of the monitor and the registry. The layer itself never fails a call: the
//! inner service's errors pass through unchanged.

use std::fmt;

/// A data-quality score outside 0..=1, or NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidScore(pub f64);

impl fmt::Display for InvalidScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data-quality score {} is outside [0, 1]", self.0)
    }
}

impl std::error::Error for InvalidScore {}

/// The registry already holds its maximum number of monitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SLA registry is full ({max} monitors)")]
pub struct RegistryFull {
    /// The registry's limit.
    pub max: usize,
}
