//! Retries of `http::Request<B>`: a bounded body buffer, idempotency rules and
//! `Retry-After`.
//!
//! [`HttpRetryLayer`] stacks two services: [`BufferRequest`] reads a replayable request's
//! body into memory (up to `max_body_bytes`, 64 KiB by default), then [`Retry`] with
//! [`HttpPolicy`] sends copies of it. A body over the cap is sent once, untouched (what
//! was read is put back in front of the rest), and never retried.
//!
//! Rules of [`HttpPolicy`]:
//!
//! - 5xx (but 501 and 505), 408, 429 and transport errors or timeouts are retried with
//!   backoff; other answers are returned (reliability-core's `HttpClassifier`).
//! - `Retry-After` on a failed answer, as delta-seconds or an HTTP-date, sets the least
//!   wait; it is clamped to `max_retry_after` (60 s by default); garbage is ignored.
//! - Only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are retried, unless
//!   the request carries an `Idempotency-Key` header or the layer was told
//!   [`retry_non_idempotent`](crate::RetryBuilder::retry_non_idempotent).
//! - A response returned after retrying stopped carries [`RetryStopped`] in its
//!   extensions (attempts made, and why it stopped, e.g. an empty budget).
//!
//! Request trailers are not replayed: a body is buffered as its data frames only.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use retry_layer::http::HttpRetryLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let upstream = service_fn(move |_req: http::Request<Full<Bytes>>| {
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     let status = if n == 0 { 503 } else { 200 };
//!     async move { Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap()) }
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(HttpRetryLayer::builder().build_http().unwrap())
//!     .service(upstream);
//! let req = http::Request::put("/orders/7").body(Full::new(Bytes::from("{}"))).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use reliability_core::classify::{Classification, Classify, HttpClassifier};
use reliability_core::error::ConfigError;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, RetryStopped};
use crate::layer::{RetryBuilder, RetryConfig, RetryLayer};
use crate::metrics::RetryHandle;
use crate::policy::RetryPolicy;
use crate::schedule::StopReason;
use crate::service::Retry;

/// The header that makes a non-idempotent request safe to repeat (IETF
/// draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request with this method and these headers may be sent more than once.
pub fn is_replayable(method: &Method, headers: &HeaderMap, retry_non_idempotent: bool) -> bool {
    // RFC 9110 section 9.2.2: these methods are idempotent.
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    idempotent || retry_non_idempotent || headers.contains_key(IDEMPOTENCY_KEY)
}

/// A request body type that can be rebuilt from buffered bytes.
///
/// Implemented for `Full<Bytes>`, `BoxBody<Bytes, E>`, `UnsyncBoxBody<Bytes, E>` and
/// (feature `grpc`) `tonic::body::Body`.
pub trait ReplayBody: Body<Data = Bytes> + Unpin + Send + Sized + 'static {
    /// A body holding exactly `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;

    /// The body made of `prefix` (already read from `rest`) followed by what remains of
    /// `rest`.
    fn from_prefix(prefix: Bytes, rest: Self) -> Self;
}

impl ReplayBody for Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes)
    }

    fn from_prefix(prefix: Bytes, _rest: Self) -> Self {
        // `Full` yields its one frame at once: once anything was read, nothing remains.
        Full::new(prefix)
    }
}

impl<E: Send + Sync + 'static> ReplayBody for BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes).map_err(never::<E>).boxed()
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        PrefixedBody::new(prefix, rest).boxed()
    }
}

impl<E: Send + 'static> ReplayBody for UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes).map_err(never::<E>).boxed_unsync()
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        PrefixedBody::new(prefix, rest).boxed_unsync()
    }
}

fn never<E>(never: Infallible) -> E {
    match never {}
}

pin_project! {
    /// A body that yields `prefix` first, then the rest of an inner body: what a buffer
    /// that gave up at its cap puts back together.
    #[derive(Debug)]
    pub struct PrefixedBody<B> {
        prefix: Option<Bytes>,
        #[pin]
        rest: B,
    }
}

impl<B> PrefixedBody<B> {
    /// `prefix`, then `rest`.
    pub fn new(prefix: Bytes, rest: B) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for PrefixedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(extra));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint
    }
}

