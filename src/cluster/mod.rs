//! Reading clusters: which nodes a cluster has (with labels, taints and
//! readiness), whether a machine was ever joined, and the admin kubeconfig,
//! each read through the first control node that answers, over the SSH
//! session pool (`crate::ssh::pool`).
//!
//! Both sides use this module: `observe` reads the clusters before a plan,
//! and the node steps (`crate::node`) read them before they change one.
//! Nothing here changes a node, so reading never depends on the code that
//! writes. [`kubectl`] holds the kubectl commands and the parsing of their
//! answers; the commands that change a node are only built there, and run
//! by the node steps.

pub mod firewall;
pub mod kubectl;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::{BadClusterName, ClusterName};
use crate::inventory::{ClusterKind, Desired, SERVER_POOL};
use crate::plan::{Node, NodeName};
use crate::secret::Secret;
use crate::ssh::pool::{NodeConnector, PoolError, SessionPool};
use crate::ssh::{Output, RemoteCommand, RemoteExec, SshError};

use kubectl::Kubectl;

/// Failures of a cluster read (or of one command on a node); each names
/// the node or cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
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
    /// A node answered something that does not fit the contract.
    #[error("{node}: {what}")]
    Protocol {
        /// Node.
        node: String,
        /// What was wrong.
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
    /// A cluster name that breaks the inventory's rule; nothing was read.
    #[error(transparent)]
    Cluster(#[from] BadClusterName),
}

impl From<PoolError> for ClusterError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Ssh(e) => Self::Ssh(e),
            PoolError::NoAddress { node } => Self::NoAddress { node: node.0 },
            PoolError::Poisoned { node } => Self::Protocol {
                node: node.0,
                what: "the connection table is poisoned".into(),
            },
        }
    }
}

/// How to reach one cluster's API.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// How kubectl is invoked there.
    pub kubectl: Kubectl,
    /// `host:port` of a kubeadm cluster's API server.
    pub api_endpoint: Option<String>,
    /// Nodes that can run kubectl, in order of preference.
    pub control_nodes: Vec<NodeName>,
}

/// What one control node made of a read.
#[derive(Debug)]
pub enum Reply<T> {
    /// It answered; the result is final (an answer that does not fit the
    /// contract is an error, not a reason to ask another node).
    Answered(Result<T, ClusterError>),
    /// It did not answer (the command failed); the next one is asked.
    Silent(ClusterError),
}

/// Reads the clusters of one inventory over a session pool.
pub struct ClusterReads<C: NodeConnector> {
    pool: SessionPool<C>,
    clusters: BTreeMap<ClusterName, ClusterAccess>,
    command_timeout: Duration,
}

