//! [`Hedge`]: the service that sends a request once, then again if the answer is slow.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use reliability_core::classify::{Classify, ErrorClassifier};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Plan, ResponseFuture};
use crate::hedger::{Hedger, Shared};
use crate::metrics::Event;
use crate::policy::{Cloned, HedgeRequest};

/// Wraps a service with hedging. Made by [`HedgeLayer`](crate::HedgeLayer).
///
/// `poll_ready` drives the inner service only, and `call` sends the first copy through
/// it. A hedge goes through a clone of the inner service, which the response future
/// drives to readiness before sending. Errors of the inner service pass through
/// unchanged.
#[derive(Debug, Clone)]
pub struct Hedge<S, P = Cloned, C = ErrorClassifier> {
    inner: S,
    shared: Arc<Shared>,
    policy: P,
    classifier: C,
}

impl<S, P, C> Hedge<S, P, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, policy: P, classifier: C) -> Self {
        Self {
            inner,
            shared,
            policy,
            classifier,
        }
    }

    /// The layer's counters and current delay.
    pub fn hedger(&self) -> Hedger {
        Hedger {
            shared: self.shared.clone(),
        }
    }

    reliability_core::inner_accessors!(S);
}

impl<S, P, C, Req> Service<Req> for Hedge<S, P, C>
where
    S: Service<Req> + Clone,
    P: HedgeRequest<Req> + Clone,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, P, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.shared;
        shared.counters.add(Event::Request);
        let now = Instant::now();
        let (req, plan) = self.plan(req, now);
        // The first copy goes through the service `poll_ready` drove; hedges through a
        // clone that their future drives itself, so no readiness is reserved for them.
        let span = tracing::debug_span!(
            "hedge",
            source = shared.name.as_str(),
            hedges = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let primary = span.in_scope(|| self.inner.call(req));
        ResponseFuture::new(
            primary,
            now,
            plan,
            self.shared.clone(),
            self.policy.clone(),
            self.classifier.clone(),
            span,
        )
    }
}

impl<S: Clone, P, C> Hedge<S, P, C> {
    /// The hedging plan of a request starting `now`: none when hedging is off, the delay is
    /// not known yet, the request may not be copied, or its deadline comes before the
    /// first hedge would.
    #[inline]
    fn plan<Req>(&self, req: Req, now: Instant) -> (Req, Option<Plan<S, Req>>)
    where
        P: HedgeRequest<Req>,
    {
        if self.shared.max_hedges == 0 {
            return (req, None);
        }
        let Some(delay) = self.shared.delay() else {
            return (req, None);
        };
        let req = self.policy.prepare(req);
        let plan = self.plan_for(&req, delay, now);
        (req, plan)
    }

    #[inline]
    fn plan_for<Req>(&self, req: &Req, delay: Duration, now: Instant) -> Option<Plan<S, Req>>
    where
        P: HedgeRequest<Req>,
    {
        let spare = self.policy.copy(req)?;
        // Only requests that could be hedged earn budget: a stream of POSTs must not pay
        // for hedging the GETs beside it.
        self.shared.budget.deposit();
        let next_at = now + delay;
        let deadline = self.policy.deadline(req);
        if deadline.is_some_and(|d| next_at >= d.instant()) {
            return None;
        }
        Some(Plan {
            service: self.inner.clone(),
            spare,
            delay,
            next_at,
            deadline,
            left: self.shared.max_hedges,
        })
    }
}
