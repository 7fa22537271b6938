//! Reaching nodes: the [`RemoteExec`] seam through which kiwi-infra runs
//! commands on and uploads files to a node. The real implementation uses the
//! system's OpenSSH (through the `openssh` crate) so operators keep their
//! `~/.ssh/config`, agent, hardware keys and `ProxyJump`; host keys are
//! checked strictly against the inventory's known-hosts file.
//!
//! The pieces:
//! - [`hostkey`]: the ed25519 host key kiwi-infra generates for each node;
//! - [`known_hosts`]: `<inventory>/known_hosts`, one line per node, keyed by
//!   node name (`HostKeyAlias`);
//! - [`openssh`]: [`OpenSshExec`], the real transport;
//! - [`fake`]: [`FakeRemote`], a stateful stand-in for unit tests;
//! - `fake_cluster` (unit tests only): `FakeCluster`, a small in-memory
//!   Kubernetes cluster behind fake nodes that answers the kubectl and
//!   systemctl commands of the node steps (nodes, Ready, labels, taints,
//!   cordon, drain, delete, a k3s cluster's etcd members).
//!
//! What a node prints is outside text: it reaches an error only through
//! [`crate::secret::redact`], with every registered secret and everything
//! the command read from stdin masked.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::secret::{redact, Secret};

pub mod fake;
#[cfg(test)]
pub mod fake_cluster;
pub mod fake_nft;
pub mod hostkey;
pub mod known_hosts;
pub mod openssh;
pub mod pool;

pub use fake::FakeRemote;
pub use hostkey::{HostKey, HostKeyError};
pub use known_hosts::{KnownHosts, KnownHostsError};
pub use openssh::{OpenSshConnector, OpenSshExec, SshSettings};
pub use pool::{NodeConnector, PoolError, SessionPool};

/// The command that ends a node's first boot: it waits for cloud-init and
/// prints `status: done` when all went well (docs/node-contract.md).
pub const CLOUD_INIT_WAIT: &str = "cloud-init status --wait";

/// What a finished remote command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status; `None` when the command was killed by a signal.
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// A command to run on a node. Its text is shown in errors, so a command
/// that must carry a secret passes it through `stdin`, never in `command`.
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    /// Shell command line, run by the login shell of the admin user.
    pub command: String,
    /// Bytes fed to the command's standard input (may hold secrets).
    pub stdin: Option<Secret<Vec<u8>>>,
    /// Time limit; the command is abandoned (and reported) after it.
    pub timeout: Duration,
}

/// Runs commands on one node. Implementations: OpenSSH for real nodes and
/// simulated ones alike, and a stateful fake for unit tests.
pub trait RemoteExec: Send + Sync {
    /// The node's name, for messages.
    fn node(&self) -> &str;

    /// Runs `command` and returns its output, whatever its exit status.
    fn run(&self, command: &RemoteCommand)
        -> impl Future<Output = Result<Output, SshError>> + Send;

    /// Writes `contents` to `path` on the node (through `sudo`), creating
    /// parent directories, with the given mode (e.g. `0o600`).
    fn upload(
        &self,
        path: &str,
        contents: &Secret<Vec<u8>>,
        mode: u32,
    ) -> impl Future<Output = Result<(), SshError>> + Send;

    /// Waits until the node answers and its first boot is over: cloud-init
    /// finished cleanly and the hostname is the node's name. Gives up at
    /// `deadline`. Transports that connect (OpenSSH) first retry connecting
    /// with back-off, but never past a host-key problem.
    fn wait_ready(&self, deadline: Instant) -> impl Future<Output = Result<(), SshError>> + Send {
        first_boot_finished(self, deadline)
    }

    /// Ends the connection, if the transport keeps one (OpenSSH's master
    /// process would otherwise linger after the run until it idles out).
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Like [`RemoteExec::run`], but a non-zero exit is an
    /// [`SshError::Command`] keeping the command, status and the end of its
    /// stderr, with the secrets fed through stdin redacted.
    fn run_checked(
        &self,
        command: &RemoteCommand,
    ) -> impl Future<Output = Result<Output, SshError>> + Send {
        async move {
            let output = self.run(command).await?;
            if output.success() {
                Ok(output)
            } else {
                Err(command_failed(self.node(), command, &output))
            }
        }
    }
}

