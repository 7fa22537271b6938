//! [`OpenSshExec`]: the real [`RemoteExec`], driving the system's OpenSSH
//! client through the `openssh` crate (one multiplexed master connection
//! per node, commands over its control socket).
//!
//! Going through OpenSSH means operators keep their `~/.ssh/config`, agent,
//! hardware keys and `ProxyJump` through the admin network. What kiwi-infra
//! must control is host-key checking, and it must control it without
//! dropping the operator's configuration:
//!
//! - Entries in `<inventory>/known_hosts` are keyed by node name, because
//!   the key is recorded before the order is sent, when the address is not
//!   known (see [`super::known_hosts`]). So `ssh` must run with
//!   `HostKeyAlias=<node>`.
//! - The `openssh` crate's `SessionBuilder` has no way to pass an arbitrary
//!   `-o` option; it offers `StrictHostKeyChecking` (`known_hosts_check`),
//!   `UserKnownHostsFile` and `-F <config file>`. `-F` alone would replace
//!   `~/.ssh/config` (and `/etc/ssh/ssh_config`).
//! - So each connection gets a small generated configuration file, passed
//!   with `-F`, that sets the host-key options for the node's address and
//!   then `Include`s `~/.ssh/config` and `/etc/ssh/ssh_config`, in the order
//!   `ssh` itself reads them. ssh takes the first value it finds for an
//!   option, so the operator's files cannot weaken the checks, and apply
//!   for everything else. A `ProxyJump` host is reached by a second `ssh`
//!   that gets the same `-F` file; the node's `Host` block does not match
//!   it, so the jump host is checked against the operator's usual files.
//!
//! (The alternative, recording keys by IP address once Contabo assigns one
//! and carrying the public key in the order journal until then, has more
//! states to get wrong, and breaks when a reinstalled node changes address
//! or an address is reused.)
//!
//! Every local path that reaches ssh (the known-hosts file, the identity,
//! the control directory, the included files) is checked first
//! ([`ssh_path`]): the inventory's path is the operator's choice of
//! directory, and a `"` and a line break in it once wrote a `ProxyCommand`
//! into the generated configuration, run by a read-only `plan`. The
//! known-hosts file is named in the configuration only, never also on the
//! command line, so no path needs two kinds of escaping.
//!
//! The checks: `StrictHostKeyChecking yes`, `UserKnownHostsFile` = the
//! inventory's file only (a stale `~/.ssh/known_hosts` cannot interfere),
//! `GlobalKnownHostsFile /dev/null`, `UpdateHostKeys no`, `CheckHostIP no`.
//! Never trust-on-first-use. ssh's own words for a failed check become
//! [`SshError::HostKeyMismatch`] or [`SshError::UnknownHostKey`], and since
//! the check happens before authentication, nothing runs on such a node.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts as Check, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::known_hosts::KnownHosts;
use super::pool::NodeConnector;
use super::{first_boot_finished, upload_command, Output, RemoteCommand, RemoteExec, SshError};
use crate::cloudinit::ADMIN_USER;
use crate::secret::Secret;

/// How to reach nodes.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Login user; nodes have [`ADMIN_USER`] (tests against a local `sshd`
    /// use the current user).
    pub user: String,
    /// `<inventory>/known_hosts`.
    pub known_hosts: PathBuf,
    /// Port; `None` leaves it to the ssh configuration (22 by default).
    pub port: Option<u16>,
    /// Private key to log in with; `None` leaves it to the agent and the
    /// ssh configuration.
    pub identity_file: Option<PathBuf>,
    /// ssh configuration files included after kiwi-infra's host-key
    /// options (see the module docs): the operator's `~/.ssh/config` and the
    /// system's `/etc/ssh/ssh_config`, as plain `ssh` reads them. Tests
    /// point this elsewhere.
    pub include_configs: Vec<String>,
    /// Where the per-connection directories (control socket, generated
    /// configuration) go; `None` = the system's temporary directory. Unix
    /// sockets have short path limits, so keep it short.
    pub control_dir: Option<PathBuf>,
    /// Limit for one TCP connection and SSH handshake.
    pub connect_timeout: Duration,
    /// Keep-alive interval (`ServerAliveInterval`), so long commands
    /// (`cloud-init status --wait`) survive idle-dropping middleboxes.
    pub keepalive: Duration,
    /// First pause between connection attempts in [`RemoteExec::wait_ready`].
    pub retry_min: Duration,
    /// Longest pause between connection attempts.
    pub retry_max: Duration,
    /// Time limit of an upload.
    pub upload_timeout: Duration,
    /// How long a new node may take to answer and finish cloud-init.
    pub ready_limit: Duration,
}

