//! Keeping labels and taints true: one change at a time through the first
//! control node that answers, the k3s node's own `config.yaml` kept in step
//! (so a restart registers the same set), and kiwi-infra's record of the
//! labels it set (so a later plan can remove one the inventory drops).

use super::{k3s, refused, NodeConnector, NodeError, SshNodeExecutor};
use crate::cluster::kubectl::Kubectl;
use crate::cluster::Reply;
use crate::ids::ClusterName;
use crate::inventory::Taint;
use crate::plan::{NodeName, NodeShape};

impl<C: NodeConnector> SshNodeExecutor<C> {
    pub(super) async fn change_node(
        &self,
        cluster: &ClusterName,
        node: &NodeName,
        change: &Change<'_>,
        wanted: &NodeShape,
    ) -> Result<String, NodeError> {
        let access = self.reads.access(cluster)?;
        let name = node.0.as_str();
        let command = match change {
            Change::SetLabel(k, v) => access.kubectl.set_label(name, k, v),
            Change::RemoveLabel(k) => access.kubectl.remove_label(name, k),
            Change::SetTaint(t) => access.kubectl.set_taint(name, t),
            Change::RemoveTaint(t) => access.kubectl.remove_taint(name, t),
        };
        // On k3s the node's own config must follow, so reach the node
        // first: a node that fails its host-key check gets no change at all,
        // not a cluster-side half of one.
        if access.kubectl == Kubectl::K3s {
            self.connect(node).await?;
        }
        self.on_first_control(cluster, &access.control_nodes, &command)
            .await?;
        if access.kubectl == Kubectl::K3s {
            self.keep_k3s_config_in_step(node, wanted).await?;
        }
        Ok(format!("{node}: {}", change.describe()))
    }

    /// Writes kiwi-infra's record of the labels it set on `node` (the
    /// annotation [`crate::plan::MANAGED_LABELS_ANNOTATION`]) through the
    /// first control node that answers.
    pub(super) async fn record_labels<'a>(
        &self,
        cluster: &ClusterName,
        node: &NodeName,
        keys: impl IntoIterator<Item = &'a String> + Clone,
    ) -> Result<String, NodeError> {
        let access = self.reads.access(cluster)?;
        let command = access.kubectl.record_labels(&node.0, keys.clone());
        self.on_first_control(cluster, &access.control_nodes, &command)
            .await?;
        let count = keys.into_iter().count();
        Ok(format!(
            "{node}: recorded the {count} labels kiwi-infra sets"
        ))
    }

    /// Runs `command` on the first of `controls` that can be reached; the
    /// command's own failure fails the step (it is not tried elsewhere).
    async fn on_first_control(
        &self,
        cluster: &ClusterName,
        controls: &[NodeName],
        command: &str,
    ) -> Result<(), NodeError> {
        let timeout = self.settings.command_timeout;
        Ok(self
            .reads
            .first_answering(cluster, controls, |exec, _| async move {
                Reply::Answered(self.reads.run(&exec, command, timeout, &[]).await.map(drop))
            })
            .await?)
    }

    /// Rewrites the node's `config.yaml` so a k3s restart registers the
    /// labels and taints the node should carry: the step's whole `wanted`
    /// set, not the config plus this one change, so that two label or taint
    /// steps of one node running side by side cannot undo each other.
    async fn keep_k3s_config_in_step(
        &self,
        node: &NodeName,
        wanted: &NodeShape,
    ) -> Result<(), NodeError> {
        let exec = self.connect(node).await?;
        let config = self.read_secret(&exec, k3s::CONFIG_PATH).await?;
        let updated = k3s::with_labels_and_taints(&config, &wanted.labels, &wanted.taints)
            .map_err(|what| refused(&node.0, what))?;
        self.upload(&exec, k3s::CONFIG_PATH, &updated).await
    }
}

/// One label or taint change.
#[derive(Debug)]
pub(super) enum Change<'a> {
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

