//! [`DeadlineLayer`]: gives each request a [`Deadline`] and answers
//! [`DeadlineExceeded`] when it passes.
//!
//! Put it outside the hedge layer: the hedge layer reads the deadline and sends no hedge
//! at or after it, and this layer answers the caller at the deadline whatever the copies
//! in flight are doing (they are dropped, so cancelled).
//!
//! A request's deadline is the earliest of the one it already carries, `now + budget`
//! (when the layer has a budget) and `now + grpc-timeout` (when the layer honours the
//! header and the request has a well-formed one). A request whose deadline has already
//! passed is answered at once, without calling the inner service.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use hedge_layer::deadline::DeadlineLayer;
//! use reliability_core::deadline::DeadlineExceeded;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_req: http::Request<()>| async {
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     Ok::<_, BoxError>(http::Response::new(()))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(10)).grpc_timeout(true))
//!     .service(slow);
//!
//! // The caller gave us 200 ms over the wire: that is the deadline, not our 10 s.
//! let req = http::Request::get("/").header("grpc-timeout", "200m").body(()).unwrap();
//! let err = svc.oneshot(req).await.unwrap_err();
//! assert!(err.downcast_ref::<DeadlineExceeded>().is_some());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use reliability_core::answer::{Answer, AsError};
use reliability_core::deadline::{Deadline, DeadlineExceeded, HasDeadline};
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

/// A layer that sets and enforces request deadlines (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer<A = AsError> {
    budget: Option<Duration>,
    honour_grpc_timeout: bool,
    answer: A,
}

impl DeadlineLayer {
    /// Each request must be answered within `budget` of reaching this layer (or by the
    /// earlier deadline it carries).
    pub fn new(budget: Duration) -> Self {
        Self {
            budget: Some(budget),
            honour_grpc_timeout: false,
            answer: AsError,
        }
    }

    /// No budget of its own: enforces the deadline a request carries, and with
    /// [`grpc_timeout`](Self::grpc_timeout) the one its `grpc-timeout` header sets.
    pub fn enforce_only() -> Self {
        Self {
            budget: None,
            honour_grpc_timeout: false,
            answer: AsError,
        }
    }
}

impl<A> DeadlineLayer<A> {
    /// Also honour an inbound `grpc-timeout` header (the remaining time the previous hop
    /// gave us).
    #[must_use]
    pub fn grpc_timeout(mut self, honour: bool) -> Self {
        self.honour_grpc_timeout = honour;
        self
    }

    /// How a passed deadline is answered (default: the `DeadlineExceeded` error, boxed).
    pub fn answer<B>(self, answer: B) -> DeadlineLayer<B> {
        DeadlineLayer {
            budget: self.budget,
            honour_grpc_timeout: self.honour_grpc_timeout,
            answer,
        }
    }

    /// HTTP mode: a passed deadline is a `504 Gateway Timeout` response.
    #[cfg(feature = "http")]
    pub fn http(self) -> DeadlineLayer<reliability_core::answer::AsHttp> {
        self.answer(reliability_core::answer::AsHttp)
    }
}

impl<S, A: Clone> Layer<S> for DeadlineLayer<A> {
    type Service = EnforceDeadline<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        EnforceDeadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct EnforceDeadline<S, A = AsError> {
    inner: S,
    layer: DeadlineLayer<A>,
}

impl<S, A> EnforceDeadline<S, A> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, A, Req> Service<Req> for EnforceDeadline<S, A>
where
    S: Service<Req>,
    Req: HasDeadline,
    A: Answer<DeadlineExceeded, S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = A::Error;
    type Future = ResponseFuture<S::Future, A>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| self.layer.answer.inner_error(e))
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let now = Instant::now();
        let mut deadline = req.deadline();
        let mut tighten = |d: Deadline| {
            deadline = Some(deadline.map_or(d, |old| old.min(d)));
        };
        if let Some(budget) = self.layer.budget {
            tighten(Deadline::after(now, budget));
        }
        if self.layer.honour_grpc_timeout
            && let Some(wire) = req.wire_timeout()
        {
            tighten(Deadline::after(now, wire));
        }
        let answer = self.layer.answer.clone();
        let kind = match deadline {
            None => Kind::Unbounded {
                future: self.inner.call(req),
            },
            Some(d) if d.is_past(now) => Kind::Passed,
            Some(d) => {
                req.set_deadline(d);
                Kind::Bounded {
                    future: self.inner.call(req),
                    sleep: tokio::time::sleep_until(d.instant()),
                }
            }
        };
        ResponseFuture { kind, answer }
    }
}

pin_project! {
    /// The future of [`EnforceDeadline`].
    pub struct ResponseFuture<F, A> {
        #[pin]
        kind: Kind<F>,
        answer: A,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Unbounded { #[pin] future: F },
        Bounded { #[pin] future: F, #[pin] sleep: Sleep },
        Passed,
    }
}

impl<F, A: fmt::Debug> fmt::Debug for ResponseFuture<F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Unbounded { .. } => "unbounded",
            Kind::Bounded { .. } => "bounded",
            Kind::Passed => "passed",
        };
        f.debug_struct("ResponseFuture")
            .field("deadline", &kind)
            .field("answer", &self.answer)
            .finish()
    }
}

impl<F, T, E, A> Future for ResponseFuture<F, A>
where
    F: Future<Output = Result<T, E>>,
    A: Answer<DeadlineExceeded, T, E>,
{
    type Output = Result<T, A::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Unbounded { future } => {
                let result = ready!(future.poll(cx));
                Poll::Ready(result.map_err(|e| this.answer.inner_error(e)))
            }
            KindProj::Bounded { future, sleep } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result.map_err(|e| this.answer.inner_error(e)));
                }
                ready!(sleep.poll(cx));
                Poll::Ready(this.answer.refused(DeadlineExceeded::new()))
            }
            KindProj::Passed => Poll::Ready(this.answer.refused(DeadlineExceeded::new())),
        }
    }
}
