//! Can this machine host simulated nodes? Each node is a private mount namespace with overlays
//! over the host's directories and an SSH server on port 22 of a loopback address, which needs
//! privileges and a few util-linux programs. The check is split like the rest of kiwi-infra:
//! [`HostFacts::detect`] observes the machine, [`check`] (pure) decides, so tests can fake a
//! missing requirement and read the message a user would get.

use std::path::{Path, PathBuf};

/// Linux capability numbers (see `capabilities(7)`) read from `CapEff` in `/proc/self/status`.
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_SYS_ADMIN: u32 = 21;

/// Programs the simulator runs, with the Debian/Ubuntu package that provides each.
pub const REQUIRED_PROGRAMS: [(&str, &str); 6] = [
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("kill", "procps"),
    ("hostname", "hostname"),
    ("sleep", "coreutils"),
];

/// What the simulator needs to know about the machine, observed once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// Effective user id.
    pub euid: u32,
    /// `CAP_SYS_ADMIN` is effective: mount namespaces and overlay mounts are allowed.
    pub cap_sys_admin: bool,
    /// `CAP_NET_BIND_SERVICE` is effective: ports below 1024 (SSH's 22) may be bound.
    pub cap_net_bind_service: bool,
    /// Required programs that are not found in `PATH`.
    pub missing_programs: Vec<String>,
    /// `/proc/filesystems` lists `overlay`.
    pub overlayfs: bool,
    /// The stand-in binary the nodes' programs link to exists.
    pub standin_present: bool,
}

impl HostFacts {
    /// Observes this machine and process.
    pub fn detect(standin_binary: &Path) -> Self {
        let caps = effective_capabilities().unwrap_or(0);
        let has = |cap: u32| caps & (1u64 << cap) != 0;
        let missing_programs = REQUIRED_PROGRAMS
            .iter()
            .filter(|(program, _)| find_in_path(program).is_none())
            .map(|(program, _)| (*program).to_owned())
            .collect();
        let overlayfs = std::fs::read_to_string("/proc/filesystems")
            .map(|list| {
                list.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            })
            .unwrap_or(false);
        Self {
            euid: effective_uid().unwrap_or(u32::MAX),
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_net_bind_service: has(CAP_NET_BIND_SERVICE),
            missing_programs,
            overlayfs,
            standin_present: standin_binary.is_file(),
        }
    }
}

/// Everything that stops simulated nodes from running here, each with how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this machine cannot run simulated nodes:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct PreflightError {
    /// One sentence per missing requirement, saying what is missing and how to get it.
    pub problems: Vec<String>,
}

/// Decides whether `facts` allow simulated nodes whose SSH servers listen on `ssh_port`, naming
/// every missing requirement (not only the first) so one run tells the whole story.
pub fn check(
    facts: &HostFacts,
    ssh_port: u16,
    standin_binary: &Path,
) -> Result<(), PreflightError> {
    let mut problems = Vec::new();
    if !facts.cap_sys_admin {
        problems.push(if facts.euid == 0 {
            // uid 0 without CAP_SYS_ADMIN is almost always a container started without it.
            "running as root but without CAP_SYS_ADMIN, which mount namespaces and overlay \
             mounts need: if this is a container, start it with `--cap-add SYS_ADMIN` (Docker/Podman) \
             or `--privileged`"
                .to_owned()
        } else {
            format!(
                "simulated nodes mount overlays in private mount namespaces, which needs root \
                 (CAP_SYS_ADMIN); this process runs as uid {}: run it as root, e.g. \
                 `sudo contabo-mock --nodes DIR` or `sudo -E cargo test …`",
                facts.euid
            )
        });
    }
    if ssh_port < 1024 && !facts.cap_net_bind_service {
        problems.push(format!(
            "the nodes' SSH servers listen on port {ssh_port}, below 1024, which needs root \
             (CAP_NET_BIND_SERVICE): run as root"
        ));
    }
    for program in &facts.missing_programs {
        let package = REQUIRED_PROGRAMS
            .iter()
            .find(|(p, _)| p == program)
            .map_or("util-linux", |(_, pkg)| pkg);
        problems.push(format!(
            "`{program}` is not in PATH; it comes with the `{package}` package \
             (Debian/Ubuntu: `apt-get install {package}`)"
        ));
    }
    if !facts.overlayfs {
        problems.push(
            "the kernel has no overlay filesystem (`overlay` is missing from /proc/filesystems): \
             load it with `modprobe overlay` as root, or use a kernel built with CONFIG_OVERLAY_FS"
                .to_owned(),
        );
    }
    if !facts.standin_present {
        problems.push(format!(
            "the stand-in programs binary {} does not exist: build it with \
             `cargo build -p kiwi-mocks --bin kiwi-node-standin`, or name another with --standin",
            standin_binary.display()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PreflightError { problems })
    }
}

fn status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
}

fn effective_capabilities() -> Option<u64> {
    u64::from_str_radix(&status_field("CapEff:")?, 16).ok()
}

fn effective_uid() -> Option<u32> {
    // `Uid:` lists real, effective, saved and filesystem ids.
    status_field("Uid:")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The first executable file named `program` in `PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capable() -> HostFacts {
        HostFacts {
            euid: 0,
            cap_sys_admin: true,
            cap_net_bind_service: true,
            missing_programs: vec![],
            overlayfs: true,
            standin_present: true,
        }
    }

    #[test]
    fn a_capable_root_host_passes() {
        assert_eq!(check(&capable(), 22, Path::new("/x")), Ok(()));
    }

    #[test]
    fn an_unprivileged_user_is_told_to_run_as_root_for_namespaces_and_port_22() {
        let facts = HostFacts {
            euid: 1000,
            cap_sys_admin: false,
            cap_net_bind_service: false,
            ..capable()
        };
        let err = check(&facts, 22, Path::new("/x"))
            .err()
            .map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(msg.contains("uid 1000"), "{msg}");
        assert!(msg.contains("sudo contabo-mock --nodes DIR"), "{msg}");
        assert!(msg.contains("port 22"), "{msg}");
        // A high port needs no privilege: only the namespace problem remains.
        let err = check(&facts, 2222, Path::new("/x")).err();
        assert_eq!(err.map(|e| e.problems.len()), Some(1));
    }

    #[test]
    fn root_in_a_container_without_sys_admin_is_told_about_the_capability() {
        let facts = HostFacts {
            cap_sys_admin: false,
            ..capable()
        };
        let msg = check(&facts, 22, Path::new("/x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("--cap-add SYS_ADMIN"), "{msg}");
        assert!(!msg.contains("sudo"), "{msg}");
    }

    #[test]
    fn missing_programs_name_their_package() {
        let facts = HostFacts {
            missing_programs: vec!["nsenter".into(), "kill".into()],
            overlayfs: false,
            ..capable()
        };
        let err = check(&facts, 22, Path::new("/x")).err();
        let problems = err.map(|e| e.problems).unwrap_or_default();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("`nsenter`") && problems[0].contains("apt-get install util-linux")
        );
        assert!(problems[1].contains("`kill`") && problems[1].contains("procps"));
        assert!(problems[2].contains("modprobe overlay"));
    }
}
