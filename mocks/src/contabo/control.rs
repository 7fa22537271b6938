//! The control API under `/_mock/` (no auth, no faults, not part of Contabo): lets tests and the
//! sandbox change faults and product availability, force statuses, revoke tokens and read
//! counters while the mock runs. [`super::MockHandle`] offers the same operations in-process.
//!
//! | Method and path                       | Body / answer                                           |
//! |---------------------------------------|---------------------------------------------------------|
//! | `GET /_mock/faults`                   | → all fault settings ([`Faults`], camelCase)           |
//! | `PUT /_mock/faults`                   | any subset of the fields; → the new settings           |
//! | `GET /_mock/products`                 | → `{"V9": "product_not_available", ..}`               |
//! | `PUT /_mock/products/{id}/status`     | `{"status": "product_not_available"}` or `null` clears |
//! | `GET /_mock/instances`                | → every instance's full internal state                 |
//! | `GET /_mock/instances/{id}`           | → one instance's full state, incl. `userData`          |
//! | `PUT /_mock/instances/{id}/status`    | `{"status": "error"}` (any of the 14 spec statuses)    |
//! | `PUT /_mock/instances/{id}/tamper`    | `{"displayName": …, "ipv4": …}`: served as they are    |
//! | `POST /_mock/tokens/revoke`           | invalidates every issued token → 204                   |
//! | `GET /_mock/stats`                    | → counters ([`Stats`])                                 |
//! | `POST /_mock/reset-stats`             | zeroes the counters → 204                              |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::catalog;
use super::config::{Faults, HOLD_STATUSES};
use super::model::Instance;
use super::shared::{InstanceEvent, Shared, Stats};
use super::wire::{parse_body, path_id, ApiError, ApiResult};

/// Merges `patch` (a JSON object with some fault fields) into `current`.
pub fn merge_faults(current: &Faults, patch: Value) -> Result<Faults, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("faults must be a JSON object"));
    };
    let mut merged = serde_json::to_value(current)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Value::Object(m) = &mut merged {
        m.extend(patch);
    }
    let faults: Faults = parse_body(merged.to_string().as_bytes())?;
    faults.check().map_err(ApiError::bad_request)?;
    Ok(faults)
}

/// Replaces the fault settings.
pub fn set_faults(shared: &Shared, faults: Faults) -> Result<(), ApiError> {
    faults.check().map_err(ApiError::bad_request)?;
    tracing::info!(?faults, "faults changed");
    shared.faults(|f| f.replace(faults));
    Ok(())
}

/// Sets (or clears with `None`) the hold status of a product's new orders.
pub fn set_product_status(
    shared: &Shared,
    product: &str,
    status: Option<&str>,
) -> Result<(), ApiError> {
    if catalog::product(product).is_none() {
        return Err(ApiError::not_found(format!(
            "product {product} is not known"
        )));
    }
    let status = status.filter(|s| *s != "available");
    if let Some(s) = status {
        if !HOLD_STATUSES.contains(&s) {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}, or null to clear",
                HOLD_STATUSES.join(", ")
            )));
        }
    }
    tracing::info!(
        product,
        status = status.unwrap_or("available"),
        "product status changed"
    );
    shared.set_product_status(product, status.map(str::to_owned));
    Ok(())
}

/// Forces an instance into any documented status (e.g. `error`, `stopped`).
pub fn set_instance_status(shared: &Shared, id: i64, status: &str) -> Result<(), ApiError> {
    if !catalog::INSTANCE_STATUSES.contains(&status) {
        return Err(ApiError::bad_request(format!(
            "status must be one of {}",
            catalog::INSTANCE_STATUSES.join(", ")
        )));
    }
    shared.mutate(|a| {
        let Some(i) = a.instances.get_mut(&id) else {
            return (
                Err(ApiError::not_found(format!("instance {id} not found"))),
                vec![],
            );
        };
        i.status = status.to_owned();
        i.status_since = Utc::now();
        i.held_by_product = false;
        (Ok(()), vec![InstanceEvent::of(i)])
    })?;
    tracing::info!(instance_id = id, status, "instance status forced");
    Ok(())
}

