//! kubeadm and the kubelet of kubeadm nodes.
//!
//! - `kubeadm init` creates the cluster (CA, `admin.conf`, the datastore under `/var/lib/etcd`)
//!   and starts the kubelet, which on this node also runs the API server (as the static pod
//!   would) on `<node ip>:6443`.
//! - `kubeadm token create --ttl D --print-join-command` and
//!   `kubeadm init phase upload-certs --upload-certs` record a bootstrap token or a certificate
//!   key in the cluster and print what the real commands print.
//! - `kubeadm join --config FILE` (or the flag form) reads a `JoinConfiguration`
//!   (`kubeadm.k8s.io/v1beta4`: `kubeletExtraArgs` is a list of `{name, value}`; `v1beta3`: a
//!   map, each strictly as the real decoder wants it), runs discovery against `cluster-info`
//!   (CA pin, then the token's signature), bootstraps the kubelet, and starts it. The kubelet
//!   registers the node with its `node-labels` (refused in the `kubernetes.io` namespaces, as
//!   the real kubelet refuses them) and taints, and heartbeats.
//! - `kubeadm reset -f` stops the kubelet and removes what init or join wrote.
//!
//! The CA hash is the sha256 of the CA PEM rather than of its public key: the certificates are
//! stand-ins, and the product only passes the printed hash along.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::{self, Datastore};
use super::client::{http_base, parse_kubeconfig, render_kubeconfig, Api};
use super::cluster::{
    b64, is_bootstrap_token, jws_signature, random_from, random_hex, random_pem, sha256_hex,
    ClusterState, Heartbeat, KubeadmBootstrap, KubeadmBootstrapped, KubeletRegister,
    NewCertificateKey, NewToken, NodeSpec, HEARTBEAT_EVERY,
};
use super::daemon::{self, Journal, LogStyle};
use super::labels::{self, Taint};
use super::paths::{node_identity, Root};
use super::systemd;
use super::{Result, StandinError};

/// The admin kubeconfig.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// The kubelet's kubeconfig, written by init and join.
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// The cluster CA.
pub const CA_CRT: &str = "/etc/kubernetes/pki/ca.crt";
/// Present on control-plane nodes.
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
/// The datastore of the cluster (where etcd keeps its data).
pub const STATE: &str = "/var/lib/etcd/kiwi-sim-state.json";
/// What the kubelet registers with (the stand-in for its flags and bootstrap credential).
pub const KUBELET_SETUP: &str = "/var/lib/kubelet/kiwi-sim.json";
/// Kubernetes version installed on the node, when the simulator records one.
pub const VERSION_FILE: &str = "/var/lib/kiwi-sim/kubernetes-version";
/// Version when nothing says otherwise.
pub const DEFAULT_VERSION: &str = "v1.31.4";

const STACK_HINT: &str = "To see the stack trace of this error execute with --v=5 or higher";
const DISCOVERY_PATIENCE: Duration = Duration::from_secs(30);

fn fail(msg: impl std::fmt::Display) -> StandinError {
    StandinError::tool(format!("{msg}\n{STACK_HINT}"))
}

/// The Kubernetes version of this node's kubeadm and kubelet.
pub fn version(root: &Root) -> String {
    std::env::var("KIWI_SIM_KUBERNETES_VERSION")
        .ok()
        .or_else(|| root.read_opt(VERSION_FILE).ok().flatten())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_VERSION.to_string())
}

/// How the kubelet of this node takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletMode {
    /// Runs the API server and holds the datastore (`kubeadm init`).
    Primary,
    /// Proxies the API on its IP (control-plane join).
    ControlPlane,
    /// Worker.
    Worker,
}

/// What the kubelet registers with; written by init and join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeletSetup {
    /// Role.
    pub mode: KubeletMode,
    /// The API it registers with (`http://host:port`); unused by the primary.
    pub upstream: String,
    /// Its credential.
    pub node_password: String,
    /// The node, with labels the kubelet sets and those kubeadm marks it with.
    pub node: NodeSpec,
    /// Keys passed with `--node-labels` (the kubelet validates these).
    pub flag_labels: Vec<String>,
}

/// `kubeadm …`.
pub async fn main(args: Vec<String>) -> Result<i32> {
    let root = Root::from_env();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["init", "phase", "upload-certs", rest @ ..] => upload_certs(&root, rest).await,
        ["init", rest @ ..] => init(&root, rest).await,
        ["token", "create", rest @ ..] => token_create(&root, rest).await,
        ["token", other, ..] => Err(fail(format!(
            "unknown command {other:?} for \"kubeadm token\""
        ))),
        ["join", rest @ ..] => join(&root, rest).await,
        ["reset", rest @ ..] => reset(&root, rest),
        ["version", rest @ ..] => {
            let v = version(&root);
            if rest.contains(&"short")
                || rest.contains(&"-oshort")
                || rest.contains(&"--output=short")
            {
                println!("{v}");
            } else {
                let minor = v.split('.').nth(1).unwrap_or("31");
                println!("kubeadm version: &version.Info{{Major:\"1\", Minor:\"{minor}\", GitVersion:\"{v}\", GoVersion:\"go1.22.9\", Compiler:\"gc\", Platform:\"linux/amd64\"}}");
            }
            Ok(0)
        }
        [] => {
            println!("kubeadm: easily bootstrap a secure Kubernetes cluster\n\nUsage:\n  kubeadm [command]\n\nAvailable Commands: init, join, reset, token, version");
            Ok(0)
        }
        [other, ..] => Err(fail(format!("unknown command {other:?} for \"kubeadm\""))),
    }
}

