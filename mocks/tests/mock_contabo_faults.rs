//! The Contabo mock's injected faults (rate limit, 5xx, lost create responses), its control API,
//! persistence across restarts, and the binary's start-up contract.

#![allow(clippy::unwrap_used)]

mod api_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use api_support::{fast, login};
use kiwi_mocks::contabo::{self, Faults, MockConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn a_tight_rate_limit_answers_429_with_retry_after() {
    // One request per 100 s after a burst of two: the third is refused however slow the machine.
    let mock = contabo::spawn(MockConfig {
        faults: Faults {
            rate_limit_rps: Some(0.01),
            rate_burst: 2,
            ..Faults::default()
        },
        ..fast()
    })
    .await
    .unwrap();
    let api = login(&mock).await;
    assert_eq!(api.get("/v1/compute/instances").await.0, StatusCode::OK);
    assert_eq!(api.get("/v1/tags").await.0, StatusCode::OK);

    let resp = api
        .request(Method::GET, "/v1/compute/instances")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], 429);

    // Neither the token endpoint nor the control API is limited.
    let api = login(&mock).await;
    for _ in 0..5 {
        assert_eq!(
            api.control(Method::GET, "/_mock/stats", None).await.0,
            StatusCode::OK
        );
    }
    let (_, stats) = api.control(Method::GET, "/_mock/stats", None).await;
    assert_eq!(stats["rateLimited"], 1);
    assert_eq!(stats["requestsTotal"], 3);
    assert_eq!(stats["requestsByRoute"]["GET /v1/compute/instances"], 2);

    // Lifting the limit at run time lets requests through again.
    let (status, faults) = api
        .control(
            Method::PUT,
            "/_mock/faults",
            Some(json!({"rateLimitRps": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults["rateLimitRps"], Value::Null);
    assert_eq!(faults["rateBurst"], 2, "fields not named keep their value");
    assert_eq!(api.get("/v1/compute/instances").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_throttle_rate_of_one_refuses_every_request_with_retry_after() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    mock.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    for _ in 0..4 {
        let (status, _) = api
            .post("/v1/compute/instances", json!({"period": 1}))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(mock.stats().rate_limited, 4);
    assert!(
        mock.instances().is_empty(),
        "a refused order places nothing"
    );
    assert!(Faults {
        throttle_rate: 1.5,
        ..Faults::default()
    }
    .check()
    .is_err());
}

#[tokio::test]
async fn an_error_rate_of_one_fails_every_request_without_side_effects() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    for _ in 0..6 {
        let (status, body) = api
            .post("/v1/compute/instances", json!({"period": 1}))
            .await;
        assert!(
            status == StatusCode::INTERNAL_SERVER_ERROR
                || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
        assert_eq!(body["statusCode"], status.as_u16());
    }
    assert!(
        mock.instances().is_empty(),
        "an injected error happens before the order"
    );
    assert_eq!(mock.stats().injected_errors, 6);
    // The token endpoint keeps working.
    login(&mock).await;

    mock.set_faults(Faults::default()).unwrap();
    assert_eq!(api.get("/v1/compute/instances").await.0, StatusCode::OK);
    assert!(mock
        .set_faults(Faults {
            error_rate: 1.5,
            ..Faults::default()
        })
        .is_err());
}

#[tokio::test]
async fn a_dropped_create_response_still_places_the_order() {
    let mock = contabo::spawn(MockConfig {
        faults: Faults {
            drop_create_responses: 1,
            ..Faults::default()
        },
        ..fast()
    })
    .await
    .unwrap();
    let api = login(&mock).await;

    let lost = api
        .request(Method::POST, "/v1/compute/instances")
        .json(&json!({"period": 1, "displayName": "k3s-a-cp-1"}))
        .send()
        .await;
    let err = lost.expect_err("the client must see the connection fail, not an answer");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );

    // The order went through: a client that looks before retrying finds it.
    let (status, body) = api
        .get("/v1/compute/instances?displayName=k3s-a-cp-1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["_pagination"]["totalElements"], 1);
    assert_eq!(mock.stats().dropped_create_responses, 1);
    assert_eq!(mock.stats().instances_created, 1);

    // Only the counted number of responses are dropped.
    let (status, _) = api
        .post(
            "/v1/compute/instances",
            json!({"period": 1, "displayName": "k3s-a-cp-2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(mock.instances().len(), 2);
    assert_eq!(mock.faults().drop_create_responses, 0);

    // Set at run time through the control API, too.
    let (status, _) = api
        .control(
            Method::PUT,
            "/_mock/faults",
            Some(json!({"dropCreateResponses": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let lost = api
        .request(Method::POST, "/v1/compute/instances")
        .json(&json!({"period": 1}))
        .send()
        .await;
    assert!(lost.is_err());
    assert_eq!(mock.instances().len(), 3);
}

#[tokio::test]
async fn the_control_api_forces_statuses_and_rejects_nonsense() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    let mut events = mock.events();
    let (_, body) = api
        .post("/v1/compute/instances", json!({"period": 1}))
        .await;
    let id = body["data"][0]["instanceId"].as_i64().unwrap();

    let (status, _) = api
        .control(
            Method::PUT,
            &format!("/_mock/instances/{id}/status"),
            Some(json!({"status": "error"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = api.get(&format!("/v1/compute/instances/{id}")).await;
    assert_eq!(body["data"][0]["status"], "error");
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.status == "error" {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(event.instance_id, id);

    let (status, _) = api
        .control(
            Method::PUT,
            &format!("/_mock/instances/{id}/status"),
            Some(json!({"status": "asleep"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api
        .control(
            Method::PUT,
            "/_mock/instances/1/status",
            Some(json!({"status": "error"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .control(Method::PUT, "/_mock/faults", Some(json!({"errorRate": 2})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api
        .control(Method::PUT, "/_mock/faults", Some(json!({"latency": 5})))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fault names are refused"
    );
    let (status, _) = api
        .control(
            Method::PUT,
            "/_mock/products/V1/status",
            Some(json!({"status": "pending_payment"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = api.control(Method::POST, "/_mock/reset-stats", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(mock.stats().requests_total, 0);
}

fn temp_state_file() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "contabo-mock-state-{}-{nanos}.json",
        std::process::id()
    ))
}

#[tokio::test]
async fn state_survives_a_restart() {
    let path = temp_state_file();
    let config = MockConfig {
        state_file: Some(path.clone()),
        ..fast()
    };
    let mock = contabo::spawn(config.clone()).await.unwrap();
    let api = login(&mock).await;
    let (_, s) = api
        .post(
            "/v1/secrets",
            json!({"name": "key", "type": "ssh", "value": "ssh-ed25519 AAAAC3Nza kiwi"}),
        )
        .await;
    let secret = s["data"][0]["secretId"].as_i64().unwrap();
    let (_, body) = api.post("/v1/compute/instances", json!({"period": 1, "displayName": "keep-me", "sshKeys": [secret], "userData": "#cloud-config\n"})).await;
    let id = body["data"][0]["instanceId"].as_i64().unwrap();
    let (_, t) = api
        .post("/v1/tags", json!({"name": "cluster:a", "color": "#0A78C3"}))
        .await;
    let tag = t["data"][0]["tagId"].as_i64().unwrap();
    api.call(
        Method::POST,
        &format!("/v1/tags/{tag}/assignments/instance/{id}"),
        None,
    )
    .await;
    let (_, c) = api
        .post(&format!("/v1/compute/instances/{id}/cancel"), json!({}))
        .await;
    let cancel_date = c["data"][0]["cancelDate"].clone();
    let before = mock.instance(id).unwrap();
    mock.shutdown().await;

    let mock = contabo::spawn(config).await.unwrap();
    let api = login(&mock).await; // tokens need not survive
    let (status, body) = api.get(&format!("/v1/compute/instances/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let i = &body["data"][0];
    assert_eq!(i["displayName"], "keep-me");
    assert_eq!(i["cancelDate"], cancel_date);
    assert_eq!(i["sshKeys"], json!([secret]));
    assert_eq!(mock.instance(id).unwrap().user_data, before.user_data);
    let (_, body) = api.get(&format!("/v1/tags/{tag}/assignments")).await;
    assert_eq!(body["data"][0]["resourceId"], id.to_string());
    let (status, _) = api.get(&format!("/v1/secrets/{secret}")).await;
    assert_eq!(status, StatusCode::OK);

    // Counters survived too: a new order gets a new id and a new address.
    let (_, body) = api
        .post("/v1/compute/instances", json!({"period": 1}))
        .await;
    let next = body["data"][0]["instanceId"].as_i64().unwrap();
    assert!(next > id);
    assert_ne!(mock.instance(next).unwrap().ipv4, before.ipv4);
    let (status, _) = api
        .post("/v1/tags", json!({"name": "cluster:a", "color": "#0A78C3"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    mock.shutdown().await;
    std::fs::remove_file(&path).unwrap();
}

/// A child process that is killed when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_base_url_first_and_serves_it() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_contabo-mock"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--provisioning-ms",
                "0",
                "--installing-ms",
                "0",
                "--product-status",
                "V9=pending_payment",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = first.trim();
    assert!(base.starts_with("http://127.0.0.1:"), "{first:?}");

    let http = Client::new();
    let resp = http
        .post(format!(
            "{base}/auth/realms/contabo/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "kiwi-sandbox"),
            ("client_secret", "sandbox-secret"),
            ("username", "operator@kiwistack.test"),
            ("password", "sandbox-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let token: Value = resp.json().await.unwrap();
    let resp = http
        .post(format!("{base}/v1/compute/instances"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .json(&json!({"period": 1, "productId": "V9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["data"][0]["status"], "pending_payment",
        "--product-status applies"
    );
}

#[tokio::test]
async fn echo_request_in_errors_quotes_the_token_and_the_body_in_error_answers_only() {
    let mock = contabo::spawn(fast()).await.unwrap();
    let api = login(&mock).await;
    // Off by default: an error answer says only what went wrong.
    let (status, body) = api
        .post(
            "/v1/compute/instances",
            json!({"period": 2, "userData": "canary-body"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("canary-body"), "{body}");

    let (status, faults) = api
        .control(
            Method::PUT,
            "/_mock/faults",
            Some(json!({"echoRequestInErrors": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{faults}");
    assert_eq!(faults["echoRequestInErrors"], true);

    let (status, body) = api
        .post(
            "/v1/compute/instances",
            json!({"period": 2, "userData": "canary-body"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["statusCode"], 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("period must be one of"), "{message}");
    assert!(message.contains("POST /v1/compute/instances"), "{message}");
    assert!(
        message.contains(&format!("Bearer {}", api.token)),
        "{message}"
    );
    assert!(message.contains("canary-body"), "{message}");
    // A success is answered as always.
    assert_eq!(api.get("/v1/compute/instances").await.0, StatusCode::OK);

    // The token endpoint quotes the form it refused.
    let c = mock.credentials();
    let refused = api_support::token_response(
        &Client::new(),
        &mock.base_url(),
        &mock,
        "wrong-password-canary",
        &c.client_id,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("password=wrong-password-canary"),
        "{description}"
    );
    assert!(
        description.contains(&format!("client_secret={}", c.client_secret)),
        "{description}"
    );

    // The control API never echoes.
    let (status, body) = api
        .control(Method::PUT, "/_mock/faults", Some(json!({"errorRate": 7})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("request was"), "{body}");
}

#[tokio::test]
async fn the_binarys_log_written_to_a_file_has_no_colour_escapes() {
    // As `kiwi-infra sandbox up` starts it: stderr into mock.log.
    let log_path = std::env::temp_dir().join(format!("contabo-mock-{}.log", uuid::Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_contabo-mock"))
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
    })
    .await
    .unwrap();
    drop(child);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(text.contains("listening"), "the log is empty: {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "colour escapes in the log: {text:?}"
    );
}
