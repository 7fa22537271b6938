//! `kiwi-infra kubeconfig CLUSTER`: the admin kubeconfig of one cluster,
//! with its server rewritten to the cluster's endpoint, printed, written
//! with mode 0600, or merged into an existing file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::args::{GlobalArgs, KubeconfigArgs};
use super::plan::{load_inventory, observe};
use super::{nodes, settings, CliError};
use crate::kubeconfig;
use crate::secret::Secret;

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
    let client = settings::contabo_client(global)?;
    let observed = observe(&client, &desired).await?;
    let executor = nodes::executor(global, &desired, &observed)?;
    let fetched = executor.admin_kubeconfig(&args.cluster).await;
    executor.close().await;
    let (raw, server) = fetched?;
    let renamed = kubeconfig::rename(&raw, &args.cluster, &server)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    match (&args.out, &args.merge) {
        (Some(path), _) => write_private(path, &renamed)?,
        (None, Some(path)) => {
            // A regular file of bounded size only: a FIFO or a device given
            // as the file to merge into is refused, not read forever.
            let existing =
                crate::localfs::read_text_file_if_exists(path, crate::localfs::KUBECONFIG_LIMIT)
                    .map_err(|e| CliError::User(e.to_string()))?
                    .map_or_else(|| Secret::new(String::new()), Secret::new);
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
        args.cluster
    );
    Ok(())
}

/// Writes `text` with mode 0600 through a temporary file and a rename.
fn write_private(path: &Path, text: &Secret) -> Result<(), CliError> {
    let tmp = path.with_extension("kiwi-tmp");
    let io = |e: std::io::Error| CliError::User(format!("cannot write {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.expose().as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
