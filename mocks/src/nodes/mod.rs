//! Simulated nodes: when the Contabo mock's instance becomes `running`, a node appears at its
//! loopback IP with a real SSH server, its own filesystem view and its own hostname, so the
//! tool can bootstrap clusters exactly as it would on real servers, knowing nothing of the
//! simulation.
//!
//! - [`preflight`] says what this machine lacks (root, util-linux, overlayfs) and how to get it.
//! - [`userdata`] reads what a node honours from its cloud-init user data.
//! - [`fs`] gives each node a private mount namespace with overlays over the host's `/etc`,
//!   `/var`, `/usr/local`, `/usr/bin`, `/home`, `/root`, `/run`, `/opt` and `/tmp`, and kills
//!   a node's processes when it stops.
//! - [`ssh`] is the russh server that runs commands inside the node.
//!
//! Every node gets `/etc/kiwi-sim/node.json` and the stand-in programs of the
//! `kiwi-node-standin` binary (`kubeadm`, `kubectl`, `systemctl`, `journalctl`, `cloud-init`,
//! `sudo` in `/usr/bin`, `nft` in `/usr/local/sbin`, and `/usr/local/bin/k3s-install.sh`). Daemons the stand-ins start run
//! in the node's namespace and record their pids in `/run/kiwi-sim/pids/<daemon>.pid`
//! ([`NodeSimulator::kill_process`] uses them). All nodes share the host's network namespace;
//! each binds its own loopback address.
//!
//! Following the mock ([`NodeSimulator::attach`]):
//! - `running` starts the node (a reboot if its disk exists: first-boot files are not rewritten,
//!   `/run` is emptied, and the units the node enabled are started with the stand-in
//!   `systemctl start`, as systemd would);
//! - `installing` (a new order's install or a reinstall) stops it and wipes its disk;
//! - `uninstalled` stops it and wipes its disk; any other status (`stopped`, `error`, …) stops it.
//!
//! A node whose user data is unusable does not start; the reason is logged at error level.

pub mod fs;
pub mod preflight;
pub mod ssh;
pub mod userdata;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::contabo::{InstanceEvent, MockHandle};
use fs::{Holder, Layers, MARKER_VAR};
pub use preflight::{HostFacts, PreflightError};
use ssh::{Login, NodeShell};

/// Name of the stand-in programs binary.
pub const STANDIN_BINARY_NAME: &str = "kiwi-node-standin";

/// Where each stand-in appears inside a node (the binary dispatches on `argv[0]`).
/// `nft` lives in `/usr/local/sbin`, which sudo's `secure_path` and a login's `PATH` search
/// before the host's real `/usr/sbin/nft` (not in the node's overlays): the stand-in keeps the
/// node's ruleset and never loads rules into the shared network namespace.
pub const STANDIN_LINKS: [&str; 7] = [
    "/usr/bin/kubeadm",
    "/usr/bin/kubectl",
    "/usr/bin/systemctl",
    "/usr/bin/journalctl",
    "/usr/bin/cloud-init",
    "/usr/bin/sudo",
    "/usr/local/sbin/nft",
];

/// The k3s install script's path. The tool runs it with `sh`, so it must be a shell script:
/// it execs [`K3S_INSTALL_LINK`], a link to the stand-in named `k3s-install.sh`.
pub const K3S_INSTALL_SCRIPT: &str = "/usr/local/bin/k3s-install.sh";
/// The stand-in link behind [`K3S_INSTALL_SCRIPT`].
pub const K3S_INSTALL_LINK: &str = "/usr/local/lib/kiwi-sim/k3s-install.sh";

/// The stand-in binary under its own name inside every node (what the stand-ins' own
/// `k3s-install.sh` script execs).
pub const STANDIN_IN_NODE: &str = "/usr/local/lib/kiwi-sim/kiwi-node-standin";

/// Directory inside a node where daemons record `<daemon>.pid`.
pub const PID_DIR: &str = "/run/kiwi-sim/pids";

