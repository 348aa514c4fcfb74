//! [`ResponseFuture`]: the inner call as it is, the inner call then a delay, or an
//! injected answer (after its delay).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use reliability_core::answer::Answer;
use tokio::time::Sleep;
use tracing::Span;

use crate::error::InjectedFault;

/// An answer that replaces the upstream's.
#[derive(Debug)]
pub(crate) enum Injection<Res> {
    Error(InjectedFault),
    Response(Res),
}

pin_project! {
    /// The future of [`Chaos`](crate::Chaos).
    ///
    /// While the layer is enabled, each call carries a `debug` span `chaos` (fields
    /// `source`; `fault`: `none`, `error` or `response`; `delay_ms`, the latency added),
    /// entered while it is polled. A call made while the layer is disabled has no span:
    /// the layer is not in play and costs only its switch.
    pub struct ResponseFuture<F, A, Res>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F, Res>,
        answer: A,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, Res>
    where
        F: Future,
    {
        // The disabled path: the inner future and nothing else, not even an empty span.
        Inner { #[pin] future: F },
        // Enabled: everything else, boxed, so the disabled path's future stays the size of
        // the inner one plus a tag (moving a larger one costs more than the switch).
        Enabled { state: Pin<Box<Enabled<F, Res>>> },
    }
}

pin_project! {
    #[project = EnabledProj]
    enum Enabled<F, Res>
    where
        F: Future,
    {
        // Nothing injected: the inner future in the call's span.
        Traced { #[pin] future: F, span: Span },
        Slow {
            #[pin] future: F,
            // Started when the inner call finishes, so the delay is added to its latency.
            sleep: Option<Pin<Box<Sleep>>>,
            delay: Duration,
            output: Option<F::Output>,
            span: Span,
        },
        Injected {
            sleep: Option<Pin<Box<Sleep>>>,
            injection: Option<Injection<Res>>,
            span: Span,
        },
    }
}

impl<F: Future, A, Res> ResponseFuture<F, A, Res> {
    #[inline]
    pub(crate) fn inner(future: F, answer: A) -> Self {
        Self {
            kind: Kind::Inner { future },
            answer,
        }
    }

    fn enabled(state: Enabled<F, Res>, answer: A) -> Self {
        Self {
            kind: Kind::Enabled {
                state: Box::pin(state),
            },
            answer,
        }
    }

    pub(crate) fn traced(future: F, delay: Option<Duration>, answer: A, span: Span) -> Self {
        let state = match delay {
            None => Enabled::Traced { future, span },
            Some(delay) => Enabled::Slow {
                future,
                sleep: None,
                delay,
                output: None,
                span,
            },
        };
        Self::enabled(state, answer)
    }

    pub(crate) fn injected(
        injection: Injection<Res>,
        delay: Option<Duration>,
        answer: A,
        span: Span,
    ) -> Self {
        let state = Enabled::Injected {
            sleep: delay.map(|d| Box::pin(tokio::time::sleep(d))),
            injection: Some(injection),
            span,
        };
        Self::enabled(state, answer)
    }
}

impl<F: Future, A: fmt::Debug, Res> fmt::Debug for ResponseFuture<F, A, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Enabled { state } => match &**state {
                Enabled::Traced { .. } => "traced",
                Enabled::Slow { .. } => "slow",
                Enabled::Injected { .. } => "injected",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .field("answer", &self.answer)
            .finish()
    }
}

impl<F, Res, E, A> Future for ResponseFuture<F, A, Res>
where
    F: Future<Output = Result<Res, E>>,
    A: Answer<InjectedFault, Res, E>,
{
    type Output = Result<Res, A::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Inner { future } => {
                let result = ready!(future.poll(cx));
                Poll::Ready(result.map_err(|e| this.answer.inner_error(e)))
            }
            KindProj::Enabled { state } => poll_enabled(state.as_mut().project(), this.answer, cx),
        }
    }
}

/// Polls an enabled call's state.
fn poll_enabled<F, Res, E, A>(
    state: EnabledProj<'_, F, Res>,
    answer: &A,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, A::Error>>
where
    F: Future<Output = Result<Res, E>>,
    A: Answer<InjectedFault, Res, E>,
{
    match state {
        EnabledProj::Traced { future, span } => {
            let _entered = span.enter();
            let result = ready!(future.poll(cx));
            Poll::Ready(result.map_err(|e| answer.inner_error(e)))
        }
        EnabledProj::Slow {
            future,
            sleep,
            delay,
            output,
            span,
        } => {
            let _entered = span.enter();
            if output.is_none() {
                *output = Some(ready!(future.poll(cx)));
                *sleep = Some(Box::pin(tokio::time::sleep(*delay)));
            }
            if let Some(sleep) = sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
            }
            let result = output
                .take()
                .expect("chaos ResponseFuture polled after completion");
            Poll::Ready(result.map_err(|e| answer.inner_error(e)))
        }
        EnabledProj::Injected {
            sleep,
            injection,
            span,
        } => {
            let _entered = span.enter();
            if let Some(sleep) = sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
            }
            match injection
                .take()
                .expect("chaos ResponseFuture polled after completion")
            {
                Injection::Error(fault) => Poll::Ready(answer.refused(fault)),
                Injection::Response(res) => Poll::Ready(Ok(res)),
            }
        }
    }
}
