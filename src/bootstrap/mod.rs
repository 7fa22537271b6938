//! Clusters: bootstrapping k3s servers, joining k3s servers and agents and
//! kubeadm workers or control-plane nodes, keeping labels and taints true,
//! and draining and deleting nodes that go — over SSH, exactly as
//! `docs/node-contract.md` describes.
//!
//! [`SshNodeExecutor`] is the [`NodeExecutor`] that `apply` hands node steps
//! to. It reaches nodes through a [`NodeConnector`] (OpenSSH in production, a
//! fake in unit tests) and keeps join tokens in memory only, for the run.

pub mod k3s;
pub mod kubeadm;
pub mod kubectl;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

use crate::apply::{ApplyError, NodeExecutor, NodeStepDone};
use crate::inventory::{ClusterKind, Desired, PoolRole, Taint, SERVER_POOL};
use crate::plan::{K3sJoin, KubeadmJoin, KubeadmRole, Node, Step, StepKind};
use crate::secret::Secret;
use crate::ssh::{Output, RemoteCommand, RemoteExec, SshError};

use kubectl::Kubectl;

/// Opens a [`RemoteExec`] to a node.
pub trait NodeConnector: Send + Sync {
    /// The connection type.
    type Exec: RemoteExec;

    /// Connects to `node` at `address`, checking its pinned host key.
    fn connect(
        &self,
        node: &str,
        address: &str,
    ) -> impl Future<Output = Result<Self::Exec, SshError>> + Send;

    /// Waits until a node that was just started answers with its pinned
    /// key and has finished its first boot, retrying until `deadline`.
    fn wait_ready(
        &self,
        node: &str,
        address: &str,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<(), SshError>> + Send;
}

/// Time limits of cluster work.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapSettings {
    /// How long a node may take to become `Ready` after it joined.
    pub ready_timeout: Duration,
    /// Pause between readiness polls.
    pub poll: Duration,
    /// Limit of an install or join command.
    pub install_timeout: Duration,
    /// Limit of any other command.
    pub command_timeout: Duration,
    /// How long a new node may take to answer over SSH and finish its
    /// first boot (package installs on kubeadm nodes take minutes).
    pub first_boot_timeout: Duration,
    /// Time limit of `kubectl drain` (`--timeout`): a PodDisruptionBudget
    /// that never allows an eviction fails the drain after this.
    pub drain_timeout: Duration,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(600),
            poll: Duration::from_secs(3),
            install_timeout: Duration::from_secs(900),
            command_timeout: Duration::from_secs(120),
            first_boot_timeout: Duration::from_secs(30 * 60),
            drain_timeout: Duration::from_secs(300),
        }
    }
}

/// Failures of cluster work; each names the node.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The node could not be reached or refused us.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A command exited non-zero.
    #[error("`{command}` on {node} failed with status {status:?}: {stderr}")]
    Command {
        /// Node.
        node: String,
        /// The command (never holds a secret).
        command: String,
        /// Exit status.
        status: Option<i32>,
        /// Last lines of stderr, secrets redacted.
        stderr: String,
    },
    /// A node did not become `Ready` in time.
    #[error(
        "{node} did not become Ready within {timeout:?}; last lines of its {unit} log:\n{log}"
    )]
    NeverReady {
        /// Node.
        node: String,
        /// Limit.
        timeout: Duration,
        /// systemd unit whose log is shown.
        unit: String,
        /// The log tail (or why it could not be read).
        log: String,
    },
    /// A node answered something that does not fit the contract.
    #[error("{node}: {what}")]
    Protocol {
        /// Node.
        node: String,
        /// What was wrong.
        what: String,
    },
    /// A value kiwi-infra was about to write to a node (a label, a
    /// version) does not fit its grammar; nothing was written.
    #[error("refusing to configure {node}: {what}")]
    Refused {
        /// Node.
        node: String,
        /// What does not fit, and what was expected.
        what: String,
    },
    /// No address is known for a node.
    #[error("no IPv4 address is known for {node}; is its instance running?")]
    NoAddress {
        /// Node.
        node: String,
    },
    /// No node of the cluster can run kubectl.
    #[error("no control node of cluster {cluster} answers; tried {tried}")]
    NoControlNode {
        /// Cluster.
        cluster: String,
        /// Nodes tried.
        tried: String,
    },
}

/// How to reach one cluster's API.
#[derive(Debug, Clone)]
struct ClusterAccess {
    kubectl: Kubectl,
    /// `host:port` of a kubeadm cluster's API server.
    api_endpoint: Option<String>,
    /// Nodes that can run kubectl, in order of preference.
    control_nodes: Vec<String>,
}

/// Tokens of one k3s cluster, read from its first server.
#[derive(Debug, Clone)]
struct K3sTokens {
    server: Secret,
    agent: Secret,
}

/// A value made once by whichever task needs it first; the others wait
/// for it (and a failed attempt leaves it to the next).
type Shared<T> = Arc<OnceCell<T>>;

/// Carries out node steps over SSH.
pub struct SshNodeExecutor<C: NodeConnector> {
    connector: C,
    clusters: BTreeMap<String, ClusterAccess>,
    addresses: Mutex<BTreeMap<String, String>>,
    /// One connection per node for the whole run (OpenSSH multiplexes
    /// every command over it). Each node has its own cell, so connecting to
    /// one node never waits for another's handshake.
    connections: Mutex<BTreeMap<String, Shared<Arc<C::Exec>>>>,
    /// Nodes whose kept connection must not be used again (reinstalled).
    stale: Mutex<BTreeSet<String>>,
    /// Connections replaced during the run (a reinstalled node, a new
    /// address): no longer used, but still closed by [`Self::close`], so
    /// that no SSH master outlives the command.
    retired: Mutex<Vec<Shared<Arc<C::Exec>>>>,
    /// Join tokens per k3s cluster, read once per cluster (and per cluster
    /// only: one cluster's read does not hold up another's joins).
    tokens: Mutex<BTreeMap<String, Shared<K3sTokens>>>,
    settings: BootstrapSettings,
}

