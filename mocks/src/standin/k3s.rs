//! k3s: the install script, `k3s server`, `k3s agent`, `k3s kubectl` and `k3s --version`.
//!
//! - The install script reads `INSTALL_K3S_VERSION` and `INSTALL_K3S_EXEC`, installs
//!   `/usr/local/bin/k3s` (a link to this binary) and `kubectl`, writes the `k3s` or
//!   `k3s-agent` unit, and restarts it through the stand-in `systemctl`, failing as the real
//!   script does when the unit fails.
//! - The first server (no `server:` in `config.yaml`) holds the datastore: it creates the CA,
//!   writes the secure tokens (`K10<sha256 of the CA>::server:<token>` and
//!   `…::node:<agent-token>`) and `k3s.yaml`, and serves the cluster API on `<node ip>:6443`.
//!   On restart it refuses a `token` other than the one the datastore was created with.
//! - Other servers and agents fetch `/cacerts` from their `server:`, check its hash against
//!   the token's, and join with the token's password; servers then proxy the API on their own
//!   IP. Unlike real k3s, a rejected token ends the daemon (real agents retry forever).
//! - Every daemon registers with its `node-label`s (re-applied on each start, as k3s does) and
//!   `node-taint`s (registration only), after the kubelet's check of label namespaces.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;

use super::api::{self, Datastore};
use super::client::{http_base, render_kubeconfig, Api};
use super::cluster::{
    random_hex, sha256_hex, ClusterState, Heartbeat, K3sJoin, K3sJoined, K3sRole, NodeSpec,
    HEARTBEAT_EVERY,
};
use super::daemon::{self, Journal, LogStyle};
use super::labels::{self, Taint};
use super::paths::{node_identity, own_exe, NodeIdentity, Root};
use super::systemd;
use super::{kubectl, Result, StandinError};

/// k3s's configuration file.
pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// The admin kubeconfig k3s writes on servers.
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The secure server token.
pub const TOKEN: &str = "/var/lib/rancher/k3s/server/token";
/// The secure agent token.
pub const AGENT_TOKEN: &str = "/var/lib/rancher/k3s/server/agent-token";
/// The datastore (k3s keeps etcd or sqlite under `server/db`).
pub const STATE: &str = "/var/lib/rancher/k3s/server/db/state.json";
/// The cluster CA.
pub const CA: &str = "/var/lib/rancher/k3s/server/tls/server-ca.crt";
/// The node password k3s binds the node name to.
pub const NODE_PASSWORD: &str = "/etc/rancher/node/password";
/// The version the install script installed.
pub const VERSION_FILE: &str = "/var/lib/kiwi-sim/k3s-version";
/// The installed k3s binary.
pub const BINARY: &str = "/usr/local/bin/k3s";
/// Version reported when nothing was installed.
pub const DEFAULT_VERSION: &str = "v1.31.4+k3s1";
/// The API port.
pub const API_PORT: u16 = 6443;

/// How long a joining node keeps trying to reach its server before giving up.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// `config.yaml` and `config.yaml.d/*.yaml` merged with command-line flags (k3s flags and config
/// keys share names).
#[derive(Debug, Default, Clone)]
pub struct K3sConfig {
    values: BTreeMap<String, Vec<String>>,
}

