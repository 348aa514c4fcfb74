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
        tokio::time::error::Elapsed,
        tower::timeout::error::Elapsed,
        crate::error::DoNotRetry
    );
    #[cfg(feature = "redis")]
    concrete!(redis::RedisError);
    #[cfg(feature = "grpc")]
    concrete!(tonic::Status);
    None
}

mod grpc;
mod http;

#[cfg(feature = "grpc")]
pub use grpc::GrpcClassifier;
pub use grpc::classify_grpc_code;
#[cfg(feature = "http")]
pub use http::HttpClassifier;
pub use http::{MAX_RETRY_AFTER, classify_http_status, parse_retry_after};

#[cfg(test)]
mod tests;
