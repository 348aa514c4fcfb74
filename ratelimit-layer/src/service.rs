//! [`RateLimit`]: the service.

use reliability_core::service::take_ready;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::error::{KeyNotFound, Reason};
use crate::future::ResponseFuture;
use crate::key::{KeyExtractor, MissingKey, Subject};
use crate::limiter::{RateLimiter, Resolved};
use crate::quota::Mode;
use crate::respond::Respond;

pub(crate) struct Shared<X, R> {
    pub(crate) limiter: RateLimiter,
    pub(crate) extractor: X,
    pub(crate) respond: R,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) on_missing_key: MissingKey,
    /// Set by the first request without a key: one warning per layer, not one per request.
    pub(crate) warned_missing_key: AtomicBool,
}

impl<X, R> Shared<X, R> {
    pub(crate) fn new(
        limiter: RateLimiter,
        extractor: X,
        respond: R,
        max_wait: Option<Duration>,
        on_missing_key: MissingKey,
    ) -> Self {
        Self {
            limiter,
            extractor,
            respond,
            max_wait,
            on_missing_key,
            warned_missing_key: AtomicBool::new(false),
        }
    }

    /// The first time, warns how to fix it. Under `Reject`, returns the refusal.
    #[cold]
    fn missing_key<Req>(&self, request: &Req) -> Option<KeyNotFound>
    where
        X: KeyExtractor<Req>,
    {
        let reject = self.on_missing_key == MissingKey::Reject;
        // The load keeps the common case (already warned) free of a contended write.
        let first = !self.warned_missing_key.load(Ordering::Relaxed)
            && !self.warned_missing_key.swap(true, Ordering::Relaxed);
        if !reject && !first {
            return None;
        }
        let missing = self.extractor.explain_missing(request);
        if first {
            let outcome = match self.on_missing_key {
                MissingKey::Reject => "rejected",
                MissingKey::Global => "counted against one bucket shared by all of them",
                MissingKey::Bypass => "let through unlimited",
            };
            tracing::warn!(
                limiter = %self.limiter.name(),
                on_missing_key = ?self.on_missing_key,
                client_error = missing.is_client_error(),
                "{missing}. Requests without a key are {outcome} \
                 (see `RateLimitLayer::on_missing_key`); logged once per layer"
            );
        }
        reject.then_some(missing)
    }
}

impl<X, R> fmt::Debug for Shared<X, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .field("on_missing_key", &self.on_missing_key)
            .finish_non_exhaustive()
    }
}

/// Rate-limits requests to `S`. `Clone` without `Buffer`: all clones share one limiter.
pub struct RateLimit<S, X, R> {
    inner: S,
    shared: Arc<Shared<X, R>>,
}

impl<S: Clone, X, R> Clone for RateLimit<S, X, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, X, R> fmt::Debug for RateLimit<S, X, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, X, R> RateLimit<S, X, R> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<X, R>>) -> Self {
        Self { inner, shared }
    }
    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.shared.limiter
    }
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// A request that could not be decided right away, with what it needs to go on later.
pub(crate) struct Job<S, Req> {
    pub(crate) inner: S,
    pub(crate) request: Req,
    pub(crate) subject: Subject,
    pub(crate) resolved: Resolved,
    pub(crate) limiter: RateLimiter,
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// The call's span, whose `outcome` is recorded once the request is decided.
    pub(crate) span: tracing::Span,
}

impl<S: Clone, Req> Job<S, Req> {
    fn new<X, R>(
        inner: &mut S,
        request: Req,
        subject: Subject,
        resolved: Resolved,
        shared: &Shared<X, R>,
        deadline: Option<tokio::time::Instant>,
        span: tracing::Span,
    ) -> Self {
        Self {
            inner: take_ready(inner),
            request,
            subject,
            resolved,
            limiter: shared.limiter.clone(),
            deadline,
            span,
        }
    }
}

/// In client mode, the latest instant a refused request may wait until: `max_wait` from
/// `now`, or the request's own deadline if that comes first. `None` outside client mode.
fn wait_until<X: KeyExtractor<Req>, R, Req>(
    shared: &Shared<X, R>,
    request: &Req,
    now: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    let max_wait = shared.max_wait?;
    let until = now + max_wait;
    Some(match shared.extractor.deadline(request) {
        Some(d) => until.min(d.instant()),
        None => until,
    })
}

impl<S, Req, X, R> Service<Req> for RateLimit<S, X, R>
where
    S: Service<Req> + Clone,
    X: KeyExtractor<Req>,
    R: Respond<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = R::Error;
    type Future = ResponseFuture<S, Req, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.shared.respond.inner_error(e))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &*self.shared;
        let respond = shared.respond.clone();
        // A disabled span is `Span::none()`: no allocation, no field evaluated.
        let span = tracing::debug_span!(
            "ratelimit",
            source = shared.limiter.name(),
            outcome = tracing::field::Empty,
        );
        let subject = match shared.extractor.extract(&request) {
            Some(subject) => subject,
            None => {
                if let Some(missing) = shared.missing_key(&request) {
                    span.record("outcome", "key_not_found");
                    return ResponseFuture::key_not_found(missing, respond);
                }
                // `missing_key` answered for `Reject`; `Global` or `Bypass` remain.
                match shared.on_missing_key {
                    MissingKey::Global => Subject::anonymous(),
                    _ => {
                        span.record("outcome", "bypass");
                        return ResponseFuture::calling(self.inner.call(request), None, respond);
                    }
                }
            }
        };
        let (mut resolved, mut pending) = shared.limiter.begin(&subject, Mode::Consume);
        let Some(result) = pending.now_or_never() else {
            let until = wait_until(shared, &request, tokio::time::Instant::now());
            let job = Job::new(
                &mut self.inner,
                request,
                subject,
                resolved,
                shared,
                until,
                span,
            );
            return ResponseFuture::deciding(pending, job, respond);
        };
        let decided = shared.limiter.finish(&subject, &mut resolved, result);
        if decided.is_ok() || shared.max_wait.is_none() {
            span.record("outcome", outcome(decided.is_ok()));
        }
        match decided {
            Ok(decision) => {
                let detail = R::WANTS_DECISION.then(|| {
                    (
                        decision,
                        shared.limiter.policy_label(resolved.policy, &decision),
                    )
                });
                ResponseFuture::calling(self.inner.call(request), detail, respond)
            }
            Err(rejection) => {
                let now = tokio::time::Instant::now();
                match (wait_until(shared, &request, now), rejection.retry_after) {
                    (Some(until), Some(wait))
                        if now + wait <= until && rejection.reason == Reason::Exceeded =>
                    {
                        let job = Job::new(
                            &mut self.inner,
                            request,
                            subject,
                            resolved,
                            shared,
                            Some(until),
                            span,
                        );
                        shared.limiter.record_wait(wait);
                        ResponseFuture::waiting(wait, job, respond)
                    }
                    // Client mode: a refusal means our quota at the upstream is spent.
                    (Some(_), _) => {
                        span.record("outcome", outcome(false));
                        ResponseFuture::rejected(rejection.client_side(), respond)
                    }
                    _ => ResponseFuture::rejected(rejection, respond),
                }
            }
        }
    }
}

/// The `outcome` field of the layer's span.
pub(crate) fn outcome(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "rejected" }
}
