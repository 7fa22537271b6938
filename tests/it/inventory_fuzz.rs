//! Bad input never crashes the tool: thousands of inventories made by
//! mutating the example one (lines deleted, duplicated or swapped, values
//! replaced with other values or other types, unknown keys, stray
//! characters, truncated files, missing files) are loaded with
//! `kiwi_infra::inventory::load`. Each one either loads, or fails with
//! diagnostics that name a file of the inventory and, for a file that exists,
//! a line and column inside it. None may panic.
//!
//! `PROPTEST_CASES` overrides the number of generated inventories (2,000 by
//! default, a few seconds). A failure prints the shrunk list of mutations.

#![allow(clippy::unwrap_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use kiwi_infra::inventory::{self, Diagnostics};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const DEFAULT_CASES: u32 = 2_000;

/// One file of the example inventory: its path relative to the inventory
/// directory, and its lines without comment-only and blank lines, so that
/// mutations land on lines that mean something.
#[derive(Debug, Clone)]
struct BaseFile {
    relative: PathBuf,
    lines: Vec<String>,
}

fn example_files() -> Vec<BaseFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory");
    let mut relatives = vec![PathBuf::from("kiwi.toml")];
    let mut customers: Vec<PathBuf> = std::fs::read_dir(root.join("customers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| PathBuf::from("customers").join(p.file_name().unwrap()))
        .collect();
    customers.sort();
    relatives.extend(customers);
    relatives
        .into_iter()
        .map(|relative| {
            let text = std::fs::read_to_string(root.join(&relative)).unwrap();
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(str::to_string)
                .collect();
            BaseFile { relative, lines }
        })
        .collect()
}

/// One change to one file.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Replaces the value of a `key = value` line (or the whole line if it
    /// has no `=`).
    ReplaceValue(Index, String),
    /// Inserts `key = value` before a line.
    InsertKey(Index, String, String),
    /// Inserts one character anywhere in the text.
    InsertChar(Index, char),
    /// Cuts the text at a point.
    Truncate(Index),
    /// Removes the file altogether.
    DeleteFile,
}

/// Values of every TOML type, some plausible for the inventory's keys, some
/// not, and some not TOML at all.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,12}",
        "\"[a-zA-Z0-9 ._/:=+-]{0,16}\"",
        Just("true".to_string()),
        Just("1.5".to_string()),
        Just("-0.0".to_string()),
        Just("nan".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[1, \"two\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"\"".to_string()),
        prop::sample::select(vec![
            "\"V9\"",
            "\"V94\"",
            "\"V8\"",
            "\"V1\"",
            "\"vps\"",
            "\"vds\"",
            "\"mesh\"",
            "\"fleet\"",
            "\"core\"",
            "\"EU\"",
            "0",
            "1",
            "2",
            "3",
            "4",
            "99999999999",
            "\"8.49\"",
            "\"-1\"",
            "\"a=b:NoSchedule\"",
            "[\"x=y:Bogus\"]",
            "{ \"kubernetes.io/hostname\" = \"x\" }",
            "\"ssh-rsa AAAA\"",
            "\"-----BEGIN OPENSSH PRIVATE KEY-----\"",
            "\"missing.pub\"",
        ])
        .prop_map(str::to_string),
        // Not TOML: unbalanced quotes and brackets, stray unicode.
        "[\\[\\]{}\"'=,.#\\\\a-z0-9 äß€\u{200b}]{0,10}",
    ]
}

/// Keys the inventory knows, in the wrong place, and keys it does not know.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "tier",
            "class",
            "product",
            "count",
            "labels",
            "taints",
            "region",
            "image",
            "period",
            "ssh_public_key_file",
            "version",
            "protected",
            "api_endpoint",
            "[servers]",
            "[pools.extra]",
            "[pools.general]",
            "[core.pools.x]",
            "[prices]",
            "[[servers]]",
            "[provider]",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
        "\"[a-z.-/]{1,12}\"",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::DeleteLine),
        2 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        4 => (any::<Index>(), value()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        2 => (any::<Index>(), key(), value()).prop_map(|(i, k, v)| Mutation::InsertKey(i, k, v)),
        1 => (any::<Index>(), any::<char>()).prop_map(|(i, c)| Mutation::InsertChar(i, c)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => Just(Mutation::DeleteFile),
    ]
}

/// An inventory case: zero to four mutations, each aimed at one file (by
/// index into [`example_files`]). Zero mutations is the valid example.
fn case() -> impl Strategy<Value = Vec<(Index, Mutation)>> {
    prop::collection::vec((any::<Index>(), mutation()), 0..=4)
}

