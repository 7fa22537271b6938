//! The `echoRequestInErrors` fault: a careless server (or a debugging proxy in front of one)
//! that quotes the request it could not serve in its error answer, with every header, the bearer
//! token included, and the whole body: an order's `userData` with the node's host private key, the
//! token form's client secret and password. A client must never show such an answer as it is.
//!
//! The echo goes where the answer's own text goes, so the body keeps its shape: `message` of
//! Contabo's `{"statusCode", "message"}`, `error_description` of Keycloak's OAuth error. It applies
//! to `/v1` and the token endpoint, never to the control API.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::TOKEN_PATH;
use super::shared::Shared;

/// Largest body echoed (and buffered); orders are far smaller.
const MAX_BODY: usize = 1024 * 1024;

/// Outer layer: when the fault is on, an error answer quotes the request.
pub async fn echo_request_in_errors(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let echoed = path.starts_with("/v1/") || path == TOKEN_PATH;
    if !echoed || !shared.faults(|f| f.faults.echo_request_in_errors) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let quoted = quote(&parts.method, &parts.uri.to_string(), &parts.headers, &body);
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut answer: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        serde_json::json!({
            "statusCode": parts.status.as_u16(),
            "message": String::from_utf8_lossy(&body),
        })
    });
    let field = if path == TOKEN_PATH {
        "error_description"
    } else {
        "message"
    };
    let said = answer
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    answer[field] = Value::String(format!("{said}; the request was: {quoted}"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(answer.to_string()))
}

/// The request as a debugging proxy would print it: the body first (a form's secrets come
/// early), then every header (the bearer token).
fn quote(method: &Method, uri: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> String {
    let mut text = format!("{method} {uri}\n");
    if !body.is_empty() {
        text.push_str(&String::from_utf8_lossy(body));
        text.push_str("\n\n");
    }
    for (name, value) in headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text
}
