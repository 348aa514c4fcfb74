//! Why a request was not admitted: [`RateLimited`] (the quota said no) and [`KeyNotFound`]
//! (there was nothing to count the request against); and [`UnknownTier`], an operations
//! call naming a tier the table does not have.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use reliability_core::failure::{Failure, FailureKind};

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
/// Its `source()` is a [`Failure`] for reliability-core's one HTTP/gRPC mapping: in server
/// mode the caller is over its own limit ([`FailureKind::CallerLimited`], 429 /
/// RESOURCE_EXHAUSTED); in client mode (`wait_up_to`) our quota at the upstream is spent
/// ([`FailureKind::QuotaSpent`], 503 / UNAVAILABLE); a fail-closed backend outage is
/// [`FailureKind::BackendUnavailable`]. The failure is marked
/// [`DoNotRetry`](reliability_core::error::DoNotRetry) for every reason but
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
    failure: Failure,
}

impl RateLimited {
    /// A refusal by a server-side limiter (or a backend outage, for
    /// [`Reason::BackendUnavailable`]).
    pub fn new(
        reason: Reason,
        policy: impl Into<String>,
        retry_after: Option<Duration>,
        decision: Option<Box<Decision>>,
    ) -> Self {
        let kind = match reason {
            Reason::BackendUnavailable => FailureKind::BackendUnavailable,
            Reason::WaitExceeded => FailureKind::QuotaSpent,
            Reason::Exceeded | Reason::CostTooHigh => FailureKind::CallerLimited,
        };
        Self {
            retry_after,
            reason,
            policy: policy.into(),
            decision,
            failure: Failure::new(kind).with_retry_after_opt(retry_after),
        }
    }

    /// The same refusal seen by a client-side limiter: the quota that is spent is ours at
    /// the upstream, and a wait the limiter would not make is [`Reason::WaitExceeded`].
    pub(crate) fn client_side(mut self) -> Self {
        if self.reason == Reason::Exceeded {
            self.reason = Reason::WaitExceeded;
        }
        if self.reason != Reason::BackendUnavailable {
            self.failure =
                Failure::new(FailureKind::QuotaSpent).with_retry_after_opt(self.retry_after);
        }
        self
    }

    /// What the refusal means for the caller's answer (reliability-core's failure table).
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

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
        Some(&self.failure)
    }
}

/// A request had no rate-limit key and the layer rejects such requests
/// ([`MissingKey::Reject`](crate::MissingKey::Reject), the default).
///
/// This is not a rate limit: no quota was consulted, nothing was consumed, and the same
/// request will be refused again, so its `source()` is a [`Failure`] marked
/// [`DoNotRetry`](reliability_core::error::DoNotRetry). HTTP mode answers 400
/// when [the client is at fault](KeyNotFound::is_client_error) (a header it did not send),
/// else 500; gRPC mode answers `INVALID_ARGUMENT` or `INTERNAL` likewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNotFound {
    client_error: bool,
    hint: Cow<'static, str>,
    failure: Failure,
}

impl KeyNotFound {
    /// The client did not send what the key is read from; `hint` says what, e.g.
    /// "the request has no usable `x-api-key` header".
    pub fn client(hint: impl Into<Cow<'static, str>>) -> Self {
        Self {
            client_error: true,
            hint: hint.into(),
            failure: Failure::new(FailureKind::BadRequest),
        }
    }

    /// The server did not provide what the key is read from (a setup mistake); `hint` names
    /// the fix, e.g. "serve with `into_make_service_with_connect_info::<SocketAddr>()`".
    pub fn server(hint: impl Into<Cow<'static, str>>) -> Self {
        Self {
            client_error: false,
            hint: hint.into(),
            failure: Failure::new(FailureKind::Misconfigured),
        }
    }

    /// Whether the client can fix it (HTTP 400), rather than the server's operator (500).
    pub fn is_client_error(&self) -> bool {
        self.client_error
    }

    /// What was missing and how to fix it.
    pub fn hint(&self) -> &str {
        &self.hint
    }

    /// [`FailureKind::BadRequest`] or [`FailureKind::Misconfigured`], for the one HTTP/gRPC
    /// mapping.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl fmt::Display for KeyNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no rate-limit key for this request: {}", self.hint)
    }
}

impl std::error::Error for KeyNotFound {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

impl reliability_core::answer::Refusal for KeyNotFound {
    fn failure(&self) -> Failure {
        self.failure
    }
}

impl reliability_core::answer::Refusal for RateLimited {
    fn failure(&self) -> Failure {
        self.failure
    }
}

/// A tier name that is not in the table ([`RateLimiter::set_tier`](crate::RateLimiter::set_tier)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?}")]
pub struct UnknownTier(pub String);

/// Why an operations call that changes a rule failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The tier is not in the table.
    #[error(transparent)]
    UnknownTier(#[from] UnknownTier),
    /// The shared control store refused or could not be reached; nothing changed.
    #[error(transparent)]
    Store(#[from] crate::control::ControlFailure),
}

#[cfg(test)]
mod tests {
    use super::*;
    use reliability_core::error::is_do_not_retry;

    #[test]
    fn do_not_retry_is_in_the_chain() {
        let e = RateLimited::new(Reason::Exceeded, "free", Some(Duration::from_secs(1)), None);
        assert!(is_do_not_retry(&e));
        let boxed: tower::BoxError = Box::new(e.clone());
        assert!(boxed.downcast_ref::<RateLimited>().is_some());
        assert!(e.to_string().contains("retry after 1000 ms"));
        assert_eq!(e.failure().kind(), FailureKind::CallerLimited);
        let spent = e.clone().client_side();
        assert_eq!(spent.reason, Reason::WaitExceeded);
        assert_eq!(spent.failure().kind(), FailureKind::QuotaSpent);
        assert!(is_do_not_retry(&spent));
        let down = RateLimited::new(Reason::BackendUnavailable, "free", None, None);
        assert!(!is_do_not_retry(&down));
        assert_eq!(
            down.client_side().failure().kind(),
            FailureKind::BackendUnavailable
        );
    }

    #[test]
    fn key_not_found_is_final() {
        let e = KeyNotFound::client("the request has no usable `x-api-key` header");
        assert!(is_do_not_retry(&e));
        assert!(e.is_client_error());
        assert!(!KeyNotFound::server("x").is_client_error());
        assert_eq!(
            e.to_string(),
            "no rate-limit key for this request: the request has no usable `x-api-key` header"
        );
        let boxed: tower::BoxError = Box::new(e);
        assert!(boxed.downcast_ref::<KeyNotFound>().is_some());
    }
}
