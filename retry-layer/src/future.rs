//! [`ResponseFuture`]: the retry loop as a hand-written state machine.
//!
//! States: `Calling` (an attempt in flight, raced against the per-attempt timer),
//! `Waiting` (the backoff timer), `Ready` (waiting for the inner service's readiness
//! before the next attempt). The overall deadline is raced against all of them. One
//! timer serves as the attempt timeout and as the backoff, since they never overlap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use reliability_core::classify::{Outcome, RetryClass, as_dyn_error};
use reliability_core::error::is_timeout;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;
use tracing::Span;

use crate::backend::DeadLetter;
use crate::budget::RetryCause;
use reliability_core::deadline::{Deadline, DeadlineExceeded as RequestDeadlineExceeded};

use crate::error::{AttemptTimedOut, BoxError, BudgetExhausted, DeadlineExceeded};
use crate::layer::{RetryEvent, Shared};
use crate::policy::RetryPolicy;
use crate::schedule::{Attempts, Decision, StopReason};

pin_project! {
    /// The answer of a [`Retry`](crate::Retry) service: resolves once an attempt succeeds
    /// or retrying stops.
    ///
    /// It carries the call's `debug` span `retry`, entered while attempts are made and
    /// polled, with fields `source`, and once the call ends, `outcome` (success, failure,
    /// ignored), `attempt` (attempts made) and, when retrying stopped a failing call,
    /// `reason` ([`StopReason::as_str`]). Without an interested subscriber the span is
    /// disabled: a callsite check, no allocation.
    pub struct ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        #[pin]
        timer: Option<Sleep>,
        #[pin]
        deadline: Option<Sleep>,
        service: S,
        request: Option<Req>,
        shared: Arc<Shared<P>>,
        started: Option<Instant>,
        attempts: Option<Attempts>,
        rng: Option<SmallRng>,
        last_cost: u32,
        // The request's own deadline (`RetryPolicy::deadline`), beside the layer's.
        request_deadline: Option<Deadline>,
        span: Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
        },
        Waiting,
        Ready,
        Done,
    }
}

impl<S, Req, P> std::fmt::Debug for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req>,
    P: RetryPolicy<Req, S::Response, S::Error>,
{
    pub(crate) fn new(mut service: S, req: Req, shared: Arc<Shared<P>>) -> Self {
        let core = &shared.core;
        let request_deadline = shared.policy.deadline(&req);
        let started = (core.needs_start_time || request_deadline.is_some()).then(Instant::now);
        if let Some(now) = started
            && core.needs_start_time
        {
            core.budget.on_request(now);
        }
        let span = tracing::debug_span!(
            "retry",
            source = core.name.as_str(),
            outcome = tracing::field::Empty,
            attempt = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        let layer_deadline = core.deadline.zip(started).map(|(d, at)| at + d);
        let deadline = [layer_deadline, request_deadline.map(Deadline::instant)]
            .into_iter()
            .flatten()
            .min()
            .map(sleep_until);
        let past = request_deadline
            .zip(started)
            .is_some_and(|(d, now)| d.is_past(now));
        let (state, timer, request) = if past {
            // No attempt starts at or after the deadline, the first included: the
            // deadline's timer, already due, answers on the first poll.
            (State::Done, None, Some(req))
        } else {
            core.metrics.attempt();
            let (send, request) = if core.schedule.max_attempts > 1 || core.sink.is_some() {
                match shared.policy.replay(&req) {
                    Some(copy) => (copy, Some(req)),
                    None => (req, None),
                }
            } else {
                (req, None)
            };
            let future = span.in_scope(|| service.call(send));
            let timer = core
                .attempt_timeout
                .zip(started)
                .map(|(t, at)| sleep_until(at + t));
            (State::Calling { future }, timer, request)
        };
        Self {
            state,
            timer,
            deadline,
            service,
            request,
            shared,
            started,
            attempts: None,
            rng: None,
            last_cost: 0,
            request_deadline,
            span,
        }
    }
}

/// Fills in the span's closing fields.
fn close_span(span: &Span, outcome: Outcome, attempts: u32, reason: Option<StopReason>) {
    let outcome = match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Ignore => "ignored",
    };
    span.record("outcome", outcome);
    span.record("attempt", attempts);
    if let Some(reason) = reason {
        span.record("reason", reason.as_str());
    }
}

