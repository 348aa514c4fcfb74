//! The admin router for axum (feature `admin`): health, metrics, cache, breaker and
//! rate-limit operations, and a live dashboard.
//!
//! Off unless mounted, and every route but the dashboard's static page needs
//! `Authorization: Bearer <token>` (compared in constant time; 401 otherwise). The
//! dashboard page holds no data and no secret: it asks for the token and reads the same
//! JSON routes with it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /admin/health` | [`HealthReport`] JSON |
//! | `GET /admin/history?since=<unix ms>` | sampled figures for charts (see [`history`]) |
//! | `GET /admin/metrics` | Prometheus text exposition |
//! | `GET /admin/cache/stats` | cache components JSON |
//! | `POST /admin/cache/clear` | `{"cleared": true}` |
//! | `GET /admin/breakers` | breaker components JSON |
//! | `POST /admin/breakers/{name}/reset` | `{"name": .., "state": "CLOSED"}` |
//! | `POST /admin/breakers/{name}/open` | `{"name": .., "state": "FORCED_OPEN"}` |
//! | `GET /admin/ratelimit?top=10` (or `/admin/ratelimit/top?n=10`) | top users by volume (fleet-wide with the Redis backend) |
//! | `GET /admin/ratelimit/{user}` | the user's status per window |
//! | `PUT /admin/ratelimit/{user}/tier` | body `{"tier": "pro"}` |
//! | `POST /admin/ratelimit/{user}/reset` | `{"user": .., "reset": true}` |
//! | `GET /admin/chaos` | every chaos layer: name, enabled, configuration, counts (feature `chaos`) |
//! | `GET`, `PUT /admin/chaos/{name}` | one chaos layer; `PUT` a `ChaosConfig` body (validated) |
//! | `POST /admin/chaos/{name}/enable`, `/disable` | the layer, switched |
//! | `GET /dashboard` | the live page |
//!
//! Parts that were not given answer 404 with a JSON error, so a server without a cache
//! still serves the rest.
//!
//! The router samples every part's health into a bounded history ([`Admin::history`]) on
//! a task of its own, started when the router is built inside a tokio runtime (or on its
//! first request otherwise) and ended when the router is dropped.
//!
//! # Example
//!
//! ```
//! use reliability::admin::Admin;
//!
//! let app: axum::Router = axum::Router::new()
//!     .merge(Admin::new("s3cret-token").unwrap().router());
//! # let _ = app;
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use reliability_core::error::ConfigError;
use reliability_core::health::{HealthSource, SystemHealth};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::health::HealthReport;

pub mod history;
pub mod prometheus;

/// `/admin/chaos`: the chaos layers, switched at run time (feature `chaos`).
#[cfg(feature = "chaos")]
mod chaos;
mod handlers;

use history::{
    DEFAULT_HISTORY_CAPACITY, DEFAULT_HISTORY_INTERVAL, History, MAX_HISTORY_CAPACITY, Sampled,
    ensure_sampler,
};

/// Shortest accepted admin token: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 12;

/// Why an admin operation failed; becomes a JSON error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No such breaker, user or tier.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (an unknown tier, an oversized name).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The backend failed (Redis unreachable).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Cache operations the admin router can call.
pub trait CacheControl: HealthSource {
    /// Removes every entry of every tier (and, where shared, on every instance).
    fn clear(&self) -> BoxFuture<'_, Result<(), AdminError>>;
}

/// Breaker operations the admin router can call.
pub trait BreakerControl: HealthSource {
    /// Closes the breaker `name` and clears its window.
    fn reset(&self, name: &str) -> Result<(), AdminError>;
    /// Holds the breaker `name` open until reset.
    fn force_open(&self, name: &str) -> Result<(), AdminError>;
}

/// Rate-limit operations the admin router can call.
pub trait RateLimitControl: HealthSource {
    /// The user's status per window (remaining, reset), as JSON.
    fn status(&self, user: &str) -> BoxFuture<'_, Result<Value, AdminError>>;
    /// Moves the user to `tier`.
    fn set_tier(&self, user: &str, tier: &str) -> BoxFuture<'_, Result<(), AdminError>>;
    /// Forgets the user's usage.
    fn reset(&self, user: &str) -> BoxFuture<'_, Result<(), AdminError>>;
    /// The `n` users with the most requests, as JSON.
    fn top(&self, n: usize) -> BoxFuture<'_, Result<Value, AdminError>>;
}

type MetricsFn = dyn Fn() -> String + Send + Sync;

impl<V: Clone + Send + Sync + 'static> CacheControl for cache_layer::CacheHandle<V> {
    fn clear(&self) -> BoxFuture<'_, Result<(), AdminError>> {
        cache_layer::CacheHandle::clear(self);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl BreakerControl for breaker_layer::Breaker {
    fn reset(&self, name: &str) -> Result<(), AdminError> {
        if self.name() != name {
            return Err(AdminError::NotFound(format!("breaker {name}")));
        }
        breaker_layer::Breaker::reset(self);
        Ok(())
    }

    fn force_open(&self, name: &str) -> Result<(), AdminError> {
        if self.name() != name {
            return Err(AdminError::NotFound(format!("breaker {name}")));
        }
        breaker_layer::Breaker::force_open(self);
        Ok(())
    }
}

