//! Execution: carry out a plan's steps against Contabo (and, later, the
//! nodes), wait for ordered machines to run, and say what happened.
//!
//! The pieces, each in its own file:
//! - [`executor`]: carries out a plan's steps, each through the part below
//!   that owns its concern, and holds destructive steps back
//!   ([`HoldBack`](crate::report::HoldBack)) without `--allow-destroy` or in
//!   a protected cluster;
//! - `schedule`: the generic step scheduler (the task graph, per-class
//!   concurrency limits, urgency, skipping what depends on a step that did
//!   not succeed), which knows nothing of Contabo;
//! - `order`: the order protocol with its journal, which makes a second
//!   purchase of a slot impossible by construction;
//! - `account`: the account's tags and secrets, with the one
//!   look-create-look that ensures them;
//! - `identity`: host keys, user data and `known_hosts`, recorded before a
//!   request is sent;
//! - `instance`: steps on one existing instance (tags, rename, reinstall,
//!   cancel) and which instance is each slot's;
//! - `network`: a cluster's private network and its members;
//! - [`wait`]: one poller for all nodes waiting for `running`, with
//!   per-status limits and advice for statuses that need a human;
//! - [`journal`]: the order journal that survives a killed apply, behind
//!   the `JournalStore` seam (re-exported from `crate::state`, where the
//!   local fsynced file and the Core cluster's copy live);
//! - [`lock`]: one apply per inventory at a time, behind the `HeldLock`
//!   seam (re-exported from `crate::state`, where the local file lock and
//!   the Core cluster's Lease live);
//! - [`resume`]: finishing what an interrupted apply began;
//! - [`node`]: the seam for node steps (carried out over SSH in `crate::node`);
//! - [`summary`]: the final report.

mod account;
mod error;
pub mod executor;
mod identity;
mod instance;
pub mod journal;
pub mod lock;
mod network;
pub mod node;
mod order;
pub mod resume;
mod schedule;
pub mod summary;
pub mod wait;

#[cfg(test)]
mod tests;

pub use error::ApplyError;
pub use executor::{
    execute, left_for_later, ApplyInput, ApplyOutcome, ApplySettings, Cancellation, TaskResult,
};
pub use journal::OrderJournal;
pub use lock::ApplyLock;
pub use node::{is_node_step, NoNodeAccess, NodeExecutor, NodeStepDone};
pub use order::{journal_claims, JOURNAL_HORIZON};
pub use wait::WaitSettings;
