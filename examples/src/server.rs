//! The example server's application: three data-source routes through the preset stacks,
//! per-API-key rate limits, and (when a token is given) the admin router and dashboard.
//!
//! Routes:
//!
//! - `GET /api/cex/orderbook/{symbol}`, `GET /api/dex/quote/{pair}`,
//!   `GET /api/social/search?q=...`: cached per route with the preset's TTL and
//!   stale-while-revalidate (RFC 9211 `Cache-Status` on every answer), then the preset's
//!   retry, breaker, client quota, SLA and timeout down to the simulated upstream.
//! - Rate limited per API key (`x-api-key`, mapped to an account and tier in
//!   `server.toml`), or per client IP on the free tier: 429 with `Retry-After`,
//!   `RateLimit-Policy` and `RateLimit`.
//! - With an admin token: the admin router (`/admin/...`, bearer token), `/dashboard`,
//!   and `POST /admin/upstream/faults` to inject faults into the simulated upstream
//!   (through its chaos layers, which `/admin/chaos` also lists and switches one by one:
//!   `upstream-cex`, `upstream-dex`, `upstream-social`).
//!
//! [`app`] keeps everything in memory; [`app_with_redis`] shares the per-key limits
//! (Redis backend, failing open to a local limiter) and the route caches (Redis L2, one
//! key prefix per route, pub/sub invalidation) between every server on the same Redis.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use ratelimit_layer::http::PeerIp;
use ratelimit_layer::key::key_fn;
use ratelimit_layer::{
    RateLimitLayer, RateLimiter, RateLimiterBuilder, RedisBackend, Subject, TierTable,
};
use reliability::admin::Admin;
use reliability::admin::prometheus::{self, RecorderTaken};
use reliability::breaker::{FleetError, FleetLink};
use reliability::cache::CacheHandle;
use reliability::cache::backend::disk::DiskTier;
use reliability::cache::backend::redis::RedisTier;
use reliability::cache::http::{CachedResponse, HttpCacheLayer};
use reliability::config::{Settings, SettingsError, SourceKind};
use reliability::core::classify::ErrorClassifier;
use reliability::core::error::ConfigError;
use reliability::core::health::HealthSource;
use reliability::core::redis::{RedisConfig, RedisSetupError};
use reliability::presets::{Preset, ReliableService};
use serde::Deserialize;
use serde_json::Value;
use sla_layer::SlaRegistry;
use tower::ServiceExt;

use crate::upstream::{FaultSettings, Source, Upstream, UpstreamRequest, bounded};

/// The server's configuration file (`examples/server.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// API key → account and tier.
    #[serde(default)]
    pub keys: BTreeMap<String, ApiKey>,
    /// Preset overrides in the facade's settings format.
    #[serde(default)]
    pub reliability: toml::Table,
    /// What a fleet of servers on one Redis shares beyond limits and caches.
    #[serde(default)]
    pub fleet: FleetSettings,
    /// An L3 tier on disk for the route caches (`--disk DIR` sets `dir`).
    #[serde(default)]
    pub disk: DiskSettings,
}

/// The `[disk]` table: a disk tier under each route cache, so a restart starts warm.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskSettings {
    /// The directory of the stores (`<dir>/<route>.redb`, created if missing); none: no
    /// disk tier.
    pub dir: Option<std::path::PathBuf>,
    /// The most each route's store holds, in MiB (1 to 65,536).
    pub max_mib: u64,
}

impl Default for DiskSettings {
    fn default() -> Self {
        Self {
            dir: None,
            max_mib: 256,
        }
    }
}

/// The `[fleet]` table: opt-in sharing between the servers on one Redis.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// Link each source's breaker to the other servers' breakers for that source
    /// (`Breaker::share`, upstream named after the source): a trip on one server opens
    /// the breaker on every server. Right when the upstream bans the shared API key after
    /// too many failures; ignored without Redis. Off by default.
    #[serde(default)]
    pub share_breakers: bool,
}

/// An API key's account and tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The account the key belongs to (the rate-limit subject).
    pub account: String,
    /// The account's tier.
    pub tier: String,
}