/// The `node-label` and `node-taint` lists of a config kiwi-infra wrote:
/// how the tests read back what a step wrote (apply itself writes the whole
/// wanted set and never needs to read the lists).
#[cfg(test)]
pub(super) fn k3s_lists(
    config: &crate::secret::Secret,
) -> (std::collections::BTreeMap<String, String>, Vec<Taint>) {
    let mut labels = std::collections::BTreeMap::new();
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

/// Label and taint changes against an in-memory cluster
/// (`crate::ssh::fake_cluster`): the cluster's node object and a k3s node's
/// own config end up with the same set.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::test_support::{node, run, steps_over};
    use super::super::NodeError;
    use super::*;
    use crate::plan::{NodeShape, StepKind};
    use crate::secret::Secret;
    use crate::ssh::fake::{FakeRemote, Refusal};
    use crate::ssh::fake_cluster::{FakeCluster, FakeTaint, Flavor};

    const CLUSTER: &str = "stadtwerke-nord";
    const SERVER: &str = "kiwi-stadtwerke-nord-server-01";
    const AGENT: &str = "kiwi-stadtwerke-nord-realtime-01";
    const TAINT: &str = "workload.kiwistack.io/realtime=true:NoSchedule";

    /// stadtwerke-nord with one server and the realtime agent, whose k3s
    /// config registers `labels` and `taints` and whose node object has them.
    fn k3s(labels: &BTreeMap<String, String>, taints: &[Taint]) -> (FakeCluster, FakeRemote) {
        let cluster = FakeCluster::new(Flavor::K3s);
        cluster.join_server(SERVER);
        let agent = cluster.join_agent(AGENT);
        for (k, v) in labels {
            cluster.set_label(AGENT, k, v);
        }
        for t in taints {
            cluster.set_taint(AGENT, &t.key, t.value.as_deref(), t.effect.as_str());
        }
        let config = k3s::render_config(&k3s::NodeConfig {
            node_name: AGENT,
            node_ip: "127.0.0.3",
            external_ip: None,
            role: k3s::Role::Agent {
                server_url: "https://127.0.0.2:6443".into(),
                token: Secret::new("K10x::node:y".into()),
            },
            labels,
            taints,
            flannel_backend: None,
        })
        .unwrap();
        agent.put_file(k3s::CONFIG_PATH, config.expose().as_bytes(), 0o600);
        (cluster, agent)
    }

    /// What the plan carries on each label and taint step: the node's
    /// whole wanted set.
    fn shape(labels: &[(&str, &str)], taints: &[Taint]) -> NodeShape {
        NodeShape {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: taints.to_vec(),
        }
    }

    fn config_lists(agent: &FakeRemote) -> (BTreeMap<String, String>, Vec<Taint>) {
        let file = agent.file(k3s::CONFIG_PATH).unwrap();
        assert_eq!(file.mode, 0o600, "the config holds the join token");
        k3s_lists(&Secret::new(
            String::from_utf8(file.contents.expose().clone()).unwrap(),
        ))
    }

    #[tokio::test]
    async fn a_label_set_on_a_k3s_agent_reaches_the_cluster_and_the_nodes_own_config() {
        let (cluster, agent) = k3s(&BTreeMap::new(), &[]);
        let steps = steps_over(&cluster);
        let said = run(
            &steps,
            CLUSTER,
            StepKind::SetLabel {
                node: node(AGENT),
                key: "kiwistack.io/pool".into(),
                value: "realtime".into(),
                previous: None,
                wanted: shape(&[("kiwistack.io/pool", "realtime")], &[]),
            },
        )
        .await
        .unwrap();
        assert!(
            said.contains("label kiwistack.io/pool=realtime set"),
            "{said}"
        );
        let on_cluster = cluster.node(AGENT).unwrap().labels;
        assert_eq!(on_cluster.get("kiwistack.io/pool").unwrap(), "realtime");
        let (labels, _) = config_lists(&agent);
        assert_eq!(labels, on_cluster, "a restart would register another set");

        run(
            &steps,
            CLUSTER,
            StepKind::RemoveLabel {
                node: node(AGENT),
                key: "kiwistack.io/pool".into(),
                previous: "realtime".into(),
                wanted: shape(&[], &[]),
            },
        )
        .await
        .unwrap();
        assert_eq!(cluster.node(AGENT).unwrap().labels, BTreeMap::new());
        assert_eq!(config_lists(&agent).0, BTreeMap::new());
    }

    #[tokio::test]
    async fn a_taint_removed_from_a_k3s_agent_leaves_the_cluster_and_the_nodes_own_config() {
        let taint = Taint::parse(TAINT).unwrap();
        let (cluster, agent) = k3s(&BTreeMap::new(), std::slice::from_ref(&taint));
        let steps = steps_over(&cluster);
        run(
            &steps,
            CLUSTER,
            StepKind::RemoveTaint {
                node: node(AGENT),
                taint: taint.clone(),
                wanted: shape(&[], &[]),
            },
        )
        .await
        .unwrap();
        assert_eq!(cluster.node(AGENT).unwrap().taints, Vec::<FakeTaint>::new());
        assert_eq!(config_lists(&agent).1, Vec::<Taint>::new());

        // Set again: one taint per key and effect, on both sides.
        for _ in 0..2 {
            run(
                &steps,
                CLUSTER,
                StepKind::SetTaint {
                    node: node(AGENT),
                    taint: taint.clone(),
                    wanted: shape(&[], std::slice::from_ref(&taint)),
                },
            )
            .await
            .unwrap();
        }
        assert_eq!(
            cluster.node(AGENT).unwrap().taints,
            [FakeTaint {
                key: "workload.kiwistack.io/realtime".into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
            }]
        );
        assert_eq!(config_lists(&agent).1, [taint]);
    }

    #[tokio::test]
    async fn a_node_that_fails_its_host_key_check_gets_no_half_of_a_label_change() {
        let (cluster, agent) = k3s(&BTreeMap::new(), &[]);
        agent.refuse(Some(Refusal::HostKeyMismatch));
        let steps = steps_over(&cluster);
        let err = run(
            &steps,
            CLUSTER,
            StepKind::SetLabel {
                node: node(AGENT),
                key: "kiwistack.io/pool".into(),
                value: "realtime".into(),
                previous: None,
                wanted: shape(&[("kiwistack.io/pool", "realtime")], &[]),
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, NodeError::Ssh(e) if e.is_host_key_problem()),
            "{err}"
        );
        assert_eq!(
            cluster.node(AGENT).unwrap().labels,
            BTreeMap::new(),
            "the cluster side was changed"
        );
    }

    #[tokio::test]
    async fn a_kubeadm_label_and_its_record_go_through_the_first_control_plane_node_that_answers() {
        let cluster = FakeCluster::new(Flavor::Kubeadm);
        cluster
            .join_server("kiwi-core-cp-01")
            .refuse(Some(Refusal::Unreachable));
        let second = cluster.join_server("kiwi-core-cp-02");
        let worker = cluster.join_agent("kiwi-core-general-01");
        let steps = steps_over(&cluster);
        run(
            &steps,
            "core",
            StepKind::SetLabel {
                node: node("kiwi-core-general-01"),
                key: "kiwistack.io/tier".into(),
                value: "core".into(),
                previous: None,
                wanted: shape(&[("kiwistack.io/tier", "core")], &[]),
            },
        )
        .await
        .unwrap();
        run(
            &steps,
            "core",
            StepKind::RecordLabels {
                node: node("kiwi-core-general-01"),
                keys: BTreeSet::from(["kiwistack.io/tier".to_string(), "team".to_string()]),
                previous: None,
            },
        )
        .await
        .unwrap();
        let object = cluster.node("kiwi-core-general-01").unwrap();
        assert_eq!(object.labels.get("kiwistack.io/tier").unwrap(), "core");
        assert_eq!(
            object
                .annotations
                .get(crate::plan::MANAGED_LABELS_ANNOTATION)
                .unwrap(),
            "kiwistack.io/tier,team"
        );
        assert_eq!(second.history().len(), 2, "{:?}", second.history());
        assert!(
            worker.history().is_empty(),
            "a kubeadm worker keeps no config of its labels: {:?}",
            worker.history()
        );
    }
}
