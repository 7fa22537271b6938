//! Node steps: bootstrapping k3s servers, joining k3s servers and agents and
//! kubeadm workers or control-plane nodes, keeping labels and taints true,
//! and draining and deleting nodes that go — over SSH, exactly as
//! `docs/node-contract.md` describes.
//!
//! [`SshNodeExecutor`] carries out the steps as functions over the SSH
//! session pool (`crate::ssh::pool`) and the cluster reads
//! (`crate::cluster`), and keeps join tokens in memory only, for the run.
//! It implements [`NodeSteps`], the seam defined here so that `apply` can
//! use it without this module knowing `apply`; steps fail with
//! [`NodeError`], which `apply` wraps with the step's id.
//!
//! The pieces:
//! - [`join`]: k3s bootstrap and join, kubeadm join;
//! - [`labels`]: labels, taints and kiwi-infra's record of its labels;
//! - [`firewall`]: the host firewall's ruleset and peer set;
//! - [`removal`]: drain, delete, and deleting a stale node object;
//! - [`k3s`], [`kubeadm`]: the text kiwi-infra writes to and reads from
//!   nodes (pure).

pub mod firewall;
pub mod join;
pub mod k3s;
pub mod kubeadm;
pub mod labels;
pub mod removal;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::kubectl::Kubectl;
use crate::cluster::{ClusterError, ClusterReads};
use crate::ids::{BadClusterName, ClusterName};
use crate::inventory::Desired;
use crate::patience::{deadline_in, poll_until, Backoff};
use crate::plan::{NodeName, Step, StepKind};
use crate::report::HoldBack;
use crate::secret::Secret;
use crate::ssh::pool::{NodeConnector, PoolError, Shared};
use crate::ssh::{Output, RemoteExec, SshError};

use join::K3sTokens;
use labels::Change;

/// How a node step ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStepDone {
    /// Done; the text says what changed.
    Done(String),
    /// Not carried out; the reason says why. The step stays pending.
    NotCarriedOut(HoldBack),
}

/// Runs node steps: the seam `apply` hands them to (it parses the step's
/// cluster into a [`ClusterName`], and wraps a [`NodeError`] with the
/// step's id).
pub trait NodeSteps: Send + Sync {
    /// Carries out one node step (`crate::apply::is_node_step`) on
    /// `cluster`, the step's own `cluster` as `apply` parsed it.
    fn run(
        &self,
        cluster: &ClusterName,
        step: &Step,
    ) -> impl Future<Output = Result<NodeStepDone, NodeError>> + Send;

    /// Tells the executor a node's address once its instance runs.
    fn learn_address(&self, node: &NodeName, ip: std::net::Ipv4Addr);

    /// Tells the executor a node's private (cluster-traffic) address in its
    /// cluster's private network: its k3s `node-ip`, and the address other
    /// nodes join through. Executors that join nothing ignore it.
    fn learn_private_address(&self, _node: &NodeName, _ip: std::net::Ipv4Addr) {}

    /// Tells the executor a node was reinstalled: any connection it keeps to
    /// the node is stale (new OS, new host key).
    fn forget(&self, node: &NodeName);

    /// Waits until the node `slot`, which Contabo just reported running at
    /// `address`, answers over SSH with its pinned host key and has finished
    /// its first boot (`RemoteExec::wait_ready`). `Ok(false)` when no
    /// address is known, so nothing was checked.
    fn wait_ready(
        &self,
        slot: &NodeName,
        address: Option<std::net::Ipv4Addr>,
    ) -> impl Future<Output = Result<bool, SshError>> + Send;
}

/// The node flags and variables of `crate::settings`, applied here.
impl crate::settings::NodeKnobs {
    /// Sets what is given in `bootstrap` and `ssh`, leaving the rest.
    pub fn tune(&self, bootstrap: &mut NodeSettings, ssh: &mut crate::ssh::SshSettings) {
        if let Some(limit) = self.ready_timeout {
            bootstrap.ready_timeout = limit;
            bootstrap.first_boot_timeout = limit;
            ssh.ready_limit = limit;
        }
        if let Some(poll) = self.internal.node_poll {
            bootstrap.poll = poll;
        }
    }
}

/// Time limits of cluster work.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings {
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

