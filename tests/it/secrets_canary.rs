//! No secret leaves through output, logs or files: `plan` (with a saved plan
//! file) and `apply` run at the most verbose level with canary credentials,
//! and nothing they printed or wrote contains a credential, an access token
//! the mock issued, or a host private key the tool generated.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::apply_support::{command, inventory_copy, run, text};
use kiwi_mocks::contabo::{spawn, Credentials, MockConfig};

const CLIENT_SECRET: &str = "canary-client-secret-5d1e9a";
const PASSWORD: &str = "canary-api-password-c07b42";

/// Every file below `dir`, as text.
fn files_below(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_below(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push((path.display().to_string(), text));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_at_trace_level_print_and_write_no_secret() {
    let mock = spawn(MockConfig {
        credentials: Credentials {
            client_secret: CLIENT_SECRET.into(),
            password: PASSWORD.into(),
            ..Credentials::default()
        },
        provisioning_delay: std::time::Duration::from_millis(20),
        installing_delay: std::time::Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (dir, inventory) = inventory_copy();
    let plan_file = dir.path().join("plan.json");

    let mut outputs = Vec::new();
    for args in [
        vec![
            "-vvv",
            "plan",
            "--contabo-only",
            "--out",
            plan_file.to_str().unwrap(),
        ],
        vec!["-vvv", "apply", "--auto-approve", "--contabo-only"],
        vec!["-vvv", "plan", "--contabo-only", "--json"],
    ] {
        let mut cmd = command(&mock, &inventory, &args);
        cmd.env("RUST_LOG", "trace");
        let out = run(cmd).await;
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(2),
            "{}",
            text(&out)
        );
        outputs.push(text(&out));
    }

    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), PASSWORD.into()];
    let tokens = mock.issued_tokens();
    assert!(!tokens.is_empty(), "the runs authenticated");
    secrets.extend(tokens);
    for instance in mock.instances() {
        let user_data = instance.user_data.unwrap_or_default();
        let key: Vec<String> = user_data
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.contains("BEGIN OPENSSH PRIVATE KEY"))
            .skip(1)
            .take_while(|l| !l.contains("END OPENSSH PRIVATE KEY"))
            .map(str::to_string)
            .collect();
        assert!(!key.is_empty(), "{} has a host key", instance.display_name);
        secrets.extend(key);
    }
    assert_eq!(mock.instances().len(), 15);

    let printed = outputs.join("\n");
    assert!(
        printed.contains("TRACE") || printed.len() > 20_000,
        "trace logging was on"
    );
    let mut places: Vec<(String, String)> = vec![("output".into(), printed)];
    places.extend(files_below(&inventory));
    places.push((
        plan_file.display().to_string(),
        std::fs::read_to_string(&plan_file).unwrap(),
    ));
    for (place, content) in &places {
        for secret in secrets.iter().filter(|s| s.len() >= 16) {
            assert!(
                !content.contains(secret.as_str()),
                "a secret ({:.10}…) is in {place}",
                secret
            );
        }
    }
}
