//! [`ResponseFuture`]: the future of [`RateLimit`](crate::RateLimit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::backend::Pending;
use crate::error::{KeyNotFound, RateLimited, Reason};
use crate::quota::{Decision, Mode};
use crate::respond::PolicyLabel;
use crate::respond::Respond;
use crate::service::{Job, outcome};

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit): answers refusals right away,
    /// waits for a remote decision or (client mode) for the quota, then calls the service.
    pub struct ResponseFuture<S, Req, R>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        respond: R,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Rejected { rejection: Option<RateLimited> },
        KeyNotFound { missing: Option<KeyNotFound> },
        Calling { #[pin] future: S::Future, detail: Option<(Decision, PolicyLabel)> },
        Deciding { pending: Pending<Decision>, job: Option<Job<S, Req>> },
        Waiting { #[pin] sleep: tokio::time::Sleep, job: Option<Job<S, Req>> },
    }
}

impl<S: Service<Req>, Req, R> ResponseFuture<S, Req, R> {
    pub(crate) fn rejected(rejection: RateLimited, respond: R) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
            respond,
        }
    }
    pub(crate) fn key_not_found(missing: KeyNotFound, respond: R) -> Self {
        Self {
            state: State::KeyNotFound {
                missing: Some(missing),
            },
            respond,
        }
    }
    pub(crate) fn calling(
        future: S::Future,
        detail: Option<(Decision, PolicyLabel)>,
        respond: R,
    ) -> Self {
        Self {
            state: State::Calling { future, detail },
            respond,
        }
    }
    pub(crate) fn deciding(pending: Pending<Decision>, job: Job<S, Req>, respond: R) -> Self {
        Self {
            state: State::Deciding {
                pending,
                job: Some(job),
            },
            respond,
        }
    }
    pub(crate) fn waiting(wait: Duration, job: Job<S, Req>, respond: R) -> Self {
        Self {
            state: State::Waiting {
                sleep: tokio::time::sleep(wait),
                job: Some(job),
            },
            respond,
        }
    }
}

impl<S, Req, R> std::fmt::Debug for ResponseFuture<S, Req, R>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, Req, R> Future for ResponseFuture<S, Req, R>
where
    S: Service<Req>,
    R: Respond<S::Response, S::Error>,
{
    type Output = Result<S::Response, R::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let respond = &*this.respond;
            let next = match this.state.project() {
                StateProj::Rejected { rejection } => {
                    let r = rejection.take().expect("polled after completion");
                    return Poll::Ready(respond.rejected(r));
                }
                StateProj::KeyNotFound { missing } => {
                    let m = missing.take().expect("polled after completion");
                    return Poll::Ready(respond.key_not_found(m));
                }
                StateProj::Calling { future, detail } => {
                    let out = ready!(future.poll(cx));
                    return Poll::Ready(match out {
                        Ok(res) => Ok(match detail.take() {
                            Some((d, policy)) => respond.decorate(res, &d, &policy),
                            None => res,
                        }),
                        Err(e) => Err(respond.inner_error(e)),
                    });
                }
                StateProj::Deciding { pending, job } => {
                    let result = ready!(Pin::new(pending).poll(cx));
                    let mut job = job.take().expect("polled after completion");
                    let decided = job.limiter.finish(&job.subject, &mut job.resolved, result);
                    let waits = matches!(
                        (&decided, job.deadline),
                        (Err(r), Some(deadline)) if r.reason == Reason::Exceeded
                            && r.retry_after.is_some_and(|w| tokio::time::Instant::now() + w <= deadline)
                    );
                    if !waits {
                        job.span.record("outcome", outcome(decided.is_ok()));
                    }
                    match decided {
                        Ok(decision) => {
                            let detail = R::WANTS_DECISION.then(|| {
                                (
                                    decision,
                                    job.limiter.policy_label(job.resolved.policy, &decision),
                                )
                            });
                            State::Calling {
                                future: job.inner.call(job.request),
                                detail,
                            }
                        }
                        Err(rejection) => match (job.deadline, rejection.retry_after) {
                            (Some(deadline), Some(wait))
                                if rejection.reason == Reason::Exceeded
                                    && tokio::time::Instant::now() + wait <= deadline =>
                            {
                                job.limiter.record_wait(wait);
                                State::Waiting {
                                    sleep: tokio::time::sleep(wait),
                                    job: Some(job),
                                }
                            }
                            (Some(_), _) => State::Rejected {
                                rejection: Some(rejection.client_side()),
                            },
                            _ => State::Rejected {
                                rejection: Some(rejection),
                            },
                        },
                    }
                }
                StateProj::Waiting { sleep, job } => {
                    ready!(sleep.poll(cx));
                    let job = job.take().expect("polled after completion");
                    let (resolved, pending) = job.limiter.begin(&job.subject, Mode::Consume);
                    State::Deciding {
                        pending,
                        job: Some(Job { resolved, ..job }),
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}
