//! The host firewall of a [`super::fake::FakeRemote`]: `sudo nft -f
//! /etc/nftables.conf` loads the file into the fake machine's "kernel"
//! ([`LOADED`], a file of the fake), and `sudo nft -j list table inet kiwi`
//! answers in nft's JSON form from what was loaded, as a real node does: an
//! error with nft's words while nothing is loaded. The ruleset is read with
//! a small reader of the form `crate::firewall::render` writes (sets with
//! their type, flags and `elements = { … }`, each chain's `type … hook …
//! priority …; policy …;` and its rule lines, turned into nft's
//! expressions by their words, never by the code that renders them), which
//! is all a fake needs; the real nft checks the real text in the packet and
//! sandbox tests. `sudo sed` of a k3s config's `flannel-backend` is
//! answered from the fake's files too.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::fake::FakeFile;
use super::Output;

/// Where the fake keeps the loaded ruleset (a file of the fake machine, so
/// a test can edit it as a hand edit on a node would).
pub const LOADED: &str = "/run/fake-kernel/nftables";

/// A test's hand on the node: when this file of the fake exists, its first
/// line is replaced by its second in what `nft -f` loads (as if something
/// else on the node edited the table as it was loaded), so the executor's
/// read-back meets a table that is not what it wrote.
pub const REWRITE: &str = "/run/fake-kernel/rewrite";

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
                let mut loaded = file.contents.expose().clone();
                if let Some(rewrite) = files.get(REWRITE) {
                    let rewrite = String::from_utf8_lossy(rewrite.contents.expose()).into_owned();
                    if let Some((from, to)) = rewrite.split_once('\n') {
                        loaded = String::from_utf8_lossy(&loaded)
                            .replacen(from, to.trim_end_matches('\n'), 1)
                            .into_bytes();
                    }
                }
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

/// nft's JSON listing of the `table inet kiwi` in `ruleset`: its sets with
/// their type, flags and elements, and every chain with its rules, in the
/// JSON form nft 1.0.6 lists them (a one-element set as a plain value).
fn listing(ruleset: &str) -> Value {
    let mut items = vec![
        json!({"metainfo": {"version": "1.0.6", "json_schema_version": 1}}),
        json!({"table": {"family": "inet", "name": "kiwi", "handle": 1}}),
    ];
    let mut chains: Vec<Value> = Vec::new();
    let mut rules: Vec<Value> = Vec::new();
    let mut set: Option<serde_json::Map<String, Value>> = None;
    let mut chain: Option<String> = None;
    for line in ruleset.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("set ").and_then(|l| l.strip_suffix(" {")) {
            let mut s = serde_json::Map::new();
            for (k, v) in [("family", "inet"), ("table", "kiwi"), ("name", name)] {
                s.insert(k.into(), json!(v));
            }
            set = Some(s);
        } else if let Some(name) = line
            .strip_prefix("chain ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            chain = Some(name.to_string());
            chains.push(json!({"family": "inet", "table": "kiwi", "name": name}));
        } else if line == "}" {
            if let Some(s) = set.take() {
                items.push(json!({ "set": s }));
            }
            chain = None;
        } else if let Some(s) = set.as_mut() {
            if let Some(kind) = line.strip_prefix("type ") {
                s.insert("type".into(), json!(kind));
            } else if let Some(flags) = line.strip_prefix("flags ") {
                s.insert("flags".into(), json!(flags.split(", ").collect::<Vec<_>>()));
            } else if let Some(elements) = line
                .strip_prefix("elements = { ")
                .and_then(|l| l.strip_suffix(" }"))
            {
                let elems: Vec<Value> = elements.split(", ").map(address).collect();
                s.insert("elem".into(), Value::Array(elems));
            }
        } else if let (Some(name), false) = (&chain, line.is_empty()) {
            if let Some(header) = line.strip_prefix("type ") {
                if let Some(Value::Object(c)) = chains.last_mut() {
                    base_chain(header, c);
                }
            } else {
                let handle = rules.len() + 10;
                rules.push(
                    json!({"rule": {"family": "inet", "table": "kiwi", "chain": name,
                    "handle": handle, "expr": rule(line)}}),
                );
            }
        }
    }
    items.extend(chains.into_iter().map(|c| json!({ "chain": c })));
    items.extend(rules);
    json!({ "nftables": items })
}

