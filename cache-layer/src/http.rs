//! HTTP mode: caching `http::Request` → `http::Response` with the rules of a shared cache.
//!
//! [`HttpCacheLayer`] keys a request by method, target URI (scheme, authority from the URI
//! or the `Host` header, path and query: virtual hosts never share entries) and the
//! request headers named with [`vary`](HttpCacheLayerBuilder::vary), see [`HttpKey`];
//! buffers response bodies up to a cap; and follows RFC 9111 where a server-side (shared)
//! cache must:
//!
//! - only `GET` and `HEAD` are cached; a request with `Cache-Control: no-store` bypasses;
//! - an unsafe request (`POST`, `PUT`, `DELETE`, `PATCH`..., never cached) answered with a
//!   2xx or 3xx invalidates the `GET` and `HEAD` entries of its target URI and of
//!   same-origin `Location` / `Content-Location` URIs (§4.4), see
//!   [`invalidate_on_unsafe`](HttpCacheLayerBuilder::invalidate_on_unsafe);
//! - a request with `Authorization` or `Cookie` is **never shared**: it bypasses the cache,
//!   unless [`credential_identity`](HttpCacheLayerBuilder::credential_identity) puts the
//!   caller's identity in the key (each user then has their own entries) or the user opts
//!   in with [`share_authenticated`](HttpCacheLayerBuilder::share_authenticated);
//! - responses with `Cache-Control: no-store` or `private`, or with `Set-Cookie`, are
//!   neither stored nor handed to coalesced callers (each makes its own call);
//! - `s-maxage` / `max-age` set the TTL, `stale-while-revalidate` / `stale-if-error` the
//!   windows (when [`honor_cache_control`](HttpCacheLayerBuilder::honor_cache_control) is
//!   on, the default); `no-cache` responses are not stored;
//! - a response whose `Vary` names a header the key does not include (or `*`) is not
//!   stored; 5xx answers count as failures (stale-if-error serves a stale copy instead);
//!   404 and 410 are negative answers, stored only with a negative TTL;
//! - bodies larger than the cap stream through uncached;
//! - every response carries an RFC 9211 `Cache-Status` member, such as
//!   `api; hit; ttl=12` or `api; fwd=miss; stored`.
//!
//! Upstream errors become responses with the status of reliability-core's failure table
//! (`502 Bad Gateway`, `504` for a timeout) carrying the error as an
//! [`UpstreamError`] extension, so axum needs no `HandleErrorLayer` and stale-if-error
//! applies to them too.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use cache_layer::http::HttpCacheLayer;
//!
//! let cache = HttpCacheLayer::builder()
//!     .name("api")
//!     .ttl(Duration::from_secs(5))
//!     .stale_while_revalidate(Duration::from_secs(30))
//!     .vary(["accept"])
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new().route("/price", get(|| async { "42" })).layer(cache);
//! # let _ = app;
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_LOCATION, COOKIE, HOST, LOCATION,
    SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use reliability_core::clock::SharedClock;
use reliability_core::error::ConfigError;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::CacheHandle;
use crate::config::CacheConfig;
use crate::engine::{Directive, StoreAction};
use crate::freshness::StaleWindows;
use crate::layer::{CacheKey, CacheLayer};
use crate::service::Cache;
use crate::status::CacheStatus;

/// The `Cache-Status` header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The response type of the HTTP mode.
pub type CachedResponse = Response<CachedBody>;

// ---------------------------------------------------------------------------------------
// Body

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
fn bad_gateway(err: BoxError) -> CachedResponse {
    let failure = reliability_core::failure::Failure::of(&*err);
    let mut resp: CachedResponse = failure.to_http_response();
    *resp.body_mut() = CachedBody::from(failure.kind().phrase());
    resp.extensions_mut().insert(UpstreamError(Arc::new(err)));
    resp
}

// ---------------------------------------------------------------------------------------
// Buffering service

