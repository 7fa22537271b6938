//! `systemctl` and `journalctl` for the units the stand-ins run: `k3s`, `k3s-agent` (from the
//! unit files k3s's install script writes) and `kubelet` (the kubelet package's unit, built in).
//!
//! A started unit's `ExecStart` runs detached (its own process group, stdin closed, stdout and
//! stderr appended to `/var/log/kiwi-sim/<unit>.log`), its pid goes to
//! `/run/kiwi-sim/pids/<unit>.pid`, and `systemctl start` waits, as for systemd's
//! `Type=notify`, until the daemon marks itself ready or exits, then reports like systemd.
//! `Restart=always` is not simulated: a killed daemon stays dead until started again.
//!
//! `nftables` is the one oneshot unit (Debian's `nftables.service`, `RemainAfterExit=yes`):
//! starting it loads `/etc/nftables.conf` with the stand-in `nft` ([`super::nft`]), stopping it
//! flushes the node's ruleset (or runs the `ExecStop=` of a drop-in
//! `/etc/systemd/system/nftables.service.d/*.conf` with the stand-in `nft`, as the node's
//! firewall cloud-init writes one), and it stays `active` after a successful start until stopped.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Local;

use super::paths::{node_identity, own_exe, Root, FAILED_DIR, LOG_DIR, PID_DIR, READY_DIR};
use super::{Result, StandinError};

/// How long `systemctl start` waits for a daemon to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `systemctl stop` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Built-in oneshot units and where their packages put their unit files.
const ONESHOT: [(&str, &str); 1] = [("nftables", "/usr/lib/systemd/system/nftables.service")];
/// Markers of oneshot units that ran successfully (`RemainAfterExit=yes`).
const ONESHOT_DIR: &str = "/run/kiwi-sim/oneshot";

fn oneshot_file(unit: &str) -> Option<&'static str> {
    ONESHOT.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f)
}

/// `nftables.service`'s `ExecStart=/usr/sbin/nft -f /etc/nftables.conf`.
fn start_oneshot(root: &Root, unit: &str) -> Result<()> {
    log_systemd(
        root,
        unit,
        &format!("Starting {unit}.service - {}...", description(unit)),
    );
    let code = super::nft::main(vec!["-f".into(), "/etc/nftables.conf".into()])?;
    if code != 0 {
        log_systemd(
            root,
            unit,
            &format!("{unit}.service: Main process exited, code=exited, status={code}/FAILURE"),
        );
        root.remove(&format!("{ONESHOT_DIR}/{unit}"))?;
        root.write(&format!("{FAILED_DIR}/{unit}"), "", 0o644)?;
        return Err(job_failed(
            unit,
            "the control process exited with error code",
        ));
    }
    root.remove(&format!("{FAILED_DIR}/{unit}"))?;
    root.write(&format!("{ONESHOT_DIR}/{unit}"), "", 0o644)?;
    log_systemd(
        root,
        unit,
        &format!("Finished {unit}.service - {}.", description(unit)),
    );
    Ok(())
}

fn unit_name(arg: &str) -> String {
    arg.trim_end_matches(".service").to_string()
}

/// The node path of the unit's file, if one exists.
fn unit_file(root: &Root, unit: &str) -> Option<String> {
    UNIT_DIRS
        .iter()
        .map(|d| format!("{d}/{unit}.service"))
        .find(|p| root.exists(p))
}

/// The program and arguments a unit runs; `None` for an unknown unit.
fn exec_start(root: &Root, unit: &str) -> Result<Option<(PathBuf, Vec<String>)>> {
    let Some(file) = unit_file(root, unit) else {
        // The kubelet package's unit runs /usr/bin/kubelet; here that is this binary.
        return (unit == "kubelet")
            .then(|| own_exe().map(|exe| (exe, vec!["kubelet".to_string()])))
            .transpose();
    };
    let text = root.read_opt(&file)?.unwrap_or_default();
    let joined = text.replace("\\\n", " ");
    let Some(line) = joined
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("ExecStart="))
    else {
        return Err(StandinError::Parse {
            path: root.path(&file),
            message: "no ExecStart=".into(),
        });
    };
    let mut words = line
        .trim_start_matches(['-', '@', '+', '!'])
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string());
    let program = words.next().unwrap_or_default();
    if program.rsplit('/').next() == Some("nft") {
        // Never the host's real nft outside a private namespace (see
        // `super::nft`); a unit that runs it is not simulated.
        return Err(StandinError::Parse {
            path: root.path(&file),
            message: "runs nft directly, which a simulated node must not (the host's ruleset \
                      is every node's); not started"
                .into(),
        });
    }
    Ok(Some((root.path(&program), words.collect())))
}

