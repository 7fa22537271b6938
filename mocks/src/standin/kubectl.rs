//! `kubectl` (and `k3s kubectl`) for nodes: `get`, `label`, `taint`, `delete`, `cordon`,
//! `uncordon`, `drain`, `version`. Outputs and error texts follow kubectl's; `get -o json`
//! prints what kubectl prints (a `v1` `List` of `Node`s, four-space indented).
//!
//! Changes are read-modify-write with the node's `resourceVersion`, retried on conflict, so
//! two clients never silently overwrite each other.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{http_base, parse_kubeconfig, Api};
use super::cluster::ApiFailure;
use super::k3s;
use super::labels::{self, Taint};
use super::paths::{node_identity, Root};
use super::{Result, StandinError};

/// Which kubectl this is: k3s's defaults to k3s's kubeconfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/usr/bin/kubectl` (or k3s's link to it, when k3s is installed).
    Upstream,
    /// `k3s kubectl`.
    K3s,
}

#[derive(Debug, Default)]
struct Opts {
    kubeconfig: Option<String>,
    output: Option<String>,
    namespace: Option<String>,
    filename: Option<String>,
    overwrite: bool,
    words: Vec<String>,
}

fn err(msg: impl std::fmt::Display) -> StandinError {
    StandinError::tool(format!("error: {msg}"))
}

fn parse_args(args: Vec<String>) -> Result<Opts> {
    let mut o = Opts::default();
    let mut it = args.into_iter();
    let value_flags = [
        "kubeconfig",
        "output",
        "timeout",
        "grace-period",
        "request-timeout",
        "selector",
        "pod-selector",
        "chunk-size",
        "context",
        "namespace",
        "server",
        "filename",
    ];
    while let Some(a) = it.next() {
        if a == "--" {
            o.words.extend(it.by_ref());
            break;
        }
        let (name, inline) = if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let (n, rest) = short.split_at(1);
            let n = match n {
                "o" => "output",
                "l" => "selector",
                "n" => "namespace",
                "s" => "server",
                "f" => "filename",
                "A" => "all-namespaces",
                other => return Err(err(format!("unknown shorthand flag: '{other}' in {a}"))),
            };
            (
                n.to_string(),
                (!rest.is_empty()).then(|| rest.trim_start_matches('=').to_string()),
            )
        } else {
            o.words.push(a);
            continue;
        };
        let value = if value_flags.contains(&name.as_str()) {
            match inline {
                Some(v) => Some(v),
                None => Some(
                    it.next()
                        .ok_or_else(|| err(format!("flag needs an argument: --{name}")))?,
                ),
            }
        } else {
            inline
        };
        match name.as_str() {
            "kubeconfig" => o.kubeconfig = value,
            "output" => o.output = value,
            "namespace" => o.namespace = value,
            "filename" => o.filename = value,
            "overwrite" => o.overwrite = value.as_deref() != Some("false"),
            "timeout"
            | "grace-period"
            | "request-timeout"
            | "ignore-daemonsets"
            | "delete-emptydir-data"
            | "delete-local-data"
            | "force"
            | "all-namespaces"
            | "context"
            | "chunk-size"
            | "disable-eviction"
            | "client" => {}
            "selector" | "pod-selector" | "server" | "all" => {
                return Err(err(format!(
                    "--{name} is not supported by this simulated kubectl"
                )))
            }
            other => return Err(err(format!("unknown flag: --{other}"))),
        }
    }
    Ok(o)
}

