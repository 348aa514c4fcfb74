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

use std::fmt::Write as _;
use std::sync::Arc;

use reliability_core::answer::{Answer, AsError};

use crate::error::{KeyNotFound, RateLimited};
use crate::quota::{Decision, Quota};

/// The policy a decision was made under: its name and its `RateLimit-Policy` field value
/// (`"free-1s";q=2;w=1, ...`). A tier's label is built once, with the tier, so decorating
/// an admitted response formats nothing for the policy; cloning one is two reference-count
/// increments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLabel {
    name: Arc<str>,
    field: Arc<str>,
    #[cfg(feature = "http")]
    header: Option<http::HeaderValue>,
}

impl PolicyLabel {
    /// The label of `quota` under `name`.
    pub fn new(name: &str, quota: &Quota) -> Self {
        Self::from_windows(
            name,
            quota
                .windows()
                .iter()
                .map(|w| (w.limit(), w.period_micros())),
        )
    }

    /// The label of the windows a decision was made on, under `name` (for custom user and
    /// endpoint limits, which have no precomputed label).
    pub fn for_decision(name: &str, decision: &Decision) -> Self {
        Self::from_windows(name, decision.windows().iter().map(|w| (w.limit, w.period)))
    }

    fn from_windows(name: &str, windows: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut field = String::new();
        for (i, (limit, period_us)) in windows.enumerate() {
            if i > 0 {
                field.push_str(", ");
            }
            let _ = write!(
                field,
                "\"{name}-{}\";q={limit};w={}",
                WindowLabel(period_us),
                period_us.div_ceil(1_000_000).max(1)
            );
        }
        Self {
            name: name.into(),
            #[cfg(feature = "http")]
            header: http::HeaderValue::from_str(&field).ok(),
            field: field.into(),
        }
    }

    /// The policy's name (a tier's name, `user` or `endpoint`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `RateLimit-Policy` field value.
    pub fn policy_field(&self) -> &str {
        &self.field
    }

    /// The `RateLimit-Policy` field as a header value (`None` if it is not one: never for
    /// a validated tier name).
    #[cfg(feature = "http")]
    pub fn policy_header(&self) -> Option<&http::HeaderValue> {
        self.header.as_ref()
    }
}

/// A window's period in a policy item's name: `1s`, `60s`, `500ms`.
pub(crate) struct WindowLabel(pub(crate) u64);

impl std::fmt::Display for WindowLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(1_000_000) {
            write!(f, "{}s", self.0 / 1_000_000)
        } else {
            write!(f, "{}ms", self.0 / 1_000)
        }
    }
}

/// What a mode adds to a response the limiter decided on (admitted, or refused with the
/// backend's per-window detail): HTTP mode writes the IETF `RateLimit` fields.
pub trait Decorate<Res>: Clone + Send + Sync + 'static {
    /// Whether responses want the decision (so the limiter keeps it for them).
    const WANTS_DECISION: bool = false;

    /// Adds the decision's fields to `response`.
    fn decorate(&self, response: Res, _decision: &Decision, _policy: &PolicyLabel) -> Res {
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
                .map(|d| (*d, PolicyLabel::for_decision(&rejection.policy, d)))
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
