//! [`HttpCache`], the HTTP-mode service, and its future.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Request;
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use super::body::bad_gateway;
use super::policy::{Invalidate, is_safe};
use super::{BufferBody, CachedResponse, HttpKey};
use crate::service::Cache;

/// The HTTP-mode service: never fails; upstream errors are `502` responses.
#[derive(Clone)]
pub struct HttpCache<S> {
    pub(super) inner: Cache<BufferBody<S>, HttpKey, CachedResponse>,
    pub(super) invalidate_on_unsafe: bool,
}

impl<S: fmt::Debug> fmt::Debug for HttpCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("inner", &self.inner)
            .field("invalidate_on_unsafe", &self.invalidate_on_unsafe)
            .finish()
    }
}

impl<S, ReqB> Service<Request<ReqB>> for HttpCache<S>
where
    Cache<BufferBody<S>, HttpKey, CachedResponse>:
        Service<Request<ReqB>, Response = CachedResponse, Error = BoxError>,
{
    type Response = CachedResponse;
    type Error = Infallible;
    type Future = HttpResponseFuture<
        <Cache<BufferBody<S>, HttpKey, CachedResponse> as Service<Request<ReqB>>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The buffering service below is infallible; so is readiness here.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let invalidate = if self.invalidate_on_unsafe && !is_safe(req.method()) {
            Invalidate::new(&self.inner, &req).map(Box::new)
        } else {
            None
        };
        HttpResponseFuture {
            inner: self.inner.call(req),
            invalidate,
        }
    }
}

pin_project! {
    /// The future of [`HttpCache`].
    pub struct HttpResponseFuture<F> {
        #[pin]
        inner: F,
        // Unsafe requests only; boxed so that the hit path's future stays small.
        invalidate: Option<Box<Invalidate>>,
    }
}

impl<F> fmt::Debug for HttpResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpResponseFuture")
    }
}

impl<F> Future for HttpResponseFuture<F>
where
    F: Future<Output = Result<CachedResponse, BoxError>>,
{
    type Output = Result<CachedResponse, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx)).unwrap_or_else(bad_gateway);
        // Before the caller sees the answer: its next GET must not be served the old copy.
        if let Some(invalidate) = this.invalidate.take()
            && (resp.status().is_success() || resp.status().is_redirection())
        {
            invalidate.run(resp.headers());
        }
        Poll::Ready(Ok(resp))
    }
}