/// Buffers the inner service's response bodies up to a cap (the service [`Cache`] wraps
/// in HTTP mode).
#[derive(Debug)]
pub struct BufferBody<S> {
    inner: S,
    max_body: usize,
    // The inner service's readiness error, answered as a 502 by the next `call` (which
    // then does not call an inner service that never became ready).
    not_ready: Option<BoxError>,
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

// ---------------------------------------------------------------------------------------
// Key

type IdentityFn = Arc<dyn Fn(&HeaderMap) -> Option<String> + Send + Sync>;

/// The key of the HTTP mode: method, target URI (scheme, authority, path, query), chosen
/// headers, and the caller's identity when credentials are present.
///
/// A key reads `GET http://api.example/path?query|accept=text/html|@alice`:
///
/// - the **authority** comes from the request URI when it has one (absolute-form, and
///   HTTP/2, where hyper puts `:authority` into the URI), else from the `Host` header;
///   without either (HTTP/1.0, or a request built in-process) it is empty
///   (`GET http:///path`). The host is lowercased and a default port (`:80` for `http`,
///   `:443` for `https`, or an empty one) is dropped (RFC 9110 §4.2.3), so `A.example:80`
///   and `a.example` share entries. A request with several `Host` headers, or one that is
///   not `host[:port]`, bypasses the cache: it is malformed (RFC 9112 §3.2);
/// - the **scheme** comes from the URI, else is `http` (an HTTP/1.1 server sees no
///   scheme, even behind TLS);
/// - then one `|name=value` per [`vary`](HttpCacheLayerBuilder::vary) header (present or
///   not), then `|@identity` when credentials are present and
///   [`credential_identity`](HttpCacheLayerBuilder::credential_identity) names the caller.
///
/// `%` and `|` are escaped (`%25`, `%7C`) everywhere, so `|` only ever separates parts and
/// distinct requests never share a key. Every key of one method and target therefore
/// starts with `METHOD scheme://authority/path?query` followed by `|` or nothing:
/// invalidating a URI (after an unsafe request, or through
/// [`CacheHandle::invalidate_prefix`] with a trailing `|`) cannot reach `/path2`.
#[derive(Clone)]
pub struct HttpKey {
    vary: Arc<[HeaderName]>,
    identity: Option<IdentityFn>,
    share_authenticated: bool,
}

impl fmt::Debug for HttpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKey")
            .field("vary", &self.vary)
            .field("identity", &self.identity.is_some())
            .field("share_authenticated", &self.share_authenticated)
            .finish()
    }
}

/// Escapes the key's separators so that distinct requests never share a key.
fn push_escaped(key: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' => key.push_str("%25"),
            '|' => key.push_str("%7C"),
            c => key.push(c),
        }
    }
}

/// The scheme and raw authority (`host[:port]`, no user info) of a request's target:
/// from the URI, else from its single `Host` header, else empty. `None` for a malformed
/// `Host` (several of them, or not visible ASCII).
fn request_origin<B>(req: &Request<B>) -> Option<(&str, &str)> {
    let uri = req.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    if let Some(a) = uri.authority() {
        let a = a.as_str();
        return Some((
            scheme,
            a.rsplit_once('@').map_or(a, |(_, hostport)| hostport),
        ));
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let authority = match (hosts.next(), hosts.next()) {
        (None, _) => "",
        (Some(h), None) => h.to_str().ok()?,
        (Some(_), Some(_)) => return None,
    };
    Some((scheme, authority))
}

/// Bytes a host may hold: RFC 3986 `reg-name` (unreserved, sub-delims, `%`), and the
/// `:` `[` `]` of an IP literal. No `/ ? # @ |` or whitespace, so a `Host` header cannot
/// smuggle a path or a key separator.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

/// Writes `scheme://host[:port]`, normalised (lowercase, no default port); `None` when
/// the authority is not `host[:port]`.
fn push_origin(key: &mut String, scheme: &str, authority: &str) -> Option<()> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, after) = authority.split_at(end);
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        if !host[1..end - 1]
            .bytes()
            .all(|b| b == b':' || is_host_byte(b))
        {
            return None;
        }
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !host.bytes().all(is_host_byte) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    for c in scheme.chars() {
        key.push(c.to_ascii_lowercase());
    }
    key.push_str("://");
    for c in host.chars() {
        match c {
            '%' => key.push_str("%25"),
            c => key.push(c.to_ascii_lowercase()),
        }
    }
    let default = match scheme {
        s if s.eq_ignore_ascii_case("http") => Some(80),
        s if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    };
    if let Some(p) = port.filter(|p| Some(*p) != default) {
        use std::fmt::Write;
        let _ = write!(key, ":{p}");
    }
    Some(())
}

/// Writes the escaped path and query of `uri`.
fn push_path(key: &mut String, uri: &Uri) {
    push_escaped(key, uri.path());
    if let Some(q) = uri.query() {
        key.push('?');
        push_escaped(key, q);
    }
}

