//! The client side shared by the mock's API and fault tests: a mock tuned to
//! run instances within milliseconds, and a small authenticated HTTP client
//! for `/v1` and the control API.

#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use kiwi_mocks::contabo::{self, MockConfig, MockHandle};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Instances run after ~10 ms: the suite stays fast without racing the ticker.
pub fn fast() -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(5),
        installing_delay: Duration::from_millis(5),
        tick: Duration::from_millis(5),
        ..MockConfig::default()
    }
}

pub struct Api {
    pub base: String,
    pub http: Client,
    pub token: String,
}

pub async fn token_response(
    http: &Client,
    base: &str,
    mock: &MockHandle,
    password: &str,
    client_id: &str,
) -> reqwest::Response {
    let c = mock.credentials();
    http.post(format!("{base}{}", contabo::auth::TOKEN_PATH))
        .form(&[
            ("grant_type", "password"),
            ("client_id", client_id),
            ("client_secret", c.client_secret.as_str()),
            ("username", c.username.as_str()),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn login_via(mock: &MockHandle, base: &str) -> Api {
    let http = Client::new();
    let c = mock.credentials();
    let resp = token_response(&http, base, mock, &c.password, &c.client_id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    Api {
        base: base.to_owned(),
        http,
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

pub async fn login(mock: &MockHandle) -> Api {
    login_via(mock, &mock.base_url()).await
}

impl Api {
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-request-id", uuid::Uuid::new_v4().to_string())
            .header("x-trace-id", "mock-tests")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Orders an instance and returns its id.
    pub async fn order(&self, body: Value) -> i64 {
        let (status, resp) = self.post("/v1/compute/instances", body).await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
        resp["data"][0]["instanceId"].as_i64().unwrap()
    }

    /// A call to the mock's control API (`/_mock/…`), which takes no token.
    pub async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
