//! `kiwi-infra sandbox`: a local world to rehearse in before touching
//! Contabo. `up` starts the Contabo stand-in (`contabo-mock`, built with the
//! workspace) with simulated nodes and a pre-built Core control plane, and
//! writes a copy of the example inventory, an operator key and an `env`
//! file pointing kiwi-infra at it; `down` stops it; `demo` runs the whole
//! tour. kiwi-infra itself talks to the sandbox exactly as to Contabo and
//! real servers: only URLs, credentials and the inventory differ.
//!
//! The sandbox deletes only what it created. `up` makes its directory
//! itself (mode 0700) and marks it with [`MARKER`], which names a random
//! id and the directory's own device and inode; the id is also recorded in
//! the `env` file. `up` (and `demo`) clear, and `down` stops and deletes, a
//! directory only when that marker checks out: any other non-empty
//! directory is refused with exit 1 and left exactly as it was, and a
//! process is stopped only if it is the stand-in started for that very
//! directory. Deleting never follows a symbolic link.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use super::args::{GlobalArgs, SandboxArgs, SandboxCommand};
use super::CliError;
use crate::patience::{deadline_in, poll_until, Backoff};
use crate::settings::EnvVars;
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

/// Where the sandbox mock's private networks take their addresses: loopback,
/// so a simulated node can bind its private address once its NIC works
/// (Contabo's are in 10.0.0.0/8).
const SANDBOX_PRIVATE_RANGE: &str = "127.77.0.0/16";

/// The credentials the stand-in accepts (sandbox-only, not secrets).
const CREDENTIALS: [(&str, &str); 4] = [
    (EnvVars::CNTB_OAUTH2_CLIENT_ID, "kiwi-sandbox"),
    (EnvVars::CNTB_OAUTH2_CLIENT_SECRET, "sandbox-secret"),
    (EnvVars::CNTB_OAUTH2_USER, "operator@kiwistack.test"),
    (EnvVars::CNTB_OAUTH2_PASS, "sandbox-password"),
];

/// The file that marks a directory as one `sandbox up` created.
const MARKER: &str = ".kiwi-sandbox";

/// The first line of [`MARKER`].
const MARKER_HEADER: &str = "kiwi-infra sandbox";

/// The environment variable, in the `env` file, that repeats the marker's id.
/// Written for the operator's shell, never read by kiwi-infra (so not in
/// [`crate::settings::VARIABLES`]).
const ID_VARIABLE: &str = "KIWI_SANDBOX_ID";