impl K3sConfig {
    /// Reads `--config`/`-c` (default [`CONFIG`]; absent is fine) and its `.d/*.yaml` drop-ins,
    /// and overlays `args`.
    pub fn load(root: &Root, args: &[String]) -> std::result::Result<Self, String> {
        let mut flags = K3sConfig::default();
        let mut config_path = CONFIG.to_string();
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!("Incorrect Usage: unexpected argument {arg:?}"));
            };
            let (key, value) = match name.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None if args.get(i + 1).is_some_and(|n| !n.starts_with('-'))
                    && name != "cluster-init" =>
                {
                    i += 1;
                    (name.to_string(), args[i].clone())
                }
                None => (name.to_string(), "true".to_string()),
            };
            if key == "config" || key == "c" {
                config_path = value;
            } else {
                flags.values.entry(key).or_default().push(value);
            }
            i += 1;
        }
        let mut config = K3sConfig::default();
        // k3s reads `config.yaml`, then `config.yaml.d/*.yaml` in lexical
        // order; a later file's value wins.
        let mut files = vec![config_path.clone()];
        let drop_ins = format!("{config_path}.d");
        if let Ok(entries) = std::fs::read_dir(root.path(&drop_ins)) {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".yaml"))
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|n| format!("{drop_ins}/{n}")));
        }
        for config_path in files {
            if let Some(text) = root.read_opt(&config_path).map_err(|e| e.render())? {
                let mut doc: serde_norway::Value = serde_norway::from_str(&text)
                    .map_err(|e| format!("Error: failed to parse {config_path}: {e}"))?;
                // k3s' go-yaml applies `<<` merge keys.
                doc.apply_merge()
                    .map_err(|e| format!("Error: failed to parse {config_path}: {e}"))?;
                if let Some(map) = doc.as_mapping() {
                    for (k, v) in map {
                        let Some(key) = k.as_str() else { continue };
                        let scalar = |v: &serde_norway::Value| match v {
                            serde_norway::Value::String(s) => Some(s.clone()),
                            serde_norway::Value::Bool(b) => Some(b.to_string()),
                            serde_norway::Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        };
                        let values: Vec<String> = match v {
                            serde_norway::Value::Sequence(items) => {
                                items.iter().filter_map(scalar).collect()
                            }
                            other => scalar(other).into_iter().collect(),
                        };
                        config.values.insert(key.to_string(), values);
                    }
                } else if !doc.is_null() {
                    return Err(format!(
                        "Error: failed to parse {config_path}: not a mapping"
                    ));
                }
            }
        }
        // Flags win for scalars and add to lists, as k3s merges them.
        for (key, mut values) in flags.values {
            let entry = config.values.entry(key.clone()).or_default();
            if matches!(key.as_str(), "node-label" | "node-taint" | "tls-san") {
                entry.append(&mut values);
            } else {
                *entry = values;
            }
        }
        Ok(config)
    }

    /// A scalar value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A list value.
    pub fn list(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// A boolean value.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }
}

/// A token in k3s's secure (`K10<hash>::<user>:<password>`) or plain form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The CA hash, for secure tokens.
    pub ca_hash: Option<String>,
    /// The password.
    pub password: String,
}

/// Parses a token the way k3s normalises it.
pub fn parse_token(token: &str) -> Token {
    if let Some((hash, creds)) = token.strip_prefix("K10").and_then(|t| t.split_once("::")) {
        let password = creds.split_once(':').map_or(creds, |(_, p)| p);
        return Token {
            ca_hash: Some(hash.to_string()),
            password: password.to_string(),
        };
    }
    Token {
        ca_hash: None,
        password: token.to_string(),
    }
}

fn secure_token(ca_pem: &str, user: &str, password: &str) -> String {
    format!("K10{}::{user}:{password}", sha256_hex(ca_pem.as_bytes()))
}

/// The version the install script recorded.
pub fn installed_version(root: &Root) -> String {
    root.read_opt(VERSION_FILE)
        .ok()
        .flatten()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_VERSION.to_string())
}

fn is_k3s_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((semver, build)) = rest.split_once("+k3s") else {
        return false;
    };
    let parts: Vec<&str> = semver.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !build.is_empty()
        && build.bytes().all(|b| b.is_ascii_digit())
}

