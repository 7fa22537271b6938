//! Reaching nodes from the CLI: the SSH settings from flags and environment,
//! the node executor, and observing every cluster for `plan`, `apply` and
//! `status`.

use std::collections::BTreeMap;

use super::args::GlobalArgs;
use super::CliError;
use crate::inventory::Desired;
use crate::node::{NodeSettings, SshNodeExecutor};
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
    let mut ssh = checked_ssh_settings(global)?;
    let mut settings = NodeSettings::default();
    super::settings::node_knobs(global)?.tune(&mut settings, &mut ssh);
    let addresses: BTreeMap<String, String> = crate::plan::node_addresses(desired, observed)
        .into_iter()
        .map(|(node, ip)| (node, ip.to_string()))
        .collect();
    let nodes = SshNodeExecutor::new(OpenSshConnector::new(ssh), desired, addresses, settings);
    for (node, ip) in crate::plan::private_addresses(desired, observed) {
        crate::node::NodeSteps::learn_private_address(&nodes, &crate::plan::NodeName(node), ip);
    }
    Ok(nodes)
}

/// [`ssh_settings`], with the known-hosts file and the identity checked to
/// be regular files: `ssh` reads them itself, and would wait forever on a
/// FIFO put in their place (no known-hosts file yet is fine).
pub(super) fn checked_ssh_settings(global: &GlobalArgs) -> Result<SshSettings, CliError> {
    let ssh = ssh_settings(global)?;
    crate::localfs::read_text_file_if_exists(&ssh.known_hosts, crate::localfs::KNOWN_HOSTS_LIMIT)
        .map_err(|e| CliError::User(format!("cannot use the known-hosts file: {e}")))?;
    if let Some(identity) = &global.ssh_identity {
        crate::localfs::check_regular_file(identity)
            .map_err(|e| CliError::User(format!("cannot use the SSH identity: {e}")))?;
    }
    Ok(ssh)
}

/// The SSH settings of the flags and the inventory, with every local path
/// that reaches ssh checked (`crate::ssh::openssh::ssh_path`): a path ssh
/// would misread is refused here, before anything is observed or run.
pub(super) fn ssh_settings(global: &GlobalArgs) -> Result<SshSettings, CliError> {
    let mut ssh = SshSettings::production(KnownHosts::path_in(&global.inventory));
    ssh.identity_file = global.ssh_identity.clone();
    ssh.check_paths()
        .map_err(|e| CliError::User(e.to_string()))?;
    Ok(ssh)
}

/// Fills `observed.clusters` by asking each cluster over SSH.
pub(super) async fn observe_nodes(nodes: &Nodes, desired: &Desired, observed: &mut Observed) {
    observed.clusters = observe_clusters(nodes.reads(), desired, observed).await;
}