/// The configuration shipped with the example.
pub const DEFAULT_CONFIG: &str = include_str!("../server.toml");

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TOML file is malformed.
    #[error("server config: {0}")]
    Toml(#[from] toml::de::Error),
    /// The preset settings are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A value is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached or configured.
    #[error("redis: {0}")]
    Redis(#[from] RedisSetupError),
    /// A disk store could not be opened (`[disk]`, `--disk`).
    #[error("disk tier {path}: {message}")]
    Disk {
        /// The store's path.
        path: String,
        /// Why.
        message: String,
    },
    /// A breaker could not join its fleet (`[fleet] share_breakers`).
    #[error("breaker fleet: {0}")]
    Fleet(#[from] FleetError),
    /// Another `metrics` recorder holds the process.
    #[error(transparent)]
    Metrics(#[from] RecorderTaken),
}

impl ServerConfig {
    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, StartError> {
        Ok(toml::from_str(text)?)
    }

    /// The preset settings: defaults, then this file's `[reliability]` table, then the
    /// `RELIABILITY__*` environment.
    pub fn settings(&self) -> Result<Settings, StartError> {
        let toml = toml::to_string(&self.reliability)
            .map_err(|e| StartError::Config(ConfigError::new("reliability", e.to_string())))?;
        Ok(Settings::from_sources(
            &toml,
            std::env::vars()
                .collect::<Vec<_>>()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
    }
}

/// Everything the routes share.
#[derive(Clone)]
pub struct App {
    /// The simulated upstream.
    pub upstream: Upstream,
    /// The CEX client stack.
    pub cex: ReliableService<UpstreamRequest, Value>,
    /// The DEX client stack.
    pub dex: ReliableService<UpstreamRequest, Value>,
    /// The social client stack.
    pub social: ReliableService<UpstreamRequest, Value>,
    /// The per-user rate limiter.
    pub limiter: RateLimiter,
    /// The SLA monitors.
    pub registry: SlaRegistry,
    /// The route caches (CEX, DEX, social), for the drain.
    pub caches: Arc<Vec<CacheHandle<CachedResponse>>>,
    /// The breakers' fleet links (`[fleet] share_breakers` on Redis); dropping the last
    /// `App` clone unlinks them.
    pub fleet: Arc<Vec<FleetLink>>,
}

/// Builds the application router with in-memory limits and caches. `admin_token`
/// mounts the admin router.
pub fn app(
    config: &ServerConfig,
    upstream: Upstream,
    admin_token: Option<&str>,
) -> Result<(axum::Router, App), StartError> {
    // Installed before any layer is built: layers register their handles when built.
    let metrics = prometheus::recorder()?;
    let limiter = RateLimiter::builder()
        .name("api")
        .tiers(TierTable::standard());
    assemble(config, upstream, admin_token, limiter, None, metrics)
}

/// Builds the application router on Redis: the per-key limiter decides on Redis (failing
/// open to a local limiter while Redis is down) and each route cache gets a Redis L2
/// under `<key_prefix>:<route>` (a clear on one server clears the others' L1 by pub/sub).
/// Connects (must run inside a tokio runtime).
pub async fn app_with_redis(
    config: &ServerConfig,
    upstream: Upstream,
    admin_token: Option<&str>,
    redis: &RedisConfig,
) -> Result<(axum::Router, App), StartError> {
    let metrics = prometheus::recorder()?;
    let base = redis.key_prefix.clone();
    let backend = RedisBackend::builder(redis.clone().key_prefix(format!("{base}:ratelimit")))
        .build()
        .await?;
    let limiter = RateLimiter::builder()
        .name("api")
        .tiers(TierTable::standard())
        .backend(backend);
    let mut tiers = Vec::with_capacity(3);
    for kind in ROUTES {
        let route = redis
            .clone()
            .key_prefix(format!("{base}:{}", kind.as_str()));
        tiers.push(RedisTier::connect(&route).await?);
    }
    let (router, mut app) = assemble(config, upstream, admin_token, limiter, Some(tiers), metrics)?;
    if config.fleet.share_breakers {
        let breakers = redis.clone().key_prefix(base);
        let mut links = Vec::with_capacity(ROUTES.len());
        for (kind, client) in ROUTES.iter().zip([&app.cex, &app.dex, &app.social]) {
            if let Some(breaker) = client.handles().breaker() {
                links.push(breaker.share(kind.as_str(), &breakers).await?);
            }
        }
        app.fleet = Arc::new(links);
    }
    Ok((router, app))
}

/// The route caches' sources, in route order.
const ROUTES: [SourceKind; 3] = [SourceKind::Cex, SourceKind::Dex, SourceKind::Social];

fn assemble(
    config: &ServerConfig,
    upstream: Upstream,
    admin_token: Option<&str>,
    limiter: RateLimiterBuilder,
    l2: Option<Vec<RedisTier>>,
    metrics: PrometheusHandle,
) -> Result<(axum::Router, App), StartError> {
    let settings = config.settings()?;
    let registry = SlaRegistry::new();
    let preset = |kind: SourceKind| {
        Preset::new(kind, kind.as_str())
            .from_settings(&settings)
            .registry(&registry)
    };
    let client = |kind| preset(kind).wrap_uncached(upstream.clone(), ErrorClassifier);
    let mut limiter = limiter;
    let mut accounts = BTreeMap::new();
    let standard = TierTable::standard();
    for (key, entry) in &config.keys {
        if standard.index_of(&entry.tier).is_none() {
            return Err(ConfigError::new(
                format!("keys.{key}.tier"),
                format!("unknown tier {:?}", entry.tier),
            )
            .into());
        }
        // The configured tier is the base; one set at run time through the admin API
        // (shared by the fleet on Redis) wins over it.
        limiter = limiter.user_tier(&entry.account, &entry.tier);
        accounts.insert(key.clone(), entry.account.clone());
    }
    let limiter = limiter.build()?;
    let app = App {
        upstream: upstream.clone(),
        cex: client(SourceKind::Cex)?,
        dex: client(SourceKind::Dex)?,
        social: client(SourceKind::Social)?,
        limiter,
        registry: registry.clone(),
        caches: Arc::default(),
        fleet: Arc::default(),
    };
    let accounts = Arc::new(accounts);
    let peer = PeerIp::new();
    let subject = key_fn(move |req: &Request<axum::body::Body>| {
        let account = req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .and_then(|k| accounts.get(k));
        match account {
            Some(account) => Some(Subject::new(account.clone())),
            // Unknown or missing keys share the free tier per client IP.
            None => peer
                .client_ip(req)
                .map(|ip| Subject::new(format!("ip:{ip}"))),
        }
    });

    let mut tiers = l2.map(Vec::into_iter);
    let disk = &config.disk;
    if !(1..=65_536).contains(&disk.max_mib) {
        return Err(ConfigError::out_of_range("disk.max_mib", "[1, 65536]", disk.max_mib).into());
    }
    let mut cache = |kind: SourceKind| -> Result<HttpCacheLayer, StartError> {
        // The preset's cache settings, plus the shared tier and the disk tier.
        let mut builder = preset(kind).http_cache_builder();
        if let Some(tier) = tiers.as_mut().and_then(Iterator::next) {
            builder = builder.l2(tier, None);
        }
        if let Some(dir) = &disk.dir {
            let path = dir.join(format!("{}.redb", kind.as_str()));
            let failed = |message: String| StartError::Disk {
                path: path.display().to_string(),
                message,
            };
            std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
            let tier =
                DiskTier::open(&path, disk.max_mib << 20).map_err(|e| failed(e.to_string()))?;
            builder = builder.l3(tier);
        }
        Ok(builder.build().map_err(|e| e.within("cache"))?)
    };
    let cex_cache = cache(SourceKind::Cex)?;
    let dex_cache = cache(SourceKind::Dex)?;
    let social_cache = cache(SourceKind::Social)?;
    let caches = [
        cex_cache.handle(),
        dex_cache.handle(),
        social_cache.handle(),
    ];
    let mut app = app;
    app.caches = Arc::new(caches.to_vec());

    let api = axum::Router::new()
        .route(
            "/api/cex/orderbook/{symbol}",
            get(orderbook).layer(cex_cache),
        )
        .route("/api/dex/quote/{pair}", get(quote).layer(dex_cache))
        .route("/api/social/search", get(search).layer(social_cache))
        .layer(RateLimitLayer::new(app.limiter.clone()).key(subject).http())
        .with_state(app.clone());

    let mut router = api;
    if let Some(token) = admin_token {
        let faults = axum::Router::new()
            .route("/admin/upstream/faults", post(set_faults).get(get_faults))
            .with_state(upstream.clone());
        let publish = (registry.clone(), caches.clone());
        let mut admin = Admin::new(token)?
            .health_source(Arc::new(registry.clone()) as Arc<dyn HealthSource>)
            .rate_limits(Arc::new(app.limiter.clone()))
            .prometheus(metrics, move || {
                publish.0.publish_metrics();
                publish.1.iter().for_each(CacheHandle::publish_metrics);
            })
            .protected_routes(faults);
        for client in [&app.cex, &app.dex, &app.social] {
            if let Some(breaker) = client.handles().breaker() {
                admin = admin.breakers(Arc::new(breaker.clone()));
            }
            admin = admin
                .health_source(Arc::new(client.handles().retry().clone()))
                .health_source(Arc::new(client.handles().concurrency().clone()));
        }
        for cache in caches {
            admin = admin.cache(Arc::new(cache));
        }
        for source in Source::ALL {
            admin = admin.chaos(upstream.chaos(source));
        }
        router = router.merge(admin.router());
    }
    Ok((router, app))
}

/// Serves `router` on `listener` with client addresses (for per-IP limits).
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// How a [`serve_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight at the stop finished.
    Clean,
    /// The drain deadline passed with requests still in flight; they were dropped.
    DeadlinePassed,
}

/// Serves `router` on `listener` until `stop` completes, then drains: stops accepting,
/// closes idle keep-alive connections, and lets the requests in flight finish, for at
/// most `drain`.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained> {
    let (stopped, on_stop) = tokio::sync::oneshot::channel();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.await;
        let _ = stopped.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        served = &mut server => return served.map(|()| Drained::Clean),
        _ = on_stop => {}
    }
    match tokio::time::timeout(drain, server).await {
        Ok(served) => served.map(|()| Drained::Clean),
        Err(_) => Ok(Drained::DeadlinePassed),
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM, the stop signals of a terminal and of a
/// process manager.
pub async fn stop_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

impl App {
    /// After the last request: writes what is still queued (the route caches' write-behind
    /// to Redis and disk, the limiter's usage counts), then unlinks the fleet's breakers.
    /// Bounded by `deadline`; returns what could not be written, one line each.
    pub async fn drain(&self, deadline: Duration) -> Vec<String> {
        let mut failed = Vec::new();
        let work = async {
            for (cache, route) in self.caches.iter().zip(ROUTES) {
                if let Err(e) = cache.shutdown(deadline).await {
                    failed.push(format!("{} cache: {e}", route.as_str()));
                }
            }
            if let Err(e) = self.limiter.flush_usage().await {
                failed.push(format!("rate-limit usage: {e}"));
            }
            // Unspent leased units go back to the fleet (nothing to do without leases).
            if let Err(e) = self.limiter.release_leases().await {
                failed.push(format!("rate-limit leases: {e}"));
            }
        };
        if tokio::time::timeout(deadline, work).await.is_err() {
            failed.push(format!("not written within {deadline:?}"));
        }
        failed
    }
}

async fn call(
    client: &ReliableService<UpstreamRequest, Value>,
    request: Option<UpstreamRequest>,
) -> Response {
    let Some(request) = request else {
        return (StatusCode::BAD_REQUEST, "1 to 128 bytes expected").into_response();
    };
    match client.clone().oneshot(request).await {
        Ok(body) => Json(body).into_response(),
        // reliability-core's one failure table: 503 + Retry-After for an open circuit or
        // a spent upstream quota, 504 for a timeout, 502 for anything else.
        Err(e) => reliability::Error::from(e).into_response(),
    }
}

async fn orderbook(State(app): State<App>, Path(symbol): Path<String>) -> Response {
    call(&app.cex, bounded(&symbol).map(UpstreamRequest::OrderBook)).await
}

async fn quote(State(app): State<App>, Path(pair): Path<String>) -> Response {
    call(&app.dex, bounded(&pair).map(UpstreamRequest::Quote)).await
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search(State(app): State<App>, Query(q): Query<SearchQuery>) -> Response {
    call(&app.social, bounded(&q.q).map(UpstreamRequest::Search)).await
}

async fn set_faults(
    State(upstream): State<Upstream>,
    Json(faults): Json<FaultSettings>,
) -> Json<FaultSettings> {
    upstream.set_faults(faults);
    Json(upstream.faults())
}

async fn get_faults(State(upstream): State<Upstream>) -> Json<FaultSettings> {
    Json(upstream.faults())
}
