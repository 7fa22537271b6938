//! Reaching nodes from the CLI: the SSH settings from flags and environment,
//! the node executor, and observing every cluster for `plan`, `apply` and
//! `status`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::GlobalArgs;
use super::CliError;
use crate::bootstrap::{BootstrapSettings, SshNodeExecutor};
use crate::inventory::Desired;
use crate::observe::clusters::observe_clusters;
use crate::plan::Observed;
use crate::ssh::{KnownHosts, OpenSshConnector, SshSettings};

/// The node executor the CLI uses.
pub(super) type Nodes = SshNodeExecutor<OpenSshConnector>;

/// A node executor for `desired`, knowing the addresses of every running
/// owned instance in `observed` (and the Core control plane's).
pub(super) fn executor(
    global: &GlobalArgs,
    desired: &Desired,
    observed: &Observed,
) -> Result<Nodes, CliError> {
    // `ssh` reads the known-hosts file and the identity itself, and would
    // wait forever on a FIFO put in their place: only regular files (or no
    // known-hosts file yet) are handed to it.
    let known_hosts = KnownHosts::path_in(&global.inventory);
    crate::localfs::read_text_file_if_exists(&known_hosts, crate::localfs::KNOWN_HOSTS_LIMIT)
        .map_err(|e| CliError::User(format!("cannot use the known-hosts file: {e}")))?;
    if let Some(identity) = &global.ssh_identity {
        crate::localfs::check_regular_file(identity)
            .map_err(|e| CliError::User(format!("cannot use the SSH identity: {e}")))?;
    }
    let mut ssh = SshSettings::production(known_hosts);
    ssh.identity_file = global.ssh_identity.clone();
    let mut settings = BootstrapSettings::default();
    if let Some(secs) = env_number("KIWI_NODE_READY_SECS") {
        settings.ready_timeout = Duration::from_secs(secs);
        settings.first_boot_timeout = Duration::from_secs(secs);
        ssh.ready_limit = Duration::from_secs(secs);
    }
    if let Some(ms) = env_number("KIWI_NODE_POLL_MS") {
        settings.poll = Duration::from_millis(ms);
    }
    let addresses: BTreeMap<String, String> = observed
        .instances
        .iter()
        .filter(|i| i.is_owned() && i.cancel_date.is_none())
        .filter_map(|i| Some((i.display_name.clone(), i.ipv4.clone()?)))
        .collect();
    Ok(SshNodeExecutor::new(
        OpenSshConnector::new(ssh),
        desired,
        addresses,
        settings,
    ))
}

/// Fills `observed.clusters` by asking each cluster over SSH.
pub(super) async fn observe_nodes(nodes: &Nodes, desired: &Desired, observed: &mut Observed) {
    observed.clusters = observe_clusters(nodes, desired, observed).await;
}

/// A whole number from the environment (tests and the sandbox shorten waits).
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