impl Default for NodeSettings {
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

/// Failures of node steps; each names the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
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
    /// The step's cluster is missing or not a cluster name (a plan file is
    /// untrusted); nothing was done.
    #[error(transparent)]
    Cluster(#[from] BadClusterName),
}

/// A failed cluster read or command fails the step with the same words.
impl From<ClusterError> for NodeError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Ssh(e) => Self::Ssh(e),
            ClusterError::Command {
                node,
                command,
                status,
                stderr,
            } => Self::Command {
                node,
                command,
                status,
                stderr,
            },
            ClusterError::Protocol { node, what } => Self::Protocol { node, what },
            ClusterError::NoAddress { node } => Self::NoAddress { node },
            ClusterError::NoControlNode { cluster, tried } => {
                Self::NoControlNode { cluster, tried }
            }
            ClusterError::Cluster(e) => Self::Cluster(e),
        }
    }
}

impl From<PoolError> for NodeError {
    fn from(e: PoolError) -> Self {
        ClusterError::from(e).into()
    }
}

/// Carries out node steps over SSH.
pub struct SshNodeExecutor<C: NodeConnector> {
    reads: ClusterReads<C>,
    /// Join tokens per k3s cluster, read once per cluster (and per cluster
    /// only: one cluster's read does not hold up another's joins).
    tokens: Mutex<BTreeMap<ClusterName, Shared<K3sTokens>>>,
    /// Private (cluster-traffic) addresses of nodes in a private network,
    /// from the observation and from this run's assignments.
    private: Mutex<BTreeMap<NodeName, std::net::Ipv4Addr>>,
    settings: NodeSettings,
}

