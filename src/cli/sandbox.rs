//! `kiwi-infra sandbox`: a local world to rehearse in before touching
//! Contabo. `up` starts the Contabo stand-in (`contabo-mock`, built with the
//! workspace) with simulated nodes and a pre-built Core control plane, and
//! writes a copy of the example inventory, an operator key and an `env`
//! file pointing kiwi-infra at it; `down` stops it; `demo` runs the whole
//! tour. kiwi-infra itself talks to the sandbox exactly as to Contabo and
//! real servers: only URLs, credentials and the inventory differ.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::args::{GlobalArgs, SandboxArgs, SandboxCommand};
use super::CliError;
use crate::ssh::HostKey;

/// The example inventory, built in so the sandbox works from any directory.
const INVENTORY: [(&str, &str); 5] = [
    ("kiwi.toml", include_str!("../../inventory/kiwi.toml")),
    (
        "customers/baeckerei-huber.toml",
        include_str!("../../inventory/customers/baeckerei-huber.toml"),
    ),
    (
        "customers/kanzlei-weber.toml",
        include_str!("../../inventory/customers/kanzlei-weber.toml"),
    ),
    (
        "customers/praxis-lindner.toml",
        include_str!("../../inventory/customers/praxis-lindner.toml"),
    ),
    (
        "customers/stadtwerke-nord.toml",
        include_str!("../../inventory/customers/stadtwerke-nord.toml"),
    ),
];

/// The Core control plane of the sandbox, on loopback addresses.
const CONTROL_PLANE: [(&str, &str); 3] = [
    ("kiwi-core-cp-01", "127.0.31.1"),
    ("kiwi-core-cp-02", "127.0.31.2"),
    ("kiwi-core-cp-03", "127.0.31.3"),
];

/// The credentials the stand-in accepts (sandbox-only, not secrets).
const CREDENTIALS: [(&str, &str); 4] = [
    ("CNTB_OAUTH2_CLIENT_ID", "kiwi-sandbox"),
    ("CNTB_OAUTH2_CLIENT_SECRET", "sandbox-secret"),
    ("CNTB_OAUTH2_USER", "operator@kiwistack.test"),
    ("CNTB_OAUTH2_PASS", "sandbox-password"),
];

