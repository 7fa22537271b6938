//! Many operators, one truth: with `[state] backend = "core-cluster"` the
//! apply lock is a Lease and the order journal a ConfigMap in the Core
//! cluster, reached over SSH (pinned host keys) on the simulated control
//! plane, whose API keeps real `resourceVersion` semantics. Each test works
//! from two working copies of one inventory, as two operators would: they
//! share nothing but the Core cluster and Contabo. Needs root (simulated
//! nodes).

#![allow(clippy::unwrap_used)]

use crate::apply_support;
use crate::cluster_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::apply_support::{assert_each_slot_once, run, text};
use crate::cluster_support::{world_with, World, KUBEADM};
use kiwi_mocks::contabo::{Faults, MockConfig};
use serde_json::Value;

/// A world whose inventory keeps its state in the Core cluster with
/// `lease_seconds`, and a second working copy of that inventory.
async fn shared_world(cp: u8, instances: u8, lease_seconds: u32, faults: Faults) -> (World, Copy) {
    let (dir, inventory) = apply_support::inventory_copy();
    let mock = MockConfig {
        provisioning_delay: Duration::from_millis(100),
        installing_delay: Duration::from_millis(100),
        ip_range: cluster_support::loopback_range(instances),
        faults,
        ..MockConfig::default()
    };
    let w = world_with(dir, inventory, cp, 1, mock).await;
    let main = w.inventory.join("kiwi.toml");
    let mut toml = std::fs::read_to_string(&main).unwrap();
    toml.push_str(&format!(
        "\n[state]\nbackend = \"core-cluster\"\nlease_seconds = {lease_seconds}\n"
    ));
    std::fs::write(&main, toml).unwrap();
    let copy = Copy::of(&w.inventory);
    (w, copy)
}

/// Another operator's working copy: the committed files only (inventory
/// and known_hosts), no `.kiwi/`.
struct Copy {
    _dir: tempfile::TempDir,
    inventory: PathBuf,
}

