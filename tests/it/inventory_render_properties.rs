//! No inventory value can change the documents it is rendered into.
//!
//! Arbitrary strings (any Unicode, YAML syntax, line and paragraph
//! separators, bidirectional controls, valid values with something added)
//! are put into every string field and key of an inventory: names, labels,
//! taints, versions, the SSH key and its comment (in `kiwi.toml` or in a
//! `.pub` file), image, region, endpoint, addresses, product, price, tier,
//! class, the customer file's name. Each inventory either is refused by
//! validation with a `FILE:LINE:COL` location, or every document
//! rendered from it (the user data of each node kind, the k3s
//! `config.yaml`, the kubeadm `JoinConfiguration`) renders without error and
//! parses, with cloud-init's own YAML rules (PyYAML), to exactly the
//! intended structure: each value comes back equal, and no key appears that
//! the template does not have. User data must also pass cloud-init's schema
//! validation (`cloud-init schema`).
//!
//! The documents are checked in one Python run at the end, with
//! `/usr/bin/python3` when it has cloud-init (Debian's `cloud-init`
//! package), else `python3` with PyYAML. `PROPTEST_CASES` sets the number of
//! inventories (256 by default).

#![allow(clippy::unwrap_used)]

use kiwi_infra::firewall::FirewallShape;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiwi_infra::cloudinit::{render, UserDataVars};
use kiwi_infra::inventory::{self, ClusterKind, ClusterSpec, Desired, PoolRole};
use kiwi_infra::node::{k3s, kubeadm};
use kiwi_infra::plan::UserDataTemplate;
use kiwi_infra::secret::Secret;
use kiwi_infra::ssh::HostKey;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

const DEFAULT_CASES: u32 = 256;

const KEY_BLOB: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G";

/// Every string the inventory has, with a valid value each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Region,
    Image,
    /// The whole `ssh_public_key` line.
    Key,
    /// Only the comment after a valid key.
    KeyComment,
    K3sVersion,
    ApiEndpoint,
    KubernetesVersion,
    ControlPlaneName,
    ControlPlaneAddress,
    CorePool,
    Product,
    LabelKey,
    LabelValue,
    Taint,
    Customer,
    AgentPool,
    Tier,
    Class,
    /// The price of a product (a string of euros).
    Price,
    /// The comment of the key in `operator.pub`, read through
    /// `ssh_public_key_file` (the file's text is not TOML).
    KeyFileComment,
}

const FIELDS: &[Field] = &[
    Field::Region,
    Field::Image,
    Field::Key,
    Field::KeyComment,
    Field::K3sVersion,
    Field::ApiEndpoint,
    Field::KubernetesVersion,
    Field::ControlPlaneName,
    Field::ControlPlaneAddress,
    Field::CorePool,
    Field::Product,
    Field::LabelKey,
    Field::LabelValue,
    Field::Taint,
    Field::Customer,
    Field::AgentPool,
    Field::Tier,
    Field::Class,
    Field::Price,
    Field::KeyFileComment,
];

impl Field {
    fn valid(self) -> &'static str {
        match self {
            Field::Region => "EU",
            Field::Image => "ubuntu-24.04",
            Field::Key => "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@kiwistack.io",
            Field::KeyComment => "ops@kiwistack.io",
            Field::K3sVersion => "v1.31.4+k3s1",
            Field::ApiEndpoint => "api.core.example:6443",
            Field::KubernetesVersion => "v1.31.4",
            Field::ControlPlaneName => "cp-01",
            Field::ControlPlaneAddress => "127.0.31.11",
            Field::CorePool => "general",
            Field::Product => "V94",
            Field::LabelKey => "workload.example.com/rtc",
            Field::LabelValue => "true",
            Field::Taint => "workload.example.com/rtc=true:NoSchedule",
            Field::Customer => "acme",
            Field::AgentPool => "rtc",
            Field::Tier => "mesh",
            Field::Class => "vps",
            Field::Price => "8.49",
            Field::KeyFileComment => "ops@kiwistack.io",
        }
    }
}