impl<B> CacheKey<Request<B>> for HttpKey {
    fn key(&self, req: &Request<B>) -> Option<String> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        let headers = req.headers();
        if cache_control(headers).any(|(name, _)| name.eq_ignore_ascii_case("no-store")) {
            return None;
        }
        let credentialed = headers.contains_key(AUTHORIZATION) || headers.contains_key(COOKIE);
        let identity = match (&self.identity, credentialed) {
            (_, false) => None,
            (Some(f), true) => Some(f(headers)?),
            (None, true) if self.share_authenticated => None,
            (None, true) => return None,
        };
        let (scheme, authority) = request_origin(req)?;
        let mut key = String::with_capacity(96);
        key.push_str(req.method().as_str());
        key.push(' ');
        push_origin(&mut key, scheme, authority)?;
        push_path(&mut key, req.uri());
        for name in self.vary.iter() {
            key.push('|');
            key.push_str(name.as_str());
            key.push('=');
            for (i, v) in headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    key.push(',');
                }
                push_escaped(&mut key, &String::from_utf8_lossy(v.as_bytes()));
            }
        }
        if let Some(id) = identity {
            key.push_str("|@");
            push_escaped(&mut key, &id);
        }
        Some(key)
    }
}

/// The directives of every `Cache-Control` header: `(name, value)`.
fn cache_control(headers: &HeaderMap) -> impl Iterator<Item = (&str, Option<&str>)> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            let d = d.trim();
            match d.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (d, None),
            }
        })
}

// ---------------------------------------------------------------------------------------
// Storage rules

/// Statuses a shared cache may store by default (RFC 9110 §15.1, heuristically cacheable).
const CACHEABLE: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

#[derive(Debug, Clone)]
struct Rules {
    vary: Arc<[HeaderName]>,
    honor_cache_control: bool,
    negative: bool,
    windows: StaleWindows,
}

fn seconds(v: Option<&str>) -> Option<Duration> {
    // Bounded: a hostile `max-age=99999999999` cannot overflow anything.
    v?.parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(365 * 24 * 3600)))
}

fn http_directive(resp: &CachedResponse, mut d: Directive, rules: &Rules) -> Directive {
    let status = resp.status().as_u16();
    if resp.body().is_streaming() || resp.headers().contains_key(SET_COOKIE) {
        d.action = StoreAction::Private;
        return d;
    }
    if status >= 500 {
        d.action = StoreAction::Failure;
        return d;
    }
    d.negative = matches!(status, 404 | 410);
    if !CACHEABLE.contains(&status) || (d.negative && !rules.negative) {
        d.action = StoreAction::Skip;
        return d;
    }
    let varies_elsewhere = resp
        .headers()
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|name| {
            name == "*"
                || !rules
                    .vary
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(name))
        });
    if varies_elsewhere {
        d.action = StoreAction::Skip;
        return d;
    }
    let mut windows = rules.windows;
    let (mut max_age, mut s_maxage) = (None, None);
    for (name, value) in cache_control(resp.headers()) {
        match name.to_ascii_lowercase().as_str() {
            // A server-side cache is a shared cache (RFC 9111 §5.2.2.7).
            "no-store" | "private" => {
                d.action = StoreAction::Private;
                d.shared = false;
                return d;
            }
            "no-cache" => d.action = StoreAction::Skip,
            "max-age" => max_age = seconds(value),
            "s-maxage" => s_maxage = seconds(value),
            "stale-while-revalidate" => {
                if let Some(w) = seconds(value) {
                    windows.stale_while_revalidate = w;
                }
            }
            "stale-if-error" => {
                if let Some(w) = seconds(value) {
                    windows.stale_if_error = w;
                }
            }
            _ => {}
        }
    }
    if !rules.honor_cache_control {
        return d;
    }
    match s_maxage.or(max_age) {
        Some(ttl) if ttl.is_zero() => d.action = StoreAction::Skip,
        Some(ttl) if !d.negative => d.ttl = Some(ttl),
        _ => {}
    }
    d.windows = Some(windows);
    d
}

fn annotate(resp: &mut CachedResponse, status: &CacheStatus, name: &str) {
    if let Ok(v) = HeaderValue::from_str(&status.header_value(name)) {
        // RFC 9211: each cache appends its member; the upstream's own stay first.
        resp.headers_mut().append(CACHE_STATUS, v);
    }
}

fn response_size(resp: &CachedResponse) -> usize {
    let headers: usize = resp
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    headers + resp.body().bytes().map_or(0, Bytes::len)
}

// ---------------------------------------------------------------------------------------
// L2 codec

/// Encodes buffered responses for L2: status, headers, body. Streamed bodies (over the
/// cap) are never stored, so never encoded.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseCodec;

#[cfg(feature = "redis")]
impl crate::codec::Codec<CachedResponse> for ResponseCodec {
    fn encode(&self, resp: &CachedResponse) -> Option<Bytes> {
        let body = resp.body().bytes()?;
        let mut out = BytesMut::with_capacity(body.len() + 256);
        out.extend_from_slice(&resp.status().as_u16().to_le_bytes());
        let n = u16::try_from(resp.headers().len()).ok()?;
        out.extend_from_slice(&n.to_le_bytes());
        for (name, value) in resp.headers() {
            for part in [name.as_str().as_bytes(), value.as_bytes()] {
                out.extend_from_slice(&u16::try_from(part.len()).ok()?.to_le_bytes());
                out.extend_from_slice(part);
            }
        }
        out.extend_from_slice(body);
        Some(out.freeze())
    }

