//! Error markers shared across layers, and the configuration error every builder returns.
//!
//! Layers never depend on each other, yet the retry layer must know that a breaker's
//! "circuit open" is not worth retrying. The breaker's error says so by exposing
//! [`DoNotRetry`] in its [`source`](std::error::Error::source) chain; the retry layer
//! finds it with [`is_do_not_retry`]. Neither crate names the other.
//!
//! # Example
//!
//! ```
//! use std::error::Error;
//! use std::fmt;
//! use reliability_core::error::{is_do_not_retry, DoNotRetry};
//!
//! #[derive(Debug)]
//! struct CircuitOpen;
//! impl fmt::Display for CircuitOpen {
//!     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("circuit open") }
//! }
//! impl Error for CircuitOpen {
//!     fn source(&self) -> Option<&(dyn Error + 'static)> { Some(&DoNotRetry) }
//! }
//!
//! let err: tower::BoxError = Box::new(CircuitOpen);
//! assert!(is_do_not_retry(&*err));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// Marker placed in an error's source chain: "retrying this call cannot help".
///
/// Used by errors our own layers produce (an open circuit, a local rate limit, an
/// exhausted retry budget) so that an outer retry layer does not turn one rejection into
/// many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DoNotRetry;

impl fmt::Display for DoNotRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("marked as not retryable")
    }
}

impl StdError for DoNotRetry {}

/// The first error of type `T` in `err`'s source chain, `err` itself included.
pub fn find_in_chain<'a, T: StdError + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    // Chains are short in practice; the bound guards against a cyclic `source()`.
    let mut current = Some(err);
    for _ in 0..32 {
        let e = current?;
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Whether `err` or one of its sources is marked [`DoNotRetry`].
pub fn is_do_not_retry(err: &(dyn StdError + 'static)) -> bool {
    find_in_chain::<DoNotRetry>(err).is_some()
}

/// Whether `err` or one of its sources is a timeout: tokio's or tower's `Elapsed`, or an
/// I/O error of kind `TimedOut`.
pub fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    for _ in 0..32 {
        let Some(e) = current else { return false };
        if e.is::<tokio::time::error::Elapsed>()
            || e.is::<tower::timeout::error::Elapsed>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// An invalid setting, found when a builder's `build()` validates its configuration.
///
/// The message names the field and the allowed range, so that a bad TOML file or
/// environment variable is easy to fix.
///
/// ```
/// use reliability_core::error::ConfigError;
///
/// let err = ConfigError::out_of_range("failure_rate", "(0, 100]", 150.0);
/// assert_eq!(err.to_string(), "invalid `failure_rate`: 150 is outside (0, 100]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ConfigError {
    /// The setting's name (a dotted path where nested).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// A setting with a message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A value outside its allowed range.
    pub fn out_of_range(field: impl Into<String>, range: &str, value: impl fmt::Display) -> Self {
        Self::new(field, format!("{value} is outside {range}"))
    }

    /// `Ok` when `value` lies within `range` (shown as `[lo, hi]`), else the one message
    /// style of every builder: "invalid `field`: 1.5 is outside [0, 1]".
    ///
    /// ```
    /// use reliability_core::error::ConfigError;
    ///
    /// assert!(ConfigError::check_range("ratio", 0.5, 0.0..=1.0).is_ok());
    /// let err = ConfigError::check_range("ratio", 1.5, 0.0..=1.0).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `ratio`: 1.5 is outside [0, 1]");
    /// ```
    pub fn check_range<T>(
        field: &str,
        value: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<(), ConfigError>
    where
        T: PartialOrd + fmt::Display + fmt::Debug,
    {
        if range.contains(&value) {
            Ok(())
        } else {
            let shown = format!("[{}, {}]", range.start(), range.end());
            Err(Self::out_of_range(field, &shown, value))
        }
    }

    /// `Ok` when the duration is longer than zero and at most `max`, with the message
    /// style of [`check_range`](Self::check_range).
    ///
    /// ```
    /// use std::time::Duration;
    /// use reliability_core::error::ConfigError;
    ///
    /// let hour = Duration::from_secs(3600);
    /// assert!(ConfigError::check_duration("ttl", Duration::from_secs(5), hour).is_ok());
    /// let err = ConfigError::check_duration("ttl", Duration::ZERO, hour).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `ttl`: 0s is outside (0s, 1h]");
    /// ```
    pub fn check_duration(field: &str, value: Duration, max: Duration) -> Result<(), ConfigError> {
        Self::check_duration_in(field, value, max, false)
    }

    /// `Ok` when the duration is zero or at most `max` (a window that may be off).
    pub fn check_duration_or_zero(
        field: &str,
        value: Duration,
        max: Duration,
    ) -> Result<(), ConfigError> {
        Self::check_duration_in(field, value, max, true)
    }

    fn check_duration_in(
        field: &str,
        value: Duration,
        max: Duration,
        zero_allowed: bool,
    ) -> Result<(), ConfigError> {
        if (value.is_zero() && !zero_allowed) || value > max {
            let open = if zero_allowed { '[' } else { '(' };
            let shown = format!("{open}0s, {}]", humantime::format_duration(max));
            Err(Self::out_of_range(
                field,
                &shown,
                humantime::format_duration(value),
            ))
        } else {
            Ok(())
        }
    }

    /// `Ok` when the duration is longer than zero (no upper bound).
    ///
    /// ```
    /// use std::time::Duration;
    /// use reliability_core::error::ConfigError;
    ///
    /// let err = ConfigError::check_positive("open_wait", Duration::ZERO).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `open_wait`: 0s is outside (0s, ∞)");
    /// ```
    pub fn check_positive(field: &str, value: Duration) -> Result<(), ConfigError> {
        if value.is_zero() {
            Err(Self::out_of_range(field, "(0s, ∞)", "0s"))
        } else {
            Ok(())
        }
    }

    /// The same error, with its field nested under `parent` (`cex.breaker.open_wait`).
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Loop;
    impl fmt::Display for Loop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loop")
        }
    }
    impl StdError for Loop {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn cyclic_source_chain_terminates() {
        assert!(!is_do_not_retry(&Loop));
        assert!(!is_timeout(&Loop));
    }

    #[test]
    fn io_timeout_detected() {
        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert!(is_timeout(&e));
        assert!(!is_timeout(&std::io::Error::other("x")));
    }

    #[test]
    fn config_error_nests() {
        let e = ConfigError::new("open_wait", "must be > 0").within("cex.breaker");
        assert_eq!(e.field, "cex.breaker.open_wait");
    }
}
