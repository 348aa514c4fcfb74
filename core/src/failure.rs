//! One mapping from a stack's failures to HTTP answers and gRPC codes.
//!
//! A caller of a stack needs one answer to "what went wrong?", whichever layer refused or
//! failed: the server that fronts the stack turns it into a status code, a gRPC client
//! into a `tonic::Code`, a person into a log line. Every layer's HTTP and gRPC mode, the
//! facade's `Error` and the example server use this table, so they cannot disagree:
//!
//! | [`FailureKind`] | HTTP | gRPC | `Retry-After` |
//! |---|---|---|---|
//! | [`CallerLimited`](FailureKind::CallerLimited): the caller is over its own limit | 429 | RESOURCE_EXHAUSTED | when known |
//! | [`QuotaSpent`](FailureKind::QuotaSpent): our quota at the upstream is spent | 503 | UNAVAILABLE | when known |
//! | [`CircuitOpen`](FailureKind::CircuitOpen): the upstream's circuit is open | 503 | UNAVAILABLE | when known |
//! | [`Overloaded`](FailureKind::Overloaded): too many calls in flight | 503 | RESOURCE_EXHAUSTED | when known |
//! | [`BackendUnavailable`](FailureKind::BackendUnavailable): a shared backend is down, failing closed | 503 | UNAVAILABLE | when known |
//! | [`TimedOut`](FailureKind::TimedOut): an attempt or the call ran out of time | 504 | DEADLINE_EXCEEDED | no |
//! | [`UpstreamFailed`](FailureKind::UpstreamFailed): the upstream failed | 502 | UNAVAILABLE | no |
//! | [`BadRequest`](FailureKind::BadRequest): the request lacks what the stack needs | 400 | INVALID_ARGUMENT | no |
//! | [`Misconfigured`](FailureKind::Misconfigured): the stack is set up wrongly for this request | 500 | INTERNAL | no |
//!
//! A layer's typed error carries a [`Failure`] (kind and wait) in its
//! [`source`](std::error::Error::source) chain, the way it carries the
//! [`DoNotRetry`] marker: [`Failure::of`] finds it in any error without
//! knowing the layer's types; an error that carries none is a timeout
//! ([`is_timeout`] says so) or else an upstream failure.
//!
//! `Retry-After` is always whole seconds **rounded up** (a client told "0" or told too
//! early comes back into the same refusal) and at least 1.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability_core::failure::{Failure, FailureKind};
//!
//! let refused: tower::BoxError =
//!     Box::new(Failure::new(FailureKind::CallerLimited).with_retry_after(Duration::from_millis(1_200)));
//! let failure = Failure::of(&*refused);
//! assert_eq!(failure.kind(), FailureKind::CallerLimited);
//! assert_eq!(failure.retry_after_secs(), Some(2));
//! assert_eq!(failure.kind().http_status_code(), 429);
//! assert!(reliability_core::error::is_do_not_retry(&*refused));
//!
//! let upstream: tower::BoxError = "connection reset".into();
//! assert_eq!(Failure::of(&*upstream).kind(), FailureKind::UpstreamFailed);
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::error::{DoNotRetry, find_in_chain, is_timeout};

/// What went wrong, in the terms a caller's answer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The caller is over its own limit (a server-side rate limit refused it).
    CallerLimited,
    /// Our quota at the upstream is spent (a client-side rate limit would wait too long).
    QuotaSpent,
    /// The upstream's circuit is open: the call was not sent.
    CircuitOpen,
    /// Too many calls are in flight (a bulkhead or load shedder refused it).
    Overloaded,
    /// A shared backend (Redis) is down and the layer fails closed.
    BackendUnavailable,
    /// An attempt or the whole call ran out of time.
    TimedOut,
    /// The upstream failed: an error, or an answer the stack judged a failure.
    UpstreamFailed,
    /// The request lacks something the stack needs from the caller (a key header).
    BadRequest,
    /// The stack is set up wrongly for this request (e.g. a per-IP limit on a server that
    /// does not record client addresses).
    Misconfigured,
}

impl FailureKind {
    /// Every kind, for tables and tests.
    pub const ALL: [FailureKind; 9] = [
        FailureKind::CallerLimited,
        FailureKind::QuotaSpent,
        FailureKind::CircuitOpen,
        FailureKind::Overloaded,
        FailureKind::BackendUnavailable,
        FailureKind::TimedOut,
        FailureKind::UpstreamFailed,
        FailureKind::BadRequest,
        FailureKind::Misconfigured,
    ];

    /// The HTTP status code of the [module table](crate::failure).
    pub const fn http_status_code(self) -> u16 {
        match self {
            FailureKind::CallerLimited => 429,
            FailureKind::QuotaSpent
            | FailureKind::CircuitOpen
            | FailureKind::Overloaded
            | FailureKind::BackendUnavailable => 503,
            FailureKind::TimedOut => 504,
            FailureKind::UpstreamFailed => 502,
            FailureKind::BadRequest => 400,
            FailureKind::Misconfigured => 500,
        }
    }