/// The install script (`sh /usr/local/bin/k3s-install.sh`, env `INSTALL_K3S_*`).
pub async fn install(args: &[String]) -> Result<i32> {
    let root = Root::from_env();
    let fatal = |m: String| StandinError::tool(format!("[ERROR]  {m}"));
    let version = std::env::var("INSTALL_K3S_VERSION").unwrap_or_default();
    if version.is_empty() {
        return Err(fatal(
            "Failed to get the latest k3s release: this simulated node has no network; set INSTALL_K3S_VERSION".into(),
        ));
    }
    println!("[INFO]  Using {version} as release");
    println!("[INFO]  Downloading hash https://github.com/k3s-io/k3s/releases/download/{version}/sha256sum-amd64.txt");
    if !is_k3s_version(&version) {
        return Err(fatal("Download failed".into()));
    }
    let exec = std::env::var("INSTALL_K3S_EXEC").unwrap_or_default();
    let mut words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    words.extend(args.iter().cloned());
    let k3s_url = std::env::var("K3S_URL").ok().filter(|u| !u.is_empty());
    let command = match words.first().map(String::as_str) {
        Some("server") | Some("agent") => words.remove(0),
        _ if k3s_url.is_some() => "agent".to_string(),
        _ => "server".to_string(),
    };
    let unit = if command == "agent" {
        "k3s-agent"
    } else {
        "k3s"
    };
    println!(
        "[INFO]  Downloading binary https://github.com/k3s-io/k3s/releases/download/{version}/k3s"
    );
    println!("[INFO]  Verifying binary download");
    println!("[INFO]  Installing k3s to {BINARY}");
    root.symlink(&own_exe()?, BINARY)?;
    root.write(VERSION_FILE, &format!("{version}\n"), 0o644)?;
    for tool in ["kubectl", "crictl", "ctr"] {
        println!("[INFO]  Creating /usr/local/bin/{tool} symlink to k3s");
        root.symlink(
            std::path::Path::new("k3s"),
            &format!("/usr/local/bin/{tool}"),
        )?;
    }
    let unit_path = format!("/etc/systemd/system/{unit}.service");
    println!("[INFO]  env: Creating environment file {unit_path}.env");
    root.write(&format!("{unit_path}.env"), "", 0o600)?;
    println!("[INFO]  systemd: Creating service file {unit_path}");
    let mut exec_start = format!("ExecStart={BINARY} \\\n    {command} \\\n");
    for w in &words {
        exec_start.push_str(&format!("\t'{w}' \\\n"));
    }
    let unit_text = format!(
        "[Unit]\nDescription=Lightweight Kubernetes\nDocumentation=https://k3s.io\nWants=network-online.target\nAfter=network-online.target\n\n[Install]\nWantedBy=multi-user.target\n\n[Service]\nType=notify\nEnvironmentFile=-/etc/default/%N\nEnvironmentFile=-/etc/sysconfig/%N\nEnvironmentFile=-{unit_path}.env\nKillMode=process\nDelegate=yes\nLimitNOFILE=1048576\nLimitNPROC=infinity\nLimitCORE=infinity\nTasksMax=infinity\nTimeoutStartSec=0\nRestart=always\nRestartSec=5s\nExecStartPre=-/sbin/modprobe br_netfilter\nExecStartPre=-/sbin/modprobe overlay\n{exec_start}\n"
    );
    root.write(&unit_path, &unit_text, 0o644)?;
    println!("[INFO]  systemd: Enabling {unit} unit");
    if let Some(line) = systemd::enable_unit(&root, unit)? {
        println!("{line}");
    }
    println!("[INFO]  systemd: Starting {unit}");
    systemd::stop_unit(&root, unit)?;
    systemd::start_unit(&root, unit)?;
    Ok(0)
}