/// The first-boot checks of docs/node-contract.md, on a node that answers:
/// `cloud-init status --wait` with the time left until `deadline`, then
/// `hostname`.
pub async fn first_boot_finished<R: RemoteExec + ?Sized>(
    remote: &R,
    deadline: Instant,
) -> Result<(), SshError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let output = remote
        .run(&RemoteCommand {
            command: CLOUD_INIT_WAIT.to_string(),
            stdin: None,
            timeout: left.max(Duration::from_secs(1)),
        })
        .await?;
    let done = output.stdout.lines().any(|l| l.trim() == "status: done");
    if !output.success() || !done {
        return Err(SshError::CloudInit {
            node: remote.node().to_string(),
            status: output.status,
            output: redact::tail(&format!("{}{}", output.stdout, output.stderr), &[]),
        });
    }
    let output = remote
        .run_checked(&RemoteCommand {
            command: "hostname".to_string(),
            stdin: None,
            timeout: Duration::from_secs(30),
        })
        .await?;
    let hostname = output.stdout.trim();
    if hostname != remote.node() {
        return Err(SshError::WrongHostname {
            node: remote.node().to_string(),
            hostname: redact::excerpt(hostname),
        });
    }
    Ok(())
}

/// The error for a command that exited non-zero.
pub fn command_failed(node: &str, command: &RemoteCommand, output: &Output) -> SshError {
    let secrets: Vec<&[u8]> = command
        .stdin
        .iter()
        .map(|s| s.expose().as_slice())
        .collect();
    SshError::Command {
        node: node.to_string(),
        command: command.command.clone(),
        status: output.status,
        stderr: redact::tail(&output.stderr, &secrets),
    }
}

/// An error of the SSH transport, as an [`SshError`] may keep it. It can
/// quote what ssh or the node printed (ssh's stderr, a login banner), so
/// its whole chain is kept only as a redacted, escaped, capped excerpt.
pub fn transport_error(error: &dyn std::error::Error) -> Box<dyn std::error::Error + Send + Sync> {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    redact::excerpt(&text).into()
}

/// The command [`RemoteExec::upload`] runs: `sudo install` reading the
/// contents from stdin, so they never appear in a command line.
pub fn upload_command(path: &str, mode: u32) -> String {
    format!(
        "sudo install -D -m {mode:04o} /dev/stdin {}",
        shell_quote(path)
    )
}