fn pid_path(unit: &str) -> String {
    format!("{PID_DIR}/{unit}.pid")
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The pid of the unit's running daemon.
pub fn running_pid(root: &Root, unit: &str) -> Option<u32> {
    let pid = root
        .read_opt(&pid_path(unit))
        .ok()
        .flatten()?
        .trim()
        .parse()
        .ok()?;
    process_alive(pid).then_some(pid)
}

fn host(root: &Root) -> String {
    node_identity(root)
        .map(|n| n.name)
        .unwrap_or_else(|_| "localhost".into())
}

fn description(unit: &str) -> &'static str {
    match unit {
        "k3s" | "k3s-agent" => "Lightweight Kubernetes",
        "kubelet" => "kubelet: The Kubernetes Node Agent",
        "nftables" => "nftables",
        _ => "",
    }
}

/// Appends a line from "systemd" to the unit's log.
fn log_systemd(root: &Root, unit: &str, msg: &str) {
    use std::io::Write;
    let path = root.path(&format!("{LOG_DIR}/{unit}.log"));
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(
            f,
            "{} {} systemd[1]: {msg}",
            Local::now().format("%b %d %H:%M:%S"),
            host(root)
        );
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn job_failed(unit: &str, why: &str) -> StandinError {
    StandinError::tool(format!(
        "Job for {unit}.service failed because {why}.\nSee \"systemctl status {unit}.service\" and \"journalctl -xeu {unit}.service\" for details."
    ))
}

/// Starts a unit unless it runs, waiting until its daemon is ready.
pub fn start_unit(root: &Root, unit: &str) -> Result<()> {
    // Always the built-in, whatever unit file the host's packages left in the
    // lower layer: Debian's nftables.service runs /usr/sbin/nft, which would
    // load the node's rules into the host's network namespace.
    if oneshot_file(unit).is_some() {
        if root.exists(&format!("{ONESHOT_DIR}/{unit}")) {
            return Ok(());
        }
        return start_oneshot(root, unit);
    }
    if running_pid(root, unit).is_some() {
        return Ok(());
    }
    let Some((program, args)) = exec_start(root, unit)? else {
        return Err(StandinError::tool_code(
            format!("Failed to start {unit}.service: Unit {unit}.service not found."),
            5,
        ));
    };
    let ready = format!("{READY_DIR}/{unit}");
    root.remove(&ready)?;
    root.remove(&format!("{FAILED_DIR}/{unit}"))?;
    let log_path = root.path(&format!("{LOG_DIR}/{unit}.log"));
    log_systemd(
        root,
        unit,
        &format!("Starting {unit}.service - {}...", description(unit)),
    );
    let io = |action, source| StandinError::Io {
        action,
        path: log_path.clone(),
        source,
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io("cannot open", e))?;
    let log2 = log.try_clone().map_err(|e| io("cannot open", e))?;
    let mut child = match Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            log_systemd(
                root,
                unit,
                &format!(
                    "{unit}.service: Failed to execute {}: {e}",
                    program.display()
                ),
            );
            log_systemd(
                root,
                unit,
                &format!("{unit}.service: Main process exited, code=exited, status=203/EXEC"),
            );
            root.write(&format!("{FAILED_DIR}/{unit}"), "", 0o644)?;
            return Err(job_failed(
                unit,
                "the control process exited with error code",
            ));
        }
    };
    let pid = child.id();
    root.write(&pid_path(unit), &format!("{pid}\n"), 0o644)?;
    let started = Instant::now();
    loop {
        if root
            .read_opt(&ready)?
            .is_some_and(|p| p.trim() == pid.to_string())
        {
            log_systemd(
                root,
                unit,
                &format!("Started {unit}.service - {}.", description(unit)),
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let code = status.code().unwrap_or(1);
            log_systemd(
                root,
                unit,
                &format!("{unit}.service: Main process exited, code=exited, status={code}/FAILURE"),
            );
            log_systemd(
                root,
                unit,
                &format!("Failed to start {unit}.service - {}.", description(unit)),
            );
            root.remove(&pid_path(unit))?;
            root.write(&format!("{FAILED_DIR}/{unit}"), "", 0o644)?;
            return Err(job_failed(
                unit,
                "the control process exited with error code",
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            signal(pid, "-KILL");
            let _ = child.wait();
            log_systemd(
                root,
                unit,
                &format!("{unit}.service: start operation timed out. Terminating."),
            );
            root.remove(&pid_path(unit))?;
            root.write(&format!("{FAILED_DIR}/{unit}"), "", 0o644)?;
            return Err(job_failed(unit, "a timeout was exceeded"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a unit's daemon: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
pub fn stop_unit(root: &Root, unit: &str) -> Result<()> {
    if oneshot_file(unit).is_some() && root.exists(&format!("{ONESHOT_DIR}/{unit}")) {
        match exec_stop_drop_in(root, unit)? {
            // nftables.service's own ExecStop=/usr/sbin/nft flush ruleset.
            None => super::nft::clear(root)?,
            Some(commands) => run_exec_stop(root, unit, &commands)?,
        }
        root.remove(&format!("{ONESHOT_DIR}/{unit}"))?;
        log_systemd(
            root,
            unit,
            &format!("Stopped {unit}.service - {}.", description(unit)),
        );
    }
    if let Some(pid) = running_pid(root, unit) {
        log_systemd(
            root,
            unit,
            &format!("Stopping {unit}.service - {}...", description(unit)),
        );
        signal(pid, "-TERM");
        let started = Instant::now();
        while process_alive(pid) {
            if started.elapsed() > STOP_TIMEOUT {
                signal(pid, "-KILL");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log_systemd(
            root,
            unit,
            &format!("Stopped {unit}.service - {}.", description(unit)),
        );
    }
    root.remove(&pid_path(unit))?;
    root.remove(&format!("{READY_DIR}/{unit}"))
}

/// The `ExecStop=` commands of `unit` when a drop-in
/// (`/etc/systemd/system/UNIT.service.d/*.conf`, in name order) sets them, as systemd composes
/// them (an empty `ExecStop=` clears the list); `None` when no drop-in sets any, so the unit's
/// own apply. Other drop-in keys are not simulated.
fn exec_stop_drop_in(root: &Root, unit: &str) -> Result<Option<Vec<String>>> {
    let dir = format!("/etc/systemd/system/{unit}.service.d");
    let mut names: Vec<String> = match std::fs::read_dir(root.path(&dir)) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".conf"))
            .collect(),
        Err(_) => return Ok(None),
    };
    names.sort();
    let mut commands: Option<Vec<String>> = None;
    for name in names {
        let text = root.read_opt(&format!("{dir}/{name}"))?.unwrap_or_default();
        let mut in_service = false;
        for line in text.replace("\\\n", " ").lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            let Some(value) = line.strip_prefix("ExecStop=").filter(|_| in_service) else {
                continue;
            };
            let list = commands.get_or_insert_with(Vec::new);
            if value.trim().is_empty() {
                list.clear();
            } else {
                list.push(value.trim().to_string());
            }
        }
    }
    Ok(commands)
}

/// Runs a drop-in's `ExecStop=` commands; only the stand-in `nft` is simulated (a `-` prefix
/// ignores its failure, as systemd does), anything else is refused honestly.
fn run_exec_stop(root: &Root, unit: &str, commands: &[String]) -> Result<()> {
    for command in commands {
        let ignore_failure = command.starts_with('-');
        let mut words = command
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .split_whitespace()
            .map(str::to_string);
        let program = words.next().unwrap_or_default();
        if program != "/usr/sbin/nft" {
            return Err(StandinError::Parse {
                path: root.path(&format!("/etc/systemd/system/{unit}.service.d")),
                message: format!("ExecStop={command} is not simulated (only /usr/sbin/nft is)"),
            });
        }
        let code = super::nft::main(words.collect())?;
        if code != 0 && !ignore_failure {
            log_systemd(
                root,
                unit,
                &format!(
                    "{unit}.service: Control process exited, code=exited, status={code}/FAILURE"
                ),
            );
        }
    }
    Ok(())
}

const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

/// Enables a unit; returns systemd's "Created symlink" line the first time.
pub fn enable_unit(root: &Root, unit: &str) -> Result<Option<String>> {
    let Some(file) = unit_file(root, unit)
        .or_else(|| {
            (unit == "kubelet").then(|| "/usr/lib/systemd/system/kubelet.service".to_string())
        })
        .or_else(|| oneshot_file(unit).map(str::to_string))
    else {
        return Err(StandinError::tool(format!(
            "Failed to enable unit: Unit file {unit}.service does not exist."
        )));
    };
    let link = format!("{WANTS}/{unit}.service");
    if root.exists(&link) {
        return Ok(None);
    }
    root.symlink(&PathBuf::from(&file), &link)?;
    Ok(Some(format!("Created symlink {link} → {file}.")))
}

/// `kiwi-node-standin boot`: starts every enabled unit, as systemd does when a machine boots.
/// The simulator runs it when it (re)starts a node, so a rebooted node's k3s or kubelet comes
/// back as on a real server. Failures are reported and the other units still start.
pub fn boot() -> Result<i32> {
    let root = Root::from_env();
    let mut units: Vec<String> = std::fs::read_dir(root.path(WANTS))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(unit_name))
                .collect()
        })
        .unwrap_or_default();
    units.sort();
    let mut code = 0;
    for unit in units {
        if let Err(e) = start_unit(&root, &unit) {
            eprintln!("{}", e.render());
            code = 1;
        }
    }
    Ok(code)
}

fn is_enabled(root: &Root, unit: &str) -> bool {
    root.exists(&format!("{WANTS}/{unit}.service"))
}

fn known(root: &Root, unit: &str) -> bool {
    unit == "kubelet" || oneshot_file(unit).is_some() || unit_file(root, unit).is_some()
}

fn active_state(root: &Root, unit: &str) -> &'static str {
    if running_pid(root, unit).is_some() || root.exists(&format!("{ONESHOT_DIR}/{unit}")) {
        "active"
    } else if root.exists(&format!("{FAILED_DIR}/{unit}")) {
        "failed"
    } else {
        "inactive"
    }
}

/// `systemctl VERB [--now] [-q] UNIT…`.
pub fn systemctl(args: &[String]) -> Result<i32> {
    let root = Root::from_env();
    let mut now = false;
    let mut quiet = false;
    let mut words = Vec::new();
    for a in args {
        match a.as_str() {
            "--now" => now = true,
            "-q" | "--quiet" => quiet = true,
            "--no-pager" | "--no-block" | "--full" | "-l" | "--no-ask-password" | "--system" => {}
            flag if flag.starts_with('-') => {
                return Err(StandinError::tool(format!(
                    "systemctl: unrecognized option '{flag}'"
                )))
            }
            w => words.push(w.to_string()),
        }
    }
    let Some((verb, units)) = words.split_first() else {
        return Err(StandinError::tool("Too few arguments."));
    };
    let units: Vec<String> = units.iter().map(|u| unit_name(u)).collect();
    let needs_unit = !matches!(verb.as_str(), "daemon-reload" | "daemon-reexec");
    if needs_unit && units.is_empty() {
        return Err(StandinError::tool(format!(
            "Too few arguments.\nUnit name required for '{verb}'."
        )));
    }
    let mut code = 0;
    for unit in &units {
        match verb.as_str() {
            "start" => start_unit(&root, unit)?,
            "stop" => {
                if !known(&root, unit) {
                    return Err(StandinError::tool_code(
                        format!("Failed to stop {unit}.service: Unit {unit}.service not loaded."),
                        5,
                    ));
                }
                stop_unit(&root, unit)?;
            }
            "restart" => {
                stop_unit(&root, unit)?;
                start_unit(&root, unit)?;
            }
            "enable" => {
                if let Some(line) = enable_unit(&root, unit)? {
                    eprintln!("{line}");
                }
                if now {
                    start_unit(&root, unit)?;
                }
            }
            "disable" => {
                root.remove(&format!("{WANTS}/{unit}.service"))?;
                if now {
                    stop_unit(&root, unit)?;
                }
            }
            "is-active" => {
                let state = active_state(&root, unit);
                if !quiet {
                    println!("{state}");
                }
                if state != "active" {
                    code = 3;
                }
            }
            "is-failed" => {
                let state = active_state(&root, unit);
                if !quiet {
                    println!("{state}");
                }
                if state != "failed" {
                    code = 1;
                }
            }
            "is-enabled" => {
                let enabled = is_enabled(&root, unit);
                if !quiet {
                    println!("{}", if enabled { "enabled" } else { "disabled" });
                }
                if !enabled {
                    code = 1;
                }
            }
            "status" => code = code.max(status(&root, unit)?),
            other => {
                return Err(StandinError::tool(format!(
                    "Unknown command verb '{other}'."
                )))
            }
        }
    }
    Ok(code)
}

fn status(root: &Root, unit: &str) -> Result<i32> {
    if !known(root, unit) {
        return Err(StandinError::tool_code(
            format!("Unit {unit}.service could not be found."),
            4,
        ));
    }
    let file = unit_file(root, unit).unwrap_or_else(|| {
        oneshot_file(unit)
            .unwrap_or("/usr/lib/systemd/system/kubelet.service")
            .into()
    });
    let enabled = if is_enabled(root, unit) {
        "enabled"
    } else {
        "disabled"
    };
    let state = active_state(root, unit);
    let (dot, active) = match state {
        "active" => ("●", "active (running)".to_string()),
        "failed" => ("×", "failed (Result: exit-code)".to_string()),
        _ => ("○", "inactive (dead)".to_string()),
    };
    println!("{dot} {unit}.service - {}", description(unit));
    println!("     Loaded: loaded ({file}; {enabled}; preset: enabled)");
    println!("     Active: {active}");
    if let Some(pid) = running_pid(root, unit) {
        println!("   Main PID: {pid} ({unit})");
    }
    println!();
    for line in tail(root, unit, 10)? {
        println!("{line}");
    }
    Ok(if state == "active" { 0 } else { 3 })
}

fn tail(root: &Root, unit: &str, n: usize) -> Result<Vec<String>> {
    let text = root
        .read_opt(&format!("{LOG_DIR}/{unit}.log"))?
        .unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    Ok(lines[lines.len().saturating_sub(n)..].to_vec())
}

/// `journalctl -u UNIT [-n N] [--no-pager] [-x] [-e]`.
pub fn journalctl(args: &[String]) -> Result<i32> {
    let root = Root::from_env();
    let mut units = Vec::new();
    let mut lines: Option<usize> = None;
    let mut it = args.iter();
    let bad_lines = |v: &str| StandinError::tool(format!("Failed to parse lines '{v}'."));
    while let Some(a) = it.next() {
        match a.as_str() {
            "-u" | "--unit" => {
                units.push(unit_name(it.next().map(String::as_str).unwrap_or_default()))
            }
            "-n" | "--lines" => {
                let v = it.next().map(String::as_str).unwrap_or_default();
                lines = Some(v.parse().map_err(|_| bad_lines(v))?);
            }
            "--no-pager" | "-x" | "--catalog" | "-q" | "--quiet" | "-l" | "--full" | "-a"
            | "--all" => {}
            "-e" | "--pager-end" => lines = lines.or(Some(1000)),
            "-xe" => lines = lines.or(Some(1000)),
            "-xeu" => {
                lines = lines.or(Some(1000));
                units.push(unit_name(it.next().map(String::as_str).unwrap_or_default()));
            }
            other => {
                if let Some(u) = other
                    .strip_prefix("--unit=")
                    .or_else(|| other.strip_prefix("-u"))
                {
                    units.push(unit_name(u));
                } else if let Some(v) = other
                    .strip_prefix("--lines=")
                    .or_else(|| other.strip_prefix("-n"))
                {
                    lines = Some(v.parse().map_err(|_| bad_lines(v))?);
                } else {
                    return Err(StandinError::tool(format!(
                        "journalctl: unrecognized option '{other}'"
                    )));
                }
            }
        }
    }
    let mut out = Vec::new();
    for unit in &units {
        out.extend(tail(&root, unit, usize::MAX)?);
    }
    if out.is_empty() {
        println!("-- No entries --");
        return Ok(0);
    }
    let n = lines.unwrap_or(out.len());
    for line in &out[out.len().saturating_sub(n)..] {
        println!("{line}");
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The firewall cloud-init's drop-in replaces nftables.service's `nft flush ruleset`; the
    /// stand-in reads it as systemd composes it.
    #[test]
    fn an_exec_stop_drop_in_is_read_as_systemd_composes_it() {
        let dir = std::env::temp_dir().join(format!("kiwi-systemd-dropin-{}", std::process::id()));
        let root = Root::at(dir.clone());
        assert_eq!(exec_stop_drop_in(&root, "nftables").unwrap(), None);
        let d = "/etc/systemd/system/nftables.service.d";
        root.write(
            &format!("{d}/kiwi.conf"),
            "[Service]\nExecStop=\nExecStop=-/usr/sbin/nft delete table inet kiwi\n",
            0o644,
        )
        .unwrap();
        root.write(
            &format!("{d}/00-other.conf"),
            "[Service]\nExecStop=/usr/sbin/nft flush ruleset\n[Unit]\nExecStop=/bin/false\n",
            0o644,
        )
        .unwrap();
        root.write(
            &format!("{d}/notes.txt"),
            "[Service]\nExecStop=/bin/false\n",
            0o644,
        )
        .unwrap();
        assert_eq!(
            exec_stop_drop_in(&root, "nftables").unwrap(),
            Some(vec!["-/usr/sbin/nft delete table inet kiwi".to_string()])
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