    fn decode(&self, bytes: &Bytes) -> Option<CachedResponse> {
        fn take(b: &mut Bytes, n: usize) -> Option<Bytes> {
            (b.len() >= n).then(|| b.split_to(n))
        }
        fn u16_of(b: &mut Bytes) -> Option<u16> {
            let raw = take(b, 2)?;
            Some(u16::from_le_bytes([raw[0], raw[1]]))
        }
        let mut b = bytes.clone();
        let status = StatusCode::from_u16(u16_of(&mut b)?).ok()?;
        let n = u16_of(&mut b)?;
        let mut resp = Response::new(CachedBody::full(Bytes::new()));
        *resp.status_mut() = status;
        for _ in 0..n {
            let len = usize::from(u16_of(&mut b)?);
            let name = HeaderName::from_bytes(&take(&mut b, len)?).ok()?;
            let len = usize::from(u16_of(&mut b)?);
            let value = HeaderValue::from_maybe_shared(take(&mut b, len)?).ok()?;
            resp.headers_mut().append(name, value);
        }
        *resp.body_mut() = CachedBody::full(b);
        Some(resp)
    }
}

// ---------------------------------------------------------------------------------------
// Layer, builder, service

/// Caches HTTP responses: see the [module docs](self).
#[derive(Clone)]
pub struct HttpCacheLayer {
    cache: CacheLayer<HttpKey, CachedResponse>,
    max_body: usize,
    invalidate_on_unsafe: bool,
}

impl fmt::Debug for HttpCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheLayer")
            .field("cache", &self.cache)
            .field("max_body", &self.max_body)
            .field("invalidate_on_unsafe", &self.invalidate_on_unsafe)
            .finish()
    }
}

impl HttpCacheLayer {
    /// A builder with safe defaults: 60 s TTL, no Vary headers, 1 MiB body cap,
    /// credentialed requests bypass, `Cache-Control` honoured.
    pub fn builder() -> HttpCacheLayerBuilder {
        HttpCacheLayerBuilder {
            config: CacheConfig::default(),
            vary: Vec::new(),
            identity: None,
            share_authenticated: false,
            honor_cache_control: true,
            max_body: 1 << 20,
            invalidate_on_unsafe: true,
            clock: None,
            invalid_vary: None,
            #[cfg(feature = "redis")]
            l2: None,
        }
    }

    /// The handle for invalidation and metrics. Keys read
    /// `"GET http://host/path?query|header=value"` (see [`HttpKey`]): to drop every
    /// variant of one URI, `invalidate_prefix("GET http://host/path|")` and
    /// `invalidate("GET http://host/path")`.
    pub fn handle(&self) -> CacheHandle<CachedResponse> {
        self.cache.handle()
    }
}

impl<S> Layer<S> for HttpCacheLayer {
    type Service = HttpCache<S>;

    fn layer(&self, inner: S) -> HttpCache<S> {
        HttpCache {
            inner: self.cache.layer(BufferBody {
                inner,
                max_body: self.max_body,
                not_ready: None,
            }),
            invalidate_on_unsafe: self.invalidate_on_unsafe,
        }
    }
}

/// Builds an [`HttpCacheLayer`].
#[must_use]
pub struct HttpCacheLayerBuilder {
    config: CacheConfig,
    vary: Vec<HeaderName>,
    identity: Option<IdentityFn>,
    share_authenticated: bool,
    honor_cache_control: bool,
    max_body: usize,
    invalidate_on_unsafe: bool,
    clock: Option<SharedClock>,
    invalid_vary: Option<String>,
    #[cfg(feature = "redis")]
    l2: Option<(crate::backend::redis::RedisTier, Option<Duration>)>,
}

