//! HTTP: the status table every layer shares, `Retry-After` parsing, and (feature `http`)
//! [`HttpClassifier`] for `http::Response`.

use std::time::Duration;

use super::{Classification, RetryClass};
#[cfg(feature = "http")]
use super::{Classify, Outcome, as_dyn_error, classify_error};

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
mod classifier {
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
pub use classifier::HttpClassifier;
