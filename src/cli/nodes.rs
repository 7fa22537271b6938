//! Reaching nodes from the CLI: the SSH settings from flags and environment,
//! the node executor, and observing every cluster for `plan`, `apply` and
//! `status`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::GlobalArgs;
use crate::bootstrap::{BootstrapSettings, SshNodeExecutor};
use crate::inventory::Desired;
use crate::observe::clusters::observe_clusters;
use crate::plan::Observed;
use crate::ssh::{KnownHosts, OpenSshConnector, SshSettings};

/// The node executor the CLI uses.
pub(super) type Nodes = SshNodeExecutor<OpenSshConnector>;

/// A node executor for `desired`, knowing the addresses of every running
/// owned instance in `observed` (and the Core control plane's).
pub(super) fn executor(global: &GlobalArgs, desired: &Desired, observed: &Observed) -> Nodes {
    let mut ssh = SshSettings::production(KnownHosts::path_in(&global.inventory));
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
    let addresses: BTreeMap<String, String> = crate::plan::node_addresses(desired, observed)
        .into_iter()
        .map(|(node, ip)| (node, ip.to_string()))
        .collect();
    SshNodeExecutor::new(OpenSshConnector::new(ssh), desired, addresses, settings)
}

/// Fills `observed.clusters` by asking each cluster over SSH.
pub(super) async fn observe_nodes(nodes: &Nodes, desired: &Desired, observed: &mut Observed) {
    observed.clusters = observe_clusters(nodes, desired, observed).await;
}

/// A whole number from the environment (tests and the sandbox shorten waits).
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
