//! Where the apply lock and the order journal live, as the inventory's
//! `[state]` table says: the local `<inventory>/.kiwi/` folder, or a Lease
//! and a ConfigMap in the Core cluster reached with kubectl on a
//! control-plane node over SSH (pinned host keys). The choice is the
//! inventory's; a Core cluster that cannot be reached is an error, never a
//! reason to use the local files instead. Also `kiwi-infra unlock`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::args::{GlobalArgs, UnlockArgs};
use super::{nodes, CliError};
use crate::apply::journal::JournalStore;
use crate::apply::lock::{HeldLock, Holder};
use crate::apply::{ApplyError, ApplyLock, OrderJournal};
use crate::inventory::{Desired, StateAccess, StateBackend, CORE_CLUSTER};
use crate::ssh::NodeConnector;
use crate::ssh::{OpenSshConnector, OpenSshExec};
use crate::state::lease::{self, system_clock, Unlocked};
use crate::state::{ClusterJournal, KubectlObjects, LeaseSettings, LocalKubectl, StateError};

/// The store in the Core cluster, as the CLI reaches it.
type CoreStore = KubectlObjects<OpenSshExec>;

/// The held lock and the journal of this apply.
pub(super) struct State {
    /// The lock; released by [`State::finish`].
    pub lock: Box<dyn HeldLock>,
    /// The order journal.
    pub journal: Box<dyn JournalStore>,
    /// The SSH connection to the control node, closed at the end.
    store: Option<Arc<CoreStore>>,
}

impl State {
    /// Releases the lock and closes the connection. A failed release is
    /// only logged: the lease expires on its own.
    pub async fn finish(self) {
        if let Err(e) = self.lock.release().await {
            tracing::warn!(error = %e.chain(), "could not release the apply lock; it expires on its own");
        }
        drop(self.lock);
        drop(self.journal);
        if let Some(store) = self.store {
            store.close().await;
        }
    }
}

fn state_error(e: StateError) -> CliError {
    if e.is_user_error() {
        CliError::User(ApplyError::State(e).chain())
    } else {
        CliError::Internal(ApplyError::State(e).chain())
    }
}

/// Reaches the Core cluster as `[state] access` says: the first Core
/// control-plane node that answers over SSH, in the inventory's order, with
/// its host key checked against `known_hosts`; or kubectl on this machine
/// with the operator's kubeconfig.
async fn connect_core(global: &GlobalArgs, desired: &Desired) -> Result<Arc<CoreStore>, CliError> {
    if let StateAccess::Kubeconfig { context } = &desired.state.access {
        return Ok(Arc::new(KubectlObjects::local(LocalKubectl {
            context: context.clone(),
        })));
    }
    let control_plane = desired
        .clusters
        .iter()
        .find(|c| c.name == CORE_CLUSTER)
        .map(|c| c.control_plane().to_vec())
        .unwrap_or_default();
    let ssh = nodes::checked_ssh_settings(global)?;
    let connector = OpenSshConnector::new(ssh);
    let mut tried = Vec::new();
    for node in &control_plane {
        match connector
            .connect(&node.name, &node.address.to_string())
            .await
        {
            Ok(exec) => return Ok(Arc::new(KubectlObjects::new(exec))),
            Err(e) => tried.push(format!(
                "{}: {}",
                node.name,
                crate::secret::redact::error_chain(&e, ": ")
            )),
        }
    }
    Err(state_error(StateError::Unreachable {
        tried: if tried.is_empty() {
            "none: [core] lists no control_plane".into()
        } else {
            tried.join("; ")
        },
    }))
}