/// The buffered body of a replayable request, kept in its extensions.
#[derive(Debug, Clone)]
struct BufferedBody(Bytes);

/// Retries HTTP requests: idempotency rules, classification of responses (`C`, default
/// [`HttpClassifier`]), copies from the buffered body.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpPolicy<C = HttpClassifier> {
    classifier: C,
    retry_non_idempotent: bool,
}

impl<C> HttpPolicy<C> {
    /// Responses judged by `classifier`.
    pub fn new(classifier: C) -> Self {
        Self {
            classifier,
            retry_non_idempotent: false,
        }
    }
}

impl<B, ResB, E, C> RetryPolicy<Request<B>, Response<ResB>, E> for HttpPolicy<C>
where
    B: ReplayBody,
    C: Classify<Response<ResB>, E> + Send + Sync + 'static,
{
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        if !is_replayable(req.method(), req.headers(), self.retry_non_idempotent) {
            return None;
        }
        let BufferedBody(bytes) = req.extensions().get::<BufferedBody>()?;
        let mut copy = Request::new(B::from_bytes(bytes.clone()));
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    fn classify(&self, result: Result<&Response<ResB>, &E>) -> Classification {
        self.classifier.classify_full(result)
    }

    fn describe_request(&self, req: &Request<B>) -> String {
        // Method and path only: queries and headers may hold credentials.
        format!("{} {}", req.method(), req.uri().path())
    }

    fn describe_response(&self, res: &Response<ResB>) -> String {
        format!("HTTP {}", res.status())
    }

    fn on_stop(&self, res: &mut Response<ResB>, attempts: u32, reason: StopReason) {
        res.extensions_mut()
            .insert(RetryStopped { attempts, reason });
    }
}

/// An HTTP retry layer: [`BufferRequest`] around [`Retry`] with [`HttpPolicy`].
pub struct HttpRetryLayer<C = HttpClassifier> {
    retry: RetryLayer<HttpPolicy<C>>,
    max_body_bytes: usize,
    retry_non_idempotent: bool,
}

impl<C> Clone for HttpRetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            retry: self.retry.clone(),
            max_body_bytes: self.max_body_bytes,
            retry_non_idempotent: self.retry_non_idempotent,
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for HttpRetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRetryLayer")
            .field("retry", &self.retry)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl HttpRetryLayer {
    /// A builder with the defaults of [`RetryLayer::builder`] and [`HttpPolicy`].
    pub fn builder() -> RetryBuilder<HttpPolicy> {
        RetryBuilder::new(HttpPolicy::default())
    }

    /// A layer from configuration.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        Self::builder().config(config.clone()).build_http()
    }
}

impl<C: Send + Sync + 'static> HttpRetryLayer<C> {
    /// Counters, budget state and health.
    pub fn handle(&self) -> RetryHandle {
        self.retry.handle()
    }
}

impl<C> RetryBuilder<HttpPolicy<C>> {
    /// Validates the settings and makes the HTTP layer.
    pub fn build_http(mut self) -> Result<HttpRetryLayer<C>, ConfigError> {
        let config = self.settings();
        let (max_body_bytes, retry_non_idempotent) =
            (config.max_body_bytes, config.retry_non_idempotent);
        self.policy_mut().retry_non_idempotent = retry_non_idempotent;
        Ok(HttpRetryLayer {
            retry: self.build()?,
            max_body_bytes,
            retry_non_idempotent,
        })
    }
}

impl<S, C> Layer<S> for HttpRetryLayer<C> {
    type Service = BufferRequest<Retry<S, HttpPolicy<C>>>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferRequest::new(
            self.retry.layer(inner),
            self.max_body_bytes,
            self.retry_non_idempotent,
        )
    }
}

/// Buffers the body of replayable requests (up to a cap) so that the service inside can
/// send it again.
#[derive(Debug, Clone)]
pub struct BufferRequest<S> {
    inner: S,
    max_body_bytes: usize,
    retry_non_idempotent: bool,
}

impl<S> BufferRequest<S> {
    /// Buffers bodies up to `max_body_bytes` of requests that [`is_replayable`].
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
        let skip = !is_replayable(req.method(), req.headers(), self.retry_non_idempotent)
            || req.body().size_hint().lower() > max;
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