    /// Whether our own layer refused the call (it never reached the upstream, or the
    /// caller must change something): such a failure is not retried by default.
    pub const fn is_refusal(self) -> bool {
        !matches!(
            self,
            FailureKind::TimedOut | FailureKind::UpstreamFailed | FailureKind::BackendUnavailable
        )
    }

    /// A short phrase for logs and response bodies; it reveals nothing of the upstream.
    pub const fn phrase(self) -> &'static str {
        match self {
            FailureKind::CallerLimited => "rate limit exceeded",
            FailureKind::QuotaSpent => "upstream quota exhausted",
            FailureKind::CircuitOpen => "upstream circuit open",
            FailureKind::Overloaded => "too many requests in flight",
            FailureKind::BackendUnavailable => "rate limit backend unavailable",
            FailureKind::TimedOut => "upstream timed out",
            FailureKind::UpstreamFailed => "upstream failed",
            FailureKind::BadRequest => "bad request",
            FailureKind::Misconfigured => "server misconfigured",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// A failure's kind and how long the caller should wait, carried in a layer error's
/// source chain (or raised on its own).
///
/// Its own source is [`DoNotRetry`] unless it was made
/// [`retryable`](Self::retryable), so carrying one marks the error for retry layers too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    kind: FailureKind,
    retry_after: Option<Duration>,
    retryable: bool,
}

impl Failure {
    /// A failure of `kind`, marked "do not retry" when it [is a
    /// refusal](FailureKind::is_refusal).
    pub const fn new(kind: FailureKind) -> Self {
        Self {
            kind,
            retry_after: None,
            retryable: !kind.is_refusal(),
        }
    }

