//! `kiwi-infra instances` end to end: the real binary against the mock.

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::process::Command;

use kiwi_mocks::contabo::{spawn, MockConfig, MockHandle};

/// Places orders through the mock's own HTTP API, as an operator's other
/// tools would, so the listing has something to show.
async fn order(mock: &MockHandle, names: &[&str]) {
    for name in names {
        apply_support::order_directly(mock, name, "V8").await;
    }
}

fn kiwi(mock: &MockHandle, args: &[&str]) -> std::process::Output {
    let c = mock.credentials();
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(args)
        .args([
            "--api-url",
            &mock.base_url(),
            "--auth-url",
            &mock.token_url(),
        ])
        .env("CNTB_OAUTH2_CLIENT_ID", c.client_id)
        .env("CNTB_OAUTH2_CLIENT_SECRET", c.client_secret)
        .env("CNTB_OAUTH2_USER", c.username)
        .env("CNTB_OAUTH2_PASS", &c.password)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_lists_what_was_ordered_as_table_and_json() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    order(&mock, &["kiwi-acme-rtc-01", "kiwi-acme-rtc-02"]).await;

    let table = kiwi(&mock, &["instances"]);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let stdout = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{stdout}");
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[1].contains("kiwi-acme-rtc-01") && lines[1].contains("V8"),
        "{stdout}"
    );
    assert!(lines[2].contains("kiwi-acme-rtc-02"), "{stdout}");

    let json = kiwi(&mock, &["instances", "--json"]);
    assert!(json.status.success());
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let names: Vec<&str> = parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kiwi-acme-rtc-01", "kiwi-acme-rtc-02"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_exit_1_without_echoing_the_secret() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args([
            "instances",
            "--api-url",
            &mock.base_url(),
            "--auth-url",
            &mock.token_url(),
        ])
        .env("CNTB_OAUTH2_CLIENT_ID", "kiwi-sandbox")
        .env("CNTB_OAUTH2_CLIENT_SECRET", "wrong-secret-canary")
        .env("CNTB_OAUTH2_USER", "operator@kiwistack.test")
        .env("CNTB_OAUTH2_PASS", "wrong-password-canary")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("refused the API credentials"), "{all}");
    assert!(
        !all.contains("wrong-secret-canary") && !all.contains("wrong-password-canary"),
        "{all}"
    );
}

#[test]
fn missing_credentials_are_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["instances", "--api-url", "http://127.0.0.1:9"])
        .env_remove("CNTB_OAUTH2_CLIENT_ID")
        .env_remove("CNTB_OAUTH2_CLIENT_SECRET")
        .env_remove("CNTB_OAUTH2_USER")
        .env_remove("CNTB_OAUTH2_PASS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CNTB_OAUTH2_CLIENT_ID") && err.contains("CNTB_OAUTH2_PASS"),
        "{err}"
    );
}