/// `k3s SUBCOMMAND …`.
pub async fn main(args: Vec<String>) -> Result<i32> {
    let rest = args.get(1..).unwrap_or_default().to_vec();
    match args.first().map(String::as_str) {
        Some("server") => run_daemon(K3sRole::Server, &rest).await,
        Some("agent") => run_daemon(K3sRole::Agent, &rest).await,
        Some("kubectl") => kubectl::main(rest, kubectl::Flavor::K3s).await,
        Some("--version" | "-v" | "version") => {
            println!(
                "k3s version {} (a562d090)\ngo version go1.22.9",
                installed_version(&Root::from_env())
            );
            Ok(0)
        }
        Some(other) => Err(StandinError::tool(format!(
            "time=\"{}\" level=fatal msg=\"Error: No help topic for '{other}'\"",
            super::cluster::timestamp(Utc::now())
        ))),
        None => {
            println!("NAME:\n   k3s - Kubernetes, but small and simple\n\nUSAGE:\n   k3s [global options] command [command options] [arguments...]\n\nCOMMANDS:\n   server   Run management server\n   agent    Run node agent\n   kubectl  Run kubectl");
            Ok(0)
        }
    }
}

/// The node as this daemon registers it.
fn node_spec(
    cfg: &K3sConfig,
    id: &NodeIdentity,
    role: K3sRole,
    etcd: bool,
    version: &str,
) -> std::result::Result<NodeSpec, String> {
    let name = cfg.get("node-name").unwrap_or(&id.name).to_string();
    let mut labels: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/instance-type", "k3s"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "k3s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.insert("kubernetes.io/hostname".into(), name.clone());
    let mut configured = Vec::new();
    for spec in cfg.list("node-label") {
        let (k, v) = labels::parse_label(spec)
            .map_err(|e| format!("kubelet exited: failed to validate kubelet flags: {e}"))?;
        configured.push(k.clone());
        labels.insert(k, v);
    }
    labels::check_kubelet_labels(configured.iter().map(String::as_str))
        .map_err(|e| format!("kubelet exited: failed to validate kubelet flags: {e}"))?;
    if role == K3sRole::Server {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
        labels.insert("node-role.kubernetes.io/master".into(), "true".into());
        if etcd {
            labels.insert("node-role.kubernetes.io/etcd".into(), "true".into());
        }
    }
    let taints = cfg
        .list("node-taint")
        .iter()
        .map(|t| labels::parse_taint(t))
        .collect::<std::result::Result<Vec<Taint>, String>>()
        .map_err(|e| format!("kubelet exited: failed to validate kubelet flags: {e}"))?;
    // The kubelet refuses a node IP that is none of the host's addresses.
    if let Some(ip) = cfg.get("node-ip") {
        let on_host = ip
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| id.addresses().contains(&ip));
        if !on_host {
            return Err(format!(
                "kubelet exited: failed to validate nodeIP: node IP: {ip:?} not found in the \
                 host's network interfaces"
            ));
        }
    }
    Ok(NodeSpec {
        name,
        internal_ip: cfg
            .get("node-ip")
            .map_or_else(|| id.ip.to_string(), str::to_string),
        external_ip: cfg.get("node-external-ip").map(str::to_string),
        labels,
        taints,
        kubelet_version: version.to_string(),
    })
}

/// The node password, created on first start.
fn node_password(root: &Root) -> Result<String> {
    if let Some(p) = root.read_opt(NODE_PASSWORD)? {
        return Ok(p.trim().to_string());
    }
    let p = random_hex(32);
    root.write(NODE_PASSWORD, &format!("{p}\n"), 0o600)?;
    Ok(p)
}

fn write_server_files(
    root: &Root,
    ca_pem: &str,
    server_password: &str,
    agent_password: Option<&str>,
    admin_cert: &str,
) -> Result<()> {
    root.write(CA, ca_pem, 0o644)?;
    root.write(
        TOKEN,
        &format!("{}\n", secure_token(ca_pem, "server", server_password)),
        0o600,
    )?;
    if let Some(agent) = agent_password {
        root.write(
            AGENT_TOKEN,
            &format!("{}\n", secure_token(ca_pem, "node", agent)),
            0o600,
        )?;
    }
    root.write(
        KUBECONFIG,
        &render_kubeconfig("https://127.0.0.1:6443", ca_pem, admin_cert, true),
        0o600,
    )
}

