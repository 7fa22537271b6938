//! `/v1/secrets`: stored SSH public keys and passwords that orders and reinstalls refer to by id.
//! Reads return `value`, as the real API does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::Deserialize;

use super::model::Secret;
use super::shared::Shared;
use super::wire::{parse_body, path_id, single, ApiError, ApiResult, Paging, Params};

const BASE: &str = "/v1/secrets";
const TYPES: [&str; 2] = ["password", "ssh"];

/// `CreateSecretRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSecretRequest {
    name: String,
    value: String,
    #[serde(rename = "type")]
    kind: String,
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("secret {id} not found"))
}

/// `GET /v1/secrets` (filters `name`, `type`).
pub async fn list(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let params = Params::from_query(query)?;
    let paging = Paging::requested(&params, &shared)?;
    let name = params.get("name");
    let kind = params.get("type");
    if let Some(k) = kind {
        if !TYPES.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "type must be one of password, ssh, got {k:?}"
            )));
        }
    }
    let items = shared.read(|a| {
        a.secrets
            .values()
            .filter(|s| name.is_none_or(|n| s.name == n))
            .filter(|s| kind.is_none_or(|k| s.kind == k))
            .map(Secret::to_api)
            .collect()
    });
    Ok(paging.respond(BASE, &params, items))
}

/// `POST /v1/secrets`.
pub async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let req: CreateSecretRequest = parse_body(&body)?;
    let name_len = req.name.chars().count();
    if !(1..=255).contains(&name_len) {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to 255 characters, got {name_len}"
        )));
    }
    if !TYPES.contains(&req.kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "type must be one of password, ssh, got {:?}",
            req.kind
        )));
    }
    let value_len = req.value.chars().count();
    if value_len < 8 {
        return Err(ApiError::bad_request(
            "value must be at least 8 characters long",
        ));
    }
    // Responses cap `value` at 500 characters (SecretResponse), so longer ones cannot be stored.
    if value_len > 500 {
        return Err(ApiError::bad_request(format!(
            "value must be at most 500 characters, got {value_len}"
        )));
    }
    let secret = shared.mutate(|a| {
        let id = a.next_secret_id;
        a.next_secret_id += 1;
        let secret = Secret {
            secret_id: id,
            name: req.name,
            kind: req.kind,
            value: req.value,
            created_at: Utc::now(),
        };
        a.secrets.insert(id, secret.clone());
        (secret, vec![])
    });
    Ok(single(
        StatusCode::CREATED,
        &format!("{BASE}/{}", secret.secret_id),
        vec![secret.to_api()],
    ))
}

/// `GET /v1/secrets/{secretId}`.
pub async fn get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("secretId", &id)?;
    let data = shared
        .read(|a| a.secrets.get(&id).map(Secret::to_api))
        .ok_or_else(|| not_found(id))?;
    Ok(single(StatusCode::OK, &format!("{BASE}/{id}"), vec![data]))
}

/// `DELETE /v1/secrets/{secretId}`. Installed servers keep the keys they got.
pub async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = path_id("secretId", &id)?;
    shared
        .mutate(|a| (a.secrets.remove(&id), vec![]))
        .ok_or_else(|| not_found(id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
