//! Preset stacks for CEX, DEX and social data sources.
//!
//! A preset is a builder: [`cex`], [`dex`] and [`social`] start from the preset tables
//! ([`defaults`], one function per layer returning the layer's own configuration); every
//! value can be changed in code ([`Preset::configure`]), or come from a loaded
//! [`Settings`] ([`Preset::from_settings`]). [`Preset::wrap`] then builds the stack around
//! a service, each layer from its configuration, and each layer checks its own.
//!
//! # The preset tables
//!
//! | source | SLA p95 / p99 | min success | max consecutive failures | breaker: consecutive failures / open wait / successes | cache TTL default (min..max) |
//! |---|---|---|---|---|---|
//! | CEX | 1 s / 2 s | 95 % | 3 | 5 / 30 s / 2 | 5 s (2..15 s) |
//! | DEX | 3 s / 5 s | 90 % | 5 | 10 / 60 s / 3 | 30 s (10..120 s) |
//! | Social | 5 s / 10 s | 85 % | 3 | 3 / 120 s / 1 | 300 s (60..900 s) |
//!
//! Retries, the client quota and the attempt timeout: see [`defaults`].
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

pub mod defaults;
mod handles;
mod http_client;
mod parts;

use std::fmt;
use std::sync::Arc;

use cache_layer::http::{HttpCacheLayer, HttpCacheLayerBuilder};
use cache_layer::{CacheConfig, CacheKey};
use hedge_layer::HedgeLayer;
use ratelimit_layer::RedisBackend;
use reliability_core::classify::{Classify, ErrorClassifier};
use reliability_core::clock::SharedClock;
use reliability_core::error::ConfigError;
use sla_layer::SlaRegistry;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder};

