//! [`FakeRemote`]: a stateful stand-in for a node, for unit tests of the
//! code that drives nodes (bootstrap, joins, labels).
//!
//! It keeps files (path → contents and mode) and answers the commands of
//! docs/node-contract.md that only touch files or the node's identity;
//! everything else goes to a handler the test scripts. A fake that keeps
//! state lets a test assert outcomes ("the join configuration is on the
//! node with mode 0600, then removed") rather than call sequences. Every
//! command is kept in a history, and a node can be made unreachable or to
//! present the wrong host key, in which case nothing runs, as with the
//! real transport.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::{upload_command, Output, RemoteCommand, RemoteExec, SshError, CLOUD_INIT_WAIT};
use crate::secret::Secret;

/// A file on the fake node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    /// Contents.
    pub contents: Secret<Vec<u8>>,
    /// Mode, e.g. `0o600`.
    pub mode: u32,
}

/// What the scripted handler gets: the command, its stdin, and the files.
pub type Handler =
    dyn Fn(&str, Option<&[u8]>, &mut BTreeMap<String, FakeFile>) -> Output + Send + Sync;

/// Why the fake refuses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It presents a host key other than the recorded one.
    HostKeyMismatch,
    /// No key is recorded for it.
    UnknownHostKey,
    /// It does not answer.
    Unreachable,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, FakeFile>,
    history: Vec<String>,
    refusal: Option<Refusal>,
    cloud_init: Option<Output>,
    hostname: Option<String>,
}

/// A fake node. Cheap to clone; clones share the node's state.
#[derive(Clone)]
pub struct FakeRemote {
    node: String,
    state: Arc<Mutex<State>>,
    handler: Arc<Handler>,
}

