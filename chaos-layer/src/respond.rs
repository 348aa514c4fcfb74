//! [`Responder`]: the answer a "response" fault puts in place of the upstream's.

use std::fmt;
use std::sync::Arc;

/// Makes the response of a "response" fault.
pub trait Responder<Res> {
    /// The response; `None` injects an error instead.
    fn respond(&self) -> Option<Res>;
}

/// No chosen response: a "response" fault is injected as an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoResponse;

impl<Res> Responder<Res> for NoResponse {
    #[inline]
    fn respond(&self) -> Option<Res> {
        None
    }
}

/// A response made by a closure (see
/// [`ChaosBuilder::respond_with`](crate::ChaosBuilder::respond_with)).
pub struct FnResponder<F>(pub(crate) Arc<F>);

impl<F> Clone for FnResponder<F> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<F> fmt::Debug for FnResponder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnResponder")
    }
}

impl<F, Res> Responder<Res> for FnResponder<F>
where
    F: Fn() -> Res,
{
    #[inline]
    fn respond(&self) -> Option<Res> {
        Some((self.0)())
    }
}