impl fmt::Debug for HttpCacheLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheLayerBuilder")
            .field("config", &self.config)
            .field("vary", &self.vary)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl HttpCacheLayerBuilder {
    crate::config::config_setters!();

    /// Caches 404 and 410 answers for `ttl` (off by default).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.config.negative_ttl = Some(ttl);
        self
    }

    /// Request headers that are part of the key (`Accept`, `Accept-Language`...).
    /// Invalid header names are a build error.
    pub fn vary<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        for n in names {
            match HeaderName::from_bytes(n.as_ref().as_bytes()) {
                Ok(h) => self.vary.push(h),
                Err(_) => {
                    self.invalid_vary
                        .get_or_insert_with(|| format!("not a header name: {:?}", n.as_ref()));
                }
            }
        }
        self
    }

    /// Largest body buffered for caching (default 1 MiB); larger ones stream uncached.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// Caches credentialed requests per caller: `f` maps the request headers to the
    /// caller's identity (a user id, not the token), which becomes part of the key;
    /// `None` makes the request bypass.
    pub fn credential_identity(
        mut self,
        f: impl Fn(&HeaderMap) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.identity = Some(Arc::new(f));
        self
    }

    /// Shares responses to credentialed requests between callers (opt-in, for APIs
    /// whose answers do not depend on who asks).
    pub fn share_authenticated(mut self) -> Self {
        self.share_authenticated = true;
        self
    }

    /// Whether a successful (2xx, 3xx) unsafe request, any method but `GET`, `HEAD`,
    /// `OPTIONS` and `TRACE`, invalidates the `GET` and `HEAD` entries of its target URI
    /// and of same-origin `Location` / `Content-Location` URIs, before its answer reaches
    /// the caller (RFC 9111 §4.4; default true).
    ///
    /// With [`vary`](Self::vary) headers or [`credential_identity`](Self::credential_identity)
    /// a URI has several entries, so this is a prefix invalidation: a scan of L1, and with
    /// L2 a bump of the Redis generation (the whole L2 namespace). Turn it off for
    /// write-heavy APIs whose reads tolerate the TTL, and invalidate through
    /// [`HttpCacheLayer::handle`] instead.
    pub fn invalidate_on_unsafe(mut self, on: bool) -> Self {
        self.invalidate_on_unsafe = on;
        self
    }

    /// Whether response `Cache-Control` freshness directives (`max-age`, `s-maxage`,
    /// `stale-while-revalidate`, `stale-if-error`) set TTLs and windows (default true).
    /// `no-store`, `private` and `no-cache` are honoured either way.
    pub fn honor_cache_control(mut self, on: bool) -> Self {
        self.honor_cache_control = on;
        self
    }

    /// Adds Redis as L2 for responses ([`ResponseCodec`]); `lock_ttl` turns on
    /// distributed single-flight. Build inside a tokio runtime.
    #[cfg(feature = "redis")]
    pub fn l2(
        mut self,
        tier: crate::backend::redis::RedisTier,
        lock_ttl: Option<Duration>,
    ) -> Self {
        self.l2 = Some((tier, lock_ttl));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<HttpCacheLayer, ConfigError> {
        if let Some(bad) = self.invalid_vary {
            return Err(ConfigError::new("vary", bad));
        }
        if self.max_body == 0 || self.max_body > (256 << 20) {
            return Err(ConfigError::out_of_range(
                "max_body_bytes",
                "[1, 268435456]",
                self.max_body,
            ));
        }
        let vary: Arc<[HeaderName]> = self.vary.into();
        let rules = Rules {
            vary: vary.clone(),
            honor_cache_control: self.honor_cache_control,
            negative: self.config.negative_ttl.is_some(),
            windows: StaleWindows {
                stale_while_revalidate: self.config.stale_while_revalidate,
                stale_if_error: self.config.effective_stale_if_error(),
                max_staleness: self.config.max_staleness,
            },
        };
        let key = HttpKey {
            vary,
            identity: self.identity,
            share_authenticated: self.share_authenticated,
        };
        let mut b = CacheLayer::builder(key)
            .config(self.config)
            .value_size(response_size)
            .directive(move |resp, d| http_directive(resp, d, &rules))
            .annotate(annotate);
        if let Some(c) = self.clock {
            b = b.clock(c);
        }
        #[cfg(feature = "redis")]
        if let Some((tier, lock)) = self.l2 {
            b = b.l2(tier, ResponseCodec);
            if let Some(ttl) = lock {
                b = b.distributed_single_flight(ttl);
            }
        }
        Ok(HttpCacheLayer {
            cache: b.build()?,
            max_body: self.max_body,
            invalidate_on_unsafe: self.invalidate_on_unsafe,
        })
    }
}