impl RateLimitControl for ratelimit_layer::RateLimiter {
    fn status(&self, user: &str) -> BoxFuture<'_, Result<Value, AdminError>> {
        let user = user.to_owned();
        Box::pin(async move {
            let status = ratelimit_layer::RateLimiter::status(self, &user, None)
                .await
                .map_err(|e| AdminError::Unavailable(e.to_string()))?;
            serde_json::to_value(status).map_err(|e| AdminError::Unavailable(e.to_string()))
        })
    }

    fn set_tier(&self, user: &str, tier: &str) -> BoxFuture<'_, Result<(), AdminError>> {
        let (user, tier) = (user.to_owned(), tier.to_owned());
        Box::pin(async move {
            ratelimit_layer::RateLimiter::set_tier(self, &user, &tier)
                .await
                .map_err(|e| match e {
                    ratelimit_layer::ControlError::UnknownTier(t) => {
                        AdminError::BadRequest(format!("unknown tier {:?}", t.0))
                    }
                    ratelimit_layer::ControlError::Store(e) => {
                        AdminError::Unavailable(e.to_string())
                    }
                })
        })
    }

    fn reset(&self, user: &str) -> BoxFuture<'_, Result<(), AdminError>> {
        let user = user.to_owned();
        Box::pin(async move {
            ratelimit_layer::RateLimiter::reset(self, &user)
                .await
                .map_err(|e| AdminError::Unavailable(e.to_string()))
        })
    }

    fn top(&self, n: usize) -> BoxFuture<'_, Result<Value, AdminError>> {
        Box::pin(async move {
            let top: Vec<Value> = self
                .top_users(n)
                .await
                .map_err(|e| AdminError::Unavailable(e.to_string()))?
                .into_iter()
                .map(|(user, usage)| json!({ "user": user, "usage": usage }))
                .collect();
            Ok(json!({ "top": top }))
        })
    }
}

/// Builder of the admin router.
#[derive(Clone)]
pub struct Admin {
    token: Arc<[u8]>,
    sources: Vec<Arc<dyn HealthSource>>,
    caches: Vec<Arc<dyn CacheControl>>,
    breakers: Vec<Arc<dyn BreakerControl>>,
    rate_limits: Option<Arc<dyn RateLimitControl>>,
    metrics: Option<Arc<MetricsFn>>,
    extra: Vec<Router<()>>,
    #[cfg(feature = "chaos")]
    chaos: Vec<chaos_layer::ChaosHandle>,
    history: History,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Admin");
        f.field("token", &"<redacted>")
            .field("sources", &self.sources.len())
            .field("caches", &self.caches.len())
            .field("breakers", &self.breakers.len())
            .field("rate_limits", &self.rate_limits.is_some())
            .field("history_capacity", &self.history.capacity())
            .field("history_interval", &self.history.interval());
        #[cfg(feature = "chaos")]
        f.field("chaos", &self.chaos.len());
        f.finish()
    }
}

impl Admin {
    /// An admin router guarded by `token` (at least [`MIN_TOKEN_LEN`] bytes).
    pub fn new(token: impl Into<String>) -> Result<Self, ConfigError> {
        let token = token.into();
        if token.len() < MIN_TOKEN_LEN {
            return Err(ConfigError::new(
                "admin.token",
                format!("must be at least {MIN_TOKEN_LEN} bytes"),
            ));
        }
        Ok(Self {
            token: Arc::from(token.into_bytes()),
            sources: Vec::new(),
            caches: Vec::new(),
            breakers: Vec::new(),
            rate_limits: None,
            metrics: None,
            extra: Vec::new(),
            #[cfg(feature = "chaos")]
            chaos: Vec::new(),
            history: History::new(DEFAULT_HISTORY_CAPACITY, DEFAULT_HISTORY_INTERVAL),
        })
    }

    /// How much history `/admin/history` keeps: `capacity` points (1 to
    /// [`MAX_HISTORY_CAPACITY`]) sampled every `interval`
    /// (10 ms to 1 h). The default is ten minutes:
    /// [`DEFAULT_HISTORY_CAPACITY`] points at
    /// [`DEFAULT_HISTORY_INTERVAL`].
    pub fn history(mut self, capacity: usize, interval: Duration) -> Result<Self, ConfigError> {
        ConfigError::check_range("admin.history.capacity", capacity, 1..=MAX_HISTORY_CAPACITY)?;
        ConfigError::check_duration(
            "admin.history.interval",
            interval,
            Duration::from_secs(3600),
        )?;
        if interval < Duration::from_millis(10) {
            return Err(ConfigError::out_of_range(
                "admin.history.interval",
                "[10ms, 1h]",
                humantime::format_duration(interval),
            ));
        }
        self.history = History::new(capacity, interval);
        Ok(self)
    }

