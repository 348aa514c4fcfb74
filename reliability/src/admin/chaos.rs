use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Admin, AdminError, Shared, checked_name};

pub(super) fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/admin/chaos", get(list))
        .route("/admin/chaos/{name}", get(show).put(replace))
        .route("/admin/chaos/{name}/enable", post(enable))
        .route("/admin/chaos/{name}/disable", post(disable))
}

fn view(handle: &chaos_layer::ChaosHandle) -> Value {
    json!({
        "name": handle.name(),
        "enabled": handle.is_enabled(),
        "config": handle.config(),
        "counts": handle.counts(),
    })
}

fn named<'a>(admin: &'a Admin, name: &str) -> Result<&'a chaos_layer::ChaosHandle, AdminError> {
    let name = checked_name(name)?;
    admin
        .chaos
        .iter()
        .find(|h| h.name() == name)
        .ok_or_else(|| AdminError::NotFound(format!("no chaos layer named `{name}`")))
}

async fn list(State(admin): Shared) -> Json<Value> {
    let all: Vec<Value> = admin.chaos.iter().map(view).collect();
    Json(json!({ "chaos": all }))
}

async fn show(State(admin): Shared, Path(name): Path<String>) -> Result<Json<Value>, AdminError> {
    Ok(Json(view(named(&admin, &name)?)))
}

async fn replace(
    State(admin): Shared,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    let handle = named(&admin, &name)?;
    let config: chaos_layer::ChaosConfig = serde_json::from_slice(&body)
        .map_err(|e| AdminError::BadRequest(format!("not a chaos configuration: {e}")))?;
    handle
        .apply(config)
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    Ok(Json(view(handle)))
}

async fn enable(State(admin): Shared, Path(name): Path<String>) -> Result<Json<Value>, AdminError> {
    let handle = named(&admin, &name)?;
    handle.enable();
    Ok(Json(view(handle)))
}

async fn disable(
    State(admin): Shared,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let handle = named(&admin, &name)?;
    handle.disable();
    Ok(Json(view(handle)))
}