impl<C: NodeConnector> std::fmt::Debug for SshNodeExecutor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshNodeExecutor")
            .field("clusters", &self.clusters)
            .field("addresses", &self.addresses)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<C: NodeConnector> SshNodeExecutor<C> {
    /// An executor for the clusters of `desired`. `addresses` maps node
    /// names to IPv4 addresses known so far (running instances, the Core
    /// control plane); [`NodeExecutor::learn_address`] adds new ones.
    pub fn new(
        connector: C,
        desired: &Desired,
        addresses: BTreeMap<String, String>,
        settings: BootstrapSettings,
    ) -> Self {
        let mut known = addresses;
        let clusters = desired
            .clusters
            .iter()
            .map(|c| {
                let access = match &c.kind {
                    ClusterKind::Kubeadm {
                        control_plane,
                        api_endpoint,
                        ..
                    } => {
                        // The inventory's address of a control-plane node
                        // wins over anything an API answer says.
                        for cp in control_plane {
                            known.insert(cp.name.clone(), cp.address.to_string());
                        }
                        ClusterAccess {
                            kubectl: Kubectl::Kubeadm,
                            api_endpoint: Some(api_endpoint.to_string()),
                            control_nodes: control_plane.iter().map(|n| n.name.clone()).collect(),
                        }
                    }
                    ClusterKind::K3s { .. } => ClusterAccess {
                        kubectl: Kubectl::K3s,
                        api_endpoint: None,
                        control_nodes: c
                            .pools
                            .iter()
                            .filter(|p| p.role == PoolRole::K3sServer)
                            .flat_map(|p| {
                                (1..=p.count)
                                    .map(|i| crate::inventory::slot_name(&c.name, &p.name, i))
                            })
                            .collect(),
                    },
                };
                (c.name.clone(), access)
            })
            .collect();
        Self {
            connector,
            clusters,
            addresses: Mutex::new(known),
            connections: Mutex::new(BTreeMap::new()),
            stale: Mutex::new(BTreeSet::new()),
            retired: Mutex::new(Vec::new()),
            tokens: Mutex::new(BTreeMap::new()),
            settings,
        }
    }

    fn address(&self, node: &str) -> Result<String, BootstrapError> {
        self.addresses
            .lock()
            .ok()
            .and_then(|a| a.get(node).cloned())
            .ok_or_else(|| BootstrapError::NoAddress {
                node: node.to_string(),
            })
    }

    /// Closes every connection this executor opened (at the end of a run),
    /// replaced ones included.
    pub async fn close(&self) {
        let mut cells: Vec<Shared<Arc<C::Exec>>> = self
            .connections
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
            .into_values()
            .collect();
        if let Ok(mut retired) = self.retired.lock() {
            cells.append(&mut retired);
        }
        let open: Vec<Arc<C::Exec>> = cells
            .into_iter()
            .filter_map(|cell| cell.get().cloned())
            .collect();
        futures::future::join_all(open.iter().map(|exec| exec.close())).await;
    }

    /// Keeps a connection that is replaced, to be closed at the end.
    fn retire(&self, cell: Option<Shared<Arc<C::Exec>>>) {
        if let (Some(cell), Ok(mut retired)) = (cell, self.retired.lock()) {
            retired.push(cell);
        }
    }

    async fn connect(&self, node: &str) -> Result<Arc<C::Exec>, BootstrapError> {
        let cell = {
            let mut connections =
                self.connections
                    .lock()
                    .map_err(|_| BootstrapError::Protocol {
                        node: node.to_string(),
                        what: "the connection table is poisoned".into(),
                    })?;
            if self.stale.lock().is_ok_and(|mut s| s.remove(node)) {
                self.retire(connections.remove(node));
            }
            Arc::clone(connections.entry(node.to_string()).or_default())
        };
        let address = self.address(node)?;
        cell.get_or_try_init(|| async {
            Ok::<_, BootstrapError>(Arc::new(self.connector.connect(node, &address).await?))
        })
        .await
        .cloned()
    }

    /// Runs `command`; a non-zero exit is an error carrying its stderr with
    /// `secrets` redacted.
    async fn run(
        &self,
        exec: &C::Exec,
        command: &str,
        timeout: Duration,
        secrets: &[&Secret],
    ) -> Result<Output, BootstrapError> {
        let out = exec
            .run(&RemoteCommand {
                command: command.to_string(),
                stdin: None,
                timeout,
            })
            .await?;
        if out.success() {
            return Ok(out);
        }
        Err(BootstrapError::Command {
            node: exec.node().to_string(),
            command: command.to_string(),
            status: out.status,
            stderr: crate::secret::redact::tail(
                &out.stderr,
                &secrets
                    .iter()
                    .map(|s| s.expose().as_bytes())
                    .collect::<Vec<_>>(),
            ),
        })
    }

    /// Reads a file through sudo; its content is treated as a secret.
    async fn read_secret(&self, exec: &C::Exec, path: &str) -> Result<Secret, BootstrapError> {
        let out = self
            .run(
                exec,
                &format!("sudo cat {path}"),
                self.settings.command_timeout,
                &[],
            )
            .await?;
        Ok(Secret::new(out.stdout.trim().to_string()))
    }

    /// `cloud-init status --wait`, as long as a first boot may take: a
    /// node whose first boot hangs fails its step after that, whichever run
    /// finds it (not after the much longer install limit).
    async fn wait_for_first_boot(&self, exec: &C::Exec) -> Result<(), BootstrapError> {
        self.run(
            exec,
            "cloud-init status --wait",
            self.settings.first_boot_timeout,
            &[],
        )
        .await
        .map(drop)
    }

    /// The cluster's nodes, through the first control node that answers.
    pub async fn nodes_of(&self, cluster: &str) -> Result<Vec<Node>, BootstrapError> {
        let access = self.access(cluster)?;
        let mut tried = Vec::new();
        for node in &access.control_nodes {
            let Ok(exec) = self.connect(node).await else {
                tried.push(node.clone());
                continue;
            };
            match self
                .run(
                    &exec,
                    &access.kubectl.get_nodes(),
                    self.settings.command_timeout,
                    &[],
                )
                .await
            {
                Ok(out) => {
                    return kubectl::parse_node_list(&out.stdout).map_err(|what| {
                        BootstrapError::Protocol {
                            node: node.clone(),
                            what,
                        }
                    })
                }
                Err(_) => tried.push(node.clone()),
            }
        }
        Err(BootstrapError::NoControlNode {
            cluster: cluster.to_string(),
            tried: tried.join(", "),
        })
    }

    /// True when `node` answers over SSH and `trace` (a file a join
    /// leaves behind) does not exist on it. Unreachable means not pristine:
    /// nothing is assumed.
    pub async fn is_pristine(&self, node: &str, trace: &str) -> bool {
        let Ok(exec) = self.connect(node).await else {
            return false;
        };
        let probe = RemoteCommand {
            command: format!("sudo test -e {trace}"),
            stdin: None,
            timeout: self.settings.command_timeout,
        };
        // `test -e` exits 1 when the file is absent.
        matches!(exec.run(&probe).await, Ok(out) if out.status == Some(1))
    }

    /// The admin kubeconfig held by the first control node that answers,
    /// and the API server address it should point at from outside.
    pub async fn admin_kubeconfig(
        &self,
        cluster: &str,
    ) -> Result<(Secret, String), BootstrapError> {
        let access = self.access(cluster)?.clone();
        let mut tried = Vec::new();
        for node in &access.control_nodes {
            let Ok(exec) = self.connect(node).await else {
                tried.push(node.clone());
                continue;
            };
            let (path, server) = match &access.kubectl {
                Kubectl::K3s => (
                    "/etc/rancher/k3s/k3s.yaml",
                    format!("https://{}:6443", self.address(node)?),
                ),
                Kubectl::Kubeadm => (
                    "/etc/kubernetes/admin.conf",
                    format!(
                        "https://{}",
                        access.api_endpoint.clone().unwrap_or_default()
                    ),
                ),
            };
            match self.read_secret(&exec, path).await {
                Ok(text) => return Ok((text, server)),
                Err(_) => tried.push(node.clone()),
            }
        }
        Err(BootstrapError::NoControlNode {
            cluster: cluster.to_string(),
            tried: tried.join(", "),
        })
    }

    fn access(&self, cluster: &str) -> Result<&ClusterAccess, BootstrapError> {
        self.clusters
            .get(cluster)
            .ok_or_else(|| BootstrapError::Protocol {
                node: cluster.to_string(),
                what: "the cluster is not in the inventory".into(),
            })
    }

    /// Polls `via`'s kubectl until `node` is Ready; on timeout, shows the
    /// last lines of the node's `unit` log.
    async fn wait_ready(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
        node: &str,
        unit: &str,
    ) -> Result<(), BootstrapError> {
        let now = Instant::now();
        // A limit too long for the clock means "no limit", never a panic.
        let deadline = now
            .checked_add(self.settings.ready_timeout)
            .or_else(|| now.checked_add(crate::apply::wait::FAR_FUTURE))
            .unwrap_or(now);
        loop {
            if let Ok(out) = self
                .run(
                    via,
                    &kubectl.get_nodes(),
                    self.settings.command_timeout,
                    &[],
                )
                .await
            {
                if let Ok(nodes) = kubectl::parse_node_list(&out.stdout) {
                    if nodes.iter().any(|n| n.name.0 == node && n.ready) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                let log = self.log_tail(node, unit).await;
                return Err(BootstrapError::NeverReady {
                    node: node.to_string(),
                    timeout: self.settings.ready_timeout,
                    unit: unit.to_string(),
                    log,
                });
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Records on a node that just joined which labels it registered with
    /// (they are kiwi-infra's), so a later plan can remove one the
    /// inventory drops.
    async fn record_joined_labels(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
        node: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), BootstrapError> {
        self.run(
            via,
            &kubectl.record_labels(node, labels.keys()),
            self.settings.command_timeout,
            &[],
        )
        .await
        .map(drop)
    }

    async fn log_tail(&self, node: &str, unit: &str) -> String {
        let command = format!("sudo journalctl -u {unit} -n 30 --no-pager");
        match self.connect(node).await {
            Ok(exec) => match self
                .run(&exec, &command, self.settings.command_timeout, &[])
                .await
            {
                Ok(out) => crate::secret::redact::tail(&out.stdout, &[]),
                Err(e) => format!("(could not read the log: {e})"),
            },
            Err(e) => format!("(could not reach the node: {e})"),
        }
    }

    // ----- k3s ---------------------------------------------------------------

    async fn bootstrap_k3s(&self, cluster: &str, join: &K3sJoin) -> Result<String, BootstrapError> {
        let node = join.node.0.as_str();
        let ip = self.address(node)?;
        let exec = self.connect(node).await?;
        self.wait_for_first_boot(&exec).await?;
        let configured = exec
            .run(&RemoteCommand {
                command: format!("sudo test -e {}", k3s::CONFIG_PATH),
                stdin: None,
                timeout: self.settings.command_timeout,
            })
            .await?
            .success();
        let what = if configured {
            // A rerun after a crash: never choose new tokens for a cluster
            // that may already exist; make sure k3s runs and read them back.
            self.run(
                &exec,
                "sudo systemctl start k3s",
                self.settings.command_timeout,
                &[],
            )
            .await?;
            "was already initialised; k3s is running"
        } else {
            let token = random_token();
            let agent_token = random_token();
            let config = k3s::render_config(&k3s::NodeConfig {
                node_name: node,
                node_ip: &ip,
                role: k3s::Role::FirstServer {
                    token: token.clone(),
                    agent_token: agent_token.clone(),
                },
                labels: &join.labels,
                taints: &join.taints,
            })
            .map_err(|what| refused(node, what))?;
            self.upload(&exec, k3s::CONFIG_PATH, &config).await?;
            self.install_k3s(&exec, &join.version, "server", &[&token, &agent_token])
                .await?;
            "initialised the cluster (embedded etcd)"
        };
        self.wait_ready(Kubectl::K3s, &exec, node, "k3s").await?;
        self.record_joined_labels(Kubectl::K3s, &exec, node, &join.labels)
            .await?;
        let tokens = self.read_tokens(&exec).await?;
        if let Ok(mut known) = self.tokens.lock() {
            known.insert(
                cluster.to_string(),
                Arc::new(OnceCell::new_with(Some(tokens))),
            );
        }
        Ok(format!("{node} {what}; it is Ready"))
    }

    /// Refuses to join `node` while the cluster lists a node object of
    /// that name. A join never deletes one: a Ready node, or one whose
    /// machine still runs, must not be evicted without a drain, and the
    /// plan deletes a stale one in a step of its own
    /// ([`StepKind::DeleteStaleNode`]), gated like every destructive step.
    async fn refuse_listed_node(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
        node: &str,
    ) -> Result<(), BootstrapError> {
        let listed = self.list_nodes(kubectl, via).await?;
        match listed.iter().find(|n| n.name.0 == node) {
            None => Ok(()),
            Some(n) => Err(BootstrapError::Protocol {
                node: node.to_string(),
                what: format!(
                    "the cluster already lists a node of this name ({}); not joined. Run \
                     `kiwi-infra plan`: a stale node object is deleted by a step of its own \
                     (with --allow-destroy), a Ready one is never replaced",
                    if n.ready { "Ready" } else { "not Ready" }
                ),
            }),
        }
    }

    /// The cluster's nodes as `via` lists them.
    async fn list_nodes(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
    ) -> Result<Vec<Node>, BootstrapError> {
        let out = self
            .run(
                via,
                &kubectl.get_nodes(),
                self.settings.command_timeout,
                &[],
            )
            .await?;
        kubectl::parse_node_list(&out.stdout).map_err(|what| BootstrapError::Protocol {
            node: via.node().to_string(),
            what,
        })
    }

    /// Deletes the node object `node`, which the plan found not Ready and
    /// whose machine is gone or being reinstalled, so that the slot's new
    /// machine can join under its name. Checked again here: a node that has
    /// become Ready since the plan is left alone.
    async fn delete_stale_node(&self, cluster: &str, node: &str) -> Result<String, BootstrapError> {
        let access = self.removal_access(cluster);
        let (via, nodes) = self.control_for_removal(cluster, &access, node).await?;
        match nodes.iter().find(|n| n.name.0 == node) {
            None => Ok(format!(
                "{node} is not a node of cluster {cluster} (any more)"
            )),
            Some(n) if n.ready => Err(BootstrapError::Protocol {
                node: node.to_string(),
                what: "became Ready since the plan was made; its node object is not deleted"
                    .to_string(),
            }),
            Some(_) => {
                self.run(
                    &via,
                    &access.kubectl.delete_node(node),
                    self.settings.command_timeout,
                    &[],
                )
                .await?;
                Ok(format!(
                    "stale node object {node} deleted (through {})",
                    via.node()
                ))
            }
        }
    }

    async fn read_tokens(&self, server: &C::Exec) -> Result<K3sTokens, BootstrapError> {
        let server_token = self.read_secret(server, k3s::SERVER_TOKEN_PATH).await?;
        let agent = self.read_secret(server, k3s::AGENT_TOKEN_PATH).await?;
        for (token, path) in [
            (&server_token, k3s::SERVER_TOKEN_PATH),
            (&agent, k3s::AGENT_TOKEN_PATH),
        ] {
            k3s::check_secure_token(token, path).map_err(|what| BootstrapError::Protocol {
                node: server.node().to_string(),
                what,
            })?;
        }
        Ok(K3sTokens {
            server: server_token,
            agent,
        })
    }

    async fn tokens_of(&self, cluster: &str, via: &C::Exec) -> Result<K3sTokens, BootstrapError> {
        let cell = match self.tokens.lock() {
            Ok(mut tokens) => Arc::clone(tokens.entry(cluster.to_string()).or_default()),
            Err(_) => Arc::new(OnceCell::new()),
        };
        cell.get_or_try_init(|| self.read_tokens(via))
            .await
            .cloned()
    }

    async fn join_k3s(
        &self,
        cluster: &str,
        join: &K3sJoin,
        as_server: bool,
    ) -> Result<String, BootstrapError> {
        let node = join.node.0.as_str();
        let via_name =
            join.via
                .as_ref()
                .map(|v| v.0.clone())
                .ok_or_else(|| BootstrapError::Protocol {
                    node: node.to_string(),
                    what: "a join needs a server to join through".into(),
                })?;
        // The new node first: its first boot may take long, and nothing
        // that can expire (the server's session, idle for minutes) is held
        // across it.
        let ip = self.address(node)?;
        let exec = self.connect(node).await?;
        self.wait_for_first_boot(&exec).await?;
        let via_ip = self.address(&via_name)?;
        let via = self.connect(&via_name).await?;
        let tokens = self.tokens_of(cluster, &via).await?;
        let server_url = format!("https://{via_ip}:6443");
        let (role, token, unit) = if as_server {
            let t = tokens.server.clone();
            (
                k3s::Role::Server {
                    server_url,
                    token: t.clone(),
                },
                t,
                "k3s",
            )
        } else {
            let t = tokens.agent.clone();
            (
                k3s::Role::Agent {
                    server_url,
                    token: t.clone(),
                },
                t,
                "k3s-agent",
            )
        };
        let exec_kind = role.exec();
        let config = k3s::render_config(&k3s::NodeConfig {
            node_name: node,
            node_ip: &ip,
            role,
            labels: &join.labels,
            taints: &join.taints,
        })
        .map_err(|what| refused(node, what))?;
        self.refuse_listed_node(Kubectl::K3s, &via, node).await?;
        self.upload(&exec, k3s::CONFIG_PATH, &config).await?;
        self.install_k3s(&exec, &join.version, exec_kind, &[&token])
            .await?;
        self.wait_ready(Kubectl::K3s, &via, node, unit).await?;
        self.record_joined_labels(Kubectl::K3s, &via, node, &join.labels)
            .await?;
        Ok(format!(
            "{node} joined as k3s {exec_kind} through {via_name}; it is Ready"
        ))
    }

    async fn install_k3s(
        &self,
        exec: &C::Exec,
        version: &str,
        role: &str,
        secrets: &[&Secret],
    ) -> Result<(), BootstrapError> {
        // The install script puts the version into download URLs: only a
        // release name of the grammar `validate` holds the inventory to.
        let version: crate::inventory::K3sVersion =
            version.parse().map_err(|what| refused(exec.node(), what))?;
        let command = format!(
            "sudo env INSTALL_K3S_VERSION={} INSTALL_K3S_EXEC={role} sh {}",
            kubectl::quote(version.as_str()),
            k3s::INSTALL_SCRIPT
        );
        self.run(exec, &command, self.settings.install_timeout, secrets)
            .await
            .map(drop)
    }

    async fn upload(
        &self,
        exec: &C::Exec,
        path: &str,
        text: &Secret,
    ) -> Result<(), BootstrapError> {
        let bytes = Secret::new(text.expose().as_bytes().to_vec());
        Ok(exec.upload(path, &bytes, 0o600).await?)
    }

    // ----- kubeadm -----------------------------------------------------------

    async fn kubeadm_join(&self, join: &KubeadmJoin) -> Result<String, BootstrapError> {
        let node = join.node.0.as_str();
        let via_name = join.via.0.as_str();
        // The new node first: a first boot installs packages and may take
        // longer than the token's 15 minutes or the control node's idle
        // session; both are taken only once it is done.
        let ip = self.address(node)?;
        let exec = self.connect(node).await?;
        self.wait_for_first_boot(&exec).await?;
        let via = self.connect(via_name).await?;
        let printed = self
            .run(
                &via,
                kubeadm::CREATE_TOKEN,
                self.settings.command_timeout,
                &[],
            )
            .await?;
        let creds = kubeadm::parse_join_command(&Secret::new(printed.stdout)).map_err(|what| {
            BootstrapError::Protocol {
                node: via_name.to_string(),
                what,
            }
        })?;
        let certificate_key = match join.role {
            KubeadmRole::Worker => None,
            KubeadmRole::ControlPlane => {
                let out = self
                    .run(
                        &via,
                        kubeadm::UPLOAD_CERTS,
                        self.settings.command_timeout,
                        &[],
                    )
                    .await?;
                Some(
                    kubeadm::parse_certificate_key(&Secret::new(out.stdout)).map_err(|what| {
                        BootstrapError::Protocol {
                            node: via_name.to_string(),
                            what,
                        }
                    })?,
                )
            }
        };
        let config = kubeadm::render_join_configuration(
            &kubeadm::JoinSpec {
                node_name: node,
                node_ip: &ip,
                api_endpoint: &join.api_endpoint,
                labels: &join.labels,
                taints: &join.taints,
                certificate_key: certificate_key.as_ref(),
            },
            &creds,
        )
        .map_err(|what| refused(node, what))?;
        self.refuse_listed_node(Kubectl::Kubeadm, &via, node)
            .await?;
        self.upload(&exec, kubeadm::JOIN_CONFIG_PATH, &config)
            .await?;
        let mut secrets = vec![&creds.token];
        if let Some(key) = &certificate_key {
            secrets.push(key);
        }
        let joined = self
            .run(
                &exec,
                &format!("sudo kubeadm join --config {}", kubeadm::JOIN_CONFIG_PATH),
                self.settings.install_timeout,
                &secrets,
            )
            .await;
        // The file holds the token: remove it whatever the join did.
        let cleanup = self
            .run(
                &exec,
                &format!("sudo rm -f {}", kubeadm::JOIN_CONFIG_PATH),
                self.settings.command_timeout,
                &[],
            )
            .await;
        joined?;
        cleanup?;
        self.wait_ready(Kubectl::Kubeadm, &via, node, "kubelet")
            .await?;
        self.record_joined_labels(Kubectl::Kubeadm, &via, node, &join.labels)
            .await?;
        let role = match join.role {
            KubeadmRole::Worker => "worker",
            KubeadmRole::ControlPlane => "control-plane node",
        };
        Ok(format!(
            "{node} joined the cluster as {role} through {via_name}; it is Ready"
        ))
    }

    // ----- labels and taints -------------------------------------------------

    async fn change_node(
        &self,
        cluster: &str,
        node: &str,
        change: &Change<'_>,
    ) -> Result<String, BootstrapError> {
        let access = self.access(cluster)?.clone();
        let command = match change {
            Change::SetLabel(k, v) => access.kubectl.set_label(node, k, v),
            Change::RemoveLabel(k) => access.kubectl.remove_label(node, k),
            Change::SetTaint(t) => access.kubectl.set_taint(node, t),
            Change::RemoveTaint(t) => access.kubectl.remove_taint(node, t),
        };
        // On k3s the node's own config must follow, so reach the node
        // first: a node that fails its host-key check gets no change at all,
        // not a cluster-side half of one.
        if access.kubectl == Kubectl::K3s {
            self.connect(node).await?;
        }
        let mut done = false;
        let mut tried = Vec::new();
        for control in &access.control_nodes {
            let Ok(exec) = self.connect(control).await else {
                tried.push(control.clone());
                continue;
            };
            self.run(&exec, &command, self.settings.command_timeout, &[])
                .await?;
            done = true;
            break;
        }
        if !done {
            return Err(BootstrapError::NoControlNode {
                cluster: cluster.to_string(),
                tried: tried.join(", "),
            });
        }
        if access.kubectl == Kubectl::K3s {
            self.keep_k3s_config_in_step(node, change).await?;
        }
        Ok(format!("{node}: {}", change.describe()))
    }

    /// Writes kiwi-infra's record of the labels it set on `node` (the
    /// annotation [`crate::plan::MANAGED_LABELS_ANNOTATION`]) through the
    /// first control node that answers.
    async fn record_labels<'a>(
        &self,
        cluster: &str,
        node: &str,
        keys: impl IntoIterator<Item = &'a String> + Clone,
    ) -> Result<String, BootstrapError> {
        let access = self.access(cluster)?.clone();
        let command = access.kubectl.record_labels(node, keys.clone());
        let mut tried = Vec::new();
        for control in &access.control_nodes {
            let Ok(exec) = self.connect(control).await else {
                tried.push(control.clone());
                continue;
            };
            self.run(&exec, &command, self.settings.command_timeout, &[])
                .await?;
            let count = keys.into_iter().count();
            return Ok(format!(
                "{node}: recorded the {count} labels kiwi-infra sets"
            ));
        }
        Err(BootstrapError::NoControlNode {
            cluster: cluster.to_string(),
            tried: tried.join(", "),
        })
    }

    /// Rewrites the node's `config.yaml` so a k3s restart registers the
    /// same labels and taints as the cluster now has.
    async fn keep_k3s_config_in_step(
        &self,
        node: &str,
        change: &Change<'_>,
    ) -> Result<(), BootstrapError> {
        let exec = self.connect(node).await?;
        let config = self.read_secret(&exec, k3s::CONFIG_PATH).await?;
        let (mut labels, mut taints) = k3s_lists(&config);
        match change {
            Change::SetLabel(k, v) => {
                labels.insert((*k).to_string(), (*v).to_string());
            }
            Change::RemoveLabel(k) => {
                labels.remove(*k);
            }
            Change::SetTaint(t) => {
                taints.retain(|x| !(x.key == t.key && x.effect == t.effect));
                taints.push((*t).clone());
            }
            Change::RemoveTaint(t) => taints.retain(|x| x != *t),
        }
        let updated = k3s::with_labels_and_taints(&config, &labels, &taints)
            .map_err(|what| refused(node, what))?;
        self.upload(&exec, k3s::CONFIG_PATH, &updated).await
    }
}

/// The prefix of a cluster's k3s server node names.
/// True when `node` is a k3s server slot of `cluster` (exactly
/// `kiwi-<cluster>-server-<NN>`): a prefix test would take the nodes of a
/// cluster named `<cluster>-server` for this one's.
fn is_server_of(cluster: &str, node: &str) -> bool {
    crate::inventory::slot_pool(node, cluster).is_some_and(|pool| pool == SERVER_POOL)
}

impl<C: NodeConnector> SshNodeExecutor<C> {
    /// How to reach `cluster` to remove nodes: as for every other step when
    /// the inventory has it; for a cluster removed from the inventory (a
    /// customer gone), through its k3s servers, lowest-numbered first, as
    /// the plan removes the highest-numbered first.
    fn removal_access(&self, cluster: &str) -> ClusterAccess {
        if let Some(access) = self.clusters.get(cluster) {
            return access.clone();
        }
        let servers = self
            .addresses
            .lock()
            .map(|a| {
                a.keys()
                    .filter(|n| is_server_of(cluster, n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        ClusterAccess {
            kubectl: Kubectl::K3s,
            api_endpoint: None,
            control_nodes: servers,
        }
    }

    /// The first control node that lists the cluster's nodes, with the
    /// list. The node being removed is asked last: it is the only choice
    /// only when it is the last server of a cluster that goes entirely.
    async fn control_for_removal(
        &self,
        cluster: &str,
        access: &ClusterAccess,
        removing: &str,
    ) -> Result<(Arc<C::Exec>, Vec<Node>), BootstrapError> {
        let mut candidates: Vec<&String> = access
            .control_nodes
            .iter()
            .filter(|c| c.as_str() != removing)
            .collect();
        candidates.extend(access.control_nodes.iter().filter(|c| *c == removing));
        let mut tried = Vec::new();
        for control in candidates {
            let listed = match self.connect(control).await {
                Ok(exec) => self
                    .run(
                        &exec,
                        &access.kubectl.get_nodes(),
                        self.settings.command_timeout,
                        &[],
                    )
                    .await
                    .map(|out| (exec, out)),
                Err(e) => Err(e),
            };
            match listed {
                Ok((exec, out)) => {
                    let nodes = kubectl::parse_node_list(&out.stdout).map_err(|what| {
                        BootstrapError::Protocol {
                            node: control.clone(),
                            what,
                        }
                    })?;
                    return Ok((exec, nodes));
                }
                Err(e) => {
                    tracing::debug!(%control, error = %e, "control node does not answer");
                    tried.push(control.clone());
                }
            }
        }
        Err(BootstrapError::NoControlNode {
            cluster: cluster.to_string(),
            tried: tried.join(", "),
        })
    }

    /// Cordons and drains `node` through a control node; a node that is
    /// not in the cluster (any more) is left as it is.
    async fn drain_node(&self, cluster: &str, node: &str) -> Result<String, BootstrapError> {
        let access = self.removal_access(cluster);
        let (via, nodes) = self.control_for_removal(cluster, &access, node).await?;
        if !nodes.iter().any(|n| n.name.0 == node) {
            return Ok(format!(
                "{node} is not a node of cluster {cluster}; nothing to drain"
            ));
        }
        let timeout = self.settings.drain_timeout;
        self.run(
            &via,
            &access.kubectl.drain(node, timeout),
            timeout + self.settings.command_timeout,
            &[],
        )
        .await?;
        Ok(format!(
            "{node} cordoned and drained (through {})",
            via.node()
        ))
    }

    /// Deletes the node object of `node` (for a k3s server, k3s removes its
    /// etcd member with it), then disables its service on the node itself,
    /// so that it cannot register again, not even after a reboot before its
    /// instance stops. The last server of a k3s cluster is not deleted
    /// while other nodes (agents) still point at it.
    async fn delete_node(&self, cluster: &str, node: &str) -> Result<String, BootstrapError> {
        let access = self.removal_access(cluster);
        let (via, nodes) = self.control_for_removal(cluster, &access, node).await?;
        let is_server = is_server_of(cluster, node);
        if access.kubectl == Kubectl::K3s && is_server {
            let others: Vec<&str> = nodes
                .iter()
                .map(|n| n.name.0.as_str())
                .filter(|n| *n != node)
                .collect();
            if !others.is_empty() && !others.iter().any(|n| is_server_of(cluster, n)) {
                return Err(BootstrapError::Protocol {
                    node: node.to_string(),
                    what: format!(
                        "is the last k3s server of cluster {cluster} and {} still point at it; \
                         not deleted (remove those first)",
                        others.join(", ")
                    ),
                });
            }
        }
        let deleted = if nodes.iter().any(|n| n.name.0 == node) {
            self.run(
                &via,
                &access.kubectl.delete_node(node),
                self.settings.command_timeout,
                &[],
            )
            .await?;
            format!("node {node} deleted (through {})", via.node())
        } else {
            format!("{node} is not a node of cluster {cluster} (any more)")
        };
        let unit = match access.kubectl {
            Kubectl::K3s if is_server => "k3s",
            Kubectl::K3s => "k3s-agent",
            Kubectl::Kubeadm => "kubelet",
        };
        let stopped = self.disable_service(node, unit).await;
        Ok(format!("{deleted}; {stopped}"))
    }

    /// `systemctl disable --now UNIT` on the node, if it answers. Its
    /// instance is being cancelled, so failing here fails nothing: the
    /// outcome says what happened.
    async fn disable_service(&self, node: &str, unit: &str) -> String {
        let command = format!("sudo systemctl disable --now {unit}");
        let result = match self.connect(node).await {
            Ok(exec) => self
                .run(&exec, &command, self.settings.command_timeout, &[])
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => format!("{unit} stopped and disabled on {node}"),
            Err(e) => {
                tracing::warn!(%node, error = %e, "could not stop the node's service");
                format!("{unit} not stopped on {node}, which does not answer ({e})")
            }
        }
    }
}

/// One label or taint change.
#[derive(Debug)]
enum Change<'a> {
    SetLabel(&'a str, &'a str),
    RemoveLabel(&'a str),
    SetTaint(&'a Taint),
    RemoveTaint(&'a Taint),
}

impl Change<'_> {
    fn describe(&self) -> String {
        match self {
            Self::SetLabel(k, v) => format!("label {k}={v} set"),
            Self::RemoveLabel(k) => format!("label {k} removed"),
            Self::SetTaint(t) => format!("taint {t} set"),
            Self::RemoveTaint(t) => format!("taint {t} removed"),
        }
    }
}

/// The `node-label` and `node-taint` lists of a config kiwi-infra wrote.
fn k3s_lists(config: &Secret) -> (BTreeMap<String, String>, Vec<Taint>) {
    let mut labels = BTreeMap::new();
    let mut taints = Vec::new();
    let mut section = "";
    for line in config.expose().lines() {
        if !line.starts_with(' ') {
            section = line.split(':').next().unwrap_or("");
            continue;
        }
        let Some(item) = line.trim().strip_prefix("- ") else {
            continue;
        };
        // Items are YAML double-quoted scalars (see `crate::yaml`).
        let value: String = serde_norway::from_str(item).unwrap_or_else(|_| item.to_string());
        match section {
            "node-label" => {
                if let Some((k, v)) = value.split_once('=') {
                    labels.insert(k.to_string(), v.to_string());
                }
            }
            "node-taint" => {
                if let Ok(t) = Taint::parse(&value) {
                    taints.push(t);
                }
            }
            _ => {}
        }
    }
    (labels, taints)
}

impl<C: NodeConnector> NodeExecutor for SshNodeExecutor<C> {
    async fn run(&self, step: &Step) -> Result<NodeStepDone, ApplyError> {
        let cluster = step.cluster.clone().unwrap_or_default();
        let result = match &step.kind {
            StepKind::BootstrapK3sServer(j) => self.bootstrap_k3s(&cluster, j).await,
            StepKind::JoinK3sServer(j) => self.join_k3s(&cluster, j, true).await,
            StepKind::JoinK3sAgent(j) => self.join_k3s(&cluster, j, false).await,
            StepKind::KubeadmJoin(j) => self.kubeadm_join(j).await,
            StepKind::SetLabel {
                node, key, value, ..
            } => {
                self.change_node(&cluster, &node.0, &Change::SetLabel(key, value))
                    .await
            }
            StepKind::RemoveLabel { node, key, .. } => {
                self.change_node(&cluster, &node.0, &Change::RemoveLabel(key))
                    .await
            }
            StepKind::RecordLabels { node, keys, .. } => {
                self.record_labels(&cluster, &node.0, keys).await
            }
            StepKind::SetTaint { node, taint } => {
                self.change_node(&cluster, &node.0, &Change::SetTaint(taint))
                    .await
            }
            StepKind::RemoveTaint { node, taint } => {
                self.change_node(&cluster, &node.0, &Change::RemoveTaint(taint))
                    .await
            }
            StepKind::DrainNode { node } => self.drain_node(&cluster, &node.0).await,
            StepKind::DeleteNode { node } => self.delete_node(&cluster, &node.0).await,
            StepKind::DeleteStaleNode { node } => self.delete_stale_node(&cluster, &node.0).await,
            StepKind::EnsureSecret { .. }
            | StepKind::WaitForRunning { .. }
            | StepKind::RenameInstance { .. }
            | StepKind::UnassignTag { .. }
            | StepKind::EnsureTag { .. }
            | StepKind::OrderInstance(_)
            | StepKind::AssignTag { .. }
            | StepKind::ReinstallInstance(_)
            | StepKind::CancelInstance { .. } => {
                return Ok(NodeStepDone::NotCarriedOut(
                    "not a node step; the Contabo side carries it out".into(),
                ))
            }
        };
        result
            .map(NodeStepDone::Done)
            .map_err(|source| ApplyError::Node {
                step: step.id.clone(),
                source: Box::new(source),
            })
    }

    async fn wait_ready(
        &self,
        slot: &str,
        address: Option<std::net::Ipv4Addr>,
    ) -> Result<bool, ApplyError> {
        let Some(address) = address else {
            return Ok(false);
        };
        let address = address.to_string();
        let deadline = crate::apply::wait::deadline_in(self.settings.first_boot_timeout);
        self.connector
            .wait_ready(slot, &address, deadline)
            .await
            .map_err(|source| ApplyError::NodeNotReady {
                slot: slot.to_string(),
                source,
            })?;
        Ok(true)
    }

    fn forget(&self, node: &str) {
        if let Ok(mut stale) = self.stale.lock() {
            stale.insert(node.to_string());
        }
    }

    fn learn_address(&self, node: &str, ip: std::net::Ipv4Addr) {
        let ip = ip.to_string();
        let ip = ip.as_str();
        if let Ok(mut a) = self.addresses.lock() {
            let changed = a.insert(node.to_string(), ip.to_string()).as_deref() != Some(ip);
            if changed {
                // A connection to the old address is of no use any more.
                if let Ok(mut connections) = self.connections.lock() {
                    self.retire(connections.remove(node));
                }
            }
        }
    }
}

fn refused(node: &str, what: String) -> BootstrapError {
    BootstrapError::Refused {
        node: node.to_string(),
        what,
    }
}

/// 32 random hex characters from a CSPRNG seeded by the OS.
fn random_token() -> Secret {
    let bytes: [u8; 16] = rand::random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn agent_config(labels: &BTreeMap<String, String>, taints: &[Taint]) -> Result<Secret, String> {
        k3s::render_config(&k3s::NodeConfig {
            node_name: "n",
            node_ip: "127.0.10.2",
            role: k3s::Role::Agent {
                server_url: "https://127.0.10.1:6443".into(),
                token: Secret::new("K10x::node:y".into()),
            },
            labels,
            taints,
        })
    }

    #[test]
    fn label_and_taint_lists_are_read_back_from_a_rendered_config() {
        let labels = BTreeMap::from([
            ("kiwistack.io/pool".to_string(), "rt".to_string()),
            ("example.com/empty".to_string(), String::new()),
        ]);
        let taints = [Taint::parse("workload.kiwistack.io/realtime=true:NoSchedule").unwrap()];
        let config = agent_config(&labels, &taints).unwrap();
        let (read_labels, read_taints) = k3s_lists(&config);
        assert_eq!(read_labels, labels);
        assert_eq!(read_taints, taints);
    }

    #[test]
    fn label_and_taint_lists_are_read_back_from_a_config_written_by_hand() {
        // kiwi-infra no longer writes a label value holding `=` (Kubernetes
        // refuses it, and `render_config` too), but a config on a node may
        // hold one, or a plain (unquoted) item from an older release.
        let labels = BTreeMap::from([
            ("kiwistack.io/pool".to_string(), "rt=x".to_string()),
            ("team".to_string(), "rtc".to_string()),
        ]);
        let taints = [Taint::parse("workload.kiwistack.io/realtime=true:NoSchedule").unwrap()];
        let config = Secret::new(
            "node-name: \"n\"\nnode-label:\n  - \"kiwistack.io/pool=rt=x\"\n  - team=rtc\n\
             node-taint:\n  - \"workload.kiwistack.io/realtime=true:NoSchedule\"\n"
                .into(),
        );
        let (read_labels, read_taints) = k3s_lists(&config);
        assert_eq!(read_labels, labels, "a value containing '=' survives");
        assert_eq!(read_taints, taints);
    }

    #[test]
    fn a_label_that_would_split_into_two_k3s_flags_is_never_written() {
        // k3s splits list items at commas: `a=b,kubernetes.io/role=x` would
        // be two labels, the second one never asked for.
        for (key, value) in [
            ("a", "b,node-role.kubernetes.io/master=x"),
            ("a,b", "c"),
            ("a", "rt=x"),
            ("a", "x\u{2028}y"),
        ] {
            let labels = BTreeMap::from([(key.to_string(), value.to_string())]);
            assert!(agent_config(&labels, &[]).is_err(), "{key}={value}");
        }
    }

    /// Hands out fake nodes that share state with the test's copies, and
    /// notes a session opened to a control node before the new node it
    /// serves (`waits_for`) finished its first boot.
    struct Fleet {
        nodes: BTreeMap<String, crate::ssh::fake::FakeRemote>,
        waits_for: BTreeMap<String, crate::ssh::fake::FakeRemote>,
        early: Arc<Mutex<Vec<String>>>,
    }

    fn booted(node: &crate::ssh::fake::FakeRemote) -> bool {
        node.history()
            .iter()
            .any(|c| c == crate::ssh::CLOUD_INIT_WAIT)
    }

    impl NodeConnector for Fleet {
        type Exec = crate::ssh::fake::FakeRemote;

        async fn connect(&self, node: &str, _address: &str) -> Result<Self::Exec, SshError> {
            if self.waits_for.get(node).is_some_and(|new| !booted(new)) {
                self.early
                    .lock()
                    .unwrap()
                    .push(format!("session to {node}"));
            }
            self.nodes
                .get(node)
                .cloned()
                .ok_or_else(|| SshError::Session {
                    node: node.to_string(),
                    source: std::io::Error::other("no such fake node").into(),
                })
        }

        async fn wait_ready(
            &self,
            _node: &str,
            _address: &str,
            _deadline: tokio::time::Instant,
        ) -> Result<(), SshError> {
            Ok(())
        }
    }

    fn ok(stdout: &str) -> crate::ssh::Output {
        crate::ssh::Output {
            status: Some(0),
            stdout: stdout.to_string(),
            stderr: String::new(),
        }
    }

    /// A control node whose credential commands note whether `new` had
    /// finished its first boot when they ran; `get nodes` lists `new`
    /// Ready once it ran its join.
    fn control_node(
        name: &str,
        new: &crate::ssh::fake::FakeRemote,
        early: Arc<Mutex<Vec<String>>>,
    ) -> crate::ssh::fake::FakeRemote {
        let new = new.clone();
        let new_name = new.node().to_string();
        crate::ssh::fake::FakeRemote::new(name).with_handler(move |command, _, _| {
            if command == kubeadm::CREATE_TOKEN && !booted(&new) {
                early.lock().unwrap().push(command.to_string());
            }
            if command == kubeadm::CREATE_TOKEN {
                return ok(&format!(
                    "kubeadm join api:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:{}",
                    "a".repeat(64)
                ));
            }
            if command.ends_with("get nodes -o json") {
                let joined = new
                    .history()
                    .iter()
                    .any(|c| c.contains("kubeadm join") || c.contains("INSTALL_K3S_EXEC"));
                let items = if joined {
                    format!(
                        r#"[{{"metadata": {{"name": "{new_name}"}}, "status": {{"conditions": [{{"type": "Ready", "status": "True"}}]}}}}]"#
                    )
                } else {
                    "[]".to_string()
                };
                return ok(&format!(r#"{{"kind": "NodeList", "items": {items}}}"#));
            }
            ok("")
        })
    }

    fn join_step(kind: StepKind, cluster: &str, node: &str) -> Step {
        Step {
            id: crate::plan::StepId(format!("join:{node}")),
            cluster: Some(cluster.to_string()),
            kind,
            depends_on: Vec::new(),
            destructive: false,
        }
    }

    #[tokio::test]
    async fn a_join_takes_tokens_and_control_sessions_only_after_the_new_nodes_first_boot() {
        // A first boot longer than the control node's idle session (5
        // minutes) or the kubeadm token (15) failed the join: both were
        // taken before waiting for it.
        let desired = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        )
        .unwrap();
        let early = Arc::new(Mutex::new(Vec::new()));
        let new_worker = crate::ssh::fake::FakeRemote::new("kiwi-core-general-01")
            .with_handler(|_, _, _| ok(""));
        let new_agent = crate::ssh::fake::FakeRemote::new("kiwi-stadtwerke-nord-general-01")
            .with_handler(|_, _, _| ok(""));
        let core_cp = control_node("kiwi-core-cp-01", &new_worker, Arc::clone(&early));
        let server = control_node(
            "kiwi-stadtwerke-nord-server-01",
            &new_agent,
            Arc::clone(&early),
        );
        let token = format!("K10{}::server:pw", "b".repeat(64));
        server.put_file(k3s::SERVER_TOKEN_PATH, token.as_bytes(), 0o600);
        server.put_file(k3s::AGENT_TOKEN_PATH, token.as_bytes(), 0o600);
        let fleet = Fleet {
            nodes: BTreeMap::from([
                ("kiwi-core-general-01".to_string(), new_worker.clone()),
                ("kiwi-core-cp-01".to_string(), core_cp),
                (
                    "kiwi-stadtwerke-nord-general-01".to_string(),
                    new_agent.clone(),
                ),
                ("kiwi-stadtwerke-nord-server-01".to_string(), server),
            ]),
            waits_for: BTreeMap::from([
                ("kiwi-core-cp-01".to_string(), new_worker.clone()),
                (
                    "kiwi-stadtwerke-nord-server-01".to_string(),
                    new_agent.clone(),
                ),
            ]),
            early: Arc::clone(&early),
        };
        let addresses = [
            "kiwi-core-general-01",
            "kiwi-stadtwerke-nord-general-01",
            "kiwi-stadtwerke-nord-server-01",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), format!("127.0.0.{}", i + 2)))
        .collect();
        let nodes = SshNodeExecutor::new(fleet, &desired, addresses, BootstrapSettings::default());
        let instance = crate::plan::InstanceRef {
            id: None,
            name: String::new(),
        };
        let kubeadm = join_step(
            StepKind::KubeadmJoin(KubeadmJoin {
                node: crate::plan::NodeName("kiwi-core-general-01".into()),
                instance: instance.clone(),
                role: KubeadmRole::Worker,
                via: crate::plan::NodeName("kiwi-core-cp-01".into()),
                api_endpoint: "api.core.kiwistack.io:6443".into(),
                kubernetes_version: "v1.31.4".into(),
                labels: BTreeMap::from([("kiwistack.io/pool".into(), "general".into())]),
                taints: Vec::new(),
            }),
            "core",
            "kiwi-core-general-01",
        );
        let done = NodeExecutor::run(&nodes, &kubeadm).await;
        assert!(done.is_ok(), "{done:?}");
        let k3s = join_step(
            StepKind::JoinK3sAgent(K3sJoin {
                node: crate::plan::NodeName("kiwi-stadtwerke-nord-general-01".into()),
                instance,
                version: "v1.31.4+k3s1".into(),
                via: Some(crate::plan::NodeName(
                    "kiwi-stadtwerke-nord-server-01".into(),
                )),
                labels: BTreeMap::from([("kiwistack.io/pool".into(), "general".into())]),
                taints: Vec::new(),
            }),
            "stadtwerke-nord",
            "kiwi-stadtwerke-nord-general-01",
        );
        let done = NodeExecutor::run(&nodes, &k3s).await;
        assert!(done.is_ok(), "{done:?}");
        assert_eq!(
            early.lock().unwrap().clone(),
            Vec::<String>::new(),
            "credentials taken before the new node's first boot ended"
        );
        nodes.close().await;
    }

    /// Connects only when two connections are in progress at once.
    struct TwoAtOnce(tokio::sync::Barrier);

    impl NodeConnector for TwoAtOnce {
        type Exec = crate::ssh::fake::FakeRemote;

        async fn connect(&self, node: &str, _address: &str) -> Result<Self::Exec, SshError> {
            self.0.wait().await;
            Ok(crate::ssh::fake::FakeRemote::new(node))
        }

        async fn wait_ready(
            &self,
            _node: &str,
            _address: &str,
            _deadline: tokio::time::Instant,
        ) -> Result<(), SshError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn connecting_to_one_node_does_not_wait_for_another() {
        // With 180 new nodes, one slow handshake at a time would put them
        // all in a queue; each node has its own connection cell instead.
        let desired = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        )
        .unwrap();
        let addresses = BTreeMap::from([
            ("a".to_string(), "127.0.0.2".to_string()),
            ("b".to_string(), "127.0.0.3".to_string()),
        ]);
        let nodes = SshNodeExecutor::new(
            TwoAtOnce(tokio::sync::Barrier::new(2)),
            &desired,
            addresses,
            BootstrapSettings::default(),
        );
        let both = futures::future::join(nodes.connect("a"), nodes.connect("b"));
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("the second connection waited for the first");
        assert_eq!(a.unwrap().node(), "a");
        assert_eq!(b.unwrap().node(), "b");
        // A kept connection is reused, not opened again (the barrier would
        // block a third connect).
        let again = tokio::time::timeout(Duration::from_secs(1), nodes.connect("a")).await;
        assert!(again.is_ok_and(|r| r.is_ok()));
    }

    #[test]
    fn generated_tokens_are_random_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }
}
