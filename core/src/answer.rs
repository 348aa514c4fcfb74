//! How a layer answers when it refuses a call: one trait, [`Answer`], and its three modes.
//!
//! A breaker with an open circuit, a rate limiter over its limit and a bulkhead that is full
//! all do the same thing: the call is not sent, and the caller gets a [`Refusal`] (a typed
//! error that carries a [`Failure`]). What the caller *sees* depends on where the layer sits,
//! and that choice is the layer's **mode**, picked the same way on every builder:
//!
//! | builder | mode | a refusal becomes | the service's error type |
//! |---|---|---|---|
//! | (default) | [`AsError`] | `Err(refusal)`, boxed | `tower::BoxError` |
//! | `.http()` (feature `http`) | [`AsHttp`] | the [failure table](crate::failure)'s status, `Retry-After`, a `text/plain` body | the inner error, unchanged (axum needs `Infallible`) |
//! | `.grpc()` (feature `grpc`) | [`AsGrpc`] | a trailers-only response with the table's code | the inner error, unchanged |
//!
//! The HTTP and gRPC answers put the refusal itself (and its [`Failure`]) in the response's
//! extensions, so an outer layer (a retry, a classifier, a metrics layer) can tell a
//! refusal from an upstream's own answer without parsing it.
//!
//! # Example
//!
//! ```
//! use reliability_core::answer::{Answer, AsError, AsHttp, Refusal};
//! use reliability_core::failure::{Failure, FailureKind};
//!
//! #[derive(Debug, Clone)]
//! struct Full;
//! impl std::fmt::Display for Full {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("the pool is full")
//!     }
//! }
//! const FULL: Failure = Failure::new(FailureKind::Overloaded);
//! impl std::error::Error for Full {
//!     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
//!         Some(&FULL)
//!     }
//! }
//! impl Refusal for Full {
//!     fn failure(&self) -> Failure {
//!         FULL
//!     }
//! }
//!
//! let res: http::Response<String> = Answer::<_, _, std::convert::Infallible>::refused(&AsHttp, Full).unwrap();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.body(), "the pool is full\n");
//!
//! let err = Answer::<_, (), std::io::Error>::refused(&AsError, Full).unwrap_err();
//! assert_eq!(Failure::of(&*err).kind(), FailureKind::Overloaded);
//! ```

use std::error::Error as StdError;

use tower::BoxError;

use crate::classify::Outcome;
use crate::failure::Failure;

/// A layer's typed refusal: the call was not sent (or not admitted), and why.
///
/// Its [`Display`](std::fmt::Display) text is what the HTTP body and the `grpc-message` say,
/// so it should name what the caller can act on and nothing of the upstream. Its
/// [`source`](StdError::source) chain carries the same [`Failure`], so that
/// [`Failure::of`] finds it in the boxed error of [`AsError`] mode.
pub trait Refusal: StdError + Clone + Send + Sync + 'static {
    /// The refusal's kind and wait, from the [failure table](crate::failure).
    fn failure(&self) -> Failure;
}

/// What a layer's service returns when it refuses a call, and what it makes of the calls
/// it admitted. See the [module docs](self) for the modes.
///
/// `R` is the refusal a layer gives (a breaker's `CircuitOpen`, a limiter's `RateLimited`);
/// the three modes answer any [`Refusal`], a mode of one layer (a breaker's fallback) may
/// answer only that layer's.
pub trait Answer<R, Res, E> {
    /// The service's error type.
    type Error;

    /// The answer to a call the layer refused.
    fn refused(&self, refusal: R) -> Result<Res, Self::Error>;

    /// An error of the inner service (from `poll_ready` or `call`).
    fn inner_error(&self, error: E) -> Self::Error;

    /// The answer to an admitted call that finished with `result`, classified `outcome`;
    /// the inner result, errors mapped by [`inner_error`](Self::inner_error), unless the
    /// mode replaces failures (a fallback).
    #[inline]
    fn finished(&self, result: Result<Res, E>, outcome: Outcome) -> Result<Res, Self::Error> {
        let _ = outcome;
        result.map_err(|e| self.inner_error(e))
    }
}

/// Generic mode: a refusal is an `Err` holding the refusal, boxed; inner errors are boxed
/// as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsError;

impl<R: Refusal, Res, E: Into<BoxError>> Answer<R, Res, E> for AsError {
    type Error = BoxError;

    fn refused(&self, refusal: R) -> Result<Res, BoxError> {
        Err(Box::new(refusal))
    }

    #[inline]
    fn inner_error(&self, error: E) -> BoxError {
        error.into()
    }
}

/// HTTP mode: a refusal is answered with the failure's status, `Retry-After` when the wait
/// is known, and the refusal's text as a `text/plain` body; the refusal and its
/// [`Failure`] are in the response's extensions. (Hence `B: Default + From<String>`; axum's
/// `Body`, `String` and `Full<Bytes>` satisfy it.)
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsHttp;

#[cfg(feature = "http")]
impl<R: Refusal, B: Default + From<String>, E> Answer<R, http::Response<B>, E> for AsHttp {
    type Error = E;

    fn refused(&self, refusal: R) -> Result<http::Response<B>, E> {
        Ok(http_response(refusal))
    }

    #[inline]
    fn inner_error(&self, error: E) -> E {
        error
    }
}

