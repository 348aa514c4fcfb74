//! [`ResponseFuture`]: the inner call with its permit, or the answer of an open circuit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reliability_core::classify::{Classify, Outcome};
use tracing::Span;

use crate::breaker::Breaker;
use crate::error::CircuitOpen;
use crate::state::Permit;
use reliability_core::answer::Answer;

/// An admitted call's permit; dropped unfinished (the caller gave up), it is cancelled so
/// that a HALF_OPEN probe place is not lost.
#[derive(Debug)]
struct PermitGuard {
    breaker: Breaker,
    permit: Option<Permit>,
}

impl PermitGuard {
    #[inline]
    fn finish(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, outcome);
        }
    }
}

impl Drop for PermitGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.cancel(permit);
        }
    }
}

pin_project! {
    /// The future of [`CircuitBreaker`](crate::CircuitBreaker).
    ///
    /// It carries the call's `debug` span `circuit_breaker` (fields `source`, and
    /// `outcome` = success, failure, ignored or rejected once known), entered while the
    /// inner service is called and polled. With no subscriber interested the span is
    /// disabled: a check of tracing's callsite cache, no allocation.
    #[project = Proj]
    #[derive(Debug)]
    pub struct ResponseFuture<F, C, R> {
        #[pin]
        kind: Kind<F>,
        classifier: C,
        respond: R,
        span: Span,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            guard: PermitGuard,
        },
        Rejected {
            open: Option<CircuitOpen>,
        },
    }
}

impl<F, C: Clone, R: Clone> ResponseFuture<F, C, R> {
    /// Asks `breaker`, then calls `inner` or answers at once.
    #[inline]
    pub(crate) fn start<S, Req>(
        breaker: &Breaker,
        inner: &mut S,
        req: Req,
        classifier: &C,
        respond: &R,
    ) -> Self
    where
        S: tower_service::Service<Req, Future = F>,
    {
        let span = tracing::debug_span!(
            "circuit_breaker",
            source = breaker.name(),
            outcome = tracing::field::Empty
        );
        let kind = match breaker.acquire() {
            Ok(permit) => Kind::Called {
                future: span.in_scope(|| inner.call(req)),
                guard: PermitGuard {
                    breaker: breaker.clone(),
                    permit: Some(permit),
                },
            },
            Err(open) => {
                span.record("outcome", "rejected");
                Kind::Rejected { open: Some(open) }
            }
        };
        Self {
            kind,
            classifier: classifier.clone(),
            respond: respond.clone(),
            span,
        }
    }
}

impl<F, T, E, C, R> Future for ResponseFuture<F, C, R>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    R: Answer<CircuitOpen, T, E>,
{
    type Output = Result<T, R::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future, guard } => {
                let result = ready!(this.span.in_scope(|| future.poll(cx)));
                let outcome = this.classifier.classify(result.as_ref());
                this.span.record("outcome", outcome_name(outcome));
                guard.finish(outcome);
                Poll::Ready(this.respond.finished(result, outcome))
            }
            KindProj::Rejected { open } => {
                let open = open
                    .take()
                    .expect("breaker ResponseFuture polled after completion");
                Poll::Ready(this.respond.refused(open))
            }
        }
    }
}

/// The `outcome` field of the call's span.
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Ignore => "ignored",
    }
}
