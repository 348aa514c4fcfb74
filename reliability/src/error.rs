//! One error type for a whole stack.
//!
//! Every layer fails with a `tower::BoxError` holding its own typed error
//! (`CircuitOpen`, `RateLimited`, `BudgetExhausted`, a timeout, or the upstream's own
//! error). [`Error`] wraps any of them and answers the questions callers ask, without
//! downcasting by hand: was the circuit open, was it a rate limit, a timeout, an exhausted
//! retry budget? It maps to an HTTP answer (503 / 429 / 504 / 502, with `Retry-After` where
//! known) and to a tonic `Status` (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED).
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
use reliability_core::error::{find_in_chain, is_timeout};
use retry_layer::BudgetExhausted;
use tower::BoxError;

/// Any failure of a preset stack, with questions instead of downcasts.
pub struct Error {
    inner: BoxError,
}

impl Error {
    /// The circuit breaker refused the call.
    pub fn is_circuit_open(&self) -> bool {
        self.find::<CircuitOpen>().is_some()
    }

    /// A rate limit refused the call (or the wait for quota was too long).
    pub fn is_rate_limited(&self) -> bool {
        self.find::<RateLimited>().is_some()
    }

    /// An attempt or the whole call ran out of time.
    pub fn is_timeout(&self) -> bool {
        is_timeout(&*self.inner)
            || self.find::<retry_layer::AttemptTimedOut>().is_some()
            || self.find::<retry_layer::DeadlineExceeded>().is_some()
    }

    /// Retrying stopped because the retry budget was empty.
    pub fn is_budget_exhausted(&self) -> bool {
        self.find::<BudgetExhausted>().is_some()
    }

    /// How long the caller should wait before trying again, where a layer knows.
    pub fn retry_after(&self) -> Option<Duration> {
        if let Some(open) = self.find::<CircuitOpen>() {
            return open.retry_after();
        }
        self.find::<RateLimited>().and_then(|r| r.retry_after)
    }

    /// The first error of type `T` in the chain.
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        find_in_chain::<T>(&*self.inner)
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }

    /// The HTTP status a server should answer with: 503 for an open circuit, 429 for a
    /// rate limit, 504 for a timeout, 502 for any other upstream failure.
    pub fn http_status(&self) -> http::StatusCode {
        if self.is_circuit_open() {
            http::StatusCode::SERVICE_UNAVAILABLE
        } else if self.is_rate_limited() {
            http::StatusCode::TOO_MANY_REQUESTS
        } else if self.is_timeout() {
            http::StatusCode::GATEWAY_TIMEOUT
        } else {
            http::StatusCode::BAD_GATEWAY
        }
    }

    /// The HTTP answer: [`http_status`](Self::http_status), `Retry-After` where known, and
    /// a short text body that reveals nothing of the upstream.
    pub fn to_http_response(&self) -> http::Response<String> {
        let status = self.http_status();
        let mut res = http::Response::new(
            status
                .canonical_reason()
                .unwrap_or("upstream failure")
                .to_owned(),
        );
        *res.status_mut() = status;
        if let Some(wait) = self.retry_after() {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, secs.max(1).into());
        }
        res
    }

    /// The gRPC status: UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or (for an
    /// upstream's own status) that status.
    pub fn to_grpc_status(&self) -> tonic::Status {
        if let Some(status) = self.find::<tonic::Status>() {
            return tonic::Status::new(status.code(), status.message().to_owned());
        }
        if self.is_circuit_open() {
            tonic::Status::unavailable("circuit open")
        } else if self.is_rate_limited() {
            tonic::Status::resource_exhausted("rate limited")
        } else if self.is_timeout() {
            tonic::Status::deadline_exceeded("timed out")
        } else {
            tonic::Status::unavailable("upstream failure")
        }
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