/// Flags as `--name value`, `--name=value` or bare booleans.
fn parse_flags<'a>(
    args: &[&'a str],
    booleans: &[&str],
    known: &[&str],
) -> Result<(BTreeMap<String, String>, Vec<&'a str>)> {
    let mut flags = BTreeMap::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if let Some(name) = a.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n, v.to_string()),
                None if booleans.contains(&name) => (name, "true".to_string()),
                None => {
                    i += 1;
                    let v = args
                        .get(i)
                        .ok_or_else(|| fail(format!("flag needs an argument: --{name}")))?;
                    (name, v.to_string())
                }
            };
            if !known.contains(&name)
                && !booleans.contains(&name)
                && !matches!(name, "v" | "ignore-preflight-errors" | "cri-socket")
            {
                return Err(fail(format!("unknown flag: --{name}")));
            }
            flags.insert(name.to_string(), value);
        } else if a.starts_with("-v") {
            // verbosity
        } else {
            positional.push(*a);
        }
        i += 1;
    }
    Ok((flags, positional))
}

/// Go's `time.ParseDuration` for the units kubeadm's `--ttl` sees.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += n * secs;
        rest = next;
    }
    Some(total as i64)
}

fn new_token() -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    format!("{}.{}", random_from(alphabet, 6), random_from(alphabet, 16))
}

fn default_labels(name: &str) -> BTreeMap<String, String> {
    [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("kubernetes.io/hostname".to_string(), name.to_string())])
    .collect()
}

fn control_plane_marks(labels: &mut BTreeMap<String, String>) {
    labels.insert(
        "node-role.kubernetes.io/control-plane".into(),
        String::new(),
    );
    labels.insert(
        "node.kubernetes.io/exclude-from-external-load-balancers".into(),
        String::new(),
    );
}

fn control_plane_taint() -> Taint {
    Taint {
        key: "node-role.kubernetes.io/control-plane".into(),
        value: None,
        effect: "NoSchedule".into(),
    }
}

fn write_kubelet_files(
    root: &Root,
    setup: &KubeletSetup,
    server: &str,
    ca_pem: &str,
    flag_labels: &str,
) -> Result<()> {
    root.write(CA_CRT, ca_pem, 0o644)?;
    root.write(
        KUBELET_CONF,
        &render_kubeconfig(server, ca_pem, &b64(&random_pem("CERTIFICATE")), false),
        0o600,
    )?;
    let mut args = format!(
        "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --node-ip={} --pod-infra-container-image=registry.k8s.io/pause:3.10",
        setup.node.internal_ip
    );
    if !flag_labels.is_empty() {
        args.push_str(&format!(" --node-labels={flag_labels}"));
    }
    root.write(
        "/var/lib/kubelet/kubeadm-flags.env",
        &format!("KUBELET_KUBEADM_ARGS=\"{args}\"\n"),
        0o644,
    )?;
    root.write("/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n", 0o644)?;
    let text = serde_json::to_string_pretty(setup).map_err(|e| StandinError::Parse {
        path: root.path(KUBELET_SETUP),
        message: e.to_string(),
    })?;
    root.write(KUBELET_SETUP, &text, 0o600)
}

fn start_kubelet(root: &Root) -> Result<()> {
    systemd::enable_unit(root, "kubelet")?;
    systemd::stop_unit(root, "kubelet")?;
    systemd::start_unit(root, "kubelet").map_err(|_| {
        fail("error execution phase kubelet-start: error waiting for the kubelet to perform the TLS Bootstrap: the kubelet is not running; see 'journalctl -xeu kubelet'")
    })
}

