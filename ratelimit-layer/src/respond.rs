//! How a rate-limited service answers: core's [`Answer`] modes, and [`Decorate`] for the
//! fields an admitted response carries.
//!
//! The modes are `reliability_core::answer`'s, the same on every layer; they differ only in
//! what the caller sees when a request is refused:
//!
//! | mode | refused | no key ([`MissingKey::Reject`](crate::MissingKey::Reject)) | service error type |
//! |---|---|---|---|
//! | [`AsError`](reliability_core::answer::AsError) (default) | `Err(RateLimited)` boxed | `Err(KeyNotFound)` boxed | `tower::BoxError` |
//! | `AsHttp` ([`RateLimitLayer::http`](crate::RateLimitLayer::http)) | `429` / `503` + `Retry-After` + `RateLimit` fields | `400` / `500`, the missing part named in the body | the inner error, unchanged |
//! | `AsGrpc` ([`RateLimitLayer::grpc`](crate::RateLimitLayer::grpc)) | `RESOURCE_EXHAUSTED` / `UNAVAILABLE` | `INVALID_ARGUMENT` / `INTERNAL` | the inner error, unchanged |
//! | `http::LegacyHeaders` | as `AsHttp`, plus `X-RateLimit-*` | as `AsHttp` | the inner error, unchanged |

use reliability_core::answer::{Answer, AsError};

use crate::error::{KeyNotFound, RateLimited};
use crate::quota::Decision;

/// What a mode adds to a response the limiter decided on (admitted, or refused with the
/// backend's per-window detail): HTTP mode writes the IETF `RateLimit` fields.
pub trait Decorate<Res>: Clone + Send + Sync + 'static {
    /// Whether responses want the decision (so the limiter keeps it for them).
    const WANTS_DECISION: bool = false;

    /// Adds the decision's fields to `response`.
    fn decorate(&self, response: Res, _decision: &Decision, _policy: &str) -> Res {
        response
    }
}

impl<Res> Decorate<Res> for AsError {}

/// Every mode a [`RateLimit`](crate::RateLimit) service can answer in: one that [answers
/// both refusals](Answer) with one error type and [decorates](Decorate) responses.
/// Implemented for every such type; implement those two traits, not this one.
pub trait Respond<Res, E>: Decorate<Res> {
    /// The service's error type.
    type Error;
    /// The answer to a refused request.
    fn rejected(&self, rejection: RateLimited) -> Result<Res, Self::Error>;
    /// The answer to a request without a key.
    fn key_not_found(&self, missing: KeyNotFound) -> Result<Res, Self::Error>;
    /// Maps the inner service's error.
    fn inner_error(&self, error: E) -> Self::Error;
}

impl<T, Res, E, X> Respond<Res, E> for T
where
    T: Decorate<Res>
        + Answer<RateLimited, Res, E, Error = X>
        + Answer<KeyNotFound, Res, E, Error = X>,
{
    type Error = X;

    fn rejected(&self, rejection: RateLimited) -> Result<Res, X> {
        // The refusal's own decision decorates the answer (the fields say when to come
        // back, window by window), so it is taken before the refusal is handed over.
        let detail = if T::WANTS_DECISION {
            rejection
                .decision
                .as_deref()
                .map(|d| (*d, rejection.policy.clone()))
        } else {
            None
        };
        let answer = self.refused(rejection);
        match detail {
            Some((d, policy)) => answer.map(|res| self.decorate(res, &d, &policy)),
            None => answer,
        }
    }

    fn key_not_found(&self, missing: KeyNotFound) -> Result<Res, X> {
        self.refused(missing)
    }

    #[inline]
    fn inner_error(&self, error: E) -> X {
        Answer::<RateLimited, Res, E>::inner_error(self, error)
    }
}
