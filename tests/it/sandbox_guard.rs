//! The sandbox deletes only what it created: `sandbox up`, `demo` and
//! `down` refuse a directory without the sandbox's own marker, leave it
//! exactly as it was, and never signal a process named in a planted pid
//! file. Issue 13, "The sandbox deletes what it did not create". None of
//! these tests starts the stand-in or simulated nodes: the guard comes
//! first.

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sandbox(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .arg("sandbox")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("KIWI_SANDBOX_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A colleague's directory that happens to hold an `env` file, some work
/// and a `mock.pid` naming a live process.
struct Foreign {
    _parent: tempfile::TempDir,
    dir: std::path::PathBuf,
    bystander: std::process::Child,
}

impl Foreign {
    fn new() -> Self {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("project");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("env"), "export PATH=/usr/bin\n").unwrap();
        std::fs::write(dir.join("thesis.tex"), "years of work").unwrap();
        let bystander = Command::new("sleep").arg("120").spawn().unwrap();
        std::fs::write(dir.join("mock.pid"), format!("{}\n", bystander.id())).unwrap();
        Self {
            _parent: parent,
            dir,
            bystander,
        }
    }

    fn assert_untouched(&mut self, out: &Output) {
        let text = apply_support::text(out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("Nothing was stopped or deleted"), "{text}");
        assert_eq!(
            std::fs::read_to_string(self.dir.join("thesis.tex")).unwrap(),
            "years of work",
            "{text}"
        );
        assert!(self.dir.join("env").exists(), "{text}");
        assert!(
            self.bystander.try_wait().unwrap().is_none(),
            "the process named in mock.pid was signalled: {text}"
        );
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        // Only the process this test started, by its id.
        let _ = self.bystander.kill();
        let _ = self.bystander.wait();
    }
}

#[test]
fn sandbox_down_refuses_a_directory_it_did_not_create() {
    let mut foreign = Foreign::new();
    let out = sandbox(&["down"], &foreign.dir);
    foreign.assert_untouched(&out);
}

#[test]
fn sandbox_up_refuses_a_non_empty_directory_it_did_not_create() {
    let mut foreign = Foreign::new();
    let out = sandbox(&["up"], &foreign.dir);
    foreign.assert_untouched(&out);
}

#[test]
fn sandbox_demo_refuses_a_non_empty_directory_it_did_not_create() {
    let mut foreign = Foreign::new();
    let out = sandbox(&["demo"], &foreign.dir);
    foreign.assert_untouched(&out);
}

#[test]
fn a_forged_marker_does_not_make_a_directory_the_sandboxs() {
    let mut foreign = Foreign::new();
    let id = "6f1b2c1e-9d1a-4c55-8f3e-2a8d9b0c7e11";
    std::fs::write(
        foreign.dir.join(".kiwi-sandbox"),
        format!("kiwi-infra sandbox\nid {id}\ndirectory 1:2\n"),
    )
    .unwrap();
    std::fs::write(
        foreign.dir.join("env"),
        format!("export KIWI_SANDBOX_ID='{id}'\n"),
    )
    .unwrap();
    let out = sandbox(&["down"], &foreign.dir);
    foreign.assert_untouched(&out);
}

#[test]
fn a_symlink_to_a_directory_is_never_followed_to_delete() {
    let mut foreign = Foreign::new();
    let link = foreign.dir.with_file_name("link");
    std::os::unix::fs::symlink(&foreign.dir, &link).unwrap();
    for command in ["up", "down"] {
        let out = sandbox(&[command], &link);
        foreign.assert_untouched(&out);
        assert!(apply_support::text(&out).contains("symbolic link"));
    }
}

#[test]
fn sandbox_down_of_nothing_changes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let out = sandbox(&["down"], &parent.path().join("absent"));
    assert_eq!(out.status.code(), Some(0), "{}", apply_support::text(&out));
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = sandbox(&["down"], &empty);
    assert_eq!(out.status.code(), Some(0), "{}", apply_support::text(&out));
    assert!(
        empty.is_dir(),
        "an empty directory the sandbox did not make stays"
    );
}
