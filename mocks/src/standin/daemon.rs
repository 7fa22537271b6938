//! What every daemon stand-in (k3s server/agent, kubelet) shares: journal-style log lines on
//! stderr (which `systemctl` sends to the unit's log), the readiness marker `systemctl start`
//! waits for, the heartbeat loop, and shutting down on SIGTERM.

use std::net::Ipv4Addr;

use chrono::{Local, Utc};
use tokio::net::TcpListener;

use super::client::Api;
use super::cluster::{Heartbeat, HEARTBEAT_EVERY};
use super::paths::{Root, READY_DIR};
use super::{Result, StandinError};

/// How a daemon formats its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// logrus, as k3s prints: `time="…" level=info msg="…"`.
    Logrus,
    /// klog, as the kubelet prints: `I0102 15:04:05.000000 pid file.go:1] msg`.
    Klog,
}

/// Writes log lines as `journalctl` shows them.
#[derive(Debug, Clone)]
pub struct Journal {
    ident: &'static str,
    host: String,
    style: LogStyle,
}

impl Journal {
    /// A journal for the daemon `ident` (`k3s`, `kubelet`) on host `host`.
    pub fn new(ident: &'static str, host: &str, style: LogStyle) -> Self {
        Journal {
            ident,
            host: host.to_string(),
            style,
        }
    }

    fn line(&self, level: &str, msg: &str) {
        let now = Local::now();
        let pid = std::process::id();
        let payload = match self.style {
            LogStyle::Logrus => format!(
                "time=\"{}\" level={level} msg={:?}",
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                msg
            ),
            LogStyle::Klog => {
                let letter = level.chars().next().unwrap_or('i').to_ascii_uppercase();
                format!(
                    "{letter}{}    {pid} server.go:1] {msg:?}",
                    now.format("%m%d %H:%M:%S%.6f")
                )
            }
        };
        eprintln!(
            "{} {} {}[{pid}]: {payload}",
            now.format("%b %d %H:%M:%S"),
            self.host,
            self.ident
        );
    }

    /// An info line.
    pub fn info(&self, msg: &str) {
        self.line("info", msg);
    }

    /// An error line.
    pub fn error(&self, msg: &str) {
        self.line("error", msg);
    }

    /// A fatal line; the returned error ends the daemon with status 1 (its text is already
    /// in the log, so it prints nothing more).
    pub fn fatal(&self, msg: &str) -> StandinError {
        self.line("fatal", msg);
        StandinError::tool_code("", 1)
    }
}

/// Tells `systemctl start` the unit is up (systemd's `READY=1`).
pub fn mark_ready(root: &Root, unit: &str) -> Result<()> {
    root.write(
        &format!("{READY_DIR}/{unit}"),
        &std::process::id().to_string(),
        0o644,
    )
}

/// Removes the readiness marker.
pub fn clear_ready(root: &Root, unit: &str) {
    let _ = root.remove(&format!("{READY_DIR}/{unit}"));
}

/// Listens on the node's IP; a taken port is fatal, as for the real servers.
pub async fn bind(journal: &Journal, ip: Ipv4Addr, port: u16) -> Result<TcpListener> {
    TcpListener::bind((ip, port)).await.map_err(|e| {
        journal.fatal(&format!(
            "Failed to listen on {ip}:{port}: listen tcp {ip}:{port}: {e}"
        ))
    })
}

/// Resolves on SIGTERM or SIGINT. SIGHUP is caught and ignored, as daemons do, so the end
/// of an SSH session never takes a daemon with it.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers the default action (termination) still applies.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => continue,
        }
    }
}

/// Heartbeats to `api` every [`HEARTBEAT_EVERY`] until the task is dropped; logs when the
/// heartbeat starts failing and when it recovers, not every attempt.
pub async fn heartbeat_loop(api: Api, beat: Heartbeat, journal: Journal) {
    let mut failing = false;
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tick.tick().await;
        let outcome = api
            .call(reqwest::Method::POST, "/kiwi-sim/v1/heartbeat", Some(&beat))
            .await;
        let error = match outcome {
            Ok(Ok(_)) => None,
            Ok(Err(f)) => Some(format!(
                "Error updating node status, will retry: error getting node {:?}: {}",
                beat.name, f.message
            )),
            Err(e) => Some(format!(
                "Error updating node status, will retry: {}",
                e.render()
            )),
        };
        match (error, failing) {
            (Some(e), false) => {
                journal.error(&e);
                failing = true;
            }
            (None, true) => {
                journal.info("Node status updates resumed");
                failing = false;
            }
            _ => {}
        }
    }
}
