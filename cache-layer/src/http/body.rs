//! The HTTP mode's bodies: [`CachedBody`] (buffered, or streamed past the cap), the
//! buffering service [`BufferBody`], and [`UpstreamError`], the error behind a `502`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use parking_lot::Mutex;
use tower::BoxError;
use tower_service::Service;

use super::CachedResponse;

/// A response body: buffered bytes (cacheable, cheap to clone) or, past the cap, the
/// upstream's stream (never cached nor shared).
pub struct CachedBody {
    kind: BodyKind,
}

enum BodyKind {
    Full(Option<Bytes>),
    Stream {
        prefix: VecDeque<Bytes>,
        rest: Mutex<UnsyncBoxBody<Bytes, BoxError>>,
    },
}

impl CachedBody {
    /// A buffered body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: BodyKind::Full(Some(bytes.into())),
        }
    }

    /// The buffered bytes, `None` for a streamed body.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            BodyKind::Full(b) => b.as_ref(),
            BodyKind::Stream { .. } => None,
        }
    }

    /// Whether this body streams (it was larger than the cap).
    pub fn is_streaming(&self) -> bool {
        matches!(self.kind, BodyKind::Stream { .. })
    }
}

impl Default for CachedBody {
    /// An empty buffered body: what the HTTP answers of outer layers (`429`, `503`) carry,
    /// so they can sit outside the cache in one `ServiceBuilder`.
    fn default() -> Self {
        Self::full(Bytes::new())
    }
}

impl From<Bytes> for CachedBody {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl From<String> for CachedBody {
    /// A text body: what the rate limiter's answers (and other layers' text answers)
    /// build, so they stack outside the cache.
    fn from(text: String) -> Self {
        Self::full(text)
    }
}

impl From<&'static str> for CachedBody {
    fn from(text: &'static str) -> Self {
        Self::full(Bytes::from_static(text.as_bytes()))
    }
}

impl Clone for CachedBody {
    /// A streamed body cannot be replayed: its clone is empty. The cache never clones one
    /// (oversize responses are neither stored nor shared with coalesced callers).
    fn clone(&self) -> Self {
        Self {
            kind: BodyKind::Full(self.bytes().cloned()),
        }
    }
}

impl fmt::Debug for CachedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Full(b) => f
                .debug_tuple("CachedBody::Full")
                .field(&b.as_ref().map_or(0, Bytes::len))
                .finish(),
            BodyKind::Stream { .. } => f.write_str("CachedBody::Stream"),
        }
    }
}

impl Body for CachedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            BodyKind::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            BodyKind::Stream { prefix, rest } => {
                if let Some(b) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Pin::new(&mut *rest.lock()).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            BodyKind::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The error behind a `502 Bad Gateway` produced by the HTTP mode, in the response's
/// extensions.
#[derive(Clone)]
pub struct UpstreamError(pub Arc<BoxError>);

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UpstreamError").field(&self.0).finish()
    }
}

/// The answer to an upstream error: the status of reliability-core's failure table (502,
/// or 504 for a timeout, 503 for an open circuit below...), with the error in the
/// extensions.
pub(super) fn bad_gateway(err: BoxError) -> CachedResponse {
    let failure = reliability_core::failure::Failure::of(&*err);
    let mut resp: CachedResponse = failure.to_http_response();
    *resp.body_mut() = CachedBody::from(failure.kind().phrase());
    resp.extensions_mut().insert(UpstreamError(Arc::new(err)));
    resp
}

/// Buffers the inner service's response bodies up to a cap (the service
/// [`Cache`](crate::Cache) wraps in HTTP mode).
#[derive(Debug)]
pub struct BufferBody<S> {
    inner: S,
    max_body: usize,
    // The inner service's readiness error, answered as a 502 by the next `call` (which
    // then does not call an inner service that never became ready).
    not_ready: Option<BoxError>,
}

impl<S> BufferBody<S> {
    /// Buffers the bodies of `inner` up to `max_body` bytes.
    pub(super) fn new(inner: S, max_body: usize) -> Self {
        Self {
            inner,
            max_body,
            not_ready: None,
        }
    }
}

impl<S: Clone> Clone for BufferBody<S> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready: it has no readiness error of its own.
        Self {
            inner: self.inner.clone(),
            max_body: self.max_body,
            not_ready: None,
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for BufferBody<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = CachedResponse;
    type Error = Infallible;
    // The miss path only: a hit never reaches this service.
    type Future = BoxFuture<'static, Result<CachedResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Infallible so that the cache above still serves hits while the upstream is
        // failing; the error is kept for the call that follows, which answers 502.
        self.not_ready = ready!(self.inner.poll_ready(cx)).err().map(Into::into);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if let Some(e) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(bad_gateway(e))));
        }
        let fut = self.inner.call(req);
        let max = self.max_body;
        Box::pin(async move {
            let resp = match fut.await {
                Ok(resp) => resp,
                Err(e) => return Ok(bad_gateway(e.into())),
            };
            Ok(buffer(resp, max).await)
        })
    }
}

async fn buffer<B>(resp: Response<B>, max: usize) -> CachedResponse
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = resp.into_parts();
    let mut body = body.map_err(Into::into).boxed_unsync();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut chunks = VecDeque::new();
    if declared.is_none_or(|n| n <= max as u64) {
        let mut total = 0usize;
        loop {
            match body.frame().await {
                None => {
                    let bytes = concat(chunks, total);
                    return Response::from_parts(parts, CachedBody::full(bytes));
                }
                Some(Err(e)) => return bad_gateway(e),
                Some(Ok(frame)) => {
                    // Trailers are dropped: a buffered body has nowhere to put them.
                    if let Ok(data) = frame.into_data() {
                        total += data.len();
                        chunks.push_back(data);
                        if total > max {
                            break;
                        }
                    }
                }
            }
        }
    }
    Response::from_parts(
        parts,
        CachedBody {
            kind: BodyKind::Stream {
                prefix: chunks,
                rest: Mutex::new(body),
            },
        },
    )
}

fn concat(mut chunks: VecDeque<Bytes>, total: usize) -> Bytes {
    if chunks.len() <= 1 {
        return chunks.pop_front().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(total);
    for c in chunks {
        out.extend_from_slice(&c);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn default_body_is_empty_and_ended() {
        // What an outer layer's `Response<B: Default>` (a 429 or a 503) carries.
        fn outer_answer<B: Default>() -> Response<B> {
            let mut resp = Response::new(B::default());
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp
        }
        let resp: CachedResponse = outer_answer();
        let body = resp.into_body();
        assert!(body.is_end_stream());
        assert!(!body.is_streaming());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(body.bytes().map(Bytes::len), Some(0));
        let collected = futures_util::FutureExt::now_or_never(body.collect())
            .unwrap()
            .unwrap();
        assert!(collected.to_bytes().is_empty());
    }
}