/// Why simulated nodes cannot run, or an operation on one failed.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The machine lacks something; the message says what and how to get it.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// Forming the static control plane failed.
    #[error("forming the control plane: `{command}` on {node} exited with {code}: {stderr}")]
    ControlPlane {
        /// Node.
        node: String,
        /// Command (holds no secret; secrets go through files).
        command: String,
        /// Exit code.
        code: i32,
        /// Its stderr.
        stderr: String,
    },
    /// Mounting a test overlay in a private namespace failed although the checks passed.
    #[error(
        "cannot mount an overlay in a private mount namespace with its layers in {}: {stderr} \
         (the state directory must be on a filesystem overlayfs accepts as an upper layer, \
         such as ext4, xfs, btrfs or tmpfs)",
        state_dir.display()
    )]
    Probe {
        /// The state directory.
        state_dir: PathBuf,
        /// What `mount` said.
        stderr: String,
    },
    /// The state directory cannot hold overlay layers.
    #[error("state directory {}: {reason}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A node's namespace holder failed to mount its overlays.
    #[error("node {node}: cannot set up its filesystem view: {stderr}")]
    Holder {
        /// The node.
        node: String,
        /// What the holder's shell said.
        stderr: String,
    },
    /// A node's SSH address is taken.
    #[error("node {node}: cannot listen for SSH on {addr}")]
    Bind {
        /// The node.
        node: String,
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A node's user data is unusable.
    #[error("node {node}: unusable user data")]
    UserData {
        /// The node (instance display name).
        node: String,
        /// Cause.
        #[source]
        source: userdata::UserDataError,
    },
    /// A given key is not a valid OpenSSH key.
    #[error("node {node}: {what} is not a valid OpenSSH key")]
    Key {
        /// The node.
        node: String,
        /// Which key.
        what: String,
    },
    /// A write_files entry or stand-in path outside every overlaid directory.
    #[error(
        "{path} is outside the directories a simulated node overlays ({}); writing it would \
         change the host",
        fs::OVERLAID.join(", ")
    )]
    OutsideOverlay {
        /// The node path.
        path: String,
    },
    /// A name that cannot be a hostname (or daemon name).
    #[error("{name:?} is not a valid {what} (letters, digits, '-', '.', '_')")]
    InvalidName {
        /// The name.
        name: String,
        /// What it names.
        what: &'static str,
    },
    /// No node has this name.
    #[error("no simulated node is named {name}")]
    UnknownNode {
        /// The name.
        name: String,
    },
    /// The node exists but is not running.
    #[error("simulated node {name} is not running")]
    NotRunning {
        /// The name.
        name: String,
    },
    /// No pid file for this daemon in the node.
    #[error("node {node} has no running daemon {daemon:?} (pid files: {known:?})")]
    NoSuchDaemon {
        /// The node.
        node: String,
        /// The daemon asked for.
        daemon: String,
        /// Daemons that do have pid files.
        known: Vec<String>,
    },
}

/// Settings of a [`NodeSimulator`].
#[derive(Debug, Clone)]
pub struct NodesConfig {
    /// Where each node's disk (overlay layers) lives: `<state_dir>/<node dir>/`.
    pub state_dir: PathBuf,
    /// The `kiwi-node-standin` binary the nodes' stand-in programs link to.
    pub standin_binary: PathBuf,
    /// Port of the nodes' SSH servers (22, as real nodes; tests may pick another).
    pub ssh_port: u16,
    /// Facts to check instead of observing the machine (tests fake a missing requirement).
    pub host_facts: Option<HostFacts>,
}

impl NodesConfig {
    /// Nodes with state in `state_dir`, stand-ins from `standin_binary`, SSH on port 22.
    pub fn new(state_dir: impl Into<PathBuf>, standin_binary: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            standin_binary: standin_binary.into(),
            ssh_port: 22,
            host_facts: None,
        }
    }
}

/// `kiwi-node-standin` next to the running executable, or one directory up (where cargo puts
/// binaries when the executable is a test in `target/<profile>/deps`).
pub fn default_standin_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join(STANDIN_BINARY_NAME),
        dir.parent()?.join(STANDIN_BINARY_NAME),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// A node that exists without a Contabo order (the Core cluster's first control planes).
#[derive(Debug, Clone)]
pub struct StaticNode {
    /// Hostname.
    pub name: String,
    /// Loopback address it listens on.
    pub ip: Ipv4Addr,
    /// Login user (kiwi-infra's admin user is `kiwi`).
    pub user: String,
    /// OpenSSH public keys allowed to log in as `user`.
    pub authorized_keys: Vec<String>,
    /// OpenSSH private host key; generated if `None`.
    pub host_key: Option<String>,
}

/// A node as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Hostname.
    pub name: String,
    /// Loopback address.
    pub ip: Ipv4Addr,
    /// The Contabo instance it stands for; `None` for a static node.
    pub instance_id: Option<i64>,
    /// Its SSH server is up.
    pub running: bool,
    /// Where its SSH server listens.
    pub ssh_addr: SocketAddr,
    /// Its host key, `ssh-ed25519 AAAA…` (a known_hosts line without the host part).
    pub host_public_key: String,
    /// Its disk on the host.
    pub dir: PathBuf,
}

/// What a command run with [`NodeSimulator::exec`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code (128 + signal if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NodeKey {
    Instance(i64),
    Static(String),
}

/// Everything needed to boot a node, decided before touching its disk.
#[derive(Debug)]
struct Boot {
    key: NodeKey,
    name: String,
    ip: Ipv4Addr,
    /// Its private-network address, once its NIC works (a loopback address only: nothing
    /// else may be bound on this machine).
    private_ip: Option<Ipv4Addr>,
    logins: HashMap<String, Login>,
    host_key: Option<PrivateKey>,
    write_files: Vec<userdata::WriteFile>,
    /// `runcmd`'s `systemctl enable [--now] UNIT` entries, run at first boot.
    enable_units: Vec<userdata::EnableUnit>,
    user_data: Option<String>,
}

#[derive(Debug)]
struct Running {
    holder: Holder,
    ssh: JoinHandle<()>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    ip: Ipv4Addr,
    layers: Layers,
    host_public_key: String,
    running: Option<Running>,
}