impl std::fmt::Debug for FakeRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRemote")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl FakeRemote {
    /// A healthy node named `node`: cloud-init done, hostname = `node`, no
    /// files, and every unknown command fails with status 127.
    pub fn new(node: &str) -> Self {
        FakeRemote {
            node: node.to_string(),
            state: Arc::new(Mutex::new(State::default())),
            handler: Arc::new(|command, _, _| Output {
                status: Some(127),
                stdout: String::new(),
                stderr: format!("fake node: no handler for `{command}`\n"),
            }),
        }
    }

    /// Answers the commands the fake does not know itself with `handler`.
    pub fn with_handler(
        mut self,
        handler: impl Fn(&str, Option<&[u8]>, &mut BTreeMap<String, FakeFile>) -> Output
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// Makes every later call fail as `refusal` says, running nothing.
    pub fn refuse(&self, refusal: Option<Refusal>) {
        self.lock().refusal = refusal;
    }

    /// What a transport that opens a session (OpenSSH) finds before any
    /// command: the refusal set with [`FakeRemote::refuse`], if any. Fake
    /// connectors call it, so a node that fails its host-key check is
    /// never handed out, as with the real transport.
    pub fn check_reachable(&self) -> Result<(), SshError> {
        let refusal = self.lock().refusal;
        match refusal {
            Some(refusal) => Err(self.refused(refusal)),
            None => Ok(()),
        }
    }

    /// What `cloud-init status --wait` answers (default: `status: done`, 0).
    pub fn set_cloud_init(&self, output: Output) {
        self.lock().cloud_init = Some(output);
    }

    /// What `hostname` prints (default: the node's name).
    pub fn set_hostname(&self, hostname: &str) {
        self.lock().hostname = Some(hostname.to_string());
    }

    /// Puts a file on the node.
    pub fn put_file(&self, path: &str, contents: &[u8], mode: u32) {
        self.lock().files.insert(
            path.to_string(),
            FakeFile {
                contents: Secret::new(contents.to_vec()),
                mode,
            },
        );
    }

    /// A file on the node.
    pub fn file(&self, path: &str) -> Option<FakeFile> {
        self.lock().files.get(path).cloned()
    }

    /// Every command run so far, oldest first (uploads as the command the
    /// real transport runs).
    pub fn history(&self) -> Vec<String> {
        self.lock().history.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refused(&self, refusal: Refusal) -> SshError {
        let known_hosts = "known_hosts (fake)".to_string();
        match refusal {
            Refusal::HostKeyMismatch => SshError::HostKeyMismatch {
                node: self.node.clone(),
                address: "fake".into(),
                known_hosts,
            },
            Refusal::UnknownHostKey => SshError::UnknownHostKey {
                node: self.node.clone(),
                known_hosts,
            },
            Refusal::Unreachable => SshError::Connect {
                node: self.node.clone(),
                address: "fake".into(),
                source: "fake node does not answer".into(),
            },
        }
    }

    fn answer(&self, command: &RemoteCommand) -> Result<Output, SshError> {
        let mut state = self.lock();
        if let Some(refusal) = state.refusal {
            drop(state);
            return Err(self.refused(refusal));
        }
        state.history.push(command.command.clone());
        let ok = |stdout: String| Output {
            status: Some(0),
            stdout,
            stderr: String::new(),
        };
        let words: Vec<&str> = command.command.split_whitespace().collect();
        match words.as_slice() {
            _ if command.command == CLOUD_INIT_WAIT => Ok(state
                .cloud_init
                .clone()
                .unwrap_or_else(|| ok("status: done\n".into()))),
            ["hostname"] => Ok(ok(format!(
                "{}\n",
                state.hostname.as_deref().unwrap_or(&self.node)
            ))),
            ["sudo", "cat", path] => Ok(match state.files.get(*path) {
                Some(file) => ok(String::from_utf8_lossy(file.contents.expose()).into_owned()),
                None => Output {
                    status: Some(1),
                    stdout: String::new(),
                    stderr: format!("cat: {path}: No such file or directory\n"),
                },
            }),
            ["sudo", "rm", "-f", path] => {
                state.files.remove(*path);
                Ok(ok(String::new()))
            }
            _ => {
                if let Some(out) = super::fake_nft::answer(&command.command, &mut state.files) {
                    return Ok(out);
                }
                let stdin = command.stdin.as_ref().map(|s| s.expose().as_slice());
                Ok((self.handler)(&command.command, stdin, &mut state.files))
            }
        }
    }
}

impl RemoteExec for FakeRemote {
    fn node(&self) -> &str {
        &self.node
    }

    async fn run(&self, command: &RemoteCommand) -> Result<Output, SshError> {
        self.answer(command)
    }

    async fn upload(
        &self,
        path: &str,
        contents: &Secret<Vec<u8>>,
        mode: u32,
    ) -> Result<(), SshError> {
        let mut state = self.lock();
        if let Some(refusal) = state.refusal {
            drop(state);
            return Err(self.refused(refusal));
        }
        state.history.push(upload_command(path, mode));
        state.files.insert(
            path.to_string(),
            FakeFile {
                contents: contents.clone(),
                mode,
            },
        );
        Ok(())
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<(), SshError> {
        // Like the real transport: a host-key problem ends it at once and
        // runs nothing.
        let refusal = self.lock().refusal;
        if let Some(refusal) = refusal {
            return Err(self.refused(refusal));
        }
        super::first_boot_finished(self, deadline).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cmd(command: &str) -> RemoteCommand {
        RemoteCommand {
            command: command.into(),
            stdin: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn uploads_are_files_with_modes_and_scripted_commands_see_them() {
        let node = FakeRemote::new("kiwi-a-server-01").with_handler(|command, _, files| {
            let present = files.contains_key("/etc/rancher/k3s/config.yaml");
            Output {
                status: Some(if present && command.starts_with("sudo env") {
                    0
                } else {
                    1
                }),
                stdout: String::new(),
                stderr: String::new(),
            }
        });
        node.upload(
            "/etc/rancher/k3s/config.yaml",
            &Secret::new(b"token: s3cr3t\n".to_vec()),
            0o600,
        )
        .await
        .unwrap();
        let file = node.file("/etc/rancher/k3s/config.yaml").unwrap();
        assert_eq!(file.mode, 0o600);
        assert_eq!(file.contents.expose(), b"token: s3cr3t\n");
        let out = node
            .run(&cmd(
                "sudo env INSTALL_K3S_EXEC=server sh /usr/local/bin/k3s-install.sh",
            ))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(
            node.history()[0],
            "sudo install -D -m 0600 /dev/stdin /etc/rancher/k3s/config.yaml"
        );
        assert!(!node.history().concat().contains("s3cr3t"));
    }

    #[tokio::test]
    async fn a_refused_node_runs_nothing() {
        let node = FakeRemote::new("n");
        node.refuse(Some(Refusal::HostKeyMismatch));
        let err = node.run(&cmd("touch /x")).await.unwrap_err();
        assert!(matches!(err, SshError::HostKeyMismatch { .. }));
        let err = node
            .wait_ready(Instant::now() + Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.is_host_key_problem());
        assert!(node.history().is_empty());
    }

    #[tokio::test]
    async fn first_boot_checks_cloud_init_and_hostname() {
        let deadline = || Instant::now() + Duration::from_secs(5);
        let node = FakeRemote::new("kiwi-a-agent-01");
        node.wait_ready(deadline()).await.unwrap();
        assert_eq!(node.history(), vec![CLOUD_INIT_WAIT, "hostname"]);

        node.set_cloud_init(Output {
            status: Some(1),
            stdout: "\nstatus: error\n".into(),
            stderr: String::new(),
        });
        let err = node.wait_ready(deadline()).await.unwrap_err();
        assert!(
            err.to_string().contains("status: error"),
            "the failure shows cloud-init's output: {err}"
        );

        let node = FakeRemote::new("kiwi-a-agent-01");
        node.set_hostname("debian");
        let err = node.wait_ready(deadline()).await.unwrap_err();
        assert!(matches!(err, SshError::WrongHostname { .. }), "{err}");
    }

    #[tokio::test]
    async fn failed_commands_keep_command_status_and_redacted_stderr() {
        let node = FakeRemote::new("n").with_handler(|_, stdin, _| Output {
            status: Some(2),
            stdout: String::new(),
            stderr: format!(
                "bad input: {}\n",
                String::from_utf8_lossy(stdin.unwrap_or_default())
            ),
        });
        let err = node
            .run_checked(&RemoteCommand {
                command: "sudo kubeadm join --config -".into(),
                stdin: Some(Secret::new(b"token: abcdef.0123456789abcdef".to_vec())),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sudo kubeadm join --config -` on n failed with status Some(2)"));
        assert!(!text.contains("0123456789abcdef"), "{text}");
    }
}