/// Applies mutations; `None` means the file is removed.
fn mutate(lines: &[String], mutations: &[&Mutation]) -> Option<String> {
    let mut lines = lines.to_vec();
    let mut truncate_at = None;
    let mut insert_chars = Vec::new();
    for m in mutations {
        let n = lines.len();
        match m {
            Mutation::DeleteFile => return None,
            Mutation::DeleteLine(i) if n > 0 => {
                lines.remove(i.index(n));
            }
            Mutation::DuplicateLine(i) if n > 0 => {
                let at = i.index(n);
                lines.insert(at, lines[at].clone());
            }
            Mutation::SwapLines(a, b) if n > 0 => lines.swap(a.index(n), b.index(n)),
            Mutation::ReplaceValue(i, v) if n > 0 => {
                let at = i.index(n);
                lines[at] = match lines[at].split_once('=') {
                    Some((k, _)) => format!("{k}= {v}"),
                    None => v.clone(),
                };
            }
            Mutation::InsertKey(i, k, v) => {
                let line = if k.starts_with('[') {
                    k.clone()
                } else {
                    format!("{k} = {v}")
                };
                lines.insert(i.index(n + 1), line);
            }
            Mutation::InsertChar(i, c) => insert_chars.push((*i, *c)),
            Mutation::Truncate(i) => truncate_at = Some(*i),
            _ => {}
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    for (i, c) in insert_chars {
        let at = char_boundary(&text, i.index(text.len() + 1));
        text.insert(at, c);
    }
    if let Some(i) = truncate_at {
        let at = char_boundary(&text, i.index(text.len() + 1));
        text.truncate(at);
    }
    Some(text)
}

fn char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Writes the mutated inventory into `dir`; returns each written file's path
/// and text.
fn write_inventory(
    dir: &Path,
    base: &[BaseFile],
    mutations: &[(Index, Mutation)],
) -> Vec<(PathBuf, String)> {
    std::fs::create_dir_all(dir.join("customers")).unwrap();
    let mut written = Vec::new();
    for (n, file) in base.iter().enumerate() {
        let mine: Vec<&Mutation> = mutations
            .iter()
            .filter(|(i, _)| i.index(base.len()) == n)
            .map(|(_, m)| m)
            .collect();
        if let Some(text) = mutate(&file.lines, &mine) {
            let path = dir.join(&file.relative);
            std::fs::write(&path, &text).unwrap();
            written.push((path, text));
        }
    }
    written
}

/// What one generated inventory did, for the tally at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Loaded,
    Refused,
}

/// Every diagnostic names a file of this inventory; for a file that exists,
/// it names a line and column inside the file's text.
fn check_located(
    dir: &Path,
    written: &[(PathBuf, String)],
    diagnostics: &Diagnostics,
) -> Result<(), TestCaseError> {
    prop_assert!(!diagnostics.is_empty(), "Err without any diagnostic");
    for d in diagnostics {
        let shown = d.to_string();
        prop_assert!(
            d.file.starts_with(dir),
            "diagnostic names a file outside the inventory: {shown}"
        );
        prop_assert!(
            shown.starts_with(&d.file.display().to_string()),
            "the printed error does not start with the file: {shown}"
        );
        prop_assert!(!d.message.trim().is_empty(), "empty message: {shown}");
        if let Some((_, text)) = written.iter().find(|(p, _)| *p == d.file) {
            let Some(pos) = d.position else {
                return Err(TestCaseError::fail(format!(
                    "diagnostic about an existing file has no line: {shown}"
                )));
            };
            let lines = text.split('\n').count();
            prop_assert!(
                pos.line >= 1 && pos.line <= lines && pos.column >= 1,
                "position {}:{} is outside the file ({lines} lines): {shown}",
                pos.line,
                pos.column
            );
        }
    }
    Ok(())
}

#[test]
fn every_generated_inventory_loads_or_fails_with_located_errors_never_panics() {
    let base = example_files();
    assert!(base.len() >= 2, "the example inventory has no customers");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let tally = std::cell::RefCell::new((0usize, 0usize));
    let result = runner.run(&case(), |mutations| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("inventory");
        let written = write_inventory(&dir, &base, &mutations);
        let loaded = catch_unwind(AssertUnwindSafe(|| inventory::load(&dir)));
        let outcome = match loaded {
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let files: Vec<String> = written
                    .iter()
                    .map(|(p, t)| format!("--- {}\n{t}", p.display()))
                    .collect();
                return Err(TestCaseError::fail(format!(
                    "inventory::load panicked: {why}\n{}",
                    files.join("\n")
                )));
            }
            Ok(Ok(_)) => Outcome::Loaded,
            Ok(Err(diagnostics)) => {
                check_located(&dir, &written, &diagnostics)?;
                Outcome::Refused
            }
        };
        let mut t = tally.borrow_mut();
        match outcome {
            Outcome::Loaded => t.0 += 1,
            Outcome::Refused => t.1 += 1,
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (loaded, refused) = tally.into_inner();
    eprintln!("{cases} inventories: {loaded} loaded, {refused} refused with located errors");
    // A generator that only ever produced broken TOML (or only valid files)
    // would leave the validator (or the error path) untested.
    assert!(
        loaded > 0,
        "no generated inventory loaded: the generator only breaks syntax"
    );
    assert!(
        refused > cases as usize / 2,
        "too few generated inventories were refused: {refused}"
    );
}
