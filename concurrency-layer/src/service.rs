//! [`ConcurrencyLimit`]: the service that takes a place before each call.

use std::fmt;
use std::task::{Context, Poll};

use reliability_core::answer::{Answer, AsError};
use reliability_core::classify::{Classify, ErrorClassifier};
use reliability_core::service::take_ready;
use tower_service::Service;

use crate::bulkhead::Limiter;
use crate::bulkhead::limiter::Admission;
use crate::error::BulkheadFull;
use crate::future::ResponseFuture;
use crate::priority::{Prioritize, SamePriority};
use crate::registry::SelectLimiter;

/// Wraps a service with a concurrency limit. Made by
/// [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer).
///
/// `poll_ready` drives the inner service only and reserves nothing, so a service that is
/// made ready and then dropped holds no place. `call` takes a place at once when one is
/// free (no allocation, no clock read for a fixed limit); otherwise it queues the call,
/// taking the ready inner service along (tower's clone-and-replace idiom, hence
/// `S: Clone`), or answers the refusal at once.
#[derive(Clone)]
pub struct ConcurrencyLimit<S, L = Limiter, P = SamePriority, C = ErrorClassifier, R = AsError> {
    inner: S,
    limiters: L,
    priority: P,
    classifier: C,
    answer: R,
}

// By hand: the priority function is usually a closure, which is not `Debug`.
impl<S: fmt::Debug, L: fmt::Debug, P, C: fmt::Debug, R: fmt::Debug> fmt::Debug
    for ConcurrencyLimit<S, L, P, C, R>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("limiters", &self.limiters)
            .field("classifier", &self.classifier)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

impl<S, L, P, C, R> ConcurrencyLimit<S, L, P, C, R> {
    pub(crate) fn new(inner: S, limiters: L, priority: P, classifier: C, answer: R) -> Self {
        Self {
            inner,
            limiters,
            priority,
            classifier,
            answer,
        }
    }

    /// The limiter (or per-key registry) this service counts against.
    pub fn limiters(&self) -> &L {
        &self.limiters
    }

    reliability_core::inner_accessors!(S);
}

impl<S, L, P, C, R, Req> Service<Req> for ConcurrencyLimit<S, L, P, C, R>
where
    S: Service<Req> + Clone,
    L: SelectLimiter<Req>,
    P: Prioritize<Req>,
    C: Classify<S::Response, S::Error> + Clone,
    R: Answer<BulkheadFull, S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = R::Error;
    type Future = ResponseFuture<S, Req, S::Future, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.answer.inner_error(e))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let priority = self.priority.priority(&req);
        let request_deadline = self.priority.deadline(&req);
        let (classifier, answer) = (self.classifier.clone(), self.answer.clone());
        let limiter = match self.limiters.select(&req, priority) {
            Ok(limiter) => limiter,
            Err(refusal) => return ResponseFuture::refused(refusal, classifier, answer),
        };
        let span = tracing::debug_span!(
            "concurrency",
            source = %limiter.name(),
            priority = priority.as_str(),
            outcome = tracing::field::Empty,
        );
        match limiter.acquire(priority) {
            Admission::Admitted(permit) => {
                let future = span.in_scope(|| self.inner.call(req));
                ResponseFuture::called(future, permit, classifier, answer, span)
            }
            Admission::Queued(waiter) => {
                let ready = take_ready(&mut self.inner);
                let queue_end = tokio::time::Instant::now() + limiter.shared.queue_timeout;
                // The queue gives up at the earlier of its timeout and the call's deadline.
                let (until, at_deadline) = match request_deadline {
                    Some(d) if d.instant() <= queue_end => (d.instant(), true),
                    _ => (queue_end, false),
                };
                ResponseFuture::waiting(
                    waiter,
                    ready,
                    req,
                    (until, at_deadline),
                    classifier,
                    answer,
                    span,
                )
            }
            Admission::Refused(refusal) => {
                span.record("outcome", refusal.rejection().as_str());
                ResponseFuture::refused(refusal, classifier, answer)
            }
        }
    }
}