impl Slot {
    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.ssh.abort();
            running.holder.stop().await;
            tracing::info!(node = %self.name, ip = %self.ip, "simulated node stopped");
        }
    }
}

#[derive(Debug)]
struct Inner {
    state_dir: PathBuf,
    standin: PathBuf,
    ssh_port: u16,
    /// `KIWI_SIM_STATE` value of this simulator's processes.
    marker: String,
    nodes: tokio::sync::Mutex<BTreeMap<NodeKey, Slot>>,
    /// Host names whose first boot never finishes (see [`NodeSimulator::hang_cloud_init`]).
    hanging: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// The simulated nodes of one state directory. Dropping it kills every node's processes;
/// [`NodeSimulator::shutdown`] also waits for them.
#[derive(Debug)]
pub struct NodeSimulator {
    inner: Arc<Inner>,
    followers: Vec<JoinHandle<()>>,
}

impl NodeSimulator {
    /// Checks the machine (see [`preflight`]), prepares `config.state_dir`, kills processes a
    /// previous run with the same state directory left behind, and proves an overlay can be
    /// mounted there.
    pub async fn start(config: NodesConfig) -> Result<Self, NodesError> {
        let facts = config
            .host_facts
            .clone()
            .unwrap_or_else(|| HostFacts::detect(&config.standin_binary));
        preflight::check(&facts, config.ssh_port, &config.standin_binary)?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| NodesError::Io {
            path: config.state_dir.clone(),
            source,
        })?;
        let state_dir =
            std::fs::canonicalize(&config.state_dir).map_err(|source| NodesError::Io {
                path: config.state_dir.clone(),
                source,
            })?;
        let text = state_dir.to_string_lossy();
        // Overlay mount options are separated by ',' and lower layers by ':'.
        if text.contains([',', ':', '\\']) {
            return Err(NodesError::StateDir {
                path: state_dir.clone(),
                reason: "its path must not contain ',', ':' or '\\' (overlay mount options)".into(),
            });
        }
        let marker = text.into_owned();
        fs::kill_and_wait(&fs::processes_marked(&marker)).await;
        probe_overlay(&state_dir).await?;
        let standin = std::fs::canonicalize(&config.standin_binary)
            .unwrap_or_else(|_| config.standin_binary.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                state_dir,
                standin,
                ssh_port: config.ssh_port,
                marker,
                nodes: tokio::sync::Mutex::new(BTreeMap::new()),
                hanging: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            }),
            followers: Vec::new(),
        })
    }

    /// Follows `mock`'s instances from now on: nodes for instances already `running` start at
    /// once (on their existing disks), then every status change is applied in order.
    pub fn attach(&mut self, mock: &MockHandle) {
        // Subscribe before the snapshot so that no change falls between them; a duplicate
        // `running` is harmless.
        let mut events = mock.events();
        let existing: Vec<InstanceEvent> = mock
            .instances()
            .iter()
            .filter(|i| i.status == "running")
            .map(|i| InstanceEvent {
                private_ip: mock.private_ip_of(i.instance_id),
                ..InstanceEvent::of(i)
            })
            .collect();
        let inner = self.inner.clone();
        self.followers.push(tokio::spawn(async move {
            // One worker per instance: its events in order, while machines boot side by
            // side as a cloud's do.
            let mut workers = HashMap::new();
            for event in existing {
                dispatch(&inner, &mut workers, event);
            }
            loop {
                match events.recv().await {
                    Ok(event) => dispatch(&inner, &mut workers, event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::error!(missed, "simulated nodes missed instance events");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
    }

    /// Snapshot of every node, running or stopped.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let nodes = self.inner.nodes.lock().await;
        nodes
            .iter()
            .map(|(key, slot)| NodeInfo {
                name: slot.name.clone(),
                ip: slot.ip,
                instance_id: match key {
                    NodeKey::Instance(id) => Some(*id),
                    NodeKey::Static(_) => None,
                },
                running: slot.running.is_some(),
                ssh_addr: SocketAddr::from((slot.ip, self.inner.ssh_port)),
                host_public_key: slot.host_public_key.clone(),
                dir: slot.layers.dir().to_path_buf(),
            })
            .collect()
    }

    /// A fault: the node named `name` (a Contabo instance's display name), when it
    /// boots from now on, never finishes cloud-init, so it never becomes ready for work.
    /// `rm /etc/kiwi-sim/cloud-init-hangs` on the node (through [`Self::exec`]) ends it.
    pub fn hang_cloud_init(&self, name: &str) {
        if let Ok(mut hanging) = self.inner.hanging.lock() {
            hanging.insert(name.to_string());
        }
    }

    /// Creates (or reboots) a node that no Contabo order stands for, and returns its host
    /// public key (`ssh-ed25519 AAAA…`) for a known_hosts line.
    pub async fn add_static_node(&self, node: StaticNode) -> Result<String, NodesError> {
        let name = hostname(&node.name)?;
        let keys = node
            .authorized_keys
            .iter()
            .map(|k| {
                PublicKey::from_openssh(k.trim()).map_err(|_| NodesError::Key {
                    node: name.clone(),
                    what: "an authorized key".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host_key = node
            .host_key
            .as_deref()
            .map(|pem| {
                PrivateKey::from_openssh(pem.trim()).map_err(|_| NodesError::Key {
                    node: name.clone(),
                    what: "the host key".into(),
                })
            })
            .transpose()?;
        let mut logins = HashMap::new();
        logins.insert(node.user.clone(), login(&node.user, keys));
        let boot = Boot {
            key: NodeKey::Static(name.clone()),
            name,
            ip: node.ip,
            private_ip: None,
            logins,
            host_key,
            write_files: Vec::new(),
            enable_units: Vec::new(),
            user_data: None,
        };
        self.inner.boot(boot).await
    }

    /// Stops every node named `name` (its processes are killed, its disk kept).
    pub async fn stop_node(&self, name: &str) -> Result<(), NodesError> {
        let mut nodes = self.inner.nodes.lock().await;
        let mut found = false;
        for slot in nodes.values_mut().filter(|s| s.name == name) {
            found = true;
            slot.stop().await;
        }
        if found {
            Ok(())
        } else {
            Err(NodesError::UnknownNode {
                name: name.to_owned(),
            })
        }
    }

    /// Kills (SIGKILL) the daemon that recorded its pid in `/run/kiwi-sim/pids/<daemon>.pid`
    /// on the running node `node`, as a crash would. Returns the pid killed.
    pub async fn kill_process(&self, node: &str, daemon: &str) -> Result<u32, NodesError> {
        if daemon.is_empty()
            || !daemon
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(NodesError::InvalidName {
                name: daemon.to_owned(),
                what: "daemon name",
            });
        }
        let nodes = self.inner.nodes.lock().await;
        let holder = running_holder(&nodes, node)?;
        let no_such = || {
            let known = std::fs::read_dir(holder.view(PID_DIR))
                .map(|dir| {
                    dir.filter_map(|e| {
                        let name = e.ok()?.file_name().into_string().ok()?;
                        name.strip_suffix(".pid").map(str::to_owned)
                    })
                    .collect()
                })
                .unwrap_or_default();
            NodesError::NoSuchDaemon {
                node: node.to_owned(),
                daemon: daemon.to_owned(),
                known,
            }
        };
        let pid_file = holder.view(&format!("{PID_DIR}/{daemon}.pid"));
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(no_such)?;
        // A stale pid file may name a pid reused by an unrelated process: check it is ours.
        let in_node = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .is_ok_and(|ns| ns == holder.namespace);
        if !in_node {
            return Err(no_such());
        }
        fs::kill_and_wait(&[pid]).await;
        tracing::info!(node, daemon, pid, "daemon killed");
        Ok(pid)
    }

    /// Forms the Core control plane that exists before kiwi-infra: `kubeadm
    /// init` on the first node, then a control-plane `kubeadm join` (token,
    /// uploaded certificates, certificate key) of every other node, as an
    /// operator would have built it. Nodes already initialised or joined are
    /// left alone, so a restart on the same directory changes nothing.
    pub async fn form_control_plane(&self, nodes: &[(String, Ipv4Addr)]) -> Result<(), NodesError> {
        let Some((first, first_ip)) = nodes.first() else {
            return Ok(());
        };
        let run = |node: String, command: String| async move {
            let out = self.exec(&node, &command).await?;
            if out.code == 0 {
                Ok(out.stdout)
            } else {
                Err(NodesError::ControlPlane {
                    node,
                    command: command.lines().next().unwrap_or_default().to_string(),
                    code: out.code,
                    stderr: out.stderr.trim().to_string(),
                })
            }
        };
        let endpoint = format!("{first_ip}:6443");
        if self
            .exec(first, "test -e /etc/kubernetes/admin.conf")
            .await?
            .code
            != 0
        {
            run(
                first.clone(),
                format!("kubeadm init --control-plane-endpoint {endpoint}"),
            )
            .await?;
        }
        for (name, ip) in &nodes[1..] {
            if self
                .exec(name, "test -e /etc/kubernetes/kubelet.conf")
                .await?
                .code
                == 0
            {
                continue;
            }
            let join = run(
                first.clone(),
                "kubeadm token create --ttl 15m --print-join-command".into(),
            )
            .await?;
            let words: Vec<&str> = join.split_whitespace().collect();
            let after = |flag: &str| {
                words
                    .iter()
                    .position(|w| *w == flag)
                    .and_then(|i| words.get(i + 1))
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            };
            let certs = run(
                first.clone(),
                "kubeadm init phase upload-certs --upload-certs".into(),
            )
            .await?;
            let key = certs
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let config = format!(
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n\
                 discovery:\n  bootstrapToken:\n    apiServerEndpoint: \"{endpoint}\"\n    \
                 token: \"{token}\"\n    caCertHashes:\n      - \"{hash}\"\n\
                 nodeRegistration:\n  name: \"{name}\"\n  kubeletExtraArgs:\n    \
                 - name: \"node-ip\"\n      value: \"{ip}\"\n\
                 controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"{ip}\"\n  \
                 certificateKey: \"{key}\"\n",
                token = after("--token"),
                hash = after("--discovery-token-ca-cert-hash"),
            );
            run(
                name.clone(),
                format!(
                    "mkdir -p /etc/kubernetes && cat > /etc/kubernetes/cp-join.yaml <<'KIWI_EOF'\n{config}KIWI_EOF\n\
                     kubeadm join --config /etc/kubernetes/cp-join.yaml; code=$?; rm -f /etc/kubernetes/cp-join.yaml; exit $code"
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Runs `command` with `/bin/sh -c` as root inside the running node `node` (for the
    /// mock's own setup, e.g. `kubeadm init`, and for tests). Stdin is empty.
    pub async fn exec(&self, node: &str, command: &str) -> Result<CommandOutput, NodesError> {
        let mut cmd = {
            let nodes = self.inner.nodes.lock().await;
            let holder = running_holder(&nodes, node)?;
            let mut cmd = holder.command("/bin/sh", command, "/root");
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("HOSTNAME", node)
            .env(MARKER_VAR, &self.inner.marker)
            .stdin(std::process::Stdio::null());
            cmd
        };
        let out = cmd.output().await.map_err(|source| NodesError::Spawn {
            program: "nsenter".into(),
            source,
        })?;
        use std::os::unix::process::ExitStatusExt;
        Ok(CommandOutput {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Stops following the mock, stops every node and kills anything left with this state
    /// directory's marker. Disks are kept.
    pub async fn shutdown(mut self) {
        for task in self.followers.drain(..) {
            task.abort();
        }
        let mut nodes = self.inner.nodes.lock().await;
        for slot in nodes.values_mut() {
            slot.stop().await;
        }
        fs::kill_and_wait(&fs::processes_marked(&self.inner.marker)).await;
    }
}

impl Drop for NodeSimulator {
    fn drop(&mut self) {
        for task in &self.followers {
            task.abort();
        }
        // Holders die with their handles (kill_on_drop); daemons are found by their marker.
        fs::kill(&fs::processes_marked(&self.inner.marker));
    }
}

/// Hands `event` to its instance's worker, starting one for an instance not seen before.
fn dispatch(
    inner: &Arc<Inner>,
    workers: &mut HashMap<i64, tokio::sync::mpsc::UnboundedSender<InstanceEvent>>,
    event: InstanceEvent,
) {
    let worker = workers.entry(event.instance_id).or_insert_with(|| {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<InstanceEvent>();
        let inner = inner.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                inner.follow(event).await;
            }
        });
        tx
    });
    // A worker only ends when its sender is dropped, so this cannot fail.
    let _ = worker.send(event);
}

fn running_holder<'a>(
    nodes: &'a BTreeMap<NodeKey, Slot>,
    name: &str,
) -> Result<&'a Holder, NodesError> {
    let mut named = nodes.values().filter(|s| s.name == name).peekable();
    if named.peek().is_none() {
        return Err(NodesError::UnknownNode {
            name: name.to_owned(),
        });
    }
    named
        .find_map(|s| s.running.as_ref().map(|r| &r.holder))
        .ok_or_else(|| NodesError::NotRunning {
            name: name.to_owned(),
        })
}

impl Inner {
    /// Applies one instance event, logging failures (a node that cannot start stays absent,
    /// as a server whose install failed would be unreachable).
    async fn follow(&self, event: InstanceEvent) {
        let key = NodeKey::Instance(event.instance_id);
        let result = match event.status.as_str() {
            "running" => {
                let already = self
                    .nodes
                    .lock()
                    .await
                    .get(&key)
                    .is_some_and(|s| s.running.is_some());
                if already {
                    return;
                }
                match boot_from_event(&event) {
                    Ok(boot) => self.boot(boot).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
            "installing" | "uninstalled" => self.wipe(&key, &event).await,
            "provisioning" => Ok(()),
            _ => {
                if let Some(slot) = self.nodes.lock().await.get_mut(&key) {
                    slot.stop().await;
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!(
                instance_id = event.instance_id,
                status = %event.status,
                error = %error_chain(&e),
                "simulated node not updated"
            );
        }
    }

    /// Stops the instance's node and deletes its disk (and the disk its new user data would
    /// use, so a stale directory of an earlier run is never booted as this instance's).
    async fn wipe(&self, key: &NodeKey, event: &InstanceEvent) -> Result<(), NodesError> {
        let mut dirs = Vec::new();
        if let Some(mut slot) = self.nodes.lock().await.remove(key) {
            slot.stop().await;
            dirs.push(slot.layers.dir().to_path_buf());
        }
        if let Ok(boot) = boot_from_event(event) {
            dirs.push(self.node_dir(&boot));
        }
        for dir in dirs {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|source| NodesError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn node_dir(&self, boot: &Boot) -> PathBuf {
        match &boot.key {
            NodeKey::Instance(id) => self.state_dir.join(format!("{}-i{id}", boot.name)),
            NodeKey::Static(name) => self.state_dir.join(name),
        }
    }

    /// Starts a node (stopping it first if it runs): prepares its disk, writes first-boot
    /// files, mounts its view, and opens its SSH server. Returns its host public key.
    async fn boot(&self, boot: Boot) -> Result<String, NodesError> {
        // The node's slot is out of the map while it boots, so that other nodes boot at the
        // same time; a failed boot puts it back, stopped.
        let previous = self.nodes.lock().await.remove(&boot.key);
        let (layers, (host_public_key, running)) = match previous {
            Some(mut slot) => {
                slot.stop().await;
                let layers = slot.layers.clone();
                match self.start(&boot, &layers).await {
                    Ok(started) => (layers, started),
                    Err(e) => {
                        self.nodes.lock().await.insert(boot.key, slot);
                        return Err(e);
                    }
                }
            }
            None => {
                let layers = Layers::new(self.node_dir(&boot));
                let started = self.start(&boot, &layers).await?;
                (layers, started)
            }
        };
        self.nodes.lock().await.insert(
            boot.key,
            Slot {
                name: boot.name,
                ip: boot.ip,
                layers,
                host_public_key: host_public_key.clone(),
                running: Some(running),
            },
        );
        Ok(host_public_key)
    }

    /// The work of [`Self::boot`] on a stopped node's disk: first-boot and every-boot
    /// files, its namespaces, its SSH server and the units it enabled.
    async fn start(&self, boot: &Boot, layers: &Layers) -> Result<(String, Running), NodesError> {
        let first_boot = !layers.exists();
        layers.prepare()?;
        let host_key = self.host_key(layers, boot)?;
        let host_public_key = public_key_line(host_key.public_key());
        if first_boot {
            self.first_boot(layers, boot, &host_key)?;
        }
        self.every_boot(layers, boot)?;
        let holder = layers.spawn_holder(&boot.name, &self.marker).await?;
        let addr = SocketAddr::from((boot.ip, self.ssh_port));
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(source) => {
                holder.stop().await;
                return Err(NodesError::Bind {
                    node: boot.name.clone(),
                    addr,
                    source,
                });
            }
        };
        let shell = Arc::new(NodeShell {
            node: boot.name.clone(),
            holder_pid: holder.pid,
            marker: self.marker.clone(),
            logins: boot.logins.clone(),
        });
        let ssh = tokio::spawn(ssh::serve(listener, ssh::config(host_key), shell));
        tracing::info!(node = %boot.name, %addr, first_boot, "simulated node running");
        if first_boot {
            self.run_enable_commands(&holder, boot).await;
        } else {
            self.start_enabled_units(layers, &holder, &boot.name);
        }
        Ok((host_public_key, Running { holder, ssh }))
    }

    /// cloud-init's `runcmd` entries `systemctl enable [--now] UNIT` (the firewall's
    /// `nftables`), run with the stand-in `systemctl` before the boot counts as done, as
    /// `cloud-init status --wait` on a real node waits for `runcmd`. Failures are logged.
    async fn run_enable_commands(&self, holder: &Holder, boot: &Boot) {
        for entry in &boot.enable_units {
            let now = if entry.now { " --now" } else { "" };
            // The unit name is checked by the user data parser (no shell syntax).
            let line = format!("systemctl enable{now} {}", entry.unit);
            let mut c = holder.command("/bin/sh", &line, "/");
            c.env("PATH", ssh::PATH)
                .env("HOME", "/root")
                .env("HOSTNAME", &boot.name)
                .env(MARKER_VAR, &self.marker)
                .stdin(std::process::Stdio::null());
            match c.output().await {
                Ok(out) if out.status.success() => {
                    tracing::info!(node = %boot.name, unit = %entry.unit, "runcmd: unit enabled");
                }
                Ok(out) => tracing::warn!(
                    node = %boot.name, unit = %entry.unit,
                    stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                    "runcmd: systemctl enable failed"
                ),
                Err(e) => tracing::warn!(node = %boot.name, error = %e, "cannot run systemctl"),
            }
        }
    }

    /// What systemd does at boot: `systemctl start` (the stand-in) every unit the node itself
    /// enabled, i.e. linked in its own `multi-user.target.wants` (the host's links, visible
    /// through the lower layer, are not the node's). Runs in the background; failures are
    /// logged, as a unit failing at boot would be.
    fn start_enabled_units(&self, layers: &Layers, holder: &Holder, node: &str) {
        let units = layers.own_entries(ENABLED_UNITS_DIR);
        let units: Vec<String> = units
            .into_iter()
            .filter_map(|u| u.strip_suffix(".service").map(str::to_owned))
            .collect();
        if units.is_empty() {
            return;
        }
        let commands: Vec<_> = units
            .iter()
            .map(|unit| {
                let mut c = holder.command("/bin/sh", &format!("systemctl start {unit}"), "/");
                c.env("PATH", ssh::PATH)
                    .env("HOME", "/root")
                    .env("HOSTNAME", node)
                    .env(MARKER_VAR, &self.marker)
                    .stdin(std::process::Stdio::null());
                (unit.clone(), c)
            })
            .collect();
        let node = node.to_owned();
        tokio::spawn(async move {
            for (unit, mut command) in commands {
                match command.output().await {
                    Ok(out) if out.status.success() => {
                        tracing::info!(%node, %unit, "enabled unit started at boot");
                    }
                    Ok(out) => tracing::warn!(
                        %node, %unit, stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                        "enabled unit failed to start at boot"
                    ),
                    Err(e) => tracing::warn!(%node, %unit, error = %e, "cannot run systemctl"),
                }
            }
        });
    }

    /// The node's host key: the one on its disk after the first boot (a reboot keeps it),
    /// else the preset one, else a new one (a real node generates its own; kiwi-infra always
    /// presets it, so this is worth a warning).
    fn host_key(&self, layers: &Layers, boot: &Boot) -> Result<PrivateKey, NodesError> {
        if let Some(pem) = layers.read_own(HOST_KEY_PATH) {
            if let Ok(key) = PrivateKey::from_openssh(&pem) {
                return Ok(key);
            }
        }
        if let Some(key) = &boot.host_key {
            return Ok(key.clone());
        }
        if matches!(boot.key, NodeKey::Instance(_)) {
            tracing::warn!(node = %boot.name, "no preset SSH host key in the user data; generated one");
        }
        let seed: [u8; 32] = rand::random();
        Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
    }

    /// What cloud-init does once per instance: host key, users' keys, write_files, and the
    /// record that it ran.
    fn first_boot(
        &self,
        layers: &Layers,
        boot: &Boot,
        host_key: &PrivateKey,
    ) -> Result<(), NodesError> {
        let pem = host_key
            .to_openssh(LineEnding::LF)
            .map_err(|_| NodesError::Key {
                node: boot.name.clone(),
                what: "the host key".into(),
            })?;
        layers.write(HOST_KEY_PATH, pem.as_bytes(), 0o600, false)?;
        let public = format!(
            "{} root@{}\n",
            public_key_line(host_key.public_key()),
            boot.name
        );
        layers.write(
            &format!("{HOST_KEY_PATH}.pub"),
            public.as_bytes(),
            0o644,
            false,
        )?;
        for (user, login) in &boot.logins {
            let keys: String = login
                .keys
                .iter()
                .map(|k| format!("{}\n", public_key_line(k)))
                .collect();
            layers.mkdir(&login.home, 0o755)?;
            layers.mkdir(&format!("{}/.ssh", login.home), 0o700)?;
            layers.write(
                &format!("{}/.ssh/authorized_keys", login.home),
                keys.as_bytes(),
                0o600,
                false,
            )?;
            tracing::debug!(node = %boot.name, user, keys = login.keys.len(), "login user");
        }
        for file in &boot.write_files {
            match layers.write(&file.path, &file.content, file.mode, file.append) {
                Err(NodesError::OutsideOverlay { path }) => {
                    tracing::warn!(node = %boot.name, %path, "write_files entry outside the node's overlays skipped");
                }
                other => other?,
            }
        }
        if let Some(text) = &boot.user_data {
            layers.write(
                "/var/lib/cloud/instance/user-data.txt",
                text.as_bytes(),
                0o600,
                false,
            )?;
        }
        Ok(())
    }

    /// Files that follow the node's identity and this run's stand-in binary.
    fn every_boot(&self, layers: &Layers, boot: &Boot) -> Result<(), NodesError> {
        layers.write(
            "/etc/hostname",
            format!("{}\n", boot.name).as_bytes(),
            0o644,
            false,
        )?;
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let hosts = format!("{hosts}{} {}\n", boot.ip, boot.name);
        layers.write("/etc/hosts", hosts.as_bytes(), 0o644, false)?;
        let instance_id = match &boot.key {
            NodeKey::Instance(id) => serde_json::Value::from(*id),
            NodeKey::Static(_) => serde_json::Value::Null,
        };
        let mut node_json = serde_json::json!({
            "name": boot.name,
            "ip": boot.ip.to_string(),
            "instance_id": instance_id,
            "role_hint": null,
        });
        // Only a node whose private NIC works has a private address.
        if let (Some(ip), Some(map)) = (boot.private_ip, node_json.as_object_mut()) {
            map.insert("private_ip".into(), ip.to_string().into());
        }
        layers.write(
            "/etc/kiwi-sim/node.json",
            format!("{node_json:#}\n").as_bytes(),
            0o644,
            false,
        )?;
        for link in STANDIN_LINKS {
            layers.symlink(link, &self.standin)?;
        }
        layers.symlink(K3S_INSTALL_LINK, &self.standin)?;
        layers.symlink(STANDIN_IN_NODE, &self.standin)?;
        let script = format!(
            "#!/bin/sh\n# kiwi-sim: stands for https://get.k3s.io (see {K3S_INSTALL_LINK}).\n\
             exec {K3S_INSTALL_LINK} \"$@\"\n"
        );
        layers.write(K3S_INSTALL_SCRIPT, script.as_bytes(), 0o755, false)?;
        layers.mkdir(PID_DIR, 0o755)?;
        let hangs = self
            .hanging
            .lock()
            .is_ok_and(|hanging| hanging.contains(&boot.name));
        if hangs {
            layers.write(crate::standin::paths::CLOUD_INIT_HANGS, b"", 0o644, false)?;
        }
        // cloud-init's mark that the first boot's work is done (`cloud-init status` reads it).
        layers.write(
            "/var/lib/cloud/instance/boot-finished",
            b"kiwi-sim\n",
            0o644,
            false,
        )
    }
}

const HOST_KEY_PATH: &str = "/etc/ssh/ssh_host_ed25519_key";
/// Where systemd (and the stand-in `systemctl enable`) records enabled units.
const ENABLED_UNITS_DIR: &str = "/etc/systemd/system/multi-user.target.wants";

/// `ssh-ed25519 AAAA…` without a comment.
fn public_key_line(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn login(user: &str, keys: Vec<PublicKey>) -> Login {
    let shell = if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    Login {
        home: if user == "root" {
            "/root".into()
        } else {
            format!("/home/{user}")
        },
        shell: shell.into(),
        keys,
    }
}

/// A name usable as a hostname and a directory name.
fn hostname(name: &str) -> Result<String, NodesError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(NodesError::InvalidName {
            name: name.to_owned(),
            what: "node name",
        })
    }
}

/// Reads an instance event into a boot description: hostname from the user data (else the
/// display name), login users from `users[]`, and the order's `sshKeys` for the image's
/// default user, as Contabo installs them (unless that user is root and cloud-init disables
/// root, its default once there is a cloud-config).
fn boot_from_event(event: &InstanceEvent) -> Result<Boot, NodesError> {
    let config = match &event.user_data {
        Some(text) => userdata::parse(text).map_err(|source| NodesError::UserData {
            node: event.display_name.clone(),
            source,
        })?,
        None => None,
    };
    let fallback = || {
        let cleaned: String = event
            .display_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let cleaned = cleaned.trim_matches('-').to_owned();
        if cleaned.is_empty() {
            format!("vmi{}", event.instance_id)
        } else {
            cleaned
        }
    };
    let name = match config.as_ref().and_then(|c| c.hostname.clone()) {
        Some(h) => hostname(&h)?,
        None => hostname(&fallback())?,
    };
    let mut logins: HashMap<String, Login> = HashMap::new();
    if let Some(config) = &config {
        if !config.ignored.is_empty() {
            tracing::debug!(node = %name, keys = ?config.ignored, "user data keys a simulated node does not act on");
        }
        for user in &config.users {
            logins.insert(
                user.name.clone(),
                login(&user.name, user.authorized_keys.clone()),
            );
        }
    }
    let root_disabled = config.as_ref().is_some_and(|c| c.disable_root);
    if !(event.default_user == "root" && root_disabled) {
        let keys: Vec<PublicKey> = event
            .ssh_keys
            .iter()
            .filter_map(|k| PublicKey::from_openssh(k.trim()).ok())
            .collect();
        if !keys.is_empty() {
            logins
                .entry(event.default_user.clone())
                .or_insert_with(|| login(&event.default_user, Vec::new()))
                .keys
                .extend(keys);
        }
    }
    let (host_key, write_files, enable_units) = match config {
        Some(c) => (c.host_key, c.write_files, c.enable_units),
        None => (None, Vec::new(), Vec::new()),
    };
    Ok(Boot {
        key: NodeKey::Instance(event.instance_id),
        name,
        ip: event.ip,
        private_ip: event.private_ip.filter(|ip| {
            let ok = ip.is_loopback();
            if !ok {
                tracing::warn!(node = %event.display_name, %ip, "private address is not a loopback address; the simulated node does not bind it (configure the mock's private range, e.g. 127.77.0.0/16)");
            }
            ok
        }),
        logins,
        host_key,
        write_files,
        enable_units,
        user_data: event.user_data.clone(),
    })
}

/// Mounts a throwaway overlay in a throwaway namespace with its layers in `state_dir`, so a
/// state directory overlayfs refuses is reported at start rather than at the first node.
async fn probe_overlay(state_dir: &Path) -> Result<(), NodesError> {
    let probe = state_dir.join(".probe");
    let (upper, work, merged) = (
        probe.join("upper"),
        probe.join("work"),
        probe.join("merged"),
    );
    for dir in [&upper, &work, &merged] {
        std::fs::create_dir_all(dir).map_err(|source| NodesError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let options = format!(
        "lowerdir=/etc,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let out = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["mount", "-t", "overlay", "kiwi-sim-probe", "-o", &options])
        .arg(&merged)
        .output()
        .await
        .map_err(|source| NodesError::Spawn {
            program: "unshare".into(),
            source,
        })?;
    let _ = std::fs::remove_dir_all(&probe);
    if out.status.success() {
        Ok(())
    } else {
        Err(NodesError::Probe {
            state_dir: state_dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
