//! [`ResponseFuture`]: records the call when the inner future finishes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reliability_core::classify::Classify;

use crate::monitor::CallTimer;

pin_project! {
    /// The future of [`Sla`](crate::Sla): the inner future, timed. Dropped before it
    /// finishes, it counts the call as cancelled.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        timer: Option<CallTimer>,
        classifier: C,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, timer: CallTimer, classifier: C) -> Self {
        Self {
            inner,
            timer: Some(timer),
            classifier,
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
        let result = ready!(this.inner.poll(cx));
        if let Some(timer) = this.timer.take() {
            timer.finish(this.classifier.classify(result.as_ref()));
        }
        Poll::Ready(result)
    }
}
