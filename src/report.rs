//! Progress reporting, as a narrow trait the core talks to.
//!
//! `apply` runs for minutes and works on many nodes at once, so the operator
//! needs to see what each node is doing. The core must not know how that is
//! shown (progress bars on a terminal, timestamped lines in CI, nothing with
//! `-q`): it calls a [`Reporter`], and only the CLI layer (`cli/progress.rs`)
//! knows indicatif. [`NoReporter`] and [`RecordingReporter`] serve tests and
//! library users.

use std::fmt;
use std::sync::Mutex;

use crate::plan::{Step, StepId};

/// Where a node (a slot) stands during an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Looking for the slot's instance and placing its order.
    Ordering,
    /// Contabo is setting the machine up.
    Provisioning,
    /// The OS is being installed (first install or reinstall).
    Installing,
    /// Reinstall requested.
    Reinstalling,
    /// Contabo reports the instance running.
    Running,
    /// Waiting for the node to answer over SSH and finish cloud-init.
    Connecting,
    /// The node answers over SSH and cloud-init has finished.
    Reachable,
    /// k3s / kubeadm is being set up on it.
    Bootstrapping,
    /// Labels and taints are being set.
    Labelling,
    /// Waiting in a status this build does not know, or not listed yet.
    Waiting(String),
    /// Something failed; the final summary says what.
    Failed,
    /// Only a human can move it on; the final summary says what to do.
    NeedsHuman,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Ordering => f.write_str("ordering"),
            Stage::Provisioning => f.write_str("provisioning"),
            Stage::Installing => f.write_str("installing"),
            Stage::Reinstalling => f.write_str("reinstalling"),
            Stage::Running => f.write_str("running"),
            Stage::Connecting => f.write_str("connecting"),
            Stage::Reachable => f.write_str("reachable over SSH"),
            Stage::Bootstrapping => f.write_str("bootstrapping"),
            Stage::Labelling => f.write_str("labelling"),
            Stage::Waiting(what) => write!(f, "waiting ({what})"),
            Stage::Failed => f.write_str("failed"),
            Stage::NeedsHuman => f.write_str("needs you"),
        }
    }
}

impl Stage {
    /// True for stages after which nothing more happens to the node in this
    /// step. (A node may still move on in a later step of the same run, so
    /// a reporter shows the node's final state only when the run ends: see
    /// `apply::summary::node_states`.)
    pub fn is_final(&self) -> bool {
        matches!(self, Stage::Running | Stage::Failed | Stage::NeedsHuman)
    }
}

/// How one step ended, in words for people. The executor keeps the full
/// errors for the final summary; reporters get this short form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Done; the text says what was found or changed.
    Done(String),
    /// Deliberately not carried out (node access, destructive steps); the
    /// reason says why. The step stays pending.
    NotCarriedOut(HoldBack),
    /// Not attempted because a step it depends on did not succeed.
    Skipped {
        /// The dependency that did not succeed.
        because: StepId,
    },
    /// Failed; the text is the error with its causes.
    Failed(String),
    /// Waiting ended in a state only a human can resolve; the text says what to do.
    NeedsHuman(String),
}

impl StepOutcome {
    /// True when the step's work is done.
    pub fn is_done(&self) -> bool {
        matches!(self, StepOutcome::Done(_))
    }

    /// True when the step failed (as opposed to being left pending).
    pub fn is_failure(&self) -> bool {
        matches!(self, StepOutcome::Failed(_))
    }
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepOutcome::Done(text) => write!(f, "done: {text}"),
            StepOutcome::NotCarriedOut(why) => write!(f, "not carried out: {why}"),
            StepOutcome::Skipped { because } => {
                write!(f, "skipped because {because} did not succeed")
            }
            StepOutcome::Failed(error) => write!(f, "failed: {error}"),
            StepOutcome::NeedsHuman(what) => write!(f, "needs you: {what}"),
        }
    }
}