/// Takes the apply lock and opens the order journal where the inventory
/// keeps them, waiting up to `wait` for another apply. Says on stderr
/// which store it is.
pub(super) async fn take(
    global: &GlobalArgs,
    desired: &Desired,
    wait: Duration,
) -> Result<State, CliError> {
    match desired.state.backend {
        StateBackend::Local => {
            let lock = ApplyLock::acquire_waiting(&global.inventory, wait)
                .await
                .map_err(state_error)?;
            let journal = OrderJournal::open(&global.inventory).map_err(state_error)?;
            if !global.quiet {
                eprintln!(
                    "Apply lock and order journal: local, in {} (one machine only; [state] \
                     backend = \"core-cluster\" in kiwi.toml shares them through the Core cluster)",
                    crate::text::escape_for_terminal(
                        &global
                            .inventory
                            .join(crate::apply::lock::STATE_DIR)
                            .display()
                            .to_string()
                    )
                );
            }
            Ok(State {
                lock: Box::new(lock),
                journal: Box::new(journal),
                store: None,
            })
        }
        StateBackend::CoreCluster => {
            let store = connect_core(global, desired).await?;
            let duration = Duration::from_secs(u64::from(desired.state.lease_seconds));
            let settings = LeaseSettings {
                duration,
                wait,
                poll: (duration / 3).clamp(Duration::from_millis(200), Duration::from_secs(2)),
            };
            let guard = match lease::acquire(
                Arc::clone(&store),
                &Holder::current(),
                settings,
                system_clock(),
            )
            .await
            {
                Ok(guard) => guard,
                Err(e) => {
                    store.close().await;
                    return Err(state_error(e));
                }
            };
            let journal = match ClusterJournal::open(Arc::clone(&store), Some(guard.watch())).await
            {
                Ok(journal) => journal,
                Err(e) => {
                    let _ = guard.release().await;
                    store.close().await;
                    return Err(state_error(e));
                }
            };
            // An inventory that moved from the local journal keeps what it
            // recorded: orders placed but not listed yet, unsettled ones.
            let local = crate::apply::journal::local_entries(&global.inventory)
                .map_err(|e| CliError::User(e.chain()));
            let imported = match local {
                Ok(local) if !local.is_empty() => journal.import(&local).await.map_err(state_error),
                Ok(_) => Ok(0),
                Err(e) => Err(e),
            };
            let imported = match imported {
                Ok(n) => n,
                Err(e) => {
                    let _ = guard.release().await;
                    store.close().await;
                    return Err(e);
                }
            };
            if !global.quiet {
                eprintln!(
                    "Apply lock: {}. Order journal: {}",
                    guard.describe(),
                    crate::state::journal::journal_location().display()
                );
            }
            if imported > 0 {
                eprintln!(
                    "Imported {imported} entr{} of the local order journal ({}) into the Core \
                     cluster's, so that no order it recorded is bought again. The local file is \
                     kept; importing it again adds nothing.",
                    if imported == 1 { "y" } else { "ies" },
                    crate::text::escape_for_terminal(
                        &global
                            .inventory
                            .join(crate::apply::lock::STATE_DIR)
                            .join("orders.jsonl")
                            .display()
                            .to_string()
                    )
                );
            }
            Ok(State {
                lock: Box::new(guard),
                journal: Box::new(journal),
                store: Some(store),
            })
        }
    }
}

/// The order journal's entries, read where the inventory keeps it
/// (nothing is changed).
pub(super) async fn journal_entries(
    global: &GlobalArgs,
    desired: &Desired,
) -> Result<Vec<crate::apply::journal::Entry>, CliError> {
    match desired.state.backend {
        StateBackend::Local => crate::apply::journal::local_entries(&global.inventory)
            .map_err(|e| CliError::User(e.chain())),
        StateBackend::CoreCluster => {
            let store = connect_core(global, desired).await?;
            let journal = ClusterJournal::open(Arc::clone(&store), None).await;
            store.close().await;
            let journal = journal.map_err(state_error)?;
            // The local journal of an inventory that moved counts too.
            let local = crate::apply::journal::local_entries(&global.inventory)
                .map_err(|e| CliError::User(e.chain()))?;
            Ok(crate::state::journal::merge_entries(
                &journal.entries(),
                &local,
            ))
        }
    }
}

/// `kiwi-infra unlock`: breaks a stuck lock, refusing while its holder's
/// lease is still being renewed.
pub(super) async fn unlock(global: &GlobalArgs, _args: &UnlockArgs) -> Result<ExitCode, CliError> {
    let desired = super::plan::load_inventory(global)?;
    match desired.state.backend {
        StateBackend::Local => match ApplyLock::acquire(&global.inventory) {
            Ok(_) => {
                println!("The apply lock is not held; nothing to break.");
                Ok(ExitCode::SUCCESS)
            }
            Err(StateError::LockHeld { path, holder }) => Err(CliError::User(format!(
                "refusing to break the local apply lock {}: {holder}, and its process is still \
                 running (the OS frees the lock the moment that process ends, however it ends). \
                 Stop that apply, or wait for it",
                path.display()
            ))),
            Err(e) => Err(state_error(e)),
        },
        StateBackend::CoreCluster => {
            let store = connect_core(global, &desired).await?;
            let result = lease::break_lock(&*store, system_clock()).await;
            store.close().await;
            match result.map_err(state_error)? {
                Unlocked::NotHeld => println!("The apply lock is not held; nothing to break."),
                Unlocked::Broken(holder) => println!(
                    "Broke the apply lock (Lease {}/{}): it was held by {holder}, whose lease had \
                     expired. Check the order journal's unresolved orders with `kiwi-infra plan` \
                     before applying",
                    crate::state::NAMESPACE,
                    crate::state::LEASE_NAME
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
