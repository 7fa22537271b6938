//! What stands in front of every `/v1` handler, as Contabo's API gateway does: counting, the
//! shared rate limit (429 + `Retry-After`), added latency, injected 500/503s, the bearer check
//! (401) and the `x-request-id` check (400). Also the outer layer that echoes `x-request-id` on
//! every response. The control API and the token endpoint do not pass through the `/v1` gate.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use regex::Regex;

use super::auth;
use super::shared::{Admission, Shared};
use super::wire::ApiError;

/// `x-request-id`, required on `/v1` and echoed everywhere.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The spec's pattern for `x-request-id` (a UUID of version 0–5).
static REQUEST_ID_PATTERN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-5][0-9A-Fa-f]{3}-[089abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$",
    )
    .ok()
});

fn request_id_valid(value: &str) -> bool {
    REQUEST_ID_PATTERN
        .as_ref()
        .is_some_and(|re| re.is_match(value))
}

/// Outer layer for every route: copy the request's `x-request-id` onto the response.
pub async fn echo_request_id(request: Request, next: Next) -> Response {
    let id = request.headers().get(&X_REQUEST_ID).cloned();
    let mut response = next.run(request).await;
    if let Some(id) = id {
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    response
}

/// The `/v1` gate, applied as a route layer so the matched route template is known.
pub async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    count(&shared, &format!("{method} {route}"));

    if let Admission::RetryAfter(secs) = shared.faults(|f| f.admit(Instant::now())) {
        shared.stats(|s| s.rate_limited += 1);
        tracing::debug!(%method, %route, retry_after = secs, "rate limited");
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, please retry later",
        )
        .into_response();
        // A hostile Contabo may say anything here (`Faults::retry_after_secs`).
        let value = shared
            .faults(|f| f.faults.retry_after_secs.clone())
            .and_then(|text| HeaderValue::from_str(&text).ok())
            .unwrap_or_else(|| HeaderValue::from(secs));
        response.headers_mut().insert("retry-after", value);
        return response;
    }

    let latency = shared.faults(|f| f.faults.latency_ms);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    if let Some(code) = shared.faults(|f| f.injected_error()) {
        shared.stats(|s| s.injected_errors += 1);
        tracing::debug!(%method, %route, code, "injected error");
        let (status, message) = if code == 503 {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        };
        return ApiError::new(status, message).into_response();
    }

    if !auth::bearer_ok(&shared, request.headers()) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }

    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    match request_id {
        None => {
            return ApiError::bad_request("x-request-id header is required").into_response();
        }
        Some(id) if !request_id_valid(id) => {
            return ApiError::bad_request(
                "x-request-id must be a UUID (pattern ^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-5][0-9A-Fa-f]{3}-[089abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$)",
            )
            .into_response();
        }
        Some(_) => {}
    }
    let trace_id = request
        .headers()
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    tracing::debug!(%method, %route, request_id = request_id.unwrap_or(""), trace_id, "v1 request");
    next.run(request).await
}

fn count(shared: &Shared, key: &str) {
    shared.stats(|s| {
        s.requests_total += 1;
        *s.requests_by_route.entry(key.to_owned()).or_default() += 1;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_follows_the_spec_pattern() {
        assert!(request_id_valid("04e0f898-37b4-48bc-a794-1a57abe6aa31"));
        assert!(request_id_valid("51A87ECD-754E-4104-9C54-D01AD0F83406"));
        assert!(!request_id_valid("04e0f898-37b4-78bc-a794-1a57abe6aa31"));
        assert!(!request_id_valid("not-a-uuid"));
        assert!(!request_id_valid(""));
    }
}