async fn init(root: &Root, args: &[&str]) -> Result<i32> {
    let (flags, _) = parse_flags(
        args,
        &["upload-certs", "skip-token-print", "dry-run"],
        &[
            "control-plane-endpoint",
            "kubernetes-version",
            "node-name",
            "pod-network-cidr",
            "service-cidr",
            "apiserver-advertise-address",
            "apiserver-bind-port",
            "token",
            "token-ttl",
            "certificate-key",
            "skip-phases",
        ],
    )?;
    if root.exists(APISERVER_MANIFEST) || root.exists(KUBELET_CONF) {
        let which = if root.exists(APISERVER_MANIFEST) {
            APISERVER_MANIFEST
        } else {
            KUBELET_CONF
        };
        let check = which.trim_start_matches('/').replace(['/', '.'], "-");
        return Err(fail(format!(
            "error execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--{check}]: {which} already exists\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
        )));
    }
    let id = node_identity(root)?;
    let kversion = flags
        .get("kubernetes-version")
        .cloned()
        .unwrap_or_else(|| version(root));
    let name = flags
        .get("node-name")
        .cloned()
        .unwrap_or_else(|| id.name.clone());
    let advertise = flags
        .get("apiserver-advertise-address")
        .cloned()
        .unwrap_or_else(|| id.ip.to_string());
    let cpe = flags.get("control-plane-endpoint").cloned().map(|e| {
        if e.contains(':') {
            e
        } else {
            format!("{e}:6443")
        }
    });
    let endpoint = cpe.clone().unwrap_or_else(|| format!("{advertise}:6443"));
    println!("[init] Using Kubernetes version: {kversion}");
    println!("[preflight] Running pre-flight checks");
    let mut state = ClusterState::new_kubeadm(endpoint.clone(), cpe, kversion.clone());
    let token = flags.get("token").cloned().unwrap_or_else(new_token);
    if !is_bootstrap_token(&token) {
        return Err(fail(
            "the bootstrap token is invalid: expected the form [a-z0-9]{6}.[a-z0-9]{16}",
        ));
    }
    let ttl = match flags.get("token-ttl") {
        Some(t) => parse_go_duration(t).ok_or_else(|| {
            fail(format!(
                "invalid argument {t:?} for \"--token-ttl\" flag: time: invalid duration {t:?}"
            ))
        })?,
        None => 24 * 3600,
    };
    let now = Utc::now();
    state
        .add_token(
            &NewToken {
                token: token.clone(),
                ttl_seconds: Some(ttl),
            },
            now,
        )
        .map_err(|f| fail(f.message))?;
    let certificate_key = if flags.contains_key("upload-certs") {
        let key = flags
            .get("certificate-key")
            .cloned()
            .unwrap_or_else(|| random_hex(64));
        state
            .set_certificate_key(&NewCertificateKey { key: key.clone() }, now)
            .map_err(|f| fail(f.message))?;
        Some(key)
    } else {
        None
    };
    let node_password = random_hex(32);
    state
        .node_passwords
        .insert(name.clone(), node_password.clone());
    let ca = state.ca_pem.clone();
    let admin = state.admin_certs.first().cloned().unwrap_or_default();
    println!("[certs] Using certificateDir folder \"/etc/kubernetes/pki\"");
    root.write(CA_CRT, &ca, 0o644)?;
    root.write(
        "/etc/kubernetes/pki/ca.key",
        &random_pem("RSA PRIVATE KEY"),
        0o600,
    )?;
    println!("[kubeconfig] Writing \"admin.conf\" kubeconfig file");
    root.write(
        ADMIN_CONF,
        &render_kubeconfig(&format!("https://{endpoint}"), &ca, &admin, false),
        0o600,
    )?;
    root.write(APISERVER_MANIFEST, &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:{kversion}\n    command: [kube-apiserver, --advertise-address={advertise}]\n"), 0o600)?;
    Datastore::new(state, root.path(STATE))?;
    let mut node_labels = default_labels(&name);
    control_plane_marks(&mut node_labels);
    let setup = KubeletSetup {
        mode: KubeletMode::Primary,
        upstream: String::new(),
        node_password,
        node: NodeSpec {
            name: name.clone(),
            internal_ip: id.ip.to_string(),
            external_ip: None,
            labels: node_labels,
            taints: vec![control_plane_taint()],
            kubelet_version: kversion,
        },
        flag_labels: Vec::new(),
    };
    println!("[kubelet-start] Writing kubelet environment file with flags to file \"/var/lib/kubelet/kubeadm-flags.env\"");
    write_kubelet_files(root, &setup, &format!("https://{endpoint}"), &ca, "")?;
    println!("[kubelet-start] Starting the kubelet");
    start_kubelet(root)?;
    println!("[mark-control-plane] Marking the node {name} as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]");
    println!("[mark-control-plane] Marking the node {name} as control-plane by adding the taints [node-role.kubernetes.io/control-plane:NoSchedule]");
    println!("[bootstrap-token] Using token: {token}");
    if let Some(key) = &certificate_key {
        println!("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n[upload-certs] Using certificate key:\n{key}");
    }
    let hash = sha256_hex(ca.as_bytes());
    println!("\nYour Kubernetes control-plane has initialized successfully!\n\nTo start using your cluster, you need to run the following as a regular user:\n\n  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\nThen you can join any number of worker nodes by running the following on each as root:\n\nkubeadm join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash sha256:{hash} ");
    Ok(0)
}

/// Connects with the admin kubeconfig; returns the client, the endpoint and the CA.
async fn admin_api(root: &Root, flags: &BTreeMap<String, String>) -> Result<(Api, String, String)> {
    let path = flags
        .get("kubeconfig")
        .cloned()
        .unwrap_or_else(|| ADMIN_CONF.to_string());
    let text = root.read_opt(&path)?.ok_or_else(|| {
        fail(format!(
            "failed to load admin kubeconfig: open {path}: no such file or directory"
        ))
    })?;
    let config = parse_kubeconfig(&text, &root.path(&path)).map_err(|e| fail(e.render()))?;
    let node_ip = node_identity(root).ok().map(|n| n.ip);
    let endpoint = config
        .server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    let ca = match config.ca_pem {
        Some(ca) => ca,
        None => root.read_opt(CA_CRT)?.unwrap_or_default(),
    };
    Ok((
        Api::new(http_base(&config.server, node_ip), config.client_cert),
        endpoint,
        ca,
    ))
}

fn unreachable_api(endpoint: &str) -> StandinError {
    fail(format!("Get \"https://{endpoint}/api?timeout=32s\": dial tcp {endpoint}: connect: connection refused"))
}

async fn token_create(root: &Root, args: &[&str]) -> Result<i32> {
    let (flags, positional) = parse_flags(
        args,
        &["print-join-command"],
        &[
            "ttl",
            "kubeconfig",
            "description",
            "usages",
            "groups",
            "certificate-key",
            "config",
        ],
    )?;
    let token = positional
        .first()
        .map(|t| t.to_string())
        .unwrap_or_else(new_token);
    if !is_bootstrap_token(&token) {
        return Err(fail(
            "token [\"<redacted>\"] was not of form [\"^([a-z0-9]{6})\\\\.([a-z0-9]{16})$\"]",
        ));
    }
    let ttl = match flags.get("ttl") {
        Some(t) => parse_go_duration(t).ok_or_else(|| {
            fail(format!(
                "invalid argument {t:?} for \"--ttl\" flag: time: invalid duration {t:?}"
            ))
        })?,
        None => 24 * 3600,
    };
    let (api, endpoint, ca) = admin_api(root, &flags).await?;
    match api
        .call(
            Method::POST,
            "/kiwi-sim/v1/kubeadm/tokens",
            Some(&NewToken {
                token: token.clone(),
                ttl_seconds: Some(ttl),
            }),
        )
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(f)) => {
            return Err(fail(format!(
                "failed to create or update bootstrap token with name bootstrap-token-{}: {}",
                token.split('.').next().unwrap_or_default(),
                f.message
            )))
        }
        Err(_) => return Err(unreachable_api(&endpoint)),
    }
    if flags.contains_key("print-join-command") {
        let mut line = format!(
            "kubeadm join {endpoint} --token {token} --discovery-token-ca-cert-hash sha256:{} ",
            sha256_hex(ca.as_bytes())
        );
        if let Some(key) = flags.get("certificate-key") {
            line.push_str(&format!("--control-plane --certificate-key {key} "));
        }
        println!("{line}");
    } else {
        println!("{token}");
    }
    Ok(0)
}

