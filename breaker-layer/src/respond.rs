//! How a breaker answers: the [`Respond`] policy and its generic mode, [`AsError`].
//!
//! The layer's modes differ only in what the caller sees when the circuit is open:
//!
//! | mode | open circuit | service error type |
//! |---|---|---|
//! | [`AsError`] (generic) | `Err(CircuitOpen)` boxed | `tower::BoxError` |
//! | `http::AsHttp` (feature `http`) | `503` + `Retry-After` response | the inner error, unchanged |
//! | `grpc::AsGrpc` (feature `grpc`) | gRPC `UNAVAILABLE` response | the inner error, unchanged |
//! | [`WithFallback`](crate::fallback::WithFallback) | the fallback's answer | the inner error, unchanged |

use reliability_core::classify::Outcome;
use tower::BoxError;

use crate::error::CircuitOpen;

/// What a breaker's service returns when the circuit rejects a call, and what it makes of
/// a finished call's result.
pub trait Respond<T, E> {
    /// The service's error type.
    type Error;

    /// The answer to a call the circuit rejected.
    fn open(&self, open: CircuitOpen) -> Result<T, Self::Error>;

    /// The answer to an admitted call that finished with `result`, classified `outcome`.
    fn finished(&self, result: Result<T, E>, outcome: Outcome) -> Result<T, Self::Error>;

    /// An error of the inner service's `poll_ready`.
    fn not_ready(&self, err: E) -> Self::Error;
}

/// Generic mode: an open circuit is an `Err` holding [`CircuitOpen`]; inner errors are
/// boxed into `tower::BoxError` as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsError;

impl<T, E: Into<BoxError>> Respond<T, E> for AsError {
    type Error = BoxError;

    fn open(&self, open: CircuitOpen) -> Result<T, BoxError> {
        Err(Box::new(open))
    }

    #[inline]
    fn finished(&self, result: Result<T, E>, _: Outcome) -> Result<T, BoxError> {
        result.map_err(Into::into)
    }

    fn not_ready(&self, err: E) -> BoxError {
        err.into()
    }
}
