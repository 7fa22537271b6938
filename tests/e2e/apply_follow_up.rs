//! One apply finishes the job, and leaves nothing running behind it: the
//! real `kiwi-infra` binary against the Contabo mock with simulated nodes.
//!
//! - An order Contabo held (`product_not_available`) and then released is
//!   waited for, joined and labelled by the same apply that resumes it,
//!   however quickly Contabo provisions it after the release: the join
//!   could not be in the plan made while the machine was not running.
//! - After every command, no process kiwi-infra started (an OpenSSH master
//!   above all) is still running, a reinstall included.
//!
//! Needs root (mount namespaces, port 22 on loopback).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::apply_support::{inventory_copy, run, text};
use crate::cluster_support::{label, loopback_range, ready, world_with, World, K3S};
use kiwi_mocks::contabo::MockConfig;

const NEW_AGENT: &str = "kiwi-stadtwerke-nord-general-02";
const SERVER: &str = "kiwi-stadtwerke-nord-server-01";

/// Every process whose command line names `dir`: ssh masters keep their
/// generated configuration and control socket there.
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Runs `cmd` with its own temporary directory (where kiwi-infra puts its
/// SSH control sockets), then checks that nothing it started survives.
async fn run_leaving_nothing(mut cmd: Command) -> std::process::Output {
    let tmp = tempfile::Builder::new()
        .prefix("kt")
        .tempdir_in("/tmp")
        .unwrap();
    cmd.env("TMPDIR", tmp.path());
    let out = run(cmd).await;
    let left = processes_naming(tmp.path());
    assert!(
        left.is_empty(),
        "processes outlived the command:\n{}\n{}",
        left.join("\n"),
        text(&out)
    );
    out
}

async fn mesh_nodes(w: &World) -> std::collections::BTreeMap<String, serde_json::Value> {
    w.nodes(SERVER, K3S).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_order_released_is_joined_by_the_apply_that_resumes_it() {
    let (dir, inventory) = inventory_copy();
    // Slow enough that the resuming apply plans while the released machine
    // is still provisioning: its join cannot be in that plan.
    let mock = MockConfig {
        provisioning_delay: Duration::from_secs(3),
        installing_delay: Duration::from_secs(1),
        ip_range: loopback_range(48),
        ..MockConfig::default()
    };
    let w = world_with(dir, inventory, 38, 2, mock).await;

    let out = run_leaving_nothing(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A second agent, whose order Contabo parks: apply stops waiting for
    // it and says so (exit 2).
    w.mock
        .set_product_status("V97", Some("product_not_available"))
        .unwrap();
    w.edit(
        "customers/stadtwerke-nord.toml",
        "product = \"V97\"\ncount = 1",
        "product = \"V97\"\ncount = 2",
    );
    let out = run_leaving_nothing(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!mesh_nodes(&w).await.contains_key(NEW_AGENT));

    // Contabo releases it just after apply has read the account (so its
    // plan sees the hold, and has no join for the machine), before apply's
    // wait looks at it again. That one apply waits, joins and labels it.
    w.mock.reset_stats();
    let resume = tokio::spawn(run_leaving_nothing(w.kiwi(&["apply", "--auto-approve"])));
    let listed = |w: &World| {
        w.mock
            .stats()
            .requests_by_route
            .get("GET /v1/compute/instances")
            .copied()
            .unwrap_or(0)
    };
    for _ in 0..600 {
        if listed(&w) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(listed(&w) > 0, "apply never listed the instances");
    w.mock.set_product_status("V97", None).unwrap();
    let out = resume.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let nodes = mesh_nodes(&w).await;
    let node = nodes
        .get(NEW_AGENT)
        .unwrap_or_else(|| panic!("{NEW_AGENT} was not joined:\n{}", text(&out)));
    assert!(ready(node), "{NEW_AGENT} is not Ready");
    assert_eq!(label(node, "kiwistack.io/pool"), Some("general"));
    let plan = run_leaving_nothing(w.kiwi(&["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // A reinstall (the machine is lost: its agent stops, Contabo says
    // `error`) leaves no SSH master behind either.
    let stop = w
        .sim
        .exec(NEW_AGENT, "systemctl stop k3s-agent")
        .await
        .unwrap();
    assert_eq!(stop.code, 0, "{stop:?}");
    let mut not_ready = false;
    for _ in 0..120 {
        if mesh_nodes(&w)
            .await
            .get(NEW_AGENT)
            .is_some_and(|n| !ready(n))
        {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(not_ready, "{NEW_AGENT} never became NotReady");
    let id = w
        .mock
        .instances()
        .into_iter()
        .find(|i| i.display_name == NEW_AGENT && i.cancel_date.is_none())
        .unwrap()
        .instance_id;
    w.mock.set_instance_status(id, "error").unwrap();
    let out = run_leaving_nothing(w.kiwi(&["apply", "--auto-approve", "--allow-destroy"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reinstall"),
        "{}",
        text(&out)
    );
    let status = run_leaving_nothing(w.kiwi(&["status"])).await;
    assert!(status.status.success(), "{}", text(&status));
    w.sim.shutdown().await;
}
