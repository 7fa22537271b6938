//! The Keycloak token endpoint Contabo uses (password grant), served on the mock's own base URL
//! at Contabo's path, and the bearer check applied to `/v1`. Answers mimic Keycloak's JSON so that
//! a client's error handling meets the same shapes as in production.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde_json::json;

use super::shared::Shared;

/// Path of the token endpoint (Contabo's, under its Keycloak realm).
pub const TOKEN_PATH: &str = "/auth/realms/contabo/protocol/openid-connect/token";

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /auth/realms/contabo/protocol/openid-connect/token`.
pub async fn token(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let response = issue(&shared, form);
    let ok = response.status().is_success();
    shared.stats(|s| {
        if ok {
            s.tokens_issued += 1;
        } else {
            s.token_failures += 1;
        }
    });
    response
}

fn issue(shared: &Shared, form: Result<Form<HashMap<String, String>>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Request must be application/x-www-form-urlencoded",
        );
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    match field("grant_type") {
        "password" => {}
        "" => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing form parameter: grant_type",
            )
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant_type",
            )
        }
    }
    let creds = &shared.config.credentials;
    if field("client_id") != creds.client_id || field("client_secret") != creds.client_secret {
        tracing::info!("token refused: invalid client");
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        );
    }
    if field("username") != creds.username || field("password") != creds.password {
        tracing::info!("token refused: invalid user credentials");
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "Invalid user credentials",
        );
    }
    let access_token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    shared.issue_token(access_token.clone());
    tracing::debug!("token issued");
    // A hostile Contabo may announce any lifetime (`Faults::token_expires_in`).
    let expires_in = shared
        .faults(|f| f.faults.token_expires_in.clone())
        .unwrap_or_else(|| json!(shared.config.token_ttl.as_secs()));
    let body = json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "refresh_expires_in": 1800,
        "refresh_token": uuid::Uuid::new_v4().simple().to_string(),
        "token_type": "Bearer",
        "not-before-policy": 0,
        "session_state": uuid::Uuid::new_v4().to_string(),
        "scope": "profile email",
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// True if the request carries `Authorization: Bearer <valid token>`.
pub fn bearer_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .is_some_and(|token| shared.token_valid(token))
}