/// How one attempt ended.
enum Ended<T, E> {
    Answered(Result<T, E>),
    TimedOut,
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    P: RetryPolicy<Req, S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared: &Shared<P> = this.shared;
        let core = &shared.core;
        let span: &Span = this.span;
        let _entered = span.enter();
        loop {
            if let Some(deadline) = this.deadline.as_mut().as_pin_mut()
                && deadline.poll(cx).is_ready()
            {
                this.state.set(State::Done);
                let now = Instant::now();
                let made = this.attempts.map_or(1, |a| a.made());
                let err: BoxError = if this.request_deadline.is_some_and(|d| d.is_past(now)) {
                    Box::new(RequestDeadlineExceeded::new())
                } else {
                    let after = core.deadline.unwrap_or_default();
                    Box::new(DeadlineExceeded::new(after, made))
                };
                let started = this.started.unwrap_or(now);
                let request = this.request.as_ref();
                let reason = StopReason::DeadlineExceeded;
                close_span(span, Outcome::Failure, made, Some(reason));
                return Poll::Ready(stop::<Req, S::Response, S::Error, P>(
                    shared,
                    request,
                    Err(err),
                    reason,
                    made,
                    started,
                    now,
                ));
            }
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let ended = match future.poll(cx) {
                        Poll::Ready(result) => Ended::Answered(result),
                        Poll::Pending => {
                            let timed_out = core.attempt_timeout.is_some()
                                && this
                                    .timer
                                    .as_mut()
                                    .as_pin_mut()
                                    .is_some_and(|t| t.poll(cx).is_ready());
                            if !timed_out {
                                return Poll::Pending;
                            }
                            Ended::TimedOut
                        }
                    };
                    // Drops an attempt cut off by its timer.
                    this.state.set(State::Done);
                    let (result, class, retry_after, cause) = match ended {
                        Ended::Answered(result) => {
                            let verdict = shared.policy.classify(result.as_ref());
                            let Some(class) = verdict.retry else {
                                if verdict.outcome == Outcome::Success {
                                    core.budget.on_success(*this.last_cost);
                                }
                                let made = this.attempts.map_or(1, |a| a.made());
                                close_span(span, verdict.outcome, made, None);
                                return Poll::Ready(result.map_err(Into::into));
                            };
                            let cause = match &result {
                                Err(e) if as_dyn_error(e).is_some_and(is_timeout) => {
                                    RetryCause::Timeout
                                }
                                _ => RetryCause::Error,
                            };
                            let result = result.map_err(Into::into);
                            (result, class, verdict.retry_after, cause)
                        }
                        Ended::TimedOut => {
                            let after = core.attempt_timeout.unwrap_or_default();
                            let err: BoxError = Box::new(AttemptTimedOut::new(after));
                            (Err(err), RetryClass::Recoverable, None, RetryCause::Timeout)
                        }
                    };
                    let now = Instant::now();
                    let started = *this.started.get_or_insert(now);
                    let attempts = this.attempts.get_or_insert_with(|| Attempts::new(started));
                    let rng = this.rng.get_or_insert_with(|| core.request_rng());
                    let decision =
                        attempts.on_failure(&core.schedule, class, retry_after, now, rng);
                    let reason = match decision {
                        Decision::Stop(reason) => reason,
                        Decision::Retry { .. } if this.request.is_none() => {
                            StopReason::NotReplayable
                        }
                        Decision::Retry { delay }
                            if core.deadline.is_some_and(|d| {
                                now.saturating_duration_since(started) + delay >= d
                            }) || this
                                .request_deadline
                                .is_some_and(|d| now + delay >= d.instant()) =>
                        {
                            StopReason::DeadlineExceeded
                        }
                        Decision::Retry { delay } => match core.budget.try_acquire(cause, now) {
                            None => {
                                core.metrics.budget_exhausted();
                                StopReason::BudgetExhausted
                            }
                            Some(cost) => {
                                *this.last_cost = cost;
                                attempts.begin_retry();
                                core.metrics.retry();
                                core.emit(RetryEvent::Retrying {
                                    attempt: attempts.made(),
                                    delay,
                                });
                                if delay.is_zero() {
                                    this.state.set(State::Ready);
                                } else {
                                    arm(this.timer.as_mut(), now + delay);
                                    this.state.set(State::Waiting);
                                }
                                continue;
                            }
                        },
                    };
                    let made = attempts.made();
                    let request = this.request.as_ref();
                    close_span(span, Outcome::Failure, made, Some(reason));
                    return Poll::Ready(stop::<Req, S::Response, S::Error, P>(
                        shared, request, result, reason, made, started, now,
                    ));
                }
                StateProj::Waiting => {
                    if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                        ready!(timer.poll(cx));
                    }
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        let made = this.attempts.map_or(1, |a| a.made());
                        close_span(span, Outcome::Failure, made, None);
                        return Poll::Ready(Err(e.into()));
                    }
                    let made = this.attempts.map_or(1, |a| a.made());
                    // The last attempt takes the original unless a dead letter may still
                    // need to describe it.
                    let last = made >= core.schedule.max_attempts && core.sink.is_none();
                    let copy = match this.request.as_ref() {
                        Some(req) if !last => shared.policy.replay(req),
                        _ => None,
                    };
                    let Some(req) = copy.or_else(|| this.request.take()) else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err("retry lost its request".into()));
                    };
                    if let Some(timeout) = core.attempt_timeout {
                        arm(this.timer.as_mut(), Instant::now() + timeout);
                    }
                    core.metrics.attempt();
                    let future = this.service.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Done => {
                    return Poll::Ready(Err("retry future polled after completion".into()));
                }
            }
        }
    }
}