/// Characters and fragments that mean something to YAML, TOML, a shell or
/// a terminal, or that editors do not show.
const FRAGMENTS: &[&str] = &[
    "\u{2028}",
    "\u{2029}",
    "\u{85}",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\0",
    "\u{1b}[2J",
    "\u{7f}",
    "\u{9b}",
    "\u{202e}",
    "\u{2066}",
    "\u{200b}",
    "\u{feff}",
    "\u{fffe}",
    ": ",
    " #",
    "#",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a",
    "*a",
    "!!python/object/apply:os.system",
    "|",
    ">",
    "'",
    "\"",
    "\\",
    "\\u2028",
    "---",
    "...",
    "%YAML 1.1",
    "@",
    "`",
    "$(id)",
    ";",
    "=",
    ":NoSchedule",
    "yes",
    "null",
    "~",
    "0x1F",
    "1e3",
    " ",
    "-",
    ".",
    "/",
    "..",
    "Ü",
    "運用",
    "😀",
    "\u{2028}bootcmd: [[sh, -c, 'touch /pwned']]",
    "\nbootcmd:\n  - [sh, -c, 'touch /pwned']",
    "\", \"extra\": \"x",
];

/// What makes a plain YAML scalar something else, if written unquoted:
/// the free-text values that pass validation (the key's comment) meet
/// these often.
const YAML_SIGNIFICANT: &[&str] = &[
    ": ", " #", " # x", "- ", "? ", ": {a: b}", " [x]", "{", "[", "&", "*", "!", "|", ">", "'",
    "\"", "%", "@", "`", ", ", ":", "\\",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        3 => prop::sample::select(YAML_SIGNIFICANT).prop_map(str::to_string),
        2 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
        2 => "[ -~]{0,12}",
        1 => "[a-z0-9.-]{1,12}",
    ]
}

/// A value for `field`: valid, valid with fragments around or inside it,
/// or something else entirely.
fn value(field: Field) -> impl Strategy<Value = String> {
    let valid = field.valid();
    prop_oneof![
        2 => Just(valid.to_string()),
        2 => (fragment(), fragment()).prop_map(move |(a, b)| format!("{a}{valid}{b}")),
        2 => (fragment(), any::<prop::sample::Index>()).prop_map(move |(f, i)| {
            let chars: Vec<char> = valid.chars().collect();
            let at = i.index(chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            s.push_str(&f);
            s.extend(&chars[at..]);
            s
        }),
        1 => fragment(),
        1 => prop::collection::vec(fragment(), 1..4).prop_map(|v| v.concat()),
    ]
}

/// One generated inventory: the fields that differ from their valid value,
/// and whether strings are written with escapes only (no raw non-ASCII).
#[derive(Debug, Clone)]
struct Case {
    values: BTreeMap<Field, String>,
    escape_all: bool,
}

/// Fields, the free-text ones (which pass validation with odd content) more
/// often than those with a closed set of values.
fn field() -> impl Strategy<Value = Field> {
    let weight = |f: &Field| match f {
        Field::KeyComment => 10,
        Field::KeyFileComment => 4,
        Field::LabelKey | Field::LabelValue | Field::Taint | Field::Image => 3,
        Field::CorePool | Field::AgentPool | Field::Customer | Field::ControlPlaneName => 2,
        _ => 1,
    };
    let weighted: Vec<Field> = FIELDS
        .iter()
        .flat_map(|f| std::iter::repeat_n(*f, weight(f)))
        .collect();
    prop::sample::select(weighted)
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(field().prop_flat_map(|f| (Just(f), value(f))), 1..=2),
        any::<bool>(),
    )
        .prop_map(|(values, escape_all)| Case {
            values: values.into_iter().collect(),
            escape_all,
        })
}

impl Case {
    fn get(&self, field: Field) -> String {
        match self.values.get(&field) {
            Some(v) => v.clone(),
            None if field == Field::Key => match self.values.get(&Field::KeyComment) {
                Some(comment) => format!("ssh-ed25519 {KEY_BLOB} {comment}"),
                None => field.valid().to_string(),
            },
            None => field.valid().to_string(),
        }
    }

