//! [`BulkheadFull`]: the typed refusal of a full limiter.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reliability_core::answer::Refusal;
use reliability_core::failure::{Failure, FailureKind};

use crate::priority::Priority;

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The limit was reached and the layer rejects at once (no queue).
    LimitReached,
    /// The limit was reached and the wait queue was full of calls of this class or higher.
    QueueFull,
    /// The call waited `queue_timeout` without a place freeing up.
    QueueTimeout,
    /// The call was queued, then pushed out by a call of a higher class.
    Shed,
    /// A per-key layer tracks `max_keys` keys, all of them busy.
    TooManyKeys,
    /// The call waited in the queue until its own deadline passed (the layer built
    /// `with_deadlines`); answered as a timeout (504 / `DEADLINE_EXCEEDED`), not as overload.
    DeadlineExceeded,
}

impl Rejection {
    /// A short name, as logs and spans show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::LimitReached => "limit_reached",
            Rejection::QueueFull => "queue_full",
            Rejection::QueueTimeout => "queue_timeout",
            Rejection::Shed => "shed",
            Rejection::TooManyKeys => "too_many_keys",
            Rejection::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// A call was refused because too many calls were in flight: the limit was reached, the
/// queue was full, the wait timed out, or a higher class pushed it out of the queue.
///
/// Its [`source`](StdError::source) is a [`Failure`] of kind
/// [`Overloaded`](FailureKind::Overloaded) with the configured `Retry-After`, marked
/// [`DoNotRetry`](reliability_core::error::DoNotRetry): a retry layer above does not turn
/// one refusal into many, and the HTTP and gRPC modes answer it with 503 / RESOURCE_EXHAUSTED.
///
/// ```
/// # use concurrency_layer::{BulkheadFull, Rejection};
/// # fn check(err: tower::BoxError) {
/// if let Some(full) = err.downcast_ref::<BulkheadFull>() {
///     assert_eq!(full.rejection(), Rejection::LimitReached);
///     println!("{} is full at {} calls", full.name(), full.limit());
/// }
/// assert!(reliability_core::error::is_do_not_retry(&*err));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    name: Arc<str>,
    rejection: Rejection,
    priority: Priority,
    limit: usize,
    failure: Failure,
}

impl BulkheadFull {
    pub(crate) fn new(
        name: Arc<str>,
        rejection: Rejection,
        priority: Priority,
        limit: usize,
        retry_after: Duration,
    ) -> Self {
        Self {
            name,
            rejection,
            priority,
            limit,
            failure: Failure::new(FailureKind::Overloaded).with_retry_after(retry_after),
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the call was refused.
    pub fn rejection(&self) -> Rejection {
        self.rejection
    }

    /// The refused call's class.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The limit when the call was refused.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How long the caller should wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.failure.retry_after()
    }

    /// The same refusal, because the call's own deadline passed while it was queued: a
    /// timeout in the failure table, with no `Retry-After`.
    pub(crate) fn at_deadline(self) -> Self {
        Self {
            rejection: Rejection::DeadlineExceeded,
            failure: Failure::new(FailureKind::TimedOut),
            ..self
        }
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, limit) = (&self.name, self.limit);
        match self.rejection {
            Rejection::LimitReached => {
                write!(f, "`{name}` is at its limit of {limit} calls in flight")
            }
            Rejection::QueueFull => write!(
                f,
                "`{name}` is at its limit of {limit} calls in flight and its queue is full"
            ),
            Rejection::QueueTimeout => write!(
                f,
                "`{name}` is at its limit of {limit} calls in flight; no place freed in time"
            ),
            Rejection::Shed => write!(
                f,
                "`{name}` shed this {} priority call for a more important one",
                self.priority
            ),
            Rejection::TooManyKeys => write!(f, "`{name}` tracks too many busy keys"),
            Rejection::DeadlineExceeded => write!(
                f,
                "`{name}` is at its limit of {limit} calls in flight; the call's deadline passed in its queue"
            ),
        }
    }
}

impl StdError for BulkheadFull {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.failure)
    }
}

impl Refusal for BulkheadFull {
    fn failure(&self) -> Failure {
        self.failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloaded_do_not_retry_with_retry_after() {
        let full = BulkheadFull::new(
            "orders".into(),
            Rejection::QueueTimeout,
            Priority::Low,
            8,
            Duration::from_millis(1_500),
        );
        assert_eq!(
            full.to_string(),
            "`orders` is at its limit of 8 calls in flight; no place freed in time"
        );
        let failure = Refusal::failure(&full);
        assert_eq!(failure.kind(), FailureKind::Overloaded);
        assert_eq!(failure.retry_after_secs(), Some(2));
        let boxed: tower::BoxError = Box::new(full);
        assert_eq!(Failure::of(&*boxed).kind(), FailureKind::Overloaded);
        assert!(reliability_core::error::is_do_not_retry(&*boxed));
    }
}
