//! Which requests may be hedged, and how a copy is made: the [`HedgeRequest`] policy.
//!
//! A hedge is a second copy of a request, so a request type must be cloneable to be
//! hedged, and the copy must be safe to send (its effect must not double). In generic mode
//! ([`Cloned`]) the caller vouches for both by stacking the layer: every `Clone` request
//! is hedged. In HTTP mode (`http::HttpReplay`, feature `http`) only idempotent requests
//! are, per `reliability_core::idempotent`.

use reliability_core::deadline::{Deadline, HasDeadline};

/// Decides whether a request may be hedged and makes its copies.
pub trait HedgeRequest<Req> {
    /// Readies `req` to be copied, once, before its first copy is sent and only when it
    /// may be hedged (e.g. tees a streaming body so that copies can replay it). The
    /// default leaves it as it is.
    fn prepare(&self, req: Req) -> Req {
        req
    }

    /// A copy of `req` to send as a hedge, or `None` when `req` must be sent only once.
    fn copy(&self, req: &Req) -> Option<Req>;

    /// The request's deadline: no hedge is sent at or after it.
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        let _ = req;
        None
    }
}

/// Generic mode: every request is hedged by cloning it; requests carry no deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cloned;

impl<Req: Clone> HedgeRequest<Req> for Cloned {
    #[inline]
    fn copy(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Generic mode for requests that carry a deadline ([`HasDeadline`]): every request is
/// hedged by cloning it, and hedging stops at its deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClonedWithDeadline;

impl<Req: Clone + HasDeadline> HedgeRequest<Req> for ClonedWithDeadline {
    #[inline]
    fn copy(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }

    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        req.deadline()
    }
}

/// Never hedges: a policy for requests that must be sent once (useful in tests and to
/// switch hedging off without changing the stack's type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Never;

impl<Req> HedgeRequest<Req> for Never {
    #[inline]
    fn copy(&self, _req: &Req) -> Option<Req> {
        None
    }
}
