//! Outcome classification: what a finished call means for a breaker, an SLA monitor and a
//! retry policy.
//!
//! Every layer that watches calls asks one question of a result: did the upstream work?
//! The answer is an [`Outcome`]. The retry layer asks a second one of failures: *may I try
//! again, and how soon?* That answer is a [`RetryClass`]. Both come from one [`Classify`]
//! implementation so that a stack agrees with itself: what trips the breaker is what the
//! retry layer retries and what the SLA monitor counts as an error.
//!
//! Ready classifiers:
//!
//! - [`ErrorClassifier`]: any `Result`; `Ok` succeeds, `Err` fails.
//! - [`HttpClassifier`] (feature `http`): 5xx, 429, 408 and transport errors/timeouts fail;
//!   other 4xx answers are the caller's fault and count as success for the upstream.
//! - [`GrpcClassifier`] (feature `grpc`): UNAVAILABLE, DEADLINE_EXCEEDED,
//!   RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNKNOWN and DATA_LOSS fail; CANCELLED is ignored.
//!
//! # Example
//!
//! ```
//! use reliability_core::classify::{Classify, ErrorClassifier, Outcome, RetryClass};
//!
//! let classifier = ErrorClassifier;
//! let ok: Result<u32, std::io::Error> = Ok(1);
//! let err: Result<u32, std::io::Error> = Err(std::io::Error::other("boom"));
//! assert_eq!(classifier.classify(ok.as_ref()), Outcome::Success);
//! assert_eq!(classifier.classify(err.as_ref()), Outcome::Failure);
//! assert_eq!(classifier.retry_class(err.as_ref()), Some(RetryClass::Recoverable));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::is_do_not_retry;
#[cfg(test)]
use crate::error::is_timeout;

/// What one finished call says about the health of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream did its job.
    Success,
    /// The upstream failed: counts against failure rates and SLAs.
    Failure,
    /// Counts neither way (a cancelled call, a rejection by our own layer).
    Ignore,
}

/// How a retry policy should treat a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryClass {
    /// A blip (a reset connection, an aborted transaction): retry once, at once.
    Transient,
    /// The upstream is struggling (5xx, 429, timeout): retry with backoff.
    Recoverable,
    /// Retrying cannot help (bad request, open circuit): never retry.
    Permanent,
    /// Never retry, and report loudly (data loss, a broken invariant upstream).
    Critical,
}

/// The verdict on one call: its outcome, and for failures how a retry layer should act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// What the call says about the upstream's health.
    pub outcome: Outcome,
    /// `None` when the call must not be retried because it did not fail.
    pub retry: Option<RetryClass>,
    /// A delay the upstream asked for (`Retry-After`, gRPC retry info), if any.
    pub retry_after: Option<Duration>,
}

impl Classification {
    /// A successful call.
    pub const SUCCESS: Self = Self {
        outcome: Outcome::Success,
        retry: None,
        retry_after: None,
    };
    /// A call that counts neither way and is not retried.
    pub const IGNORE: Self = Self {
        outcome: Outcome::Ignore,
        retry: None,
        retry_after: None,
    };

    /// A failure that a retry layer treats as `class`.
    pub const fn failure(class: RetryClass) -> Self {
        Self {
            outcome: Outcome::Failure,
            retry: Some(class),
            retry_after: None,
        }
    }
}

/// Classifies the result of a call made through a service with response `T` and error `E`.
///
/// Implementations must be cheap: breakers and SLA monitors call them on every request.
pub trait Classify<T, E> {
    /// The full verdict on a call.
    fn classify_full(&self, result: Result<&T, &E>) -> Classification;

    /// What the call says about the upstream's health.
    fn classify(&self, result: Result<&T, &E>) -> Outcome {
        self.classify_full(result).outcome
    }

    /// How a retry layer should treat the call; `None` means "done, do not retry".
    fn retry_class(&self, result: Result<&T, &E>) -> Option<RetryClass> {
        self.classify_full(result).retry
    }
}

impl<T, E, C: Classify<T, E> + ?Sized> Classify<T, E> for &C {
    fn classify_full(&self, result: Result<&T, &E>) -> Classification {
        (**self).classify_full(result)
    }
}

