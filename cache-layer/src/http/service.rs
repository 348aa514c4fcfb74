//! [`HttpCache`], the HTTP-mode service, and its future.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Request;
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use futures_util::future::BoxFuture;
use reliability_core::service::take_ready;

use super::body::bad_gateway;
use super::policy::{Invalidate, is_safe};
use super::standard::{Standard, flow};
use super::{BufferBody, CachedResponse, HttpKey};
use crate::service::Cache;

/// The HTTP-mode service: never fails; upstream errors are `502` responses.
#[derive(Clone)]
pub struct HttpCache<S> {
    pub(super) inner: Cache<BufferBody<S>, HttpKey, CachedResponse>,
    pub(super) invalidate_on_unsafe: bool,
    /// The RFC 9111 mode's state, when the layer was built in that mode.
    pub(super) standard: Option<Arc<Standard>>,
}

impl<S: fmt::Debug> fmt::Debug for HttpCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("inner", &self.inner)
            .field("invalidate_on_unsafe", &self.invalidate_on_unsafe)
            .field("standard", &self.standard)
            .finish()
    }
}

impl<S, ReqB> Service<Request<ReqB>> for HttpCache<S>
where
    Cache<BufferBody<S>, HttpKey, CachedResponse>:
        Service<Request<ReqB>, Response = CachedResponse, Error = BoxError>,
    BufferBody<S>: Service<
            Request<ReqB>,
            Response = CachedResponse,
            Error = Infallible,
            Future = BoxFuture<'static, Result<CachedResponse, Infallible>>,
        > + Clone
        + Send
        + 'static,
    ReqB: Send + 'static,
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
        if let Some(standard) = &self.standard {
            let svc = take_ready(&mut self.inner.inner);
            let fut = flow::respond(standard.clone(), svc, req);
            return HttpResponseFuture {
                kind: Kind::Standard { fut: Box::pin(fut) },
            };
        }
        let invalidate = if self.invalidate_on_unsafe && !is_safe(req.method()) {
            Invalidate::new(&self.inner, &req).map(Box::new)
        } else {
            None
        };
        HttpResponseFuture {
            kind: Kind::Ttl {
                inner: self.inner.call(req),
                invalidate,
            },
        }
    }
}

pin_project! {
    /// The future of [`HttpCache`].
    pub struct HttpResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // The configured-TTL mode: the cache's own future.
        Ttl {
            #[pin]
            inner: F,
            // Unsafe requests only; boxed so that the hit path's future stays small.
            invalidate: Option<Box<Invalidate>>,
        },
        // The RFC 9111 mode.
        Standard {
            fut: BoxFuture<'static, CachedResponse>,
        },
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
        match self.project().kind.project() {
            KindProj::Ttl { inner, invalidate } => {
                let resp = ready!(inner.poll(cx)).unwrap_or_else(bad_gateway);
                // Before the caller sees the answer: its next GET must not be served the
                // old copy.
                if let Some(invalidate) = invalidate.take()
                    && (resp.status().is_success() || resp.status().is_redirection())
                {
                    invalidate.run(resp.headers());
                }
                Poll::Ready(Ok(resp))
            }
            KindProj::Standard { fut } => fut.as_mut().poll(cx).map(Ok),
        }
    }
}