impl SshSettings {
    /// Production settings: the admin user, the operator's own ssh setup.
    pub fn production(known_hosts: PathBuf) -> Self {
        SshSettings {
            user: ADMIN_USER.to_string(),
            known_hosts,
            port: None,
            identity_file: None,
            include_configs: vec!["~/.ssh/config".into(), "/etc/ssh/ssh_config".into()],
            control_dir: None,
            connect_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(15),
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(120),
            // Package installs on kubeadm nodes take minutes.
            ready_limit: Duration::from_secs(30 * 60),
        }
    }

    /// Checks every local path these settings hand to ssh (the known-hosts
    /// file, the identity, the control directory, the included
    /// configuration files) with [`ssh_path`]: none may carry a character
    /// ssh would read as anything but part of the path.
    pub fn check_paths(&self) -> Result<(), SshError> {
        self.checked_paths().map(|_| ())
    }

    fn checked_paths(&self) -> Result<CheckedPaths, SshError> {
        const KNOWN_HOSTS: &str = "known-hosts file";
        // ssh would read a relative path from another directory.
        let known_hosts =
            std::path::absolute(&self.known_hosts).map_err(|_| SshError::UnsafePath {
                what: KNOWN_HOSTS,
                path: self.known_hosts.clone(),
                reason: "cannot be made absolute",
            })?;
        let known_hosts = ssh_path(KNOWN_HOSTS, &known_hosts)?;
        if let Some(key) = &self.identity_file {
            ssh_path("SSH identity file", key)?;
        }
        let control_dir = match &self.control_dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir(),
        };
        ssh_path("directory for SSH control sockets", &control_dir)?;
        let includes = self
            .include_configs
            .iter()
            .map(|file| ssh_path("included ssh configuration", Path::new(file)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CheckedPaths {
            known_hosts,
            control_dir,
            includes,
        })
    }
}

/// The local paths of [`SshSettings`], each checked by [`ssh_path`].
struct CheckedPaths {
    known_hosts: SshPath,
    control_dir: PathBuf,
    includes: Vec<SshPath>,
}

/// One node reached through OpenSSH. Connects on first use (or in
/// [`RemoteExec::wait_ready`]) and reconnects after a lost connection.
#[derive(Debug)]
pub struct OpenSshExec {
    node: String,
    address: String,
    settings: SshSettings,
    known_hosts: PathBuf,
    config_file: PathBuf,
    /// Holds the generated configuration and the control socket's
    /// directory; removed on drop.
    workdir: tempfile::TempDir,
    session: Mutex<Option<Arc<Session>>>,
}