async fn upload_certs(root: &Root, args: &[&str]) -> Result<i32> {
    let (flags, _) = parse_flags(
        args,
        &["upload-certs", "skip-certificate-key-print"],
        &["certificate-key", "kubeconfig", "config"],
    )?;
    if !flags.contains_key("upload-certs") {
        println!("[upload-certs] Skipping phase. Please see --upload-certs");
        return Ok(0);
    }
    let key = flags
        .get("certificate-key")
        .cloned()
        .unwrap_or_else(|| random_hex(64));
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail("error execution phase upload-certs: error uploading certs: invalid certificate key: expected 64 hex characters"));
    }
    let (api, endpoint, _) = admin_api(root, &flags).await?;
    println!("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace");
    match api
        .call(
            Method::POST,
            "/kiwi-sim/v1/kubeadm/certificate-key",
            Some(&NewCertificateKey { key: key.clone() }),
        )
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(f)) => {
            return Err(fail(format!(
                "error execution phase upload-certs: error uploading certs: {}",
                f.message
            )))
        }
        Err(_) => return Err(unreachable_api(&endpoint)),
    }
    if !flags.contains_key("skip-certificate-key-print") {
        println!("[upload-certs] Using certificate key:\n{key}");
    }
    Ok(0)
}

/// What a join needs, from a `JoinConfiguration` or from flags.
#[derive(Debug, Clone, Default)]
pub struct JoinParams {
    /// `host:port` of the API.
    pub endpoint: String,
    /// Discovery token `id.secret`.
    pub token: String,
    /// Token for the TLS bootstrap (defaults to the discovery token).
    pub tls_token: Option<String>,
    /// `sha256:<hex>` pins.
    pub ca_hashes: Vec<String>,
    /// `unsafeSkipCAVerification`.
    pub unsafe_skip: bool,
    /// Node name.
    pub name: Option<String>,
    /// Kubelet extra args in order.
    pub kubelet_args: Vec<(String, String)>,
    /// `nodeRegistration.taints`, when given (an empty list means none).
    pub taints: Option<Vec<Taint>>,
    /// Control-plane join.
    pub control_plane: bool,
    /// `controlPlane.localAPIEndpoint.advertiseAddress`.
    pub advertise_address: Option<String>,
    /// `controlPlane.certificateKey`.
    pub certificate_key: Option<String>,
}

