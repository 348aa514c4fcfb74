//! Retries of `http::Request<B>`: a bounded body buffer, one idempotency rule and
//! `Retry-After`.
//!
//! [`HttpRetryLayer`] stacks two services: [`BufferRequest`] reads a replayable request's
//! body into memory (up to `max_body_bytes`, 64 KiB by default), then [`Retry`] with
//! [`HttpPolicy`] sends copies of it. A body over the cap is sent once, untouched (what
//! was read is put back in front of the rest), and never retried.
//!
//! # Which requests are sent twice
//!
//! One rule, [`may_replay`], decides for every HTTP path in this crate (the body buffer,
//! [`HttpPolicy`] and the [`Idempotent`] wrapper):
//!
//! - `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and `DELETE` are idempotent (RFC 9110
//!   section 9.2.2) and may be retried;
//! - any other method (`POST`, `PATCH`, ...) only when the request carries a non-empty
//!   [`Idempotency-Key`](IDEMPOTENCY_KEY) header (draft-ietf-httpapi-idempotency-key-header:
//!   the server then answers a repeat with the first outcome; every attempt carries the
//!   same key, since copies keep the headers), or the caller opted in for this request
//!   with the [`RetryNonIdempotent`] extension, or the layer was built with
//!   [`retry_non_idempotent`](crate::RetryBuilder::retry_non_idempotent).
//!
//! A request that may not be replayed is sent once; a failed answer to it comes back with
//! [`RetryStopped`] (reason [`StopReason::NotReplayable`]).
//!
//! # Answers
//!
//! - 5xx (but 501 and 505), 408, 429 and transport errors or timeouts are retried with
//!   backoff; other answers are returned (reliability-core's `HttpClassifier`).
//! - `Retry-After` on a failed answer, as delta-seconds or an HTTP-date, sets the least
//!   wait; it is clamped to `max_retry_after` (60 s by default); garbage is ignored. The
//!   parsing is reliability-core's `parse_retry_after`, shared by every layer.
//! - A response returned after retrying stopped carries [`RetryStopped`] in its
//!   extensions (attempts made, and why it stopped, e.g. an empty budget).
//!
//! Request trailers are not replayed: a body is buffered as its data frames only.
//!
//! # Building
//!
//! [`HttpRetryLayer::builder`] returns a [`RetryBuilder`] in the [`Http`] mode: it has
//! every setting of the plain builder plus the HTTP ones, and its `build` makes an
//! [`HttpRetryLayer`], body buffer included. [`HttpPolicy`] cannot be made outside this
//! crate, so a retry layer with the HTTP policy but no buffer (which would never retry,
//! since there would be no body to copy) does not compile:
//!
//! ```compile_fail,E0308
//! use retry_layer::{http::HttpRetryLayer, RetryLayer};
//! // The HTTP builder makes an `HttpRetryLayer`, never a bare `RetryLayer`.
//! let layer: RetryLayer<_> = HttpRetryLayer::builder().build().unwrap();
//! ```
//!
//! ```compile_fail,E0624
//! use reliability_core::classify::HttpClassifier;
//! use retry_layer::{http::HttpPolicy, RetryBuilder};
//! // `HttpPolicy` has no public constructor: it only comes with its buffer.
//! let layer = RetryBuilder::new(HttpPolicy::new(HttpClassifier::new())).build();
//! ```
//!
//! ```compile_fail,E0599
//! use retry_layer::{http::HttpRetryLayer, ClassifierPolicy};
//! // The HTTP builder's policy cannot be swapped for a plain build.
//! let layer = HttpRetryLayer::builder().policy(ClassifierPolicy::default()).build();
//! ```
//!
//! Requests already held in memory (`http::Request<Bytes>`, cloned for each attempt by
//! [`ClassifierPolicy`](crate::ClassifierPolicy)) need no buffer: wrap their policy in
//! [`Idempotent`] so that the same rule applies.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use retry_layer::http::{HttpRetryLayer, RetryNonIdempotent};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let upstream = service_fn(move |_req: http::Request<Full<Bytes>>| {
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     let status = if n % 2 == 0 { 503 } else { 200 };
//!     async move { Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap()) }
//! });
//! let layer: HttpRetryLayer = HttpRetryLayer::builder().max_body_bytes(16 * 1024).build().unwrap();
//! let svc = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! // PUT is idempotent: retried.
//! let req = http::Request::put("/orders/7").body(Full::new(Bytes::from("{}"))).unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
//! assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
//!
//! // POST is retried only with a key or an opt-in for this request.
//! let mut req = http::Request::post("/orders").body(Full::new(Bytes::from("{}"))).unwrap();
//! req.extensions_mut().insert(RetryNonIdempotent);
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
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