/// Hostile mode: serves `display_name` and, when given, `ipv4_text` as the
/// instance's `displayName` and `ipConfig.v4.ip`, whatever they hold (a
/// newline, an ssh option, a terminal escape), as a panel user, a broken API
/// or a proxy could.
pub fn tamper_instance(
    shared: &Shared,
    id: i64,
    display_name: Option<&str>,
    ipv4_text: Option<&str>,
) -> Result<(), ApiError> {
    shared.mutate(|a| {
        let Some(i) = a.instances.get_mut(&id) else {
            return (
                Err(ApiError::not_found(format!("instance {id} not found"))),
                vec![],
            );
        };
        if let Some(name) = display_name {
            i.display_name = name.to_owned();
        }
        if let Some(ip) = ipv4_text {
            i.ipv4_text = Some(ip.to_owned());
        }
        (Ok(()), vec![InstanceEvent::of(i)])
    })?;
    tracing::info!(instance_id = id, "instance tampered with");
    Ok(())
}

/// `PUT /_mock/instances/{id}/tamper` with `{"displayName": …, "ipv4": …}`
/// (either may be left out).
pub async fn put_tamper(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Tamper {
        display_name: Option<String>,
        ipv4: Option<String>,
    }
    let id = path_id("instanceId", &id)?;
    let t: Tamper = parse_body(&body)?;
    tamper_instance(&shared, id, t.display_name.as_deref(), t.ipv4.as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Full internal state of one instance.
pub fn instance(shared: &Shared, id: i64) -> Option<Instance> {
    shared.read(|a| a.instances.get(&id).cloned())
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /_mock/faults`.
pub async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    json(&shared.faults(|f| f.faults.clone()))
}

/// `PUT /_mock/faults`.
pub async fn put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let patch: Value = parse_body(&body)?;
    let merged = merge_faults(&shared.faults(|f| f.faults.clone()), patch)?;
    set_faults(&shared, merged.clone())?;
    Ok(json(&merged))
}

/// `GET /_mock/products`.
pub async fn get_products(State(shared): State<Arc<Shared>>) -> Response {
    json(&shared.product_statuses())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: Option<String>,
}

/// `PUT /_mock/products/{productId}/status`.
pub async fn put_product_status(
    State(shared): State<Arc<Shared>>,
    Path(product): Path<String>,
    body: Bytes,
) -> ApiResult {
    // `null` as the whole body clears too.
    let status = match parse_body::<Option<StatusBody>>(&body)? {
        Some(b) => b.status,
        None => None,
    };
    set_product_status(&shared, &product, status.as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /_mock/instances`.
pub async fn list_instances(State(shared): State<Arc<Shared>>) -> Response {
    json(&shared.read(|a| a.instances.values().cloned().collect::<Vec<_>>()))
}

/// `GET /_mock/instances/{id}`.
pub async fn get_instance(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("instanceId", &id)?;
    let i = instance(&shared, id)
        .ok_or_else(|| ApiError::not_found(format!("instance {id} not found")))?;
    Ok(json(&i))
}

/// `PUT /_mock/instances/{id}/status`.
pub async fn put_instance_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = path_id("instanceId", &id)?;
    let body: StatusBody = parse_body(&body)?;
    let status = body
        .status
        .ok_or_else(|| ApiError::bad_request("status is required"))?;
    set_instance_status(&shared, id, &status)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /_mock/tokens/revoke`.
pub async fn revoke_tokens(State(shared): State<Arc<Shared>>) -> Response {
    shared.revoke_tokens();
    tracing::info!("all tokens revoked");
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_mock/stats`.
pub async fn get_stats(State(shared): State<Arc<Shared>>) -> Response {
    json(&shared.stats(|s| s.clone()))
}

/// `POST /_mock/reset-stats`.
pub async fn reset_stats(State(shared): State<Arc<Shared>>) -> Response {
    shared.stats(|s| *s = Stats::default());
    StatusCode::NO_CONTENT.into_response()
}
