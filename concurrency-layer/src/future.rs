//! [`ResponseFuture`]: the inner call holding its place, a queued call waiting for one,
//! or the answer to a refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reliability_core::answer::Answer;
use reliability_core::classify::{Classify, Outcome};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::bulkhead::permit::{Permit, Waiter};
use crate::error::BulkheadFull;

pin_project! {
    /// The future of [`ConcurrencyLimit`](crate::ConcurrencyLimit).
    ///
    /// Dropped while its call runs, it gives the place back; dropped while queued, it
    /// leaves the queue.
    #[project = Proj]
    pub struct ResponseFuture<S, Req, F, C, R> {
        #[pin]
        kind: Kind<S, Req, F>,
        classifier: C,
        answer: R,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        Waiting {
            waiter: Waiter,
            // Boxed: only queued calls pay for a timer, and the fast path's future stays small.
            sleep: Pin<Box<Sleep>>,
            // Whether the sleep ends at the call's own deadline (not the queue timeout).
            at_deadline: bool,
            pending: Option<(S, Req)>,
        },
        Refused {
            refusal: Option<BulkheadFull>,
        },
        Done,
    }
}

impl<S, Req, F, C, R> std::fmt::Debug for ResponseFuture<S, Req, F, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Waiting { .. } => "waiting",
            Kind::Refused { .. } => "refused",
            Kind::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, Req, F, C, R> ResponseFuture<S, Req, F, C, R> {
    #[inline]
    pub(crate) fn called(
        future: F,
        permit: Permit,
        classifier: C,
        answer: R,
        span: tracing::Span,
    ) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
            classifier,
            answer,
            span,
        }
    }

    pub(crate) fn waiting(
        waiter: Waiter,
        service: S,
        req: Req,
        (deadline, at_deadline): (Instant, bool),
        classifier: C,
        answer: R,
        span: tracing::Span,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                waiter,
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
                at_deadline,
                pending: Some((service, req)),
            },
            classifier,
            answer,
            span,
        }
    }

    pub(crate) fn refused(refusal: BulkheadFull, classifier: C, answer: R) -> Self {
        Self {
            kind: Kind::Refused {
                refusal: Some(refusal),
            },
            classifier,
            answer,
            span: tracing::Span::none(),
        }
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Ignore => "ignored",
    }
}

impl<S, Req, F, C, R, T, E> Future for ResponseFuture<S, Req, F, C, R>
where
    S: Service<Req, Future = F>,
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    R: Answer<BulkheadFull, T, E>,
{
    type Output = Result<T, R::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            let refusal = match this.kind.as_mut().project() {
                KindProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    let outcome = this.classifier.classify(result.as_ref());
                    if let Some(permit) = permit.take() {
                        permit.finish(outcome);
                    }
                    this.span.record("outcome", outcome_name(outcome));
                    this.kind.set(Kind::Done);
                    return Poll::Ready(this.answer.finished(result, outcome));
                }
                KindProj::Waiting {
                    waiter,
                    sleep,
                    at_deadline,
                    pending,
                } => {
                    let admitted = match waiter.poll_grant(cx) {
                        Poll::Ready(admitted) => admitted,
                        Poll::Pending => {
                            ready!(sleep.as_mut().poll(cx));
                            match waiter.expire() {
                                Err(refusal) if *at_deadline => Err(refusal.at_deadline()),
                                other => other,
                            }
                        }
                    };
                    match (admitted, pending.take()) {
                        (Ok(permit), Some((mut service, req))) => {
                            let future = service.call(req);
                            this.kind.set(Kind::Called {
                                future,
                                permit: Some(permit),
                            });
                            continue;
                        }
                        (Err(refusal), _) => refusal,
                        (Ok(_), None) => unreachable!("a waiting future holds its request"),
                    }
                }
                KindProj::Refused { refusal } => match refusal.take() {
                    Some(refusal) => refusal,
                    None => unreachable!("a refused future holds its refusal"),
                },
                KindProj::Done => panic!("concurrency ResponseFuture polled after completion"),
            };
            this.span.record("outcome", refusal.rejection().as_str());
            this.kind.set(Kind::Done);
            return Poll::Ready(this.answer.refused(refusal));
        }
    }
}
