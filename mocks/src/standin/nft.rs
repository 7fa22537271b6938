//! `nft` on a simulated node: it keeps the node's "kernel ruleset" honestly without ever
//! touching the host's.
//!
//! Simulated nodes share the host's network namespace, so a real `nft -f` on a node would load
//! rules into the host (and every other node). The stand-in instead keeps the node's ruleset as
//! a *journal* of the inputs it accepted, under `/run/kiwi-sim/nft/` (so a reboot, which
//! empties `/run`, clears it, as a real reboot clears the kernel's ruleset; the `nftables` unit
//! of the stand-in `systemctl` reloads `/etc/nftables.conf` at boot, as Debian's does).
//!
//! Everything is decided by the host's real `nft` (`/usr/sbin/nft`, Debian's `nftables`), run
//! only inside a fresh network namespace (`unshare -n`) that lives for one command:
//! - an input (`-f FILE`, `-f -`, `add|delete element …`, `delete table …`, `flush ruleset`) is checked by
//!   replaying the journal into a fresh namespace, then `nft -c -f` on the input, then loading
//!   it there; only if all of that succeeds is it appended to the journal (with `-c`, nothing is
//!   appended). Real nft's error text and exit status are passed on.
//! - `list …` replays the journal into a fresh namespace and runs the real `nft [-j] list …`
//!   there, so the answer is real nft's own output for exactly what the node accepted.
//!
//! Anything else is refused with a message naming what the stand-in supports. The runner inside
//! the namespace (`kiwi-node-standin nft-scratch`) refuses to run unless its network namespace
//! differs from the caller's (the node's, which is the host's), so a mistake can never load
//! rules into the host.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::paths::{own_exe, Root};
use super::{Result, StandinError};

/// The host's real nft (Debian's `nftables` package).
pub const REAL_NFT: &str = "/usr/sbin/nft";
/// The node's journal of accepted inputs, one `NNNNNN.nft` file per input.
pub const JOURNAL_DIR: &str = "/run/kiwi-sim/nft";
/// The largest input accepted (a ruleset of ours is a few KiB).
const MAX_INPUT: usize = 1 << 20;

const SUPPORTED: &str = "the kiwi-sim nft stand-in supports: [-c] -f FILE|-, [-c] add|delete \
                         element …, delete table FAMILY NAME, flush ruleset, [-j] list ruleset|tables|table|set|chain …";

fn unsupported(what: &str) -> StandinError {
    StandinError::tool(format!("nft: {what} is not simulated; {SUPPORTED}"))
}

/// What one `nft` call asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// Load (or with `check`, only check) an input.
    Input { text: String, check: bool },
    /// A `list` command, with `-j` or not.
    List { json: bool, words: Vec<String> },
}

/// `nft ARGS…` on the node.
pub fn main(args: Vec<String>) -> Result<i32> {
    let root = Root::from_env();
    match parse(&root, &args)? {
        Request::Input { text, check } => input(&root, &text, check),
        Request::List { json, words } => {
            let mut final_args: Vec<String> = Vec::new();
            if json {
                final_args.push("-j".into());
            }
            final_args.extend(words);
            let status = scratch(&root, None, &final_args, Stdio::inherit())?;
            Ok(status.code)
        }
    }
}

