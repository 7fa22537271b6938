//! The `spec-proxy` binary as another program would drive it: read the URL from the first line,
//! send traffic, stop it with SIGTERM, read the summary and the exit code.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

async fn start_upstream() -> String {
    let app = Router::new().route(
        "/v1/tags",
        get(|| async {
            Json(json!({
                "_pagination": {"page": 1, "size": 10, "totalElements": 1, "totalPages": 1},
                "data": [{"tenantId": "DE", "customerId": "12345", "tagId": 7, "name": "k3s", "color": "#0A78C3"}],
                "_links": {"first": "/v1/tags?page=1", "self": "/v1/tags?page=1", "last": "/v1/tags?page=1"}
            }))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_violations_and_exits_non_zero() {
    let upstream = start_upstream().await;
    let summary_path =
        std::env::temp_dir().join(format!("spec-proxy-{}.json", uuid::Uuid::new_v4()));
    let record_path =
        std::env::temp_dir().join(format!("spec-proxy-{}.jsonl", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_spec-proxy"))
        .args([
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--violations-out",
        ])
        .arg(&summary_path)
        .arg("--record")
        .arg(&record_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let base_url = first_line.trim().to_owned();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url:?}");

    let client = reqwest::Client::new();
    let good = client
        .get(format!("{base_url}/v1/tags"))
        .bearer_auth("token-789")
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    // No x-request-id: one request violation.
    let bad = client
        .get(format!("{base_url}/v1/tags"))
        .bearer_auth("token-789")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(
        exit.code(),
        Some(1),
        "violations make the exit code non-zero"
    );

    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("violation: request GET /v1/tags (retrieveTagList) at header:x-request-id"),
        "{stderr}"
    );
    assert!(!stderr.contains("token-789"), "{stderr}");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    std::fs::remove_file(&summary_path).unwrap();
    assert_eq!(summary["requests_checked"], 2);
    assert_eq!(summary["responses_checked"], 2);
    let violations = summary["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{summary:#}");
    assert_eq!(violations[0]["direction"], "request");
    assert_eq!(violations[0]["location"], "header:x-request-id");
    assert_eq!(violations[0]["operation_id"], "retrieveTagList");

    // The recording holds both exchanges, whole, without the bearer token.
    assert_eq!(summary["exchanges_recorded"], 2);
    assert_eq!(summary["record_failures"], 0);
    let recording = std::fs::read_to_string(&record_path).unwrap();
    std::fs::remove_file(&record_path).unwrap();
    assert!(!recording.contains("token-789"), "{recording}");
    let lines: Vec<Value> = recording
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{recording}");
    for line in &lines {
        assert_eq!(line["method"], "GET");
        assert_eq!(line["target"], "/v1/tags");
        assert_eq!(line["status"], 200);
        let authorization = line["request_headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == "authorization")
            .unwrap();
        assert_eq!(authorization[1], "Bearer ***");
        let body: Value =
            serde_json::from_str(line["response_body"]["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["data"][0]["tagId"], 7);
    }
}
