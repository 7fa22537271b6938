//! Shared helpers of the `apply_*` integration tests: a copy of the example
//! inventory per test (the lock and the order journal live in it), and the
//! real `kiwi-infra` binary pointed at an in-process mock, and orders placed
//! around the tool through the mock's own API. The `cli_*` tests use it too.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use kiwi_mocks::contabo::MockHandle;

/// The example inventory's 15 slot names.
pub fn slot_names() -> BTreeSet<String> {
    let desired =
        kiwi_infra::inventory::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"))
            .unwrap();
    desired
        .clusters
        .iter()
        .flat_map(|c| {
            c.pools.iter().flat_map(move |p| {
                (1..=p.count).map(move |i| kiwi_infra::inventory::slot_name(&c.name, &p.name, i))
            })
        })
        .collect()
}

/// A fresh copy of `inventory/` in a temporary directory, with the Core
/// control plane moved from its documentation addresses (203.0.113.x) to
/// loopback ones (127.0.31.x): tests may only ever reach loopback.
pub fn inventory_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("inventory");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        &target,
    );
    let main = target.join("kiwi.toml");
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("203.0.113.1", "127.0.31.")
        .replace("api.core.kiwistack.io:6443", "127.0.31.1:6443");
    assert!(
        !text.contains("203.0.113."),
        "a non-loopback address is left"
    );
    std::fs::write(&main, text).unwrap();
    (dir, target)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".kiwi" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// `kiwi-infra ARGS` against `mock`, as an operator would run it: the
/// mock's URLs and credentials, no colour, no log filter from outside.
pub fn kiwi_command(mock: &MockHandle, args: &[&str]) -> Command {
    let c = mock.credentials();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"));
    cmd.args(args)
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
        .env_remove("RUST_LOG")
        .env("KIWI_RATE_LIMIT", "100")
        .stdin(Stdio::null());
    cmd
}

/// `kiwi-infra` against `mock` and `inventory`, with short waits.
pub fn command(mock: &MockHandle, inventory: &Path, args: &[&str]) -> Command {
    let mut cmd = kiwi_command(mock, args);
    cmd.arg("--inventory")
        .arg(inventory)
        .env("KIWI_INTERNAL_POLL_MS", "30")
        .env("KIWI_UNLISTED_ORDER_WAIT", "300ms")
        .env("KIWI_INTERNAL_START_GRACE_MS", "300")
        .env("KIWI_STATUS_TIMEOUT", "60s");
    cmd
}

/// `kiwi-infra apply --auto-approve --contabo-only` against `mock`, to completion.
pub async fn apply_contabo_side(mock: &MockHandle, inventory: &Path) -> Output {
    run(command(
        mock,
        inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await
}

/// Slots an apply stopped because an order's outcome is unknown (it says
/// `kiwi-infra apply --reorder SLOT`), after checking, as the operator is
/// told to, that Contabo really has no instance of that name.
pub fn confirmed_unresolved(mock: &MockHandle, out: &Output) -> BTreeSet<String> {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let slots: BTreeSet<String> = all
        .split("order it with `kiwi-infra apply --reorder ")
        .skip(1)
        .filter_map(|rest| {
            let slot: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            slot.starts_with("kiwi-").then_some(slot)
        })
        .collect();
    let live = live_names(mock);
    for slot in &slots {
        assert!(
            !live.contains(slot),
            "apply stopped {slot} as unresolved, but Contabo has it: it should have found it\n{}",
            text(out)
        );
    }
    slots
}

/// `kiwi-infra apply ARGS` run as an operator would: when it stops slots
/// whose order's outcome is unknown, the operator checks Contabo and
/// confirms each with `--reorder SLOT`; when a step failed (a passing
/// fault), the operator runs it again, as the summary says. At most four
/// runs; `envs` are set on every run. Every run's output, in order.
pub async fn apply_as_operator(
    mock: &MockHandle,
    inventory: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Vec<Output> {
    let mut outputs: Vec<Output> = Vec::new();
    let mut confirmed: BTreeSet<String> = BTreeSet::new();
    for _ in 0..4 {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        for slot in &confirmed {
            all.push("--reorder".into());
            all.push(slot.clone());
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut cmd = command(mock, inventory, &refs);
        cmd.envs(envs.iter().copied());
        let out = run(cmd).await;
        let more = confirmed_unresolved(mock, &out);
        let code = out.status.code();
        // Each round's stopped slots were checked against the mock (it has
        // none of them), so confirming them again is what the operator does.
        let again = code == Some(3) || (code == Some(2) && !more.is_empty());
        confirmed.extend(more);
        outputs.push(out);
        if !again {
            break;
        }
    }
    outputs
}

/// Runs `kiwi-infra` to completion (off the async runtime's threads).
pub async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Starts `kiwi-infra` without waiting.
pub fn start(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Text of stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Display names of the mock's instances that are not cancelled, sorted.
pub fn live_names(mock: &MockHandle) -> Vec<String> {
    let mut names: Vec<String> = mock
        .instances()
        .into_iter()
        .filter(|i| i.cancel_date.is_none())
        .map(|i| i.display_name)
        .collect();
    names.sort();
    names
}

/// Every slot has exactly one instance, and nothing else exists.
pub fn assert_each_slot_once(mock: &MockHandle) {
    let names = live_names(mock);
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(
        names.len(),
        unique.len(),
        "a slot was ordered twice: {names:?}"
    );
    assert_eq!(unique, slot_names(), "instances do not match the slots");
}

/// A bearer token for the mock's own API, as a person with panel access
/// (or a script of theirs) would use it.
pub async fn token(mock: &MockHandle) -> String {
    let c = mock.credentials();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(mock.token_url())
        .form(&[
            ("grant_type", "password"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

/// Places an order through the mock's own HTTP API, as an apply that was
/// killed before it could read the answer would have.
pub async fn order_directly(mock: &MockHandle, name: &str, product: &str) -> i64 {
    let http = reqwest::Client::new();
    let token = token(mock).await;
    let images: serde_json::Value = http
        .get(format!(
            "{}/v1/compute/images?name=ubuntu-24.04",
            mock.base_url()
        ))
        .bearer_auth(&token)
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image = images["data"][0]["imageId"].as_str().unwrap();
    let created: serde_json::Value = http
        .post(format!("{}/v1/compute/instances", mock.base_url()))
        .bearer_auth(&token)
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({
            "productId": product, "region": "EU", "imageId": image,
            "period": 1, "displayName": name
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["data"][0]["instanceId"].as_i64().unwrap()
}