/// Why a step was deliberately not carried out: a typed reason, so that
/// the summary tells them apart by value rather than by comparing prose.
/// `Display` gives the words the operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldBack {
    /// A destructive step (drain, delete node, cancel, reinstall of a
    /// running machine) and `--allow-destroy` was not given.
    NeedsAllowDestroy,
    /// A destructive step in a cluster the inventory marks
    /// `protected = true`: it never runs, whatever the flags.
    ProtectedCluster {
        /// The cluster's name, from the plan step.
        cluster: String,
    },
    /// A node step in a run that reaches no node (`apply::NoNodeAccess`).
    NoNodeAccess,
    /// A Contabo step handed to the node side, which does not carry it out.
    NotANodeStep,
    /// A kind of step this release does not carry out.
    NotInThisRelease,
}

impl fmt::Display for HoldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldBack::NeedsAllowDestroy => f.write_str("needs --allow-destroy"),
            HoldBack::ProtectedCluster { cluster } => write!(
                f,
                "cluster {cluster} is protected (protected = true in the inventory); no \
                 destructive step runs there"
            ),
            HoldBack::NoNodeAccess => f.write_str("no node access in this run"),
            HoldBack::NotANodeStep => {
                f.write_str("not a node step; the Contabo side carries it out")
            }
            HoldBack::NotInThisRelease => {
                f.write_str("this kind of step is not carried out by this kiwi-infra release")
            }
        }
    }
}

/// Receives progress from the core. Calls come from many tasks at once, so
/// implementations synchronise internally and must not block for long.
pub trait Reporter: Send + Sync {
    /// A step begins.
    fn step_started(&self, step: &Step);
    /// A step ended.
    fn step_finished(&self, step: &StepId, outcome: &StepOutcome);
    /// A node (slot) moved to another stage.
    fn node_stage(&self, slot: &str, stage: &Stage);
    /// Anything else the operator should read while it happens.
    fn message(&self, text: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {
    fn step_started(&self, _step: &Step) {}
    fn step_finished(&self, _step: &StepId, _outcome: &StepOutcome) {}
    fn node_stage(&self, _slot: &str, _stage: &Stage) {}
    fn message(&self, _text: &str) {}
}

/// One call received by a [`RecordingReporter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// [`Reporter::step_started`].
    StepStarted(StepId),
    /// [`Reporter::step_finished`].
    StepFinished(StepId, StepOutcome),
    /// [`Reporter::node_stage`].
    NodeStage(String, Stage),
    /// [`Reporter::message`].
    Message(String),
}

/// Keeps every call, in order, for tests to inspect.
#[derive(Debug, Default)]
pub struct RecordingReporter {
    events: Mutex<Vec<Event>>,
}

impl RecordingReporter {
    /// Everything received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The stages one slot went through, in order.
    pub fn stages_of(&self, slot: &str) -> Vec<Stage> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::NodeStage(s, stage) if s == slot => Some(stage),
                _ => None,
            })
            .collect()
    }

    fn push(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

impl Reporter for RecordingReporter {
    fn step_started(&self, step: &Step) {
        self.push(Event::StepStarted(step.id.clone()));
    }
    fn step_finished(&self, step: &StepId, outcome: &StepOutcome) {
        self.push(Event::StepFinished(step.clone(), outcome.clone()));
    }
    fn node_stage(&self, slot: &str, stage: &Stage) {
        self.push(Event::NodeStage(slot.to_string(), stage.clone()));
    }
    fn message(&self, text: &str) {
        self.push(Event::Message(text.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_back_reasons_read_as_the_words_operators_and_scripts_know() {
        let cases = [
            (HoldBack::NeedsAllowDestroy, "needs --allow-destroy"),
            (
                HoldBack::ProtectedCluster {
                    cluster: "core".into(),
                },
                "cluster core is protected (protected = true in the inventory); no destructive \
                 step runs there",
            ),
            (HoldBack::NoNodeAccess, "no node access in this run"),
            (
                HoldBack::NotANodeStep,
                "not a node step; the Contabo side carries it out",
            ),
            (
                HoldBack::NotInThisRelease,
                "this kind of step is not carried out by this kiwi-infra release",
            ),
        ];
        for (why, text) in cases {
            assert_eq!(why.to_string(), text);
            assert_eq!(
                StepOutcome::NotCarriedOut(why).to_string(),
                format!("not carried out: {text}")
            );
        }
    }
}
