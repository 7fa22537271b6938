//! Errors of the apply layer. Each names the step, the slot or resource and,
//! where known, the instance id, so the final summary says what failed where;
//! the Contabo error underneath (with its request and trace ids) is the source.

use std::time::Duration;

use crate::cloudinit::CloudInitError;
use crate::contabo::models::InstanceId;
use crate::contabo::ContaboError;
use crate::plan::StepId;
use crate::ssh::{HostKeyError, KnownHostsError, SshError};

/// Everything that can go wrong while applying a plan.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A Contabo call of a step failed.
    #[error("step {step}: {action}")]
    Contabo {
        /// The step.
        step: StepId,
        /// What the step was doing, e.g. `creating tag kiwi-managed`.
        action: String,
        /// Contabo's answer.
        #[source]
        source: ContaboError,
    },

    /// A private-network step cannot go on (the network is missing or
    /// ambiguous, the instance lacks the add-on, no address was given).
    #[error("step {step}: {what}")]
    PrivateNetwork {
        /// The step.
        step: StepId,
        /// What is wrong and what to do.
        what: String,
    },

    /// A node step (bootstrap, join, label, taint) failed on a node.
    #[error("step {step}")]
    Node {
        /// The step.
        step: StepId,
        /// What failed on which node.
        #[source]
        source: Box<crate::node::NodeError>,
    },

    /// An order's answer was lost and looking for its instance kept failing:
    /// kiwi-infra will not order again until it knows.
    #[error(
        "step {step}: the order of {slot} may have been placed, and {attempts} look-ups by name \
         failed; nothing was ordered again. Rerun `kiwi-infra apply`: it looks for {slot} first"
    )]
    OrderUnresolved {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
        /// Look-ups tried.
        attempts: u32,
        /// The last look-up's error.
        #[source]
        source: ContaboError,
    },

    /// An order was sent again and again without an instance appearing.
    #[error(
        "step {step}: ordered {slot} {attempts} times without Contabo confirming or listing it; \
         stopped to avoid buying more than one. Check the Contabo Customer Control Panel, then \
         rerun `kiwi-infra apply`"
    )]
    OrderNotConfirmed {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
        /// Orders sent.
        attempts: u32,
    },

    /// An instance with the slot's name exists that this tool did not order
    /// (not in the plan, not in the order journal).
    #[error(
        "step {step}: instance {instance} named {slot} appeared since the plan was made and \
         kiwi-infra did not order it; it is left alone. Run `kiwi-infra plan` (with --adopt to \
         take it over)"
    )]
    ForeignInstance {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
        /// The instance found.
        instance: InstanceId,
    },

    /// The plan names an OS image the API did not know when planning.
    #[error("step {step}: image {image:?} was not found at Contabo; fix provider.image in the inventory")]
    ImageUnresolved {
        /// The step.
        step: StepId,
        /// Image name.
        image: String,
    },

    /// The SSH key secret an order needs does not exist.
    #[error("step {step}: the SSH key secret {name} does not exist at Contabo")]
    SecretMissing {
        /// The step.
        step: StepId,
        /// Secret name.
        name: String,
    },

    /// A tag to assign does not exist.
    #[error("step {step}: tag {name} does not exist at Contabo")]
    TagMissing {
        /// The step.
        step: StepId,
        /// Tag name.
        name: String,
    },

    /// The instance a step works on cannot be found by name.
    #[error("step {step}: no live instance named {slot} exists")]
    InstanceMissing {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
    },

    /// An instance was not cancelled because it is not what the plan said.
    #[error("step {step}: instance {instance} ({slot}) was not cancelled: {reason}")]
    NotCancelled {
        /// The step.
        step: StepId,
        /// Slot name the plan gave it.
        slot: String,
        /// The instance.
        instance: InstanceId,
        /// Why not.
        reason: String,
    },

    /// Creating a resource failed and it is not there afterwards.
    #[error("step {step}: {what} could not be created and does not exist")]
    NotCreated {
        /// The step.
        step: StepId,
        /// What, e.g. `tag kiwi-managed`.
        what: String,
        /// Why the creation failed.
        #[source]
        source: ContaboError,
    },

    /// An order's fields are not something Contabo accepts.
    #[error("step {step}: {reason}")]
    InvalidOrder {
        /// The step.
        step: StepId,
        /// What is wrong.
        reason: String,
    },

    /// The user data could not be rendered.
    #[error("step {step}: cannot render the user data of {slot}")]
    UserData {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
        /// The template problem.
        #[source]
        source: CloudInitError,
    },

    /// No host key could be generated for a node; nothing was sent.
    #[error("step {step}: cannot generate a host key for {slot}; nothing was sent to Contabo")]
    HostKey {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
        /// Why.
        #[source]
        source: HostKeyError,
    },

    /// A node's host key could not be recorded; the order or reinstall was
    /// not sent, since the node would be unreachable without it.
    #[error(
        "step {step}: cannot record the host key of {slot}; the request was not sent to Contabo"
    )]
    KnownHosts {
        /// The step.
        step: StepId,
        /// Slot name.
        slot: String,
        /// The file problem.
        #[source]
        source: KnownHostsError,
    },

    /// A running node is not ready for kiwi-infra: not answering over SSH,
    /// a host key other than the recorded one, or cloud-init failed.
    #[error("{slot} is running but not ready for kiwi-infra")]
    NodeNotReady {
        /// Slot name.
        slot: String,
        /// What the node (or ssh) said.
        #[source]
        source: SshError,
    },

    /// An instance stayed in one status longer than allowed.
    #[error(
        "{slot} (instance {instance}) has been {status} for more than {} minutes; check it in \
         the Contabo Customer Control Panel, then rerun `kiwi-infra apply`",
        limit.as_secs().div_ceil(60)
    )]
    WaitTimedOut {
        /// Slot name.
        slot: String,
        /// The instance.
        instance: InstanceId,
        /// The status it stayed in.
        status: String,
        /// The limit for that status.
        limit: Duration,
    },

    /// The apply lock or the order journal, local or kept in the Core
    /// cluster (`crate::state`).
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl ApplyError {
    /// Wraps the Contabo error of a call that `step` made while doing
    /// `action` (e.g. `listing tags`).
    pub(super) fn contabo(
        step: &crate::plan::Step,
        action: impl Into<String>,
    ) -> impl FnOnce(ContaboError) -> ApplyError {
        let step = step.id.clone();
        let action = action.into();
        move |source| ApplyError::Contabo {
            step,
            action,
            source,
        }
    }

    /// The error and all its causes on one line each, as the summary prints
    /// them: secrets masked and outside text escaped for the terminal.
    pub fn chain(&self) -> String {
        crate::secret::redact::error_chain(self, "\n    caused by: ")
    }
}
