//! A node's own view of the filesystem, and the processes living in it.
//!
//! Each node has a directory `<state dir>/<node>/` with overlay `upper/` and `work/` layers for
//! the directories a node writes to ([`OVERLAID`]). A long-lived *holder* process, started with
//! `unshare --mount --uts --propagation private`, mounts those overlays (lower = the host's
//! directory) and sets the hostname, then sleeps. Commands enter its namespaces with `nsenter`,
//! so `/etc/rancher/k3s/config.yaml` written by a command lands in that node's `upper/etc`,
//! never on the host or in another node. The mounts live only in the namespace: they vanish
//! when its last process is gone, which is how a node is stopped.
//!
//! First-boot files (cloud-init's `write_files`, the host key, the stand-in links) are written
//! straight into the upper layers *before* the holder mounts them, which overlayfs allows;
//! later reads of a running node go through `/proc/<holder>/root`, the holder's own view.
//!
//! Every process started for a node carries [`MARKER_VAR`] in its environment, so that
//! processes a crashed run left behind can be found and killed by the next one.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::NodesError;

/// Directories every node sees through its own overlay (lower = the host's directory).
pub const OVERLAID: [&str; 9] = [
    "/etc",
    "/var",
    "/usr/local",
    "/usr/bin",
    "/home",
    "/root",
    "/run",
    "/opt",
    "/tmp",
];

/// Environment variable set on every process of every node: `KIWI_SIM_STATE=<state dir>`.
pub const MARKER_VAR: &str = "KIWI_SIM_STATE";

/// How long a holder may take to mount its overlays.
const HOLDER_READY_TIMEOUT: Duration = Duration::from_secs(15);

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NodesError {
    let path = path.into();
    move |source| NodesError::Io { path, source }
}

/// The overlay layers of one node, on the host.
#[derive(Debug, Clone)]
pub struct Layers {
    dir: PathBuf,
}

