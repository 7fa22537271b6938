//! Local files other than the inventory, read by the real binary against the
//! Contabo mock: a saved plan, the order journal and the known-hosts file
//! that are not regular files (a FIFO, a device) end the command at once
//! with exit 1 and say which file, instead of waiting for a writer forever
//! or reading until memory runs out. Each test is named after what broke.

#![allow(clippy::unwrap_used)]

mod apply_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apply_support::*;
use kiwi_mocks::contabo::{spawn, MockConfig};

/// No command here may take longer: each used to block or run out of memory.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `cmd` off the async runtime, killed and failed past [`DEADLINE`].
async fn run_bounded(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kiwi-infra did not end within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

fn assert_refused(out: &Output, file: &Path, kind: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&file.display().to_string()) && err.contains(kind),
        "the error does not name {} as {kind}:\n{all}",
        file.display()
    );
    assert!(!err.contains("panicked"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_saved_plan_that_is_a_fifo_ends_at_once_with_exit_1() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (dir, inv) = inventory_copy();
    let plan = dir.path().join("plan.json");
    mkfifo(&plan);
    let out = run_bounded(command(
        &mock,
        &inv,
        &["apply", "--contabo-only", plan.to_str().unwrap()],
    ))
    .await;
    assert_refused(&out, &plan, "FIFO");
    assert_eq!(mock.stats().instances_created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_saved_plan_that_is_dev_zero_ends_at_once_with_exit_1() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (dir, inv) = inventory_copy();
    let plan = dir.path().join("plan.json");
    std::os::unix::fs::symlink("/dev/zero", &plan).unwrap();
    let out = run_bounded(command(
        &mock,
        &inv,
        &["apply", "--contabo-only", plan.to_str().unwrap()],
    ))
    .await;
    assert_refused(&out, &plan, "character device");
    assert_eq!(mock.stats().instances_created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_journal_that_is_a_fifo_stops_apply_before_any_order_with_exit_1() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (_dir, inv) = inventory_copy();
    std::fs::create_dir_all(inv.join(".kiwi")).unwrap();
    let journal = inv.join(".kiwi/orders.jsonl");
    mkfifo(&journal);
    let out = run_bounded(command(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_refused(&out, &journal, "FIFO");
    assert_eq!(mock.stats().instances_created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_hosts_file_that_is_a_fifo_stops_plan_with_exit_1() {
    // ssh reads it itself and would wait on it at every connection.
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (_dir, inv) = inventory_copy();
    let known_hosts = inv.join("known_hosts");
    mkfifo(&known_hosts);
    let out = run_bounded(command(&mock, &inv, &["plan"])).await;
    assert_refused(&out, &known_hosts, "FIFO");
}
