//! Issue 14: kiwi-infra's traffic is checked against Contabo's spec by a validator that is not
//! the project's own code.
//!
//! The real binary runs `plan`, `apply --contabo-only` (orders, tags, tag assignments, a rename
//! back) and `instances` through a recording `spec-proxy` in front of the mock; the library
//! client cancels an instance and removes a tag through the same proxy (a `--contabo-only` apply
//! leaves cancels for after the node drain, so the binary cannot reach them here). Then
//! `scripts/check_contabo_traffic.py`, built on the third-party `openapi-core` package, judges
//! every recorded request and response, and so does the project's own validator.
//!
//! The Python interpreter with `openapi-core` comes from `$KIWI_TRAFFIC_VALIDATOR`, else the
//! venv `.ci/run` makes (`/opt/kiwi-ci-venv/bin/python`). Without one these tests fail when `CI`
//! or `KIWI_REQUIRE_TRAFFIC_VALIDATOR` is set, and otherwise say they were skipped.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use crate::apply_support::{inventory_copy, run, text};
use kiwi_infra::contabo::models::{InstanceId, TagId};
use kiwi_infra::contabo::{ClientConfig, ContaboClient, Credentials, RetryPolicy};
use kiwi_infra::secret::Secret;
use kiwi_mocks::contabo::{spawn, MockConfig, MockHandle};
use kiwi_mocks::openapi::{spawn_proxy_with, ProxyConfig, ProxyHandle, Spec};
use serde_json::Value;

/// Where `.ci/run` installs the validator's venv.
const CI_VENV_PYTHON: &str = "/opt/kiwi-ci-venv/bin/python";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_contabo_traffic.py")
}