async fn run_daemon(role: K3sRole, args: &[String]) -> Result<i32> {
    let root = Root::from_env();
    let id = node_identity(&root)?;
    let unit = match role {
        K3sRole::Server => "k3s",
        K3sRole::Agent => "k3s-agent",
    };
    let journal = Journal::new(
        if role == K3sRole::Server {
            "k3s"
        } else {
            "k3s-agent"
        },
        &id.name,
        LogStyle::Logrus,
    );
    let cfg = K3sConfig::load(&root, args).map_err(|e| journal.fatal(&e))?;
    let version = installed_version(&root);
    let what = if role == K3sRole::Server {
        ""
    } else {
        "agent "
    };
    journal.info(&format!("Starting k3s {what}{version} (a562d090)"));
    let joining = cfg.get("server").map(str::to_string);
    if role == K3sRole::Agent && cfg.get("token").is_none() {
        return Err(journal.fatal("Error: --token is required"));
    }
    let node_password = node_password(&root)?;
    let result = match joining {
        None if role == K3sRole::Agent => Err(journal.fatal("Error: --server is required")),
        None => first_server(&root, &id, &cfg, &journal, &version, &node_password).await,
        Some(server) => {
            join(
                &root,
                &id,
                &cfg,
                &journal,
                role,
                &server,
                &version,
                &node_password,
            )
            .await
        }
    };
    daemon::clear_ready(&root, unit);
    result.map(|()| 0)
}

async fn first_server(
    root: &Root,
    id: &NodeIdentity,
    cfg: &K3sConfig,
    journal: &Journal,
    version: &str,
    node_password: &str,
) -> Result<()> {
    let spec = node_spec(cfg, id, K3sRole::Server, cfg.flag("cluster-init"), version)
        .map_err(|e| journal.fatal(&e))?;
    let token = cfg.get("token").map(|t| parse_token(t).password);
    let agent_token = cfg.get("agent-token").map(|t| parse_token(t).password);
    let state_path = root.path(STATE);
    let state = match Datastore::load(&state_path)? {
        Some(state) => {
            let stored = state.k3s.as_ref().map(|s| s.server_password.as_str());
            if token.is_some() && token.as_deref() != stored {
                return Err(journal.fatal(
                    "starting kubernetes: preparing server: bootstrap data already found and encrypted with different token",
                ));
            }
            journal.info("Reusing existing datastore");
            state
        }
        None => {
            let server = token.unwrap_or_else(|| random_hex(32));
            let agent = agent_token.unwrap_or_else(|| server.clone());
            if cfg.flag("cluster-init") {
                journal.info("Managed etcd cluster initializing");
            }
            ClusterState::new_k3s(server, agent)
        }
    };
    let secrets = state
        .k3s
        .clone()
        .ok_or_else(|| journal.fatal("the datastore does not hold a k3s cluster"))?;
    let admin = state.admin_certs.first().cloned().unwrap_or_default();
    write_server_files(
        root,
        &state.ca_pem,
        &secrets.server_password,
        Some(&secrets.agent_password),
        &admin,
    )?;
    let store = Datastore::new(state, state_path)?;
    let listener = daemon::bind(journal, id.ip, API_PORT).await?;
    let also = bind_private(journal, id).await?;
    store
        .with(true, |s| {
            s.register_self(spec.clone(), node_password, Utc::now())
        })?
        .map_err(|f| journal.fatal(&f.message))?;
    journal.info(&format!(
        "Running kube-apiserver on {}:{API_PORT} (plain HTTP in this simulation)",
        id.ip
    ));
    journal.info("k3s is up and running");
    daemon::mark_ready(root, "k3s")?;
    let beat = Heartbeat {
        name: spec.name.clone(),
        node_password: node_password.to_string(),
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
    let router = api::router(store);
    let extra = also.map(|l| {
        tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
            l,
            router.clone(),
        )))
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(daemon::shutdown_signal())
        .await;
    if let Some(extra) = extra {
        extra.abort();
    }
    beats.abort();
    journal.info("Shutting down");
    served.map_err(|e| journal.fatal(&format!("API server failed: {e}")))
}

