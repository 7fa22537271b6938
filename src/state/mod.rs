//! Many operators, one truth: the apply lock and the order journal kept in
//! the Core cluster's Kubernetes API, so that every operator (and every CI
//! job) applying the same inventory, from any machine, is kept apart by one
//! lock and sees one journal.
//!
//! Why the cluster: the lock must hold across machines, and the journal
//! must survive the machine that crashed between an order and its answer
//! (Contabo may take a while to list a new instance, and has no idempotency
//! key). The Core cluster's API (etcd underneath) is a store every operator
//! already reaches — over SSH to a control-plane node, with the host keys
//! pinned in `known_hosts` — and it offers exactly the primitive both need:
//! an atomic create, and a compare-and-swap on `metadata.resourceVersion`.
//!
//! The pieces:
//! - [`objects`]: the [`KubeObjects`] seam (get, create, replace with a
//!   resource version) and its real implementation, `kubectl` with
//!   manifests on stdin ([`KubectlObjects`]): on a control node over SSH, or
//!   on the operator's machine with their kubeconfig (`access =
//!   "kubeconfig"`); and an in-memory fake for unit tests;
//! - [`lease`]: the lock, a `coordination.k8s.io/v1` `Lease`, taken by an
//!   atomic create or by a compare-and-swap once the holder's lease expired,
//!   renewed in the background while apply runs, released at the end;
//! - [`journal`]: the order journal as a `ConfigMap`, appended to with a
//!   compare-and-swap and retried (re-read, re-append) on conflict;
//! - [`orders`]: the journal's entries, their text format and the
//!   [`JournalStore`] seam both journals implement;
//! - [`lock`]: who holds the apply lock, and the [`HeldLock`] seam both
//!   locks implement;
//! - [`local`]: the local backend, `<inventory>/.kiwi/` (an OS file lock
//!   and an fsynced journal file).
//!
//! `apply` depends on this module, never the reverse: it records through
//! [`JournalStore`] and holds a [`HeldLock`].
//!
//! Which store an inventory uses is written in its `[state]` table
//! (`backend = "core-cluster"` or `"local"`); there is no silent fallback
//! from one to the other. Neither object holds a secret: the lease holds who
//! took it (user, host, pid, time), the journal slot names, product ids,
//! instance ids, trace ids and times.

pub mod journal;
pub mod lease;
pub mod local;
pub mod lock;
pub mod objects;
pub mod orders;

#[cfg(test)]
pub(crate) mod fake;

pub use journal::ClusterJournal;
pub use lease::{LeaseGuard, LeaseSettings, LeaseState};
pub use local::{ApplyLock, OrderJournal};
pub use lock::{HeldLock, Holder};
pub use objects::{KubeObjects, KubectlObjects, LocalKubectl, Object, ObjectKind, Written};
pub use orders::{Entry, Event, JournalStore};

use std::path::PathBuf;

/// The namespace of the Core cluster that kiwi-infra owns.
pub const NAMESPACE: &str = "kiwi-infra";
/// The apply lock's `Lease`.
pub const LEASE_NAME: &str = "kiwi-infra-apply";
/// The order journal's `ConfigMap`.
pub const JOURNAL_NAME: &str = "kiwi-infra-orders";
/// The key of the journal's text in the `ConfigMap`'s `data`.
pub const JOURNAL_KEY: &str = "orders.jsonl";