impl OpenSshExec {
    /// Prepares a connection to `node` at `address` (an IP address or
    /// host name). Nothing is sent over the network yet.
    pub fn new(node: &str, address: &str, settings: SshSettings) -> Result<Self, SshError> {
        // A second line of defence: only typed, checked values should get
        // here, but nothing that could be read as an option or a directive
        // ever reaches ssh's command line or the generated configuration.
        plain_word("node name", node)?;
        plain_word("address", address)?;
        plain_word("user", &settings.user)?;
        // Local paths too: each reaches ssh's configuration or command line,
        // where a quote or a line break would end the value, and `%`, `$`
        // or a glob character would be expanded.
        let paths = settings.checked_paths()?;
        let local = |what: &str| {
            let node = node.to_string();
            let what = what.to_string();
            move |source| SshError::Local { node, what, source }
        };
        // Mode 0700, said explicitly: the control socket gives shell access.
        // Its name adds only letters and digits to the checked parent.
        let workdir = tempfile::Builder::new()
            .prefix("kiwi-ssh-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&paths.control_dir)
            .map_err(local("cannot create a directory for the control socket"))?;
        let config_file = workdir.path().join("config");
        let text = ssh_config(node, address, &paths.known_hosts, &paths.includes);
        write_private(&config_file, &text)
            .map_err(local("cannot write the generated ssh configuration"))?;
        Ok(OpenSshExec {
            node: node.to_string(),
            address: address.to_string(),
            settings,
            known_hosts: PathBuf::from(paths.known_hosts.as_str()),
            config_file,
            workdir,
            session: Mutex::new(None),
        })
    }

    /// The address connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The open session, connecting first if there is none.
    async fn session(&self) -> Result<Arc<Session>, SshError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            // A master idle for longer than `ControlPersist` (a long wait
            // elsewhere in the run) has exited: connect again rather than
            // fail the next command.
            if session.check().await.is_ok() {
                return Ok(Arc::clone(session));
            }
            tracing::debug!(node = %self.node, "the SSH master has ended; connecting again");
            if let Some(old) = slot.take() {
                if let Ok(old) = Arc::try_unwrap(old) {
                    let _ = old.close().await;
                }
            }
        }
        let session = Arc::new(self.connect().await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Forgets a session that failed, so the next call reconnects.
    async fn forget(&self, failed: &Arc<Session>) {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, failed)) {
            *slot = None;
        }
    }

    async fn connect(&self) -> Result<Session, SshError> {
        let mut builder = SessionBuilder::default();
        // The known-hosts file is set in the generated configuration only
        // (`-F`), not also with `SessionBuilder::user_known_hosts_file`: that
        // becomes `-o UserKnownHostsFile=PATH`, which ssh splits at spaces
        // and reads with other rules than the configuration file, so one
        // path would need two escapings. The configuration's `Host` block
        // is read first, and ssh keeps the first value it reads.
        builder
            .user(self.settings.user.clone())
            .known_hosts_check(Check::Strict)
            .config_file(&self.config_file)
            .control_directory(self.workdir.path())
            .connect_timeout(self.settings.connect_timeout)
            .server_alive_interval(self.settings.keepalive);
        // A master left behind by a killed kiwi-infra goes away by itself.
        if let Some(idle) = std::num::NonZeroUsize::new(300) {
            builder.control_persist(ControlPersist::IdleFor(idle));
        }
        if let Some(port) = self.settings.port {
            builder.port(port);
        }
        if let Some(key) = &self.settings.identity_file {
            builder.keyfile(key);
        }
        tracing::debug!(node = %self.node, address = %self.address, "connecting over SSH");
        builder
            .connect_mux(&self.address)
            .await
            .map_err(|e| self.connect_error(e))
    }

    /// Turns ssh's words into kiwi-infra's errors.
    fn connect_error(&self, error: openssh::Error) -> SshError {
        let text = match &error {
            openssh::Error::Connect(io) => io.to_string(),
            other => other.to_string(),
        };
        let known_hosts = self.known_hosts.display().to_string();
        match classify_connect_failure(&text) {
            Some(HostKeyFailure::Changed) => SshError::HostKeyMismatch {
                node: self.node.clone(),
                address: self.address.clone(),
                known_hosts,
            },
            Some(HostKeyFailure::NoneKnown) => {
                // ssh says "no key of this type is known": if one of another
                // type is recorded, the node still presents a key that is
                // not the one kiwi-infra chose.
                let recorded = KnownHosts::new(&self.known_hosts)
                    .lookup(&self.node)
                    .ok()
                    .flatten()
                    .is_some();
                if recorded {
                    SshError::HostKeyMismatch {
                        node: self.node.clone(),
                        address: self.address.clone(),
                        known_hosts,
                    }
                } else {
                    SshError::UnknownHostKey {
                        node: self.node.clone(),
                        known_hosts,
                    }
                }
            }
            None => SshError::Connect {
                node: self.node.clone(),
                address: self.address.clone(),
                source: super::transport_error(&error),
            },
        }
    }

    async fn run_on(
        &self,
        session: &Session,
        command: &RemoteCommand,
    ) -> Result<std::process::Output, openssh::Error> {
        let mut cmd = session.raw_command(&command.command);
        cmd.stdin(if command.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().await?;
        let stdin = child.stdin().take();
        let feed = async {
            if let (Some(mut writer), Some(data)) = (stdin, &command.stdin) {
                // A command that exits without reading all of its input is
                // not an error of the transport; its status says what happened.
                let _ = writer.write_all(data.expose()).await;
                let _ = writer.shutdown().await;
            }
        };
        let ((), output) = tokio::join!(feed, child.wait_with_output());
        output
    }
}

