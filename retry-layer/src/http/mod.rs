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
//! [`RetryStopped`](crate::RetryStopped) (reason
//! [`StopReason::NotReplayable`](crate::StopReason::NotReplayable)).
//!
//! # Answers
//!
//! - 5xx (but 501 and 505), 408, 429 and transport errors or timeouts are retried with
//!   backoff; other answers are returned (reliability-core's `HttpClassifier`).
//! - `Retry-After` on a failed answer, as delta-seconds or an HTTP-date, sets the least
//!   wait; it is clamped to `max_retry_after` (60 s by default); garbage is ignored. The
//!   parsing is reliability-core's `parse_retry_after`, shared by every layer.
//! - A response returned after retrying stopped carries
//!   [`RetryStopped`](crate::RetryStopped) in its extensions (attempts made, and why it
//!   stopped, e.g. an empty budget).
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

mod answer;
mod buffer;
mod policy;
mod replay;

use std::fmt;

use http::Request;
use reliability_core::classify::HttpClassifier;
use reliability_core::error::ConfigError;
use reliability_core::idempotent;
use tower_layer::Layer;

pub use self::answer::{AnswerErrors, AnswerErrorsLayer, AnswerFuture};
pub use self::buffer::{BufferFuture, BufferRequest};
pub use self::policy::{HttpPolicy, Idempotent};
pub use self::replay::{PrefixedBody, ReplayBody};
use crate::RetryConfig;
use crate::layer::{RetryBuilder, RetryLayer};
use crate::metrics::RetryHandle;
use crate::service::Retry;

/// The header that makes a non-idempotent request safe to repeat (IETF
/// draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: &str = idempotent::IDEMPOTENCY_KEY;

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
    // Core's rule, the one the hedge layer follows too; this crate's own marker counts as
    // core's `ReplayNonIdempotent`.
    idempotent::may_replay(
        req,
        layer_opt_in || req.extensions().get::<RetryNonIdempotent>().is_some(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

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