/// Starts or moves the one timer.
fn arm(mut timer: Pin<&mut Option<Sleep>>, at: Instant) {
    match timer.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => timer.set(Some(sleep_until(at))),
    }
}

/// Ends a request that will not be retried again: counts, reports, dead-letters, and
/// marks the answer.
fn stop<Req, Res, E, P>(
    shared: &Shared<P>,
    request: Option<&Req>,
    result: Result<Res, BoxError>,
    reason: StopReason,
    attempts: u32,
    started: Instant,
    now: Instant,
) -> Result<Res, BoxError>
where
    P: RetryPolicy<Req, Res, E>,
{
    let core = &shared.core;
    let give_up = reason.is_give_up();
    let critical = reason == StopReason::Critical;
    if give_up || critical {
        let text = match &result {
            Ok(res) => shared.policy.describe_response(res),
            Err(e) => e.to_string(),
        };
        if critical {
            core.metrics.critical();
            tracing::error!(source = %core.name, attempts, error = %text, "critical failure, not retried");
            core.emit(RetryEvent::Critical {
                attempts,
                error: &text,
            });
        }
        if give_up {
            core.metrics.give_up(reason);
            tracing::debug!(source = %core.name, attempts, reason = reason.as_str(), error = %text, "gave up");
            core.emit(RetryEvent::GaveUp {
                attempts,
                reason,
                error: &text,
            });
            if let Some(sink) = &core.sink {
                let wall = SystemTime::now();
                let first = wall
                    .checked_sub(now.saturating_duration_since(started))
                    .unwrap_or(wall);
                let description = request
                    .map(|r| shared.policy.describe_request(r))
                    .unwrap_or_default();
                sink.send(DeadLetter::new(
                    attempts,
                    reason,
                    text,
                    first,
                    wall,
                    description,
                ));
                core.metrics.dead_lettered();
            }
        }
    }
    match result {
        Ok(mut res) => {
            shared.policy.on_stop(&mut res, attempts, reason);
            Ok(res)
        }
        Err(e) if reason == StopReason::BudgetExhausted => {
            Err(Box::new(BudgetExhausted::new(e, attempts)))
        }
        Err(e) => Err(e),
    }
}