impl RemoteExec for OpenSshExec {
    /// Stops the master process. Dropping a session only removes its
    /// control socket; the master would linger until `ControlPersist` ends.
    async fn close(&self) {
        if let Some(session) = self.session.lock().await.take() {
            if let Ok(session) = Arc::try_unwrap(session) {
                let _ = session.close().await;
            }
        }
    }

    fn node(&self) -> &str {
        &self.node
    }

    async fn run(&self, command: &RemoteCommand) -> Result<Output, SshError> {
        let session = self.session().await?;
        tracing::debug!(node = %self.node, command = %command.command, "running");
        // On timeout the future is dropped, which closes the channel; the
        // remote process gets EOF/SIGPIPE and is not waited for.
        match tokio::time::timeout(command.timeout, self.run_on(&session, command)).await {
            Err(_) => Err(SshError::Timeout {
                node: self.node.clone(),
                command: command.command.clone(),
                timeout: command.timeout,
            }),
            Ok(Ok(output)) => Ok(Output {
                status: exit_code(output.status),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
            Ok(Err(error)) => {
                self.forget(&session).await;
                Err(SshError::Session {
                    node: self.node.clone(),
                    source: super::transport_error(&error),
                })
            }
        }
    }

    async fn upload(
        &self,
        path: &str,
        contents: &Secret<Vec<u8>>,
        mode: u32,
    ) -> Result<(), SshError> {
        self.run_checked(&RemoteCommand {
            command: upload_command(path, mode),
            stdin: Some(contents.clone()),
            timeout: self.settings.upload_timeout,
        })
        .await
        .map(|_| ())
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<(), SshError> {
        // The last error of a node that does not answer yet, for the error.
        let last = std::sync::Mutex::new(None);
        let answered = crate::patience::poll_until(
            deadline,
            crate::patience::Backoff::doubling(self.settings.retry_min, self.settings.retry_max),
            || async {
                match self.session().await {
                    Ok(_) => Some(Ok(())),
                    Err(e) if e.is_host_key_problem() => Some(Err(e)),
                    Err(e) => {
                        tracing::debug!(node = %self.node, error = %e, "not answering yet");
                        if let Ok(mut last) = last.lock() {
                            *last = Some(e);
                        }
                        None
                    }
                }
            },
        )
        .await;
        match answered {
            Ok(result) => result?,
            Err(expired) => {
                let source =
                    last.into_inner()
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| SshError::Session {
                            node: self.node.clone(),
                            source: std::io::Error::other(
                                "no attempt was made before the deadline",
                            )
                            .into(),
                        });
                return Err(SshError::NotReady {
                    node: self.node.clone(),
                    address: self.address.clone(),
                    attempts: expired.checks,
                    waited: expired.waited,
                    source: Box::new(source),
                });
            }
        }
        first_boot_finished(self, deadline).await
    }
}

/// Opens [`OpenSshExec`]s: the production [`NodeConnector`].
#[derive(Debug, Clone)]
pub struct OpenSshConnector {
    settings: SshSettings,
}

impl OpenSshConnector {
    /// Connects with `settings` (see [`SshSettings::production`]).
    pub fn new(settings: SshSettings) -> Self {
        OpenSshConnector { settings }
    }

    /// The settings.
    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    /// Waits until a node that was just started answers and has finished
    /// its first boot, retrying the connection until `deadline` (see
    /// [`RemoteExec::wait_ready`]); a host-key problem ends it at once.
    pub async fn wait_ready(
        &self,
        node: &str,
        address: &str,
        deadline: Instant,
    ) -> Result<(), SshError> {
        let exec = OpenSshExec::new(node, address, self.settings.clone())?;
        let ready = exec.wait_ready(deadline).await;
        exec.close().await;
        ready
    }
}

impl NodeConnector for OpenSshConnector {
    type Exec = OpenSshExec;

    /// Connects at once (one attempt), so that an unreachable node or a
    /// host-key problem shows here, before any command.
    async fn connect(&self, node: &str, address: &str) -> Result<OpenSshExec, SshError> {
        let exec = OpenSshExec::new(node, address, self.settings.clone())?;
        exec.session().await?;
        Ok(exec)
    }

    async fn wait_ready(
        &self,
        node: &str,
        address: &str,
        deadline: Instant,
    ) -> Result<(), SshError> {
        OpenSshConnector::wait_ready(self, node, address, deadline).await
    }
}

fn exit_code(status: ExitStatus) -> Option<i32> {
    status.code()
}

/// Which host-key check failed, from ssh's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKeyFailure {
    /// A key is recorded and the server presented another.
    Changed,
    /// No key of the server's type is recorded.
    NoneKnown,
}

fn classify_connect_failure(log: &str) -> Option<HostKeyFailure> {
    if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || (log.contains("Host key for") && log.contains("has changed"))
    {
        Some(HostKeyFailure::Changed)
    } else if log.contains("host key is known for") {
        Some(HostKeyFailure::NoneKnown)
    } else if log.contains("Host key verification failed") {
        Some(HostKeyFailure::Changed)
    } else {
        None
    }
}

/// Refuses a value that is not a plain word for ssh: empty, too long, with
/// whitespace, a control character, a quote, `%`, `#` or anything outside
/// letters, digits, `.`, `_`, `-` and `:`, or starting with `-` (which ssh
/// would read as an option).
pub(crate) fn plain_word(what: &'static str, value: &str) -> Result<(), SshError> {
    let plain = !value.is_empty()
        && value.len() <= 253
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if plain {
        Ok(())
    } else {
        Err(SshError::UnsafeArgument {
            what,
            value: value.to_string(),
        })
    }
}

/// A local path checked by [`ssh_path`]: safe inside double quotes in an
/// ssh configuration file and as an argument of ssh's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshPath(String);

impl SshPath {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a local path that will reach ssh (its configuration file or its
/// command line). ssh reads such a path with rules of its own: a `"` ends
/// a quoted value and a line break ends a directive (so
/// `/tmp/b"<newline>ProxyCommand touch /tmp/x` adds a command), a
/// backslash escapes, `#` may start a comment, `%` and `${…}` are expanded
/// (in `UserKnownHostsFile`, `IdentityFile`, `ControlPath`, `Include`),
/// `Include` expands glob patterns, and a leading `-` reads as an option.
/// Rather than escape for each of those rules, every such character is
/// refused (with control, invisible and non-ASCII space characters, and
/// paths that are not UTF-8); a plain space is allowed, as paths are
/// always quoted in the configuration.
pub(crate) fn ssh_path(what: &'static str, path: &Path) -> Result<SshPath, SshError> {
    let refuse = |reason: &'static str| SshError::UnsafePath {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let text = path.to_str().ok_or_else(|| refuse("is not UTF-8"))?;
    if text.is_empty() {
        return Err(refuse("is empty"));
    }
    if text.starts_with('-') {
        return Err(refuse("starts with `-`, which ssh would read as an option"));
    }
    for c in text.chars() {
        let reason = match c {
            c if crate::text::is_unsafe_for_terminal(c) => {
                "holds a control, invisible or line-breaking character"
            }
            '"' | '\'' => "holds a quote, which would end the value in ssh's configuration",
            '\\' => "holds a backslash, which ssh reads as an escape",
            '%' => "holds `%`, which ssh expands as a token",
            '$' => "holds `$`, which ssh expands as an environment variable",
            '#' => "holds `#`, which ssh may read as the start of a comment",
            '*' | '?' | '[' | ']' => "holds a glob character, which ssh expands",
            _ => continue,
        };
        return Err(refuse(reason));
    }
    Ok(SshPath(text.to_string()))
}

/// The generated `-F` configuration of one connection (see the module docs).
fn ssh_config(node: &str, address: &str, known_hosts: &SshPath, includes: &[SshPath]) -> String {
    let mut text = format!(
        "# Written by kiwi-infra for its connection to {node}; removed when it ends.\n\
         # Host-key checking for the node comes first, so nothing below can weaken it.\n\
         Host {address}\n\
         \x20   HostKeyAlias {node}\n\
         \x20   StrictHostKeyChecking yes\n\
         \x20   UserKnownHostsFile {}\n\
         \x20   GlobalKnownHostsFile /dev/null\n\
         \x20   UpdateHostKeys no\n\
         \x20   CheckHostIP no\n\
         \x20   VerifyHostKeyDNS no\n",
        config_path(known_hosts)
    );
    if !includes.is_empty() {
        text.push_str("# Everything else as the operator's own ssh would do it.\nMatch all\n");
        for file in includes {
            text.push_str(&format!("Include {}\n", config_path(file)));
        }
    }
    text
}

/// A checked path as an ssh_config argument: quoted, so that a space is
/// part of it. (ssh removes the quotes before it expands a leading `~`.)
fn config_path(path: &SshPath) -> String {
    format!("\"{}\"", path.as_str())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // ssh refuses configuration files others may write.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn values_that_could_become_ssh_options_or_directives_are_refused() {
        for bad in [
            "kiwi-acme-x\n  ProxyCommand sh -c 'touch /tmp/pwned'",
            "-oProxyCommand=touch /tmp/pwned",
            "kiwi acme",
            "kiwi\tacme",
            "",
            "kiwi\u{2028}x",
            "a%h",
            "a\"b",
            "host#x",
        ] {
            assert!(plain_word("node name", bad).is_err(), "{bad:?}");
        }
        for good in [
            "kiwi-acme-server-01",
            "127.0.10.5",
            "kiwi",
            "fe80::1",
            "node_1.example",
        ] {
            assert!(plain_word("node name", good).is_ok(), "{good:?}");
        }
        let settings = SshSettings::production(std::path::PathBuf::from("/nonexistent"));
        let err = OpenSshExec::new("-oProxyCommand=x", "127.0.0.1", settings.clone()).unwrap_err();
        assert!(matches!(err, SshError::UnsafeArgument { .. }), "{err}");
        let err = OpenSshExec::new("kiwi-a", "1.2.3.4 -oProxyCommand=x", settings).unwrap_err();
        assert!(err.to_string().contains("address"), "{err}");
    }

    use super::*;

    /// Directory names that ssh would read as more than a path, one per
    /// rule of [`ssh_path`].
    const HOSTILE_DIRS: &[&str] = &[
        "b\"\nProxyCommand touch /tmp/kiwi-pwned\n#\"",
        "b\nProxyCommand touch /tmp/kiwi-pwned",
        "b\rProxyCommand touch /tmp/kiwi-pwned",
        "b\u{2028}x",
        "b\u{ad}x",
        "b'x",
        "b\\\"x",
        "b%dx",
        "b${HOME}x",
        "b#x",
        "b*",
        "b?x",
        "b[x]",
        "b\tx",
    ];

    #[test]
    fn an_inventory_path_that_could_add_ssh_directives_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let control = parent.path().join("ctl");
        std::fs::create_dir(&control).unwrap();
        for dir in HOSTILE_DIRS {
            let hostile = parent.path().join(dir);
            let ok = || {
                let mut s = SshSettings::production(parent.path().join("known_hosts"));
                s.control_dir = Some(control.clone());
                s.include_configs = vec![parent.path().join("config").display().to_string()];
                s
            };
            let mut known_hosts = ok();
            known_hosts.known_hosts = hostile.join("inventory/known_hosts");
            let mut identity = ok();
            identity.identity_file = Some(hostile.join("id_ed25519"));
            let mut control_dir = ok();
            control_dir.control_dir = Some(hostile.clone());
            let mut include = ok();
            include.include_configs = vec![hostile.join("config").display().to_string()];
            assert!(ok().check_paths().is_ok());
            for (what, settings) in [
                ("known-hosts file", known_hosts),
                ("SSH identity file", identity),
                ("directory for SSH control sockets", control_dir),
                ("included ssh configuration", include),
            ] {
                let err = OpenSshExec::new("kiwi-a-server-01", "127.0.0.1", settings).unwrap_err();
                assert!(
                    matches!(&err, SshError::UnsafePath { what: w, .. } if *w == what),
                    "{dir:?} as {what}: {err}"
                );
                let shown = err.to_string();
                assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
            }
        }
        // Nothing was prepared for any of them.
        assert_eq!(std::fs::read_dir(&control).unwrap().count(), 0);
        for relative_option in ["-oProxyCommand=x", "-i"] {
            let err = ssh_path("SSH identity file", Path::new(relative_option)).unwrap_err();
            assert!(matches!(err, SshError::UnsafePath { .. }), "{err}");
        }
    }

