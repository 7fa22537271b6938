//! Exit codes as a script sees them: 1 for what the operator can fix
//! (usage, inventory, credentials, local files), 2 only for "changes" from
//! `plan --detailed-exitcode` (and "pending" from apply), 3 for Contabo,
//! nodes or bugs. Issue 13, "Exit codes".

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::process::{Command, Output, Stdio};

use kiwi_mocks::contabo::{spawn, MockConfig};

fn kiwi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_usage_error_exits_1_not_2() {
    for args in [
        &["plan", "--detailed-exitcod"][..],
        &["frobnicate"],
        &[],
        &["plan", "--rate-limit"],
        &["kubeconfig"],
        &["sandbox"],
        &["--color", "sometimes", "validate"],
    ] {
        let out = kiwi(args);
        let text = apply_support::text(&out);
        assert_eq!(out.status.code(), Some(1), "kiwi-infra {args:?}: {text}");
        assert!(
            !out.stderr.is_empty(),
            "kiwi-infra {args:?} says why: {text}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version"],
        &["plan", "--help"],
        &["help", "apply"],
    ] {
        let out = kiwi(args);
        let text = apply_support::text(&out);
        assert_eq!(out.status.code(), Some(0), "kiwi-infra {args:?}: {text}");
        assert!(!out.stdout.is_empty(), "kiwi-infra {args:?}: {text}");
    }
}

/// `kiwi-infra apply` whose inventory's `.kiwi` state folder is unusable,
/// with credentials that are never used (the lock comes first).
fn apply_with_state(prepare: impl FnOnce(&std::path::Path)) -> Output {
    let (_dir, inventory) = apply_support::inventory_copy();
    prepare(&inventory.join(".kiwi"));
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["apply", "--auto-approve", "--api-url", "http://127.0.0.1:9"])
        .arg("--inventory")
        .arg(&inventory)
        .env("CNTB_OAUTH2_CLIENT_ID", "x")
        .env("CNTB_OAUTH2_CLIENT_SECRET", "x")
        .env("CNTB_OAUTH2_USER", "x")
        .env("CNTB_OAUTH2_PASS", "x")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_local_file_problem_exits_1() {
    // `.kiwi` is a file, not a folder.
    let out = apply_with_state(|state| std::fs::write(state, "").unwrap());
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(".kiwi"), "{text}");

    // `.kiwi` may be written by anyone: the order journal could be forged.
    let out = apply_with_state(|state| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(state).unwrap();
        std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o777)).unwrap();
    });
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("chmod 700"), "{text}");

    // man pages into a path under a regular file.
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = kiwi(&["man", "--out", &format!("{}/pages", file.path().display())]);
    assert_eq!(out.status.code(), Some(1), "{}", apply_support::text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_exit_1_from_plan_too() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (_dir, inventory) = apply_support::inventory_copy();
    let mut cmd = apply_support::command(&mock, &inventory, &["plan", "--detailed-exitcode"]);
    cmd.env("CNTB_OAUTH2_PASS", "not-the-password");
    let out = apply_support::run(cmd).await;
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("refused the API credentials"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

/// Every knob kind, set through its variable to a value it cannot take:
/// a count, a wait, a test-only timing in milliseconds.
const BAD_VARIABLES: [(&str, &str); 9] = [
    ("KIWI_CONCURRENCY", "0"),
    ("KIWI_NODE_CONCURRENCY", "-1"),
    ("KIWI_STATUS_TIMEOUT", "soon"),
    ("KIWI_UNLISTED_ORDER_WAIT", "1.5s"),
    ("KIWI_NODE_READY_TIMEOUT", "0s"),
    ("KIWI_NODE_READY_TIMEOUT", "10d"),
    ("KIWI_INTERNAL_POLL_MS", "0"),
    ("KIWI_INTERNAL_START_GRACE_MS", "30ms"),
    ("KIWI_INTERNAL_NODE_POLL_MS", "1e3"),
];

#[test]
fn a_knob_variable_with_a_bad_value_exits_1_naming_it_for_every_command() {
    let inventory = concat!(env!("CARGO_MANIFEST_DIR"), "/inventory");
    for (name, value) in BAD_VARIABLES {
        for args in [
            &["validate", "--inventory", inventory][..],
            &[
                "apply",
                "--auto-approve",
                "--inventory",
                inventory,
                "--api-url",
                "http://127.0.0.1:9",
            ],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
                .args(args)
                .env(name, value)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let text = apply_support::text(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}={value} {args:?}: {text}"
            );
            assert!(text.contains(name), "{name}={value} {args:?}: {text}");
            assert!(!text.contains("panicked"), "{name}={value}: {text}");
        }
    }
}

#[test]
fn a_knob_flag_with_a_bad_value_exits_1_naming_it() {
    for arg in [
        "--concurrency=0",
        "--concurrency=many",
        "--node-concurrency=-4",
        "--status-timeout=0",
        "--status-timeout=1.5m",
        "--unlisted-order-wait=10d",
        "--unlisted-order-wait=",
        "--node-ready-timeout=-5s",
        "--node-ready-timeout=99999999999999999999999s",
    ] {
        let out = kiwi(&["apply", "--auto-approve", arg]);
        let text = apply_support::text(&out);
        assert_eq!(out.status.code(), Some(1), "{arg}: {text}");
        let flag = arg.split('=').next().unwrap();
        assert!(text.contains(flag), "{arg}: {text}");
    }
}

#[test]
fn a_knob_flag_is_read_instead_of_its_variable() {
    // The variable is fine, the flag is not: the flag is what counts.
    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["apply", "--auto-approve", "--concurrency", "0"])
        .env("KIWI_CONCURRENCY", "4")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("--concurrency"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knob_flag_beats_its_variable_and_the_variable_beats_the_default() {
    let mock = spawn(MockConfig {
        provisioning_delay: std::time::Duration::from_millis(20),
        installing_delay: std::time::Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inventory) = apply_support::inventory_copy();
    let mut cmd = apply_support::command(
        &mock,
        &inventory,
        &[
            "-vv",
            "apply",
            "--auto-approve",
            "--contabo-only",
            "--concurrency",
            "2",
            "--status-timeout",
            "45s",
        ],
    );
    cmd.env("KIWI_CONCURRENCY", "5")
        .env("KIWI_NODE_CONCURRENCY", "7")
        .env("KIWI_UNLISTED_ORDER_WAIT", "250ms");
    let out = apply_support::run(cmd).await;
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The resolved settings, as logged at -vv.
    for wanted in [
        "concurrency: Some(2)",
        "node_concurrency: Some(7)",
        "status_timeout: Some(45s)",
        "unlisted_order_wait: Some(250ms)",
    ] {
        assert!(text.contains(wanted), "{wanted}: {text}");
    }
}

#[test]
fn a_log_filter_that_does_not_parse_exits_1_naming_rust_log_instead_of_being_ignored() {
    let inventory = concat!(env!("CARGO_MANIFEST_DIR"), "/inventory");
    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["validate", "--inventory", inventory])
        .env("RUST_LOG", "kiwi_infra=nonsense[")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("RUST_LOG"), "{text}");
    let fine = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["validate", "--inventory", inventory])
        .env("RUST_LOG", "warn,kiwi_infra::apply=debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        fine.status.code(),
        Some(0),
        "{}",
        apply_support::text(&fine)
    );
}
