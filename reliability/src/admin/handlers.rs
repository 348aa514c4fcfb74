//! The route handlers of the admin router: health, history, metrics, cache, breakers,
//! rate limits, and the dashboard page.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use reliability_core::health::{ComponentHealth, HealthSource};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Admin, AdminError, BreakerControl, RateLimitControl, Shared, checked_name, not_configured,
};
use crate::health::HealthReport;

/// The `/admin/*` routes (all but the chaos ones), before the token check is layered on.
pub(super) fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/admin/health", get(health))
        .route("/admin/history", get(history))
        .route("/admin/metrics", get(metrics))
        .route("/admin/cache/stats", get(cache_stats))
        .route("/admin/cache/clear", post(cache_clear))
        .route("/admin/breakers", get(breakers))
        .route("/admin/breakers/{name}/reset", post(breaker_reset))
        .route("/admin/breakers/{name}/open", post(breaker_open))
        .route("/admin/ratelimit", get(ratelimit_top))
        .route("/admin/ratelimit/top", get(ratelimit_top))
        .route("/admin/ratelimit/{user}", get(ratelimit_status))
        .route("/admin/ratelimit/{user}/tier", put(ratelimit_tier))
        .route("/admin/ratelimit/{user}/reset", post(ratelimit_reset))
}

async fn health(State(admin): Shared) -> Json<HealthReport> {
    Json(admin.report())
}

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<u64>,
}

async fn history(State(admin): Shared, Query(q): Query<SinceQuery>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        admin.history.to_json(q.since),
    )
        .into_response()
}

async fn metrics(State(admin): Shared) -> Response {
    let body = admin.metrics.as_ref().map_or_else(String::new, |m| m());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn cache_stats(State(admin): Shared) -> Result<Json<Vec<ComponentHealth>>, AdminError> {
    if admin.caches.is_empty() {
        return Err(not_configured("cache"));
    }
    Ok(Json(admin.caches.iter().flat_map(|c| c.health()).collect()))
}

async fn cache_clear(State(admin): Shared) -> Result<Json<Value>, AdminError> {
    if admin.caches.is_empty() {
        return Err(not_configured("cache"));
    }
    for cache in &admin.caches {
        cache.clear().await?;
    }
    Ok(Json(
        json!({ "cleared": true, "caches": admin.caches.len() }),
    ))
}

async fn breakers(State(admin): Shared) -> Result<Json<Vec<ComponentHealth>>, AdminError> {
    if admin.breakers.is_empty() {
        return Err(not_configured("breaker"));
    }
    Ok(Json(
        admin.breakers.iter().flat_map(|b| b.health()).collect(),
    ))
}

/// Applies `op` to the first breaker set that knows `name`.
fn on_breaker(
    admin: &Admin,
    name: &str,
    op: impl Fn(&dyn BreakerControl, &str) -> Result<(), AdminError>,
) -> Result<(), AdminError> {
    let name = checked_name(name)?;
    if admin.breakers.is_empty() {
        return Err(not_configured("breaker"));
    }
    for b in &admin.breakers {
        match op(&**b, name) {
            Err(AdminError::NotFound(_)) => continue,
            other => return other,
        }
    }
    Err(AdminError::NotFound(format!("breaker {name}")))
}

async fn breaker_reset(
    State(admin): Shared,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    on_breaker(&admin, &name, |b, n| b.reset(n))?;
    Ok(Json(json!({ "name": name, "state": "CLOSED" })))
}

async fn breaker_open(
    State(admin): Shared,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    on_breaker(&admin, &name, |b, n| b.force_open(n))?;
    Ok(Json(json!({ "name": name, "state": "FORCED_OPEN" })))
}

fn limits(admin: &Admin) -> Result<&dyn RateLimitControl, AdminError> {
    admin
        .rate_limits
        .as_deref()
        .ok_or_else(|| not_configured("rate limiter"))
}

#[derive(Deserialize)]
struct TopQuery {
    n: Option<usize>,
    top: Option<usize>,
}

async fn ratelimit_top(
    State(admin): Shared,
    Query(q): Query<TopQuery>,
) -> Result<Json<Value>, AdminError> {
    let n = q.top.or(q.n).unwrap_or(10).clamp(1, 1000);
    Ok(Json(limits(&admin)?.top(n).await?))
}

async fn ratelimit_status(
    State(admin): Shared,
    Path(user): Path<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(Json(limits(&admin)?.status(checked_name(&user)?).await?))
}

#[derive(Deserialize)]
struct TierBody {
    tier: String,
}

async fn ratelimit_tier(
    State(admin): Shared,
    Path(user): Path<String>,
    Json(body): Json<TierBody>,
) -> Result<Json<Value>, AdminError> {
    let tier = checked_name(&body.tier)?;
    limits(&admin)?.set_tier(checked_name(&user)?, tier).await?;
    Ok(Json(json!({ "user": user, "tier": body.tier })))
}

async fn ratelimit_reset(
    State(admin): Shared,
    Path(user): Path<String>,
) -> Result<Json<Value>, AdminError> {
    limits(&admin)?.reset(checked_name(&user)?).await?;
    Ok(Json(json!({ "user": user, "reset": true })))
}

/// The dashboard: one self-contained page (no CDN, charts in inline SVG), polling
/// `/admin/health` and `/admin/history` each second.
const DASHBOARD_HTML: &str = include_str!("../dashboard.html");

pub(super) async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        Html(DASHBOARD_HTML),
    )
}
