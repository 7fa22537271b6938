//! The small stand-ins: `sudo` (the session is already root; it only resets the environment
//! as sudo's `env_reset` does, then runs the command), `cloud-init status`, and the k3s install
//! script's text.

use std::os::unix::process::CommandExt;
use std::process::Command;

use super::paths::{own_exe, Root, CLOUD_INIT_FAILED, CLOUD_INIT_HANGS};
use super::{Result, StandinError};

/// Where cloud-init puts the k3s install script on k3s nodes.
pub const INSTALL_SCRIPT: &str = "/usr/local/bin/k3s-install.sh";
/// Where the shipped script (`mocks/standins/k3s-install.sh`) expects the binary, unless
/// `KIWI_SIM_STANDIN` names another path.
pub const DEFAULT_STANDIN_PATH: &str = "/usr/local/lib/kiwi-sim/kiwi-node-standin";

/// sudo's `secure_path` on Ubuntu.
const SECURE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin";

/// The install script: a real shell script (the product runs it with `sh`), handing over to
/// the stand-in binary at `standin`.
pub fn install_script(standin: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Stand-in for https://get.k3s.io on a simulated node: instead of downloading k3s it\n\
         # hands over to kiwi-node-standin, which installs and starts the simulated k3s.\n\
         exec \"${{KIWI_SIM_STANDIN:-{standin}}}\" k3s-install \"$@\"\n"
    )
}

/// `sudo [-n] [-E] [-H] [-u root] [--] COMMAND ARGS…`: runs the command (we are root).
pub fn sudo(args: Vec<String>) -> Result<i32> {
    let mut keep_env = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-n" | "--non-interactive" | "-H" | "--set-home" | "-S" | "--stdin" | "-k" => {}
            "-E" | "--preserve-env" => keep_env = true,
            "-u" | "--user" => {
                i += 1;
                match args.get(i).map(String::as_str) {
                    Some("root" | "#0") => {}
                    Some(user) => {
                        return Err(StandinError::tool(format!("sudo: unknown user {user}")))
                    }
                    None => {
                        return Err(StandinError::tool(
                            "sudo: option requires an argument -- 'u'",
                        ))
                    }
                }
            }
            "--" => {
                i += 1;
                break;
            }
            flag if flag.starts_with('-') => {
                return Err(StandinError::tool(format!(
                    "sudo: invalid option -- '{}'\nusage: sudo -h | -K | -k | -V",
                    flag.trim_start_matches('-')
                )))
            }
            _ => break,
        }
        i += 1;
    }
    let Some((program, rest)) = args[i.min(args.len())..].split_first() else {
        return Err(StandinError::tool(
            "usage: sudo -h | -K | -k | -V\nusage: sudo [-u user] command [arg ...]",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !keep_env {
        // env_reset: only a few variables survive, PATH becomes secure_path. KIWI_SIM_*
        // are the simulation's own and must reach the stand-ins.
        let kept: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                matches!(k.as_str(), "TERM" | "LANG" | "LANGUAGE" | "COLORTERM")
                    || k.starts_with("LC_")
                    || k.starts_with("KIWI_SIM_")
            })
            .collect();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        cmd.env_clear()
            .envs(kept)
            .env("PATH", SECURE_PATH)
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("SHELL", "/bin/bash")
            .env("SUDO_USER", user)
            .env("SUDO_UID", "0")
            .env("SUDO_GID", "0")
            .env("SUDO_COMMAND", args[i..].join(" "));
    }
    let err = cmd.exec();
    Err(StandinError::tool(
        if err.kind() == std::io::ErrorKind::NotFound {
            format!("sudo: {program}: command not found")
        } else {
            format!("sudo: unable to execute {program}: {err}")
        },
    ))
}

/// `cloud-init status [--wait] [--long]`.
pub fn cloud_init(args: &[String]) -> Result<i32> {
    let root = Root::from_env();
    match args.first().map(String::as_str) {
        Some("status") => {
            for a in &args[1..] {
                if !matches!(a.as_str(), "--wait" | "-w" | "--long" | "-l") {
                    return Err(StandinError::tool_code(
                        format!("usage: /usr/bin/cloud-init status [-h] [-l] [-w]\n/usr/bin/cloud-init status: error: unrecognized arguments: {a}"),
                        2,
                    ));
                }
            }
            let wait = args[1..].iter().any(|a| a == "--wait" || a == "-w");
            if root.exists(CLOUD_INIT_HANGS) {
                if !wait {
                    println!("status: running");
                    return Ok(0);
                }
                // As cloud-init does: a dot now and then until the boot ends.
                while root.exists(CLOUD_INIT_HANGS) {
                    print!(".");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                println!();
            }
            if root.exists(CLOUD_INIT_FAILED) {
                println!("status: error");
                return Ok(1);
            }
            materialize_install_script(&root)?;
            println!("status: done");
            Ok(0)
        }
        Some("--version") => {
            println!("/usr/bin/cloud-init 24.4-0ubuntu1~24.04.1");
            Ok(0)
        }
        Some(other) => Err(StandinError::tool_code(
            format!(
                "usage: /usr/bin/cloud-init [-h] [--version] [--debug] [--force] [--all-stages] {{init,modules,single,query,features,analyze,devel,collect-logs,clean,status,schema}} ...\n/usr/bin/cloud-init: error: argument subcommand: invalid choice: '{other}' (choose from 'init', 'modules', 'single', 'query', 'features', 'analyze', 'devel', 'collect-logs', 'clean', 'status', 'schema')"
            ),
            2,
        )),
        None => Err(StandinError::tool_code(
            "usage: /usr/bin/cloud-init [-h] [--version] [--debug] [--force] [--all-stages] {init,modules,single,query,features,analyze,devel,collect-logs,clean,status,schema} ...\n/usr/bin/cloud-init: error: the following arguments are required: subcommand",
            2,
        )),
    }
}

/// First boot is what puts the install script in place on a real k3s node. If the simulator
/// left a symlink to this binary there (which `sh` cannot run), replace it with the script.
fn materialize_install_script(root: &Root) -> Result<()> {
    let path = root.path(INSTALL_SCRIPT);
    let is_link = path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        let exe = own_exe()?;
        root.remove(INSTALL_SCRIPT)?;
        root.write(
            INSTALL_SCRIPT,
            &install_script(&exe.to_string_lossy()),
            0o755,
        )?;
    }
    Ok(())
}

/// `kiwi-node-standin write-install-script [PATH]`: writes the install script (default
/// [`INSTALL_SCRIPT`], under `KIWI_SIM_ROOT`) pointing at this binary.
pub fn write_install_script(args: &[String]) -> Result<i32> {
    let root = Root::from_env();
    let target = args.first().map(String::as_str).unwrap_or(INSTALL_SCRIPT);
    let exe = own_exe()?;
    root.remove(target)?;
    root.write(target, &install_script(&exe.to_string_lossy()), 0o755)?;
    Ok(0)
}