    /// What `ssh -G` (the configuration ssh would use, without
    /// connecting) makes of the generated configuration.
    fn ssh_reads(config: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(&file, config).unwrap();
        let out = std::process::Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(&file)
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .arg("127.0.0.9")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the ssh client (openssh-client) is installed");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any inventory directory either is refused, or ssh reads the
        /// generated configuration with exactly that known-hosts file, the
        /// node's alias, strict checking and no command of any kind.
        #[test]
        fn ssh_reads_every_accepted_path_exactly_as_written(
            dir in "[ -~\u{a0}\u{e9}\u{2028}\u{ad}\n\t]{1,24}|[a-zA-Z0-9 ._=+,@~()!&;:<>|{}^`\u{e9}-]{1,24}",
        ) {
            let path = PathBuf::from(format!("/tmp/{dir}/inventory/known_hosts"));
            let Ok(checked) = ssh_path("known-hosts file", &path) else {
                return Ok(());
            };
            let include = ssh_path("included ssh configuration", &path.with_file_name("config"))
                .unwrap();
            let config = ssh_config("kiwi-a-server-01", "127.0.0.9", &checked, &[include]);
            let read = ssh_reads(&config);
            let expected = format!("userknownhostsfile {}", path.display());
            proptest::prop_assert!(read.lines().any(|l| l == expected), "{}\n{}", config, read);
            proptest::prop_assert!(read.lines().any(|l| l == "hostkeyalias kiwi-a-server-01"));
            proptest::prop_assert!(read.lines().any(|l| l == "stricthostkeychecking true"));
            proptest::prop_assert!(read.lines().any(|l| l == "globalknownhostsfile /dev/null"));
            for directive in ["proxycommand", "localcommand", "knownhostscommand", "permitlocalcommand yes"] {
                proptest::prop_assert!(
                    !read.lines().any(|l| l.starts_with(directive)),
                    "{} in\n{}", directive, read
                );
            }
        }
    }

