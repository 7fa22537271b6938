//! The validating proxy in front of a tiny upstream started here: traffic passes unchanged, the
//! violations recorded are exactly the ones the upstream and client committed, and an upstream
//! that drops the connection makes the client lose its response too.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kiwi_mocks::openapi::{spawn_proxy, Direction};
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn instance(id: u64, status: &str) -> Value {
    json!({
        "tenantId": "DE", "customerId": "12345", "additionalIps": [], "name": format!("vmd{id}"),
        "displayName": "k3s-server-1", "instanceId": id, "dataCenter": "European Union 1",
        "region": "EU", "regionName": "European Union", "productId": "V92",
        "imageId": "afecbb85-e2fc-46f0-9684-b46b1faf00bb",
        "ipConfig": {"v4": {"ip": "192.0.2.10", "netmaskCidr": 22, "gateway": "192.0.2.1"},
                     "v6": {"ip": "2001:db8::10", "netmaskCidr": 64, "gateway": "fe80::1"}},
        "macAddress": "F2:65:50:F3:63:A1", "ramMb": 8192, "cpuCores": 4, "osType": "Linux",
        "diskMb": 204800, "sshKeys": [], "createdDate": "2026-01-02T03:04:05Z", "cancelDate": "",
        "status": status, "vHostId": 1, "vHostNumber": 1, "vHostName": "m1", "addOns": [],
        "productType": "ssd", "productName": "VPS 2"
    })
}

/// Answers the list correctly, and a single instance with a status the spec does not know.
/// Echoes the request id so the test can see request headers arrive upstream.
async fn start_upstream() -> SocketAddr {
    async fn list(headers: HeaderMap) -> impl IntoResponse {
        let echo = headers.get("x-request-id").cloned().unwrap();
        let body = json!({
            "_pagination": {"page": 1, "size": 10, "totalElements": 1, "totalPages": 1},
            "data": [instance(100, "running")],
            "_links": {"first": "/v1/compute/instances?page=1", "self": "/v1/compute/instances?page=1",
                       "last": "/v1/compute/instances?page=1"}
        });
        ([("x-seen-request-id", echo)], Json(body))
    }
    async fn one() -> impl IntoResponse {
        let body = json!({
            "data": [instance(100, "booting")],
            "_links": {"self": "/v1/compute/instances/100"}
        });
        (StatusCode::OK, Json(body))
    }
    let app = Router::new()
        .route("/v1/compute/instances", get(list))
        .route("/v1/compute/instances/{id}", get(one));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// Accepts connections, reads the request, and drops the connection without answering.
async fn start_dropping_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0_u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
            drop(stream);
        }
    });
    address
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn traffic_passes_unchanged_and_exactly_the_bad_response_is_recorded() {
    let upstream = start_upstream().await;
    let proxy = spawn_proxy(&format!("http://{upstream}")).await.unwrap();
    let client = reqwest::Client::new();

    let id = request_id();
    let listed = client
        .get(format!(
            "{}/v1/compute/instances?page=1&size=10",
            proxy.base_url()
        ))
        .bearer_auth("token-123")
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.headers()["x-seen-request-id"], id.as_str());
    let body: Value = listed.json().await.unwrap();
    assert_eq!(body["data"][0]["instanceId"], 100);

    let single = client
        .get(format!("{}/v1/compute/instances/100", proxy.base_url()))
        .bearer_auth("token-123")
        .header("x-request-id", request_id())
        .send()
        .await
        .unwrap();
    assert_eq!(
        single.status(),
        200,
        "the proxy reports, it does not interfere"
    );
    let body: Value = single.json().await.unwrap();
    assert_eq!(body["data"][0]["status"], "booting");

    assert_eq!(proxy.checked(), (2, 2));
    let violations = proxy.violations();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    let violation = &violations[0];
    assert_eq!(violation.direction, Direction::Response);
    assert_eq!(violation.method, "GET");
    assert_eq!(violation.path, "/v1/compute/instances/100");
    assert_eq!(violation.operation_id.as_deref(), Some("retrieveInstance"));
    assert_eq!(violation.location, "body:/data/0/status");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_bad_request_is_recorded_and_still_forwarded() {
    let upstream = start_upstream().await;
    let proxy = spawn_proxy(&format!("http://{upstream}")).await.unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/v1/compute/instances", proxy.base_url()))
        .bearer_auth("token-456")
        .header("x-request-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let violations = proxy.violations();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(violations[0].direction, Direction::Request);
    assert_eq!(violations[0].location, "header:x-request-id");
    assert!(violations
        .iter()
        .all(|v| !v.to_string().contains("token-456")));
}

#[tokio::test]
async fn an_upstream_that_drops_the_connection_loses_the_clients_response_too() {
    let upstream = start_dropping_upstream().await;
    let proxy = spawn_proxy(&format!("http://{upstream}")).await.unwrap();
    let outcome = reqwest::Client::new()
        .post(format!("{}/v1/compute/instances", proxy.base_url()))
        .bearer_auth("token")
        .header("x-request-id", request_id())
        .json(&json!({"period": 1, "productId": "V92"}))
        .send()
        .await;
    let error = outcome.expect_err("the client must not get a response the upstream never sent");
    assert!(
        error.status().is_none(),
        "no status was invented: {error:?}"
    );
    assert_eq!(proxy.upstream_failures(), 1);
    assert_eq!(proxy.checked(), (1, 0));
    assert_eq!(proxy.violations(), vec![]);
}

#[tokio::test]
async fn non_loopback_upstreams_are_refused() {
    let error = spawn_proxy("http://192.0.2.1:80").await.unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
}
