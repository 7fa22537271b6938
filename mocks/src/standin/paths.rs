//! Where a node's files are. On a simulated node every absolute path is used as is (the node's
//! mount namespace gives it its own `/etc`, `/var`, …). Tests have no namespaces: they set
//! `KIWI_SIM_ROOT` to a directory per node, and every absolute path is taken under it.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Result, StandinError};

/// The variable that roots all paths (tests only; the product never sets it).
pub const ROOT_ENV: &str = "KIWI_SIM_ROOT";
/// The node's identity, written by the simulator.
pub const NODE_JSON: &str = "/etc/kiwi-sim/node.json";
/// Present when a test wants `cloud-init status --wait` to report a failed first boot.
pub const CLOUD_INIT_FAILED: &str = "/etc/kiwi-sim/cloud-init-failed";
/// Present while a test wants cloud-init's first boot never to finish: `cloud-init status`
/// says `running` and `--wait` waits (a node that never becomes ready).
pub const CLOUD_INIT_HANGS: &str = "/etc/kiwi-sim/cloud-init-hangs";
/// Pid files of running daemons, one per unit (the simulator kills them when a node stops).
pub const PID_DIR: &str = "/run/kiwi-sim/pids";
/// Markers a daemon writes once it is up (the stand-in for systemd's `READY=1`).
pub const READY_DIR: &str = "/run/kiwi-sim/ready";
/// Markers of units whose last start failed.
pub const FAILED_DIR: &str = "/run/kiwi-sim/failed";
/// Daemon logs, one per unit (what `journalctl -u` reads).
pub const LOG_DIR: &str = "/var/log/kiwi-sim";

/// The root all absolute paths are taken under.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    /// `KIWI_SIM_ROOT`, or `/`.
    pub fn from_env() -> Root {
        match std::env::var_os(ROOT_ENV) {
            Some(root) if !root.is_empty() => Root(PathBuf::from(root)),
            _ => Root(PathBuf::from("/")),
        }
    }

    /// A root at `dir` (tests).
    #[cfg(test)]
    pub fn at(dir: PathBuf) -> Root {
        Root(dir)
    }

    /// The host path of the node's absolute path `abs`.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    /// Reads a node file, `None` when it does not exist.
    pub fn read_opt(&self, abs: &str) -> Result<Option<String>> {
        let path = self.path(abs);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StandinError::Io {
                action: "cannot read",
                path,
                source,
            }),
        }
    }

    /// True when the node file exists.
    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).symlink_metadata().is_ok()
    }

    /// Writes a node file with `mode`, creating its directory.
    pub fn write(&self, abs: &str, contents: &str, mode: u32) -> Result<()> {
        write_host(&self.path(abs), contents, mode)
    }

    /// Removes a node file or directory tree; absent is fine.
    pub fn remove(&self, abs: &str) -> Result<()> {
        let path = self.path(abs);
        let result = match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => return Ok(()),
        };
        result.map_err(|source| StandinError::Io {
            action: "cannot remove",
            path,
            source,
        })
    }

    /// Points the node path `link` at `target` (a host path), replacing what was there.
    pub fn symlink(&self, target: &Path, link: &str) -> Result<()> {
        let path = self.path(link);
        create_parent(&path)?;
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path).map_err(|source| StandinError::Io {
            action: "cannot create symlink",
            path,
            source,
        })
    }
}

/// Writes a host file atomically (temporary file and rename) with `mode`.
pub fn write_host(path: &Path, contents: &str, mode: u32) -> Result<()> {
    create_parent(path)?;
    // Unique per process and call, so that no two writers share it.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let io = |source| StandinError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StandinError::Io {
            action: "cannot create directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// The node's identity as the simulator wrote it to [`NODE_JSON`].
#[derive(Debug, Clone, Deserialize)]
pub struct NodeIdentity {
    /// Host name (the slot name).
    pub name: String,
    /// The node's loopback IPv4; every server of the node binds to it.
    pub ip: Ipv4Addr,
    /// Its private-network address once that NIC works (a Contabo private network);
    /// servers that listen on every interface (k3s' API) bind it too.
    #[serde(default)]
    pub private_ip: Option<Ipv4Addr>,
    /// Contabo instance id, when the node stands for one.
    #[serde(default)]
    pub instance_id: Option<u64>,
    /// A hint from the simulator, unused by the stand-ins.
    #[serde(default)]
    pub role_hint: Option<String>,
}

impl NodeIdentity {
    /// The node's addresses: public first, then private (if its NIC works).
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        std::iter::once(self.ip).chain(self.private_ip).collect()
    }
}

/// Reads the node's identity.
pub fn node_identity(root: &Root) -> Result<NodeIdentity> {
    let path = root.path(NODE_JSON);
    let text = root
        .read_opt(NODE_JSON)?
        .ok_or_else(|| StandinError::Parse {
            path: path.clone(),
            message: "missing: this is not a simulated node".into(),
        })?;
    serde_json::from_str(&text).map_err(|e| StandinError::Parse {
        path,
        message: e.to_string(),
    })
}

/// The path of the running binary, which installed programs (`k3s`, `kubectl`) link to.
pub fn own_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|source| StandinError::Io {
        action: "cannot find own executable",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })
}
