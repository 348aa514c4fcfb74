//! Server mode: [`AnswerErrors`] turns a service's errors into HTTP answers through
//! reliability-core's failure table.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::HttpRetryLayer;
use crate::error::BoxError;

impl<C> HttpRetryLayer<C> {
    /// Server mode: the layer's own errors (a per-attempt timeout, an exhausted deadline,
    /// an unreadable request body, the inner service's errors) become HTTP answers through
    /// reliability-core's [failure table](reliability_core::failure) (504, 502...), so the
    /// service's error type is `Infallible` and it stacks anywhere in an axum app.
    ///
    /// With the `axum` feature (which lets the layer replay `axum::body::Body`):
    ///
    /// ```
    /// # #[cfg(feature = "axum")] {
    /// use axum::{Router, routing::get};
    /// use retry_layer::http::HttpRetryLayer;
    ///
    /// let retry = HttpRetryLayer::builder().max_attempts(2).build().unwrap();
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "ok" }))
    ///     .layer(retry.answer_errors());
    /// # let _ = app;
    /// # }
    /// ```
    pub fn answer_errors(self) -> AnswerErrorsLayer<Self> {
        AnswerErrorsLayer { inner: self }
    }
}

/// Wraps a layer so that its service's errors become HTTP answers: see
/// [`HttpRetryLayer::answer_errors`].
#[derive(Debug, Clone)]
pub struct AnswerErrorsLayer<L> {
    inner: L,
}

impl<S, L: Layer<S>> Layer<S> for AnswerErrorsLayer<L> {
    type Service = AnswerErrors<L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        AnswerErrors {
            inner: self.inner.layer(inner),
            not_ready: None,
        }
    }
}

/// A service whose errors are answered as HTTP responses (`B::default()` body, status and
/// `Retry-After` from reliability-core's failure table, the `Failure` in the extensions).
#[derive(Debug)]
pub struct AnswerErrors<S> {
    inner: S,
    // A readiness error, answered by the next call without calling the unready service.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for AnswerErrors<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

fn answer<B: Default>(err: BoxError) -> Response<B> {
    let failure = reliability_core::failure::Failure::of(&*err);
    tracing::debug!(error = %err, status = failure.kind().http_status_code(), "answering a failed call");
    failure.to_http_response()
}

impl<S, Req, B> Service<Req> for AnswerErrors<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = AnswerFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_none()
            && let Err(e) = ready!(self.inner.poll_ready(cx))
        {
            self.not_ready = Some(e.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.not_ready.take() {
            Some(err) => AnswerFuture {
                state: AnswerState::Answered {
                    response: Some(answer(err)),
                },
            },
            None => AnswerFuture {
                state: AnswerState::Calling {
                    future: self.inner.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// The answer of [`AnswerErrors`].
    pub struct AnswerFuture<F, B> {
        #[pin]
        state: AnswerState<F, B>,
    }
}

pin_project! {
    #[project = AnswerProj]
    enum AnswerState<F, B> {
        Calling { #[pin] future: F },
        Answered { response: Option<Response<B>> },
    }
}

impl<F, B> fmt::Debug for AnswerFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for AnswerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            AnswerProj::Calling { future } => Poll::Ready(Ok(
                ready!(future.poll(cx)).unwrap_or_else(|e| answer(e.into()))
            )),
            AnswerProj::Answered { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| answer("polled after completion".into())))),
        }
    }
}