#[allow(clippy::too_many_arguments)]
async fn join(
    root: &Root,
    id: &NodeIdentity,
    cfg: &K3sConfig,
    journal: &Journal,
    role: K3sRole,
    server: &str,
    version: &str,
    node_password: &str,
) -> Result<()> {
    let Some(token) = cfg.get("token").map(parse_token) else {
        return Err(journal.fatal("Error: --token is required"));
    };
    let spec = node_spec(cfg, id, role, true, version).map_err(|e| journal.fatal(&e))?;
    let upstream = Api::new(http_base(server, None), None);
    let (listener, also) = match role {
        K3sRole::Server => (
            Some(daemon::bind(journal, id.ip, API_PORT).await?),
            bind_private(journal, id).await?,
        ),
        K3sRole::Agent => (None, None),
    };
    let ca_pem = fetch_cacerts(&upstream, server, journal).await?;
    let actual = sha256_hex(ca_pem.as_bytes());
    if let Some(expected) = &token.ca_hash {
        if *expected != actual {
            return Err(journal.fatal(&format!(
                "Error: failed to validate token: token CA hash does not match the Cluster CA certificate hash: {expected} != {actual}"
            )));
        }
    }
    let request = K3sJoin {
        role,
        password: token.password.clone(),
        node_password: node_password.to_string(),
        node: spec.clone(),
    };
    let joined: K3sJoined = match upstream
        .call(Method::POST, "/kiwi-sim/v1/k3s/join", Some(&request))
        .await
    {
        Ok(Ok(v)) => serde_json::from_value(v)
            .map_err(|e| journal.fatal(&format!("invalid join answer: {e}")))?,
        Ok(Err(f)) if f.code == 401 => {
            let what = if role == K3sRole::Server {
                "server"
            } else {
                "agent"
            };
            return Err(journal.fatal(&format!(
                "Failed to retrieve {what} config: {server}/v1-k3s/config: 401 Unauthorized"
            )));
        }
        Ok(Err(f)) => {
            return Err(journal.fatal(&format!(
                "Failed to join {server}: {} {}",
                f.code, f.message
            )))
        }
        Err(e) => return Err(journal.fatal(&e.render())),
    };
    if role == K3sRole::Server {
        write_server_files(
            root,
            &ca_pem,
            &token.password,
            joined.agent_password.as_deref(),
            joined.admin_cert.as_deref().unwrap_or_default(),
        )?;
        journal.info(&format!("Joined the cluster through {server}"));
    } else {
        journal.info(&format!("Connected to the cluster through {server}"));
    }
    root.write("/var/lib/rancher/k3s/agent/server-ca.crt", &ca_pem, 0o644)?;
    let unit = if role == K3sRole::Server {
        "k3s"
    } else {
        "k3s-agent"
    };
    daemon::mark_ready(root, unit)?;
    let beats = tokio::spawn(daemon::heartbeat_loop(
        upstream.clone(),
        Heartbeat {
            name: spec.name.clone(),
            node_password: node_password.to_string(),
        },
        journal.clone(),
    ));
    let result = match listener {
        Some(listener) => {
            let router = api::proxy_router(upstream.base().to_string());
            let extra = also.map(|l| {
                tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
                    l,
                    router.clone(),
                )))
            });
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(daemon::shutdown_signal())
                .await
                .map_err(|e| journal.fatal(&format!("API proxy failed: {e}")));
            if let Some(extra) = extra {
                extra.abort();
            }
            served
        }
        None => {
            daemon::shutdown_signal().await;
            Ok(())
        }
    };
    beats.abort();
    journal.info("Shutting down");
    result
}

