//! Removing nodes: cordon and drain, delete the node object (and stop its
//! service on the node so it cannot register again), and delete a stale
//! node object so a slot's new machine can join under its name. Each goes
//! through the first control node that lists the cluster, the node being
//! removed asked last; a cluster gone from the inventory is reached
//! through its k3s servers.

use super::{NodeConnector, NodeError, SshNodeExecutor};
use crate::cluster::is_server_of;
use crate::cluster::kubectl::Kubectl;
use crate::plan::NodeName;
use crate::ssh::RemoteExec;

impl<C: NodeConnector> SshNodeExecutor<C> {
    /// Deletes the node object `node`, which the plan found not Ready and
    /// whose machine is gone or being reinstalled, so that the slot's new
    /// machine can join under its name. Checked again here: a node that has
    /// become Ready since the plan is left alone.
    pub(super) async fn delete_stale_node(
        &self,
        cluster: &str,
        node: &NodeName,
    ) -> Result<String, NodeError> {
        let access = self.reads.removal_access(cluster);
        let (via, nodes) = self
            .reads
            .control_for_removal(cluster, &access, node)
            .await?;
        match nodes.iter().find(|n| &n.name == node) {
            None => Ok(format!(
                "{node} is not a node of cluster {cluster} (any more)"
            )),
            Some(n) if n.ready => Err(NodeError::Protocol {
                node: node.to_string(),
                what: "became Ready since the plan was made; its node object is not deleted"
                    .to_string(),
            }),
            Some(_) => {
                self.run(
                    &via,
                    &access.kubectl.delete_node(&node.0),
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

    /// Cordons and drains `node` through a control node; a node that is
    /// not in the cluster (any more) is left as it is.
    pub(super) async fn drain_node(
        &self,
        cluster: &str,
        node: &NodeName,
    ) -> Result<String, NodeError> {
        let access = self.reads.removal_access(cluster);
        let (via, nodes) = self
            .reads
            .control_for_removal(cluster, &access, node)
            .await?;
        if !nodes.iter().any(|n| &n.name == node) {
            return Ok(format!(
                "{node} is not a node of cluster {cluster}; nothing to drain"
            ));
        }
        let timeout = self.settings.drain_timeout;
        self.run(
            &via,
            &access.kubectl.drain(&node.0, timeout),
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
    pub(super) async fn delete_node(
        &self,
        cluster: &str,
        node: &NodeName,
    ) -> Result<String, NodeError> {
        let access = self.reads.removal_access(cluster);
        let (via, nodes) = self
            .reads
            .control_for_removal(cluster, &access, node)
            .await?;
        let is_server = is_server_of(cluster, &node.0);
        if access.kubectl == Kubectl::K3s && is_server {
            let others: Vec<&str> = nodes
                .iter()
                .map(|n| n.name.0.as_str())
                .filter(|n| *n != node.0)
                .collect();
            if !others.is_empty() && !others.iter().any(|n| is_server_of(cluster, n)) {
                return Err(NodeError::Protocol {
                    node: node.to_string(),
                    what: format!(
                        "is the last k3s server of cluster {cluster} and {} still point at it; \
                         not deleted (remove those first)",
                        others.join(", ")
                    ),
                });
            }
        }
        let deleted = if nodes.iter().any(|n| &n.name == node) {
            self.run(
                &via,
                &access.kubectl.delete_node(&node.0),
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
    async fn disable_service(&self, node: &NodeName, unit: &str) -> String {
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
