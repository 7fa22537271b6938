//! [`FakeCluster`]: a small in-memory Kubernetes cluster behind
//! [`FakeRemote`] nodes, for fast unit tests of the node steps that read and
//! change a cluster (labels, taints, drain, delete, a k3s server's etcd
//! membership) without root, namespaces or simulated machines.
//!
//! It keeps what those steps change and a test asserts on: the node objects
//! (Ready, labels, annotations, taints, cordoned), the etcd members of a
//! k3s cluster's servers, and which systemd units were disabled on which
//! machine. Each machine is a [`FakeRemote`] (files, history, refusals as
//! usual) whose unknown commands go to the cluster, which answers the
//! `kubectl` and `systemctl` commands of `docs/node-contract.md` the way a
//! real node does: by their text, read here with a small shell-word
//! splitter, never by calling the code that builds them (that would let a
//! wrong command pass). As on a real cluster:
//! - `kubectl` answers only on a control node (a k3s server whose `k3s`
//!   unit runs and that is an etcd member, or a kubeadm control-plane
//!   node), and on k3s only while more than half of the etcd members run;
//! - deleting a k3s server's node object removes its etcd member;
//! - `drain` cordons first, then fails if a PodDisruptionBudget forbids an
//!   eviction ([`FakeCluster::block_drain`]), leaving the node cordoned;
//! - a missing node is `NotFound` (exit 1).
//!
//! [`FakeCluster`] is also the [`NodeConnector`] that hands out its
//! machines; a machine it does not have does not answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::fake::FakeRemote;
use super::pool::NodeConnector;
use super::{Output, SshError};

/// Which distribution the cluster runs (how kubectl is invoked on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `sudo k3s kubectl` on k3s servers, with embedded etcd.
    K3s,
    /// `sudo kubectl --kubeconfig /etc/kubernetes/admin.conf` on kubeadm
    /// control-plane nodes.
    Kubeadm,
}

impl Flavor {
    fn prefix(self) -> &'static str {
        match self {
            Self::K3s => "sudo k3s kubectl ",
            Self::Kubeadm => "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf ",
        }
    }
}

/// A taint as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FakeTaint {
    /// Key.
    pub key: String,
    /// Value, if any.
    pub value: Option<String>,
    /// Effect (`NoSchedule`, `PreferNoSchedule`, `NoExecute`).
    pub effect: String,
}

/// A node object of the fake cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeNode {
    /// The `Ready` condition.
    pub ready: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<FakeTaint>,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
}

#[derive(Debug)]
struct ClusterState {
    flavor: Flavor,
    nodes: BTreeMap<String, FakeNode>,
    /// Machines that can run kubectl (k3s servers, kubeadm control plane).
    control: BTreeSet<String>,
    /// k3s: the etcd members (by node name).
    etcd: BTreeSet<String>,
    /// Units disabled (`systemctl disable --now`) per machine.
    disabled: BTreeMap<String, Vec<String>>,
    /// Nodes whose drain a PodDisruptionBudget blocks.
    blocked_drains: BTreeSet<String>,
}

