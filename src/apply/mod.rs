//! Execution: carry out a plan's steps against Contabo (and, later, the
//! nodes), wait for ordered machines to run, and say what happened.
//!
//! The pieces, each in its own file:
//! - [`executor`]: the step graph, bounded concurrency, and the order logic
//!   that makes a second purchase of a slot impossible by construction;
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
pub mod journal;
pub mod lock;
pub mod node;
pub mod resume;
pub mod summary;
pub mod wait;

#[cfg(test)]
mod tests;

pub use error::ApplyError;
pub use executor::{
    execute, ApplyInput, ApplyOutcome, ApplySettings, Cancellation, TaskResult, NEEDS_ALLOW_DESTROY,
};
pub use journal::OrderJournal;
pub use lock::ApplyLock;
pub use node::{is_node_step, NoNodeAccess, NodeExecutor, NodeStepDone};
pub use wait::WaitSettings;