/// The caller's word that this one request is safe to send more than once, whatever its
/// method: put it in the request's extensions.
///
/// ```
/// use retry_layer::http::{may_replay, RetryNonIdempotent};
///
/// let mut req = http::Request::post("/orders/7/cancel").body(()).unwrap();
/// assert!(!may_replay(&req, false));
/// req.extensions_mut().insert(RetryNonIdempotent);
/// assert!(may_replay(&req, false));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryNonIdempotent;

/// Whether `req` may be sent more than once: the one rule every HTTP path of this crate
/// follows (see the [module docs](self#which-requests-are-sent-twice)).
///
/// True for the idempotent methods of RFC 9110 section 9.2.2 (`GET`, `HEAD`, `OPTIONS`,
/// `TRACE`, `PUT`, `DELETE`); for any other method, true only when the request carries a
/// non-empty [`Idempotency-Key`](IDEMPOTENCY_KEY) header, or the [`RetryNonIdempotent`]
/// extension, or when `layer_opt_in` (the layer's `retry_non_idempotent` setting) is set.
///
/// ```
/// use retry_layer::http::may_replay;
///
/// let get = http::Request::get("/orders/7").body(()).unwrap();
/// let post = http::Request::post("/orders").body(()).unwrap();
/// let keyed = http::Request::post("/orders").header("idempotency-key", "\"k1\"").body(()).unwrap();
/// assert!(may_replay(&get, false));
/// assert!(!may_replay(&post, false));
/// assert!(may_replay(&keyed, false));
/// assert!(may_replay(&post, true));
/// ```
pub fn may_replay<B>(req: &Request<B>, layer_opt_in: bool) -> bool {
    is_idempotent(req.method())
        || layer_opt_in
        || has_idempotency_key(req.headers())
        || req.extensions().get::<RetryNonIdempotent>().is_some()
}

/// RFC 9110 section 9.2.2: the methods whose repeats have the effect of one request.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// An empty key identifies nothing, so the server could not recognise a repeat: it does
/// not count.
fn has_idempotency_key(headers: &HeaderMap) -> bool {
    headers
        .get(IDEMPOTENCY_KEY)
        .is_some_and(|key| !key.as_bytes().trim_ascii().is_empty())
}

/// A request body type that can be rebuilt from buffered bytes.
///
/// Implemented for `Full<Bytes>`, `BoxBody<Bytes, E>`, `UnsyncBoxBody<Bytes, E>`,
/// (feature `axum`) `axum::body::Body` and (feature `grpc`) `tonic::body::Body`.
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