fn yaml_str(v: Option<&serde_norway::Value>) -> Option<String> {
    match v? {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a `JoinConfiguration` (v1beta3 or v1beta4) from a kubeadm config file.
pub fn parse_join_configuration(text: &str, path: &str) -> std::result::Result<JoinParams, String> {
    use serde::Deserialize as _;
    let mut join = None;
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = serde_norway::Value::deserialize(doc)
            .map_err(|e| format!("unable to decode config from {path:?}: {e}"))?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("JoinConfiguration") {
            join = Some(v);
        }
    }
    let Some(doc) = join else {
        return Err(format!("no JoinConfiguration found in {path:?}"));
    };
    let api_version = doc
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let v4 = match api_version.as_str() {
        "kubeadm.k8s.io/v1beta4" => true,
        "kubeadm.k8s.io/v1beta3" => false,
        other => return Err(format!("no kind \"JoinConfiguration\" is registered for version {other:?} in scheme \"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31\"")),
    };
    let mut p = JoinParams::default();
    let discovery = doc.get("discovery");
    let bt = discovery.and_then(|d| d.get("bootstrapToken"));
    p.endpoint = yaml_str(bt.and_then(|b| b.get("apiServerEndpoint"))).unwrap_or_default();
    p.token = yaml_str(bt.and_then(|b| b.get("token"))).unwrap_or_default();
    p.tls_token = yaml_str(discovery.and_then(|d| d.get("tlsBootstrapToken")));
    p.unsafe_skip = bt
        .and_then(|b| b.get("unsafeSkipCAVerification"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    p.ca_hashes = bt
        .and_then(|b| b.get("caCertHashes"))
        .and_then(|h| h.as_sequence())
        .map(|s| s.iter().filter_map(|x| yaml_str(Some(x))).collect())
        .unwrap_or_default();
    let reg = doc.get("nodeRegistration");
    p.name = yaml_str(reg.and_then(|r| r.get("name")));
    let go_type = |s: &str| {
        format!("json: cannot unmarshal {s} into Go struct field NodeRegistrationOptions.nodeRegistration.kubeletExtraArgs of type {}", if v4 { "[]v1beta4.Arg" } else { "map[string]string" })
    };
    match reg.and_then(|r| r.get("kubeletExtraArgs")) {
        None | Some(serde_norway::Value::Null) => {}
        Some(serde_norway::Value::Sequence(items)) if v4 => {
            for item in items {
                let name = yaml_str(item.get("name"))
                    .ok_or_else(|| "kubeletExtraArgs: every item needs a name".to_string())?;
                p.kubelet_args
                    .push((name, yaml_str(item.get("value")).unwrap_or_default()));
            }
        }
        Some(serde_norway::Value::Mapping(map)) if !v4 => {
            for (k, v) in map {
                p.kubelet_args.push((
                    yaml_str(Some(k)).unwrap_or_default(),
                    yaml_str(Some(v)).unwrap_or_default(),
                ));
            }
        }
        Some(serde_norway::Value::Sequence(_)) => return Err(go_type("array")),
        Some(serde_norway::Value::Mapping(_)) => return Err(go_type("object")),
        Some(_) => return Err(go_type("string")),
    }
    if let Some(taints) = reg.and_then(|r| r.get("taints")) {
        let mut list = Vec::new();
        for t in taints.as_sequence().into_iter().flatten() {
            let taint = Taint {
                key: yaml_str(t.get("key")).unwrap_or_default(),
                value: yaml_str(t.get("value")),
                effect: yaml_str(t.get("effect")).unwrap_or_default(),
            };
            labels::check_key(&taint.key).map_err(|e| {
                format!(
                    "nodeRegistration.taints.key: Invalid value: {:?}: {e}",
                    taint.key
                )
            })?;
            if !labels::EFFECTS.contains(&taint.effect.as_str()) {
                return Err(format!("nodeRegistration.taints.effect: Unsupported value: {:?}: supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\"", taint.effect));
            }
            list.push(taint);
        }
        p.taints = Some(list);
    }
    if let Some(cp) = doc.get("controlPlane").filter(|c| !c.is_null()) {
        p.control_plane = true;
        p.advertise_address = yaml_str(
            cp.get("localAPIEndpoint")
                .and_then(|l| l.get("advertiseAddress")),
        );
        p.certificate_key = yaml_str(cp.get("certificateKey")).filter(|k| !k.is_empty());
    }
    Ok(p)
}

fn check_join_params(p: &JoinParams) -> std::result::Result<(), String> {
    if p.endpoint.is_empty() {
        return Err("discovery.bootstrapToken.apiServerEndpoint: Invalid value: \"\": the apiServerEndpoint must be set".into());
    }
    if !is_bootstrap_token(&p.token) {
        return Err("discovery.bootstrapToken.token: Invalid value: \"<redacted>\": the bootstrap token is invalid".into());
    }
    if p.ca_hashes.is_empty() && !p.unsafe_skip {
        return Err("discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue".into());
    }
    for h in &p.ca_hashes {
        match h.split_once(':') {
            Some(("sha256", hex))
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            Some(("sha256", _)) => {
                return Err(format!(
                    "invalid hash {h:?}: expected a 32 byte SHA-256 hash"
                ))
            }
            Some((format, _)) => {
                return Err(format!(
                    "invalid hash {h:?}: unsupported hash format {format:?}"
                ))
            }
            None => return Err(format!("invalid hash {h:?}, expected \"format:value\"")),
        }
    }
    Ok(())
}

async fn join(root: &Root, args: &[&str]) -> Result<i32> {
    let (flags, positional) = parse_flags(
        args,
        &[
            "control-plane",
            "discovery-token-unsafe-skip-ca-verification",
        ],
        &[
            "config",
            "token",
            "discovery-token",
            "tls-bootstrap-token",
            "discovery-token-ca-cert-hash",
            "certificate-key",
            "apiserver-advertise-address",
            "apiserver-bind-port",
            "node-name",
        ],
    )?;
    let params = if let Some(path) = flags.get("config") {
        let mixed: Vec<&str> = flags
            .keys()
            .map(String::as_str)
            .filter(|k| {
                !matches!(
                    *k,
                    "config" | "ignore-preflight-errors" | "v" | "cri-socket"
                )
            })
            .collect();
        if !mixed.is_empty() || !positional.is_empty() {
            return Err(fail(format!(
                "can not mix '--config' with arguments {mixed:?}"
            )));
        }
        let text = root.read_opt(path)?.ok_or_else(|| {
            fail(format!(
                "unable to read config from {path:?} : open {path}: no such file or directory"
            ))
        })?;
        parse_join_configuration(&text, path).map_err(fail)?
    } else {
        let token = flags
            .get("token")
            .or(flags.get("discovery-token"))
            .cloned()
            .unwrap_or_default();
        JoinParams {
            endpoint: positional
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            tls_token: flags.get("tls-bootstrap-token").cloned(),
            token,
            ca_hashes: flags
                .get("discovery-token-ca-cert-hash")
                .map(|h| h.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            unsafe_skip: flags.contains_key("discovery-token-unsafe-skip-ca-verification"),
            name: flags.get("node-name").cloned(),
            kubelet_args: Vec::new(),
            taints: None,
            control_plane: flags.contains_key("control-plane"),
            advertise_address: flags.get("apiserver-advertise-address").cloned(),
            certificate_key: flags.get("certificate-key").cloned(),
        }
    };
    check_join_params(&params).map_err(fail)?;
    println!("[preflight] Running pre-flight checks");
    if root.exists(KUBELET_CONF) || root.exists(CA_CRT) && !params.control_plane {
        let which = if root.exists(KUBELET_CONF) {
            KUBELET_CONF
        } else {
            CA_CRT
        };
        let check = which.trim_start_matches('/').replace(['/', '.'], "-");
        return Err(fail(format!(
            "error execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--{check}]: {which} already exists\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
        )));
    }
    if params.control_plane && params.certificate_key.is_none() && !root.exists(CA_CRT) {
        return Err(fail(
            "error execution phase preflight: \nOne or more conditions for hosting a new control plane instance is not satisfied.\n\n[failure loading certificate for CA: couldn't load the certificate file /etc/kubernetes/pki/ca.crt: open /etc/kubernetes/pki/ca.crt: no such file or directory, failure loading key for service account: couldn't load the private key file /etc/kubernetes/pki/sa.key: open /etc/kubernetes/pki/sa.key: no such file or directory, failure loading certificate for front-proxy CA: couldn't load the certificate file /etc/kubernetes/pki/front-proxy-ca.crt: open /etc/kubernetes/pki/front-proxy-ca.crt: no such file or directory, failure loading certificate for etcd CA: couldn't load the certificate file /etc/kubernetes/pki/etcd/ca.crt: open /etc/kubernetes/pki/etcd/ca.crt: no such file or directory]\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n",
        ));
    }
    if let Some(key) = &params.certificate_key {
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail("error execution phase control-plane-prepare/download-certs: error downloading certs: error decoding certificate key: encoding/hex: invalid certificate key (expected 64 hex characters)"));
        }
    }
    let id = node_identity(root)?;
    let (token_id, secret) = params.token.split_once('.').unwrap_or_default();
    let api = Api::new(http_base(&params.endpoint, None), None);
    // Discovery: fetch cluster-info, pin its CA, check the token's signature over it.
    let started = Instant::now();
    let info: Value = loop {
        match api.call(Method::GET, "/api/v1/namespaces/kube-public/configmaps/cluster-info", None::<&Value>).await {
            Ok(Ok(v)) => break v,
            Ok(Err(f)) => return Err(fail(format!("error execution phase preflight: couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: {}", f.message))),
            Err(_) if started.elapsed() < DISCOVERY_PATIENCE => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(_) => {
                return Err(fail(format!(
                    "error execution phase preflight: couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: Get \"https://{0}/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": dial tcp {0}: connect: connection refused",
                    params.endpoint
                )))
            }
        }
    };
    let kubeconfig = info["data"]["kubeconfig"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cluster = parse_kubeconfig(&kubeconfig, std::path::Path::new("cluster-info"))
        .map_err(|e| fail(e.render()))?;
    let ca = cluster.ca_pem.unwrap_or_default();
    let hash = format!("sha256:{}", sha256_hex(ca.as_bytes()));
    if !params.unsafe_skip
        && !params
            .ca_hashes
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&hash))
    {
        return Err(fail(format!("error execution phase preflight: couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys {hash:?} are pinned")));
    }
    let Some(signature) = info["data"][format!("jws-kubeconfig-{token_id}")].as_str() else {
        return Err(fail(format!("error execution phase preflight: couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID {token_id:?}")));
    };
    if signature != jws_signature(token_id, secret, &kubeconfig) {
        return Err(fail("error execution phase preflight: couldn't validate the identity of the API Server: failed to verify JWS signature of received cluster info object, can't trust this API Server"));
    }
    println!("[preflight] Reading configuration from the cluster...");
    let name = params.name.clone().unwrap_or_else(|| id.name.clone());
    let node_password = random_hex(32);
    let bootstrap = KubeadmBootstrap {
        token: params
            .tls_token
            .clone()
            .unwrap_or_else(|| params.token.clone()),
        control_plane: params.control_plane,
        certificate_key: params.certificate_key.clone(),
        name: name.clone(),
        node_password: node_password.clone(),
    };
    let granted: KubeadmBootstrapped = match api.call(Method::POST, "/kiwi-sim/v1/kubeadm/bootstrap", Some(&bootstrap)).await {
        Ok(Ok(v)) => serde_json::from_value(v).map_err(|e| fail(format!("invalid bootstrap answer: {e}")))?,
        Ok(Err(f)) => {
            return Err(fail(match (f.code, params.control_plane) {
                (400, true) => format!("error execution phase preflight: \nOne or more conditions for hosting a new control plane instance is not satisfied.\n\n{}\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n", f.message),
                (404, true) => format!("error execution phase control-plane-prepare/download-certs: error downloading certs: error downloading the secret: {}", f.message),
                (403, true) => "error execution phase control-plane-prepare/download-certs: error downloading certs: error decoding secret data with provided key: cipher: message authentication failed".to_string(),
                (401, _) => "error execution phase kubelet-start: unable to perform the TLS Bootstrap: Unauthorized".to_string(),
                _ => format!("error execution phase kubelet-start: {}", f.message),
            }))
        }
        Err(e) => return Err(fail(format!("error execution phase kubelet-start: {}", e.render()))),
    };
    // The kubelet's own labels, then kubeadm's marks for control-plane nodes.
    let mut node_labels = default_labels(&name);
    let mut flag_labels = Vec::new();
    let mut flag_label_text = String::new();
    let mut internal_ip = id.ip.to_string();
    for (k, v) in &params.kubelet_args {
        match k.as_str() {
            "node-labels" => {
                flag_label_text = v.clone();
                for item in v.split(',').filter(|s| !s.is_empty()) {
                    let (lk, lv) = labels::parse_label(item).map_err(|e| {
                        fail(format!(
                            "error execution phase kubelet-start: invalid --node-labels: {e}"
                        ))
                    })?;
                    flag_labels.push(lk.clone());
                    node_labels.insert(lk, lv);
                }
            }
            "node-ip" => internal_ip = v.clone(),
            _ => {}
        }
    }
    if params.control_plane {
        control_plane_marks(&mut node_labels);
    }
    let taints = params.taints.clone().unwrap_or_else(|| {
        if params.control_plane {
            vec![control_plane_taint()]
        } else {
            Vec::new()
        }
    });
    let mode = if params.control_plane {
        KubeletMode::ControlPlane
    } else {
        KubeletMode::Worker
    };
    let setup = KubeletSetup {
        mode,
        upstream: api.base().to_string(),
        node_password,
        node: NodeSpec {
            name: name.clone(),
            internal_ip,
            external_ip: None,
            labels: node_labels,
            taints,
            kubelet_version: version(root),
        },
        flag_labels,
    };
    if params.control_plane {
        println!("[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace");
        root.write(
            "/etc/kubernetes/pki/ca.key",
            &random_pem("RSA PRIVATE KEY"),
            0o600,
        )?;
        let advertise = params
            .advertise_address
            .clone()
            .unwrap_or_else(|| id.ip.to_string());
        root.write(APISERVER_MANIFEST, &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --advertise-address={advertise}]\n"), 0o600)?;
        root.write(
            ADMIN_CONF,
            &render_kubeconfig(
                &format!("https://{}", params.endpoint),
                &ca,
                granted.admin_cert.as_deref().unwrap_or_default(),
                false,
            ),
            0o600,
        )?;
    }
    println!(
        "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\""
    );
    println!("[kubelet-start] Writing kubelet environment file with flags to file \"/var/lib/kubelet/kubeadm-flags.env\"");
    write_kubelet_files(
        root,
        &setup,
        &format!("https://{}", params.endpoint),
        &ca,
        &flag_label_text,
    )?;
    println!("[kubelet-start] Starting the kubelet");
    println!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");
    start_kubelet(root)?;
    if params.control_plane {
        println!("[mark-control-plane] Marking the node {name} as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]");
        println!("\nThis node has joined the cluster and a new control plane instance was created:\n\n* Certificate signing request was sent to apiserver and approval was received.\n* The Kubelet was informed of the new secure connection details.\n* Control plane label and taint were applied to the new node.\n* The Kubernetes control plane instances scaled up.\n");
    } else {
        println!("\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response was received.\n* The Kubelet was informed of the new secure connection details.\n\nRun 'kubectl get nodes' on the control-plane to see this node join the cluster.\n");
    }
    Ok(0)
}

fn reset(root: &Root, args: &[&str]) -> Result<i32> {
    for a in args {
        if !matches!(*a, "-f" | "--force" | "--cleanup-tmp-dir") && !a.starts_with("--v") {
            return Err(fail(format!("unknown flag: {a}")));
        }
    }
    let force = args.iter().any(|a| matches!(*a, "-f" | "--force"));
    if !force {
        use std::io::BufRead;
        print!("[reset] Are you sure you want to proceed? [y/N]: ");
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y") {
            return Err(fail("error execution phase preflight: won't proceed; the user didn't answer (Y|y) in order to continue"));
        }
    }
    println!("[preflight] Running pre-flight checks");
    println!("[reset] Stopping the kubelet service");
    systemd::stop_unit(root, "kubelet")?;
    let dirs = [
        "/etc/kubernetes/manifests",
        "/var/lib/kubelet",
        "/etc/kubernetes/pki",
        "/var/lib/etcd",
    ];
    println!("[reset] Deleting contents of directories: {dirs:?}");
    for d in dirs {
        root.remove(d)?;
    }
    let files = [
        ADMIN_CONF,
        "/etc/kubernetes/super-admin.conf",
        KUBELET_CONF,
        "/etc/kubernetes/bootstrap-kubelet.conf",
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
    ];
    println!("[reset] Deleting files: {files:?}");
    for f in files {
        root.remove(f)?;
    }
    println!("\nThe reset process does not clean CNI configuration, iptables rules or your kubeconfig files.");
    Ok(0)
}

