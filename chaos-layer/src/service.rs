//! [`Chaos`]: the service that may answer in the upstream's place.

use std::sync::Arc;
use std::task::{Context, Poll};

use reliability_core::answer::{Answer, AsError};
use tower_service::Service;

use crate::decide::Fault;
use crate::error::InjectedFault;
use crate::future::{Injection, ResponseFuture};
use crate::handle::{ChaosHandle, State};
use crate::metrics::Injection as Counted;
use crate::respond::{NoResponse, Responder};

/// Wraps a service with fault injection. Made by [`ChaosLayer`](crate::ChaosLayer).
///
/// Disabled, a call costs one atomic load more than the bare service. `poll_ready`
/// always drives the inner service; a call answered by an injected fault does not reach
/// it.
#[derive(Debug, Clone)]
pub struct Chaos<S, A = AsError, R = NoResponse> {
    inner: S,
    state: Arc<State>,
    answer: A,
    responder: R,
}

impl<S, A, R> Chaos<S, A, R> {
    pub(crate) fn new(inner: S, state: Arc<State>, answer: A, responder: R) -> Self {
        Self {
            inner,
            state,
            answer,
            responder,
        }
    }

    /// The switch of this layer.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle {
            state: self.state.clone(),
        }
    }

    reliability_core::inner_accessors!(S);
}

impl<S, A, R, Req> Service<Req> for Chaos<S, A, R>
where
    S: Service<Req>,
    A: Answer<InjectedFault, S::Response, S::Error> + Clone,
    R: Responder<S::Response>,
{
    type Response = S::Response;
    type Error = A::Error;
    type Future = ResponseFuture<S::Future, A, S::Response>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.answer.inner_error(e))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if !self.state.is_enabled() {
            return ResponseFuture::inner(self.inner.call(req), self.answer.clone());
        }
        self.call_enabled(req)
    }
}

impl<S, A, R> Chaos<S, A, R> {
    #[inline(never)]
    fn call_enabled<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, A, S::Response>
    where
        S: Service<Req>,
        A: Clone,
        R: Responder<S::Response>,
    {
        let decision = self.state.decide();
        let counters = &self.state.counters;
        if decision.delay.is_some() {
            counters.add(Counted::Latency);
        }
        let answer = self.answer.clone();
        let span = tracing::debug_span!(
            "chaos",
            source = self.state.name.as_str(),
            fault = tracing::field::Empty,
            delay_ms = decision.delay.map_or(0, |d| d.as_millis() as u64),
        );
        let Some(fault) = decision.fault else {
            span.record("fault", "none");
            let future = span.in_scope(|| self.inner.call(req));
            return ResponseFuture::traced(future, decision.delay, answer, span);
        };
        let response = match fault {
            Fault::Response => self.responder.respond(),
            Fault::Error => None,
        };
        let injection = match response {
            Some(res) => {
                counters.add(Counted::Response);
                Injection::Response(res)
            }
            None => {
                counters.add(Counted::Error);
                Injection::Error(InjectedFault::new(self.state.name.as_str()))
            }
        };
        // What was injected: a fault without a response to give is an error.
        let injected = match injection {
            Injection::Error(_) => "error",
            Injection::Response(_) => "response",
        };
        span.record("fault", injected);
        ResponseFuture::injected(injection, decision.delay, answer, span)
    }
}