#[cfg(feature = "axum")]
impl ReplayBody for axum_core::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }

    fn from_prefix(prefix: Bytes, rest: Self) -> Self {
        axum_core::body::Body::new(PrefixedBody::new(prefix, rest))
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

/// Retries HTTP requests: [`may_replay`], classification of responses (`C`, default
/// [`HttpClassifier`]), copies from the body that [`BufferRequest`] kept.
///
/// It comes only inside an [`HttpRetryLayer`] (there is no public constructor): without
/// the buffer in front there is no body to copy, and nothing would ever be retried.
#[derive(Debug, Clone, Copy)]
pub struct HttpPolicy<C = HttpClassifier> {
    classifier: C,
    retry_non_idempotent: bool,
}

impl<C> HttpPolicy<C> {
    /// Responses judged by `classifier`.
    pub(crate) fn new(classifier: C) -> Self {
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
        if !may_replay(req, self.retry_non_idempotent) {
            return None;
        }
        let BufferedBody(bytes) = req.extensions().get::<BufferedBody>()?;
        let mut copy = Request::new(B::from_bytes(bytes.clone()));
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        // The same headers on every attempt: an `Idempotency-Key` is repeated as is.
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    fn classify(&self, result: Result<&Response<ResB>, &E>) -> Classification {
        self.classifier.classify_full(result)
    }

    fn describe_request(&self, req: &Request<B>) -> String {
        describe(req)
    }

    fn describe_response(&self, res: &Response<ResB>) -> String {
        format!("HTTP {}", res.status())
    }

    fn on_stop(&self, res: &mut Response<ResB>, attempts: u32, reason: StopReason) {
        res.extensions_mut()
            .insert(RetryStopped { attempts, reason });
    }
}

fn describe<B>(req: &Request<B>) -> String {
    // Method and path only: queries and headers may hold credentials.
    format!("{} {}", req.method(), req.uri().path())
}

/// Applies [`may_replay`] to any policy of `http::Request<B>`: a request that may not be
/// sent twice is sent once; everything else is the inner policy's.
///
/// For requests already held in memory, such as `http::Request<Bytes>`, that a plain
/// [`RetryLayer`] copies with [`ClassifierPolicy`](crate::ClassifierPolicy). That policy
/// clones any `Clone` request and never looks at a method: it is generic over the request
/// type, and without specialisation Rust cannot give it other behaviour for
/// `http::Request<B>` alone. Hence this wrapper, which is where the HTTP rule is added.
/// There is no layer-wide opt-in here: to retry every method, leave the policy unwrapped.
///
/// ```
/// use bytes::Bytes;
/// use reliability_core::classify::HttpClassifier;
/// use retry_layer::{http::Idempotent, ClassifierPolicy, RetryLayer};
///
/// let layer = RetryLayer::builder()
///     .policy(Idempotent::new(ClassifierPolicy::new(HttpClassifier::new())))
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Idempotent<P> {
    inner: P,
}

impl<P> Idempotent<P> {
    /// `inner`, restricted to the requests that [`may_replay`].
    pub fn new(inner: P) -> Self {
        Self { inner }
    }

    /// The wrapped policy.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// The wrapped policy, owned.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<B, Res, E, P> RetryPolicy<Request<B>, Res, E> for Idempotent<P>
where
    P: RetryPolicy<Request<B>, Res, E>,
{
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        if !may_replay(req, false) {
            return None;
        }
        self.inner.replay(req)
    }

    fn classify(&self, result: Result<&Res, &E>) -> Classification {
        self.inner.classify(result)
    }

    fn describe_request(&self, req: &Request<B>) -> String {
        self.inner.describe_request(req)
    }

    fn describe_response(&self, res: &Res) -> String {
        self.inner.describe_response(res)
    }

    fn on_stop(&self, res: &mut Res, attempts: u32, reason: StopReason) {
        self.inner.on_stop(res, attempts, reason);
    }
}

/// The build mode of a [`RetryBuilder`] whose `build` makes an [`HttpRetryLayer`]: the
/// mode of [`HttpRetryLayer::builder`] and `GrpcRetryLayer::grpc_builder`.
///
/// A type, never a value (see [`Plain`](crate::Plain)).
#[derive(Debug)]
pub enum Http {}

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
    /// A builder with the defaults of [`RetryLayer::builder`], [`HttpClassifier`] and a
    /// 64 KiB body buffer; its `build` makes an [`HttpRetryLayer`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use retry_layer::{backoff::Backoff, http::HttpRetryLayer};
    ///
    /// let layer: HttpRetryLayer = HttpRetryLayer::builder()
    ///     .max_attempts(4)
    ///     .backoff(Backoff::constant(Duration::from_millis(50)))
    ///     .max_body_bytes(1 << 20)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn builder() -> RetryBuilder<HttpPolicy, Http> {
        RetryBuilder::in_mode(HttpPolicy::new(HttpClassifier::new()))
    }

    /// A layer from configuration.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        Self::builder().config(config.clone()).build()
    }
}

