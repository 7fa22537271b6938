//! The seam for steps that run on nodes (k3s bootstrap and join, kubeadm
//! join, labels, taints, drain and delete), as `apply` sees it: every
//! [`NodeSteps`] (`crate::node`, where `SshNodeExecutor` carries the steps
//! out over SSH) is a [`NodeExecutor`], its [`crate::node::NodeError`]
//! wrapped into [`ApplyError::Node`] with the step's id here, so the node
//! module never depends on `apply`. [`NoNodeAccess`] stands in where no
//! node is reachable (unit tests of the Contabo side), and says so rather
//! than pretending.

use std::future::Future;

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
    fn learn_address(&self, _node: &str, _ip: std::net::Ipv4Addr) {}

    /// Tells the executor a node's private (cluster-traffic) address, once
    /// its instance is in its cluster's private network.
    fn learn_private_address(&self, _node: &str, _ip: std::net::Ipv4Addr) {}

    /// Tells the executor a node was reinstalled: any connection it keeps to
    /// the node is stale (new OS, new host key).
    fn forget(&self, _node: &str) {}

    /// Waits until the node `slot`, which Contabo just reported running at
    /// `address`, answers over SSH with its pinned host key and has finished
    /// its first boot (`RemoteExec::wait_ready`). `Ok(false)` when this
    /// executor does not reach nodes, so nothing was checked.
    fn wait_ready(
        &self,
        _slot: &str,
        _address: Option<std::net::Ipv4Addr>,
    ) -> impl Future<Output = Result<bool, ApplyError>> + Send {
        async { Ok(false) }
    }
}

impl<N: NodeSteps> NodeExecutor for N {
    async fn run(&self, step: &Step) -> Result<NodeStepDone, ApplyError> {
        NodeSteps::run(self, step)
            .await
            .map_err(|source| ApplyError::Node {
                step: step.id.clone(),
                source: Box::new(source),
            })
    }

    fn learn_address(&self, node: &str, ip: std::net::Ipv4Addr) {
        NodeSteps::learn_address(self, &NodeName(node.to_string()), ip);
    }

    fn learn_private_address(&self, node: &str, ip: std::net::Ipv4Addr) {
        NodeSteps::learn_private_address(self, &NodeName(node.to_string()), ip);
    }

    fn forget(&self, node: &str) {
        NodeSteps::forget(self, &NodeName(node.to_string()));
    }

    async fn wait_ready(
        &self,
        slot: &str,
        address: Option<std::net::Ipv4Addr>,
    ) -> Result<bool, ApplyError> {
        NodeSteps::wait_ready(self, &NodeName(slot.to_string()), address)
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

/// True for steps that act on a node or a cluster rather than on Contabo
/// ([`StepKind::is_node_step`]).
pub fn is_node_step(kind: &StepKind) -> bool {
    kind.is_node_step()
}