impl Layers {
    /// Layers kept in `dir` (`<state dir>/<node>`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The node's directory on the host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn upper(&self, target: &str) -> PathBuf {
        self.dir.join("upper").join(target.trim_start_matches('/'))
    }

    fn work(&self, target: &str) -> PathBuf {
        self.dir
            .join("work")
            .join(target.trim_start_matches('/').replace('/', "-"))
    }

    /// True once the node has booted at least once (its disk exists).
    pub fn exists(&self) -> bool {
        self.dir.join("upper").is_dir()
    }

    /// Creates the layers that do not exist yet and empties `/run`, a tmpfs on a real node.
    /// Each upper root takes the host directory's owner and mode, because the merged
    /// directory shows the upper root's (a 0755 `/tmp` would break every non-root program).
    pub fn prepare(&self) -> Result<(), NodesError> {
        for target in ["/run"] {
            for dir in [self.upper(target), self.work(target)] {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
                }
            }
        }
        for target in OVERLAID {
            let upper = self.upper(target);
            let work = self.work(target);
            for dir in [&upper, &work] {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let host = std::fs::metadata(target).map_err(io_err(target))?;
            copy_owner_and_mode(&upper, &host)?;
        }
        Ok(())
    }

    /// Where the node path `path` lives in the upper layers, with the overlaid directory it
    /// falls under. `None` if it is outside every overlay (writing there would write the
    /// host's file) or not a plain absolute path.
    fn locate(&self, path: &str) -> Option<(&'static str, PathBuf)> {
        let p = Path::new(path);
        if !p.is_absolute()
            || p.components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return None;
        }
        OVERLAID.iter().find_map(|target| {
            let rel = p.strip_prefix(target).ok()?;
            (!rel.as_os_str().is_empty()).then(|| (*target, rel.to_path_buf()))
        })
    }

    /// Creates the parents of `rel` under `target`'s upper layer, each with the owner and mode
    /// of the host directory it shadows, if any, so the merged view looks like the host's.
    fn create_parents(&self, target: &str, rel: &Path) -> Result<PathBuf, NodesError> {
        let mut upper = self.upper(target);
        let mut host = PathBuf::from(target);
        if let Some(parent) = rel.parent() {
            for component in parent.components() {
                upper.push(component);
                host.push(component);
                if !upper.is_dir() {
                    std::fs::create_dir(&upper).map_err(io_err(&upper))?;
                    if let Ok(meta) = std::fs::metadata(&host) {
                        copy_owner_and_mode(&upper, &meta)?;
                    }
                }
            }
        }
        Ok(self.upper(target).join(rel))
    }

    /// Writes a file into a node that is not running, creating parent directories.
    pub fn write(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        append: bool,
    ) -> Result<(), NodesError> {
        let (target, rel) = self
            .locate(path)
            .ok_or_else(|| NodesError::OutsideOverlay {
                path: path.to_owned(),
            })?;
        let file = self.create_parents(target, &rel)?;
        if append {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .map_err(io_err(&file))?;
            f.write_all(content).map_err(io_err(&file))?;
        } else {
            // A symlink left there (e.g. by an earlier boot) must be replaced, not followed.
            if std::fs::symlink_metadata(&file).is_ok() {
                std::fs::remove_file(&file).map_err(io_err(&file))?;
            }
            std::fs::write(&file, content).map_err(io_err(&file))?;
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(&file))
    }

    /// Makes `path` inside a node that is not running a symlink to `to` (replacing whatever
    /// is there).
    pub fn symlink(&self, path: &str, to: &Path) -> Result<(), NodesError> {
        let (target, rel) = self
            .locate(path)
            .ok_or_else(|| NodesError::OutsideOverlay {
                path: path.to_owned(),
            })?;
        let link = self.create_parents(target, &rel)?;
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).map_err(io_err(&link))?;
        }
        std::os::unix::fs::symlink(to, &link).map_err(io_err(&link))
    }

    /// Creates a directory (and parents) inside a node that is not running.
    pub fn mkdir(&self, path: &str, mode: u32) -> Result<(), NodesError> {
        let (target, rel) = self
            .locate(path)
            .ok_or_else(|| NodesError::OutsideOverlay {
                path: path.to_owned(),
            })?;
        let dir = self.create_parents(target, &rel.join("x"))?;
        let dir = dir.parent().map(Path::to_path_buf).unwrap_or(dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).map_err(io_err(&dir))
    }

    /// Reads a file the node itself wrote (its upper layer), e.g. its host key on a reboot.
    pub fn read_own(&self, path: &str) -> Option<Vec<u8>> {
        let (target, rel) = self.locate(path)?;
        std::fs::read(self.upper(target).join(rel)).ok()
    }

    /// Names in a directory of the node's own upper layer (not the host's lower one).
    pub fn own_entries(&self, path: &str) -> Vec<String> {
        let Some((target, rel)) = self.locate(path) else {
            return Vec::new();
        };
        std::fs::read_dir(self.upper(target).join(rel))
            .map(|dir| {
                let mut names: Vec<String> = dir
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect();
                names.sort();
                names
            })
            .unwrap_or_default()
    }

    /// The shell script the holder runs: mount the overlays, set the hostname, say `ready`,
    /// sleep. Overlays over an ancestor of the node directory come last, so that the upper
    /// and work paths of the others are still resolved on the host's filesystem.
    fn holder_script(&self, hostname: &str) -> String {
        let mut targets: Vec<&str> = OVERLAID.to_vec();
        targets.sort_by_key(|t| self.dir.starts_with(t));
        let mut script = String::from("set -e\n");
        for target in targets {
            let options = format!(
                "lowerdir={target},upperdir={},workdir={}",
                self.upper(target).display(),
                self.work(target).display()
            );
            script.push_str(&format!(
                "mount -t overlay kiwi-sim -o {} {}\n",
                shell_quote(&options),
                shell_quote(target)
            ));
        }
        script.push_str(&format!("hostname {}\n", shell_quote(hostname)));
        script.push_str("echo ready\nexec sleep infinity\n");
        script
    }

    /// Starts the node's holder process and waits until its overlays are mounted.
    pub async fn spawn_holder(&self, hostname: &str, marker: &str) -> Result<Holder, NodesError> {
        let mut child = tokio::process::Command::new("unshare")
            .args(["--mount", "--uts", "--propagation", "private", "--"])
            .args(["/bin/sh", "-c", &self.holder_script(hostname)])
            .current_dir("/")
            .env(MARKER_VAR, marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NodesError::Spawn {
                program: "unshare".into(),
                source,
            })?;
        let failed = |stderr: String| NodesError::Holder {
            node: hostname.to_owned(),
            stderr,
        };
        let pid = child.id().ok_or_else(|| failed("exited at once".into()))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let mut stdout = BufReader::new(stdout);
            let read = tokio::time::timeout(HOLDER_READY_TIMEOUT, stdout.read_line(&mut line));
            if read.await.is_err() {
                return Err(failed(format!(
                    "overlays not mounted after {HOLDER_READY_TIMEOUT:?}"
                )));
            }
        }
        if line.trim() != "ready" {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr).await;
            }
            let _ = child.wait().await;
            return Err(failed(stderr.trim().to_owned()));
        }
        let ns = format!("/proc/{pid}/ns/mnt");
        let namespace = std::fs::read_link(&ns).map_err(io_err(ns))?;
        Ok(Holder {
            child,
            pid,
            namespace,
        })
    }
}

