//! What a request type needs for retries: a way to copy it, and a classifier of answers.
//!
//! [`RetryPolicy`] is the seam between the generic shell and a protocol. The ready
//! policies:
//!
//! - [`ClassifierPolicy`]: any `Clone` request, answers judged by any
//!   [`Classify`](reliability_core::classify::Classify) (default: `ErrorClassifier`, so
//!   errors are retried and errors marked "do not retry" are not);
//! - `http::Idempotent` (feature `http`): any policy of `http::Request<B>`, restricted to
//!   the requests that HTTP allows to repeat;
//! - `HttpPolicy` (feature `http`) and `GrpcPolicy` (feature `grpc`), which come only
//!   inside their layers (they need the body buffer in front).

use std::fmt;

use reliability_core::classify::{Classification, Classify, ErrorClassifier};
use reliability_core::deadline::{Deadline, HasDeadline};

use crate::schedule::StopReason;

/// How the retry layer copies requests and judges answers.
pub trait RetryPolicy<Req, Res, E>: Send + Sync + 'static {
    /// A copy of `req` for one more attempt, or `None` when it must not be sent twice
    /// (then it is sent once and never retried).
    fn replay(&self, req: &Req) -> Option<Req>;

    /// The verdict on one attempt.
    fn classify(&self, result: Result<&Res, &E>) -> Classification;

    /// A description of the request for dead letters (no secrets: it is stored).
    fn describe_request(&self, _req: &Req) -> String {
        String::new()
    }

    /// What was wrong with an answer that failed without an error (an HTTP 503).
    fn describe_response(&self, _res: &Res) -> String {
        "unsuccessful response".to_owned()
    }

    /// Called on a failed answer that is returned to the caller because retrying stopped;
    /// HTTP policies mark the response with [`RetryStopped`](crate::RetryStopped).
    fn on_stop(&self, _res: &mut Res, _attempts: u32, _reason: StopReason) {}

    /// The request's own deadline, if it carries one: no attempt starts at or after it,
    /// and the call answers [`DeadlineExceeded`](reliability_core::deadline::DeadlineExceeded)
    /// when it passes. `None` (the default) leaves only the layer's own `deadline`.
    fn deadline(&self, _req: &Req) -> Option<Deadline> {
        None
    }
}

/// A policy whose requests carry their deadline ([`HasDeadline`]); everything else is
/// `P`'s. Made by the builder's `with_deadlines`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithDeadlines<P> {
    inner: P,
}

impl<P> WithDeadlines<P> {
    /// `inner`, reading each request's deadline.
    pub fn new(inner: P) -> Self {
        Self { inner }
    }
}

impl<Req, Res, E, P> RetryPolicy<Req, Res, E> for WithDeadlines<P>
where
    Req: HasDeadline,
    P: RetryPolicy<Req, Res, E>,
{
    fn replay(&self, req: &Req) -> Option<Req> {
        self.inner.replay(req)
    }

    fn classify(&self, result: Result<&Res, &E>) -> Classification {
        self.inner.classify(result)
    }

    fn describe_request(&self, req: &Req) -> String {
        self.inner.describe_request(req)
    }

    fn describe_response(&self, res: &Res) -> String {
        self.inner.describe_response(res)
    }

    fn on_stop(&self, res: &mut Res, attempts: u32, reason: StopReason) {
        self.inner.on_stop(res, attempts, reason);
    }

    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        req.deadline()
    }
}

/// A request description for dead letters.
pub trait Describe<Req>: Send + Sync + 'static {
    /// Describes `req`.
    fn describe(&self, req: &Req) -> String;
}

/// No description.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDescription;

impl<Req> Describe<Req> for NoDescription {
    fn describe(&self, _req: &Req) -> String {
        String::new()
    }
}

impl<Req, F> Describe<Req> for F
where
    F: Fn(&Req) -> String + Send + Sync + 'static,
{
    fn describe(&self, req: &Req) -> String {
        self(req)
    }
}

/// Retries any `Clone` request; answers are judged by a [`Classify`].
///
/// Every request is replayed, whatever it is: for `http::Request<B>` that includes a
/// `POST`. Wrap the policy in `http::Idempotent` (feature `http`) to apply the HTTP rule
/// (`http::may_replay`). The rule is not built in because this policy is generic over the
/// request type and Rust has no specialisation: it cannot treat `http::Request<B>`
/// differently from any other `Clone` request.
#[derive(Clone, Copy)]
pub struct ClassifierPolicy<C = ErrorClassifier, D = NoDescription> {
    classifier: C,
    describe: D,
}

impl<C, D> fmt::Debug for ClassifierPolicy<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifierPolicy")
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl Default for ClassifierPolicy {
    /// `ErrorClassifier`: errors are retried unless marked "do not retry".
    fn default() -> Self {
        Self::new(ErrorClassifier)
    }
}

impl<C> ClassifierPolicy<C> {
    /// Answers judged by `classifier`.
    pub fn new(classifier: C) -> Self {
        Self {
            classifier,
            describe: NoDescription,
        }
    }
}

impl<C, D> ClassifierPolicy<C, D> {
    /// Describes requests for dead letters with `describe`.
    #[must_use]
    pub fn describe_with<D2>(self, describe: D2) -> ClassifierPolicy<C, D2> {
        ClassifierPolicy {
            classifier: self.classifier,
            describe,
        }
    }
}

impl<Req, Res, E, C, D> RetryPolicy<Req, Res, E> for ClassifierPolicy<C, D>
where
    Req: Clone,
    C: Classify<Res, E> + Send + Sync + 'static,
    D: Describe<Req>,
{
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }

    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> Classification {
        self.classifier.classify_full(result)
    }

    fn describe_request(&self, req: &Req) -> String {
        self.describe.describe(req)
    }
}