impl<T, E, C: Classify<T, E> + ?Sized> Classify<T, E> for std::sync::Arc<C> {
    fn classify_full(&self, result: Result<&T, &E>) -> Classification {
        (**self).classify_full(result)
    }
}

/// A classifier from a closure, for one-off rules.
///
/// ```
/// use reliability_core::classify::{fn_classifier, Classification, Classify, Outcome};
///
/// let c = fn_classifier(|r: Result<&u16, &()>| match r {
///     Ok(code) if *code < 500 => Classification::SUCCESS,
///     _ => Classification::failure(reliability_core::classify::RetryClass::Recoverable),
/// });
/// assert_eq!(c.classify(Ok(&503)), Outcome::Failure);
/// ```
pub fn fn_classifier<F>(f: F) -> FnClassifier<F> {
    FnClassifier(f)
}

/// See [`fn_classifier`].
#[derive(Clone, Copy)]
pub struct FnClassifier<F>(F);

impl<F> fmt::Debug for FnClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnClassifier")
    }
}

impl<T, E, F> Classify<T, E> for FnClassifier<F>
where
    F: Fn(Result<&T, &E>) -> Classification,
{
    fn classify_full(&self, result: Result<&T, &E>) -> Classification {
        (self.0)(result)
    }
}

/// Classifies an error by walking its source chain: errors marked "do not retry" are
/// permanent, timeouts and everything else recoverable.
///
/// The chain walk costs nothing on the success path.
pub fn classify_error(err: &(dyn StdError + 'static)) -> Classification {
    if is_do_not_retry(err) {
        // An open circuit, an exhausted budget, a rate limit of our own: the failure is
        // ours, not the upstream's, so it must not feed back into health either.
        Classification {
            outcome: Outcome::Ignore,
            retry: Some(RetryClass::Permanent),
            retry_after: None,
        }
    } else {
        Classification::failure(RetryClass::Recoverable)
    }
}

/// Any `Result`: `Ok` succeeds; `Err` fails and is retried with backoff, unless the error
/// (or one of its sources) is marked [`DoNotRetry`](crate::error::DoNotRetry).
///
/// The error's source chain is inspected when the error type is one whose chain can be
/// reached (see [`as_dyn_error`]): tower's `BoxError`, `std::io::Error`, `tonic::Status`,
/// Redis and timeout errors. Other error types simply count as recoverable failures; give
/// such services an [`fn_classifier`] when they need finer rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorClassifier;

impl<T, E: 'static> Classify<T, E> for ErrorClassifier {
    fn classify_full(&self, result: Result<&T, &E>) -> Classification {
        match result {
            Ok(_) => Classification::SUCCESS,
            Err(e) => as_dyn_error(e).map_or(
                Classification::failure(RetryClass::Recoverable),
                classify_error,
            ),
        }
    }
}

/// `err` as a `dyn Error` whose source chain can be walked, for the error types a tower
/// stack meets: `BoxError` (and the other boxed `dyn Error`s), `std::io::Error`, Redis
/// errors, timeouts, and `tonic::Status` with the `grpc` feature.
///
/// Rust cannot ask "does `E` implement `Error`?" of a generic type, so classifiers that
/// must accept any error type use this lookup instead of a trait bound.
pub fn as_dyn_error<E: 'static>(err: &E) -> Option<&(dyn StdError + 'static)> {
    let any = err as &dyn std::any::Any;
    if let Some(e) = any.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn StdError + Send>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn StdError>>() {
        return Some(&**e);
    }
    macro_rules! concrete {
        ($($t:ty),*) => {$(
            if let Some(e) = any.downcast_ref::<$t>() {
                return Some(e);
            }
        )*};
    }
    concrete!(
        std::io::Error,
        redis::RedisError,
        tokio::time::error::Elapsed,
        tower::timeout::error::Elapsed,
        crate::error::DoNotRetry
    );
    #[cfg(feature = "grpc")]
    concrete!(tonic::Status);
    None
}

/// What an HTTP status code says about the upstream.
///
/// The table every layer shares: 5xx, 429 and 408 are failures; other codes succeed (a 404
/// is the client's problem, not the server's). 501 and 505 are failures that retrying
/// cannot fix.
pub fn classify_http_status(status: u16) -> Classification {
    match status {
        408 | 429 | 500 | 502 | 503 | 504 => Classification::failure(RetryClass::Recoverable),
        501 | 505 => Classification::failure(RetryClass::Permanent),
        s if (500..600).contains(&s) => Classification::failure(RetryClass::Recoverable),
        _ => Classification::SUCCESS,
    }
}