impl<C: Send + Sync + 'static> HttpRetryLayer<C> {
    /// Counters, budget state and health.
    pub fn handle(&self) -> RetryHandle {
        self.retry.handle()
    }
}

impl<C> RetryBuilder<HttpPolicy<C>, Http> {
    /// Retry POST/PATCH (and other non-idempotent methods) even without an
    /// `Idempotency-Key` or a [`RetryNonIdempotent`] mark (the `layer_opt_in` of
    /// [`may_replay`]).
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.settings_mut().retry_non_idempotent = yes;
        self
    }

    /// The largest request body buffered for replay (`0..=64 MiB`); a longer body is sent
    /// once and never retried.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.settings_mut().max_body_bytes = bytes;
        self
    }

    /// Responses judged by `classifier` instead (it must implement
    /// `Classify<http::Response<B>, E>` for the inner service's answers).
    pub fn classifier<C2>(self, classifier: C2) -> RetryBuilder<HttpPolicy<C2>, Http> {
        self.with_policy(HttpPolicy::new(classifier))
    }

    /// Validates the settings and makes the HTTP layer, body buffer included.
    pub fn build(mut self) -> Result<HttpRetryLayer<C>, ConfigError> {
        let config = self.settings_mut();
        let (max_body_bytes, retry_non_idempotent) =
            (config.max_body_bytes, config.retry_non_idempotent);
        self.policy_mut().retry_non_idempotent = retry_non_idempotent;
        Ok(HttpRetryLayer {
            retry: self.build_layer()?,
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

// ---------------------------------------------------------------------------------------
// Server mode

impl<C> HttpRetryLayer<C> {
    /// Server mode: the layer's own errors (a per-attempt timeout, an exhausted deadline,
    /// an unreadable request body, the inner service's errors) become HTTP answers through
    /// reliability-core's [failure table](reliability_core::failure) (504, 502...), so the
    /// service's error type is `Infallible` and it stacks anywhere in an axum app.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use retry_layer::http::HttpRetryLayer;
    ///
    /// let retry = HttpRetryLayer::builder().max_attempts(2).build().unwrap();
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "ok" }))
    ///     .layer(retry.answer_errors());
    /// # let _ = app;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, key: Option<&str>, marked: bool) -> Request<()> {
        let mut req = Request::builder().method(method);
        if let Some(key) = key {
            req = req.header(IDEMPOTENCY_KEY, key);
        }
        let mut req = req.body(()).unwrap();
        if marked {
            req.extensions_mut().insert(RetryNonIdempotent);
        }
        req
    }

    #[test]
    fn the_rule() {
        let idempotent = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
        let others = ["POST", "PATCH", "CONNECT", "PROPFIND"];
        for m in idempotent {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(may_replay(&request(m.clone(), None, false), false), "{m}");
        }
        for m in others {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            let plain = request(m.clone(), None, false);
            assert!(!may_replay(&plain, false), "{m}");
            assert!(may_replay(&plain, true), "{m} with the layer's opt-in");
            assert!(
                may_replay(&request(m.clone(), Some("k1"), false), false),
                "{m} keyed"
            );
            assert!(
                may_replay(&request(m.clone(), None, true), false),
                "{m} marked"
            );
            for blank in ["", "  "] {
                let req = request(m.clone(), Some(blank), false);
                assert!(!may_replay(&req, false), "{m} with a blank key");
            }
        }
    }
}