    #[test]
    fn ssh_words_for_host_key_failures_are_recognised() {
        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
            Host key for kiwi-a-server-01 has changed and you have requested strict checking.\r\n\
            Host key verification failed.";
        assert_eq!(
            classify_connect_failure(changed),
            Some(HostKeyFailure::Changed)
        );
        let unknown = "No ED25519 host key is known for kiwi-a-server-01 and you have \
                       requested strict checking.\r\nHost key verification failed.";
        assert_eq!(
            classify_connect_failure(unknown),
            Some(HostKeyFailure::NoneKnown)
        );
        assert_eq!(
            classify_connect_failure("ssh: connect to host 10.0.0.1 port 22: Connection refused"),
            None
        );
    }

    #[test]
    fn ssh_control_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut settings = SshSettings::production(parent.path().join("known_hosts"));
        settings.control_dir = Some(parent.path().to_path_buf());
        let exec = OpenSshExec::new("kiwi-a-server-01", "127.0.0.1", settings).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(exec.workdir.path()), 0o700);
        assert_eq!(mode(&exec.config_file), 0o600);
    }

    #[test]
    fn generated_config_pins_the_alias_before_including_the_operators_files() {
        let includes: Vec<SshPath> = SshSettings::production(PathBuf::new())
            .include_configs
            .iter()
            .map(|f| ssh_path("included ssh configuration", Path::new(f)).unwrap())
            .collect();
        let text = ssh_config(
            "kiwi-a-server-01",
            "203.0.113.7",
            &ssh_path("known-hosts file", Path::new("/inv dir/known_hosts")).unwrap(),
            &includes,
        );
        let host = text.find("Host 203.0.113.7\n").unwrap();
        let alias = text.find("    HostKeyAlias kiwi-a-server-01\n").unwrap();
        let include = text.find("Include \"~/.ssh/config\"\n").unwrap();
        assert!(host < alias && alias < include, "{text}");
        // `%` is refused in any path (see the test below), not escaped.
        assert!(text.contains("    UserKnownHostsFile \"/inv dir/known_hosts\"\n"));
        assert!(text.contains("    StrictHostKeyChecking yes\n"));
        assert!(text.contains("    GlobalKnownHostsFile /dev/null\n"));
        assert!(text.contains("    UpdateHostKeys no\n"));
        let hermetic = ssh_config(
            "n",
            "127.0.0.1",
            &ssh_path("known-hosts file", Path::new("/k")).unwrap(),
            &[],
        );
        assert!(!hermetic.contains("Include"), "{hermetic}");
    }
}