fn parse(root: &Root, args: &[String]) -> Result<Request> {
    let (mut json, mut check, mut file) = (false, false, None::<String>);
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !words.is_empty() {
            words.push(a.clone());
            continue;
        }
        match a.as_str() {
            "-j" | "--json" => json = true,
            "-c" | "--check" => check = true,
            "-f" | "--file" => match it.next() {
                Some(f) => file = Some(f.clone()),
                None => {
                    return Err(StandinError::tool(
                        "nft: option requires an argument -- 'f'",
                    ))
                }
            },
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(unsupported(&format!("option `{flag}`")))
            }
            word => words.push(word.to_string()),
        }
    }
    if let Some(file) = file {
        if !words.is_empty() {
            return Err(unsupported("-f together with a command"));
        }
        let text = if file == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_INPUT as u64 + 1)
                .read_to_string(&mut text)
                .map_err(|source| StandinError::Io {
                    action: "cannot read stdin",
                    path: PathBuf::from("-"),
                    source,
                })?;
            text
        } else {
            match root.read_opt(&file)? {
                Some(text) => text,
                None => {
                    return Err(StandinError::tool(format!(
                    "Error: Could not process rule: No such file or directory\ninclude \"{file}\""
                )))
                }
            }
        };
        if text.len() > MAX_INPUT {
            return Err(unsupported("an input over 1 MiB"));
        }
        return Ok(Request::Input { text, check });
    }
    let first = |i: usize| words.get(i).map(String::as_str);
    match (first(0), first(1)) {
        (Some("list"), Some("ruleset" | "tables" | "table" | "set" | "chain")) => {
            // Names only: the real nft parses the rest, in the scratch namespace.
            if words.len() > 6 || !words.iter().all(|w| is_name(w)) {
                return Err(unsupported(&format!("`{}`", words.join(" "))));
            }
            Ok(Request::List { json, words })
        }
        (Some("delete"), Some("table")) => {
            // `delete table FAMILY NAME`, names only.
            if words.len() != 4 || !words.iter().all(|w| is_name(w)) {
                return Err(unsupported(&format!("`{}`", words.join(" "))));
            }
            Ok(Request::Input {
                text: format!("{}\n", words.join(" ")),
                check,
            })
        }
        (Some("add" | "delete"), Some("element")) | (Some("flush"), Some("ruleset")) => {
            let text = format!("{}\n", words.join(" "));
            if text.len() > MAX_INPUT || text.chars().any(|c| c.is_control() && c != '\n') {
                return Err(unsupported("a command with control characters"));
            }
            Ok(Request::Input { text, check })
        }
        (None, _) => Err(unsupported("nft without a command")),
        _ => Err(unsupported(&format!("`{}`", words.join(" ")))),
    }
}

fn is_name(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Checks `text` against the node's ruleset with the real nft and, unless `check`, records it.
fn input(root: &Root, text: &str, check: bool) -> Result<i32> {
    let dir = root.path(JOURNAL_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| StandinError::Io {
        action: "cannot create",
        path: dir.clone(),
        source,
    })?;
    // A private candidate file per call; renamed into the journal only once accepted.
    let candidate = dir.join(format!(".candidate-{}.nft", std::process::id()));
    write(&candidate, text)?;
    let result = scratch(
        root,
        Some(&candidate),
        &["-c".into(), "-f".into(), candidate.display().to_string()],
        Stdio::inherit(),
    );
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&candidate);
            return Err(e);
        }
    };
    if status.code != 0 || check {
        let _ = std::fs::remove_file(&candidate);
        return Ok(status.code);
    }
    let next = entries(&dir)?.len() + 1;
    let entry = dir.join(format!("{next:06}.nft"));
    std::fs::rename(&candidate, &entry).map_err(|source| StandinError::Io {
        action: "cannot record",
        path: entry,
        source,
    })?;
    Ok(0)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| StandinError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// The journal's entries, in order.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(read) => read
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".nft") && !n.starts_with('.'))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(StandinError::Io {
                action: "cannot read",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    files.sort();
    Ok(files)
}

/// Forgets the node's ruleset (what a reboot or `nftables.service` stop does).
pub fn clear(root: &Root) -> Result<()> {
    root.remove(JOURNAL_DIR)
}

struct Ran {
    code: i32,
}

/// Runs, in a fresh network namespace: every journal entry with the real `nft -f`, then the
/// real `nft FINAL_ARGS` (and, for an input, `nft -f INPUT` after a successful check).
fn scratch(
    root: &Root,
    load_after_check: Option<&Path>,
    final_args: &[String],
    stdout: Stdio,
) -> Result<Ran> {
    let dir = root.path(JOURNAL_DIR);
    let exe = own_exe()?;
    let mut cmd = Command::new("unshare");
    cmd.arg("-n")
        .arg("--")
        .arg(&exe)
        .arg("nft-scratch")
        .arg(network_namespace()?)
        .arg(&dir)
        .arg(
            load_after_check
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into()),
        )
        .arg("--")
        .args(final_args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit());
    let status = cmd.status().map_err(|source| StandinError::Io {
        action: "cannot run unshare -n (util-linux) for",
        path: PathBuf::from(REAL_NFT),
        source,
    })?;
    Ok(Ran {
        code: status.code().unwrap_or(1),
    })
}

