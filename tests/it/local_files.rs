//! Local files other than the inventory, read by the real binary against the
//! Contabo mock: a saved plan, the order journal and the known-hosts file
//! that are not regular files (a FIFO, a device) end the command at once
//! with exit 1 and say which file, instead of waiting for a writer forever
//! or reading until memory runs out. Files written (`plan --out`,
//! `kubeconfig --out`) never replace anything but a regular file. Local
//! paths handed to ssh never carry a directive or an expansion into it.
//! Each test is named after what broke.

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::apply_support::*;
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

/// A copy of the example inventory at `<tmp>/<dir>/inventory`.
fn inventory_below(dir: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, inv) = inventory_copy();
    let hostile = tmp.path().join(dir);
    std::fs::create_dir_all(&hostile).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&inv)
        .arg(&hostile)
        .status()
        .unwrap();
    assert!(copied.success());
    (tmp, hostile.join("inventory"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_path_with_a_quote_and_a_line_break_never_runs_a_command_during_plan() {
    // `plan` wrote `<inventory>/known_hosts` into ssh's configuration
    // quoted, and a `"` and a line break in the directory name ended the
    // value and added a directive: ssh ran the ProxyCommand. Each variant
    // is a character ssh reads as more than part of a path.
    let mock = spawn(MockConfig::default()).await.unwrap();
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("PWNED");
    let touch = format!("ProxyCommand touch {}", marker.display());
    let variants = [
        format!("b\"\n{touch}\n#\""),
        format!("b\n{touch}"),
        format!("b\r{touch}"),
        format!("b\u{2028}{touch}"),
        "b%d".to_string(),
        "b${HOME}".to_string(),
        "b#c".to_string(),
        "b*".to_string(),
        "b\\\"c".to_string(),
        "b'c".to_string(),
    ];
    for dir in &variants {
        let (_tmp, inv) = inventory_below(dir);
        for args in [&["plan"][..], &["validate"], &["status"]] {
            let out = run_bounded(command(&mock, &inv, args)).await;
            let all = text(&out);
            assert!(
                !marker.exists(),
                "{dir:?} {args:?}: ssh ran a command: {all}"
            );
            assert_eq!(out.status.code(), Some(1), "{dir:?} {args:?}: {all}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("refusing to use the known-hosts file"),
                "{dir:?} {args:?}: the error does not name the path: {all}"
            );
            assert!(!err.contains("panicked"), "{all}");
            assert!(
                !err.contains('\r')
                    && !err
                        .lines()
                        .any(|l| l.trim_start().starts_with("ProxyCommand")),
                "{dir:?}: the path was printed raw: {all}"
            );
        }
    }
    assert_eq!(mock.stats().instances_created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_identity_path_that_ssh_would_expand_is_refused_before_any_connection() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (dir, inv) = inventory_copy();
    for name in ["id%d", "id${HOME}", "id\nx"] {
        let identity = dir.path().join(name);
        std::fs::write(&identity, "not a key").unwrap();
        let mut cmd = command(&mock, &inv, &["plan"]);
        cmd.arg("--ssh-identity").arg(&identity);
        let out = run_bounded(cmd).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name:?}: {all}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refusing to use the SSH identity file"),
            "{name:?}: {all}"
        );
    }
}

/// Makes a FIFO, a socket, a symbolic link, a directory and (where the
/// test may) a character device below `dir`: each kind of file that is not
/// a regular file, by name, with the word its refusal must use.
fn not_regular_files(dir: &Path) -> Vec<(std::path::PathBuf, &'static str)> {
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let mut made = vec![
        (dir.join("fifo"), "FIFO"),
        (dir.join("socket"), "socket"),
        (dir.join("link"), "symbolic link"),
        (dir.join("null-link"), "symbolic link"),
        (dir.join("dir"), "directory"),
    ];
    mkfifo(&made[0].0);
    let socket = std::os::unix::net::UnixListener::bind(&made[1].0).unwrap();
    // The socket file stays when the listener is gone.
    drop(socket);
    std::os::unix::fs::symlink(&victim, &made[2].0).unwrap();
    std::os::unix::fs::symlink("/dev/null", &made[3].0).unwrap();
    std::fs::create_dir(&made[4].0).unwrap();
    // The null device's numbers, in the test's own directory: never
    // /dev/null itself.
    let null = dir.join("null");
    let device = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status();
    if device.is_ok_and(|s| s.success()) {
        made.push((null, "character device"));
    } else {
        eprintln!("cannot make a device here; the device case is not run");
    }
    made
}

fn file_type(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_out_never_replaces_a_device_fifo_socket_or_symlink_with_a_regular_file() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (dir, inv) = inventory_copy();
    for (target, kind) in not_regular_files(dir.path()) {
        let before = file_type(&target);
        let out = run_bounded(command(
            &mock,
            &inv,
            &["plan", "--contabo-only", "--out", target.to_str().unwrap()],
        ))
        .await;
        assert_refused(&out, &target, kind);
        assert_eq!(
            file_type(&target),
            before,
            "{} was replaced",
            target.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim")).unwrap(),
        "precious"
    );
    // A regular file is still replaced, and a new path created.
    for target in [dir.path().join("victim"), dir.path().join("new.json")] {
        let out = run_bounded(command(
            &mock,
            &inv,
            &["plan", "--contabo-only", "--out", target.to_str().unwrap()],
        ))
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(std::fs::read_to_string(&target).unwrap().starts_with('{'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_out_never_replaces_a_device_fifo_socket_or_symlink_with_a_regular_file() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (dir, inv) = inventory_copy();
    for (target, kind) in not_regular_files(dir.path()) {
        for flag in ["--out", "--merge"] {
            let before = file_type(&target);
            let out = run_bounded(command(
                &mock,
                &inv,
                &[
                    "kubeconfig",
                    "stadtwerke-nord",
                    flag,
                    target.to_str().unwrap(),
                ],
            ))
            .await;
            assert_refused(&out, &target, kind);
            assert_eq!(
                file_type(&target),
                before,
                "{} was replaced",
                target.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim")).unwrap(),
        "precious"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_hosts_symlink_stops_apply_before_anything_is_approved_with_exit_1() {
    let mock = kiwi_mocks::contabo::spawn(kiwi_mocks::contabo::MockConfig::default())
        .await
        .unwrap();
    let (dir, inv) = apply_support::inventory_copy();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    let known_hosts = inv.join("known_hosts");
    let _ = std::fs::remove_file(&known_hosts);
    std::os::unix::fs::symlink(&target, &known_hosts).unwrap();
    let out = apply_support::run(apply_support::command(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    let text = apply_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("known_hosts"), "{text}");
    assert!(mock.instances().is_empty(), "nothing was ordered: {text}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
}
