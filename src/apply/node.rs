//! The seam for steps that run on nodes (k3s bootstrap and join, kubeadm
//! join, labels, taints, drain and delete), as `apply` sees it: every
//! [`NodeSteps`] (`crate::node`, where `SshNodeExecutor` carries the steps
//! out over SSH) is a [`NodeExecutor`], its [`crate::node::NodeError`]
//! wrapped into [`ApplyError::Node`] with the step's id here, so the node
//! module never depends on `apply`. This is where a plan's step meets the
//! node layer, so the step's cluster is parsed into a [`ClusterName`] here,
//! once ([`cluster_of`]): the node steps and cluster reads take typed names
//! only. [`NoNodeAccess`] stands in where no
//! node is reachable (unit tests of the Contabo side), and says so rather
//! than pretending.

use std::future::Future;

use crate::ids::{BadClusterName, ClusterName};
use crate::node::NodeSteps;
use crate::plan::{NodeName, Step, StepKind};
use crate::report::HoldBack;

use super::error::ApplyError;

pub use crate::node::NodeStepDone;

/// Runs node steps.
pub trait NodeExecutor: Send + Sync {
    /// Carries out one node step (see [`is_node_step`]).
    fn run(&self, step: &Step) -> impl Future<Output = Result<NodeStepDone, ApplyError>> + Send;

    /// Tells the executor a node's address once its instance runs.
    fn learn_address(&self, _node: &NodeName, _ip: std::net::Ipv4Addr) {}

    /// Tells the executor a node's private (cluster-traffic) address, once
    /// its instance is in its cluster's private network.
    fn learn_private_address(&self, _node: &NodeName, _ip: std::net::Ipv4Addr) {}

    /// Tells the executor a node was reinstalled: any connection it keeps to
    /// the node is stale (new OS, new host key).
    fn forget(&self, _node: &NodeName) {}

    /// Waits until the node `slot`, which Contabo just reported running at
    /// `address`, answers over SSH with its pinned host key and has finished
    /// its first boot (`RemoteExec::wait_ready`). `Ok(false)` when this
    /// executor does not reach nodes, so nothing was checked.
    fn wait_ready(
        &self,
        _slot: &NodeName,
        _address: Option<std::net::Ipv4Addr>,
    ) -> impl Future<Output = Result<bool, ApplyError>> + Send {
        async { Ok(false) }
    }
}

impl<N: NodeSteps> NodeExecutor for N {
    async fn run(&self, step: &Step) -> Result<NodeStepDone, ApplyError> {
        let wrap = |source: crate::node::NodeError| ApplyError::Node {
            step: step.id.clone(),
            source: Box::new(source),
        };
        if !is_node_step(&step.kind) {
            return Ok(NodeStepDone::NotCarriedOut(HoldBack::NotANodeStep));
        }
        let cluster = cluster_of(step).map_err(|e| wrap(e.into()))?;
        NodeSteps::run(self, &cluster, step).await.map_err(wrap)
    }

    fn learn_address(&self, node: &NodeName, ip: std::net::Ipv4Addr) {
        NodeSteps::learn_address(self, node, ip);
    }

    fn learn_private_address(&self, node: &NodeName, ip: std::net::Ipv4Addr) {
        NodeSteps::learn_private_address(self, node, ip);
    }

    fn forget(&self, node: &NodeName) {
        NodeSteps::forget(self, node);
    }

    async fn wait_ready(
        &self,
        slot: &NodeName,
        address: Option<std::net::Ipv4Addr>,
    ) -> Result<bool, ApplyError> {
        NodeSteps::wait_ready(self, slot, address)
            .await
            .map_err(|source| ApplyError::NodeNotReady {
                slot: slot.to_string(),
                source,
            })
    }
}

/// A node executor that reaches no node: every node step is reported as
/// not carried out.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNodeAccess;

impl NodeExecutor for NoNodeAccess {
    async fn run(&self, _step: &Step) -> Result<NodeStepDone, ApplyError> {
        Ok(NodeStepDone::NotCarriedOut(HoldBack::NoNodeAccess))
    }
}

/// The cluster a node step acts on, parsed from the step's `cluster` (a
/// plan file is untrusted): the one place a plan's cluster becomes a
/// [`ClusterName`].
///
/// # Errors
/// [`BadClusterName::Missing`] when the step names no cluster,
/// [`BadClusterName::NotADnsLabel`] when its name breaks the inventory's
/// rule for cluster names.
pub fn cluster_of(step: &Step) -> Result<ClusterName, BadClusterName> {
    ClusterName::parse(step.cluster.as_deref().ok_or(BadClusterName::Missing)?)
}

/// True for steps that act on a node or a cluster rather than on Contabo
/// ([`StepKind::is_node_step`]).
pub fn is_node_step(kind: &StepKind) -> bool {
    kind.is_node_step()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::NodeError;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Node steps that only record whether a step reached them.
    #[derive(Default)]
    struct Reached(AtomicBool);

    impl NodeSteps for Reached {
        async fn run(&self, _: &ClusterName, _: &Step) -> Result<NodeStepDone, NodeError> {
            self.0.store(true, Ordering::SeqCst);
            Ok(NodeStepDone::Done("ran".into()))
        }
        fn learn_address(&self, _: &NodeName, _: std::net::Ipv4Addr) {}
        fn forget(&self, _: &NodeName) {}
        async fn wait_ready(
            &self,
            _: &NodeName,
            _: Option<std::net::Ipv4Addr>,
        ) -> Result<bool, crate::ssh::SshError> {
            Ok(false)
        }
    }

    fn drain(cluster: Option<&str>) -> Step {
        Step {
            id: crate::plan::StepId("drain:kiwi-acme-general-01".into()),
            cluster: cluster.map(str::to_string),
            kind: StepKind::DrainNode {
                node: NodeName("kiwi-acme-general-01".into()),
            },
            depends_on: Vec::new(),
            destructive: true,
        }
    }

    #[tokio::test]
    async fn a_node_step_with_no_cluster_or_no_cluster_name_fails_before_it_reaches_the_node_layer()
    {
        for (cluster, missing) in [
            (None, true),
            (Some("../acme"), false),
            (Some("Acme"), false),
            (Some("acme\u{1b}[2J"), false),
        ] {
            let nodes = Reached::default();
            let err = NodeExecutor::run(&nodes, &drain(cluster))
                .await
                .unwrap_err();
            let ApplyError::Node { step, source } = &err else {
                panic!("{cluster:?}: {err}");
            };
            assert_eq!(step.0, "drain:kiwi-acme-general-01");
            assert!(
                matches!(
                    (source.as_ref(), missing),
                    (NodeError::Cluster(BadClusterName::Missing), true)
                        | (
                            NodeError::Cluster(BadClusterName::NotADnsLabel { .. }),
                            false
                        )
                ),
                "{cluster:?}: {source}"
            );
            assert!(!source.to_string().contains('\u{1b}'), "{source}");
            assert!(
                !nodes.0.load(Ordering::SeqCst),
                "{cluster:?} reached the node layer"
            );
        }
        let nodes = Reached::default();
        let done = NodeExecutor::run(&nodes, &drain(Some("acme")))
            .await
            .unwrap();
        assert_eq!(done, NodeStepDone::Done("ran".into()));
    }
}
