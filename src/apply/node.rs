//! The seam for steps that run on nodes (k3s bootstrap and join, kubeadm
//! join, labels, taints, drain and delete). The real implementation is
//! `bootstrap::SshNodeExecutor`; [`NoNodeAccess`] stands in where no node
//! is reachable (unit tests of the Contabo side), and says so rather than
//! pretending.

use std::future::Future;

use crate::plan::{Step, StepKind};

use super::error::ApplyError;

/// How a node step ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStepDone {
    /// Done; the text says what changed.
    Done(String),
    /// Not carried out; the text says why. The step stays pending.
    NotCarriedOut(String),
}

/// Runs node steps.
pub trait NodeExecutor: Send + Sync {
    /// Carries out one node step (see [`is_node_step`]).
    fn run(&self, step: &Step) -> impl Future<Output = Result<NodeStepDone, ApplyError>> + Send;

    /// Tells the executor a node's address once its instance runs.
    fn learn_address(&self, _node: &str, _ip: std::net::Ipv4Addr) {}

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

/// A node executor that reaches no node: every node step is reported as
/// not carried out.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNodeAccess;

impl NodeExecutor for NoNodeAccess {
    async fn run(&self, _step: &Step) -> Result<NodeStepDone, ApplyError> {
        Ok(NodeStepDone::NotCarriedOut(
            "no node access in this run".into(),
        ))
    }
}

/// True for steps that act on a node or a cluster rather than on Contabo.
pub fn is_node_step(kind: &StepKind) -> bool {
    matches!(
        kind,
        StepKind::BootstrapK3sServer(_)
            | StepKind::JoinK3sServer(_)
            | StepKind::JoinK3sAgent(_)
            | StepKind::KubeadmJoin(_)
            | StepKind::SetLabel { .. }
            | StepKind::RemoveLabel { .. }
            | StepKind::RecordLabels { .. }
            | StepKind::SetTaint { .. }
            | StepKind::RemoveTaint { .. }
            | StepKind::DrainNode { .. }
            | StepKind::DeleteNode { .. }
            | StepKind::DeleteStaleNode { .. }
    )
}