impl Copy {
    fn of(inventory: &Path) -> Copy {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("inventory");
        copy_dir(inventory, &target);
        Copy {
            _dir: dir,
            inventory: target,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".kiwi" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `kiwi-infra ARGS` on `inventory` (either working copy) in world `w`.
fn kiwi_on(w: &World, inventory: &Path, args: &[&str]) -> Command {
    let mut cmd = apply_support::command(&w.mock, inventory, args);
    cmd.env("KIWI_SSH_IDENTITY", &w.identity)
        .env("KIWI_NODE_READY_TIMEOUT", "90s")
        .env("KIWI_INTERNAL_NODE_POLL_MS", "300");
    cmd
}

fn spawn(mut cmd: Command) -> std::process::Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The Lease as the Core cluster holds it, if any.
async fn lease(w: &World) -> Option<Value> {
    let out = w
        .sim
        .exec(
            "kiwi-core-cp-01",
            &format!("{KUBEADM} --namespace kiwi-infra get lease kiwi-infra-apply -o json"),
        )
        .await
        .unwrap();
    (out.code == 0).then(|| serde_json::from_str(&out.stdout).unwrap())
}

/// Polls (a bounded number of times, not a timed assertion) until `ready`.
async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if ready().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applies_from_two_working_copies_at_once_one_runs_and_the_other_names_the_holder() {
    let faults = Faults {
        latency_ms: 30,
        ..Faults::default()
    };
    let (w, other) = shared_world(71, 72, 30, faults).await;
    let args = ["apply", "--auto-approve", "--contabo-only"];
    let first = spawn(kiwi_on(&w, &w.inventory, &args));
    let second = spawn(kiwi_on(&w, &other.inventory, &args));
    let (first_pid, second_pid) = (first.id(), second.id());
    let outs = tokio::task::spawn_blocking(move || {
        (
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        )
    })
    .await
    .unwrap();
    let (winner, loser, winner_pid) = match (outs.0.status.code(), outs.1.status.code()) {
        (Some(0), Some(1)) => (&outs.0, &outs.1, first_pid),
        (Some(1), Some(0)) => (&outs.1, &outs.0, second_pid),
        _ => panic!(
            "expected one apply to run and the other to exit 1:\n{}\n{}",
            text(&outs.0),
            text(&outs.1)
        ),
    };
    let refused = String::from_utf8_lossy(&loser.stderr);
    assert!(
        refused.contains("another apply holds the lock")
            && refused.contains(&format!("(pid {winner_pid})")),
        "the refusal names the holder:\n{}",
        text(loser)
    );
    assert!(
        String::from_utf8_lossy(&winner.stderr).contains("Lease kiwi-infra/kiwi-infra-apply"),
        "the winner says where its lock lives:\n{}",
        text(winner)
    );
    assert_each_slot_once(&w.mock);
    assert_eq!(w.mock.stats().instances_created, 15);
    // Released at the end: the lease is free for the next apply.
    let lease = lease(&w).await.expect("the lease exists");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "released: {lease}"
    );
    // Neither object holds a secret.
    let journal = w
        .sim
        .exec(
            "kiwi-core-cp-01",
            &format!("{KUBEADM} --namespace kiwi-infra get configmap kiwi-infra-orders -o json"),
        )
        .await
        .unwrap();
    assert_eq!(journal.code, 0, "{}", journal.stderr);
    let c = w.mock.credentials();
    for secret in [&c.client_secret, &c.password, &c.client_id] {
        assert!(
            !journal.stdout.contains(secret.as_str()),
            "a credential in the journal"
        );
        assert!(
            !lease.to_string().contains(secret.as_str()),
            "a credential in the lease"
        );
    }
    assert_eq!(
        journal
            .stdout
            .matches("\\\"event\\\":\\\"intent\\\"")
            .count(),
        15,
        "one intent per slot: {}",
        journal.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_after_an_order_never_lets_another_machine_buy_that_slot_again() {
    // The first order's answer is lost, and Contabo will not list the new
    // instance for a long while.
    let faults = Faults {
        drop_create_responses: 1,
        unlisted_for_ms: 600_000,
        ..Faults::default()
    };
    // A 10 s lease: the second apply waits that long for the dead one's to
    // expire, and its own renewals (every third, over SSH to a simulated
    // control plane) keep a margin on a loaded machine; with 3 s, a CI run
    // that shared its two cores with builds saw the second apply give up
    // its lock after one late renewal (safely, but not what this test is
    // about).
    let (w, other) = shared_world(73, 74, 10, faults).await;
    let mut first = kiwi_on(
        &w,
        &w.inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    );
    // One order at a time, and a long look for the lost answer's instance:
    // the kill lands while only the journal knows the order was sent.
    first
        .env("KIWI_CONCURRENCY", "1")
        .env("KIWI_UNLISTED_ORDER_WAIT", "2m");
    let mut first = spawn(first);
    let mock = &w.mock;
    eventually("the first order was placed", async || {
        mock.stats().instances_created >= 1
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let ordered = w.mock.instances();
    assert_eq!(ordered.len(), 1, "one order before the kill");
    let slot = ordered[0].display_name.clone();
    // New orders are listed at once from now on; the first one still is not.
    w.mock.set_faults(Faults::default()).unwrap();

    // Another operator, another working copy, no local journal: it waits
    // for the dead apply's lease to expire, then reads the cluster journal.
    let out = run(kiwi_on(
        &w,
        &other.inventory,
        &[
            "apply",
            "--auto-approve",
            "--contabo-only",
            "--lock-timeout",
            "60s",
        ],
    ))
    .await;
    let shown = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the slot needs the operator:\n{shown}"
    );
    assert!(
        shown.contains(&format!("--reorder {slot}")),
        "the unresolved order of {slot} is named:\n{shown}"
    );
    let same: Vec<_> = w
        .mock
        .instances()
        .into_iter()
        .filter(|i| i.display_name == slot)
        .collect();
    assert_eq!(same.len(), 1, "{slot} was bought twice:\n{shown}");
    assert_eq!(
        w.mock.stats().instances_created,
        15,
        "every other slot once, {slot} not again"
    );
    assert!(
        !other.inventory.join(".kiwi/orders.jsonl").exists(),
        "the journal is the cluster's, not a local file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lock_is_taken_over_after_its_lease_expires_and_not_before() {
    let faults = Faults {
        latency_ms: 150,
        ..Faults::default()
    };
    let (w, other) = shared_world(75, 76, 10, faults).await;
    let mut first = kiwi_on(
        &w,
        &w.inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    );
    first.env("KIWI_CONCURRENCY", "1");
    let mut first = spawn(first);
    let dead_pid = first.id();
    let world = &w;
    eventually("the first apply holds the lease", async || {
        lease(world)
            .await
            .is_some_and(|l| l["spec"]["holderIdentity"].is_string())
    })
    .await;
    first.kill().unwrap(); // SIGKILL: the lease is neither renewed nor released
    first.wait().unwrap();
    let holder = format!("(pid {dead_pid})");

    // Before the lease expires: unlock refuses, and so does apply.
    let unlock = run(kiwi_on(&w, &other.inventory, &["unlock"])).await;
    assert_eq!(unlock.status.code(), Some(1), "{}", text(&unlock));
    let refused = String::from_utf8_lossy(&unlock.stderr);
    assert!(
        refused.contains("refusing to break") && refused.contains(&holder),
        "{}",
        text(&unlock)
    );
    let early = run(kiwi_on(
        &w,
        &other.inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains(&holder),
        "{}",
        text(&early)
    );

    // Waiting for it: taken over once expired, and the apply finishes.
    let mut later = kiwi_on(
        &w,
        &other.inventory,
        &[
            "apply",
            "--auto-approve",
            "--contabo-only",
            "--lock-timeout",
            "2m",
        ],
    );
    later.env("KIWI_CONCURRENCY", "4");
    let later = run(later).await;
    assert_eq!(later.status.code(), Some(0), "{}", text(&later));
    assert_each_slot_once(&w.mock);
    let lease = lease(&w).await.unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    // Free again: unlock finds nothing to break.
    let unlock = run(kiwi_on(&w, &other.inventory, &["unlock"])).await;
    assert_eq!(unlock.status.code(), Some(0), "{}", text(&unlock));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_access_kubeconfig_the_lock_and_journal_go_through_the_operators_own_kubectl() {
    let (w, other) = shared_world(77, 78, 30, Faults::default()).await;
    let main = other.inventory.join("kiwi.toml");
    let toml = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{toml}access = \"kubeconfig\"\n")).unwrap();
    // No host key is pinned in this copy: nothing may go over SSH.
    std::fs::write(other.inventory.join("known_hosts"), "").unwrap();
    // The operator's kubectl and kubeconfig (the stand-in plays kubectl).
    let tools = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        kiwi_mocks::nodes::default_standin_binary().unwrap(),
        tools.path().join("kubectl"),
    )
    .unwrap();
    let admin = w
        .sim
        .exec("kiwi-core-cp-01", "cat /etc/kubernetes/admin.conf")
        .await
        .unwrap();
    assert_eq!(admin.code, 0, "{}", admin.stderr);
    let kubeconfig = tools.path().join("config");
    std::fs::write(&kubeconfig, admin.stdout).unwrap();

    let mut apply = kiwi_on(
        &w,
        &other.inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    );
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    apply.env("PATH", path).env("KUBECONFIG", &kubeconfig);
    let out = run(apply).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubectl with the operator's kubeconfig"),
        "{}",
        text(&out)
    );
    assert_each_slot_once(&w.mock);
    // Both objects are in the Core cluster, as another operator reaching it
    // over SSH sees them.
    let journal = w
        .sim
        .exec(
            "kiwi-core-cp-01",
            &format!("{KUBEADM} --namespace kiwi-infra get configmap kiwi-infra-orders -o json"),
        )
        .await
        .unwrap();
    assert_eq!(journal.code, 0, "{}", journal.stderr);
    let journal: Value = serde_json::from_str(&journal.stdout).unwrap();
    let lines = journal["data"]["orders.jsonl"]
        .as_str()
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 30, "an intent and a placed line per slot");
    assert!(lease(&w).await.unwrap()["spec"]["holderIdentity"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_moved_to_the_core_cluster_keeps_what_its_local_journal_recorded() {
    // Orders Contabo does not list yet: what the local journal recorded is
    // the only thing that says they exist.
    let faults = Faults {
        unlisted_for_ms: 600_000,
        ..Faults::default()
    };
    let (w, _other) = shared_world(79, 80, 30, faults).await;
    let slot = "kiwi-core-general-01";
    let journal = kiwi_infra::apply::OrderJournal::open(&w.inventory).unwrap();
    journal
        .record(
            slot,
            kiwi_infra::apply::journal::Event::Intent {
                trace_id: "local-run".into(),
                product: "V97".into(),
            },
        )
        .unwrap();
    let id = apply_support::order_directly(&w.mock, slot, "V97").await;
    journal
        .record(
            slot,
            kiwi_infra::apply::journal::Event::Placed { instance_id: id },
        )
        .unwrap();
    drop(journal);
    w.mock.set_faults(Faults::default()).unwrap();
    let out = run(kiwi_on(
        &w,
        &w.inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    let shown = text(&out);
    assert!(
        shown.contains("Imported 2 entries of the local order journal"),
        "{shown}"
    );
    let same = w
        .mock
        .instances()
        .into_iter()
        .filter(|i| i.display_name == slot)
        .count();
    assert_eq!(same, 1, "{slot} was bought twice:\n{shown}");
}
