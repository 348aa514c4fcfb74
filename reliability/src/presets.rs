//! Preset stacks for CEX, DEX and social data sources.
//!
//! A preset is a builder: [`cex`], [`dex`] and [`social`] start from the defaults of
//! MISSION.md's tables (see [`SourceSettings::preset`]); every value can be changed in
//! code ([`Preset::configure`]), or come from a loaded [`Settings`]
//! ([`Preset::from_settings`]). [`Preset::wrap`] then builds the stack around a service.
//!
//! # The order of the stack
//!
//! From the caller inwards:
//!
//! ```text
//! cache → retry → circuit breaker → rate limit (client, waits) → SLA → attempt timeout → upstream
//! ```
//!
//! - **Cache outermost**: a hit costs nothing downstream: no quota, no breaker permit, no
//!   retry budget. Stale-while-revalidate and stale-if-error answer while the layers below
//!   struggle, and single-flight turns N misses into one trip down the stack.
//! - **Retry outside the breaker**: each attempt asks the breaker, so an attempt made
//!   while the circuit is open fails fast with `CircuitOpen`, which is marked "do not
//!   retry" and ends the retrying at once.
//! - **Breaker outside the rate limit**: an open circuit does not wait for quota.
//! - **Rate limit around each attempt**: the upstream counts every call, retries included.
//! - **SLA around each attempt, inside the rate limit**: the monitor measures the
//!   upstream (its latency and its failures), not our own waiting for quota or for a
//!   backoff. This differs from "SLA outermost", which would measure cache hits and hide
//!   a failing upstream behind a warm cache; the dashboard should show the source.
//! - **Timeout innermost**: one slow attempt cannot eat the whole retry schedule, and the
//!   SLA monitor sees a timeout as a failure at its true latency.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reliability::presets;
//! use tower::{service_fn, BoxError, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let upstream = service_fn(|symbol: String| async move {
//!     Ok::<_, BoxError>(format!("order book of {symbol}"))
//! });
//! let client = presets::cex("binance")
//!     .configure(|s| s.breaker.open_wait = Duration::from_secs(10))
//!     .wrap(upstream, |symbol: &String| Some(symbol.clone()))?;
//!
//! assert_eq!(client.clone().oneshot("BTC-USDT".into()).await?, "order book of BTC-USDT");
//! assert_eq!(client.clone().oneshot("BTC-USDT".into()).await?, "order book of BTC-USDT");
//! assert_eq!(client.handles().cache_hits(), 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use breaker_layer::{Breaker, BreakerRegistry, CircuitBreakerBuilder, CircuitBreakerLayer};
use bytes::Bytes;
use cache_layer::http::HttpCacheLayer;
use cache_layer::{CacheHandle, CacheKey, CacheLayer, CacheLayerBuilder};
use ratelimit_layer::key::key_fn;
use ratelimit_layer::{Quota, RateLimitLayer, RateLimiter, RedisBackend, Subject};
use reliability_core::classify::{Classify, ErrorClassifier, HttpClassifier};
use reliability_core::clock::SharedClock;
use reliability_core::error::ConfigError;
use reliability_core::health::{
    BreakerState, ComponentDetail, ComponentHealth, HealthSource, HealthStatus,
};
use retry_layer::backoff::Backoff;
use retry_layer::budget::{BudgetConfig, RatioBudgetConfig};
use retry_layer::http::Idempotent;
use retry_layer::{ClassifierPolicy, RetryBuilder, RetryHandle, RetryLayer, RetryPolicy};
use sla_layer::{SlaLayer, SlaMonitor, SlaRegistry};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use crate::config::{Settings, SourceKind, SourceSettings};

/// The CEX preset (order books, prices): fast and strict.
pub fn cex(name: impl Into<String>) -> Preset {
    Preset::new(SourceKind::Cex, name)
}

/// The DEX-aggregator preset (quotes, liquidity): slower, more tolerant.
pub fn dex(name: impl Into<String>) -> Preset {
    Preset::new(SourceKind::Dex, name)
}

/// The social-API preset (search, timelines): slow, tight quotas, long TTLs.
pub fn social(name: impl Into<String>) -> Preset {
    Preset::new(SourceKind::Social, name)
}