/// The API's listener on the node's private address, when it has one: k3s listens on every
/// interface, so a server is reached over its private network too.
async fn bind_private(
    journal: &Journal,
    id: &NodeIdentity,
) -> Result<Option<tokio::net::TcpListener>> {
    match id.private_ip {
        Some(ip) => Ok(Some(daemon::bind(journal, ip, API_PORT).await?)),
        None => Ok(None),
    }
}

/// Fetches `/cacerts`, waiting while the server is not reachable yet.
async fn fetch_cacerts(api: &Api, server: &str, journal: &Journal) -> Result<String> {
    let started = Instant::now();
    let mut logged = false;
    loop {
        match api.get_text("/cacerts").await {
            Ok(Ok(pem)) => return Ok(pem),
            Ok(Err(f)) => {
                return Err(journal.fatal(&format!(
                    "Error: failed to get CA certs: {server}/cacerts: {} {}",
                    f.code, f.reason
                )))
            }
            Err(e) => {
                if started.elapsed() > JOIN_PATIENCE {
                    return Err(
                        journal.fatal(&format!("Error: failed to get CA certs: {}", e.render()))
                    );
                }
                if !logged {
                    journal.info(&format!(
                        "Waiting to retrieve CA certificates from {server}: server is not ready"
                    ));
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secure_tokens_split_into_hash_and_password() {
        let t = parse_token("K10abc::server:s3cret");
        assert_eq!(t.ca_hash.as_deref(), Some("abc"));
        assert_eq!(t.password, "s3cret");
        assert_eq!(parse_token("plain").ca_hash, None);
    }

    /// k3s reads `config.yaml.d/*.yaml` after `config.yaml`, in lexical order, and flags win
    /// over both: the stand-in's server sees the backend a real one would.
    #[test]
    fn drop_in_files_override_config_yaml_in_order_and_flags_override_them() {
        let dir = std::env::temp_dir().join(format!("kiwi-k3s-config-{}", std::process::id()));
        let root = crate::standin::paths::Root::at(dir.clone());
        root.write(
            CONFIG,
            "flannel-backend: wireguard-native\ntoken: t\n",
            0o600,
        )
        .unwrap();
        root.write(
            &format!("{CONFIG}.d/20-b.yaml"),
            "flannel-backend: vxlan\n",
            0o600,
        )
        .unwrap();
        root.write(
            &format!("{CONFIG}.d/10-a.yaml"),
            "flannel-backend: host-gw\n",
            0o600,
        )
        .unwrap();
        root.write(
            &format!("{CONFIG}.d/30-c.yml"),
            "flannel-backend: none\n",
            0o600,
        )
        .unwrap();
        let cfg = K3sConfig::load(&root, &[]).unwrap();
        assert_eq!(cfg.get("flannel-backend"), Some("vxlan"));
        // go-yaml applies merge keys, and Go's flags take one dash too.
        root.write(
            "/etc/rancher/k3s/config.yaml.d/40-merge.yaml",
            "<<: {flannel-backend: host-gw}\n",
            0o644,
        )
        .unwrap();
        let merged = K3sConfig::load(&root, &[]).unwrap();
        assert_eq!(merged.get("flannel-backend"), Some("host-gw"));
        let dashed = K3sConfig::load(
            &root,
            &[
                "-flannel-backend".to_string(),
                "wireguard-native".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(dashed.get("flannel-backend"), Some("wireguard-native"));
        assert_eq!(cfg.get("token"), Some("t"));
        let flagged =
            K3sConfig::load(&root, &["--flannel-backend=wireguard-native".to_string()]).unwrap();
        assert_eq!(flagged.get("flannel-backend"), Some("wireguard-native"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn versions_must_look_like_k3s_releases() {
        assert!(is_k3s_version("v1.31.4+k3s1"));
        assert!(!is_k3s_version("1.31.4"));
        assert!(!is_k3s_version("v1.31.4"));
    }
}
