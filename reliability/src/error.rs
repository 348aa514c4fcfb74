//! One error type for a whole stack.
//!
//! Every layer fails with a `tower::BoxError` holding its own typed error
//! (`CircuitOpen`, `RateLimited`, `BudgetExhausted`, a timeout, or the upstream's own
//! error). [`Error`] wraps any of them and answers the questions callers ask, without
//! downcasting by hand: was the circuit open, was the caller over its limit or our quota
//! at the upstream spent, a timeout, an exhausted retry budget? Its HTTP answer and tonic
//! `Status` come from reliability-core's one [failure table](reliability_core::failure):
//! 429 / RESOURCE_EXHAUSTED for a caller over its limit; 503 / UNAVAILABLE with
//! `Retry-After` for a spent upstream quota or an open circuit; 504 / DEADLINE_EXCEEDED for
//! a timeout; 502 for any other upstream failure.
//!
//! # Example
//!
//! ```
//! use reliability::Error;
//!
//! let err = Error::from(tower::BoxError::from("upstream said no"));
//! assert!(!err.is_circuit_open());
//! assert_eq!(err.http_status(), http::StatusCode::BAD_GATEWAY);
//! ```

use std::fmt;
use std::time::Duration;

use breaker_layer::CircuitOpen;
use ratelimit_layer::RateLimited;
use reliability_core::error::find_in_chain;
use reliability_core::failure::{Failure, FailureKind};
use retry_layer::BudgetExhausted;
use tower::BoxError;

/// Any failure of a preset stack, with questions instead of downcasts.
pub struct Error {
    inner: BoxError,
}

impl Error {
    /// What went wrong, in the terms of reliability-core's failure table.
    pub fn failure(&self) -> Failure {
        Failure::of(&*self.inner)
    }

    /// The kind of [`failure`](Self::failure).
    pub fn kind(&self) -> FailureKind {
        self.failure().kind()
    }

    /// The circuit breaker refused the call.
    pub fn is_circuit_open(&self) -> bool {
        self.find::<CircuitOpen>().is_some()
    }

    /// A rate limit refused the call: the caller's own ([`is_caller_limited`]) or our
    /// quota at the upstream ([`is_quota_spent`]).
    ///
    /// [`is_caller_limited`]: Self::is_caller_limited
    /// [`is_quota_spent`]: Self::is_quota_spent
    pub fn is_rate_limited(&self) -> bool {
        self.find::<RateLimited>().is_some()
    }

    /// A server-side rate limit refused the caller: it is over its own limit.
    pub fn is_caller_limited(&self) -> bool {
        self.kind() == FailureKind::CallerLimited
    }

    /// A client-side rate limit would have waited too long: our quota at the upstream is
    /// spent for now.
    pub fn is_quota_spent(&self) -> bool {
        self.kind() == FailureKind::QuotaSpent
    }

    /// The bulkhead refused the call: too many calls in flight to the upstream.
    pub fn is_overloaded(&self) -> bool {
        self.find::<concurrency_layer::BulkheadFull>().is_some()
    }

    /// An attempt or the whole call ran out of time.
    pub fn is_timeout(&self) -> bool {
        self.kind() == FailureKind::TimedOut
            || self.find::<retry_layer::AttemptTimedOut>().is_some()
            || self.find::<retry_layer::DeadlineExceeded>().is_some()
    }

    /// Retrying stopped because the retry budget was empty.
    pub fn is_budget_exhausted(&self) -> bool {
        self.find::<BudgetExhausted>().is_some()
    }

    /// How long the caller should wait before trying again, where a layer knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.failure().retry_after()
    }

    /// The first error of type `T` in the chain.
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        find_in_chain::<T>(&*self.inner)
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }

    /// The HTTP status a server should answer with (reliability-core's [failure
    /// table](reliability_core::failure)).
    pub fn http_status(&self) -> http::StatusCode {
        self.http_kind().http_status()
    }

    /// A timeout that the retry layer reports as its own error is still a timeout.
    fn http_kind(&self) -> FailureKind {
        if self.is_timeout() {
            FailureKind::TimedOut
        } else {
            self.kind()
        }
    }

    /// The HTTP answer: [`http_status`](Self::http_status), `Retry-After` where known
    /// (whole seconds, rounded up), and a short text body that reveals nothing of the
    /// upstream.
    pub fn to_http_response(&self) -> http::Response<String> {
        let failure = self.failure();
        let mut res: http::Response<String> = Failure::new(self.http_kind())
            .with_retry_after_opt(failure.retry_after())
            .to_http_response();
        *res.body_mut() = self.http_kind().phrase().to_owned();
        res
    }

    /// The gRPC status: the upstream's own status where it sent one, else the failure
    /// table's code (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED...).
    pub fn to_grpc_status(&self) -> tonic::Status {
        if let Some(status) = self.find::<tonic::Status>()
            && find_in_chain::<Failure>(status).is_none()
        {
            return tonic::Status::new(status.code(), status.message().to_owned());
        }
        let kind = self.http_kind();
        Failure::new(kind)
            .with_retry_after_opt(self.retry_after())
            .to_grpc_status(kind.phrase())
    }
}

impl From<BoxError> for Error {
    fn from(inner: BoxError) -> Self {
        Self { inner }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.to_grpc_status()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner)
    }
}

#[cfg(feature = "admin")]
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        self.to_http_response().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    #[tokio::test]
    async fn open_circuit_maps_to_503_and_unavailable() {
        let layer = breaker_layer::CircuitBreakerLayer::builder("x")
            .consecutive_failures(1)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_: ()| async {
                Err::<(), BoxError>("down".into())
            }));
        let _ = svc.clone().oneshot(()).await;
        let err = Error::from(svc.oneshot(()).await.unwrap_err());
        assert!(err.is_circuit_open());
        assert!(!err.is_rate_limited());
        assert_eq!(err.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let res = err.to_http_response();
        assert!(res.headers().contains_key(http::header::RETRY_AFTER));
        assert_eq!(err.to_grpc_status().code(), tonic::Code::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_maps_to_504() {
        let svc = ServiceBuilder::new()
            .timeout(Duration::from_millis(5))
            .service(service_fn(|_: ()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, BoxError>(())
            }));
        let err = Error::from(svc.oneshot(()).await.unwrap_err());
        assert!(err.is_timeout());
        assert_eq!(err.http_status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(err.to_grpc_status().code(), tonic::Code::DeadlineExceeded);
    }

    #[test]
    fn upstream_status_passes_through() {
        let err = Error::from(BoxError::from(tonic::Status::not_found("no such pair")));
        assert_eq!(err.to_grpc_status().code(), tonic::Code::NotFound);
        assert_eq!(err.http_status(), http::StatusCode::BAD_GATEWAY);
    }
}