/// `kiwi-infra sandbox …`.
pub(super) async fn run(global: &GlobalArgs, cmd: &SandboxCommand) -> Result<ExitCode, CliError> {
    match cmd {
        SandboxCommand::Up(a) => {
            let sandbox = up(&a.dir).await?;
            println!("{}", sandbox.describe());
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Down(a) => {
            let keep = a.keep_inventory || asked_to_keep_inventory(&a.sandbox.dir)?;
            down_keeping(&a.sandbox.dir, keep).await?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Demo(a) => demo(global, a).await,
    }
}

/// A running sandbox.
#[derive(Debug)]
struct Sandbox {
    dir: PathBuf,
    url: String,
    /// The random id of its marker.
    id: String,
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
        env.push((EnvVars::KIWI_API_URL.into(), self.url.clone()));
        env.push((
            EnvVars::KIWI_AUTH_URL.into(),
            format!(
                "{}/auth/realms/contabo/protocol/openid-connect/token",
                self.url
            ),
        ));
        env.push((EnvVars::KIWI_INVENTORY.into(), path_text(&self.inventory())));
        env.push((
            EnvVars::KIWI_SSH_IDENTITY.into(),
            path_text(&self.dir.join("operator")),
        ));
        env.push((ID_VARIABLE.into(), self.id.clone()));
        // So that `kiwi-infra sandbox down` (and `up`, `demo`) after
        // `source env` find this sandbox, wherever `--dir` put it.
        env.push((EnvVars::KIWI_SANDBOX_DIR.into(), path_text(&self.dir)));
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

/// A local file-system problem: the operator's to fix (exit 1).
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let what = what.into();
    move |e| CliError::User(format!("sandbox: {what}: {e}"))
}

/// What a `--dir` holds, as far as the sandbox is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirState {
    /// Nothing is there.
    Absent,
    /// An empty directory.
    Empty,
    /// A directory `sandbox up` created (its marker checks out).
    Ours,
    /// Anything else; the text says what it is.
    Foreign(String),
}

/// Looks at `dir` without following a symbolic link at it or in it.
fn inspect(dir: &Path) -> Result<DirState, CliError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Absent),
        Err(e) => return Err(io(format!("cannot look at {}", dir.display()))(e)),
    };
    if meta.file_type().is_symlink() {
        return Ok(DirState::Foreign("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Ok(DirState::Foreign("is not a directory".into()));
    }
    let mut entries =
        std::fs::read_dir(dir).map_err(io(format!("cannot read {}", dir.display())))?;
    if entries.next().is_none() {
        return Ok(DirState::Empty);
    }
    let Some(id) = read_small(&dir.join(MARKER), 1024)
        .and_then(|text| marker_id(&text, meta.dev(), meta.ino()))
    else {
        return Ok(DirState::Foreign(format!(
            "is not empty and carries no valid {MARKER} marker of `kiwi-infra sandbox up`"
        )));
    };
    // The env file is written last; an `up` that stopped before has none.
    match read_small(&dir.join("env"), 64 * 1024) {
        None => Ok(DirState::Ours),
        Some(env) if env.lines().any(|l| l == id_line(&id)) => Ok(DirState::Ours),
        Some(_) => Ok(DirState::Foreign(format!(
            "has an env file that does not belong to its {MARKER} marker"
        ))),
    }
}

/// The text of a regular file of at most `limit` bytes; `None` for a
/// symbolic link, anything that is not a regular file, or a bigger file.
fn read_small(path: &Path, limit: u64) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() > limit {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The marker's text for a directory with this device and inode number.
fn marker_text(id: &str, dev: u64, ino: u64) -> String {
    format!("{MARKER_HEADER}\nid {id}\ndirectory {dev}:{ino}\n")
}

/// The id of a marker, if it is well formed and names this directory (a
/// copied or moved-in marker names another one).
fn marker_id(text: &str, dev: u64, ino: u64) -> Option<String> {
    let mut lines = text.lines();
    (lines.next()? == MARKER_HEADER).then_some(())?;
    let id = lines.next()?.strip_prefix("id ")?;
    uuid::Uuid::parse_str(id).ok()?;
    (lines.next()? == format!("directory {dev}:{ino}")).then_some(())?;
    lines.next().is_none().then(|| id.to_string())
}

/// The `env` file's line that repeats the marker's id.
fn id_line(id: &str) -> String {
    format!("export {ID_VARIABLE}='{id}'")
}

/// The refusal for a directory the sandbox did not create.
fn not_ours(dir: &Path, why: &str) -> CliError {
    CliError::User(format!(
        "{} {why}; kiwi-infra's sandbox only ever deletes or reuses a directory its own \
         `sandbox up` created. Nothing was stopped or deleted. Choose another --dir (an absent \
         or empty one), or remove this one yourself if it is yours to remove",
        dir.display()
    ))
}

/// Creates `dir` afresh (it must not exist), mode 0700, and marks it as
/// the sandbox's. Returns its canonical path and the marker's id.
fn create_marked(dir: &Path) -> Result<(PathBuf, String), CliError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    // Not `create_dir_all`: if something appeared at `dir` since it was
    // inspected, this fails instead of writing into it.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("cannot create {}", dir.display())))?;
    let dir =
        std::fs::canonicalize(dir).map_err(io(format!("cannot resolve {}", dir.display())))?;
    let meta = std::fs::metadata(&dir).map_err(io(format!("cannot look at {}", dir.display())))?;
    let id = uuid::Uuid::new_v4().to_string();
    write_file(
        &dir.join(MARKER),
        &marker_text(&id, meta.dev(), meta.ino()),
        0o600,
    )?;
    Ok((dir, id))
}

/// Starts the sandbox in `dir` (which must not hold a running one).
async fn up(dir: &Path) -> Result<Sandbox, CliError> {
    match inspect(dir)? {
        DirState::Foreign(why) => return Err(not_ours(dir, &why)),
        DirState::Ours => {
            if let Some(pid) = running_pid(dir) {
                return Err(CliError::User(format!(
                    "a sandbox is already running in {} (contabo-mock pid {pid}); use it \
                     (source {}/env) or stop it with `kiwi-infra sandbox down --dir {0}`",
                    dir.display(),
                    dir.display()
                )));
            }
        }
        DirState::Absent | DirState::Empty => {}
    }
    preflight()?;
    let mock = sibling_binary("contabo-mock")?;
    match inspect(dir)? {
        DirState::Ours => {
            std::fs::remove_dir_all(dir).map_err(io(format!("cannot clear {}", dir.display())))?
        }
        // Recreated below with the sandbox's own mode and marker.
        DirState::Empty => {
            std::fs::remove_dir(dir).map_err(io(format!("cannot clear {}", dir.display())))?
        }
        DirState::Absent => {}
        DirState::Foreign(why) => return Err(not_ours(dir, &why)),
    }
    let (dir, id) = create_marked(dir)?;
    let dir = dir.as_path();
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
    let out = new_file(&dir.join("mock.out")).map_err(io("cannot create mock.out"))?;
    let log = new_file(&dir.join("mock.log")).map_err(io("cannot create mock.log"))?;
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
        // Private networks in loopback space, so simulated nodes can bind their addresses.
        .args(["--private-range", SANDBOX_PRIVATE_RANGE])
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

    // Its first line of output is its URL; it may also stop instead.
    let mut started = || {
        let text = std::fs::read_to_string(dir.join("mock.out")).unwrap_or_default();
        if let Some(line) = text.lines().next().filter(|l| l.starts_with("http")) {
            return Some(Ok(line.trim().to_string()));
        }
        match child.try_wait() {
            Ok(Some(status)) => Some(Err(status)),
            _ => None,
        }
    };
    let url = match poll_until(
        deadline_in(Duration::from_secs(60)),
        Backoff::constant(Duration::from_millis(100)),
        || std::future::ready(started()),
    )
    .await
    {
        Ok(Ok(url)) => url,
        Ok(Err(status)) => {
            let _ = std::fs::remove_file(dir.join("mock.pid"));
            return Err(CliError::User(format!(
                "the sandbox's Contabo stand-in stopped ({status}):\n{}",
                tail(&dir.join("mock.log"), 15)
            )));
        }
        Err(_) => {
            let _ = child.kill();
            return Err(CliError::Internal(format!(
                "the sandbox's Contabo stand-in did not start within a minute:\n{}",
                tail(&dir.join("mock.log"), 15)
            )));
        }
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
        id,
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
    for (name, text) in inventory_files(public_key) {
        write_file(&target.join(name), &text, 0o644)?;
    }
    Ok(())
}

/// The sandbox's inventory: the example inventory with the sandbox
/// operator's key, the simulated control plane's loopback addresses, and
/// the loopback network as the operator network. Each file's path relative
/// to the inventory folder, with its text.
pub fn inventory_files(public_key: &str) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    for (name, text) in INVENTORY {
        let mut text = text.to_string();
        if name == "kiwi.toml" {
            text = text
                .lines()
                .map(|l| {
                    if l.starts_with("ssh_public_key") {
                        format!("ssh_public_key = \"{public_key}\"")
                    } else if l.starts_with("operator_networks") {
                        // The simulated nodes are reached over loopback.
                        "operator_networks = [\"127.0.0.0/8\"]".to_string()
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
        files.push((name, text));
    }
    files
}

/// Where `down --keep-inventory` moves the rehearsal inventory of `dir`:
/// `DIR-inventory`, next to it.
fn kept_inventory_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push("-inventory");
    dir.with_file_name(name)
}

/// On a terminal, before `down` deletes a sandbox of ours that holds a
/// rehearsal inventory, asks whether to keep it (the answer defaults to
/// keeping: an edited inventory is the one thing `down` cannot recreate).
/// Without a terminal nothing is asked, and `--keep-inventory` decides.
fn asked_to_keep_inventory(dir: &Path) -> Result<bool, CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    let inventory = dir.join("inventory");
    if !std::io::stdin().is_terminal()
        || inspect(dir)? != DirState::Ours
        || !std::fs::symlink_metadata(&inventory).is_ok_and(|m| m.is_dir())
    {
        return Ok(false);
    }
    print!(
        "`down` deletes {} with everything in it, the rehearsal inventory included. Keep the \
         inventory (moved to {})? [Y/n] ",
        dir.display(),
        kept_inventory_path(dir).display()
    );
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(io("cannot read the answer".to_string()))?;
    Ok(!matches!(answer.trim(), "n" | "N" | "no" | "No"))
}

/// Stops the sandbox in `dir` and removes its files, first moving the
/// rehearsal inventory out of it when `keep_inventory`; refuses a
/// directory `up` did not create.
async fn down_keeping(dir: &Path, keep_inventory: bool) -> Result<(), CliError> {
    if !keep_inventory {
        return down(dir).await;
    }
    let inventory = dir.join("inventory");
    // A real folder only: a link planted there is not followed, just deleted.
    let is_folder = std::fs::symlink_metadata(&inventory).is_ok_and(|m| m.is_dir());
    if inspect(dir)? != DirState::Ours || !is_folder {
        return down(dir).await;
    }
    let target = kept_inventory_path(dir);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(CliError::User(format!(
            "--keep-inventory: {} exists already; move it away first. Nothing was stopped or \
             deleted",
            target.display()
        )));
    }
    std::fs::rename(&inventory, &target).map_err(io(format!(
        "cannot move {} to {}",
        inventory.display(),
        target.display()
    )))?;
    println!(
        "Kept the rehearsal inventory: moved {} to {}.",
        inventory.display(),
        target.display()
    );
    down(dir).await
}

/// Stops the sandbox in `dir` and removes its files; refuses a directory
/// `up` did not create.
async fn down(dir: &Path) -> Result<(), CliError> {
    match inspect(dir)? {
        DirState::Ours => {}
        DirState::Absent | DirState::Empty => {
            println!("No sandbox is running in {}.", dir.display());
            return Ok(());
        }
        DirState::Foreign(why) => return Err(not_ours(dir, &why)),
    }
    match running_pid(dir) {
        Some(pid) => {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            // Given 20 s to stop on its own; `KILL` after that.
            let gone = || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(());
            let _ = poll_until(
                deadline_in(Duration::from_secs(20)),
                Backoff::constant(Duration::from_millis(100)),
                || std::future::ready(gone()),
            )
            .await;
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            println!("Sandbox in {} stopped.", dir.display());
        }
        None => println!("No sandbox is running in {}.", dir.display()),
    }
    // Checked again right before: `remove_dir_all` does not follow symbolic
    // links, neither at `dir` nor inside it.
    if inspect(dir)? == DirState::Ours {
        let had_inventory = std::fs::symlink_metadata(dir.join("inventory")).is_ok();
        std::fs::remove_dir_all(dir).map_err(io(format!("cannot remove {}", dir.display())))?;
        if had_inventory {
            println!(
                "Deleted {} with everything in it, the rehearsal inventory ({}) included \
                 (`kiwi-infra sandbox down --keep-inventory` keeps it).",
                dir.display(),
                dir.join("inventory").display()
            );
        } else {
            println!("Deleted {} with everything in it.", dir.display());
        }
    }
    Ok(())
}

/// The tour's commands after `up` and before `down`: a title, the
/// arguments, and whether it must exit 0. `apply` shows the plan before it
/// carries it out, so there is no separate `plan` first: the plan (about
/// 200 lines for the example inventory) is shown once.
const TOUR: &[(&str, &[&str], bool)] = &[
    (
        "What will be bought and built, then building it",
        &["apply", "--auto-approve"],
        true,
    ),
    ("Every cluster's nodes", &["status"], false),
    (
        "Nothing is left to do",
        &["plan", "--detailed-exitcode"],
        true,
    ),
];

/// The tour: up, apply (which shows the plan), status, plan again, down.
async fn demo(global: &GlobalArgs, args: &SandboxArgs) -> Result<ExitCode, CliError> {
    if inspect(&args.dir)? == DirState::Ours && running_pid(&args.dir).is_some() {
        down(&args.dir).await?;
    }
    heading("Starting the sandbox");
    let sandbox = up(&args.dir).await?;
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
        for (title, args, must_succeed) in TOUR {
            let code = step(title, args)?;
            if *must_succeed && code != Some(0) {
                return Err(format!(
                    "`kiwi-infra {}` exited with {code:?}",
                    args.join(" ")
                ));
            }
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            heading("Cleaning up");
            down(&args.dir).await?;
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
        let found = crate::settings::search_path()
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

/// The pid of the sandbox's stand-in in `dir`, if it is alive and is the
/// stand-in `up` started for this directory (its `--state` file is in
/// `dir`): a `mock.pid` alone never makes the sandbox signal a process.
fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = read_small(&dir.join("mock.pid"), 64)?.trim().parse().ok()?;
    let state = std::fs::canonicalize(dir).ok()?.join("contabo.json");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == state.as_os_str().as_encoded_bytes())
        .then_some(pid)
}

/// Creates a new file; never opens one that exists (or a planted link).
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    // Every file of the sandbox is written once, into the directory `up`
    // just created.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn marked() -> (tempfile::TempDir, PathBuf, String) {
        let parent = tempfile::tempdir().unwrap();
        let (dir, id) = create_marked(&parent.path().join("sandbox")).unwrap();
        (parent, dir, id)
    }

    #[test]
    fn a_directory_up_created_is_recognised_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_parent, dir, id) = marked();
        assert_eq!(inspect(&dir).unwrap(), DirState::Ours);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(dir.join("env"), format!("export A='b'\n{}\n", id_line(&id))).unwrap();
        assert_eq!(inspect(&dir).unwrap(), DirState::Ours);
    }

    #[test]
    fn a_copied_or_forged_marker_is_not_ours() {
        let (parent, dir, id) = marked();
        // The same marker copied into another directory names another inode.
        let copy = parent.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(dir.join(MARKER), copy.join(MARKER)).unwrap();
        assert!(matches!(inspect(&copy).unwrap(), DirState::Foreign(_)));
        // An env file with another id.
        std::fs::write(dir.join("env"), id_line(&uuid::Uuid::new_v4().to_string())).unwrap();
        assert!(matches!(inspect(&dir).unwrap(), DirState::Foreign(_)));
        std::fs::write(dir.join("env"), id_line(&id)).unwrap();
        assert_eq!(inspect(&dir).unwrap(), DirState::Ours);
        // A marker that is a link to a good marker.
        std::fs::remove_file(copy.join(MARKER)).unwrap();
        std::os::unix::fs::symlink(dir.join(MARKER), copy.join(MARKER)).unwrap();
        assert!(matches!(inspect(&copy).unwrap(), DirState::Foreign(_)));
    }

    #[tokio::test]
    async fn a_symlink_to_a_sandbox_is_not_a_sandbox() {
        let (parent, dir, _id) = marked();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(inspect(&link).unwrap(), DirState::Foreign(_)));
        assert!(down(&link).await.is_err());
        assert!(dir.join(MARKER).exists());
    }

    #[tokio::test]
    async fn sandbox_down_refuses_a_directory_it_did_not_create() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("work");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("env"), "export PATH=/usr/bin\n").unwrap();
        std::fs::write(dir.join("thesis.tex"), "years of work").unwrap();
        let err = down(&dir).await.unwrap_err();
        assert!(
            err.to_string().contains("Nothing was stopped or deleted"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("thesis.tex")).unwrap(),
            "years of work"
        );
    }

    #[tokio::test]
    async fn sandbox_down_deletes_its_own_directory_but_not_what_links_point_to() {
        let (parent, dir, _id) = marked();
        let outside = parent.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("nodes")).unwrap();
        down(&dir).await.unwrap();
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_planted_pid_file_never_names_a_process_to_stop() {
        let (_parent, dir, _id) = marked();
        // Our own pid: alive, but not the stand-in of this directory.
        std::fs::write(dir.join("mock.pid"), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(running_pid(&dir), None);
    }

    #[test]
    fn the_demo_shows_the_plan_once() {
        // `plan` and `apply` both print the whole plan; `plan
        // --detailed-exitcode` after apply prints an empty one.
        let full_plans = TOUR
            .iter()
            .take_while(|(_, args, _)| args.first() != Some(&"status"))
            .filter(|(_, args, _)| matches!(args.first(), Some(&"plan" | &"apply")))
            .count();
        assert_eq!(full_plans, 1, "{TOUR:?}");
        assert!(TOUR
            .iter()
            .any(|(_, args, _)| args.first() == Some(&"apply")));
    }

    #[tokio::test]
    async fn down_keeps_the_rehearsal_inventory_when_asked_and_never_overwrites() {
        let (parent, dir, _id) = marked();
        std::fs::create_dir(dir.join("inventory")).unwrap();
        std::fs::write(dir.join("inventory/kiwi.toml"), "# edited").unwrap();
        let kept = parent.path().join("sandbox-inventory");
        assert_eq!(kept_inventory_path(&dir), kept);

        // Something is in the way: refused, nothing deleted.
        std::fs::write(&kept, "mine").unwrap();
        assert!(down_keeping(&dir, true).await.is_err());
        assert!(dir.join("inventory/kiwi.toml").is_file());
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "mine");
        std::fs::remove_file(&kept).unwrap();

        down_keeping(&dir, true).await.unwrap();
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read_to_string(kept.join("kiwi.toml")).unwrap(),
            "# edited"
        );
    }
}
