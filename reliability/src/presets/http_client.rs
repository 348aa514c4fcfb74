//! [`Preset::http_client`]: the preset's stack around a buffered HTTP client, with one
//! breaker per host, an HTTP cache key, and eviction after unsafe requests.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cache_layer::CacheHandle;
use cache_layer::http::{add_validators, forbids_shared_storage, freshen, is_conditional};
use hedge_layer::HedgeLayer;
use hedge_layer::deadline::DeadlineLayer;
use reliability_core::classify::HttpClassifier;
use reliability_core::error::ConfigError;
use retry_layer::http::Idempotent;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder};

use super::{Breakers, Handles, Preset, ReliableService};

/// A stack around an HTTP client (see [`Preset::http_client`]).
pub type HttpReliableClient = ReliableService<http::Request<Bytes>, http::Response<Bytes>>;

impl Preset {
    /// One line for an HTTP client: wraps a buffered client (hyper-util's
    /// [`HttpClient`](crate::client::HttpClient), [`ReqwestClient`](crate::client), or any
    /// `Service<http::Request<Bytes>, Response = http::Response<Bytes>>`) in this
    /// preset's stack.
    ///
    /// - `GET` and `HEAD` requests are cached by method and URI; requests carrying
    ///   `Authorization` or `Cookie` are never cached (one user's answer is not served to
    ///   another), nor are range requests; answers marked `Cache-Control: no-store` or
    ///   `private`, partial (206) answers and answers with `Vary` are not stored; only 2xx
    ///   answers are stored, and a 5xx or 429 answer counts as a failure, so a
    ///   stale copy is served instead where one exists.
    /// - A stale answer that carries a validator (`ETag`, `Last-Modified`) is revalidated,
    ///   not fetched again: the cache's call upstream carries `If-None-Match` /
    ///   `If-Modified-Since`, and a `304 Not Modified` refreshes the held answer (with the
    ///   304's headers, RFC 9111 §4.3.4) without a body transfer. APIs that spend no quota
    ///   on 304s (GitHub's REST API, for one) are not charged for unchanged answers.
    /// - Statuses are judged by reliability-core's `HttpClassifier` (5xx, 429, 408 and
    ///   transport errors fail), and `Retry-After` is honoured.
    /// - One circuit breaker **per host** (a bounded registry): one failing host does not
    ///   open the circuit of another.
    /// - Idempotent reads that miss the cache are hedged (`hedge`: by default CEX and DEX
    ///   after their p95, within 10 % of requests; social not at all): the first good
    ///   answer wins and the other copy is cancelled. `POST` is never hedged.
    /// - A deadline, outermost: the request's own `Deadline` (in its extensions) or the
    ///   preset's `deadline`, whichever comes first; no retry starts after it and the call
    ///   answers `DeadlineExceeded` (504 through the core mapping) when it passes.
    pub fn http_client<S>(self, client: S) -> Result<HttpReliableClient, ConfigError>
    where
        S: Service<http::Request<Bytes>, Response = http::Response<Bytes>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
    {
        let classifier = HttpClassifier::new();
        // `ClassifierPolicy` clones any request, POST included: `Idempotent` applies the
        // HTTP rule (`retry_layer::http::may_replay`).
        let (parts, breaker) = self.parts_with(classifier, Idempotent::new)?;
        let cache = self.cache_layer(http_cache_key, |b| {
            // The key is method and URI: an answer that varies on request headers, or
            // holds part of the resource, is not stored.
            b.store_if(|res: &http::Response<Bytes>| {
                res.status().is_success()
                    && res.status() != http::StatusCode::PARTIAL_CONTENT
                    && !res.headers().contains_key(http::header::VARY)
                    && !forbids_shared_storage(res.headers())
            })
            .failure_when(|res: &http::Response<Bytes>| {
                res.status().is_server_error()
                    || res.status() == http::StatusCode::TOO_MANY_REQUESTS
            })
        })?;
        let cache_handle = cache.handle();
        let breaker = breaker
            .build_per_key(|req: &http::Request<Bytes>| {
                req.uri().host().unwrap_or_default().to_owned()
            })
            .map_err(|e| e.within("breaker"))?;
        let breakers = Breakers::PerHost(breaker.registry().clone());
        let below = self.below_cache(client, &parts, classifier, breaker);
        let hedge = HedgeLayer::builder(self.name.clone())
            .config(self.settings.hedge.clone())
            .http()
            .build()
            .map_err(|e| e.within("hedge"))?;
        let hedger = hedge.hedger();
        let deadline = match self.settings.deadline {
            Some(total) => DeadlineLayer::new(total),
            None => DeadlineLayer::enforce_only(),
        };
        let service = BoxCloneSyncService::new(
            deadline.layer(InvalidateOnUnsafe {
                inner: ServiceBuilder::new()
                    .layer(cache)
                    .layer_fn({
                        let cache = cache_handle.clone();
                        move |inner| Revalidating {
                            inner,
                            cache: cache.clone(),
                        }
                    })
                    .layer(hedge)
                    .service(below),
                cache: cache_handle.clone(),
            }),
        );
        let handles = Handles {
            hedger: Some(hedger),
            ..self.into_handles(parts, breakers, Some(cache_handle))
        };
        Ok(ReliableService::new(service, Arc::new(handles)))
    }
}