/// The process that keeps a node's namespaces (and so its mounts) alive.
#[derive(Debug)]
pub struct Holder {
    /// The process (killed on drop).
    pub child: tokio::process::Child,
    /// Its pid, the target of `nsenter`.
    pub pid: u32,
    /// Its mount namespace (`mnt:[…]`), shared by every process of the node.
    pub namespace: PathBuf,
}

impl Holder {
    /// `nsenter` into this node: see [`enter`].
    pub fn command(&self, shell: &str, command: &str, home: &str) -> tokio::process::Command {
        enter(self.pid, shell, command, home)
    }

    /// A path as this node sees it, readable from the host while the node runs.
    pub fn view(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.pid, path))
    }

    /// Kills every process in the node's namespace (the holder last) and waits for the
    /// holder, after which the overlays are gone.
    pub async fn stop(mut self) {
        let pids: Vec<u32> = processes_in(&self.namespace)
            .into_iter()
            .filter(|p| *p != self.pid)
            .collect();
        kill_and_wait(&pids).await;
        let _ = self.child.kill().await;
    }
}

/// `nsenter` into the node whose holder is `holder_pid`, running `<shell> -c <command>` from
/// `home` (or `/`), as sshd runs the user's login shell with the command. The environment is
/// empty: the caller sets it.
pub fn enter(holder_pid: u32, shell: &str, command: &str, home: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("nsenter");
    c.arg("--target")
        .arg(holder_pid.to_string())
        .args(["--mount", "--uts", "--", "/bin/sh", "-c"])
        .arg("cd \"$2\" 2>/dev/null || cd /; exec \"$1\" -c \"$3\"")
        .args(["kiwi-sim", shell, home, command])
        .current_dir("/")
        .env_clear();
    c
}

fn copy_owner_and_mode(path: &Path, like: &std::fs::Metadata) -> Result<(), NodesError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(like.mode() & 0o7777))
        .map_err(io_err(path))?;
    std::os::unix::fs::chown(path, Some(like.uid()), Some(like.gid())).map_err(io_err(path))
}

/// Single-quotes `s` for `/bin/sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn all_pids() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != me)
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of the processes in the mount namespace `namespace` (as `readlink /proc/PID/ns/mnt`).
pub fn processes_in(namespace: &Path) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns == namespace)
        })
        .collect()
}

/// Pids of processes whose environment has `KIWI_SIM_STATE=<marker>`: every process of every
/// node of one state directory, including daemons a previous run left behind.
pub fn processes_marked(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={marker}");
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// Sends SIGKILL to `pids` (`kill -KILL`; a vanished pid is not an error worth reporting).
pub fn kill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
    if let Err(e) = status {
        tracing::warn!(error = %e, ?pids, "cannot run kill");
    }
}

/// True while `pid` exists and is not a zombie (a killed process whose parent has not
/// reaped it yet is dead for every purpose here).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) S …`: the state follows the last ')', as comm may contain one.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// How long killed processes may take to die before we stop waiting.
const DEATH_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends SIGKILL to `pids` and waits until they are dead (bounded by [`DEATH_TIMEOUT`]):
/// signal delivery is asynchronous, and a caller who stops a node expects it stopped.
pub async fn kill_and_wait(pids: &[u32]) {
    kill(pids);
    let deadline = tokio::time::Instant::now() + DEATH_TIMEOUT;
    while pids.iter().any(|p| alive(*p)) {
        if tokio::time::Instant::now() >= deadline {
            let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
            tracing::warn!(pids = ?left, "processes still alive after SIGKILL");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_overlays_or_with_dot_dot_are_not_located() {
        let l = Layers::new(PathBuf::from("/state/n1"));
        assert_eq!(
            l.locate("/etc/rancher/k3s/config.yaml"),
            Some(("/etc", PathBuf::from("rancher/k3s/config.yaml")))
        );
        assert_eq!(
            l.locate("/usr/local/bin/k3s"),
            Some(("/usr/local", PathBuf::from("bin/k3s")))
        );
        assert_eq!(l.locate("/srv/data"), None);
        assert_eq!(l.locate("/etc/../srv/x"), None);
        assert_eq!(l.locate("/etc"), None);
        assert_eq!(l.locate("etc/x"), None);
    }

    #[test]
    fn overlays_over_an_ancestor_of_the_state_dir_are_mounted_last() {
        let l = Layers::new(PathBuf::from("/tmp/sim/n1"));
        let script = l.holder_script("n1");
        let last_mount = script.lines().rfind(|l| l.starts_with("mount")).unwrap();
        assert!(last_mount.ends_with(" '/tmp'"), "{script}");
        assert!(script.contains("hostname 'n1'"));
    }
}
