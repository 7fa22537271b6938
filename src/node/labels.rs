//! Keeping labels and taints true: one change at a time through the first
//! control node that answers, the k3s node's own `config.yaml` kept in step
//! (so a restart registers the same set), and kiwi-infra's record of the
//! labels it set (so a later plan can remove one the inventory drops).

use super::{k3s, refused, NodeConnector, NodeError, SshNodeExecutor};
use crate::cluster::kubectl::Kubectl;
use crate::cluster::Reply;
use crate::inventory::Taint;
use crate::plan::{NodeName, NodeShape};

impl<C: NodeConnector> SshNodeExecutor<C> {
    pub(super) async fn change_node(
        &self,
        cluster: &str,
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
        cluster: &str,
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
        cluster: &str,
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