/// The cache key of an HTTP request: method and URI for `GET`/`HEAD` without
/// credentials; `None` (bypass) otherwise.
fn http_cache_key(req: &http::Request<Bytes>) -> Option<String> {
    let cacheable = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    let headers = req.headers();
    let credentialed = headers.contains_key(http::header::AUTHORIZATION)
        || headers.contains_key(http::header::COOKIE);
    // A part of the resource is not the resource: range requests are not cached.
    let partial =
        headers.contains_key(http::header::RANGE) || headers.contains_key(http::header::IF_RANGE);
    (cacheable && !credentialed && !partial).then(|| format!("{} {}", req.method(), req.uri()))
}

/// The inner call's own future, or one that does something with its answer.
type Either<F> = futures_util::future::Either<
    F,
    futures_util::future::BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>,
>;

/// Between the cache and the upstream: a `GET` whose answer the cache still holds
/// (stale, or due for an early refresh) goes out with that answer's validators, and a
/// `304 Not Modified` comes back up as the held answer freshened by the 304's headers,
/// which the cache then stores as a new answer. A caller's own conditional request goes
/// out as it is.
#[derive(Clone)]
struct Revalidating<S> {
    inner: S,
    cache: CacheHandle<http::Response<Bytes>>,
}

impl<S> Service<http::Request<Bytes>> for Revalidating<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        use futures_util::future::Either;
        let held = (req.method() == http::Method::GET && !is_conditional(req.headers()))
            .then(|| http_cache_key(&req))
            .flatten()
            .and_then(|key| self.cache.peek_stale(&key))
            .filter(|held| add_validators(req.headers_mut(), held.headers()));
        let Some(held) = held else {
            return Either::Left(self.inner.call(req));
        };
        let future = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let res = future.await?;
            if res.status() == http::StatusCode::NOT_MODIFIED {
                return Ok(freshen(&held, &res));
            }
            Ok(res)
        }))
    }
}

/// Evicts the cached `GET`/`HEAD` answers of a URI when an unsafe request to it succeeds
/// (RFC 9111 §4.4): after a `PUT /orders/7` the next `GET /orders/7` reaches the upstream.
#[derive(Clone)]
struct InvalidateOnUnsafe<S> {
    inner: S,
    cache: CacheHandle<http::Response<Bytes>>,
}

impl<S> Service<http::Request<Bytes>> for InvalidateOnUnsafe<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        use futures_util::future::Either;
        if req.method().is_safe() {
            return Either::Left(self.inner.call(req));
        }
        let keys = [http::Method::GET, http::Method::HEAD].map(|m| format!("{m} {}", req.uri()));
        let cache = self.cache.clone();
        let future = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let res = future.await?;
            if res.status().as_u16() < 400 {
                for key in &keys {
                    cache.invalidate(key);
                }
            }
            Ok(res)
        }))
    }
}