/// The HTTP-mode service: never fails; upstream errors are `502` responses.
#[derive(Clone)]
pub struct HttpCache<S> {
    inner: Cache<BufferBody<S>, HttpKey, CachedResponse>,
    invalidate_on_unsafe: bool,
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

// ---------------------------------------------------------------------------------------
// Invalidation by unsafe requests

/// Safe methods (RFC 9110 §9.2.1) do not change the resource: their answers invalidate
/// nothing. Every other method, known or not, is unsafe (RFC 9111 §4.4).
fn is_safe(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD || m == Method::OPTIONS || m == Method::TRACE
}

/// What an unsafe request invalidates once its answer is a 2xx or 3xx (RFC 9111 §4.4):
/// the GET and HEAD entries of its target URI and of same-origin `Location` and
/// `Content-Location` URIs, in every variant (Vary values, identities).
struct Invalidate {
    handle: CacheHandle<CachedResponse>,
    /// `scheme://authority` as in the keys: an invalidated URI must have this origin.
    origin: String,
    /// Escaped `path?query` of each URI to invalidate.
    paths: Vec<String>,
    /// Keys may be `METHOD origin path` exactly (no Vary header configured).
    exact: bool,
    /// Keys may continue with `|` (Vary headers or per-user identities).
    suffixed: bool,
}

impl Invalidate {
    fn new<S, B>(cache: &Cache<S, HttpKey, CachedResponse>, req: &Request<B>) -> Option<Self> {
        // CONNECT's authority-form target and OPTIONS' `*` name no cached resource.
        if !req.uri().path().starts_with('/') {
            return None;
        }
        // A malformed Host has no entries: its GETs bypass the cache.
        let (scheme, authority) = request_origin(req)?;
        let mut origin = String::with_capacity(32);
        push_origin(&mut origin, scheme, authority)?;
        let mut path = String::with_capacity(32);
        push_path(&mut path, req.uri());
        let key = &cache.shared.key;
        Some(Self {
            handle: cache.handle(),
            origin,
            paths: vec![path],
            exact: key.vary.is_empty(),
            suffixed: !key.vary.is_empty() || key.identity.is_some(),
        })
    }

    fn run(mut self, headers: &HeaderMap) {
        for value in headers
            .get_all(LOCATION)
            .iter()
            .chain(headers.get_all(CONTENT_LOCATION))
        {
            if let Some(path) = self.same_origin_path(value)
                && !self.paths.contains(&path)
            {
                self.paths.push(path);
            }
        }
        for path in &self.paths {
            for method in [Method::GET, Method::HEAD] {
                let mut key = format!("{method} {}{path}", self.origin);
                if self.exact {
                    self.handle.invalidate(&key);
                }
                if self.suffixed {
                    // Ends at the separator: `/a|` cannot reach the entries of `/ab`.
                    key.push('|');
                    self.handle.invalidate_prefix(&key);
                }
            }
        }
    }