/// `kiwi-infra sandbox …`.
pub(super) async fn run(global: &GlobalArgs, cmd: &SandboxCommand) -> Result<ExitCode, CliError> {
    match cmd {
        SandboxCommand::Up(a) => {
            let sandbox = up(&a.dir)?;
            println!("{}", sandbox.describe());
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Down(a) => {
            down(&a.dir)?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Demo(a) => demo(global, a),
    }
}

/// A running sandbox.
#[derive(Debug)]
struct Sandbox {
    dir: PathBuf,
    url: String,
}

impl Sandbox {
    fn inventory(&self) -> PathBuf {
        self.dir.join("inventory")
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = CREDENTIALS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("KIWI_API_URL".into(), self.url.clone()));
        env.push((
            "KIWI_AUTH_URL".into(),
            format!(
                "{}/auth/realms/contabo/protocol/openid-connect/token",
                self.url
            ),
        ));
        env.push(("KIWI_INVENTORY".into(), path_text(&self.inventory())));
        env.push((
            "KIWI_SSH_IDENTITY".into(),
            path_text(&self.dir.join("operator")),
        ));
        env
    }

    fn describe(&self) -> String {
        format!(
            "Sandbox running: Contabo stand-in at {url}, simulated nodes, and the Core \
             control plane on 127.0.31.1-3.\n\
             Inventory: {inv} (a copy of the example; edit it to rehearse a change)\n\n\
             Point kiwi-infra at it:\n  source {env}\n  kiwi-infra plan\n  \
             kiwi-infra apply\n  kiwi-infra status\n\nStop it with: kiwi-infra sandbox down --dir {dir}",
            url = self.url,
            inv = self.inventory().display(),
            env = self.dir.join("env").display(),
            dir = self.dir.display(),
        )
    }
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let what = what.into();
    move |e| CliError::Internal(format!("sandbox: {what}: {e}"))
}

/// Starts the sandbox in `dir` (which must not hold a running one).
fn up(dir: &Path) -> Result<Sandbox, CliError> {
    if let Some(pid) = running_pid(dir) {
        return Err(CliError::User(format!(
            "a sandbox is already running in {} (contabo-mock pid {pid}); use it (source {}/env) \
             or stop it with `kiwi-infra sandbox down --dir {0}`",
            dir.display(),
            dir.display()
        )));
    }
    preflight()?;
    let mock = sibling_binary("contabo-mock")?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(format!("cannot clear {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir.join("inventory/customers"))
        .map_err(io(format!("cannot create {}", dir.display())))?;

    // The operator's key for the sandbox: generated, never the real one.
    let key = HostKey::generate("sandbox-operator")
        .map_err(|e| CliError::Internal(format!("sandbox: cannot generate a key: {e}")))?;
    write_file(&dir.join("operator"), key.private_openssh().expose(), 0o600)?;
    write_file(
        &dir.join("operator.pub"),
        &format!("{}\n", key.public_openssh()),
        0o644,
    )?;
    write_inventory(&dir.join("inventory"), key.public_openssh())?;

    let control_plane = CONTROL_PLANE
        .iter()
        .map(|(n, ip)| format!("{n}={ip}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = std::fs::File::create(dir.join("mock.out")).map_err(io("cannot create mock.out"))?;
    let log = std::fs::File::create(dir.join("mock.log")).map_err(io("cannot create mock.log"))?;
    let mut command = Command::new(&mock);
    command
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--state")
        .arg(dir.join("contabo.json"))
        .arg("--nodes")
        .arg(dir.join("nodes"))
        .arg("--control-plane")
        .arg(&control_plane)
        .arg("--control-plane-authorized-key")
        .arg(dir.join("operator.pub"))
        .arg("--control-plane-known-hosts")
        .arg(dir.join("control-plane.known_hosts"))
        .args(["--provisioning-ms", "1500", "--installing-ms", "1500"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log);
    // Its own process group: a Ctrl-C at the operator's shell after `up`
    // must not take the sandbox down.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(io(format!("cannot start {}", mock.display())))?;
    write_file(&dir.join("mock.pid"), &format!("{}\n", child.id()), 0o644)?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let url = loop {
        let text = std::fs::read_to_string(dir.join("mock.out")).unwrap_or_default();
        if let Some(line) = text.lines().next().filter(|l| l.starts_with("http")) {
            break line.trim().to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(dir.join("mock.pid"));
            return Err(CliError::User(format!(
                "the sandbox's Contabo stand-in stopped ({status}):\n{}",
                tail(&dir.join("mock.log"), 15)
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(CliError::Internal(format!(
                "the sandbox's Contabo stand-in did not start within a minute:\n{}",
                tail(&dir.join("mock.log"), 15)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    // The control plane existed before kiwi-infra: its keys are recorded
    // the way an operator records verified keys, by node name.
    let cp_keys = std::fs::read_to_string(dir.join("control-plane.known_hosts"))
        .map_err(io("cannot read the control plane's host keys"))?;
    let by_name: String = cp_keys
        .lines()
        .filter(|l| {
            CONTROL_PLANE
                .iter()
                .any(|(n, _)| l.starts_with(&format!("{n} ")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_file(&dir.join("inventory/known_hosts"), &by_name, 0o644)?;

    let sandbox = Sandbox {
        dir: dir.to_path_buf(),
        url,
    };
    let env: String = sandbox
        .env()
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    write_file(&dir.join("env"), &env, 0o600)?;
    Ok(sandbox)
}

/// The example inventory with the sandbox's operator key and the Core
/// control plane on loopback addresses.
fn write_inventory(target: &Path, public_key: &str) -> Result<(), CliError> {
    for (name, text) in INVENTORY {
        let mut text = text.to_string();
        if name == "kiwi.toml" {
            text = text
                .lines()
                .map(|l| {
                    if l.starts_with("ssh_public_key") {
                        format!("ssh_public_key = \"{public_key}\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            text.push('\n');
            text = text
                .replace("api.core.kiwistack.io:6443", "127.0.31.1:6443")
                .replace("203.0.113.1", "127.0.31.");
        }
        write_file(&target.join(name), &text, 0o644)?;
    }
    Ok(())
}

/// Stops the sandbox in `dir` and removes its files.
fn down(dir: &Path) -> Result<(), CliError> {
    match running_pid(dir) {
        Some(pid) => {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            println!("Sandbox in {} stopped.", dir.display());
        }
        None => println!("No sandbox is running in {}.", dir.display()),
    }
    if dir.join("mock.pid").exists() || dir.join("env").exists() {
        std::fs::remove_dir_all(dir).map_err(io(format!("cannot remove {}", dir.display())))?;
    }
    Ok(())
}

/// The tour: up, plan, apply, status, plan again, down.
fn demo(global: &GlobalArgs, args: &SandboxArgs) -> Result<ExitCode, CliError> {
    if running_pid(&args.dir).is_some() {
        down(&args.dir)?;
    }
    heading("Starting the sandbox");
    let sandbox = up(&args.dir)?;
    println!("{}", sandbox.describe());
    let me = std::env::current_exe().map_err(io("cannot find the kiwi-infra binary"))?;
    let step = |title: &str, args: &[&str]| -> Result<Option<i32>, String> {
        heading(title);
        println!("$ kiwi-infra {}\n", args.join(" "));
        let mut command = Command::new(&me);
        command.args(args).envs(sandbox.env());
        if global.quiet {
            command.arg("-q");
        }
        command
            .status()
            .map(|s| s.code())
            .map_err(|e| format!("cannot run kiwi-infra: {e}"))
    };
    let outcome = (|| {
        step("What would be bought and built", &["plan"])?;
        let applied = step("Applying it", &["apply", "--auto-approve"])?;
        if applied != Some(0) {
            return Err(format!("apply exited with {applied:?}"));
        }
        step("Every cluster's nodes", &["status"])?;
        let again = step("Nothing is left to do", &["plan", "--detailed-exitcode"])?;
        if again != Some(0) {
            return Err(format!(
                "the plan after apply is not empty (exit {again:?})"
            ));
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            heading("Cleaning up");
            down(&args.dir)?;
            println!("\nThe sandbox tour succeeded.");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!(
                "\nThe sandbox tour failed: {why}.\nThe sandbox is still running for inspection \
                 (source {}/env); logs: {}/mock.log. Stop it with `kiwi-infra sandbox down --dir {}`.",
                args.dir.display(),
                args.dir.display(),
                args.dir.display()
            );
            Ok(ExitCode::from(super::EXIT_FAILURE))
        }
    }
}

fn heading(title: &str) {
    println!("\n==> {title}\n");
}

/// What the simulated nodes need from this machine, said precisely.
fn preflight() -> Result<(), CliError> {
    let mut missing = Vec::new();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        missing.push(
            "root: simulated nodes use mount namespaces and port 22 on loopback addresses; \
             run `sudo kiwi-infra sandbox …` (or as root in a disposable VM or container \
             started with --privileged)"
                .to_string(),
        );
    }
    for (program, package) in [
        ("ssh", "openssh-client"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()));
        if !found {
            missing.push(format!("`{program}`: install the Debian package {package}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::User(format!(
            "the sandbox cannot start on this machine; it needs:\n  - {}",
            missing.join("\n  - ")
        )))
    }
}

/// A binary built with the workspace, next to this one.
fn sibling_binary(name: &str) -> Result<PathBuf, CliError> {
    let me = std::env::current_exe().map_err(io("cannot find the kiwi-infra binary"))?;
    let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(CliError::User(format!(
            "{} not found; the sandbox needs the whole workspace built: `cargo build --workspace` \
             (or `cargo build --workspace --release`)",
            path.display()
        )))
    }
}

/// The pid of the sandbox's stand-in in `dir`, if it is alive.
fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("mock.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io(format!("cannot write {}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(io(format!("cannot write {}", path.display())))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