impl<C: NodeConnector> std::fmt::Debug for SshNodeExecutor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshNodeExecutor")
            .field("reads", &self.reads)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<C: NodeConnector> SshNodeExecutor<C> {
    /// An executor for the clusters of `desired`. `addresses` maps node
    /// names to IPv4 addresses known so far (running instances, the Core
    /// control plane); [`NodeSteps::learn_address`] adds new ones.
    pub fn new(
        connector: C,
        desired: &Desired,
        addresses: BTreeMap<String, String>,
        settings: NodeSettings,
    ) -> Self {
        Self {
            reads: ClusterReads::new(connector, desired, addresses, settings.command_timeout),
            tokens: Mutex::new(BTreeMap::new()),
            private: Mutex::new(BTreeMap::new()),
            settings,
        }
    }

    /// The cluster reads over this executor's sessions (what `observe`
    /// and `kiwi-infra kubeconfig` use).
    pub fn reads(&self) -> &ClusterReads<C> {
        &self.reads
    }

    /// Closes every connection this executor opened (at the end of a run),
    /// replaced ones included.
    pub async fn close(&self) {
        self.reads.close().await;
    }

    fn address(&self, node: &NodeName) -> Result<String, NodeError> {
        Ok(self.reads.pool().address(node)?)
    }

    /// The address `node` uses for cluster traffic: its private address in
    /// `network` when the step names one (an error when none is known: the
    /// public address is never used in its place), else its public one.
    fn traffic_address(&self, node: &NodeName, network: Option<&str>) -> Result<String, NodeError> {
        let Some(network) = network else {
            return self.address(node);
        };
        self.private_address(node)
            .map(|ip| ip.to_string())
            .ok_or_else(|| NodeError::Protocol {
                node: node.to_string(),
                what: format!(
                    "no address in private network {network} is known for it; its machine must \
                 be a member (plan again to see the steps that add it)"
                ),
            })
    }

    /// `node`'s private address, when one was observed or assigned this run.
    fn private_address(&self, node: &NodeName) -> Option<std::net::Ipv4Addr> {
        self.private.lock().ok().and_then(|p| p.get(node).copied())
    }

    async fn connect(&self, node: &NodeName) -> Result<Arc<C::Exec>, NodeError> {
        Ok(self.reads.pool().connect(node).await?)
    }

    /// Runs `command`; a non-zero exit is an error carrying its stderr with
    /// `secrets` redacted.
    async fn run(
        &self,
        exec: &C::Exec,
        command: &str,
        timeout: Duration,
        secrets: &[&Secret],
    ) -> Result<Output, NodeError> {
        Ok(self.reads.run(exec, command, timeout, secrets).await?)
    }

    /// Reads a file through sudo; its content is treated as a secret.
    async fn read_secret(&self, exec: &C::Exec, path: &str) -> Result<Secret, NodeError> {
        Ok(self.reads.read_secret(exec, path).await?)
    }

    /// `cloud-init status --wait`, as long as a first boot may take: a
    /// node whose first boot hangs fails its step after that, whichever run
    /// finds it (not after the much longer install limit).
    async fn wait_for_first_boot(&self, exec: &C::Exec) -> Result<(), NodeError> {
        self.run(
            exec,
            "cloud-init status --wait",
            self.settings.first_boot_timeout,
            &[],
        )
        .await
        .map(drop)
    }

    /// Polls `via`'s kubectl until `node` is Ready; on timeout, shows the
    /// last lines of the node's `unit` log.
    async fn wait_ready(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
        node: &NodeName,
        unit: &str,
    ) -> Result<(), NodeError> {
        let ready = poll_until(
            deadline_in(self.settings.ready_timeout),
            Backoff::constant(self.settings.poll),
            || async {
                let nodes = self.reads.list_nodes(kubectl, via).await.ok()?;
                nodes
                    .iter()
                    .any(|n| &n.name == node && n.ready)
                    .then_some(())
            },
        )
        .await;
        if ready.is_ok() {
            return Ok(());
        }
        let log = self.log_tail(node, unit).await;
        Err(NodeError::NeverReady {
            node: node.0.clone(),
            timeout: self.settings.ready_timeout,
            unit: unit.to_string(),
            log,
        })
    }

    /// Records on a node that just joined which labels it registered with
    /// (they are kiwi-infra's), so a later plan can remove one the
    /// inventory drops.
    async fn record_joined_labels(
        &self,
        kubectl: Kubectl,
        via: &C::Exec,
        node: &NodeName,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), NodeError> {
        self.run(
            via,
            &kubectl.record_labels(&node.0, labels.keys()),
            self.settings.command_timeout,
            &[],
        )
        .await
        .map(drop)
    }

    async fn log_tail(&self, node: &NodeName, unit: &str) -> String {
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

    async fn upload(&self, exec: &C::Exec, path: &str, text: &Secret) -> Result<(), NodeError> {
        let bytes = Secret::new(text.expose().as_bytes().to_vec());
        Ok(exec.upload(path, &bytes, 0o600).await?)
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
        node: &NodeName,
    ) -> Result<(), NodeError> {
        let listed = self.reads.list_nodes(kubectl, via).await?;
        match listed.iter().find(|n| &n.name == node) {
            None => Ok(()),
            Some(n) => Err(NodeError::Protocol {
                node: node.0.clone(),
                what: format!(
                    "the cluster already lists a node of this name ({}); not joined. Run \
                     `kiwi-infra plan`: a stale node object is deleted by a step of its own \
                     (with --allow-destroy), a Ready one is never replaced",
                    if n.ready { "Ready" } else { "not Ready" }
                ),
            }),
        }
    }
}

impl<C: NodeConnector> NodeSteps for SshNodeExecutor<C> {
    async fn run(&self, cluster: &ClusterName, step: &Step) -> Result<NodeStepDone, NodeError> {
        let result = match &step.kind {
            StepKind::BootstrapK3sServer(j) => self.bootstrap_k3s(cluster, j).await,
            StepKind::JoinK3sServer(j) => self.join_k3s(cluster, j, true).await,
            StepKind::JoinK3sAgent(j) => self.join_k3s(cluster, j, false).await,
            StepKind::KubeadmJoin(j) => self.kubeadm_join(j).await,
            StepKind::SetLabel {
                node,
                key,
                value,
                wanted,
                ..
            } => {
                self.change_node(cluster, node, &Change::SetLabel(key, value), wanted)
                    .await
            }
            StepKind::RemoveLabel {
                node, key, wanted, ..
            } => {
                self.change_node(cluster, node, &Change::RemoveLabel(key), wanted)
                    .await
            }
            StepKind::RecordLabels { node, keys, .. } => {
                self.record_labels(cluster, node, keys).await
            }
            StepKind::SetTaint {
                node,
                taint,
                wanted,
            } => {
                self.change_node(cluster, node, &Change::SetTaint(taint), wanted)
                    .await
            }
            StepKind::RemoveTaint {
                node,
                taint,
                wanted,
            } => {
                self.change_node(cluster, node, &Change::RemoveTaint(taint), wanted)
                    .await
            }
            StepKind::DrainNode { node } => self.drain_node(cluster, node).await,
            StepKind::DeleteNode { node } => self.delete_node(cluster, node).await,
            StepKind::DeleteStaleNode { node } => self.delete_stale_node(cluster, node).await,
            StepKind::SetFirewall(f) => self.set_firewall(f).await,
            StepKind::EnsureSecret { .. }
            | StepKind::WaitForRunning { .. }
            | StepKind::RenameInstance { .. }
            | StepKind::UnassignTag { .. }
            | StepKind::EnsureTag { .. }
            | StepKind::OrderInstance(_)
            | StepKind::AssignTag { .. }
            | StepKind::ReinstallInstance(_)
            | StepKind::EnsurePrivateNetwork { .. }
            | StepKind::AssignPrivateNetwork { .. }
            | StepKind::CancelInstance { .. } => {
                return Ok(NodeStepDone::NotCarriedOut(HoldBack::NotANodeStep))
            }
        };
        result.map(NodeStepDone::Done)
    }

    async fn wait_ready(
        &self,
        slot: &NodeName,
        address: Option<std::net::Ipv4Addr>,
    ) -> Result<bool, SshError> {
        let Some(address) = address else {
            return Ok(false);
        };
        let address = address.to_string();
        let deadline = deadline_in(self.settings.first_boot_timeout);
        self.reads
            .pool()
            .connector()
            .wait_ready(&slot.0, &address, deadline)
            .await?;
        Ok(true)
    }

    fn forget(&self, node: &NodeName) {
        self.reads.pool().forget(node);
    }

    fn learn_address(&self, node: &NodeName, ip: std::net::Ipv4Addr) {
        self.reads.pool().learn_address(node, ip);
    }

    fn learn_private_address(&self, node: &NodeName, ip: std::net::Ipv4Addr) {
        if let Ok(mut private) = self.private.lock() {
            private.insert(node.clone(), ip);
        }
    }
}

fn refused(node: &str, what: String) -> NodeError {
    NodeError::Refused {
        node: node.to_string(),
        what,
    }
}

/// 32 random hex characters from a CSPRNG seeded by the OS.
fn random_token() -> Secret {
    let bytes: [u8; 16] = rand::random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the unit tests of the node steps share: the example inventory's
/// node executor over a [`crate::ssh::fake_cluster::FakeCluster`].
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    use super::*;
    use crate::ssh::fake_cluster::FakeCluster;

    /// The node executor for the example inventory, reaching `cluster`'s
    /// machines (each given a loopback address, which the fake never
    /// contacts).
    pub(crate) fn steps_over(cluster: &FakeCluster) -> SshNodeExecutor<FakeCluster> {
        let desired = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        )
        .unwrap();
        let addresses = cluster
            .machine_names()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, format!("127.0.0.{}", i + 2)))
            .collect();
        SshNodeExecutor::new(
            cluster.clone(),
            &desired,
            addresses,
            NodeSettings::default(),
        )
    }

    /// A step of `kind` on `cluster`, as the planner would give it.
    pub(crate) fn step(cluster: &str, kind: StepKind) -> Step {
        Step {
            id: crate::plan::StepId(format!("test:{}", kind.slot().unwrap_or_default())),
            cluster: Some(cluster.to_string()),
            kind,
            depends_on: Vec::new(),
            destructive: false,
        }
    }

    /// Runs `kind` on `cluster` and gives what it said it did.
    pub(crate) async fn run(
        steps: &SshNodeExecutor<FakeCluster>,
        cluster: &str,
        kind: StepKind,
    ) -> Result<String, NodeError> {
        let step = step(cluster, kind);
        match NodeSteps::run(steps, &cluster_of(&step), &step).await? {
            NodeStepDone::Done(text) => Ok(text),
            NodeStepDone::NotCarriedOut(why) => panic!("not carried out: {why}"),
        }
    }

    /// `name` as a node name.
    pub(crate) fn node(name: &str) -> NodeName {
        NodeName(name.to_string())
    }

    /// The step's cluster, parsed as `apply` does before a node step runs.
    pub(crate) fn cluster_of(step: &Step) -> ClusterName {
        ClusterName::parse(step.cluster.as_deref().unwrap_or_default()).unwrap()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::labels::k3s_lists;
    use super::*;
    use crate::inventory::Taint;
    use crate::plan::{K3sJoin, KubeadmJoin, KubeadmRole};

    fn agent_config(labels: &BTreeMap<String, String>, taints: &[Taint]) -> Result<Secret, String> {
        k3s::render_config(&k3s::NodeConfig {
            node_name: "n",
            node_ip: "127.0.10.2",
            external_ip: None,
            role: k3s::Role::Agent {
                server_url: "https://127.0.10.1:6443".into(),
                token: Secret::new("K10x::node:y".into()),
            },
            labels,
            taints,
            flannel_backend: None,
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
        let nodes = SshNodeExecutor::new(fleet, &desired, addresses, NodeSettings::default());
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
        let done = NodeSteps::run(&nodes, &test_support::cluster_of(&kubeadm), &kubeadm).await;
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
                flannel_backend: None,
                private_network: None,
            }),
            "stadtwerke-nord",
            "kiwi-stadtwerke-nord-general-01",
        );
        let done = NodeSteps::run(&nodes, &test_support::cluster_of(&k3s), &k3s).await;
        assert!(done.is_ok(), "{done:?}");
        assert_eq!(
            early.lock().unwrap().clone(),
            Vec::<String>::new(),
            "credentials taken before the new node's first boot ended"
        );
        nodes.close().await;
    }

    #[test]
    fn generated_tokens_are_random_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[tokio::test]
    async fn a_label_or_taint_step_writes_the_nodes_whole_wanted_set_into_its_k3s_config() {
        // Each step used to read the config and add its own change: two
        // steps of one node side by side could each write the config
        // without the other's change. Now each writes the whole set.
        let desired = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        )
        .unwrap();
        let agent = crate::ssh::fake::FakeRemote::new("kiwi-stadtwerke-nord-general-01")
            .with_handler(|_, _, _| ok(""));
        let old = agent_config(
            &BTreeMap::from([("kiwistack.io/pool".to_string(), "old".to_string())]),
            &[],
        )
        .unwrap();
        agent.put_file(k3s::CONFIG_PATH, old.expose().as_bytes(), 0o600);
        let server = crate::ssh::fake::FakeRemote::new("kiwi-stadtwerke-nord-server-01")
            .with_handler(|_, _, _| ok(""));
        let fleet = Fleet {
            nodes: BTreeMap::from([
                ("kiwi-stadtwerke-nord-general-01".to_string(), agent.clone()),
                ("kiwi-stadtwerke-nord-server-01".to_string(), server),
            ]),
            waits_for: BTreeMap::new(),
            early: Arc::new(Mutex::new(Vec::new())),
        };
        let addresses = BTreeMap::from([
            (
                "kiwi-stadtwerke-nord-general-01".to_string(),
                "127.0.0.2".to_string(),
            ),
            (
                "kiwi-stadtwerke-nord-server-01".to_string(),
                "127.0.0.3".to_string(),
            ),
        ]);
        let nodes = SshNodeExecutor::new(fleet, &desired, addresses, NodeSettings::default());
        let taint = Taint::parse("workload.kiwistack.io/realtime=true:NoSchedule").unwrap();
        let wanted = crate::plan::NodeShape {
            labels: BTreeMap::from([
                ("kiwistack.io/pool".to_string(), "general".to_string()),
                ("team".to_string(), "mail".to_string()),
            ]),
            taints: vec![taint.clone()],
        };
        // Only the taint step runs; the label steps have not (yet).
        let step = Step {
            id: crate::plan::StepId("taint:kiwi-stadtwerke-nord-general-01".into()),
            cluster: Some("stadtwerke-nord".into()),
            kind: StepKind::SetTaint {
                node: crate::plan::NodeName("kiwi-stadtwerke-nord-general-01".into()),
                wanted: wanted.clone(),
                taint,
            },
            depends_on: Vec::new(),
            destructive: false,
        };
        NodeSteps::run(&nodes, &test_support::cluster_of(&step), &step)
            .await
            .unwrap();
        let written = agent.file(k3s::CONFIG_PATH).expect("config written");
        let written = Secret::new(String::from_utf8(written.contents.expose().clone()).unwrap());
        let (labels, taints) = k3s_lists(&written);
        assert_eq!(labels, wanted.labels);
        assert_eq!(taints, wanted.taints);
        nodes.close().await;
    }
}