    /// The same failure, telling the caller to wait `wait`.
    #[must_use]
    pub const fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The same failure, with an optional wait.
    #[must_use]
    pub const fn with_retry_after_opt(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The same failure, not marked "do not retry".
    #[must_use]
    pub const fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The same failure, marked "do not retry" (an exhausted retry budget's last error).
    #[must_use]
    pub const fn not_retryable(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// The kind.
    pub const fn kind(&self) -> FailureKind {
        self.kind
    }

    /// How long the caller should wait, where the layer knows.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) as a `Retry-After` value: whole seconds, rounded
    /// up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(retry_after_secs)
    }

    /// The failure of any error: the [`Failure`] in its source chain, else
    /// [`TimedOut`](FailureKind::TimedOut) for a timeout, else
    /// [`UpstreamFailed`](FailureKind::UpstreamFailed).
    pub fn of(err: &(dyn StdError + 'static)) -> Failure {
        if let Some(found) = find_in_chain::<Failure>(err) {
            return *found;
        }
        if is_timeout(err) {
            return Failure::new(FailureKind::TimedOut);
        }
        Failure::new(FailureKind::UpstreamFailed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.phrase())?;
        if let Some(secs) = self.retry_after_secs() {
            write!(f, "; retry after {secs} s")?;
        }
        Ok(())
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        if self.retryable {
            None
        } else {
            Some(&DoNotRetry)
        }
    }
}

/// A wait as `Retry-After` delta-seconds: rounded up, at least 1.
///
/// ```
/// use std::time::Duration;
/// use reliability_core::failure::retry_after_secs;
///
/// assert_eq!(retry_after_secs(Duration::ZERO), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
/// assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
/// ```
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

#[cfg(feature = "http")]
mod http_impl {
    use super::*;

    impl FailureKind {
        /// The HTTP status of the [module table](crate::failure).
        pub fn http_status(self) -> http::StatusCode {
            http::StatusCode::from_u16(self.http_status_code())
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }

    impl Failure {
        /// The HTTP answer: the kind's status, `Retry-After` when the wait is known, and
        /// this `Failure` in the response's extensions; the body is `B::default()`.
        pub fn to_http_response<B: Default>(&self) -> http::Response<B> {
            let mut res = http::Response::new(B::default());
            *res.status_mut() = self.kind.http_status();
            if let Some(secs) = self.retry_after_secs() {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            res.extensions_mut().insert(*self);
            res
        }
    }
}

#[cfg(feature = "grpc")]
mod grpc_impl {
    use std::sync::Arc;

    use super::*;

    impl FailureKind {
        /// The gRPC code of the [module table](crate::failure).
        pub fn grpc_code(self) -> tonic::Code {
            match self {
                FailureKind::CallerLimited | FailureKind::Overloaded => {
                    tonic::Code::ResourceExhausted
                }
                FailureKind::QuotaSpent
                | FailureKind::CircuitOpen
                | FailureKind::BackendUnavailable
                | FailureKind::UpstreamFailed => tonic::Code::Unavailable,
                FailureKind::TimedOut => tonic::Code::DeadlineExceeded,
                FailureKind::BadRequest => tonic::Code::InvalidArgument,
                FailureKind::Misconfigured => tonic::Code::Internal,
            }
        }
    }

    impl Failure {
        /// The gRPC status: the kind's code, `message`, and this `Failure` as its source
        /// (so the status is classified like the error it came from). Where the wait is
        /// known it is sent as `grpc-retry-pushback-ms` (gRPC's retry design, A6).
        pub fn to_grpc_status(&self, message: impl Into<String>) -> tonic::Status {
            let mut status = tonic::Status::new(self.kind.grpc_code(), message);
            if let Some(wait) = self.retry_after {
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                status
                    .metadata_mut()
                    .insert("grpc-retry-pushback-ms", ms.into());
            }
            status.set_source(Arc::new(*self));
            status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::is_do_not_retry;

    /// The module table, row by row: any change to a mapping must change this test.
    #[test]
    fn every_kind_maps_to_one_http_status_and_one_grpc_code() {
        use tonic::Code;
        let table = [
            (
                FailureKind::CallerLimited,
                429,
                Code::ResourceExhausted,
                true,
            ),
            (FailureKind::QuotaSpent, 503, Code::Unavailable, true),
            (FailureKind::CircuitOpen, 503, Code::Unavailable, true),
            (FailureKind::Overloaded, 503, Code::ResourceExhausted, true),
            (
                FailureKind::BackendUnavailable,
                503,
                Code::Unavailable,
                false,
            ),
            (FailureKind::TimedOut, 504, Code::DeadlineExceeded, false),
            (FailureKind::UpstreamFailed, 502, Code::Unavailable, false),
            (FailureKind::BadRequest, 400, Code::InvalidArgument, true),
            (FailureKind::Misconfigured, 500, Code::Internal, true),
        ];
        assert_eq!(table.len(), FailureKind::ALL.len());
        for (kind, status, code, refusal) in table {
            assert!(FailureKind::ALL.contains(&kind));
            assert_eq!(kind.http_status_code(), status, "{kind:?}");
            assert_eq!(kind.http_status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.grpc_code(), code, "{kind:?}");
            assert_eq!(kind.is_refusal(), refusal, "{kind:?}");
            let f = Failure::new(kind);
            assert_eq!(is_do_not_retry(&f), refusal, "{kind:?}");
            let res: http::Response<()> = f.to_http_response();
            assert_eq!(res.status().as_u16(), status);
            assert!(res.headers().get(http::header::RETRY_AFTER).is_none());
            assert_eq!(res.extensions().get::<Failure>(), Some(&f));
            assert_eq!(f.to_grpc_status("x").code(), code);
        }
    }

    #[test]
    fn found_in_any_chain_else_timeout_else_upstream() {
        #[derive(Debug)]
        struct LayerError(Failure);
        impl fmt::Display for LayerError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("layer said no")
            }
        }
        impl StdError for LayerError {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let wait = Duration::from_millis(2_500);
        let err: tower::BoxError = Box::new(LayerError(
            Failure::new(FailureKind::CircuitOpen).with_retry_after(wait),
        ));
        let f = Failure::of(&*err);
        assert_eq!(f.kind(), FailureKind::CircuitOpen);
        assert_eq!(f.retry_after(), Some(wait));
        assert!(is_do_not_retry(&*err));

        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(Failure::of(&timeout).kind(), FailureKind::TimedOut);
        assert_eq!(
            Failure::of(&std::io::Error::other("reset")).kind(),
            FailureKind::UpstreamFailed
        );
        // A status built from a failure is classified like it.
        let status = f.to_grpc_status("open");
        assert_eq!(Failure::of(&status).kind(), FailureKind::CircuitOpen);
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "2500"
        );
    }

    #[test]
    fn retry_after_is_rounded_up_and_at_least_one() {
        let res: http::Response<()> = Failure::new(FailureKind::QuotaSpent)
            .with_retry_after(Duration::from_millis(1))
            .to_http_response();
        assert_eq!(res.headers()[http::header::RETRY_AFTER], "1");
        let res: http::Response<()> = Failure::new(FailureKind::CallerLimited)
            .with_retry_after(Duration::from_millis(59_001))
            .to_http_response();
        assert_eq!(res.headers()[http::header::RETRY_AFTER], "60");
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
        let retryable = Failure::new(FailureKind::CallerLimited).retryable();
        assert!(!is_do_not_retry(&retryable));
        let spent = Failure::new(FailureKind::TimedOut).not_retryable();
        assert!(is_do_not_retry(&spent));
        assert_eq!(spent.kind(), FailureKind::TimedOut);
    }

    proptest::proptest! {
        /// `Retry-After` never tells a caller to come back before the wait is over.
        #[test]
        fn retry_after_never_early(ms in 0u64..10_000_000_000) {
            let wait = Duration::from_millis(ms);
            let secs = retry_after_secs(wait);
            proptest::prop_assert!(Duration::from_secs(secs) >= wait);
            proptest::prop_assert!(Duration::from_secs(secs) < wait + Duration::from_secs(1) || secs == 1);
        }
    }
}
