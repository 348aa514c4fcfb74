//! [`ResponseFuture`]: records the call when the inner future finishes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reliability_core::classify::{Classify, Outcome};
use tracing::Span;

use crate::monitor::CallTimer;

pin_project! {
    /// The future of [`Sla`](crate::Sla): the inner future, timed. Dropped before it
    /// finishes, it counts the call as cancelled.
    ///
    /// It carries the call's `debug` span `sla` (fields `source`, and `outcome` =
    /// success, failure or ignored once known), entered while the inner service is called
    /// and polled; disabled, and free of allocation, without an interested subscriber.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        timer: Option<CallTimer>,
        classifier: C,
        span: Span,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, timer: CallTimer, classifier: C, span: Span) -> Self {
        Self {
            inner,
            timer: Some(timer),
            classifier,
            span,
        }
    }
}

impl<F: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("timer", &self.timer)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.span.in_scope(|| this.inner.poll(cx)));
        if let Some(timer) = this.timer.take() {
            let outcome = this.classifier.classify(result.as_ref());
            timer.finish(outcome);
            this.span.record(
                "outcome",
                match outcome {
                    Outcome::Success => "success",
                    Outcome::Failure => "failure",
                    Outcome::Ignore => "ignored",
                },
            );
        }
        Poll::Ready(result)
    }
}