/// Upper bound on any upstream-requested delay: a hostile or broken `Retry-After` must not
/// park a caller for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date in any of the three forms
/// RFC 9110 §5.6.7 requires recipients to accept (IMF-fixdate, the obsolete RFC 850 form and
/// asctime), relative to `now`. Garbage, negative values and dates in the past give `None`;
/// values are clamped to [`MAX_RETRY_AFTER`].
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use reliability_core::classify::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
///     Some(Duration::from_secs(10))
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    // The `httpdate` crate parses all three date forms; a hand-written parser had only one.
    let when = httpdate::parse_http_date(value).ok()?;
    when.duration_since(now)
        .ok()
        .map(|d| d.min(MAX_RETRY_AFTER))
}

#[cfg(feature = "http")]
mod http_impl {
    use super::*;

    /// HTTP responses: 5xx, 429, 408, transport errors and timeouts fail; other statuses
    /// succeed. `Retry-After` on a failed response becomes [`Classification::retry_after`].
    ///
    /// A response that carries a refusal [`Failure`](crate::failure::Failure) in its
    /// extensions (the 429 of our own rate limiter, the 503 of our own open circuit) is
    /// ignored and never retried: it is the stack's answer, not the upstream's.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct HttpClassifier {
        too_many_requests: Outcome,
    }

    impl Default for HttpClassifier {
        fn default() -> Self {
            Self::new()
        }
    }

    impl HttpClassifier {
        /// The default table.
        pub const fn new() -> Self {
            Self {
                too_many_requests: Outcome::Failure,
            }
        }

        /// How a 429 counts for health (it is still retried). A rate limit is the
        /// upstream protecting itself, not failing: set [`Outcome::Ignore`] so it does not
        /// trip a breaker.
        #[must_use]
        pub const fn too_many_requests_as(mut self, outcome: Outcome) -> Self {
            self.too_many_requests = outcome;
            self
        }

        /// Classifies a status code and its headers.
        pub fn classify_response(
            &self,
            status: http::StatusCode,
            headers: &http::HeaderMap,
        ) -> Classification {
            let mut c = classify_http_status(status.as_u16());
            if c.outcome == Outcome::Failure {
                c.retry_after = headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            }
            if status == http::StatusCode::TOO_MANY_REQUESTS {
                c.outcome = self.too_many_requests;
            }
            c
        }
    }

    impl<B, E: 'static> Classify<http::Response<B>, E> for HttpClassifier {
        fn classify_full(&self, result: Result<&http::Response<B>, &E>) -> Classification {
            match result {
                // An answer one of our own layers made (a 429 of a rate limiter, the 503
                // of an open circuit) says nothing about the upstream and is not retried.
                Ok(res)
                    if res
                        .extensions()
                        .get::<crate::failure::Failure>()
                        .is_some_and(|f| f.kind().is_refusal()) =>
                {
                    Classification {
                        outcome: Outcome::Ignore,
                        retry: Some(RetryClass::Permanent),
                        retry_after: None,
                    }
                }
                Ok(res) => self.classify_response(res.status(), res.headers()),
                // Transport errors and timeouts are recoverable failures; marked errors
                // (an open circuit below us) are not retried.
                Err(e) => as_dyn_error(e).map_or(
                    Classification::failure(RetryClass::Recoverable),
                    classify_error,
                ),
            }
        }
    }
}

#[cfg(feature = "http")]
pub use http_impl::HttpClassifier;

/// What a gRPC status code (its numeric value) says about the upstream.
///
/// | code | outcome | retry |
/// |---|---|---|
/// | OK | success | no |
/// | CANCELLED | ignore | no |
/// | UNKNOWN, INTERNAL | failure | permanent |
/// | DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE | failure | recoverable |
/// | ABORTED | failure | transient |
/// | DATA_LOSS | failure | critical |
/// | the client's faults (INVALID_ARGUMENT, NOT_FOUND, ...) | success | no |
pub fn classify_grpc_code(code: i32) -> Classification {
    match code {
        0 => Classification::SUCCESS,
        1 => Classification::IGNORE,
        2 | 13 => Classification::failure(RetryClass::Permanent),
        4 | 8 | 14 => Classification::failure(RetryClass::Recoverable),
        10 => Classification::failure(RetryClass::Transient),
        15 => Classification::failure(RetryClass::Critical),
        _ => Classification::SUCCESS,
    }
}

