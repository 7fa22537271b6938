//! `kiwi-infra plan` and `validate` as an operator runs them: the real binary,
//! the example inventory, the Contabo mock behind the spec validator.

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiwi_infra::contabo::models::{CreateInstance, Period, Region};
use kiwi_infra::contabo::{ClientConfig, ContaboClient, Credentials, RetryPolicy};
use kiwi_infra::secret::Secret;
use kiwi_mocks::contabo::{spawn, MockConfig, MockHandle};
use kiwi_mocks::openapi::{spawn_proxy, ProxyHandle};

const SLOTS: usize = 15;

fn example_inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory")
}

/// Runs the binary on a copy of the example inventory whose Core control
/// plane is on loopback addresses (plan reads clusters over SSH).
fn kiwi(proxy: &ProxyHandle, mock: &MockHandle, args: &[&str]) -> Output {
    let c = mock.credentials();
    let base = proxy.base_url();
    let (_dir, inventory) = apply_support::inventory_copy();
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(args)
        .arg("--inventory")
        .arg(&inventory)
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
        .output()
        .unwrap()
}

fn client(mock: &MockHandle) -> ContaboClient {
    let c = mock.credentials();
    let mut config = ClientConfig::new(Credentials {
        client_id: c.client_id,
        client_secret: Secret::new(c.client_secret),
        username: c.username,
        password: Secret::new(c.password),
    });
    config.api_url = mock.base_url();
    config.auth_url = mock.token_url();
    config.requests_per_second = 1000.0;
    config.retry = RetryPolicy::immediate(3);
    ContaboClient::new(config).unwrap()
}

/// Orders `name` by hand, tagged as kiwi-infra would tag it.
async fn order_by_hand(client: &ContaboClient, name: &str, product: &str, tags: &[&str]) {
    let image = client.find_images_by_name("ubuntu-24.04").await.unwrap()[0]
        .image_id
        .clone();
    let created = client
        .create_instance(CreateInstance {
            product_id: product.into(),
            region: Region::Eu,
            image_id: image,
            period: Period::OneMonth,
            display_name: name.into(),
            ssh_keys: vec![],
            user_data: None,
            default_user: None,
            add_ons: None,
        })
        .await
        .unwrap();
    let existing = client.list_tags().await.unwrap();
    for tag in tags {
        let id = match existing.iter().find(|t| t.name == *tag) {
            Some(t) => t.tag_id,
            None => client.create_tag(tag, "#0A78C3").await.unwrap(),
        };
        client.assign_tag(id, created.instance_id).await.unwrap();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_spec_clean(proxy: &ProxyHandle) {
    let v = proxy.violations();
    assert!(v.is_empty(), "spec violations: {v:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_account_gets_every_node_ordered_with_prices() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let proxy = spawn_proxy(&mock.base_url()).await.unwrap();

    let out = kiwi(&proxy, &mock, &["plan", "--detailed-exitcode"]);

    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert_eq!(text.matches("  + order kiwi-").count(), SLOTS, "{text}");
    assert!(text.contains("+ order kiwi-core-realtime-02"), "{text}");
    assert!(
        text.contains("V9 (VDS M), class vds, region EU, €49.90/month"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 15 to order (+€304.99/month)"),
        "{text}"
    );
    assert_eq!(mock.instances().len(), 0, "plan orders nothing");
    assert_spec_clean(&proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_saved_plans_hold_the_same_steps() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let proxy = spawn_proxy(&mock.base_url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("plan.json");

    let json = kiwi(&proxy, &mock, &["plan", "--json"]);
    let out = kiwi(&proxy, &mock, &["plan", "--out", saved.to_str().unwrap()]);

    assert!(json.status.success() && out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        plan["format_version"],
        kiwi_infra::plan::PLAN_FORMAT_VERSION
    );
    assert_eq!(plan["format_version"], 3);
    let orders = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "order_instance")
        .count();
    assert_eq!(orders, SLOTS);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        file["plan"], plan,
        "the saved plan is the plan that was shown"
    );
    assert!(file["observed_fingerprint"].as_str().unwrap().len() >= 32);
    assert!(
        stdout(&out).contains("kiwi-infra apply"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_ordered_by_hand_leave_the_plan_and_a_double_order_is_reported() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let proxy = spawn_proxy(&mock.base_url()).await.unwrap();
    let c = client(&mock);
    let owned = ["kiwi-managed", "kiwi-cluster-core", "kiwi-class-vds"];
    order_by_hand(&c, "kiwi-core-realtime-01", "V9", &owned).await;
    order_by_hand(&c, "kiwi-core-realtime-02", "V9", &owned).await;
    order_by_hand(&c, "kiwi-core-realtime-02", "V9", &owned).await;

    let out = kiwi(&proxy, &mock, &["plan"]);

    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("+ order kiwi-core-realtime-01"), "{text}");
    assert!(!text.contains("+ order kiwi-core-realtime-02"), "{text}");
    assert_eq!(text.matches("  + order kiwi-").count(), SLOTS - 2, "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("kiwi-core-realtime-02") && l.contains("!"))
        .unwrap_or_else(|| panic!("no duplicate warning in:\n{text}"));
    let ids: Vec<String> = mock
        .instances()
        .iter()
        .filter(|i| i.display_name == "kiwi-core-realtime-02")
        .map(|i| i.instance_id.to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let section = &text[text.find(warning).unwrap()..];
    for id in &ids {
        assert!(
            section.contains(id.as_str()),
            "duplicate warning names instance {id}:\n{text}"
        );
    }
    assert_spec_clean(&proxy);
}

#[test]
fn validate_accepts_the_example_inventory() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["validate", "--inventory"])
        .arg(example_inventory())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("valid"));
}

#[test]
fn validate_reports_every_error_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example_inventory(), dir.path());
    let main = dir.path().join("kiwi.toml");
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("count = 2", "count = 2\ncolour = \"blue\"");
    std::fs::write(&main, text).unwrap();
    let customer = std::fs::read_dir(dir.path().join("customers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("tier = \"mesh\"")
        })
        .unwrap();
    let text = std::fs::read_to_string(&customer)
        .unwrap()
        .replacen("count = 3", "count = 2", 1);
    std::fs::write(&customer, text).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["validate", "--inventory"])
        .arg(dir.path())
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line_of = |file: &Path, needle: &str| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    };
    let colour_at = format!("kiwi.toml:{}:", line_of(&main, "colour"));
    assert!(err.contains(&colour_at) && err.contains("colour"), "{err}");
    let customer_name = customer.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(customer_name),
        "the even server count is reported too:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
