//! `kiwi-infra kubeconfig CLUSTER`: the admin kubeconfig of one cluster,
//! with its server rewritten to the cluster's endpoint, printed, written
//! with mode 0600, or merged into an existing file.

use std::path::Path;

use super::args::{GlobalArgs, KubeconfigArgs};
use super::plan::{load_inventory, observe};
use super::{nodes, settings, CliError};
use crate::cluster::ClusterReads;
use crate::ids::ClusterName;
use crate::kubeconfig;
use crate::node::{NodeError, NodeSettings};
use crate::secret::Secret;
use crate::ssh::OpenSshConnector;

/// `kiwi-infra kubeconfig`.
pub(super) async fn run(global: &GlobalArgs, args: &KubeconfigArgs) -> Result<(), CliError> {
    let desired = load_inventory(global)?;
    if desired.cluster(&args.cluster).is_none() {
        let known: Vec<&str> = desired.clusters.iter().map(|c| c.name.as_str()).collect();
        return Err(CliError::User(format!(
            "no cluster named {:?} in the inventory; expected one of: {}",
            args.cluster,
            known.join(", ")
        )));
    }
    let cluster = ClusterName::parse(&args.cluster).map_err(|e| CliError::User(e.to_string()))?;
    // A target that is not a regular file is refused before the cluster is
    // asked for its credentials.
    if let Some(path) = args.out.as_ref().or(args.merge.as_ref()) {
        crate::localfs::check_replaceable(path).map_err(|e| CliError::User(e.to_string()))?;
    }
    let client = settings::contabo_client(global)?;
    let entries = super::state::journal_entries(global, &desired).await?;
    let observed = observe(&client, &desired, &entries).await?;
    // Reading a file needs the cluster reads only, not the node steps.
    let addresses = crate::plan::node_addresses(&desired, &observed)
        .into_iter()
        .map(|(node, ip)| (node, ip.to_string()))
        .collect();
    let reads = ClusterReads::new(
        OpenSshConnector::new(nodes::checked_ssh_settings(global)?),
        &desired,
        addresses,
        NodeSettings::default().command_timeout,
    );
    let fetched = reads.admin_kubeconfig(&cluster).await;
    reads.close().await;
    let (raw, server) = fetched.map_err(NodeError::from)?;
    let renamed = kubeconfig::rename(&raw, cluster.as_str(), &server)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    match (&args.out, &args.merge) {
        (Some(path), _) => write_private(path, &renamed)?,
        (None, Some(path)) => {
            let existing = read_existing(path)?;
            let merged = kubeconfig::merge(&existing, &renamed)
                .map_err(|e| CliError::User(e.to_string()))?;
            write_private(path, &merged)?;
        }
        (None, None) => {
            // Printing credentials is what the operator asked for here.
            print!("{}", renamed.expose());
            return Ok(());
        }
    }
    eprintln!(
        "kubeconfig for {} written (context {0}, server {server})",
        cluster
    );
    Ok(())
}

/// The kubeconfig to merge into (empty if there is none yet). Only a
/// regular file of bounded size is read (`crate::localfs`): a FIFO or
/// `/dev/zero` given by mistake is refused instead of read forever.
fn read_existing(path: &Path) -> Result<Secret, CliError> {
    crate::localfs::read_text_file_if_exists(path, crate::localfs::KUBECONFIG_LIMIT)
        .map_err(|e| CliError::User(e.to_string()))
        .map(|text| Secret::new(text.unwrap_or_default()))
}

/// Writes `text` with mode 0600 through a temporary file and a rename
/// ([`crate::localfs::replace_file`]).
///
/// The temporary file gets a random name in the target's directory and is
/// created exclusively (`O_EXCL`, so a file or symbolic link planted there
/// is never opened) with mode 0600 before a byte is written; the rename
/// then replaces `path` itself. A `path` that is a symbolic link, a device,
/// a FIFO, a socket or a directory is refused rather than replaced or
/// written through.
fn write_private(path: &Path, text: &Secret) -> Result<(), CliError> {
    crate::localfs::replace_file(path, text.expose().as_bytes(), 0o600)
        .map_err(|e| CliError::User(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn kubeconfig_out_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("admin.yaml");
        // The old predictable temporary path, planted: a link to a file the
        // attacker can read, and a world-readable file of its own.
        let elsewhere = dir.path().join("attacker-readable");
        std::fs::write(&elsewhere, "").unwrap();
        std::os::unix::fs::symlink(&elsewhere, target.with_extension("kiwi-tmp")).unwrap();

        write_private(&target, &Secret::new("client-key-data: canary\n".into())).unwrap();

        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "client-key-data: canary\n"
        );
        assert_eq!(mode(&target), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".kiwi-") && n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn kubeconfig_out_replaces_a_world_readable_file_with_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("admin.yaml");
        let planted = target.with_extension("kiwi-tmp");
        for path in [&target, &planted] {
            std::fs::write(path, "old").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
        }

        write_private(&target, &Secret::new("secret".into())).unwrap();

        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "old");
    }

    #[test]
    fn kubeconfig_out_refuses_a_target_that_is_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        let target = dir.path().join("admin.yaml");
        std::os::unix::fs::symlink(&elsewhere, &target).unwrap();

        let err = write_private(&target, &Secret::new("secret".into())).unwrap_err();

        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
        assert!(std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn merge_refuses_to_read_a_fifo_or_a_device() {
        let err = read_existing(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        assert!(read_existing(&dir.path().join("none"))
            .unwrap()
            .expose()
            .is_empty());
        assert!(read_existing(dir.path()).is_err());
    }

    #[test]
    fn a_missing_directory_is_the_operators_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nested").join("k.yaml");
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        write_private(&target, &Secret::new("x".into())).unwrap();
        assert_eq!(mode(&target), 0o600);
        let err = write_private(&dir.path().join("missing/k.yaml"), &Secret::new("x".into()))
            .unwrap_err();
        assert!(err.to_string().contains("cannot write"), "{err}");
    }
}
