//! How a rate-limited service answers: the [`Respond`] policy and its generic mode,
//! [`AsError`].
//!
//! The layer's modes differ only in what the caller sees when a request is refused:
//!
//! | mode | refused | no key ([`MissingKey::Reject`](crate::MissingKey::Reject)) | service error type |
//! |---|---|---|---|
//! | [`AsError`] (generic) | `Err(RateLimited)` boxed | `Err(KeyNotFound)` boxed | `tower::BoxError` |
//! | `http::AsHttp` (feature `http`) | `429` / `503` + `Retry-After` response | `400` / `500` response | the inner error, unchanged |
//! | `grpc::AsGrpc` (feature `grpc`) | gRPC `RESOURCE_EXHAUSTED` / `UNAVAILABLE` | `INVALID_ARGUMENT` / `INTERNAL` | the inner error, unchanged |

use tower::BoxError;

use crate::error::{KeyNotFound, RateLimited};
use crate::quota::Decision;

/// How a rate-limited service answers: refusals, admitted responses, inner errors.
pub trait Respond<Res, E>: Clone + Send + Sync + 'static {
    /// The service's error type.
    type Error;
    /// Whether admitted responses want the decision (to add headers).
    const WANTS_DECISION: bool = false;
    /// The answer to a refused request.
    fn rejected(&self, rejection: RateLimited) -> Result<Res, Self::Error>;
    /// The answer to a request without a key, under
    /// [`MissingKey::Reject`](crate::MissingKey::Reject).
    fn key_not_found(&self, missing: KeyNotFound) -> Result<Res, Self::Error>;
    /// Decorates an admitted response (called only if `WANTS_DECISION`).
    fn allowed(&self, response: Res, _decision: &Decision, _policy: &str) -> Res {
        response
    }
    /// Maps the inner service's error.
    fn inner_error(&self, error: E) -> Self::Error;
}

/// Generic mode: refusals are [`RateLimited`] errors inside [`BoxError`] (requests without a
/// key: [`KeyNotFound`]); inner errors are boxed unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsError;

impl<Res, E: Into<BoxError>> Respond<Res, E> for AsError {
    type Error = BoxError;
    fn rejected(&self, rejection: RateLimited) -> Result<Res, BoxError> {
        Err(Box::new(rejection))
    }
    fn key_not_found(&self, missing: KeyNotFound) -> Result<Res, BoxError> {
        Err(Box::new(missing))
    }
    fn inner_error(&self, error: E) -> BoxError {
        error.into()
    }
}