/// The kubelet daemon of a kubeadm node.
pub async fn kubelet(_args: Vec<String>) -> Result<i32> {
    let root = Root::from_env();
    let id = node_identity(&root)?;
    let journal = Journal::new("kubelet", &id.name, LogStyle::Klog);
    let Some(text) = root.read_opt(KUBELET_SETUP)? else {
        return Err(journal.fatal("\"command failed\" err=\"failed to load kubelet config file, path: /var/lib/kubelet/config.yaml, error: failed to load Kubelet config file /var/lib/kubelet/config.yaml, error failed to read kubelet config file \\\"/var/lib/kubelet/config.yaml\\\", error: open /var/lib/kubelet/config.yaml: no such file or directory\""));
    };
    let setup: KubeletSetup = serde_json::from_str(&text)
        .map_err(|e| journal.fatal(&format!("invalid {KUBELET_SETUP}: {e}")))?;
    labels::check_kubelet_labels(setup.flag_labels.iter().map(String::as_str)).map_err(|e| {
        journal.fatal(&format!(
            "\"command failed\" err=\"failed to validate kubelet flags: {e}\""
        ))
    })?;
    journal.info(&format!(
        "Kubelet version kubeletVersion=\"{}\"",
        setup.node.kubelet_version
    ));
    let result = match setup.mode {
        KubeletMode::Primary => run_primary(&root, &id, &setup, &journal).await,
        KubeletMode::ControlPlane | KubeletMode::Worker => {
            run_member(&root, &id, &setup, &journal).await
        }
    };
    daemon::clear_ready(&root, "kubelet");
    result.map(|()| 0)
}