impl<C: NodeConnector> std::fmt::Debug for ClusterReads<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterReads")
            .field("clusters", &self.clusters)
            .field("pool", &self.pool)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl<C: NodeConnector> ClusterReads<C> {
    /// Reads for the clusters of `desired`. `addresses` maps node names to
    /// the IPv4 addresses known so far (running instances, the Core
    /// control plane); the inventory's address of a kubeadm control-plane
    /// node wins over anything an API answer says. `command_timeout` limits
    /// each command. The inventory's cluster names become [`ClusterName`]s
    /// here (`inventory::load` checked them with the same rule; a cluster
    /// of a `Desired` built otherwise with a name that breaks it has no
    /// access, and every read of it fails naming it).
    pub fn new(
        connector: C,
        desired: &Desired,
        addresses: BTreeMap<String, String>,
        command_timeout: Duration,
    ) -> Self {
        let mut known: BTreeMap<NodeName, String> = addresses
            .into_iter()
            .map(|(node, ip)| (NodeName(node), ip))
            .collect();
        let clusters = desired
            .clusters
            .iter()
            .filter_map(|c| {
                let name = ClusterName::parse(&c.name)
                    .inspect_err(|e| tracing::warn!(error = %e, "cluster left out of the reads"))
                    .ok()?;
                let access = match &c.kind {
                    ClusterKind::Kubeadm {
                        control_plane,
                        api_endpoint,
                        ..
                    } => {
                        for cp in control_plane {
                            known.insert(NodeName(cp.name.clone()), cp.address.to_string());
                        }
                        ClusterAccess {
                            kubectl: Kubectl::Kubeadm,
                            api_endpoint: Some(api_endpoint.to_string()),
                            control_nodes: control_plane
                                .iter()
                                .map(|n| NodeName(n.name.clone()))
                                .collect(),
                        }
                    }
                    ClusterKind::K3s { .. } => ClusterAccess {
                        kubectl: Kubectl::K3s,
                        api_endpoint: None,
                        control_nodes: c.server_slots().map(NodeName).collect(),
                    },
                };
                Some((name, access))
            })
            .collect();
        Self {
            pool: SessionPool::new(connector, known),
            clusters,
            command_timeout,
        }
    }

    /// The session pool the reads go through (shared with the node steps).
    pub fn pool(&self) -> &SessionPool<C> {
        &self.pool
    }

    /// Closes every session (at the end of a run).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// How to reach `cluster`, which the inventory must have.
    pub fn access(&self, cluster: &ClusterName) -> Result<&ClusterAccess, ClusterError> {
        self.clusters
            .get(cluster)
            .ok_or_else(|| ClusterError::Protocol {
                node: cluster.to_string(),
                what: "the cluster is not in the inventory".into(),
            })
    }

    /// How to reach `cluster` to remove nodes: as for every other step when
    /// the inventory has it; for a cluster removed from the inventory (a
    /// customer gone), through its k3s servers, lowest-numbered first, as
    /// the plan removes the highest-numbered first.
    pub fn removal_access(&self, cluster: &ClusterName) -> ClusterAccess {
        if let Some(access) = self.clusters.get(cluster) {
            return access.clone();
        }
        let servers = self
            .pool
            .known_nodes()
            .into_iter()
            .filter(|n| is_server_of(cluster, n))
            .collect();
        ClusterAccess {
            kubectl: Kubectl::K3s,
            api_endpoint: None,
            control_nodes: servers,
        }
    }

    /// Runs `command`; a non-zero exit is an error carrying its stderr with
    /// `secrets` redacted.
    pub async fn run(
        &self,
        exec: &C::Exec,
        command: &str,
        timeout: Duration,
        secrets: &[&Secret],
    ) -> Result<Output, ClusterError> {
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
        Err(ClusterError::Command {
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
    pub async fn read_secret(&self, exec: &C::Exec, path: &str) -> Result<Secret, ClusterError> {
        let out = self
            .run(exec, &format!("sudo cat {path}"), self.command_timeout, &[])
            .await?;
        Ok(Secret::new(out.stdout.trim().to_string()))
    }

    /// The "first control node that answers" loop, written once: asks each
    /// of `candidates` in turn with `ask`, skipping one that cannot be
    /// reached or stays [`Reply::Silent`]; fails with
    /// [`ClusterError::NoControlNode`] naming every node tried.
    pub async fn first_answering<'a, T, F, Fut>(
        &'a self,
        cluster: &ClusterName,
        candidates: impl IntoIterator<Item = &'a NodeName>,
        ask: F,
    ) -> Result<T, ClusterError>
    where
        F: Fn(Arc<C::Exec>, &'a NodeName) -> Fut,
        Fut: Future<Output = Reply<T>>,
    {
        let mut tried = Vec::new();
        for control in candidates {
            let error = match self.pool.connect(control).await {
                Ok(exec) => match ask(exec, control).await {
                    Reply::Answered(result) => return result,
                    Reply::Silent(e) => e,
                },
                Err(e) => ClusterError::from(e),
            };
            tracing::debug!(%control, error = %error, "control node does not answer");
            tried.push(control.0.clone());
        }
        Err(ClusterError::NoControlNode {
            cluster: cluster.to_string(),
            tried: tried.join(", "),
        })
    }

    /// The cluster's nodes, through the first control node that answers.
    pub async fn nodes_of(&self, cluster: &ClusterName) -> Result<Vec<Node>, ClusterError> {
        let access = self.access(cluster)?;
        self.first_answering(cluster, &access.control_nodes, |exec, _| async move {
            match self.list_nodes(access.kubectl, &exec).await {
                Err(e @ ClusterError::Protocol { .. }) => Reply::Answered(Err(e)),
                Err(e) => Reply::Silent(e),
                Ok(nodes) => Reply::Answered(Ok(nodes)),
            }
        })
        .await
    }

    /// The cluster's nodes as `via` lists them.
    pub async fn list_nodes(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
    ) -> Result<Vec<Node>, ClusterError> {
        let out = self
            .run(via, &kubectl.get_nodes(), self.command_timeout, &[])
            .await?;
        kubectl::parse_node_list(&out.stdout).map_err(|what| ClusterError::Protocol {
            node: via.node().to_string(),
            what,
        })
    }

    /// True when `node` answers over SSH and `trace` (a file a join
    /// leaves behind) does not exist on it. Unreachable means not pristine:
    /// nothing is assumed.
    pub async fn is_pristine(&self, node: &NodeName, trace: &str) -> bool {
        let Ok(exec) = self.pool.connect(node).await else {
            return false;
        };
        let probe = RemoteCommand {
            command: format!("sudo test -e {trace}"),
            stdin: None,
            timeout: self.command_timeout,
        };
        // `test -e` exits 1 when the file is absent.
        matches!(exec.run(&probe).await, Ok(out) if out.status == Some(1))
    }

    /// The admin kubeconfig held by the first control node that answers,
    /// and the API server address it should point at from outside.
    pub async fn admin_kubeconfig(
        &self,
        cluster: &ClusterName,
    ) -> Result<(Secret, String), ClusterError> {
        let access = self.access(cluster)?;
        self.first_answering(cluster, &access.control_nodes, |exec, node| async move {
            let (path, server) = match &access.kubectl {
                Kubectl::K3s => match self.pool.address(node) {
                    Ok(ip) => ("/etc/rancher/k3s/k3s.yaml", format!("https://{ip}:6443")),
                    Err(e) => return Reply::Answered(Err(e.into())),
                },
                Kubectl::Kubeadm => (
                    "/etc/kubernetes/admin.conf",
                    format!(
                        "https://{}",
                        access.api_endpoint.clone().unwrap_or_default()
                    ),
                ),
            };
            match self.read_secret(&exec, path).await {
                Ok(text) => Reply::Answered(Ok((text, server))),
                Err(e) => Reply::Silent(e),
            }
        })
        .await
    }

    /// The first control node that lists the cluster's nodes, with the
    /// list. The node being removed is asked last: it is the only choice
    /// only when it is the last server of a cluster that goes entirely.
    pub async fn control_for_removal(
        &self,
        cluster: &ClusterName,
        access: &ClusterAccess,
        removing: &NodeName,
    ) -> Result<(Arc<C::Exec>, Vec<Node>), ClusterError> {
        let mut candidates: Vec<&NodeName> = access
            .control_nodes
            .iter()
            .filter(|c| *c != removing)
            .collect();
        candidates.extend(access.control_nodes.iter().filter(|c| *c == removing));
        self.first_answering(cluster, candidates, |exec, _| async move {
            match self.list_nodes(access.kubectl, &exec).await {
                Err(e @ ClusterError::Protocol { .. }) => Reply::Answered(Err(e)),
                Err(e) => Reply::Silent(e),
                Ok(nodes) => Reply::Answered(Ok((exec, nodes))),
            }
        })
        .await
    }
}

/// True when `node` is a k3s server slot of `cluster` (exactly
/// `kiwi-<cluster>-server-<NN>`): a prefix test would take the nodes of a
/// cluster named `<cluster>-server` for this one's.
pub fn is_server_of(cluster: &ClusterName, node: &NodeName) -> bool {
    crate::inventory::slot_pool(&node.0, cluster.as_str()).is_some_and(|pool| pool == SERVER_POOL)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ssh::FakeRemote;

    const NODE_LIST: &str = r#"{"kind": "NodeList", "items": [{"metadata": {"name": "kiwi-stadtwerke-nord-server-01"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]}"#;

    /// Hands out the fake nodes it has; any other node does not answer.
    struct Fleet(BTreeMap<String, FakeRemote>);

    impl NodeConnector for Fleet {
        type Exec = FakeRemote;

        async fn connect(&self, node: &str, _address: &str) -> Result<FakeRemote, SshError> {
            self.0.get(node).cloned().ok_or_else(|| SshError::Session {
                node: node.to_string(),
                source: std::io::Error::other("does not answer").into(),
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

    fn nord() -> ClusterName {
        ClusterName::parse("stadtwerke-nord").unwrap()
    }

    fn server(n: u32) -> String {
        format!("kiwi-stadtwerke-nord-server-{n:02}")
    }

    /// A control node whose `get nodes` prints `stdout` with `status`.
    fn control(n: u32, status: i32, stdout: &'static str) -> (String, FakeRemote) {
        let remote = FakeRemote::new(&server(n)).with_handler(move |_, _, _| Output {
            status: Some(status),
            stdout: stdout.to_string(),
            stderr: String::new(),
        });
        (server(n), remote)
    }

    fn reads(fleet: Fleet) -> ClusterReads<Fleet> {
        let desired = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        )
        .unwrap();
        let addresses = (1..=3)
            .map(|n| (server(n), format!("127.0.0.{}", n + 1)))
            .collect();
        ClusterReads::new(fleet, &desired, addresses, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_read_asks_the_next_control_node_when_one_does_not_answer_and_names_all_it_tried() {
        // server-01 cannot be reached, server-02's kubectl fails, server-03
        // answers: the read is server-03's.
        let fleet = Fleet(BTreeMap::from([
            control(2, 1, ""),
            control(3, 0, NODE_LIST),
        ]));
        let nodes = reads(fleet).nodes_of(&nord()).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name.0, server(1));

        let silent = Fleet(BTreeMap::from([control(2, 1, ""), control(3, 1, "")]));
        let err = reads(silent).nodes_of(&nord()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ClusterError::NoControlNode { .. })
                && text.contains(&format!("{}, {}, {}", server(1), server(2), server(3))),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_does_not_fit_the_contract_is_an_error_not_a_reason_to_ask_another_node()
    {
        let (name, third) = control(3, 0, NODE_LIST);
        let fleet = Fleet(BTreeMap::from([
            control(1, 0, "not a node list"),
            (name, third.clone()),
        ]));
        let err = reads(fleet).nodes_of(&nord()).await.unwrap_err();
        assert!(matches!(err, ClusterError::Protocol { .. }), "{err}");
        assert!(third.history().is_empty(), "another node was asked");
    }

    #[tokio::test]
    async fn removal_asks_the_node_being_removed_last() {
        let (first, one) = control(1, 0, NODE_LIST);
        let (second, two) = control(2, 0, NODE_LIST);
        let fleet = Fleet(BTreeMap::from([
            (first, one.clone()),
            (second, two.clone()),
        ]));
        let reads = reads(fleet);
        let access = reads.removal_access(&nord());
        let (via, _) = reads
            .control_for_removal(&nord(), &access, &NodeName(server(1)))
            .await
            .unwrap();
        assert_eq!(via.node(), server(2));
        assert!(
            one.history().is_empty(),
            "the node being removed was asked first"
        );
    }
}