#[cfg(feature = "grpc")]
mod grpc_impl {
    use super::*;

    /// gRPC calls through tonic: the status code decides (see [`classify_grpc_code`]);
    /// a failed call's `Status` is inspected for "do not retry" marks in its source.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GrpcClassifier;

    impl GrpcClassifier {
        /// Classifies a tonic `Status`, honouring "do not retry" marks in its source.
        pub fn classify_status(status: &tonic::Status) -> Classification {
            if is_do_not_retry(status) {
                return classify_error(status);
            }
            classify_grpc_code(status.code() as i32)
        }
    }

    /// A tonic client or server's answer: a `Status` error, or an `http::Response` whose
    /// `grpc-status` header (a trailers-only answer) carries the code. Other errors
    /// (transport, timeouts) are recoverable failures unless marked "do not retry".
    impl<B, E: 'static> Classify<http::Response<B>, E> for GrpcClassifier {
        fn classify_full(&self, result: Result<&http::Response<B>, &E>) -> Classification {
            match result {
                Ok(res) => res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Classification::SUCCESS, classify_grpc_code),
                Err(e) => {
                    let any = e as &dyn std::any::Any;
                    if let Some(status) = any.downcast_ref::<tonic::Status>() {
                        return Self::classify_status(status);
                    }
                    as_dyn_error(e).map_or(
                        Classification::failure(RetryClass::Recoverable),
                        |err| match crate::error::find_in_chain::<tonic::Status>(err) {
                            Some(status) if !is_do_not_retry(err) => Self::classify_status(status),
                            _ => classify_error(err),
                        },
                    )
                }
            }
        }
    }
}

