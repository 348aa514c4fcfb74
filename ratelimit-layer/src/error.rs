//! Why a request was not admitted.

use std::fmt;
use std::time::Duration;

use reliability_core::error::DoNotRetry;

use crate::quota::Decision;

/// Why [`RateLimited`] was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A window of the quota has no room; `retry_after` says when it will.
    Exceeded,
    /// The cost is larger than a window's capacity: it will never fit.
    CostTooHigh,
    /// Client mode: admission would come later than the maximum wait.
    WaitExceeded,
    /// The shared backend is down and the limiter fails closed.
    BackendUnavailable,
}

/// A request was not admitted by the rate limiter.
///
/// Its `source()` is [`DoNotRetry`] for every reason but
/// [`Reason::BackendUnavailable`]: retrying a request the limiter just refused only spends
/// more of the quota.
#[derive(Debug, Clone)]
pub struct RateLimited {
    /// When the same request would be admitted (`None`: never, or unknown).
    pub retry_after: Option<Duration>,
    /// Why it was refused.
    pub reason: Reason,
    /// The name of the policy that applied (tier name, `user` or `endpoint`).
    pub policy: String,
    /// Per-window detail, when the backend answered.
    pub decision: Option<Box<Decision>>,
}

impl RateLimited {
    /// Whether the refusal came from a window of the quota (and not from the backend).
    pub fn is_exceeded(&self) -> bool {
        matches!(
            self.reason,
            Reason::Exceeded | Reason::CostTooHigh | Reason::WaitExceeded
        )
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::BackendUnavailable => {
                write!(f, "rate limit backend unavailable (fail-closed)")?
            }
            Reason::CostTooHigh => write!(f, "request cost exceeds the `{}` quota", self.policy)?,
            Reason::WaitExceeded => write!(
                f,
                "rate limited by `{}` beyond the maximum wait",
                self.policy
            )?,
            Reason::Exceeded => write!(f, "rate limited by `{}`", self.policy)?,
        }
        if let Some(d) = self.retry_after {
            write!(f, "; retry after {} ms", d.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for RateLimited {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.reason {
            Reason::BackendUnavailable => None,
            _ => Some(&DoNotRetry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reliability_core::error::is_do_not_retry;

    #[test]
    fn do_not_retry_is_in_the_chain() {
        let e = RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            reason: Reason::Exceeded,
            policy: "free".into(),
            decision: None,
        };
        assert!(is_do_not_retry(&e));
        let boxed: tower::BoxError = Box::new(e.clone());
        assert!(boxed.downcast_ref::<RateLimited>().is_some());
        assert!(e.to_string().contains("retry after 1000 ms"));
        let down = RateLimited {
            reason: Reason::BackendUnavailable,
            ..e
        };
        assert!(!is_do_not_retry(&down));
    }
}
