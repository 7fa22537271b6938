//! The host firewall of a [`super::fake::FakeRemote`]: `sudo nft -f
//! /etc/nftables.conf` loads the file into the fake machine's "kernel"
//! ([`LOADED`], a file of the fake), and `sudo nft -j list table inet kiwi`
//! answers in nft's JSON form from what was loaded, as a real node does: an
//! error with nft's words while nothing is loaded. The ruleset is read with
//! a small reader of the form `crate::firewall::render` writes (sets with
//! `elements = { … }`, the input chain's policy and rule lines), which is
//! all a fake needs; the real nft checks the real text in the packet and
//! sandbox tests. `sudo sed` of a k3s config's `flannel-backend` is
//! answered from the fake's files too.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::fake::FakeFile;
use super::Output;

/// Where the fake keeps the loaded ruleset (a file of the fake machine, so
/// a test can edit it as a hand edit on a node would).
pub const LOADED: &str = "/run/fake-kernel/nftables";

fn out(status: i32, stdout: String, stderr: &str) -> Output {
    Output {
        status: Some(status),
        stdout,
        stderr: stderr.to_string(),
    }
}

/// The answer to a firewall command, `None` for other commands.
pub fn answer(command: &str, files: &mut BTreeMap<String, FakeFile>) -> Option<Output> {
    match command {
        "sudo nft -f /etc/nftables.conf" => Some(match files.get("/etc/nftables.conf") {
            Some(file) => {
                let loaded = file.contents.expose().clone();
                files.insert(
                    LOADED.to_string(),
                    FakeFile {
                        contents: crate::secret::Secret::new(loaded),
                        mode: 0o600,
                    },
                );
                out(0, String::new(), "")
            }
            None => out(
                1,
                String::new(),
                "Error: Could not process rule: No such file or directory\n",
            ),
        }),
        "sudo nft -j list table inet kiwi" => Some(match files.get(LOADED) {
            Some(file) => out(
                0,
                listing(&String::from_utf8_lossy(file.contents.expose())).to_string(),
                "",
            ),
            None => out(
                1,
                String::new(),
                "Error: No such file or directory\nlist table inet kiwi\n                ^^^^\n",
            ),
        }),
        // By its text, as a node sees it (never by the code that builds it).
        "sudo sed -n 's/^flannel-backend:[[:space:]]*//p' /etc/rancher/k3s/config.yaml" => {
            Some(match files.get("/etc/rancher/k3s/config.yaml") {
                Some(file) => {
                    let text = String::from_utf8_lossy(file.contents.expose()).into_owned();
                    let values: String = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("flannel-backend:"))
                        .map(|v| format!("{}\n", v.trim_start()))
                        .collect();
                    out(0, values, "")
                }
                None => out(
                    2,
                    String::new(),
                    "sed: can't read /etc/rancher/k3s/config.yaml: No such file or directory\n",
                ),
            })
        }
        _ => None,
    }
}

/// nft's JSON listing of the `table inet kiwi` in `ruleset`.
fn listing(ruleset: &str) -> Value {
    let mut items = vec![
        json!({"metainfo": {"version": "1.0.6", "json_schema_version": 1}}),
        json!({"table": {"family": "inet", "name": "kiwi", "handle": 1}}),
    ];
    let mut set: Option<String> = None;
    let mut in_chain = false;
    let mut rules = 0usize;
    let mut policy = None;
    for line in ruleset.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("set ").and_then(|l| l.strip_suffix(" {")) {
            set = Some(name.to_string());
            items.push(json!({"set": {"family": "inet", "table": "kiwi", "name": name}}));
        } else if line == "chain input {" {
            in_chain = true;
        } else if line == "}" {
            set = None;
            in_chain = false;
        } else if let (Some(_), Some(elements)) = (
            &set,
            line.strip_prefix("elements = { ")
                .and_then(|l| l.strip_suffix(" }")),
        ) {
            let elems: Vec<Value> = elements
                .split(", ")
                .map(|e| match e.split_once('/') {
                    Some((addr, len)) => {
                        json!({"prefix": {"addr": addr, "len": len.parse::<u32>().unwrap_or(0)}})
                    }
                    None => json!(e),
                })
                .collect();
            if let Some(Value::Object(last)) = items.last_mut() {
                if let Some(Value::Object(s)) = last.get_mut("set") {
                    s.insert("elem".into(), Value::Array(elems));
                }
            }
        } else if in_chain {
            if let Some(p) = line
                .split("policy ")
                .nth(1)
                .and_then(|p| p.strip_suffix(';'))
            {
                policy = Some(p.to_string());
            } else if !line.is_empty() {
                rules += 1;
            }
        }
    }
    items.push(
        json!({"chain": {"family": "inet", "table": "kiwi", "name": "input",
        "type": "filter", "hook": "input", "prio": 0, "policy": policy}}),
    );
    for handle in 0..rules {
        items.push(
            json!({"rule": {"family": "inet", "table": "kiwi", "chain": "input",
            "handle": handle + 10, "expr": []}}),
        );
    }
    json!({ "nftables": items })
}
