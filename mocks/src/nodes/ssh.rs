//! The SSH server of a simulated node (russh), which the tool reaches exactly as it reaches a
//! real node: OpenSSH's client, usually with ControlMaster multiplexing (several session
//! channels over one connection).
//!
//! It presents the node's host key, accepts public keys of the node's login users only (no
//! passwords, no keyboard-interactive), and runs each `exec` request as sshd would: the user's
//! shell with `-c <command>`, here entered into the node's namespaces with `nsenter`. Stdin is
//! forwarded until the client's EOF; stdout and stderr stream back; the exit status, EOF and
//! close follow once the output is drained. `env` requests for `LANG`/`LC_*` are accepted (as
//! Debian's sshd does) and others refused; `pty`, `shell` and subsystems are refused politely,
//! since nothing the tool does needs them.
//!
//! Deliberate differences from sshd: commands run as root with the login user's `USER`, `HOME`
//! and `LOGNAME` (the stand-in `sudo` has nothing to elevate), and when a command exits while a
//! process it started still holds its output open, the channel closes after
//! [`OUTPUT_GRACE`] instead of hanging forever.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Config, Handle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::fs::{self, MARKER_VAR};

/// How long output may keep flowing after a command exited (see the module doc).
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// `PATH` of commands, as on a Debian/Ubuntu server.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Who may log in to a node, and how a command runs there.
#[derive(Debug, Clone)]
pub struct NodeShell {
    /// Node (host) name.
    pub node: String,
    /// Pid of the node's holder, the target of `nsenter`.
    pub holder_pid: u32,
    /// Value of [`MARKER_VAR`] for every process.
    pub marker: String,
    /// Login user → how they log in.
    pub logins: HashMap<String, Login>,
}

/// One user allowed to log in.
#[derive(Debug, Clone)]
pub struct Login {
    /// Home directory inside the node.
    pub home: String,
    /// Login shell inside the node.
    pub shell: String,
    /// Authorized public keys.
    pub keys: Vec<PublicKey>,
}

impl NodeShell {
    fn allows(&self, user: &str, key: &PublicKey) -> bool {
        self.logins
            .get(user)
            .is_some_and(|l| l.keys.iter().any(|k| k.key_data() == key.key_data()))
    }

    fn command(
        &self,
        user: &str,
        command: &str,
        env: &[(String, String)],
    ) -> Option<tokio::process::Command> {
        let login = self.logins.get(user)?;
        let mut c = fs::enter(self.holder_pid, &login.shell, command, &login.home);
        c.envs(env.iter().map(|(k, v)| (k, v)))
            .env("PATH", PATH)
            .env("HOME", &login.home)
            .env("USER", user)
            .env("LOGNAME", user)
            .env("SHELL", &login.shell)
            .env("HOSTNAME", &self.node)
            .env(MARKER_VAR, &self.marker);
        Some(c)
    }
}