/// The kubeconfig to use: `--kubeconfig`, `KUBECONFIG`, then the flavour's default.
fn kubeconfig_path(root: &Root, opts: &Opts, flavor: Flavor) -> (String, bool) {
    if let Some(p) = &opts.kubeconfig {
        return (p.clone(), true);
    }
    if let Some(p) = std::env::var("KUBECONFIG")
        .ok()
        .and_then(|v| v.split(':').next().map(str::to_string))
        .filter(|p| !p.is_empty())
    {
        return (p, true);
    }
    if flavor == Flavor::K3s || root.exists(k3s::BINARY) {
        return (k3s::KUBECONFIG.to_string(), true);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    (format!("{home}/.kube/config"), false)
}

async fn connect(root: &Root, opts: &Opts, flavor: Flavor) -> Result<(Api, String)> {
    let (path, explicit) = kubeconfig_path(root, opts, flavor);
    let Some(text) = root.read_opt(&path)? else {
        return Err(if explicit {
            err(format!("stat {path}: no such file or directory"))
        } else {
            StandinError::tool("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
        });
    };
    let config = parse_kubeconfig(&text, &PathBuf::from(&path)).map_err(|e| {
        err(format!(
            "error loading config file {path:?}: {}",
            e.render()
        ))
    })?;
    let node_ip = node_identity(root).ok().map(|n| n.ip);
    let shown = config
        .server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    Ok((
        Api::new(http_base(&config.server, node_ip), config.client_cert),
        shown,
    ))
}

/// Turns an API answer into a value or kubectl's error text.
async fn call(
    api: &Api,
    server: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<std::result::Result<Value, ApiFailure>> {
    match api.call(method, path, body).await {
        Ok(Ok(v)) => Ok(Ok(v)),
        Ok(Err(f)) if f.code == 401 => Err(err("You must be logged in to the server (Unauthorized)")),
        Ok(Err(f)) => Ok(Err(f)),
        Err(_) => Err(StandinError::tool(format!(
            "The connection to the server {server} was refused - did you specify the right host or port?"
        ))),
    }
}

fn from_server(f: &ApiFailure) -> StandinError {
    StandinError::tool(format!("Error from server ({}): {}", f.reason, f.message))
}

/// `kubectl …`.
pub async fn main(args: Vec<String>, flavor: Flavor) -> Result<i32> {
    let root = Root::from_env();
    let opts = parse_args(args)?;
    let Some((verb, rest)) = opts.words.split_first() else {
        println!("kubectl controls the Kubernetes cluster manager.\n\nBasic Commands: get, label, taint, delete, cordon, uncordon, drain, version");
        return Ok(0);
    };
    let rest = rest.to_vec();
    match verb.as_str() {
        "version" => {
            let v = if root.exists(k3s::BINARY) {
                k3s::installed_version(&root)
            } else {
                super::kubeadm::version(&root)
            };
            println!("Client Version: {v}\nKustomize Version: v5.4.2");
            Ok(0)
        }
        "get" | "delete" if is_object_kind(&rest) => {
            objects::get_or_delete(verb, &root, &opts, flavor, &rest).await
        }
        "create" | "replace" => objects::write(verb, &root, &opts, flavor, &rest).await,
        "get" => get(&root, &opts, flavor, &rest).await,
        "label" => label(&root, &opts, flavor, &rest).await,
        "annotate" => annotate(&root, &opts, flavor, &rest).await,
        "taint" => taint(&root, &opts, flavor, &rest).await,
        "delete" => delete(&root, &opts, flavor, &rest).await,
        "cordon" => cordon(&root, &opts, flavor, &rest, true, false).await,
        "uncordon" => cordon(&root, &opts, flavor, &rest, false, false).await,
        "drain" => cordon(&root, &opts, flavor, &rest, true, true).await,
        other => Err(err(format!(
            "unknown command {other:?} for \"kubectl\"\n\nDid you mean this?\n\tget"
        ))),
    }
}

/// True when the words name a namespace, ConfigMap or Lease rather than nodes.
fn is_object_kind(words: &[String]) -> bool {
    words.first().is_some_and(|w| {
        let kind = w.split_once('/').map_or(w.as_str(), |(k, _)| k);
        super::objects::Kind::from_resource(kind).is_some()
    })
}

/// Splits `node NAME…`, `nodes NAME…` or `node/NAME…` into names; other kinds are refused.
fn node_names(words: &[String], verb: &str) -> Result<(Vec<String>, Vec<String>)> {
    let Some((first, rest)) = words.split_first() else {
        return Err(err(format!("You must provide one or more resources by argument or filename.\nSee 'kubectl {verb} -h' for help and examples")));
    };
    let is_node = |k: &str| matches!(k, "node" | "nodes" | "no");
    if let Some((kind, name)) = first.split_once('/') {
        if !is_node(kind) {
            return Err(err(format!(
                "the server doesn't have a resource type {kind:?}"
            )));
        }
        let mut names = vec![name.to_string()];
        let mut others = Vec::new();
        for w in rest {
            match w.split_once('/') {
                Some((k, n)) if is_node(k) => names.push(n.to_string()),
                _ => others.push(w.clone()),
            }
        }
        return Ok((names, others));
    }
    if !is_node(first) {
        return Err(err(format!(
            "the server doesn't have a resource type {first:?}"
        )));
    }
    Ok((rest.to_vec(), Vec::new()))
}

fn pretty(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn get(root: &Root, opts: &Opts, flavor: Flavor, words: &[String]) -> Result<i32> {
    if words
        .first()
        .is_some_and(|w| matches!(w.as_str(), "pods" | "pod" | "po"))
    {
        eprintln!("No resources found in default namespace.");
        return Ok(0);
    }
    let (names, _) = node_names(words, "get")?;
    let (api, server) = connect(root, opts, flavor).await?;
    let mut items = Vec::new();
    let mut failure = None;
    if names.is_empty() {
        match call(&api, &server, Method::GET, "/api/v1/nodes", None).await? {
            Ok(list) => items = list["items"].as_array().cloned().unwrap_or_default(),
            Err(f) => return Err(from_server(&f)),
        }
    } else {
        for name in &names {
            match call(
                &api,
                &server,
                Method::GET,
                &format!("/api/v1/nodes/{name}"),
                None,
            )
            .await?
            {
                Ok(node) => items.push(node),
                Err(f) => failure = Some(f),
            }
        }
    }
    let single = names.len() == 1;
    match opts.output.as_deref() {
        Some("json") | Some("yaml") => {
            let doc = if single {
                items.first().cloned()
            } else {
                Some(json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}))
            };
            if let Some(doc) = doc {
                if opts.output.as_deref() == Some("json") {
                    println!("{}", pretty(&doc));
                } else {
                    print!("{}", serde_norway::to_string(&doc).unwrap_or_default());
                }
            }
        }
        Some("name") => {
            for n in &items {
                println!("node/{}", n["metadata"]["name"].as_str().unwrap_or_default());
            }
        }
        None | Some("wide") => {
            if items.is_empty() && failure.is_none() {
                eprintln!("No resources found");
            } else if !items.is_empty() {
                print!("{}", table(&items, opts.output.as_deref() == Some("wide"), Utc::now()));
            }
        }
        Some(other) => {
            return Err(err(format!("unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,wide,yaml")))
        }
    }
    match failure {
        Some(f) => Err(from_server(&f)),
        None => Ok(0),
    }
}

/// kubectl's human durations (`45s`, `5m3s`, `3h`, `2d4h`).
pub fn human_age(created: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - created).num_seconds().max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn table(items: &[Value], wide: bool, now: DateTime<Utc>) -> String {
    let mut rows = vec![{
        let mut h = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
        if wide {
            h.extend([
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ]);
        }
        h.into_iter().map(str::to_string).collect::<Vec<_>>()
    }];
    for n in items {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let ready = n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"] == "True")
            .unwrap_or(false);
        let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
        if n["spec"]["unschedulable"] == true {
            status.push_str(",SchedulingDisabled");
        }
        let mut roles: Vec<String> = n["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                k.strip_prefix("node-role.kubernetes.io/")
                    .map(str::to_string)
                    .or_else(|| (k == "kubernetes.io/role").then(|| s(v)))
            })
            .filter(|r| !r.is_empty())
            .collect();
        roles.sort();
        roles.dedup();
        let age = s(&n["metadata"]["creationTimestamp"])
            .parse::<DateTime<Utc>>()
            .map(|c| human_age(c, now))
            .unwrap_or_else(|_| "<unknown>".into());
        let address = |kind: &str| {
            n["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == kind)
                .map(|a| s(&a["address"]))
                .unwrap_or_else(|| "<none>".into())
        };
        let mut row = vec![
            s(&n["metadata"]["name"]),
            status,
            if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            },
            age,
            s(&n["status"]["nodeInfo"]["kubeletVersion"]),
        ];
        if wide {
            let info = &n["status"]["nodeInfo"];
            row.extend([
                address("InternalIP"),
                address("ExternalIP"),
                s(&info["osImage"]),
                s(&info["kernelVersion"]),
                s(&info["containerRuntimeVersion"]),
            ]);
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == cols {
                    cell.clone()
                } else {
                    format!("{cell:<w$}   ", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.concat().trim_end());
        out.push('\n');
    }
    out
}

/// What an edit of a node decided.
enum Edit {
    /// Write the edited node back, then print the message.
    Write(String),
    /// Nothing changes; print the message.
    Unchanged(String),
}

/// Reads a node, lets `change` edit it, and writes it back; retried on conflicts.
/// Returns the message to print; an error from `change` stops without writing.
async fn edit_node(
    api: &Api,
    server: &str,
    name: &str,
    mut change: impl FnMut(&mut Value) -> Result<Edit>,
) -> Result<String> {
    for _ in 0..5 {
        let mut node = match call(
            api,
            server,
            Method::GET,
            &format!("/api/v1/nodes/{name}"),
            None,
        )
        .await?
        {
            Ok(n) => n,
            Err(f) => return Err(from_server(&f)),
        };
        let message = match change(&mut node)? {
            Edit::Write(m) => m,
            Edit::Unchanged(m) => return Ok(m),
        };
        match call(
            api,
            server,
            Method::PUT,
            &format!("/api/v1/nodes/{name}"),
            Some(&node),
        )
        .await?
        {
            Ok(_) => return Ok(message),
            Err(f) if f.code == 409 => continue,
            Err(f) => return Err(from_server(&f)),
        }
    }
    Err(StandinError::tool(format!(
        "Error from server (Conflict): Operation cannot be fulfilled on nodes {name:?}: the object has been modified; please apply your changes to the latest version and try again"
    )))
}

fn object_labels(node: &Value) -> BTreeMap<String, String> {
    node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

async fn label(root: &Root, opts: &Opts, flavor: Flavor, words: &[String]) -> Result<i32> {
    let (mut names, mut specs) = node_names(words, "label")?;
    // `label node NAME k=v`: names and specs share the argument list.
    let tail: Vec<String> = names
        .iter()
        .filter(|w| w.contains('=') || w.ends_with('-'))
        .cloned()
        .collect();
    names.retain(|w| !(w.contains('=') || w.ends_with('-')));
    specs.extend(tail);
    if names.is_empty() {
        return Err(err("resource(s) were provided, but no name was specified"));
    }
    if specs.is_empty() {
        return Err(err("at least one label update is required"));
    }
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for spec in &specs {
        if let Some(key) = spec.strip_suffix('-').filter(|_| !spec.contains('=')) {
            labels::check_key(key).map_err(|e| err(format!("invalid label spec: {spec}: {e}")))?;
            remove.push(key.to_string());
        } else {
            let Some((k, v)) = spec.split_once('=') else {
                return Err(err(format!("invalid label spec: {spec}")));
            };
            labels::check_key(k).map_err(|e| err(format!("invalid label spec: {spec}: {e}")))?;
            labels::check_value(v)
                .map_err(|e| err(format!("invalid label value: {spec:?}: at key: {k:?}: {e}")))?;
            add.push((k.to_string(), v.to_string()));
        }
    }
    let (api, server) = connect(root, opts, flavor).await?;
    for name in &names {
        let overwrite = opts.overwrite;
        let msg = edit_node(&api, &server, name, |node| {
            let old = object_labels(node);
            let mut new = old.clone();
            for (k, v) in &add {
                if let Some(existing) = old.get(k) {
                    if !overwrite && existing != v {
                        return Err(err(format!(
                            "'{k}' already has a value ({existing}), and --overwrite is false"
                        )));
                    }
                }
                new.insert(k.clone(), v.clone());
            }
            for k in &remove {
                if new.remove(k).is_none() {
                    eprintln!("label {k:?} not found.");
                }
            }
            let verdict = if new == old {
                "not labeled"
            } else if !overwrite && new.len() < old.len() {
                "unlabeled"
            } else {
                "labeled"
            };
            if new == old {
                return Ok(Edit::Unchanged(format!("node/{name} {verdict}")));
            }
            node["metadata"]["labels"] = json!(new);
            Ok(Edit::Write(format!("node/{name} {verdict}")))
        })
        .await?;
        println!("{msg}");
    }
    Ok(0)
}

/// `annotate node NAME k=v… k-…`: like `label`, but values are free text.
async fn annotate(root: &Root, opts: &Opts, flavor: Flavor, words: &[String]) -> Result<i32> {
    let (mut names, mut specs) = node_names(words, "annotate")?;
    let tail: Vec<String> = names
        .iter()
        .filter(|w| w.contains('=') || w.ends_with('-'))
        .cloned()
        .collect();
    names.retain(|w| !(w.contains('=') || w.ends_with('-')));
    specs.extend(tail);
    if names.is_empty() {
        return Err(err("resource(s) were provided, but no name was specified"));
    }
    if specs.is_empty() {
        return Err(err("at least one annotation update is required"));
    }
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for spec in &specs {
        if let Some(key) = spec.strip_suffix('-').filter(|_| !spec.contains('=')) {
            labels::check_key(key)
                .map_err(|e| err(format!("invalid annotation spec: {spec}: {e}")))?;
            remove.push(key.to_string());
        } else {
            let Some((k, v)) = spec.split_once('=') else {
                return Err(err(format!("invalid annotation spec: {spec}")));
            };
            labels::check_key(k)
                .map_err(|e| err(format!("invalid annotation spec: {spec}: {e}")))?;
            add.push((k.to_string(), v.to_string()));
        }
    }
    let (api, server) = connect(root, opts, flavor).await?;
    for name in &names {
        let overwrite = opts.overwrite;
        let msg = edit_node(&api, &server, name, |node| {
            let old = node["metadata"]["annotations"].clone();
            let mut new = old.as_object().cloned().unwrap_or_default();
            for (k, v) in &add {
                if let Some(existing) = new.get(k).and_then(Value::as_str) {
                    if !overwrite && existing != v {
                        return Err(err(format!(
                            "--overwrite is false but found the following declared annotation(s): '{k}' already has a value ({existing})"
                        )));
                    }
                }
                new.insert(k.clone(), Value::String(v.clone()));
            }
            for k in &remove {
                new.remove(k);
            }
            let new = Value::Object(new);
            if new == old {
                return Ok(Edit::Unchanged(format!("node/{name} not annotated")));
            }
            node["metadata"]["annotations"] = new;
            Ok(Edit::Write(format!("node/{name} annotated")))
        })
        .await?;
        println!("{msg}");
    }
    Ok(0)
}

/// A taint removal: key, and effect unless all effects go.
#[derive(Debug, Clone)]
struct TaintRemoval {
    spec: String,
    key: String,
    effect: Option<String>,
}

fn object_taints(node: &Value) -> Vec<Taint> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| serde_json::from_value::<Taint>(t.clone()).ok())
        .collect()
}

async fn taint(root: &Root, opts: &Opts, flavor: Flavor, words: &[String]) -> Result<i32> {
    let (mut names, mut specs) = node_names(words, "taint")?;
    let is_spec = |w: &String| w.contains('=') || w.contains(':') || w.ends_with('-');
    let tail: Vec<String> = names.iter().filter(|w| is_spec(w)).cloned().collect();
    names.retain(|w| !is_spec(w));
    specs.extend(tail);
    if names.is_empty() || specs.is_empty() {
        return Err(err("at least one taint update is required"));
    }
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for spec in &specs {
        if let Some(body) = spec.strip_suffix('-') {
            let (key_value, effect) = match body.rsplit_once(':') {
                Some((kv, e)) => (kv, Some(e.to_string())),
                None => (body, None),
            };
            if let Some(e) = &effect {
                if !labels::EFFECTS.contains(&e.as_str()) {
                    return Err(err(format!(
                        "invalid taint effect: {e}, unsupported taint effect"
                    )));
                }
            }
            let key = key_value.split_once('=').map_or(key_value, |(k, _)| k);
            labels::check_key(key).map_err(|e| err(format!("invalid taint spec: {spec}, {e}")))?;
            remove.push(TaintRemoval {
                spec: body.to_string(),
                key: key.to_string(),
                effect,
            });
        } else {
            add.push(labels::parse_taint(spec).map_err(err)?);
        }
    }
    for r in &remove {
        if add
            .iter()
            .any(|a| a.key == r.key && r.effect.as_ref().is_none_or(|e| *e == a.effect))
        {
            return Err(err(format!(
                "can not both modify and remove the following taint(s) in the same command: {}",
                r.spec
            )));
        }
    }
    let (api, server) = connect(root, opts, flavor).await?;
    for name in &names {
        let overwrite = opts.overwrite;
        let msg = edit_node(&api, &server, name, |node| {
            let mut taints = object_taints(node);
            for a in &add {
                match taints.iter_mut().find(|t| t.key == a.key && t.effect == a.effect) {
                    Some(_) if !overwrite => {
                        return Err(err(format!("node {name} already has {} taint(s) with same effect(s) and --overwrite is false", a.key)))
                    }
                    Some(existing) => existing.value = a.value.clone(),
                    None => taints.push(a.clone()),
                }
            }
            for r in &remove {
                let before = taints.len();
                taints.retain(|t| !(t.key == r.key && r.effect.as_ref().is_none_or(|e| *e == t.effect)));
                if taints.len() == before {
                    return Err(err(format!("taint {:?} not found", r.spec)));
                }
            }
            node["spec"]["taints"] = serde_json::to_value(&taints).unwrap_or(Value::Null);
            let verdict = match (add.is_empty(), remove.is_empty()) {
                (false, true) => "tainted",
                (true, false) => "untainted",
                _ => "modified",
            };
            Ok(Edit::Write(format!("node/{name} {verdict}")))
        })
        .await?;
        println!("{msg}");
    }
    Ok(0)
}

async fn delete(root: &Root, opts: &Opts, flavor: Flavor, words: &[String]) -> Result<i32> {
    let (names, _) = node_names(words, "delete")?;
    if names.is_empty() {
        return Err(err("resource(s) were provided, but no name was specified"));
    }
    let (api, server) = connect(root, opts, flavor).await?;
    let mut failure = None;
    for name in &names {
        match call(
            &api,
            &server,
            Method::DELETE,
            &format!("/api/v1/nodes/{name}"),
            None,
        )
        .await?
        {
            Ok(_) => println!("node {name:?} deleted"),
            Err(f) => failure = Some(f),
        }
    }
    match failure {
        Some(f) => Err(from_server(&f)),
        None => Ok(0),
    }
}

async fn cordon(
    root: &Root,
    opts: &Opts,
    flavor: Flavor,
    words: &[String],
    on: bool,
    drain: bool,
) -> Result<i32> {
    let names: Vec<String> = words
        .iter()
        .map(|w| w.strip_prefix("node/").unwrap_or(w).to_string())
        .collect();
    if names.is_empty() {
        return Err(err(
            "USAGE: cordon NODE [flags]\nSee 'kubectl cordon -h' for help and examples",
        ));
    }
    let (api, server) = connect(root, opts, flavor).await?;
    for name in &names {
        let msg = edit_node(&api, &server, name, |node| {
            let current = node["spec"]["unschedulable"] == true;
            let word = if on { "cordoned" } else { "uncordoned" };
            if current == on {
                return Ok(Edit::Unchanged(format!("node/{name} already {word}")));
            }
            node["spec"]["unschedulable"] = Value::Bool(on);
            Ok(Edit::Write(format!("node/{name} {word}")))
        })
        .await?;
        println!("{msg}");
        if drain {
            println!("node/{name} drained");
        }
    }
    Ok(0)
}

/// `get`, `delete`, `create` and `replace` of namespaces, ConfigMaps and Leases, as kubectl
/// does them: a manifest read from `-f -` is sent as is (a `metadata.resourceVersion` in it
/// makes a replace conditional), and the server's refusal is printed in kubectl's words.
mod objects {
    use std::io::Read;

    use super::super::objects::Kind;
    use super::*;

    fn namespace(opts: &Opts) -> String {
        opts.namespace.clone().unwrap_or_else(|| "default".into())
    }

    /// `KIND NAME` or `KIND/NAME`.
    fn kind_and_name(words: &[String], verb: &str) -> Result<(Kind, String)> {
        let (kind, name) = match words {
            [one] if one.contains('/') => {
                let (k, n) = one.split_once('/').unwrap_or_default();
                (k.to_string(), n.to_string())
            }
            [kind, name, ..] => (kind.clone(), name.clone()),
            _ => {
                return Err(err(format!(
                    "resource(s) were provided, but no name was specified\nSee 'kubectl {verb} -h' for help and examples"
                )))
            }
        };
        let kind = Kind::from_resource(&kind)
            .ok_or_else(|| err(format!("the server doesn't have a resource type {kind:?}")))?;
        Ok((kind, name))
    }

    fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
        match kind {
            Kind::Namespace => format!("/api/v1/namespaces/{name}"),
            _ => format!("{}/{name}", kind.collection_path(namespace)),
        }
    }

    pub(super) async fn get_or_delete(
        verb: &str,
        root: &Root,
        opts: &Opts,
        flavor: Flavor,
        words: &[String],
    ) -> Result<i32> {
        let (kind, name) = kind_and_name(words, verb)?;
        let ns = namespace(opts);
        let (api, server) = connect(root, opts, flavor).await?;
        let method = if verb == "delete" {
            Method::DELETE
        } else {
            Method::GET
        };
        match call(&api, &server, method, &object_path(kind, &ns, &name), None).await? {
            Err(f) => Err(from_server(&f)),
            Ok(_) if verb == "delete" => {
                println!("{} {name:?} deleted", kind.singular());
                Ok(0)
            }
            Ok(object) => {
                match opts.output.as_deref() {
                    Some("json") => println!("{}", pretty(&object)),
                    Some("yaml") => {
                        print!("{}", serde_norway::to_string(&object).unwrap_or_default())
                    }
                    Some("name") => println!("{}/{name}", kind.singular()),
                    None => println!("NAME\n{name}"),
                    Some(other) => {
                        return Err(err(format!(
                            "unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,yaml"
                        )))
                    }
                }
                Ok(0)
            }
        }
    }

    /// `create namespace NAME`, `create -f -` and `replace -f -`.
    pub(super) async fn write(
        verb: &str,
        root: &Root,
        opts: &Opts,
        flavor: Flavor,
        words: &[String],
    ) -> Result<i32> {
        let (kind, body, source) = match (&opts.filename, words) {
            (None, [ns_word, name])
                if verb == "create" && Kind::from_resource(ns_word) == Some(Kind::Namespace) =>
            {
                (
                    Kind::Namespace,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                    None,
                )
            }
            (Some(file), []) => {
                let text = if file == "-" {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|e| err(format!("reading from stdin: {e}")))?;
                    text
                } else {
                    root.read_opt(file)?
                        .ok_or_else(|| err(format!("the path {file:?} does not exist")))?
                };
                let body: Value = serde_norway::from_str(&text).map_err(|e| {
                    err(format!(
                        "error parsing STDIN: error converting YAML to JSON: {e}"
                    ))
                })?;
                let api_version = body["apiVersion"].as_str().unwrap_or_default();
                let kind_name = body["kind"].as_str().unwrap_or_default();
                if api_version.is_empty() || kind_name.is_empty() {
                    return Err(err(
                        "error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false"
                    ));
                }
                let kind = Kind::from_manifest(api_version, kind_name).ok_or_else(|| {
                    err(format!(
                        "resource mapping not found for name: {:?} namespace: \"\" from \"STDIN\": no matches for kind {kind_name:?} in version {api_version:?}",
                        body["metadata"]["name"].as_str().unwrap_or_default()
                    ))
                })?;
                let source = if file == "-" {
                    "STDIN".to_string()
                } else {
                    file.clone()
                };
                (kind, body, Some(source))
            }
            _ => {
                return Err(err(format!(
                    "must specify one of -f and -k\n\nSee 'kubectl {verb} -h' for help and examples"
                )))
            }
        };
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = match (body["metadata"]["namespace"].as_str(), &opts.namespace) {
            (Some(own), Some(flag)) if own != flag => {
                return Err(err(format!(
                    "the namespace from the provided object {own:?} does not match the namespace {flag:?}. You must pass '--namespace={own}' to perform this operation."
                )))
            }
            (Some(own), _) => own.to_string(),
            (None, _) => namespace(opts),
        };
        let (api, server) = connect(root, opts, flavor).await?;
        let (method, path, done, doing) = if verb == "create" {
            (
                Method::POST,
                kind.collection_path(&ns),
                "created",
                "creating",
            )
        } else {
            (
                Method::PUT,
                object_path(kind, &ns, &name),
                "replaced",
                "replacing",
            )
        };
        match call(&api, &server, method, &path, Some(&body)).await? {
            Ok(object) => {
                match opts.output.as_deref() {
                    Some("json") => println!("{}", pretty(&object)),
                    Some("name") => println!("{}/{name}", kind.singular()),
                    _ => println!("{}/{name} {done}", kind.singular()),
                }
                Ok(0)
            }
            Err(f) => match source {
                Some(source) => Err(StandinError::tool(format!(
                    "Error from server ({}): error when {doing} {source:?}: {}",
                    f.reason, f.message
                ))),
                None => Err(from_server(&f)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let t0 = Utc::now();
        assert_eq!(human_age(t0, t0 + chrono::Duration::seconds(45)), "45s");
        assert_eq!(human_age(t0, t0 + chrono::Duration::seconds(303)), "5m3s");
        assert_eq!(human_age(t0, t0 + chrono::Duration::hours(30)), "30h");
    }
}
