//! [`CircuitBreaker`]: the service that asks its breaker before each call.

use std::task::{Context, Poll};

use reliability_core::classify::{Classify, ErrorClassifier};
use tower_service::Service;

use crate::breaker::Breaker;
use crate::future::ResponseFuture;
use reliability_core::answer::{Answer, AsError};

use crate::error::CircuitOpen;

/// Wraps a service with a circuit breaker. Made by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// Every clone shares one [`Breaker`]. `poll_ready` drives the inner service only; an open
/// circuit answers in `call`, at once, without touching the inner service.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C = ErrorClassifier, R = AsError> {
    inner: S,
    breaker: Breaker,
    classifier: C,
    respond: R,
}

impl<S, C, R> CircuitBreaker<S, C, R> {
    pub(crate) fn new(inner: S, breaker: Breaker, classifier: C, respond: R) -> Self {
        Self {
            inner,
            breaker,
            classifier,
            respond,
        }
    }

    /// The breaker this service reports to.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    reliability_core::inner_accessors!(S);
}

impl<S, C, R, Req> Service<Req> for CircuitBreaker<S, C, R>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
    R: Answer<CircuitOpen, S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = R::Error;
    type Future = ResponseFuture<S::Future, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.respond.inner_error(e))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::start(
            &self.breaker,
            &mut self.inner,
            req,
            &self.classifier,
            &self.respond,
        )
    }
}