    /// A TOML basic string holding `s`: only what TOML forbids raw is
    /// escaped (so U+2028, U+0085 or a bidi control arrive as they are),
    /// unless the case escapes everything outside printable ASCII.
    fn toml(&self, field: Field) -> String {
        let s = self.get(field);
        let mut out = String::from("\"");
        for c in s.chars() {
            let n = u32::from(c);
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (n < 0x20 && c != '\t')
                    || n == 0x7f
                    || (self.escape_all && !(' '..='~').contains(&c)) =>
                {
                    if n > 0xffff {
                        out.push_str(&format!("\\U{n:08X}"));
                    } else {
                        out.push_str(&format!("\\u{n:04X}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// The text of `operator.pub` when the key is read from a file.
    fn key_file(&self) -> Option<String> {
        let comment = self.values.get(&Field::KeyFileComment)?;
        Some(format!("ssh-ed25519 {KEY_BLOB} {comment}\n"))
    }

    fn kiwi_toml(&self) -> String {
        let key = match self.key_file() {
            Some(_) => "ssh_public_key_file = \"operator.pub\"".to_string(),
            None => format!("ssh_public_key = {}", self.toml(Field::Key)),
        };
        format!(
            r#"[provider]
region = {region}
image = {image}
{key}
period = 1
operator_networks = ["198.51.100.0/24", "2001:db8::/48"]

[prices]
V94 = {price}
V8 = "38.40"

[k3s]
version = {k3s}

[core]
api_endpoint = {endpoint}
kubernetes_version = {k8s}
control_plane = [
  {{ name = {cp_name}, address = {cp_address} }},
]

[core.pools.{core_pool}]
class = "vps"
product = {product}
count = 1
labels = {{ {label_key} = {label_value} }}
taints = [{taint}]

[core.firewall]
cni_ports = ["udp/4789", "tcp/179"]
cluster_networks = ["10.244.0.0/16", "10.96.0.0/12"]
"#,
            region = self.toml(Field::Region),
            image = self.toml(Field::Image),
            price = self.toml(Field::Price),
            k3s = self.toml(Field::K3sVersion),
            endpoint = self.toml(Field::ApiEndpoint),
            k8s = self.toml(Field::KubernetesVersion),
            cp_name = self.toml(Field::ControlPlaneName),
            cp_address = self.toml(Field::ControlPlaneAddress),
            core_pool = self.toml(Field::CorePool),
            product = self.toml(Field::Product),
            label_key = self.toml(Field::LabelKey),
            label_value = self.toml(Field::LabelValue),
            taint = self.toml(Field::Taint),
        )
    }

    fn customer_toml(&self) -> String {
        format!(
            r#"tier = {tier}

[servers]
class = {class}
product = "V94"
count = 1
labels = {{ {label_key} = {label_value} }}
taints = [{taint}]

[pools.{agent_pool}]
class = "vds"
product = "V8"
count = 1
"#,
            tier = self.toml(Field::Tier),
            class = self.toml(Field::Class),
            label_key = self.toml(Field::LabelKey),
            label_value = self.toml(Field::LabelValue),
            taint = self.toml(Field::Taint),
            agent_pool = self.toml(Field::AgentPool),
        )
    }

    /// The customer file's name, if the file system can hold it.
    fn customer_file(&self) -> Option<String> {
        let name = self.get(Field::Customer);
        let ok = !name.contains('/')
            && !name.contains('\0')
            && name != "."
            && name != ".."
            && name.len() <= 200;
        ok.then(|| format!("{name}.toml"))
    }
}

/// Writes the case; returns each written file with its text.
fn write(dir: &Path, case: &Case) -> Option<Vec<(PathBuf, String)>> {
    let customer = case.customer_file()?;
    std::fs::create_dir_all(dir.join("customers")).unwrap();
    let mut files = vec![
        (dir.join("kiwi.toml"), case.kiwi_toml()),
        (dir.join("customers").join(customer), case.customer_toml()),
    ];
    if let Some(text) = case.key_file() {
        files.push((dir.join("operator.pub"), text));
    }
    for (path, text) in &files {
        std::fs::write(path, text).unwrap();
    }
    Some(files)
}

/// A refused inventory: every error names a file of it and, for a file that
/// exists, a line and column inside it; the printed form holds no control
/// character.
fn check_refused(
    files: &[(PathBuf, String)],
    diagnostics: &inventory::Diagnostics,
) -> Result<(), TestCaseError> {
    prop_assert!(!diagnostics.is_empty());
    for d in diagnostics {
        let shown = d.to_string();
        prop_assert!(
            inventory::text::first_forbidden(&shown).is_none(),
            "a diagnostic prints a control character: {shown:?}"
        );
        let Some((_, text)) = files.iter().find(|(p, _)| *p == d.file) else {
            continue;
        };
        let Some(pos) = d.position else {
            return Err(TestCaseError::fail(format!("no line and column: {shown}")));
        };
        prop_assert!(
            pos.line >= 1 && pos.line <= text.split('\n').count() && pos.column >= 1,
            "position outside the file: {shown}"
        );
    }
    Ok(())
}

/// One document to check in Python.
#[derive(serde::Serialize)]
struct Doc {
    id: String,
    text: String,
    /// The intended structure, or…
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<Value>,
    /// …a rendering with placeholders, whose strings are replaced (`exact`:
    /// whole strings; `sub`: parts of strings) to give the intended one.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<String>,
    exact: BTreeMap<String, String>,
    sub: BTreeMap<String, String>,
    schema: bool,
}

const NODE_IP: &str = "127.0.10.9";
const SERVER_IP: &str = "127.0.10.5";
const TOKEN: &str = "K10aaaa::node:secret";
const CA_HASH: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn host_key() -> HostKey {
    HostKey::from_seed([7; 32], "node").unwrap()
}

fn user_data(
    template: UserDataTemplate,
    hostname: &str,
    key: &str,
    version: Option<String>,
    firewall: &FirewallShape,
) -> Result<String, String> {
    let host = host_key();
    render(
        template,
        &UserDataVars {
            hostname: hostname.to_string(),
            ssh_public_key: key.to_string(),
            host_private_key: host.private_openssh().clone(),
            host_public_key: host.public_openssh().to_string(),
            kubernetes_version: version,
            firewall: firewall.clone(),
        },
    )
    .map(|s| s.expose().clone())
    .map_err(|e| e.to_string())
}

/// The documents an inventory that passed validation renders to, with what
/// each must parse to.
fn documents(id: &str, desired: &Desired) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    let key = &desired.provider.ssh_public_key;
    let baseline_version = "v9999.9999.9999";
    for cluster in &desired.clusters {
        let version = match &cluster.kind {
            ClusterKind::Kubeadm {
                kubernetes_version, ..
            } => Some(kubernetes_version.to_string()),
            ClusterKind::K3s { .. } => None,
        };
        for pool in &cluster.pools {
            let slot = inventory::slot_name(&cluster.name, &pool.name, 1);
            let template = match pool.role {
                PoolRole::K3sServer => UserDataTemplate::K3sServer,
                PoolRole::K3sAgent => UserDataTemplate::K3sAgent,
                PoolRole::KubeadmWorker => UserDataTemplate::KubeadmWorker,
            };
            // The shape the planner gives a node whose cluster has two
            // known members: every inventory value that reaches the ruleset.
            let firewall = FirewallShape::for_node(
                pool.role.into(),
                &cluster.firewall,
                &desired.provider.operator_networks,
                [
                    std::net::Ipv4Addr::new(192, 0, 2, 1),
                    std::net::Ipv4Addr::new(192, 0, 2, 2),
                ]
                .into(),
            );
            let text = user_data(template, &slot, key, version.clone(), &firewall)
                .map_err(|e| format!("{slot}: user data does not render: {e}"))?;
            let baseline = user_data(
                template,
                "placeholder-host",
                "placeholder-key",
                version.as_ref().map(|_| baseline_version.to_string()),
                &firewall,
            )?;
            let mut sub = BTreeMap::new();
            if let Some(v) = &version {
                let minor: inventory::KubernetesVersion = v.parse().unwrap();
                sub.insert("v9999.9999".to_string(), minor.minor_release());
            }
            docs.push(Doc {
                id: format!("{id} user data of {slot}"),
                text,
                expected: None,
                baseline: Some(baseline),
                exact: BTreeMap::from([
                    ("placeholder-host".to_string(), slot.clone()),
                    ("placeholder-key".to_string(), key.clone()),
                ]),
                sub,
                schema: true,
            });
            docs.push(node_config(id, cluster, pool, &slot)?);
        }
    }
    Ok(docs)
}

fn node_config(
    id: &str,
    cluster: &ClusterSpec,
    pool: &inventory::PoolSpec,
    slot: &str,
) -> Result<Doc, String> {
    let labels = pool.node_labels(cluster);
    let taints = &pool.taints;
    let label_items: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let (text, expected) = match &cluster.kind {
        ClusterKind::K3s {
            flannel_backend, ..
        } => {
            let first = pool.role == PoolRole::K3sServer;
            let role = if first {
                k3s::Role::FirstServer {
                    token: Secret::new("server-token".into()),
                    agent_token: Secret::new("agent-token".into()),
                }
            } else {
                k3s::Role::Agent {
                    server_url: format!("https://{SERVER_IP}:6443"),
                    token: Secret::new(TOKEN.into()),
                }
            };
            let text = k3s::render_config(&k3s::NodeConfig {
                node_name: slot,
                node_ip: NODE_IP,
                external_ip: None,
                role,
                labels: &labels,
                taints,
                flannel_backend: first.then_some(*flannel_backend),
            })
            .map_err(|e| format!("{slot}: k3s config does not render: {e}"))?;
            let mut expected = json!({
                "node-name": slot,
                "node-ip": NODE_IP,
                "node-external-ip": NODE_IP,
                "node-label": label_items,
            });
            let map = expected.as_object_mut().unwrap();
            if first {
                map.insert("cluster-init".into(), json!(true));
                map.insert("token".into(), json!("server-token"));
                map.insert("agent-token".into(), json!("agent-token"));
                map.insert("tls-san".into(), json!([NODE_IP]));
                map.insert("flannel-backend".into(), json!(flannel_backend.as_str()));
            } else {
                map.insert("server".into(), json!(format!("https://{SERVER_IP}:6443")));
                map.insert("token".into(), json!(TOKEN));
            }
            if !taints.is_empty() {
                let items: Vec<String> = taints.iter().map(ToString::to_string).collect();
                map.insert("node-taint".into(), json!(items));
            }
            (text.expose().clone(), expected)
        }
        ClusterKind::Kubeadm { api_endpoint, .. } => {
            let endpoint = api_endpoint.to_string();
            let text = kubeadm::render_join_configuration(
                &kubeadm::JoinSpec {
                    node_name: slot,
                    node_ip: NODE_IP,
                    api_endpoint: &endpoint,
                    labels: &labels,
                    taints,
                    certificate_key: None,
                },
                &kubeadm::JoinCredentials {
                    token: Secret::new("abcdef.0123456789abcdef".into()),
                    ca_cert_hash: CA_HASH.into(),
                },
            )
            .map_err(|e| format!("{slot}: join configuration does not render: {e}"))?;
            let taints: Vec<Value> = taints
                .iter()
                .map(|t| {
                    let mut item = json!({"key": t.key, "effect": t.effect.as_str()});
                    if let Some(v) = &t.value {
                        item["value"] = json!(v);
                    }
                    item
                })
                .collect();
            let expected = json!({
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "JoinConfiguration",
                "discovery": {"bootstrapToken": {
                    "apiServerEndpoint": endpoint,
                    "token": "abcdef.0123456789abcdef",
                    "caCertHashes": [CA_HASH],
                }},
                "nodeRegistration": {
                    "name": slot,
                    "kubeletExtraArgs": [
                        {"name": "node-ip", "value": NODE_IP},
                        {"name": "node-labels", "value": label_items.join(",")},
                    ],
                    "taints": taints,
                },
            });
            (text.expose().clone(), expected)
        }
    };
    Ok(Doc {
        id: format!("{id} node configuration of {slot}"),
        text,
        expected: Some(expected),
        baseline: None,
        exact: BTreeMap::new(),
        sub: BTreeMap::new(),
        schema: false,
    })
}

/// Loads each document with cloud-init's YAML loader (PyYAML), compares it
/// with the intended structure, and runs cloud-init's schema validation on
/// user data. Prints a JSON report.
const CHECKER: &str = r#"
import json, os, sys, tempfile
try:
    from cloudinit import safeyaml
    from cloudinit.config import schema as ci_schema
    load = safeyaml.load
    SCHEMA = ci_schema.get_schema()
except ImportError:
    import yaml
    load = yaml.safe_load
    ci_schema = None

def replaced(v, exact, sub):
    if isinstance(v, dict):
        return {replaced(k, exact, sub): replaced(x, exact, sub) for k, x in v.items()}
    if isinstance(v, list):
        return [replaced(x, exact, sub) for x in v]
    if isinstance(v, str):
        if v in exact:
            return exact[v]
        for a, b in sub.items():
            v = v.replace(a, b)
    return v

docs = json.load(sys.stdin)
failures = []
with tempfile.TemporaryDirectory() as tmp:
    for i, d in enumerate(docs):
        try:
            actual = load(d["text"])
            if "baseline" in d:
                expected = replaced(load(d["baseline"]), d["exact"], d["sub"])
            else:
                expected = d["expected"]
        except Exception as e:
            failures.append({"id": d["id"], "why": "not YAML: %s" % e, "text": d["text"]})
            continue
        if actual != expected:
            failures.append({"id": d["id"], "why": "structure differs",
                             "actual": actual, "expected": expected, "text": d["text"]})
            continue
        if d["schema"] and ci_schema is not None:
            path = os.path.join(tmp, "%d.yaml" % i)
            with open(path, "w", encoding="utf-8") as f:
                f.write(d["text"])
            try:
                ci_schema.validate_cloudconfig_file(path, SCHEMA)
            except Exception as e:
                failures.append({"id": d["id"], "why": "cloud-init schema: %s" % e, "text": d["text"]})
json.dump({"schema": ci_schema is not None, "checked": len(docs), "failures": failures},
          sys.stdout, default=repr)
"#;

/// The Python to check with: Debian's (cloud-init's own) when it has
/// cloud-init, else any with PyYAML; `None` when there is none.
fn python() -> Option<(&'static str, bool)> {
    let works = |python: &str, module: &str| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("/usr/bin/python3", "cloudinit.config.schema") {
        return Some(("/usr/bin/python3", true));
    }
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| works(p, "yaml"))
        .map(|p| (p, false))
}

fn check_in_python(python: &str, docs: &[Doc]) -> Value {
    let mut child = Command::new(python)
        .args(["-c", CHECKER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(docs).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the Python checker failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_inventory_string_is_refused_with_a_location_or_renders_to_exactly_the_intended_documents()
{
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let checker = python();
    if checker.is_none() {
        assert!(
            !ci,
            "no Python with PyYAML: install `python3-yaml` and `cloud-init` (.ci/run does)"
        );
        eprintln!(
            "\n!!!!! rendered documents will NOT be checked with PyYAML: no python3 with \
             PyYAML. `apt-get install python3-yaml cloud-init` to run them. !!!!!\n"
        );
    }
    if checker.is_some_and(|(_, schema)| !schema) {
        assert!(
            !ci,
            "cloud-init is not installed: install it (.ci/run does)"
        );
        eprintln!("\n!!!!! user data will NOT be checked with cloud-init's schema !!!!!\n");
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    // The same inventories on every run, so a failure in CI reproduces.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let docs = std::cell::RefCell::new(Vec::new());
    let tally = std::cell::RefCell::new((0usize, 0usize));
    let result = runner.run(&case(), |case| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("inventory");
        let Some(files) = write(&dir, &case) else {
            return Ok(());
        };
        match inventory::load(&dir) {
            Err(diagnostics) => {
                tally.borrow_mut().1 += 1;
                check_refused(&files, &diagnostics)
            }
            Ok(desired) => {
                tally.borrow_mut().0 += 1;
                // Passed validation: rendering must not fail half-way.
                let id = format!("{:?}", case.values);
                let rendered = documents(&id, &desired).map_err(TestCaseError::fail)?;
                docs.borrow_mut().extend(rendered);
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (loaded, refused) = tally.into_inner();
    let docs = docs.into_inner();
    eprintln!(
        "{cases} inventories: {loaded} loaded ({} documents), {refused} refused with locations",
        docs.len()
    );
    assert!(
        loaded > cases as usize / 20,
        "too few inventories loaded: {loaded}"
    );
    assert!(
        refused > cases as usize / 4,
        "too few inventories refused: {refused}"
    );
    let Some((python, _)) = checker else {
        return;
    };
    let report = check_in_python(python, &docs);
    assert_eq!(report["checked"].as_u64(), Some(docs.len() as u64));
    let failures = report["failures"].as_array().unwrap();
    assert!(
        failures.is_empty(),
        "{} document(s) do not parse to what was intended; the first:\n{:#}",
        failures.len(),
        failures[0]
    );
}