async fn run_primary(
    root: &Root,
    id: &super::paths::NodeIdentity,
    setup: &KubeletSetup,
    journal: &Journal,
) -> Result<()> {
    let path = root.path(STATE);
    let state = Datastore::load(&path)?
        .ok_or_else(|| journal.fatal("no cluster datastore: run kubeadm init first"))?;
    let store = Datastore::new(state, path)?;
    let listener = daemon::bind(journal, id.ip, 6443).await?;
    store
        .with(true, |s| {
            s.register_self(setup.node.clone(), &setup.node_password, Utc::now())
        })?
        .map_err(|f| journal.fatal(&f.message))?;
    journal.info(&format!(
        "Successfully registered node node={:?}",
        setup.node.name
    ));
    daemon::mark_ready(root, "kubelet")?;
    let beat = Heartbeat {
        name: setup.node.name.clone(),
        node_password: setup.node_password.clone(),
    };
    let beats = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
                let _ = store.with(false, |s| s.heartbeat(&beat, Utc::now()));
            }
        })
    };
    let served = axum::serve(listener, api::router(store))
        .with_graceful_shutdown(daemon::shutdown_signal())
        .await;
    beats.abort();
    served.map_err(|e| journal.fatal(&format!("API server failed: {e}")))
}

async fn run_member(
    root: &Root,
    id: &super::paths::NodeIdentity,
    setup: &KubeletSetup,
    journal: &Journal,
) -> Result<()> {
    let upstream = Api::new(setup.upstream.clone(), None);
    let listener = match setup.mode {
        KubeletMode::ControlPlane => Some(daemon::bind(journal, id.ip, 6443).await?),
        _ => None,
    };
    let register = KubeletRegister {
        node_password: setup.node_password.clone(),
        node: setup.node.clone(),
    };
    let started = Instant::now();
    loop {
        match upstream
            .call(
                Method::POST,
                "/kiwi-sim/v1/kubelet/register",
                Some(&register),
            )
            .await
        {
            Ok(Ok(_)) => break,
            Ok(Err(f)) => {
                return Err(journal.fatal(&format!(
                    "Unable to register node with API server err=\"{}\" node={:?}",
                    f.message, setup.node.name
                )))
            }
            Err(e) if started.elapsed() > DISCOVERY_PATIENCE => {
                return Err(journal.fatal(&format!(
                    "Unable to register node with API server err=\"{}\"",
                    e.render()
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    journal.info(&format!(
        "Successfully registered node node={:?}",
        setup.node.name
    ));
    daemon::mark_ready(root, "kubelet")?;
    let beats = tokio::spawn(daemon::heartbeat_loop(
        upstream.clone(),
        Heartbeat {
            name: setup.node.name.clone(),
            node_password: setup.node_password.clone(),
        },
        journal.clone(),
    ));
    let result = match listener {
        Some(listener) => axum::serve(listener, api::proxy_router(setup.upstream.clone()))
            .with_graceful_shutdown(daemon::shutdown_signal())
            .await
            .map_err(|e| journal.fatal(&format!("API proxy failed: {e}"))),
        None => {
            daemon::shutdown_signal().await;
            Ok(())
        }
    };
    beats.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("15m"), Some(900));
        assert_eq!(parse_go_duration("1h30m"), Some(5400));
        assert_eq!(parse_go_duration("24h0m0s"), Some(86400));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("15"), None);
    }

    #[test]
    fn v1beta4_wants_a_list_of_kubelet_args() {
        let base = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: 127.0.0.1:6443\n    token: abcdef.0123456789abcdef\n    caCertHashes: [\"sha256:00\"]\nnodeRegistration:\n  name: w1\n";
        let list = format!("{base}  kubeletExtraArgs:\n  - name: node-labels\n    value: a=b\n");
        let map = format!("{base}  kubeletExtraArgs:\n    node-labels: a=b\n");
        let parsed = parse_join_configuration(&list, "f").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed.kubelet_args,
            vec![("node-labels".to_string(), "a=b".to_string())]
        );
        assert!(parse_join_configuration(&map, "f").is_err());
        let v3 = map.replace("v1beta4", "v1beta3");
        assert!(parse_join_configuration(&v3, "f").is_ok());
    }
}
