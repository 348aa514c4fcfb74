//! The body buffer in front of the retries: [`BufferRequest`] reads a replayable request's
//! body (up to a cap) so that the service inside can send it again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{ReplayBody, may_replay};
use crate::error::BoxError;

/// The buffered body of a replayable request, kept in its extensions.
#[derive(Debug, Clone)]
pub(super) struct BufferedBody(pub(super) Bytes);

/// Buffers the body of replayable requests (up to a cap) so that the service inside can
/// send it again.
#[derive(Debug, Clone)]
pub struct BufferRequest<S> {
    inner: S,
    max_body_bytes: usize,
    retry_non_idempotent: bool,
}

impl<S> BufferRequest<S> {
    /// Buffers bodies up to `max_body_bytes` of requests that [`may_replay`] (with
    /// `retry_non_idempotent` as the layer's opt-in).
    pub fn new(inner: S, max_body_bytes: usize, retry_non_idempotent: bool) -> Self {
        Self {
            inner,
            max_body_bytes,
            retry_non_idempotent,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for BufferRequest<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayBody,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BufferFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let max = self.max_body_bytes as u64;
        let skip =
            !may_replay(&req, self.retry_non_idempotent) || req.body().size_hint().lower() > max;
        if skip {
            return BufferFuture::calling(inner.call(req));
        }
        if req.body().is_end_stream() {
            let mut req = req;
            req.extensions_mut().insert(BufferedBody(Bytes::new()));
            return BufferFuture::calling(inner.call(req));
        }
        let (parts, body) = req.into_parts();
        BufferFuture {
            state: BufferState::Reading {
                parts: Some(parts),
                body: Some(body),
                chunks: Vec::new(),
                read: 0,
                max: self.max_body_bytes,
                service: Some(inner),
            },
        }
    }
}

pin_project! {
    /// The answer of [`BufferRequest`]: reads the body, then awaits the inner service.
    pub struct BufferFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: BufferState<S, B>,
    }
}

pin_project! {
    #[project = BufferProj]
    enum BufferState<S, B>
    where
        S: Service<Request<B>>,
    {
        Reading {
            parts: Option<http::request::Parts>,
            body: Option<B>,
            chunks: Vec<Bytes>,
            read: usize,
            max: usize,
            service: Option<S>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, B> BufferFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn calling(future: S::Future) -> Self {
        Self {
            state: BufferState::Calling { future },
        }
    }
}

impl<S, B> fmt::Debug for BufferFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture").finish_non_exhaustive()
    }
}

fn concat(chunks: &mut Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut all = BytesMut::with_capacity(len);
    for chunk in chunks.drain(..) {
        all.extend_from_slice(&chunk);
    }
    all.freeze()
}

impl<S, B> Future for BufferFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    B: ReplayBody,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                BufferProj::Reading {
                    parts,
                    body,
                    chunks,
                    read,
                    max,
                    service,
                } => {
                    let Some(stream) = body.as_mut() else {
                        return Poll::Ready(Err("request body polled after completion".into()));
                    };
                    let frame = ready!(Pin::new(stream).poll_frame(cx));
                    let (request, replayable) = match frame {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                *read += data.len();
                                chunks.push(data);
                            }
                            if *read <= *max {
                                continue;
                            }
                            // Over the cap: send once, what was read put back in front.
                            let prefix = concat(chunks, *read);
                            let rest = body.take().unwrap_or_else(|| B::from_bytes(Bytes::new()));
                            (B::from_prefix(prefix, rest), false)
                        }
                        Some(Err(e)) => return Poll::Ready(Err(e.into())),
                        None => (B::from_bytes(Bytes::new()), true),
                    };
                    let (Some(mut svc), Some(parts)) = (service.take(), parts.take()) else {
                        return Poll::Ready(Err("request body polled after completion".into()));
                    };
                    let mut req = if replayable {
                        let bytes = concat(chunks, *read);
                        let mut req = Request::from_parts(parts, B::from_bytes(bytes.clone()));
                        req.extensions_mut().insert(BufferedBody(bytes));
                        req
                    } else {
                        Request::from_parts(parts, request)
                    };
                    if !replayable {
                        req.extensions_mut().remove::<BufferedBody>();
                    }
                    let future = svc.call(req);
                    this.state.set(BufferState::Calling { future });
                }
                BufferProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}