/// Failures of the state (the apply lock and the order journal, local or
/// kept in the Core cluster). Each names the file, the object or the node.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another apply holds the lock and its lease is being renewed.
    #[error(
        "another apply holds the lock (Lease {NAMESPACE}/{LEASE_NAME} in the Core cluster): \
         {holder}; its lease runs until {expires} unless renewed. Wait for it to finish, or \
         rerun with --lock-timeout to wait for it"
    )]
    Held {
        /// Who holds it and since when.
        holder: String,
        /// When the lease expires unless renewed (UTC).
        expires: String,
    },
    /// `kiwi-infra unlock` refused: the holder's lease is still live.
    #[error(
        "refusing to break the lock (Lease {NAMESPACE}/{LEASE_NAME}): {holder} still holds it \
         and its lease runs until {expires}; an apply that renews it is running. Stop that \
         apply, or wait until the lease has expired, then run `kiwi-infra unlock` again"
    )]
    StillHeld {
        /// Who holds it and since when.
        holder: String,
        /// When the lease expires unless renewed (UTC).
        expires: String,
    },
    /// This apply's lease was taken by another (it could not renew it in
    /// time): nothing more is ordered.
    #[error(
        "this apply lost the lock (Lease {NAMESPACE}/{LEASE_NAME}): {what}. Nothing more is \
         ordered; rerun `kiwi-infra apply` once the other apply has finished"
    )]
    Lost {
        /// What happened.
        what: String,
    },
    /// No control node of the Core cluster answered.
    #[error(
        "the inventory keeps its lock and order journal in the Core cluster ([state] backend = \
         \"core-cluster\"), but no control-plane node answered (tried {tried}). Nothing was \
         changed. Check the nodes and the pinned host keys in known_hosts; the local backend \
         is never used instead"
    )]
    Unreachable {
        /// Each node tried, with its error.
        tried: String,
    },
    /// kubectl failed in a way that is not a conflict.
    #[error("`{command}` on {node} failed with status {status:?}: {stderr}")]
    Kubectl {
        /// Control node.
        node: String,
        /// The command (never holds a secret: manifests go on stdin).
        command: String,
        /// Exit status.
        status: Option<i32>,
        /// stderr, secrets masked.
        stderr: String,
    },
    /// kubectl could not be run on this machine (`[state] access =
    /// "kubeconfig"`): not installed, or it did not answer in time.
    #[error("cannot run `{command}` on this machine with the operator's kubeconfig")]
    LocalKubectl {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SSH to the control node failed.
    #[error("cannot run kubectl on {node}")]
    Ssh {
        /// Control node.
        node: String,
        /// The cause.
        #[source]
        source: crate::ssh::SshError,
    },
    /// An object in the cluster does not read as kiwi-infra writes it.
    #[error("{object} in the Core cluster is not usable: {what}")]
    Malformed {
        /// `Lease kiwi-infra/kiwi-infra-apply`, …
        object: String,
        /// What is wrong, and what was expected.
        what: String,
    },
    /// A line of the order journal, other than a last line cut short by a
    /// crash, cannot be read.
    #[error(
        "{}:{line}: the order journal has an unreadable line ({reason}); it records which \
         orders may exist, so nothing is applied until it is repaired. Compare it with the \
         Contabo panel, then fix or remove that line",
        path.display()
    )]
    JournalCorrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why it cannot be read.
        reason: String,
    },

    /// The order journal could not be read or written; no order is sent
    /// without it.
    #[error("cannot use the order journal {path}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Another apply holds the inventory's lock.
    #[error("{holder}; wait for it to finish (the lock is {path})")]
    LockHeld {
        /// The lock file.
        path: PathBuf,
        /// Who holds it and since when, as far as the file says.
        holder: String,
    },

    /// The lock file could not be opened or locked.
    #[error("cannot take the apply lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A compare-and-swap kept losing to other writers.
    #[error(
        "{object} in the Core cluster kept changing under this apply ({attempts} attempts); \
         another client writes it. Nothing was recorded"
    )]
    Contended {
        /// The object.
        object: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl StateError {
    /// The error and all its causes on one line each, as the summary prints
    /// them: secrets masked and outside text escaped for the terminal.
    pub fn chain(&self) -> String {
        crate::secret::redact::error_chain(self, "\n    caused by: ")
    }

    /// True when the error is the operator's to sort out (a held lock, an
    /// unreachable or misconfigured store) rather than a fault of the tool.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, StateError::Contended { .. })
    }
}