/// A preset stack, being configured.
#[derive(Clone)]
#[must_use]
pub struct Preset {
    kind: SourceKind,
    name: String,
    settings: SourceSettings,
    clock: Option<SharedClock>,
    registry: Option<SlaRegistry>,
    seed: Option<u64>,
    limiter_backend: Option<RedisBackend>,
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preset")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Preset {
    /// A preset of `kind` named `name` (the source, e.g. `binance`), with the defaults.
    pub fn new(kind: SourceKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            settings: SourceSettings::preset(kind),
            clock: None,
            registry: None,
            seed: None,
            limiter_backend: None,
        }
    }

    /// The settings of this kind from loaded [`Settings`] (file and environment).
    pub fn from_settings(mut self, settings: &Settings) -> Self {
        self.settings = settings.source(self.kind).clone();
        self
    }

    /// Replaces every setting.
    pub fn settings(mut self, settings: SourceSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Changes settings in code (applied last: code beats file and environment).
    pub fn configure(mut self, f: impl FnOnce(&mut SourceSettings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// The clock of every layer (tests pass `TokioClock` or a `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Registers the SLA monitor in `registry` (for the admin router and Prometheus).
    pub fn registry(mut self, registry: &SlaRegistry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Seeds the retry jitter, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Shares the client-side quota through Redis (a node or a cluster), so every
    /// process calling this upstream respects one quota together. Without it the quota
    /// is per process.
    pub fn shared_quota(mut self, backend: RedisBackend) -> Self {
        self.limiter_backend = Some(backend);
        self
    }

    /// The settings that [`wrap`](Self::wrap) will use.
    pub fn effective(&self) -> &SourceSettings {
        &self.settings
    }

    /// The kind of source.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Builds the stack around `inner`, caching under `key(&request)` (`None` bypasses
    /// the cache), judging outcomes with reliability-core's `ErrorClassifier`.
    pub fn wrap<S, Req, K>(
        self,
        inner: S,
        key: K,
    ) -> Result<ReliableService<Req, S::Response>, ConfigError>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        S::Response: Clone + Send + Sync + 'static,
        Req: Clone + Send + Sync + 'static,
        K: CacheKey<Req> + 'static,
    {
        self.wrap_with(inner, key, ErrorClassifier)
    }

    /// As [`wrap`](Self::wrap), judging outcomes with `classifier` (HTTP statuses, gRPC
    /// codes, or a rule of your own).
    pub fn wrap_with<S, Req, K, C>(
        self,
        inner: S,
        key: K,
        classifier: C,
    ) -> Result<ReliableService<Req, S::Response>, ConfigError>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        S::Response: Clone + Send + Sync + 'static,
        Req: Clone + Send + Sync + 'static,
        K: CacheKey<Req> + 'static,
        C: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
    {
        let (parts, breaker) = self.parts(classifier.clone())?;
        let cache = self.cache_layer(key, |b| b)?;
        let cache_handle = cache.handle();
        let breaker = breaker.build().map_err(|e| e.within("breaker"))?;
        let breakers = Breakers::One(breaker.breaker().clone());
        let below = self.below_cache(inner, &parts, classifier, breaker);
        let service = BoxCloneSyncService::new(ServiceBuilder::new().layer(cache).service(below));
        Ok(self.finish(service, parts, breakers, Some(cache_handle)))
    }

    /// One line for an HTTP client: wraps a buffered client (hyper-util's
    /// [`HttpClient`](crate::client::HttpClient), [`ReqwestClient`](crate::client), or any
    /// `Service<http::Request<Bytes>, Response = http::Response<Bytes>>`) in this
    /// preset's stack.
    ///
    /// - `GET` and `HEAD` requests are cached by method and URI; requests carrying
    ///   `Authorization` or `Cookie` are never cached (one user's answer is not served to
    ///   another); answers marked `Cache-Control: no-store` or `private` are not stored;
    ///   only 2xx answers are stored, and a 5xx or 429 answer counts as a failure, so a
    ///   stale copy is served instead where one exists.
    /// - Statuses are judged by reliability-core's `HttpClassifier` (5xx, 429, 408 and
    ///   transport errors fail), and `Retry-After` is honoured.
    /// - One circuit breaker **per host** (a bounded registry): one failing host does not
    ///   open the circuit of another.
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
            b.store_if(|res: &http::Response<Bytes>| {
                res.status().is_success() && !forbids_shared_storage(res.headers())
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
        let service = BoxCloneSyncService::new(InvalidateOnUnsafe {
            inner: ServiceBuilder::new().layer(cache).service(below),
            cache: cache_handle.clone(),
        });
        Ok(self.finish(service, parts, breakers, Some(cache_handle)))
    }

    /// One line for a gRPC client: wraps a tonic [`Channel`](tonic::transport::Channel) in
    /// this preset's stack, for `tonic::client::Grpc::new` or a generated client's `new`
    /// (feature `grpc`).
    ///
    /// Retry (gRPC codes, pushback honoured, every call treated as safe to repeat) → one
    /// circuit breaker for the channel (open: `UNAVAILABLE` at once, locally) → client
    /// quota (key: the preset's name) → SLA → attempt timeout (`DEADLINE_EXCEEDED`) →
    /// channel. Nothing is cached. See [`crate::grpc`] for the details.
    #[cfg(feature = "grpc")]
    pub fn grpc_client(
        self,
        channel: tonic::transport::Channel,
    ) -> Result<crate::grpc::GrpcReliableClient, ConfigError> {
        use reliability_core::classify::GrpcClassifier;
        use retry_layer::grpc::GrpcRetryLayer;

        let (parts, breaker) = self.parts_but_retry(GrpcClassifier)?;
        let retry = self
            .tune_retry(GrpcRetryLayer::grpc_builder())
            .build()
            .map_err(|e| e.within("retry"))?;
        let parts = parts.with_retry(retry);
        let breaker = breaker.build().map_err(|e| e.within("breaker"))?;
        let breakers = Breakers::One(breaker.breaker().clone());
        let name = Subject::new(self.name.clone());
        let service = ServiceBuilder::new()
            .map_err(crate::grpc::into_status)
            .layer(parts.retry.clone())
            .map_err(Into::<BoxError>::into)
            .layer(breaker)
            .layer(
                RateLimitLayer::new(parts.limiter.clone())
                    .key(key_fn(move |_: &http::Request<tonic::body::Body>| {
                        Some(name.clone())
                    }))
                    .wait_up_to(self.settings.rate_limit.max_wait),
            )
            .layer(SlaLayer::new(parts.monitor.clone()).classifier(GrpcClassifier))
            .timeout(self.settings.attempt_timeout)
            .service(channel.map_err(Into::<BoxError>::into));
        let service = BoxCloneSyncService::new(service);
        let handles = self.into_handles::<(), _>(parts, breakers, None);
        Ok(crate::grpc::GrpcReliableClient::new(
            service,
            Arc::new(handles),
        ))
    }

    /// The cache layer of this preset's settings, with `customize` applied.
    fn cache_layer<Req, V, K>(
        &self,
        key: K,
        customize: impl FnOnce(CacheLayerBuilder<K, V>) -> CacheLayerBuilder<K, V>,
    ) -> Result<CacheLayer<K, V>, ConfigError>
    where
        K: CacheKey<Req>,
        V: Clone + Send + Sync + 'static,
    {
        let c = &self.settings.cache;
        let mut cache = CacheLayer::builder(key)
            .name(self.name.clone())
            .ttl(c.ttl)
            .adaptive_ttl(c.min_ttl, c.max_ttl)
            .stale_while_revalidate(c.stale_while_revalidate)
            .stale_if_error(c.stale_if_error)
            .max_entries(c.max_entries);
        if let Some(clock) = &self.clock {
            cache = cache.clock(clock.clone());
        }
        customize(cache).build().map_err(|e| e.within("cache"))
    }

    /// The stack without its cache, for use behind a cache of its own (an HTTP server's
    /// [`http_cache_layer`](Self::http_cache_layer), which keys by URI and writes
    /// `Cache-Status`).
    pub fn wrap_uncached<S, Req, C>(
        self,
        inner: S,
        classifier: C,
    ) -> Result<ReliableService<Req, S::Response>, ConfigError>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        S::Response: Clone + Send + Sync + 'static,
        Req: Clone + Send + Sync + 'static,
        C: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
    {
        let (parts, breaker) = self.parts(classifier.clone())?;
        let breaker = breaker.build().map_err(|e| e.within("breaker"))?;
        let breakers = Breakers::One(breaker.breaker().clone());
        let service = self.below_cache(inner, &parts, classifier, breaker);
        Ok(self.finish(service, parts, breakers, None))
    }

    /// An HTTP response cache with this preset's TTL, stale-while-revalidate and
    /// stale-if-error windows and size, for the routes of a server (it writes RFC 9211
    /// `Cache-Status` and never shares credentialed answers).
    pub fn http_cache_layer(&self) -> Result<HttpCacheLayer, ConfigError> {
        self.settings.validate()?;
        let c = &self.settings.cache;
        let mut builder = HttpCacheLayer::builder()
            .name(self.name.clone())
            .ttl(c.ttl)
            .stale_while_revalidate(c.stale_while_revalidate)
            .stale_if_error(c.stale_if_error)
            .max_entries(c.max_entries);
        if let Some(clock) = &self.clock {
            builder = builder.clock(clock.clone());
        }
        builder.build().map_err(|e| e.within("cache"))
    }

    /// Retry → `breaker` → rate limit → SLA → timeout → `inner`, boxed.
    fn below_cache<S, Req, C, P, L>(
        &self,
        inner: S,
        parts: &Parts<RetryLayer<P>>,
        classifier: C,
        breaker: L,
    ) -> BoxCloneSyncService<Req, S::Response, BoxError>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        S::Response: Clone + Send + Sync + 'static,
        Req: Clone + Send + Sync + 'static,
        C: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
        P: RetryPolicy<Req, S::Response, BoxError>,
        L: Layer<BoxCloneSyncService<Req, S::Response, BoxError>>,
        L::Service: Service<Req, Response = S::Response> + Clone + Send + Sync + 'static,
        <L::Service as Service<Req>>::Future: Send + 'static,
        <L::Service as Service<Req>>::Error: Into<BoxError> + 'static,
    {
        let name = Subject::new(self.name.clone());
        let lower = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(
                    RateLimitLayer::new(parts.limiter.clone())
                        .key(key_fn(move |_: &Req| Some(name.clone())))
                        .wait_up_to(self.settings.rate_limit.max_wait),
                )
                .layer(SlaLayer::new(parts.monitor.clone()).classifier(classifier))
                .timeout(self.settings.attempt_timeout)
                .service(inner.map_err(Into::<BoxError>::into)),
        );
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(parts.retry.clone())
                .map_err(Into::<BoxError>::into)
                .layer(breaker)
                .service(lower),
        )
    }

    fn finish<Req, V, R: RetryParts>(
        self,
        service: BoxCloneSyncService<Req, V, BoxError>,
        parts: Parts<R>,
        breakers: Breakers,
        cache: Option<CacheHandle<V>>,
    ) -> ReliableService<Req, V> {
        ReliableService {
            service,
            handles: Arc::new(self.into_handles(parts, breakers, cache)),
        }
    }

    fn into_handles<W, R: RetryParts>(
        self,
        parts: Parts<R>,
        breakers: Breakers,
        cache: Option<CacheHandle<W>>,
    ) -> Handles<W> {
        Handles {
            kind: self.kind,
            name: self.name,
            monitor: parts.monitor,
            breakers,
            retry: parts.retry.retry_handle(),
            limiter: parts.limiter,
            cache,
            trips: parts.trips,
        }
    }

    /// The layers below the cache, built from the settings.
    #[allow(clippy::type_complexity)]
    fn parts<C>(
        &self,
        classifier: C,
    ) -> Result<
        (
            Parts<RetryLayer<ClassifierPolicy<C>>>,
            CircuitBreakerBuilder<C>,
        ),
        ConfigError,
    >
    where
        C: Clone + Send + Sync + 'static,
    {
        self.parts_with(classifier, |policy| policy)
    }

    /// [`Self::parts`] with the retry policy wrapped by `wrap` (HTTP: `Idempotent`).
    #[allow(clippy::type_complexity)]
    fn parts_with<C, P>(
        &self,
        classifier: C,
        wrap: impl FnOnce(ClassifierPolicy<C>) -> P,
    ) -> Result<(Parts<RetryLayer<P>>, CircuitBreakerBuilder<C>), ConfigError>
    where
        C: Clone + Send + Sync + 'static,
    {
        let (parts, breaker) = self.parts_but_retry(classifier.clone())?;
        let retry = self
            .tune_retry(RetryLayer::builder().policy(wrap(ClassifierPolicy::new(classifier))))
            .build()
            .map_err(|e| e.within("retry"))?;
        Ok((parts.with_retry(retry), breaker))
    }

    /// The preset's attempts, backoff, budget and seed on a retry builder.
    fn tune_retry<P, M>(&self, builder: RetryBuilder<P, M>) -> RetryBuilder<P, M> {
        let s = &self.settings.retry;
        let builder = builder
            .name(self.name.clone())
            .max_attempts(s.max_attempts)
            .backoff(Backoff::exponential(s.base, s.cap, s.jitter))
            .budget(BudgetConfig::Ratio(RatioBudgetConfig {
                ratio: s.budget_ratio,
                ..RatioBudgetConfig::default()
            }));
        match self.seed {
            Some(seed) => builder.seed(seed),
            None => builder,
        }
    }

    /// The SLA monitor, breaker builder and limiter of the settings (no retry layer yet).
    fn parts_but_retry<C>(
        &self,
        classifier: C,
    ) -> Result<(Parts<()>, CircuitBreakerBuilder<C>), ConfigError>
    where
        C: Clone + Send + Sync + 'static,
    {
        self.settings.validate()?;
        let s = &self.settings;

        let mut monitor = SlaMonitor::builder(self.name.clone())
            .p95(s.sla.p95)
            .p99(s.sla.p99)
            .min_success_rate(s.sla.min_success_rate)
            .max_consecutive_failures(u64::from(s.sla.max_consecutive_failures))
            .count_window(s.sla.window as usize)
            .time_window(s.sla.time_window, time_interval(s.sla.time_window))
            .status_window(s.sla.status_window);
        if let Some(clock) = &self.clock {
            monitor = monitor.clock(clock.clone());
        }
        let monitor = monitor.build().map_err(|e| e.within("sla"))?;
        if let Some(registry) = &self.registry {
            registry
                .insert(monitor.clone())
                .map_err(|e| ConfigError::new("sla", e.to_string()))?;
        }

        let trips = Arc::new(AtomicU64::new(0));
        let counter = trips.clone();
        let mut breaker = CircuitBreakerLayer::builder(self.name.clone())
            .on_state_change(move |_, t| {
                if t.to == BreakerState::Open {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .consecutive_failures(s.breaker.failure_threshold)
            .failure_rate(s.breaker.failure_rate)
            .count_window(s.breaker.window)
            .minimum_calls(s.breaker.min_calls)
            .open_wait(s.breaker.open_wait)
            .success_threshold(s.breaker.success_threshold)
            .half_open_probes(s.breaker.success_threshold);
        if let Some(clock) = &self.clock {
            breaker = breaker.clock(clock.clone());
        }
        let breaker = breaker.classifier(classifier);

        let quota = client_quota(s.rate_limit.per_second, s.rate_limit.burst)
            .map_err(|e| e.within("rate_limit"))?;
        let mut limiter = RateLimiter::builder().name(self.name.clone()).quota(quota);
        if let Some(backend) = &self.limiter_backend {
            limiter = limiter.backend(backend.clone());
        }
        let limiter = limiter.build().map_err(|e| e.within("rate_limit"))?;

        Ok((
            Parts {
                monitor,
                retry: (),
                limiter,
                trips,
            },
            breaker,
        ))
    }
}

/// The interval of an SLA time window: a twelfth of it in whole milliseconds, or a
/// divisor close to that, so the window is a whole number of intervals.
fn time_interval(window: Duration) -> Duration {
    let ms = window.as_millis().max(1) as u64;
    let target = (ms / 12).max(1);
    let step = (1..=target)
        .rev()
        .find(|d| ms.is_multiple_of(*d))
        .unwrap_or(1);
    Duration::from_millis(step)
}

/// A GCRA quota allowing `burst` calls at once and `per_second` on average.
fn client_quota(per_second: f64, burst: u32) -> Result<Quota, ConfigError> {
    let period = Duration::from_secs_f64(f64::from(burst) / per_second);
    Quota::per(u64::from(burst), period)
}

struct Parts<R> {
    monitor: SlaMonitor,
    retry: R,
    limiter: RateLimiter,
    trips: Arc<AtomicU64>,
}

impl Parts<()> {
    fn with_retry<R>(self, retry: R) -> Parts<R> {
        Parts {
            monitor: self.monitor,
            retry,
            limiter: self.limiter,
            trips: self.trips,
        }
    }
}

/// A retry layer whose figures the handles show.
trait RetryParts {
    fn retry_handle(&self) -> RetryHandle;
}

impl<P: Send + Sync + 'static> RetryParts for RetryLayer<P> {
    fn retry_handle(&self) -> RetryHandle {
        self.handle()
    }
}

impl<C: Send + Sync + 'static> RetryParts for retry_layer::http::HttpRetryLayer<C> {
    fn retry_handle(&self) -> RetryHandle {
        self.handle()
    }
}

/// One breaker, or one per host.
#[derive(Clone)]
enum Breakers {
    One(Breaker),
    PerHost(BreakerRegistry<String>),
}

/// A stack around an HTTP client (see [`Preset::http_client`]).
pub type HttpReliableClient = ReliableService<http::Request<Bytes>, http::Response<Bytes>>;

/// The cache key of an HTTP request: method and URI for `GET`/`HEAD` without
/// credentials; `None` (bypass) otherwise.
fn http_cache_key(req: &http::Request<Bytes>) -> Option<String> {
    let cacheable = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    let credentialed = req.headers().contains_key(http::header::AUTHORIZATION)
        || req.headers().contains_key(http::header::COOKIE);
    (cacheable && !credentialed).then(|| format!("{} {}", req.method(), req.uri()))
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
    type Future = futures_util::future::Either<
        S::Future,
        futures_util::future::BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>,
    >;

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

/// Whether `Cache-Control` forbids storing an answer in a shared cache.
fn forbids_shared_storage(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-store" || d == "private" || d.starts_with("private="))
}

/// The live parts of a built stack, for monitoring and operations.
pub struct Handles<V> {
    kind: SourceKind,
    name: String,
    monitor: SlaMonitor,
    breakers: Breakers,
    retry: RetryHandle,
    limiter: RateLimiter,
    cache: Option<CacheHandle<V>>,
    trips: Arc<AtomicU64>,
}

impl<V> fmt::Debug for Handles<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> Handles<V> {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of source.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The SLA monitor.
    pub fn sla(&self) -> &SlaMonitor {
        &self.monitor
    }

    /// The circuit breaker, for stacks with one (`None` for per-host breakers: see
    /// [`breaker_registry`](Self::breaker_registry)).
    pub fn breaker(&self) -> Option<&Breaker> {
        match &self.breakers {
            Breakers::One(b) => Some(b),
            Breakers::PerHost(_) => None,
        }
    }

    /// The per-host breakers of an HTTP client stack.
    pub fn breaker_registry(&self) -> Option<&BreakerRegistry<String>> {
        match &self.breakers {
            Breakers::One(_) => None,
            Breakers::PerHost(r) => Some(r),
        }
    }

    /// The retry layer's figures.
    pub fn retry(&self) -> &RetryHandle {
        &self.retry
    }

    /// The client-side rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The cache (`None` for a stack built by [`Preset::wrap_uncached`]).
    pub fn cache(&self) -> Option<&CacheHandle<V>> {
        self.cache.as_ref()
    }

    /// Times the breaker opened.
    pub fn breaker_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Requests answered from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.stats().hits)
    }
}

impl<V: Clone + Send + Sync + 'static> HealthSource for Handles<V> {
    fn health(&self) -> Vec<ComponentHealth> {
        let mut all = Vec::with_capacity(5);
        all.extend(self.monitor.health());
        match &self.breakers {
            Breakers::One(b) => all.extend(b.health()),
            Breakers::PerHost(r) => all.extend(r.health()),
        }
        if let Some(cache) = &self.cache {
            all.extend(cache.health());
        }
        all.extend(self.limiter.health());
        let retry = self.retry.snapshot();
        all.push(ComponentHealth::new(
            self.name.clone(),
            HealthStatus::Healthy,
            ComponentDetail::Retry(retry),
        ));
        all
    }
}

/// A service wrapped by a preset stack. Cheap to clone; clones share every layer's state.
pub struct ReliableService<Req, V> {
    service: BoxCloneSyncService<Req, V, BoxError>,
    handles: Arc<Handles<V>>,
}

impl<Req, V> Clone for ReliableService<Req, V> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            handles: self.handles.clone(),
        }
    }
}

impl<Req, V> fmt::Debug for ReliableService<Req, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReliableService")
            .field("handles", &self.handles)
            .finish_non_exhaustive()
    }
}

impl<Req, V> ReliableService<Req, V> {
    /// The live parts: SLA monitor, breaker, retry figures, limiter, cache.
    pub fn handles(&self) -> &Arc<Handles<V>> {
        &self.handles
    }
}

impl<Req, V> Service<Req> for ReliableService<Req, V> {
    type Response = V;
    type Error = BoxError;
    type Future = <BoxCloneSyncService<Req, V, BoxError> as Service<Req>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.service.call(req)
    }
}