/// The HTTP answer to `refusal`, as [`AsHttp`] gives it.
#[cfg(feature = "http")]
pub fn http_response<B: Default + From<String>, R: Refusal>(refusal: R) -> http::Response<B> {
    let mut res: http::Response<B> = refusal.failure().to_http_response();
    *res.body_mut() = B::from(format!("{refusal}\n"));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.extensions_mut().insert(refusal);
    res
}

/// gRPC mode: a refusal is answered with a trailers-only response: `grpc-status` from the
/// failure table, the refusal's text as `grpc-message`, and, when the wait is known,
/// `grpc-retry-pushback-ms` (gRPC's retry design, A6) and `retry-after` (whole seconds).
#[cfg(feature = "grpc")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsGrpc;

#[cfg(feature = "grpc")]
impl<R: Refusal, B: Default, E> Answer<R, http::Response<B>, E> for AsGrpc {
    type Error = E;

    fn refused(&self, refusal: R) -> Result<http::Response<B>, E> {
        Ok(grpc_response(refusal))
    }

    #[inline]
    fn inner_error(&self, error: E) -> E {
        error
    }
}

/// The gRPC answer to `refusal`, as [`AsGrpc`] gives it.
#[cfg(feature = "grpc")]
pub fn grpc_response<B: Default, R: Refusal>(refusal: R) -> http::Response<B> {
    let failure = refusal.failure();
    let mut res = grpc_status(refusal.clone()).into_http::<B>();
    if let Some(secs) = failure.retry_after_secs() {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    res.extensions_mut().insert(failure);
    res.extensions_mut().insert(refusal);
    res
}

/// `refusal` as a `tonic::Status`: the failure table's code, the refusal's text, the
/// refusal as its source (so it is classified like the error it came from) and, when the
/// wait is known, `grpc-retry-pushback-ms` and `retry-after` metadata.
#[cfg(feature = "grpc")]
pub fn grpc_status<R: Refusal>(refusal: R) -> tonic::Status {
    let failure = refusal.failure();
    let mut status = tonic::Status::new(failure.kind().grpc_code(), refusal.to_string());
    if let Some(wait) = failure.retry_after() {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", ms.into());
    }
    if let Some(secs) = failure.retry_after_secs() {
        status.metadata_mut().insert("retry-after", secs.into());
    }
    status.set_source(std::sync::Arc::new(refusal));
    status
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::time::Duration;

    use super::*;
    use crate::failure::FailureKind;

    #[derive(Debug, Clone, PartialEq)]
    struct Said(Failure, &'static str);

    impl fmt::Display for Said {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
    }

    impl StdError for Said {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    impl Refusal for Said {
        fn failure(&self) -> Failure {
            self.0
        }
    }

    fn said(kind: FailureKind, ms: Option<u64>) -> Said {
        Said(
            Failure::new(kind).with_retry_after_opt(ms.map(Duration::from_millis)),
            "no: café; 100% \"full\"\n",
        )
    }

    /// Every kind through every mode: the same table decides all three answers.
    #[test]
    fn every_mode_answers_from_the_one_table() {
        for kind in FailureKind::ALL {
            for ms in [None, Some(1), Some(1_500)] {
                let refusal = said(kind, ms);
                let err = Answer::<_, (), std::io::Error>::refused(&AsError, refusal.clone())
                    .unwrap_err();
                assert_eq!(Failure::of(&*err).kind(), kind);
                assert!(err.downcast_ref::<Said>().is_some());

                let res: http::Response<String> =
                    Answer::<_, _, ()>::refused(&AsHttp, refusal.clone()).unwrap();
                assert_eq!(res.status().as_u16(), kind.http_status_code());
                assert_eq!(res.body(), &format!("{}\n", refusal.1));
                assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap());
                assert_eq!(
                    retry_after,
                    ms.map(|ms| if ms <= 1_000 { "1" } else { "2" })
                );
                assert_eq!(res.extensions().get::<Said>(), Some(&refusal));
                assert_eq!(res.extensions().get::<Failure>(), Some(&refusal.0));

                let res: http::Response<String> =
                    Answer::<_, _, ()>::refused(&AsGrpc, refusal.clone()).unwrap();
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["content-type"], "application/grpc");
                let code: i32 = res.headers()["grpc-status"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(tonic::Code::from(code), kind.grpc_code());
                let status = tonic::Status::from_header_map(res.headers()).unwrap();
                assert_eq!(status.message(), refusal.1, "grpc-message round-trips");
                assert_eq!(
                    res.headers()
                        .get("grpc-retry-pushback-ms")
                        .map(|v| v.to_str().unwrap()),
                    ms.map(|ms| ms.to_string()).as_deref()
                );
                assert_eq!(res.extensions().get::<Failure>(), Some(&refusal.0));
            }
        }
    }

    #[test]
    fn admitted_calls_pass_through_each_mode() {
        let ok: Result<http::Response<String>, std::io::Error> = Ok(http::Response::default());
        assert!(
            Answer::<Said, _, std::io::Error>::finished(&AsHttp, ok, Outcome::Failure)
                .unwrap()
                .extensions()
                .get::<Failure>()
                .is_none()
        );
        let err: Result<(), std::io::Error> = Err(std::io::Error::other("boom"));
        let boxed = Answer::<Said, _, _>::finished(&AsError, err, Outcome::Failure).unwrap_err();
        assert_eq!(boxed.to_string(), "boom");
    }
}