    /// The escaped `path?query` of a `Location` / `Content-Location` value when it names
    /// a URI of the same origin: an absolute path, or an absolute URI whose normalised
    /// origin matches. Relative references (`item/2`, `//host/x`) are not resolved.
    fn same_origin_path(&self, value: &HeaderValue) -> Option<String> {
        let value = value.to_str().ok()?;
        let value = value.split_once('#').map_or(value, |(v, _)| v);
        let uri: Uri = if value.starts_with('/') && !value.starts_with("//") {
            value.parse().ok()?
        } else if value.contains("://") {
            let uri: Uri = value.parse().ok()?;
            let authority = uri.authority()?.as_str();
            let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
            let mut origin = String::with_capacity(self.origin.len());
            push_origin(&mut origin, uri.scheme_str()?, authority)?;
            if origin != self.origin {
                return None;
            }
            uri
        } else {
            return None;
        };
        let mut path = String::with_capacity(value.len());
        push_path(&mut path, &uri);
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vary: &[&'static str], req: Request<()>) -> Option<String> {
        let k = HttpKey {
            vary: vary
                .iter()
                .map(|v| HeaderName::from_static(v))
                .collect::<Vec<_>>()
                .into(),
            identity: None,
            share_authenticated: false,
        };
        k.key(&req)
    }

    #[test]
    fn keys_by_method_uri_and_vary_without_collisions() {
        let get = |uri: &str, accept: Option<&str>| {
            let mut b = Request::get(uri);
            if let Some(a) = accept {
                b = b.header("accept", a);
            }
            b.body(()).unwrap()
        };
        assert_eq!(
            key(&["accept"], get("/a?x=1", Some("text/html"))).unwrap(),
            "GET http:///a?x=1|accept=text/html",
            "no Host and no authority: an empty authority"
        );
        assert_ne!(
            key(&["accept"], get("/a", Some("x|accept=y"))),
            key(&["accept"], get("/a|accept=x", Some("y")))
        );
        assert!(key(&[], Request::post("/a").body(()).unwrap()).is_none());
        let authed = Request::get("/a")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        assert!(key(&[], authed).is_none(), "credentials bypass by default");
        let no_store = Request::get("/a")
            .header("cache-control", "no-store")
            .body(())
            .unwrap();
        assert!(key(&[], no_store).is_none());
    }

    fn hosted(uri: &str, hosts: &[&str]) -> Option<String> {
        let mut b = Request::get(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        key(&["accept"], b.body(()).unwrap())
    }

    #[test]
    fn keys_by_scheme_and_authority() {
        let a = hosted("/p?q=1", &["a.example"]).unwrap();
        assert_eq!(a, "GET http://a.example/p?q=1|accept=");
        assert_ne!(Some(&a), hosted("/p?q=1", &["b.example"]).as_ref());
        assert_ne!(Some(&a), hosted("/p?q=1", &[]).as_ref());
        // Normalised: host case, default and empty ports (RFC 9110 §4.2.3).
        for same in ["A.Example", "a.example:80", "a.example:", "a.example:0080"] {
            assert_eq!(hosted("/p?q=1", &[same]).as_ref(), Some(&a), "{same}");
        }
        assert_eq!(
            hosted("/p", &["a.example:8080"]).unwrap(),
            "GET http://a.example:8080/p|accept="
        );
        // The URI's authority (absolute form, HTTP/2 `:authority`) wins over Host.
        assert_eq!(
            hosted("http://a.example/p?q=1", &["b.example"]).as_ref(),
            Some(&a)
        );
        assert_eq!(
            hosted("https://User@A.example:443/p", &[]).unwrap(),
            "GET https://a.example/p|accept="
        );
        assert_eq!(
            hosted("https://a.example:80/p", &[]).unwrap(),
            "GET https://a.example:80/p|accept="
        );
        assert_eq!(
            hosted("/p", &["[::1]:8080"]).unwrap(),
            "GET http://[::1]:8080/p|accept="
        );
        // Malformed Hosts bypass instead of forging another request's key.
        for bad in [
            "a.example/p",
            "a.example?",
            "a|b",
            "a.example:x",
            "a.example:99999",
            "u@a.example",
            "a b",
            "[::1",
            "[::1]x",
        ] {
            assert_eq!(hosted("/q", &[bad]), None, "{bad}");
        }
        assert_eq!(hosted("/p", &["a.example", "b.example"]), None);
        // `%` is escaped in hosts as everywhere: `a%7Cb` is not `a|b`.
        assert_eq!(
            hosted("/p", &["a%7Cb"]).unwrap(),
            "GET http://a%257cb/p|accept=",
            "escaped after lowercasing"
        );
    }

    /// Reads a key back into (host, path and query, accept): a left inverse, so the key
    /// is injective.
    fn decode_key(key: &str) -> (String, String, String) {
        fn unescape(s: &str) -> String {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find('%') {
                out.push_str(&rest[..i]);
                let (c, n) = match &rest[i..] {
                    r if r.starts_with("%25") => ('%', 3),
                    r if r.starts_with("%7C") => ('|', 3),
                    _ => panic!("unescaped % in {s:?}"),
                };
                out.push(c);
                rest = &rest[i + n..];
            }
            out.push_str(rest);
            out
        }
        let target = key.strip_prefix("GET http://").unwrap();
        let (target, accept) = target.split_once("|accept=").unwrap();
        assert!(!accept.contains('|'), "{key}");
        let slash = target.find('/').unwrap();
        let (host, path) = target.split_at(slash);
        (unescape(host), unescape(path), unescape(accept))
    }

    proptest::proptest! {
        #[test]
        fn keys_are_injective_and_hosts_cannot_forge_them(
            host in "[a-z0-9.%|/?#@ -]{0,8}",
            path in "/[a-z0-9%|=&/?]{0,8}",
            accept in "[a-z0-9|=%@,]{0,6}",
        ) {
            let Ok(req) = Request::get(path.as_str())
                .header("host", host.as_str())
                .header("accept", accept.as_str())
                .body(())
            else {
                return Ok(());
            };
            let valid = host.bytes().all(is_host_byte);
            match key(&["accept"], req) {
                None => proptest::prop_assert!(!valid, "{host:?} is a valid host"),
                Some(k) => {
                    proptest::prop_assert!(valid, "{host:?} is not a valid host");
                    proptest::prop_assert_eq!(decode_key(&k), (host, path, accept));
                }
            }
        }
    }

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

    #[test]
    fn unsafe_requests_invalidate_their_uri_and_same_origin_locations() {
        let layer = HttpCacheLayer::builder().vary(["accept"]).build().unwrap();
        let svc = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(CachedBody::default()))
        }));
        let post = |uri: &str| {
            Request::post(uri)
                .header("host", "A.example:80")
                .body(())
                .unwrap()
        };
        let inv = Invalidate::new(&svc.inner, &post("/items?x=%7C|")).unwrap();
        assert_eq!(inv.origin, "http://a.example");
        assert_eq!(inv.paths, ["/items?x=%257C%7C"]);
        assert!(inv.suffixed && !inv.exact);
        let loc = |v: &str| inv.same_origin_path(&HeaderValue::from_str(v).unwrap());
        assert_eq!(loc("/items/7#top").as_deref(), Some("/items/7"));
        assert_eq!(
            loc("http://a.EXAMPLE:80/items/7").as_deref(),
            Some("/items/7")
        );
        for other in [
            "https://a.example/items/7",
            "http://b.example/items/7",
            "http://a.example:8080/items/7",
            "//a.example/items/7",
            "items/7",
            "",
        ] {
            assert_eq!(loc(other), None, "{other}");
        }
        assert!(
            Invalidate::new(
                &svc.inner,
                &Request::connect("a.example:443").body(()).unwrap()
            )
            .is_none()
        );
        let mut two_hosts = post("/a");
        two_hosts
            .headers_mut()
            .append(HOST, HeaderValue::from_static("b.example"));
        assert!(Invalidate::new(&svc.inner, &two_hosts).is_none());
        for (m, safe) in [
            (Method::GET, true),
            (Method::HEAD, true),
            (Method::OPTIONS, true),
            (Method::TRACE, true),
            (Method::POST, false),
            (Method::PUT, false),
            (Method::DELETE, false),
            (Method::PATCH, false),
            (Method::from_bytes(b"PURGE").unwrap(), false),
        ] {
            assert_eq!(is_safe(&m), safe, "{m}");
        }
    }

    fn directive(resp: Response<CachedBody>) -> Directive {
        let rules = Rules {
            vary: Arc::from(vec![HeaderName::from_static("accept")]),
            honor_cache_control: true,
            negative: false,
            windows: StaleWindows::NONE,
        };
        let base = Directive {
            action: StoreAction::Store,
            ttl: None,
            windows: None,
            negative: false,
            shared: true,
            tags: Vec::new(),
        };
        http_directive(&resp, base, &rules)
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> Response<CachedBody> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(CachedBody::full("x")).unwrap()
    }

    #[cfg(feature = "redis")]
    #[test]
    fn response_codec_round_trips_and_rejects_garbage() {
        use crate::codec::Codec;
        let r = resp(
            203,
            &[("cache-control", "max-age=5"), ("x-a", "1"), ("x-a", "2")],
        );
        let bytes = ResponseCodec.encode(&r).unwrap();
        let back = ResponseCodec.decode(&bytes).unwrap();
        assert_eq!(back.status(), 203);
        assert_eq!(back.headers(), r.headers());
        assert_eq!(back.body().bytes().unwrap(), "x");
        for cut in 0..bytes.len() {
            let _ = ResponseCodec.decode(&bytes.slice(..cut));
        }
        assert!(
            ResponseCodec
                .decode(&Bytes::from_static(b"\xff\xff"))
                .is_none()
        );
    }

    #[test]
    fn bad_builder_settings_name_their_field() {
        let e = HttpCacheLayer::builder()
            .vary(["ok", "bad header"])
            .build()
            .unwrap_err();
        assert_eq!(e.field, "vary");
        let e = HttpCacheLayer::builder()
            .max_body_bytes(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "max_body_bytes");
    }

    #[test]
    fn storage_rules() {
        let d = directive(resp(
            200,
            &[("cache-control", "max-age=30, stale-while-revalidate=5")],
        ));
        assert_eq!(d.action, StoreAction::Store);
        assert_eq!(d.ttl, Some(Duration::from_secs(30)));
        assert_eq!(
            d.windows.unwrap().stale_while_revalidate,
            Duration::from_secs(5)
        );
        assert_eq!(
            directive(resp(200, &[("cache-control", "max-age=30, s-maxage=7")])).ttl,
            Some(Duration::from_secs(7))
        );
        for (status, headers, action) in [
            (
                200,
                vec![("cache-control", "private")],
                StoreAction::Private,
            ),
            (
                200,
                vec![("cache-control", "no-store")],
                StoreAction::Private,
            ),
            (200, vec![("set-cookie", "a=b")], StoreAction::Private),
            (200, vec![("cache-control", "no-cache")], StoreAction::Skip),
            (200, vec![("cache-control", "max-age=0")], StoreAction::Skip),
            (200, vec![("vary", "accept-language")], StoreAction::Skip),
            (200, vec![("vary", "*")], StoreAction::Skip),
            (200, vec![("vary", "Accept")], StoreAction::Store),
            (503, vec![], StoreAction::Failure),
            (404, vec![], StoreAction::Skip),
            (201, vec![], StoreAction::Skip),
        ] {
            assert_eq!(
                directive(resp(status, &headers)).action,
                action,
                "{status} {headers:?}"
            );
        }
        let huge = directive(resp(
            200,
            &[("cache-control", "max-age=99999999999999999999")],
        ));
        assert_eq!(
            huge.action,
            StoreAction::Store,
            "unparsable max-age falls back to the default TTL"
        );
    }
}
