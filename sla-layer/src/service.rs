//! [`Sla`]: the service that times calls.

use std::task::{Context, Poll};

use reliability_core::classify::{Classify, ErrorClassifier};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::monitor::SlaMonitor;

/// Times every call of `S` and records it into a monitor; see
/// [`SlaLayer`](crate::SlaLayer). Responses and errors pass through unchanged.
#[derive(Debug, Clone)]
pub struct Sla<S, C = ErrorClassifier> {
    inner: S,
    monitor: SlaMonitor,
    classifier: C,
}

impl<S, C> Sla<S, C> {
    /// Wraps `inner`.
    pub fn new(inner: S, monitor: SlaMonitor, classifier: C) -> Self {
        Self {
            inner,
            monitor,
            classifier,
        }
    }

    /// The monitor calls are recorded into.
    pub fn monitor(&self) -> &SlaMonitor {
        &self.monitor
    }

    reliability_core::inner_accessors!(S);
}

impl<S, C, Req> Service<Req> for Sla<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // The clock starts before the inner `call`: work a service does eagerly counts.
        let timer = self.monitor.start();
        let span = tracing::debug_span!(
            "sla",
            source = self.monitor.name(),
            outcome = tracing::field::Empty
        );
        let inner = span.in_scope(|| self.inner.call(req));
        ResponseFuture::new(inner, timer, self.classifier.clone(), span)
    }
}
