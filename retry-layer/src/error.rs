//! Errors this layer adds to the inner service's own.
//!
//! The inner service's errors pass through unchanged (boxed as `tower::BoxError`), with one
//! exception: when the retry budget refuses a retry, the last error comes back wrapped in
//! [`BudgetExhausted`], whose source chain carries the last error's
//! [`Failure`] marked [`DoNotRetry`](reliability_core::error::DoNotRetry) so that an outer retry layer does
//! not multiply the very load the budget refused.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use reliability_core::failure::Failure;

use crate::schedule::StopReason;

/// A boxed error, as tower passes them around.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The retry budget had no room for another retry; the last attempt's error is inside.
///
/// Its source is the last error's [`Failure`] (a timeout stays a timeout for the HTTP and
/// gRPC mapping), marked [`DoNotRetry`](reliability_core::error::DoNotRetry): retrying
/// elsewhere would defeat the budget.
#[derive(Debug)]
pub struct BudgetExhausted {
    error: BoxError,
    attempts: u32,
    failure: Failure,
}

impl BudgetExhausted {
    pub(crate) fn new(error: BoxError, attempts: u32) -> Self {
        let failure = Failure::of(&*error).not_retryable();
        Self {
            error,
            attempts,
            failure,
        }
    }

    /// The last attempt's error, as the inner service returned it.
    pub fn last_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// The last attempt's error, owned.
    pub fn into_last_error(self) -> BoxError {
        self.error
    }

    /// Attempts made before the budget refused another.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (retry budget exhausted after {} attempt(s))",
            self.error, self.attempts
        )
    }
}

impl StdError for BudgetExhausted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.failure)
    }
}

/// One attempt took longer than the per-attempt timeout. Retried like any timeout; its
/// source is tower's `Elapsed`, so `reliability_core::error::is_timeout` recognises it.
#[derive(Debug)]
pub struct AttemptTimedOut {
    after: Duration,
    elapsed: tower::timeout::error::Elapsed,
}

impl AttemptTimedOut {
    pub(crate) fn new(after: Duration) -> Self {
        Self {
            after,
            elapsed: tower::timeout::error::Elapsed::new(),
        }
    }

    /// The per-attempt timeout that fired.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.after)
    }
}

impl StdError for AttemptTimedOut {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.elapsed)
    }
}

/// The overall deadline passed before any attempt succeeded.
#[derive(Debug)]
pub struct DeadlineExceeded {
    after: Duration,
    attempts: u32,
    elapsed: tower::timeout::error::Elapsed,
}

impl DeadlineExceeded {
    pub(crate) fn new(after: Duration, attempts: u32) -> Self {
        Self {
            after,
            attempts,
            elapsed: tower::timeout::error::Elapsed::new(),
        }
    }

    /// The deadline.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// Attempts started before the deadline.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry deadline of {:?} exceeded after {} attempt(s)",
            self.after, self.attempts
        )
    }
}

impl StdError for DeadlineExceeded {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.elapsed)
    }
}

/// Attached to an answer (an HTTP response's extensions) that the layer stopped retrying:
/// how many attempts it took and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryStopped {
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Why no further attempt was made.
    pub reason: StopReason,
}

#[cfg(test)]
mod tests {
    use super::*;
    use reliability_core::error::{find_in_chain, is_do_not_retry, is_timeout};

    #[test]
    fn budget_exhausted_is_marked_and_keeps_the_error() {
        let err: BoxError = Box::new(BudgetExhausted::new("upstream 503".into(), 2));
        assert!(is_do_not_retry(&*err));
        let found = find_in_chain::<BudgetExhausted>(&*err).unwrap();
        assert_eq!(found.last_error().to_string(), "upstream 503");
        assert_eq!(found.attempts(), 2);
        assert!(err.to_string().contains("budget exhausted"));
    }

    #[test]
    fn timeouts_are_timeouts() {
        assert!(is_timeout(&AttemptTimedOut::new(Duration::from_secs(1))));
        assert!(is_timeout(&DeadlineExceeded::new(
            Duration::from_secs(1),
            3
        )));
        assert!(!is_do_not_retry(&DeadlineExceeded::new(
            Duration::from_secs(1),
            3
        )));
    }
}
