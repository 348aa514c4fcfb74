//! [`ResponseFuture`]: the first copy, the hedges sent after it, and the timer between.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use reliability_core::classify::{Classify, Outcome};
use reliability_core::deadline::Deadline;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use tracing::Span;

use crate::hedger::Shared;
use crate::metrics::Event;
use crate::policy::HedgeRequest;

/// What a request needs to send hedges: a service clone to send them through, a spare
/// copy of the request, and when the next one is due.
pub(crate) struct Plan<S, Req> {
    pub(crate) service: S,
    pub(crate) spare: Req,
    pub(crate) delay: Duration,
    pub(crate) next_at: Instant,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) left: u32,
}

pin_project! {
    /// The future of [`Hedge`](crate::Hedge): the first good answer of the copies in
    /// flight. Dropping it (or answering) drops every copy still in flight.
    ///
    /// It carries the call's `debug` span `hedge` (fields `source`; `hedges`, the copies
    /// sent after the first; and `outcome`: `primary` or `hedge` for the copy whose answer
    /// was taken, `failure` when every copy failed), entered while it is polled; disabled,
    /// and free of allocation, without an interested subscriber.
    pub struct ResponseFuture<S, Req, P, C>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Option<S::Future>,
        primary_sent: Instant,
        // Hedges are boxed: a `Vec` cannot pin its elements in place without unsafe code,
        // and only a call that is actually hedged pays for the allocation. The first copy,
        // which every call has, stays inline.
        hedges: Vec<(Pin<Box<S::Future>>, Instant)>,
        #[pin]
        timer: Option<Sleep>,
        plan: Option<Plan<S, Req>>,
        last_failure: Option<Result<S::Response, S::Error>>,
        shared: Arc<Shared>,
        policy: P,
        classifier: C,
        sent: u32,
        span: Span,
    }
}

impl<S, Req, P, C> ResponseFuture<S, Req, P, C>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        primary_sent: Instant,
        plan: Option<Plan<S, Req>>,
        shared: Arc<Shared>,
        policy: P,
        classifier: C,
        span: Span,
    ) -> Self {
        Self {
            primary: Some(primary),
            primary_sent,
            hedges: Vec::new(),
            timer: None,
            plan,
            last_failure: None,
            shared,
            policy,
            classifier,
            sent: 0,
            span,
        }
    }
}

/// Records how the call ended on its span.
fn finish(span: &Span, outcome: &'static str, hedges: u32) {
    span.record("outcome", outcome);
    span.record("hedges", hedges);
}

impl<S, Req, P, C> fmt::Debug for ResponseFuture<S, Req, P, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary_in_flight", &self.primary.is_some())
            .field("hedges_in_flight", &self.hedges.len())
            .field("may_hedge", &self.plan.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether a finished copy's result is the answer: anything the classifier does not call
/// a failure.
#[inline]
fn is_good<T, E, C: Classify<T, E>>(classifier: &C, result: &Result<T, E>) -> bool {
    classifier.classify(result.as_ref()) != Outcome::Failure
}

impl<S, Req, P, C> Future for ResponseFuture<S, Req, P, C>
where
    S: Service<Req>,
    P: HedgeRequest<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            if let Some(primary) = this.primary.as_mut().as_pin_mut()
                && let Poll::Ready(result) = primary.poll(cx)
            {
                this.primary.set(None);
                if is_good(this.classifier, &result) {
                    if this.shared.records_latency() {
                        let now = Instant::now();
                        this.shared.record(now, now - *this.primary_sent);
                    }
                    finish(this.span, "primary", *this.sent);
                    return Poll::Ready(result);
                }
                *this.last_failure = Some(result);
            }

            let mut i = 0;
            while i < this.hedges.len() {
                let (hedge, sent) = &mut this.hedges[i];
                let Poll::Ready(result) = hedge.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let sent = *sent;
                drop(this.hedges.swap_remove(i));
                if is_good(this.classifier, &result) {
                    if this.shared.records_latency() {
                        let now = Instant::now();
                        this.shared.record(now, now - sent);
                    }
                    this.shared.counters.add(Event::Won);
                    finish(this.span, "hedge", *this.sent);
                    return Poll::Ready(result);
                }
                *this.last_failure = Some(result);
            }

            if this.primary.is_none() && this.hedges.is_empty() {
                // Every copy failed: the last failure is the answer. Hedging is not
                // retrying, so a copy is never sent after the others have all finished.
                finish(this.span, "failure", *this.sent);
                return Poll::Ready(
                    this.last_failure
                        .take()
                        .expect("hedge ResponseFuture polled after completion"),
                );
            }

            let Some(plan) = this.plan.as_mut() else {
                return Poll::Pending;
            };
            if this.timer.is_none() {
                this.timer.set(Some(tokio::time::sleep_until(plan.next_at)));
            }
            if let Some(timer) = this.timer.as_mut().as_pin_mut()
                && timer.poll(cx).is_pending()
            {
                return Poll::Pending;
            }
            match plan.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The service cannot take a hedge; the copies in flight may still
                    // answer, and their own errors are the ones worth returning.
                    *this.plan = None;
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            let now = Instant::now();
            if plan.deadline.is_some_and(|d| d.is_past(now)) {
                *this.plan = None;
                continue;
            }
            if !this.shared.budget.try_withdraw() {
                this.shared.counters.add(Event::Refused);
                *this.plan = None;
                continue;
            }
            plan.left -= 1;
            let copy = if plan.left > 0 {
                this.policy.copy(&plan.spare)
            } else {
                None
            };
            let hedge = match copy {
                Some(copy) => {
                    let hedge = plan.service.call(copy);
                    plan.next_at = now + plan.delay;
                    if plan.deadline.is_some_and(|d| plan.next_at >= d.instant()) {
                        *this.plan = None;
                    }
                    hedge
                }
                None => match this.plan.take() {
                    Some(Plan {
                        mut service, spare, ..
                    }) => service.call(spare),
                    None => continue,
                },
            };
            this.shared.counters.add(Event::Sent);
            *this.sent += 1;
            this.timer.set(None);
            this.hedges.push((Box::pin(hedge), now));
        }
    }
}