#[cfg(feature = "grpc")]
pub use grpc_impl::GrpcClassifier;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DoNotRetry;

    #[derive(Debug)]
    struct Wrapped(DoNotRetry);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("circuit open")
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn http_status_table() {
        let fails = [408, 429, 500, 502, 503, 504, 599];
        let ok = [200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422];
        for s in fails {
            assert_eq!(classify_http_status(s).outcome, Outcome::Failure, "{s}");
            assert_eq!(classify_http_status(s).retry, Some(RetryClass::Recoverable));
        }
        for s in ok {
            assert_eq!(classify_http_status(s), Classification::SUCCESS, "{s}");
        }
        for s in [501, 505] {
            assert_eq!(classify_http_status(s).retry, Some(RetryClass::Permanent));
        }
    }

    #[test]
    fn grpc_code_table() {
        let expect = [
            (0, Outcome::Success, None),
            (1, Outcome::Ignore, None),
            (2, Outcome::Failure, Some(RetryClass::Permanent)),
            (3, Outcome::Success, None),
            (4, Outcome::Failure, Some(RetryClass::Recoverable)),
            (5, Outcome::Success, None),
            (6, Outcome::Success, None),
            (7, Outcome::Success, None),
            (8, Outcome::Failure, Some(RetryClass::Recoverable)),
            (9, Outcome::Success, None),
            (10, Outcome::Failure, Some(RetryClass::Transient)),
            (11, Outcome::Success, None),
            (12, Outcome::Success, None),
            (13, Outcome::Failure, Some(RetryClass::Permanent)),
            (14, Outcome::Failure, Some(RetryClass::Recoverable)),
            (15, Outcome::Failure, Some(RetryClass::Critical)),
            (16, Outcome::Success, None),
        ];
        for (code, outcome, retry) in expect {
            let c = classify_grpc_code(code);
            assert_eq!((c.outcome, c.retry), (outcome, retry), "code {code}");
        }
    }

    #[test]
    fn tonic_status_classified() {
        let c = GrpcClassifier;
        let unavailable = tonic::Status::unavailable("down");
        let r: Result<&http::Response<()>, &tonic::Status> = Err(&unavailable);
        assert_eq!(c.classify(r), Outcome::Failure);
        assert_eq!(c.retry_class(r), Some(RetryClass::Recoverable));
        let nf = tonic::Status::not_found("x");
        let r: Result<&http::Response<()>, &tonic::Status> = Err(&nf);
        assert_eq!(c.classify(r), Outcome::Success);
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(tonic::Status::data_loss("gone"));
        let r: Result<&http::Response<()>, _> = Err(&boxed);
        assert_eq!(c.retry_class(r), Some(RetryClass::Critical));
    }

    #[test]
    fn grpc_header_classified() {
        let res = http::Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        let r: Result<_, &std::io::Error> = Ok(&res);
        assert_eq!(GrpcClassifier.classify(r), Outcome::Failure);
    }

    #[test]
    fn do_not_retry_marker_found_in_chain() {
        // A concrete error type outside `as_dyn_error`'s list is a plain failure.
        let err = Wrapped(DoNotRetry);
        let r: Result<&(), &Wrapped> = Err(&err);
        assert_eq!(
            ErrorClassifier.retry_class(r),
            Some(RetryClass::Recoverable)
        );

        let boxed: Box<dyn StdError + Send + Sync> = Box::new(Wrapped(DoNotRetry));
        let r: Result<&(), _> = Err(&boxed);
        assert_eq!(ErrorClassifier.retry_class(r), Some(RetryClass::Permanent));
        assert_eq!(ErrorClassifier.classify(r), Outcome::Ignore);

        let plain: Box<dyn StdError + Send + Sync> = "boom".into();
        let r: Result<&(), _> = Err(&plain);
        assert_eq!(
            ErrorClassifier.retry_class(r),
            Some(RetryClass::Recoverable)
        );
    }

    #[test]
    fn http_classifier_reads_retry_after_and_429_switch() {
        let res = http::Response::builder()
            .status(503)
            .header("retry-after", "7")
            .body(())
            .unwrap();
        let c = HttpClassifier::new().classify_full(Ok::<_, &std::io::Error>(&res));
        assert_eq!(c.outcome, Outcome::Failure);
        assert_eq!(c.retry_after, Some(Duration::from_secs(7)));

        let res = http::Response::builder().status(429).body(()).unwrap();
        let c = HttpClassifier::new().too_many_requests_as(Outcome::Ignore);
        let full = c.classify_full(Ok::<_, &std::io::Error>(&res));
        assert_eq!(full.outcome, Outcome::Ignore);
        assert_eq!(full.retry, Some(RetryClass::Recoverable));

        let res = http::Response::builder().status(404).body(()).unwrap();
        assert_eq!(
            HttpClassifier::new().classify(Ok::<_, &std::io::Error>(&res)),
            Outcome::Success
        );

        // Our own layers' answers are the stack's, not the upstream's.
        use crate::failure::{Failure, FailureKind};
        for kind in [FailureKind::CallerLimited, FailureKind::CircuitOpen] {
            let res: http::Response<()> = Failure::new(kind).to_http_response();
            let full = HttpClassifier::new().classify_full(Ok::<_, &std::io::Error>(&res));
            assert_eq!(full.outcome, Outcome::Ignore, "{kind:?}");
            assert_eq!(full.retry, Some(RetryClass::Permanent), "{kind:?}");
        }
        let res: http::Response<()> = Failure::new(FailureKind::TimedOut).to_http_response();
        let full = HttpClassifier::new().classify_full(Ok::<_, &std::io::Error>(&res));
        assert_eq!(full.outcome, Outcome::Failure);
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_are_recoverable_failures() {
        let elapsed = tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>())
            .await
            .unwrap_err();
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(elapsed);
        let r: Result<&http::Response<()>, _> = Err(&boxed);
        let c = HttpClassifier::new().classify_full(r);
        assert_eq!(c.outcome, Outcome::Failure);
        assert_eq!(c.retry, Some(RetryClass::Recoverable));
        assert!(is_timeout(&*boxed));
    }

    #[test]
    fn retry_after_forms_and_hostile_values() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 5 ", now), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after(&"9".repeat(10_000), now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        // The obsolete forms recipients must still accept (RFC 9110 §5.6.7).
        let ten = Some(Duration::from_secs(10));
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            ten
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:47 1994", now), ten);
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:27 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("Sun Nov  6 99:49:47 1994", now), None);
        assert_eq!(parse_retry_after("\u{0}\u{ff}garbage", now), None);
    }
}