/// The Python interpreter that has `openapi-core`, or `None` (after failing the test if the
/// environment says the validator is required).
fn validator_python() -> Option<PathBuf> {
    let configured = std::env::var_os("KIWI_TRAFFIC_VALIDATOR").filter(|v| !v.is_empty());
    let candidate = configured
        .clone()
        .map_or_else(|| PathBuf::from(CI_VENV_PYTHON), PathBuf::from);
    let usable = Command::new(&candidate)
        .args(["-c", "import openapi_core, yaml"])
        .output()
        .is_ok_and(|out| out.status.success());
    if usable {
        return Some(candidate);
    }
    let why = format!(
        "no Python with openapi-core at {} ({}); run .ci/run, or make a venv, \
         `pip install -r scripts/requirements-ci.txt` and set KIWI_TRAFFIC_VALIDATOR to its python",
        candidate.display(),
        if configured.is_some() {
            "from KIWI_TRAFFIC_VALIDATOR"
        } else {
            "the .ci/run default"
        }
    );
    let required = ["CI", "KIWI_REQUIRE_TRAFFIC_VALIDATOR"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    assert!(
        !required,
        "the independent spec validator is required here (CI or KIWI_REQUIRE_TRAFFIC_VALIDATOR is set), but there is {why}"
    );
    eprintln!("SKIPPED: the independent spec check did not run: {why}");
    None
}

/// Runs the validator on `recordings`; returns its output.
fn validate(python: &Path, recordings: &[&Path], extra: &[&str]) -> Output {
    Command::new(python)
        .arg(script())
        .args(extra)
        .args(recordings)
        .env("KIWI_CONTABO_SPEC", Spec::default_path())
        .output()
        .unwrap()
}

/// `kiwi-infra ARGS` against the mock, through the proxy.
fn kiwi(proxy: &ProxyHandle, mock: &MockHandle, inventory: &Path, args: &[&str]) -> Command {
    let c = mock.credentials();
    let base = proxy.base_url();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"));
    cmd.args(args)
        .arg("--inventory")
        .arg(inventory)
        .args(["--api-url", base])
        .args([
            "--auth-url",
            &format!("{base}/auth/realms/contabo/protocol/openid-connect/token"),
        ])
        .env("CNTB_OAUTH2_CLIENT_ID", c.client_id)
        .env("CNTB_OAUTH2_CLIENT_SECRET", c.client_secret)
        .env("CNTB_OAUTH2_USER", c.username)
        .env("CNTB_OAUTH2_PASS", &c.password)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env("KIWI_RATE_LIMIT", "100")
        .env("KIWI_INTERNAL_POLL_MS", "30")
        .env("KIWI_UNLISTED_ORDER_WAIT", "300ms")
        .env("KIWI_INTERNAL_START_GRACE_MS", "300")
        .env("KIWI_STATUS_TIMEOUT", "60s")
        .stdin(std::process::Stdio::null());
    cmd
}

/// The library client, against `api_url` (the proxy, or the mock directly).
fn client(mock: &MockHandle, api_url: &str, token_url: &str) -> ContaboClient {
    let c = mock.credentials();
    let mut config = ClientConfig::new(Credentials {
        client_id: c.client_id,
        client_secret: Secret::new(c.client_secret),
        username: c.username,
        password: Secret::new(c.password),
    });
    config.api_url = api_url.to_owned();
    config.auth_url = token_url.to_owned();
    config.requests_per_second = 1000.0;
    config.retry = RetryPolicy::immediate(3);
    config.request_timeout = Duration::from_secs(10);
    ContaboClient::new(config).unwrap()
}

/// `METHOD path` of each recorded exchange, with numbers replaced by `{n}`.
fn recorded_routes(recording: &str) -> Vec<String> {
    recording
        .lines()
        .map(|line| {
            let exchange: Value = serde_json::from_str(line).unwrap();
            let target = exchange["target"].as_str().unwrap();
            let path = target.split('?').next().unwrap();
            let shape: Vec<&str> = path
                .split('/')
                .map(|segment| {
                    if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                        "{n}"
                    } else {
                        segment
                    }
                })
                .collect();
            format!(
                "{} {}",
                exchange["method"].as_str().unwrap(),
                shape.join("/")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiwi_infra_traffic_passes_an_independent_openapi_validator() {
    let Some(python) = validator_python() else {
        return;
    };
    let mock = spawn(MockConfig {
        provisioning_delay: Duration::from_millis(150),
        installing_delay: Duration::from_millis(150),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recording_path = dir.path().join("traffic.jsonl");
    let proxy = spawn_proxy_with(ProxyConfig {
        upstream_base_url: mock.base_url(),
        listen: ([127, 0, 0, 1], 0).into(),
        spec: Arc::new(Spec::load_default().unwrap()),
        on_violation: None,
        record: Some(recording_path.clone()),
    })
    .await
    .unwrap();
    let (_inventory_dir, inventory) = inventory_copy();
    // One customer on a private network: orders with the add-on, the network's creation, the
    // assignments and the reinstalls that wire the NICs go through the proxy too.
    let edit = |file: &str, from: &str, to: &str| {
        let path = inventory.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "customers/stadtwerke-nord.toml",
        "tier = \"mesh\"\n",
        "tier = \"mesh\"\nprivate_network = true\n",
    );
    edit(
        "kiwi.toml",
        "[prices]\n",
        "[prices]\nprivate_networking = \"2.99\"\n",
    );

    let plan = run(kiwi(&proxy, &mock, &inventory, &["plan"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let apply = run(kiwi(
        &proxy,
        &mock,
        &inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));

    // Someone renames a machine in the Contabo panel (not through the proxy); apply renames it
    // back.
    let renamed = mock
        .instances()
        .into_iter()
        .find(|i| i.display_name == "kiwi-core-general-01")
        .unwrap();
    client(&mock, &mock.base_url(), &mock.token_url())
        .rename_instance(InstanceId(renamed.instance_id), "renamed-in-the-panel")
        .await
        .unwrap();
    let again = run(kiwi(
        &proxy,
        &mock,
        &inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        mock.instance(renamed.instance_id).unwrap().display_name,
        "kiwi-core-general-01",
        "{}",
        text(&again)
    );

    let instances = run(kiwi(&proxy, &mock, &inventory, &["instances"])).await;
    assert_eq!(instances.status.code(), Some(0), "{}", text(&instances));

    // What the binary cannot reach here: a cancel (after a drain, with --allow-destroy) and a
    // tag removal, through the same proxy with the same client code.
    let base = proxy.base_url().to_owned();
    let through_proxy = client(
        &mock,
        &base,
        &format!("{base}/auth/realms/contabo/protocol/openid-connect/token"),
    );
    let victim = mock
        .instances()
        .into_iter()
        .find(|i| i.display_name == "kiwi-core-general-03")
        .unwrap();
    let victim_id = InstanceId(victim.instance_id);
    let tag = through_proxy
        .list_tags()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "kiwi-managed")
        .map(|t| t.tag_id)
        .unwrap_or(TagId(-1));
    assert!(tag.0 >= 0, "no kiwi-managed tag was created");
    through_proxy.unassign_tag(tag, victim_id).await.unwrap();
    through_proxy.cancel_instance(victim_id).await.unwrap();
    through_proxy.get_instance(victim_id).await.unwrap();

    let (written, failed) = proxy.recorded();
    let own_violations = proxy.violations();
    proxy.shutdown().await;
    assert_eq!(failed, 0, "exchanges missing from the recording");

    let recording = std::fs::read_to_string(&recording_path).unwrap();
    assert_eq!(recording.lines().count() as u64, written);
    // The recording holds no credential.
    let c = mock.credentials();
    for secret in [c.client_secret, c.password]
        .into_iter()
        .chain(mock.issued_tokens())
    {
        assert!(
            !recording.contains(&secret),
            "a credential reached the recording"
        );
    }
    // Cloud-init user data carries each node's SSH host private key: masked in the recording, to
    // the same length.
    assert!(
        !recording.contains("PRIVATE KEY"),
        "a host private key reached the recording"
    );
    let masked_user_data = recording
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["method"] == "POST" && e["target"] == "/v1/compute/instances")
        .filter_map(|e| {
            let body: Value = serde_json::from_str(e["request_body"]["text"].as_str()?).ok()?;
            body["userData"].as_str().map(str::to_owned)
        })
        .collect::<Vec<_>>();
    assert!(
        !masked_user_data.is_empty()
            && masked_user_data
                .iter()
                .all(|u| u.len() > 100 && u.bytes().all(|b| b == b'*')),
        "orders' userData is not masked as expected: {masked_user_data:?}"
    );
    // It covers what the test meant to exercise, so a clean verdict means something.
    let routes = recorded_routes(&recording);
    for expected in [
        "POST /auth/realms/contabo/protocol/openid-connect/token",
        "GET /v1/compute/instances",
        "GET /v1/tags",
        "POST /v1/compute/instances",
        "POST /v1/tags",
        "POST /v1/tags/{n}/assignments/instance/{n}",
        "PATCH /v1/compute/instances/{n}",
        "DELETE /v1/tags/{n}/assignments/instance/{n}",
        "POST /v1/compute/instances/{n}/cancel",
        "GET /v1/compute/instances/{n}",
        "GET /v1/private-networks",
        "POST /v1/private-networks",
        "POST /v1/private-networks/{n}/instances/{n}",
        "PUT /v1/compute/instances/{n}",
    ] {
        assert!(
            routes.iter().any(|route| route == expected),
            "the recording has no {expected}: {routes:#?}"
        );
    }

    let verdict = validate(&python, &[&recording_path], &["--min-exchanges", "40"]);
    let stdout = String::from_utf8_lossy(&verdict.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    let checked: u64 = summary
        .strip_prefix("checked ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Both verdicts in one message: the project's own validator saw the same traffic.
    let mut problems = Vec::new();
    if !(verdict.status.success() && checked >= 40) {
        problems.push(format!(
            "the independent validator (openapi-core) found kiwi-infra's traffic breaking the spec \
             (exit {:?}, {checked} exchanges checked):\n{stdout}\n{}",
            verdict.status.code(),
            String::from_utf8_lossy(&verdict.stderr)
        ));
    }
    if !own_violations.is_empty() {
        problems.push(format!(
            "the project's own validator found {} violations:\n{}",
            own_violations.len(),
            own_violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// One recorded exchange as `spec-proxy --record` writes it.
fn exchange(method: &str, target: &str, extra_headers: &[(&str, &str)], body: &str) -> String {
    let mut headers = vec![
        ("authorization", "Bearer ***"),
        ("x-request-id", "04e0f898-37b4-48bc-a794-1a57abe6aa31"),
        ("x-trace-id", "run-1"),
    ];
    headers.extend_from_slice(extra_headers);
    let tag_list = serde_json::json!({
        "_pagination": {"page": 1, "size": 10, "totalElements": 1, "totalPages": 1},
        "data": [{"tenantId": "DE", "customerId": "12345", "tagId": 1, "name": "kiwi-managed", "color": "#0A78C3"}],
        "_links": {"first": "/v1/tags?page=1", "self": "/v1/tags?page=1", "last": "/v1/tags?page=1"}
    });
    let (status, response) = if method == "GET" {
        (200, tag_list.to_string())
    } else {
        // createAssignment's documented answer.
        (
            201,
            serde_json::json!({
                "data": [{"tenantId": "DE", "customerId": "12345", "tagId": 1, "tagName": "kiwi-managed",
                          "resourceType": "instance", "resourceId": "2", "resourceName": "kiwi-a-general-01"}],
                "_links": {"self": "/v1/tags/1/assignments/instance/2", "tag": "/v1/tags/1",
                           "_resource": "/v1/compute/instances/2"}
            })
            .to_string(),
        )
    };
    serde_json::json!({
        "method": method,
        "target": target,
        "request_headers": headers,
        "request_body": if body.is_empty() { Value::Null } else { serde_json::json!({"text": body}) },
        "status": status,
        "response_headers": [["content-type", "application/json"]],
        "response_body": {"text": response},
    })
    .to_string()
}

#[test]
fn the_independent_validator_catches_a_body_an_undeclared_query_and_an_undeclared_x_header() {
    let Some(python) = validator_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };

    // The same exchanges done right pass, so the failures below are the seeded ones.
    let clean = write(
        "clean.jsonl",
        &[
            exchange("GET", "/v1/tags?page=1&size=100", &[], ""),
            exchange("POST", "/v1/tags/1/assignments/instance/2", &[], ""),
        ],
    );
    let verdict = validate(&python, &[&clean], &[]);
    assert!(verdict.status.success(), "{}", text(&verdict));

    // issue 14: a JSON body where createAssignment defines none (openapi-core ignores it).
    let body = write(
        "body.jsonl",
        &[exchange(
            "POST",
            "/v1/tags/1/assignments/instance/2",
            &[("content-type", "application/json")],
            "{}",
        )],
    );
    // A filter the list does not declare (a server ignores it, so the list silently widens).
    let query = write(
        "query.jsonl",
        &[exchange(
            "GET",
            "/v1/tags?page=1&nameContains=kiwi",
            &[],
            "",
        )],
    );
    // An extension header the operation does not declare.
    let header = write(
        "header.jsonl",
        &[exchange(
            "GET",
            "/v1/tags",
            &[("x-idempotency-key", "k")],
            "",
        )],
    );
    for (path, expected) in [
        (
            &body,
            "violation: request POST /v1/tags/1/assignments/instance/2 (createAssignment)",
        ),
        (&query, "at query:nameContains:"),
        (&header, "at header:x-idempotency-key:"),
    ] {
        let verdict = validate(&python, &[path], &[]);
        let stdout = String::from_utf8_lossy(&verdict.stdout);
        assert_eq!(verdict.status.code(), Some(1), "{}", text(&verdict));
        assert!(stdout.contains(expected), "{}", text(&verdict));
        assert!(stdout.contains("1 violations"), "{}", text(&verdict));
    }
    let body_verdict = validate(&python, &[&body], &[]);
    assert!(
        String::from_utf8_lossy(&body_verdict.stdout)
            .contains("defines no request body, but one was sent"),
        "{}",
        text(&body_verdict)
    );

    // A schema violation is openapi-core's own finding: x-request-id is not a UUID.
    let bad_id = write(
        "bad_id.jsonl",
        &[exchange("GET", "/v1/tags", &[], "")
            .replace("04e0f898-37b4-48bc-a794-1a57abe6aa31", "not-a-uuid")],
    );
    let verdict = validate(&python, &[&bad_id], &[]);
    assert_eq!(verdict.status.code(), Some(1), "{}", text(&verdict));
    assert!(
        String::from_utf8_lossy(&verdict.stdout).contains("x-request-id"),
        "{}",
        text(&verdict)
    );

    // A recording that is not one is a clear error naming file and line, not a pass.
    let broken = write(
        "broken.jsonl",
        &[
            exchange("GET", "/v1/tags", &[], ""),
            "{\"method\": 1}".to_owned(),
        ],
    );
    let verdict = validate(&python, &[&broken], &[]);
    assert_eq!(verdict.status.code(), Some(2), "{}", text(&verdict));
    assert!(
        String::from_utf8_lossy(&verdict.stderr).contains("broken.jsonl:2"),
        "{}",
        text(&verdict)
    );
    // And an empty recording checks nothing, which is not a pass either.
    let empty = write("empty.jsonl", &[]);
    let verdict = validate(&python, &[&empty], &[]);
    assert_eq!(verdict.status.code(), Some(1), "{}", text(&verdict));
}
