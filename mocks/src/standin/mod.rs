//! Stand-ins for the programs a simulated node needs and no registry provides: k3s and its
//! install script, kubeadm, kubelet, kubectl, systemctl, journalctl, cloud-init, sudo and nft
//! (which keeps a node's ruleset without touching the host's, see [`nft`]).
//!
//! kiwi-infra talks to simulated nodes exactly as it talks to real servers
//! (`docs/node-contract.md`); these stand-ins answer the same commands with the same outputs,
//! files and exit codes, and keep each cluster's state honestly: a node registers only after a
//! correct join with the right token, labels and taints persist, and readiness follows the
//! node's process (a daemon heartbeats every second; a node is `Ready` only while its last
//! heartbeat is under five seconds old).
//!
//! One binary, `kiwi-node-standin`, plays every program: it dispatches on the file name of
//! `argv[0]` (the simulator symlinks it as `/usr/bin/kubectl`, `/usr/bin/systemctl`, …), or on
//! its first argument when called by its own name (`kiwi-node-standin kubectl get nodes`).
//!
//! How the pieces fit ([`cluster`] holds the model):
//! - A cluster's "API server" is a small JSON-over-HTTP server ([`api`]) on `<node ip>:6443`,
//!   run by the first k3s server's daemon, or by the kubelet of the node where `kubeadm init`
//!   ran. It serves Kubernetes-shaped `/api/v1/nodes`, k3s's `/cacerts`, kubeadm's
//!   `cluster-info`, and a few `/kiwi-sim/v1/...` routes for joins and heartbeats. Its state is
//!   persisted as JSON next to where the real datastore lives.
//! - Joining servers and control-plane nodes serve a proxy to the API on their own IP, so
//!   `kubectl` works on every server. Quorum is not simulated: servers join one at a time
//!   through an existing server, and the cluster's API lives and dies with its first server.
//! - Daemons ([`k3s`], [`kubeadm`]) are started by the stand-in `systemctl` ([`systemd`]),
//!   detached, with output in `/var/log/kiwi-sim/<unit>.log` (what `journalctl` reads) and
//!   their pid in `/run/kiwi-sim/pids/<unit>.pid`.
//! - The servers speak plain HTTP: a `https://` URL from a config is reached over `http://`.
//!   Certificates are random PEM-shaped blobs; what matters is their sha256, which joins check.
//! - `kiwi-node-standin boot` starts every enabled unit, as systemd does at boot; the simulator
//!   runs it when it (re)starts a node.
//! - `cloud-init status --wait` replaces a symlink at `/usr/local/bin/k3s-install.sh` with a
//!   real shell script that execs this binary (`sh` cannot run a binary), as first boot puts
//!   the script there on a real node; `kiwi-node-standin write-install-script` does the same
//!   on demand.
//! - Tests run several nodes on one host without namespaces: `KIWI_SIM_ROOT` prefixes every
//!   absolute path the stand-ins touch ([`paths`]). The product never sets it.

pub mod api;
pub mod client;
pub mod cluster;
pub mod daemon;
pub mod k3s;
pub mod kubeadm;
pub mod kubectl;
pub mod labels;
pub mod misc;
pub mod nft;
pub mod objects;
pub mod paths;
pub mod systemd;

use std::ffi::OsString;
use std::path::PathBuf;

/// The name the binary has when it is not playing another program.
pub const OWN_NAME: &str = "kiwi-node-standin";

/// Why a stand-in failed. Tools that mimic a real program's error text use [`Self::Tool`];
/// the other variants carry context for failures of the simulation itself.
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    /// The program failed the way the real one would: `message` is its whole stderr text.
    #[error("{message}")]
    Tool {
        /// Text printed to stderr, as the real program prints it.
        message: String,
        /// Exit status.
        code: i32,
    },
    /// A file could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was attempted, e.g. "cannot read".
        action: &'static str,
        /// The path on the host (already prefixed with `KIWI_SIM_ROOT`).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file did not parse.
    #[error("cannot parse {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The cluster API could not be reached.
    #[error("{method} {url} failed")]
    Http {
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

impl StandinError {
    /// A failure with a real program's text and exit status 1.
    pub fn tool(message: impl Into<String>) -> Self {
        StandinError::Tool {
            message: message.into(),
            code: 1,
        }
    }

    /// A failure with a real program's text and the given exit status.
    pub fn tool_code(message: impl Into<String>, code: i32) -> Self {
        StandinError::Tool {
            message: message.into(),
            code,
        }
    }

    /// The exit status this failure ends the program with.
    pub fn exit_code(&self) -> i32 {
        match self {
            StandinError::Tool { code, .. } => *code,
            _ => 1,
        }
    }

    /// The text for stderr: the message and every cause, once.
    pub fn render(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Result of a stand-in.
pub type Result<T, E = StandinError> = std::result::Result<T, E>;

/// Runs the program named by `argv[0]` (or by `argv[1]` when `argv[0]` is
/// [`OWN_NAME`]) and returns its exit status. Errors are printed to stderr here.
pub async fn run(argv: Vec<OsString>) -> i32 {
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let (tool, args) = if program == OWN_NAME || program.is_empty() {
        match argv.get(1) {
            Some(tool) => (tool.clone(), argv[2..].to_vec()),
            None => {
                eprintln!("usage: {OWN_NAME} <program> [args…] (or call it through a symlink named after the program)");
                return 2;
            }
        }
    } else {
        (program, argv[1..].to_vec())
    };
    match dispatch(&tool, args).await {
        Ok(code) => code,
        Err(err) => {
            let text = err.render();
            if !text.is_empty() {
                eprintln!("{}", text.trim_end_matches('\n'));
            }
            err.exit_code()
        }
    }
}

async fn dispatch(tool: &str, args: Vec<String>) -> Result<i32> {
    match tool {
        "sudo" => misc::sudo(args),
        "cloud-init" => misc::cloud_init(&args),
        "write-install-script" => misc::write_install_script(&args),
        "boot" => systemd::boot(),
        "k3s-install.sh" | "k3s-install" => k3s::install(&args).await,
        "k3s" => k3s::main(args).await,
        "kubectl" => kubectl::main(args, kubectl::Flavor::Upstream).await,
        "kubeadm" => kubeadm::main(args).await,
        "kubelet" => kubeadm::kubelet(args).await,
        "systemctl" => systemd::systemctl(&args),
        "nft" => nft::main(args),
        "nft-scratch" => nft::scratch_main(&args),
        "journalctl" => systemd::journalctl(&args),
        other => Err(StandinError::tool_code(
            format!("{OWN_NAME}: no stand-in for `{other}`"),
            127,
        )),
    }
}