/// `kiwi-node-standin nft-scratch CALLER_NETNS JOURNAL_DIR LOAD|- -- FINAL_ARGS…`, run by
/// [`scratch`] inside `unshare -n`: replays the journal, runs the real `nft FINAL_ARGS`, then,
/// if LOAD is a file and that succeeded, loads it (an input `-c` accepted must also load).
/// Refuses to run in the caller's network namespace (`net:[…]` of the caller).
pub fn scratch_main(args: &[String]) -> Result<i32> {
    let (Some(caller), Some(dir), Some(load), Some("--")) = (
        args.first(),
        args.get(1),
        args.get(2),
        args.get(3).map(String::as_str),
    ) else {
        return Err(StandinError::tool(
            "usage: kiwi-node-standin nft-scratch CALLER_NETNS JOURNAL_DIR LOAD|- -- NFT_ARGS…",
        ));
    };
    if network_namespace()? == *caller || !caller.starts_with("net:[") {
        return Err(StandinError::tool_code(
            "nft stand-in: refusing to run the real nft outside a private network namespace",
            70,
        ));
    }
    for entry in entries(Path::new(dir))? {
        let out = Command::new(REAL_NFT)
            .arg("-f")
            .arg(&entry)
            .stdin(Stdio::null())
            .output()
            .map_err(real_nft_missing)?;
        if !out.status.success() {
            // The entry was accepted on this ruleset before; only a changed nft can do this.
            return Err(StandinError::tool(format!(
                "nft stand-in: replaying {} failed: {}",
                entry.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let status = Command::new(REAL_NFT)
        .args(&args[4..])
        .stdin(Stdio::null())
        .status()
        .map_err(real_nft_missing)?;
    if !status.success() || load == "-" {
        return Ok(status.code().unwrap_or(1));
    }
    let status = Command::new(REAL_NFT)
        .arg("-f")
        .arg(load)
        .stdin(Stdio::null())
        .status()
        .map_err(real_nft_missing)?;
    Ok(status.code().unwrap_or(1))
}

fn real_nft_missing(source: std::io::Error) -> StandinError {
    StandinError::Io {
        action: "cannot run the real nft (install Debian's nftables package)",
        path: PathBuf::from(REAL_NFT),
        source,
    }
}

/// This process's network namespace, as `net:[INODE]`.
fn network_namespace() -> Result<String> {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .map_err(|source| StandinError::Io {
            action: "cannot read",
            path: PathBuf::from("/proc/self/ns/net"),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn what_kiwi_infra_sends_is_understood_and_anything_else_refused() {
        let root = Root::from_env();
        assert_eq!(
            parse(&root, &words("-j list table inet kiwi")).unwrap(),
            Request::List {
                json: true,
                words: words("list table inet kiwi")
            }
        );
        assert_eq!(
            parse(&root, &words("add element inet kiwi peers4 { 127.9.9.9 }")).unwrap(),
            Request::Input {
                text: "add element inet kiwi peers4 { 127.9.9.9 }\n".into(),
                check: false
            }
        );
        // The firewall's nftables.service drop-in stops with this.
        assert_eq!(
            parse(&root, &words("delete table inet kiwi")).unwrap(),
            Request::Input {
                text: "delete table inet kiwi\n".into(),
                check: false
            }
        );
        for refused in [
            "delete table inet kiwi ; flush ruleset",
            "delete table inet",
            "list ruleset ; flush ruleset",
            "add rule inet kiwi input accept",
            "-i",
            "monitor",
            "",
        ] {
            let err = parse(&root, &words(refused)).unwrap_err().render();
            assert!(err.contains("not simulated"), "{refused}: {err}");
        }
    }
}