/// `s` as one word for a POSIX shell: unchanged when it is plainly safe
/// (ASCII letters, digits and `-_./=:+,@`), else in single quotes. The one
/// quoting rule for every command kiwi-infra sends to a node: file paths,
/// node names, label keys and values, kubectl arguments (`node/`, `state/`).
/// Names the inventory accepts contain no quote, but quoting keeps a command
/// one word per argument regardless.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Failures reaching or using a node.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The node presented a host key other than the one kiwi-infra chose for it.
    #[error(
        "{node} ({address}) presented a host key that does not match the one recorded in \
         {known_hosts}; no command was run on it. If the node was reinstalled outside \
         kiwi-infra, reinstall it with kiwi-infra (which records its new key); otherwise \
         treat this as a possible man-in-the-middle"
    )]
    HostKeyMismatch {
        /// Node name.
        node: String,
        /// Address connected to.
        address: String,
        /// The known-hosts file.
        known_hosts: String,
    },
    /// No host key is recorded for the node: kiwi-infra never trusts on first use.
    #[error(
        "no host key is recorded for {node} in {known_hosts}, so kiwi-infra did not connect \
         (it never trusts a key on first use). For a node kiwi-infra ordered, reinstall it \
         with kiwi-infra, which gives it a new recorded key; for a node it did not order \
         (e.g. a Core control-plane node), add the line `{node} ssh-ed25519 AAAA…` with \
         the node's verified host key to {known_hosts}"
    )]
    UnknownHostKey {
        /// Node name.
        node: String,
        /// The known-hosts file.
        known_hosts: String,
    },
    /// A node name, address or user that is not a plain word: it could
    /// smuggle an option into ssh's command line or a directive into its
    /// configuration. Nothing was started.
    #[error(
        "refusing to connect over SSH: the {what} {} is not a plain name or address (letters, \
         digits, `.`, `_`, `-`, `:`, not starting with `-`)",
        crate::text::escape_for_terminal(value)
    )]
    UnsafeArgument {
        /// Which value (`node name`, `address`, `user`).
        what: &'static str,
        /// The value, as given.
        value: String,
    },
    /// A local path (the inventory's known-hosts file, the identity, the
    /// control directory, an included configuration) holds a character ssh
    /// would read as more than part of a path. Nothing was started.
    #[error(
        "refusing to use the {what} {} with ssh: the path {reason}. Expected a path without \
         control, invisible or line-breaking characters, quotes, backslashes, `%`, `$`, `#` \
         or glob characters (`*?[]`); move or rename it",
        crate::text::escape_for_terminal(&path.to_string_lossy())
    )]
    UnsafePath {
        /// Which path (`known-hosts file`, `SSH identity file`, …).
        what: &'static str,
        /// The path, as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Could not connect or authenticate.
    #[error("cannot reach {node} ({address}) over SSH")]
    Connect {
        /// Node name.
        node: String,
        /// Address connected to.
        address: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A command exceeded its time limit.
    #[error("`{command}` on {node} did not finish within {timeout:?}")]
    Timeout {
        /// Node name.
        node: String,
        /// The command (never holds secrets: those go through stdin).
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// A command failed (non-zero exit), with its stderr.
    #[error("`{command}` on {node} failed with status {status:?}: {stderr}")]
    Command {
        /// Node name.
        node: String,
        /// The command.
        command: String,
        /// Exit status.
        status: Option<i32>,
        /// Last lines of stderr, with known secrets redacted.
        stderr: String,
    },
    /// The transport failed mid-session.
    #[error("SSH session to {node} failed")]
    Session {
        /// Node name.
        node: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The node did not answer before the deadline.
    #[error(
        "{node} ({address}) did not answer over SSH within {}s ({attempts} attempts); check \
         that it booted (Contabo's VNC console) and that you can reach it (your SSH \
         configuration, agent and ProxyJump apply), then rerun `kiwi-infra apply`",
        waited.as_secs()
    )]
    NotReady {
        /// Node name.
        node: String,
        /// Address connected to.
        address: String,
        /// Connection attempts made.
        attempts: u32,
        /// How long it tried.
        waited: Duration,
        /// The last attempt's error.
        #[source]
        source: Box<SshError>,
    },
    /// cloud-init ended with an error (or not at all) on the node.
    #[error(
        "cloud-init did not finish cleanly on {node} (`cloud-init status --wait` exited with \
         {status:?}): {output}. See /var/log/cloud-init-output.log on the node; reinstalling \
         it with kiwi-infra starts over"
    )]
    CloudInit {
        /// Node name.
        node: String,
        /// Exit status of `cloud-init status --wait`.
        status: Option<i32>,
        /// The end of its output.
        output: String,
    },
    /// The node answers, with the right key, under another name: its user
    /// data was not applied as rendered.
    #[error(
        "{node} calls itself {hostname:?}: its user data was not applied. Reinstall it with \
         kiwi-infra"
    )]
    WrongHostname {
        /// Node name.
        node: String,
        /// What `hostname` printed.
        hostname: String,
    },
    /// Preparing the connection on this machine failed (temporary directory,
    /// generated ssh configuration).
    #[error("cannot prepare the SSH connection to {node}: {what}")]
    Local {
        /// Node name.
        node: String,
        /// What failed.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// Host-key problems: retrying cannot help, and nothing may run.
    pub fn is_host_key_problem(&self) -> bool {
        matches!(
            self,
            SshError::HostKeyMismatch { .. } | SshError::UnknownHostKey { .. }
        )
    }
}
