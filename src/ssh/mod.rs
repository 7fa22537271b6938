//! Reaching nodes: the [`RemoteExec`] seam through which kiwi-infra runs
//! commands on and uploads files to a node. The real implementation uses the
//! system's OpenSSH (through the `openssh` crate) so operators keep their
//! `~/.ssh/config`, agent, hardware keys and `ProxyJump`; host keys are
//! checked strictly against the inventory's known-hosts file.

use std::future::Future;
use std::time::Duration;

use crate::secret::Secret;

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
        "no host key is recorded for {node} in {known_hosts}; kiwi-infra only connects to \
         nodes whose key it chose itself (reinstall the node with kiwi-infra to give it one)"
    )]
    UnknownHostKey {
        /// Node name.
        node: String,
        /// The known-hosts file.
        known_hosts: String,
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
}