/// The russh settings of a node: its host key, public keys only, no idle timeout (an
/// OpenSSH ControlMaster connection may sit idle between the tool's steps).
pub fn config(host_key: PrivateKey) -> Arc<Config> {
    Arc::new(Config {
        keys: vec![host_key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(250),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        ..Config::default()
    })
}

/// Accepts connections until the task is aborted; aborting also ends every connection.
pub async fn serve(listener: TcpListener, config: Arc<Config>, shell: Arc<NodeShell>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let handler = Connection::new(shell.clone());
                    let config = config.clone();
                    let node = shell.node.clone();
                    sessions.spawn(async move {
                        let result = match russh::server::run_stream(config, stream, handler).await {
                            Ok(session) => session.await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = result {
                            tracing::debug!(%node, %peer, error = %e, "ssh connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(node = %shell.node, error = %e, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// One session channel: its environment, its stdin, its command.
#[derive(Debug, Default)]
struct ChannelState {
    env: Vec<(String, String)>,
    stdin: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Stdin that arrived before the exec request.
    early: Vec<Vec<u8>>,
    eof: bool,
    task: Option<AbortHandle>,
}

/// One client connection.
#[derive(Debug)]
struct Connection {
    shell: Arc<NodeShell>,
    user: Option<String>,
    channels: HashMap<ChannelId, ChannelState>,
}

impl Connection {
    fn new(shell: Arc<NodeShell>) -> Self {
        Self {
            shell,
            user: None,
            channels: HashMap::new(),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A dropped connection takes its commands with it, as sshd's session processes go
        // when the client disconnects (their children live on, detached or not).
        for state in self.channels.values() {
            if let Some(task) = &state.task {
                task.abort();
            }
        }
    }
}

fn accepted_env(name: &str) -> bool {
    name == "LANG" || name.starts_with("LC_")
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        public_key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.shell.allows(user, public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        public_key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        if self.shell.allows(user, public_key) {
            tracing::debug!(node = %self.shell.node, user, "ssh login");
            self.user = Some(user.to_owned());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The handler callbacks carry everything; the channel object itself is not needed.
        self.channels.insert(channel.id(), ChannelState::default());
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(state) if accepted_env(variable_name) => {
                state
                    .env
                    .push((variable_name.to_owned(), variable_value.to_owned()));
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.extended_data(
            channel,
            1,
            format!(
                "{}: this simulated node runs commands only (ssh host 'command'); \
                 interactive shells are not supported\r\n",
                self.shell.node
            )
            .into_bytes(),
        )?;
        session.channel_failure(channel)?;
        session.exit_status_request(channel, 1)?;
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user), Some(state)) = (self.user.as_deref(), self.channels.get_mut(&channel))
        else {
            return session.channel_failure(channel);
        };
        if state.task.is_some() {
            return session.channel_failure(channel);
        }
        let text = String::from_utf8_lossy(data);
        let Some(mut command) = self.shell.command(user, &text, &state.env) else {
            return session.channel_failure(channel);
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(node = %self.shell.node, error = %e, "cannot run a command");
                return session.channel_failure(channel);
            }
        };
        session.channel_success(channel)?;
        let (tx, rx) = mpsc::unbounded_channel();
        for chunk in state.early.drain(..) {
            let _ = tx.send(chunk);
        }
        // After the client's EOF the sender is dropped, which closes the command's stdin.
        state.stdin = (!state.eof).then_some(tx);
        let task = tokio::spawn(run(
            child,
            rx,
            session.handle(),
            channel,
            self.shell.node.clone(),
        ));
        state.task = Some(task.abort_handle());
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            match &state.stdin {
                Some(tx) => {
                    // The command may have exited already; its stdin is gone then.
                    let _ = tx.send(data.to_vec());
                }
                None if state.task.is_none() => state.early.push(data.to_vec()),
                None => {}
            }
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.eof = true;
            state.stdin = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(task) = self.channels.remove(&channel).and_then(|s| s.task) {
            task.abort();
        }
        Ok(())
    }
}

/// Runs one command to its end and reports it on `channel`.
async fn run(
    mut child: tokio::process::Child,
    mut stdin_rx: mpsc::UnboundedReceiver<Vec<u8>>,
    handle: Handle,
    channel: ChannelId,
    node: String,
) {
    let stdin = child.stdin.take();
    let feeder = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            while let Some(chunk) = stdin_rx.recv().await {
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        }
    });
    let out = tokio::spawn(pump(child.stdout.take(), handle.clone(), channel, None));
    let err = tokio::spawn(pump(child.stderr.take(), handle.clone(), channel, Some(1)));
    let (out_abort, err_abort) = (out.abort_handle(), err.abort_handle());
    let status = child.wait().await;
    feeder.abort();
    let drained = tokio::time::timeout(OUTPUT_GRACE, async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    if drained.is_err() {
        out_abort.abort();
        err_abort.abort();
        tracing::warn!(
            %node,
            "a command exited but a process it started still holds its output open; \
             closing the channel (a real sshd would wait forever)"
        );
    }
    let code = match status {
        Ok(s) => s
            .code()
            .map(|c| c as u32)
            .unwrap_or_else(|| 128 + s.signal().unwrap_or(0) as u32),
        Err(_) => 255,
    };
    let _ = handle.exit_status_request(channel, code).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

/// Copies one output stream of a command to the channel (`ext` = 1 for stderr).
async fn pump(
    reader: Option<impl AsyncRead + Unpin>,
    handle: Handle,
    channel: ChannelId,
    ext: Option<u32>,
) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = buf[..n].to_vec();
        let sent = match ext {
            None => handle.data(channel, chunk).await,
            Some(code) => handle.extended_data(channel, code, chunk).await,
        };
        if sent.is_err() {
            return;
        }
    }
}