/// `filter hook input priority filter; policy drop;` into the chain's
/// `type`, `hook`, `prio` and `policy`.
fn base_chain(header: &str, chain: &mut serde_json::Map<String, Value>) {
    let mut words = header.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let hook = words.nth(1).unwrap_or_default();
    let rest: String = words.collect::<Vec<_>>().join(" ");
    let priority = rest
        .strip_prefix("priority ")
        .and_then(|r| r.split(';').next())
        .unwrap_or_default();
    let named = |name: &str| match name {
        "filter" => 0,
        "dstnat" => -100,
        "srcnat" => 100,
        "mangle" => -150,
        "raw" => -300,
        other => other.parse().unwrap_or(0),
    };
    let prio: i64 = match priority.split(' ').collect::<Vec<_>>().as_slice() {
        [name, "-", n] => named(name) - n.parse::<i64>().unwrap_or(0),
        [name, "+", n] => named(name) + n.parse::<i64>().unwrap_or(0),
        [name] => named(name),
        _ => 0,
    };
    let policy = rest
        .split("policy ")
        .nth(1)
        .and_then(|p| p.strip_suffix(';'))
        .unwrap_or("accept");
    chain.insert("type".into(), json!(kind));
    chain.insert("hook".into(), json!(hook));
    chain.insert("prio".into(), json!(prio));
    chain.insert("policy".into(), json!(policy));
}

/// An address or network as nft lists it.
fn address(e: &str) -> Value {
    match e.split_once('/') {
        Some((addr, len)) => {
            json!({"prefix": {"addr": addr, "len": len.parse::<u32>().unwrap_or(0)}})
        }
        None => json!(e),
    }
}

/// A port or range as nft lists it.
fn port(p: &str) -> Value {
    match p.split_once('-') {
        Some((a, b)) => {
            json!({"range": [a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0)]})
        }
        None => json!(p.parse::<u32>().unwrap_or(0)),
    }
}

/// `{ a, b }` or `a` as nft lists a value: a one-element set as the
/// element itself.
fn value(
    words: &mut std::iter::Peekable<std::vec::IntoIter<String>>,
    each: fn(&str) -> Value,
) -> Value {
    let Some(first) = words.next() else {
        return Value::Null;
    };
    if first != "{" {
        return each(&first);
    }
    let mut list = Vec::new();
    for word in words.by_ref() {
        if word == "}" {
            break;
        }
        list.push(each(word.trim_end_matches(',')));
    }
    match list.len() {
        1 => list.swap_remove(0),
        _ => json!({ "set": list }),
    }
}

/// One rule line of the forms `crate::firewall::render` writes into nft's
/// expressions; a word of another form becomes a statement of that name.
fn rule(line: &str) -> Vec<Value> {
    let mut words = line
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
        .peekable();
    let matching = |op: &str, left: Value, right: Value| json!({"match": {"op": op, "left": left, "right": right}});
    let mut out = Vec::new();
    while let Some(word) = words.next() {
        match word.as_str() {
            "ct" => {
                words.next();
                let states: Vec<String> = words
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect();
                let right = match states.as_slice() {
                    [one] => json!(one),
                    _ => json!(states),
                };
                out.push(matching("in", json!({"ct": {"key": "state"}}), right));
            }
            "iif" => {
                let name = words.next().unwrap_or_default();
                out.push(matching(
                    "==",
                    json!({"meta": {"key": "iif"}}),
                    json!(name.trim_matches('"')),
                ));
            }
            "meta" => {
                let key = words.next().unwrap_or_default();
                let right = value(&mut words, |w| json!(w));
                out.push(matching("==", json!({"meta": {"key": key}}), right));
            }
            "fib" => {
                words.next();
                words.next();
                let op = if words.peek().map(String::as_str) == Some("!=") {
                    words.next();
                    "!="
                } else {
                    "=="
                };
                let right = json!(words.next().unwrap_or_default());
                out.push(matching(
                    op,
                    json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                    right,
                ));
            }
            "ip" | "ip6" | "tcp" | "udp" => {
                let field = words.next().unwrap_or_default();
                let each: fn(&str) -> Value = if field == "dport" { port } else { address };
                let right = value(&mut words, each);
                out.push(matching(
                    "==",
                    json!({"payload": {"protocol": word, "field": field}}),
                    right,
                ));
            }
            other => out.push(json!({ other: null })),
        }
    }
    out
}