    /// Adds a health source (an SLA registry, a retry layer...).
    #[must_use]
    pub fn health_source(mut self, source: Arc<dyn HealthSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// A cache to report and clear (also a health source). Call once per cache.
    #[must_use]
    pub fn cache(mut self, cache: Arc<dyn CacheControl>) -> Self {
        self.caches.push(cache);
        self
    }

    /// Breakers to list, reset and force open (also a health source). Call once per
    /// breaker or registry; a name is looked up in each until one knows it.
    #[must_use]
    pub fn breakers(mut self, breakers: Arc<dyn BreakerControl>) -> Self {
        self.breakers.push(breakers);
        self
    }

    /// A chaos layer to switch at run time, behind the token: `GET /admin/chaos` lists
    /// every one (name, enabled, configuration, counts); `GET` and `PUT
    /// /admin/chaos/{name}` read and replace one's configuration (validated; a bad one is a
    /// 400 naming the field); `POST /admin/chaos/{name}/enable` and `/disable` switch it.
    /// Names are the layers' own.
    #[cfg(feature = "chaos")]
    #[must_use]
    pub fn chaos(mut self, handle: chaos_layer::ChaosHandle) -> Self {
        self.chaos.push(handle);
        self
    }

    /// Routes of the application's own (e.g. fault injection) behind the same token.
    #[must_use]
    pub fn protected_routes(mut self, routes: Router) -> Self {
        self.extra.push(routes);
        self
    }

    /// The rate limiter to operate (also a health source).
    #[must_use]
    pub fn rate_limits(mut self, limits: Arc<dyn RateLimitControl>) -> Self {
        self.rate_limits = Some(limits);
        self
    }

    /// The Prometheus exposition served at `/admin/metrics`.
    #[must_use]
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The health report of every registered part.
    pub fn report(&self) -> HealthReport {
        HealthReport::from_system(self.snapshot())
    }

    fn snapshot(&self) -> SystemHealth {
        let mut all: Vec<&dyn HealthSource> = self.sources.iter().map(|s| &**s as _).collect();
        all.extend(self.caches.iter().map(|c| &**c as &dyn HealthSource));
        all.extend(self.breakers.iter().map(|b| &**b as &dyn HealthSource));
        if let Some(r) = &self.rate_limits {
            all.push(&**r as &dyn HealthSource);
        }
        SystemHealth::collect(all, SystemTime::now())
    }

    /// The router: `/admin/*` behind the bearer token, and `/dashboard`.
    pub fn router(mut self) -> Router {
        let extra = std::mem::take(&mut self.extra);
        let state = Arc::new(self);
        // Inside a runtime the sampler starts now; otherwise on the first request.
        let _ = ensure_sampler(&state);
        let mut protected = handlers::routes().with_state(state.clone());
        #[cfg(feature = "chaos")]
        {
            protected = protected.merge(chaos::routes().with_state(state.clone()));
        }
        for routes in extra {
            protected = protected.merge(routes);
        }
        let protected = protected.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
        Router::new()
            .route("/dashboard", get(handlers::dashboard))
            .merge(protected)
    }
}

type Shared = State<Arc<Admin>>;

impl Sampled for Admin {
    fn recorder(&self) -> &History {
        &self.history
    }

    fn sample(&self) -> SystemHealth {
        self.snapshot()
    }
}

async fn require_token(State(admin): Shared, request: Request, next: Next) -> Response {
    let _ = ensure_sampler(&admin);
    if bearer_matches(request.headers(), &admin.token) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response()
    }
}

fn bearer_matches(headers: &HeaderMap, token: &[u8]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    // Length is not secret (the minimum is documented); the bytes are compared in
    // constant time.
    given.len() == token.len() && bool::from(given.ct_eq(token))
}

/// User names and breaker names arrive in the path: bound them before they reach a
/// backend.
fn checked_name(name: &str) -> Result<&str, AdminError> {
    if name.is_empty() || name.len() > 256 {
        Err(AdminError::BadRequest("names are 1 to 256 bytes".into()))
    } else {
        Ok(name)
    }
}

fn not_configured(part: &str) -> AdminError {
    AdminError::NotFound(format!("no {part} is configured"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        assert!(Admin::new("short").is_err());
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, b"0123456789abcdef"));
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(bearer_matches(&h, b"0123456789abcdef"));
        assert!(!bearer_matches(&h, b"0123456789abcdeX"));
        assert!(!bearer_matches(&h, b"0123456789abcdef0"));
        h.insert(
            header::AUTHORIZATION,
            "Basic 0123456789abcdef".parse().unwrap(),
        );
        assert!(!bearer_matches(&h, b"0123456789abcdef"));
    }
}