use self::handles::Breakers;
pub use self::handles::{Handles, ReliableService};
pub use self::http_client::HttpReliableClient;
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
    ///
    /// The name is every layer's name in health reports and metrics; it replaces the
    /// `name` of the cache, retry and SLA configurations.
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

    /// Seeds the retry jitter, for reproducible runs (it replaces `retry.seed`).
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
    /// the cache), judging outcomes with reliability-core's `ErrorClassifier`. A cache miss
    /// is hedged per the `hedge` settings (CEX and DEX by default): every request of a
    /// wrapped source is taken to be a read that may be sent twice; for writes use
    /// [`wrap_uncached`](Self::wrap_uncached), which never hedges, or set `max_hedges = 0`.
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
        let hedge = HedgeLayer::builder(self.name.clone())
            .config(self.settings.hedge.clone())
            .classifier(classifier.clone())
            .build()
            .map_err(|e| e.within("hedge"))?;
        let hedger = hedge.hedger();
        let below = self.below_cache(inner, &parts, classifier, breaker);
        let service = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(cache)
                .layer(hedge)
                .service(below),
        );
        let handles = Handles {
            hedger: Some(hedger),
            ..self.into_handles(parts, breakers, Some(cache_handle))
        };
        Ok(ReliableService::new(service, Arc::new(handles)))
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

    /// An HTTP response cache of this preset's cache settings, for the routes of a server
    /// (it writes RFC 9211 `Cache-Status` and never shares credentialed answers).
    pub fn http_cache_layer(&self) -> Result<HttpCacheLayer, ConfigError> {
        self.http_cache_builder()
            .build()
            .map_err(|e| e.within("cache"))
    }

    /// The builder behind [`http_cache_layer`](Self::http_cache_layer), to add what the
    /// settings cannot say (an L2 tier, `Vary` headers). Its `build()` checks the cache
    /// settings.
    ///
    /// `cache.adaptive` does not apply: an HTTP answer keeps the preset's TTL, or the
    /// `max-age` its upstream gave it.
    pub fn http_cache_builder(&self) -> HttpCacheLayerBuilder {
        let config = CacheConfig {
            name: self.name.clone(),
            adaptive: None,
            ..self.settings.cache.clone()
        };
        let builder = HttpCacheLayer::builder().config(config);
        match &self.clock {
            Some(clock) => builder.clock(clock.clone()),
            None => builder,
        }
    }

    /// One line for a gRPC client: wraps a tonic [`Channel`](tonic::transport::Channel) in
    /// this preset's stack, for `tonic::client::Grpc::new` or a generated client's `new`
    /// (feature `grpc`).
    ///
    /// Deadline (the caller's `grpc-timeout`, or the preset's `deadline` if earlier) →
    /// hedge (the `hedge` settings: CEX and DEX calls get a second copy after their own
    /// p95, within a 10 % budget, the request body replayed; see [`crate::hedge::grpc`]) →
    /// retry (gRPC codes, pushback honoured, every call treated as safe to repeat; no
    /// attempt after the deadline) → one circuit breaker for the channel (open:
    /// `UNAVAILABLE` at once, locally) → client quota (key: the preset's name; no wait past
    /// the deadline) → SLA → the time left written into each attempt's `grpc-timeout`
    /// → attempt timeout (`DEADLINE_EXCEEDED`) → channel. Nothing is cached. See
    /// [`crate::grpc`] for the details.
    #[cfg(feature = "grpc")]
    pub fn grpc_client(
        self,
        channel: tonic::transport::Channel,
    ) -> Result<crate::grpc::GrpcReliableClient, ConfigError> {
        use hedge_layer::deadline::DeadlineLayer;
        use ratelimit_layer::key::key_fn;
        use ratelimit_layer::{RateLimitLayer, Subject};
        use reliability_core::classify::GrpcClassifier;
        use reliability_core::deadline::set_grpc_timeout;
        use retry_layer::grpc::GrpcRetryLayer;
        use sla_layer::SlaLayer;
        use tower::ServiceExt;

        let (parts, breaker) = self.parts_but_retry(GrpcClassifier)?;
        let retry = GrpcRetryLayer::from_grpc_config(&self.retry_config())
            .map_err(|e| e.within("retry"))?;
        let parts = parts.with_retry(retry);
        let breaker = breaker.build().map_err(|e| e.within("breaker"))?;
        let breakers = Breakers::One(breaker.breaker().clone());
        let hedge = HedgeLayer::builder(self.name.clone())
            .config(self.settings.hedge.clone())
            .grpc()
            .build()
            .map_err(|e| e.within("hedge"))?;
        let hedger = hedge.hedger();
        let name = Subject::new(self.name.clone());
        let deadline = match self.settings.deadline {
            Some(total) => DeadlineLayer::new(total),
            None => DeadlineLayer::enforce_only(),
        }
        .grpc_timeout(true);
        let service = ServiceBuilder::new()
            .map_err(crate::grpc::into_status)
            .layer(deadline)
            .layer(hedge)
            .layer(parts.retry.clone())
            .map_err(Into::<BoxError>::into)
            .layer(breaker)
            .layer(
                RateLimitLayer::new(parts.limiter.clone())
                    .key(key_fn(move |_: &http::Request<tonic::body::Body>| {
                        Some(name.clone())
                    }))
                    .wait_up_to(self.settings.rate_limit.max_wait)
                    .with_deadlines(),
            )
            .layer(parts.bulkhead.clone())
            .layer(SlaLayer::new(parts.monitor.clone()).classifier(GrpcClassifier))
            // Each attempt tells the server the time the call has left. Not the attempt's
            // own timeout: the client retries a timed-out attempt, while a server that
            // gave up would answer CANCELLED first, which is not retried.
            .map_request(|mut req: http::Request<tonic::body::Body>| {
                set_grpc_timeout(&mut req, tokio::time::Instant::now());
                req
            })
            .timeout(self.settings.attempt_timeout)
            .service(channel.map_err(Into::<BoxError>::into));
        let service = BoxCloneSyncService::new(service);
        let handles = Handles {
            hedger: Some(hedger),
            ..self.into_handles::<(), _>(parts, breakers, None)
        };
        Ok(crate::grpc::GrpcReliableClient::new(
            service,
            Arc::new(handles),
        ))
    }
}