/// A fake cluster and its machines. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeCluster {
    state: Arc<Mutex<ClusterState>>,
    machines: Arc<Mutex<BTreeMap<String, FakeRemote>>>,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCluster")
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl FakeCluster {
    /// An empty cluster of `flavor`.
    pub fn new(flavor: Flavor) -> Self {
        Self {
            state: Arc::new(Mutex::new(ClusterState {
                flavor,
                nodes: BTreeMap::new(),
                control: BTreeSet::new(),
                etcd: BTreeSet::new(),
                disabled: BTreeMap::new(),
                blocked_drains: BTreeSet::new(),
            })),
            machines: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Adds a Ready control node `name` (a k3s server, which becomes an
    /// etcd member, or a kubeadm control-plane node) and its machine.
    pub fn join_server(&self, name: &str) -> FakeRemote {
        {
            let mut state = self.lock();
            state.nodes.insert(name.to_string(), ready_node());
            state.control.insert(name.to_string());
            if state.flavor == Flavor::K3s {
                state.etcd.insert(name.to_string());
            }
        }
        self.add_machine(name)
    }

    /// Adds a Ready worker node `name` (a k3s agent, a kubeadm worker) and
    /// its machine.
    pub fn join_agent(&self, name: &str) -> FakeRemote {
        self.lock().nodes.insert(name.to_string(), ready_node());
        self.add_machine(name)
    }

    /// Adds a machine that answers over SSH but has no node object (yet).
    pub fn add_machine(&self, name: &str) -> FakeRemote {
        let state = Arc::clone(&self.state);
        let me = name.to_string();
        let remote =
            FakeRemote::new(name).with_handler(move |command, _, _| answer(&state, &me, command));
        self.machines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), remote.clone());
        remote
    }

    /// The machine `name`, sharing its state with the cluster's copy.
    pub fn machine(&self, name: &str) -> Option<FakeRemote> {
        self.machines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The names of the machines, node objects or not.
    pub fn machine_names(&self) -> Vec<String> {
        self.machines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Sets the `Ready` condition of node `name`.
    pub fn set_ready(&self, name: &str, ready: bool) {
        if let Some(node) = self.lock().nodes.get_mut(name) {
            node.ready = ready;
        }
    }

    /// Sets a label on node `name` as if someone else had.
    pub fn set_label(&self, name: &str, key: &str, value: &str) {
        if let Some(node) = self.lock().nodes.get_mut(name) {
            node.labels.insert(key.to_string(), value.to_string());
        }
    }

    /// Sets a taint on node `name` as if someone else had.
    pub fn set_taint(&self, name: &str, key: &str, value: Option<&str>, effect: &str) {
        if let Some(node) = self.lock().nodes.get_mut(name) {
            node.taints.push(FakeTaint {
                key: key.to_string(),
                value: value.map(str::to_string),
                effect: effect.to_string(),
            });
        }
    }

    /// Makes a PodDisruptionBudget forbid evicting the pods of `name`:
    /// its drain fails (after cordoning it).
    pub fn block_drain(&self, name: &str) {
        self.lock().blocked_drains.insert(name.to_string());
    }

    /// The node object `name`, if the cluster has it.
    pub fn node(&self, name: &str) -> Option<FakeNode> {
        self.lock().nodes.get(name).cloned()
    }

    /// The names of the node objects.
    pub fn node_names(&self) -> Vec<String> {
        self.lock().nodes.keys().cloned().collect()
    }

    /// The etcd members (k3s).
    pub fn etcd_members(&self) -> Vec<String> {
        self.lock().etcd.iter().cloned().collect()
    }

    /// The units disabled on machine `name`, in order.
    pub fn disabled_units(&self, name: &str) -> Vec<String> {
        self.lock().disabled.get(name).cloned().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        // A panicking test thread poisons the lock; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl NodeConnector for FakeCluster {
    type Exec = FakeRemote;

    async fn connect(&self, node: &str, _address: &str) -> Result<FakeRemote, SshError> {
        let remote = self.machine(node).ok_or_else(|| SshError::Session {
            node: node.to_string(),
            source: std::io::Error::other("fake machine does not answer").into(),
        })?;
        remote.check_reachable()?;
        Ok(remote)
    }

    async fn wait_ready(
        &self,
        node: &str,
        _address: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), SshError> {
        let remote = self.connect(node, "").await?;
        super::RemoteExec::wait_ready(&remote, deadline).await
    }
}

fn ready_node() -> FakeNode {
    FakeNode {
        ready: true,
        ..FakeNode::default()
    }
}

fn output(status: i32, stdout: String, stderr: String) -> Output {
    Output {
        status: Some(status),
        stdout,
        stderr,
    }
}

fn fail(stderr: String) -> Output {
    output(1, String::new(), stderr)
}

fn not_found(node: &str) -> Output {
    fail(format!(
        "Error from server (NotFound): nodes \"{node}\" not found\n"
    ))
}

/// What machine `me` answers to `command`.
fn answer(state: &Mutex<ClusterState>, me: &str, command: &str) -> Output {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(unit) = command.strip_prefix("sudo systemctl disable --now ") {
        let unit = unit.trim().to_string();
        if state.flavor == Flavor::K3s && unit == "k3s" {
            // Its etcd member stays (only deleting the node removes it),
            // but it no longer votes.
            state.control.remove(me);
        }
        state.disabled.entry(me.to_string()).or_default().push(unit);
        return output(0, String::new(), String::new());
    }
    let Some(rest) = command.strip_prefix(state.flavor.prefix()) else {
        return output(
            127,
            String::new(),
            format!("fake cluster: no handler for `{command}`\n"),
        );
    };
    let Some(words) = shell_words(rest) else {
        return fail(format!("fake cluster: unbalanced quotes in `{command}`\n"));
    };
    if !state.control.contains(me) {
        return fail(
            "The connection to the server 127.0.0.1:6443 was refused - did you specify the \
             right host or port?\n"
                .to_string(),
        );
    }
    if state.flavor == Flavor::K3s {
        let voting = state
            .etcd
            .iter()
            .filter(|m| state.control.contains(*m))
            .count();
        if voting * 2 <= state.etcd.len() {
            return fail("Error from server: etcdserver: request timed out\n".to_string());
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["get", "nodes", "-o", "json"] => output(0, node_list(&state), String::new()),
        ["label", "node", node, change, rest @ ..] => {
            let overwrite = rest == ["--overwrite"];
            let Some(n) = state.nodes.get_mut(*node) else {
                return not_found(node);
            };
            edit_map(
                &mut n.labels,
                node,
                change,
                overwrite,
                "labeled",
                "unlabeled",
            )
        }
        ["annotate", "node", node, change, rest @ ..] => {
            let overwrite = rest == ["--overwrite"];
            let Some(n) = state.nodes.get_mut(*node) else {
                return not_found(node);
            };
            edit_map(
                &mut n.annotations,
                node,
                change,
                overwrite,
                "annotated",
                "annotated",
            )
        }
        ["taint", "node", node, change, rest @ ..] => {
            let overwrite = rest == ["--overwrite"];
            let Some(n) = state.nodes.get_mut(*node) else {
                return not_found(node);
            };
            taint(&mut n.taints, node, change, overwrite)
        }
        ["drain", node, flags @ ..] => {
            if !flags.contains(&"--ignore-daemonsets") || flags.contains(&"--force") {
                return fail(format!("fake cluster: unexpected drain flags {flags:?}\n"));
            }
            let blocked = state.blocked_drains.contains(*node);
            let Some(n) = state.nodes.get_mut(*node) else {
                return not_found(node);
            };
            n.unschedulable = true;
            if blocked {
                return output(
                    1,
                    format!("node/{node} cordoned\n"),
                    format!(
                        "error when evicting pods/\"web-0\" -n \"default\": Cannot evict pod as \
                         it would violate the pod's disruption budget.\nerror: unable to drain \
                         node \"{node}\" due to error: global timeout reached\n"
                    ),
                );
            }
            output(
                0,
                format!("node/{node} cordoned\nnode/{node} drained\n"),
                String::new(),
            )
        }
        ["delete", "node", node] => {
            if state.nodes.remove(*node).is_none() {
                return not_found(node);
            }
            // k3s removes a deleted server's etcd member with its node.
            state.etcd.remove(*node);
            state.control.remove(*node);
            output(0, format!("node \"{node}\" deleted\n"), String::new())
        }
        _ => output(
            127,
            String::new(),
            format!("fake cluster: no handler for `{command}`\n"),
        ),
    }
}

fn edit_map(
    map: &mut BTreeMap<String, String>,
    node: &str,
    change: &str,
    overwrite: bool,
    set: &str,
    unset: &str,
) -> Output {
    if let Some(key) = change.strip_suffix('-') {
        map.remove(key);
        return output(0, format!("node/{node} {unset}\n"), String::new());
    }
    let Some((key, value)) = change.split_once('=') else {
        return fail(format!("error: invalid argument {change:?}\n"));
    };
    if !overwrite && map.get(key).is_some_and(|v| v != value) {
        return fail(format!(
            "error: '{key}' already has a value, and --overwrite is false\n"
        ));
    }
    map.insert(key.to_string(), value.to_string());
    output(0, format!("node/{node} {set}\n"), String::new())
}

fn taint(taints: &mut Vec<FakeTaint>, node: &str, change: &str, overwrite: bool) -> Output {
    let (spec, remove) = match change.strip_suffix('-') {
        Some(spec) => (spec, true),
        None => (change, false),
    };
    let Some((head, effect)) = spec.rsplit_once(':') else {
        return fail(format!("error: invalid taint spec: {change}\n"));
    };
    let (key, value) = match head.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (head, None),
    };
    let same = |t: &FakeTaint| t.key == key && t.effect == effect;
    if remove {
        if !taints.iter().any(same) {
            return fail(format!("error: taint {spec:?} not found\n"));
        }
        taints.retain(|t| !same(t));
        return output(0, format!("node/{node} untainted\n"), String::new());
    }
    if taints.iter().any(same) && !overwrite {
        return fail(format!(
            "error: node {node} already has {key} taint(s) with same effect(s) and \
             --overwrite is false\n"
        ));
    }
    taints.retain(|t| !same(t));
    taints.push(FakeTaint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
    });
    output(0, format!("node/{node} tainted\n"), String::new())
}

/// `kubectl get nodes -o json` of the cluster.
fn node_list(state: &ClusterState) -> String {
    let items: Vec<Value> = state
        .nodes
        .iter()
        .map(|(name, n)| {
            let taints: Vec<Value> = n
                .taints
                .iter()
                .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
                .collect();
            json!({
                "metadata": {"name": name, "labels": n.labels, "annotations": n.annotations},
                "spec": {"taints": taints, "unschedulable": n.unschedulable},
                "status": {"conditions": [
                    {"type": "Ready", "status": if n.ready { "True" } else { "False" }}
                ]},
            })
        })
        .collect();
    json!({"kind": "NodeList", "apiVersion": "v1", "items": items}).to_string()
}

/// Splits a command line into words as `sh` would for the quoting
/// kiwi-infra uses (`crate::ssh::shell_quote`: plain words and single
/// quotes, with `'\''` for a quote); `None` when a quote is not closed.
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ssh::{shell_quote, RemoteCommand, RemoteExec};

    async fn run(remote: &FakeRemote, command: &str) -> Output {
        remote
            .run(&RemoteCommand {
                command: command.into(),
                stdin: None,
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap()
    }

    #[test]
    fn words_are_split_as_the_shell_splits_what_shell_quote_wrote() {
        for word in ["plain", "a b", "it's", "", "x=y:NoSchedule", "'\\'"] {
            let line = format!("cmd {} end", shell_quote(word));
            assert_eq!(
                shell_words(&line).unwrap(),
                vec!["cmd".to_string(), word.to_string(), "end".to_string()],
                "{line}"
            );
        }
        assert_eq!(shell_words("a 'open"), None);
    }

    #[tokio::test]
    async fn kubectl_answers_only_on_a_control_node_of_a_cluster_with_quorum() {
        let cluster = FakeCluster::new(Flavor::K3s);
        let one = cluster.join_server("s1");
        let two = cluster.join_server("s2");
        cluster.join_server("s3");
        let agent = cluster.join_agent("a1");
        let get = "sudo k3s kubectl get nodes -o json";
        assert!(run(&one, get).await.success());
        assert!(!run(&agent, get).await.success(), "an agent ran kubectl");
        // Two of three etcd members stopped without being removed: no
        // quorum, no answer.
        run(&two, "sudo systemctl disable --now k3s").await;
        assert!(run(&one, get).await.success(), "2 of 3 still vote");
        let three = cluster.machine("s3").unwrap();
        run(&three, "sudo systemctl disable --now k3s").await;
        assert!(!run(&one, get).await.success(), "1 of 3 answered");
    }
}
