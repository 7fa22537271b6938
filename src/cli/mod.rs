//! The command-line layer: parses arguments, sets up logging, runs one
//! command and maps its outcome to an exit code. Only this layer prints.

mod apply;
mod args;
mod completions;
mod customer;
mod instances;
mod kubeconfig;
mod man;
mod nodes;
mod plan;
mod progress;
mod sandbox;
mod schema;
mod settings;
mod state;
mod status;
mod table;

use std::process::ExitCode;

pub use args::Cli;
use clap::Parser;
pub use man::{markdown_reference, REFERENCE_BEGIN, REFERENCE_END};
pub use sandbox::inventory_files as sandbox_inventory_files;

use crate::contabo::ContaboError;

/// Exit code for errors the operator can fix: bad inventory, flags or
/// usage, missing or refused credentials, local files that cannot be read
/// or written.
pub const EXIT_USER_ERROR: u8 = 1;
/// Exit code for everything else: Contabo or a node failed, or a bug.
pub const EXIT_FAILURE: u8 = 3;

/// A command's failure, classified for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Something the operator gave us is wrong.
    #[error("{0}")]
    User(String),
    /// The inventory has errors; each is printed on its own line.
    #[error("{0}")]
    Inventory(crate::inventory::Diagnostics),
    /// A node or cluster failed.
    #[error(transparent)]
    Nodes(#[from] crate::node::NodeError),
    /// Contabo failed or refused.
    #[error(transparent)]
    Contabo(#[from] ContaboError),
    /// A bug or an environment problem.
    #[error("{0}")]
    Internal(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::User(_) | Self::Inventory(_) => EXIT_USER_ERROR,
            Self::Contabo(e) if e.is_user_error() => EXIT_USER_ERROR,
            // This machine could not prepare an SSH connection (temporary
            // directory, generated configuration, a local path ssh would
            // misread): a local file-system problem.
            Self::Nodes(crate::node::NodeError::Ssh(
                crate::ssh::SshError::Local { .. } | crate::ssh::SshError::UnsafePath { .. },
            )) => EXIT_USER_ERROR,
            Self::Contabo(_) | Self::Nodes(_) | Self::Internal(_) => EXIT_FAILURE,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    // Checked before clap reads the fallbacks, so that a bad value is named
    // by its variable (clap would name only the flag); `--help` still works.
    let environment = crate::settings::check_environment();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => return usage_error(&e),
        Err(e) => match environment {
            Ok(()) => return usage_error(&e),
            Err(bad) => return bad_environment(&bad),
        },
    };
    if let Err(bad) = environment {
        return bad_environment(&bad);
    }
    if let Err(bad) = init_logging(&cli.global) {
        report(&CliError::User(bad));
        return ExitCode::from(EXIT_USER_ERROR);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints clap's message and exits: 0 for `--help` and `--version`, which
/// are answers, and [`EXIT_USER_ERROR`] for a usage error. (clap's own exit
/// code for usage errors is 2, which `plan --detailed-exitcode` reserves
/// for "there are changes": a typo in a CI job must not read as that.)
fn usage_error(e: &clap::Error) -> ExitCode {
    // Printing can only fail on a closed stream; the exit code still says it.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EXIT_USER_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reports a knob set to a value it cannot take; the operator's to fix.
fn bad_environment(bad: &crate::settings::SettingsError) -> ExitCode {
    report(&CliError::User(bad.to_string()));
    ExitCode::from(EXIT_USER_ERROR)
}

async fn run(cli: &Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        args::Command::Instances(a) => instances::run(&cli.global, a)
            .await
            .map(|()| ExitCode::SUCCESS),
        args::Command::Validate => plan::validate(&cli.global).map(|()| ExitCode::SUCCESS),
        args::Command::Plan(a) => plan::run(&cli.global, a).await,
        args::Command::Apply(a) => apply::run(&cli.global, a).await,
        args::Command::Status(a) => status::run(&cli.global, a).await,
        args::Command::Unlock(a) => state::unlock(&cli.global, a).await,
        args::Command::Sandbox(a) => sandbox::run(&cli.global, a).await,
        args::Command::Kubeconfig(a) => kubeconfig::run(&cli.global, a)
            .await
            .map(|()| ExitCode::SUCCESS),
        args::Command::Customer(args::CustomerCommand::Add(a)) => {
            customer::add(&cli.global, a).map(|()| ExitCode::SUCCESS)
        }
        args::Command::Completions(a) => completions::run(a).map(|()| ExitCode::SUCCESS),
        args::Command::Man(a) => man::run(a).map(|()| ExitCode::SUCCESS),
        args::Command::Schema(a) => schema::run(a).map(|()| ExitCode::SUCCESS),
    }
}

/// Prints an error and its whole chain of causes, once. Errors quote
/// outside text (a server's message, a node's output, an inventory value),
/// so each message is stripped of every secret the process holds and
/// escaped for the terminal.
pub(crate) fn report(error: &CliError) {
    if let CliError::Inventory(diagnostics) = error {
        // Each diagnostic already reads `FILE:LINE:COL: error: …`, one per
        // line: a line break inside one is escaped like any other control.
        for diagnostic in diagnostics.iter() {
            eprintln!(
                "{}",
                crate::text::escape_for_terminal(&diagnostic.to_string())
            );
        }
        eprintln!(
            "{} error(s) in the inventory; nothing was changed",
            diagnostics.len()
        );
        return;
    }
    eprintln!(
        "error: {}",
        crate::secret::redact::error_chain(error, "\n  caused by: ")
    );
}

/// Sets up logging: `RUST_LOG` when set, else the level of `-q`/`-v`. A
/// `RUST_LOG` that is not a valid filter is an error naming it, not a
/// silent fall back to the default.
fn init_logging(global: &args::GlobalArgs) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let default = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = match crate::settings::log_filter() {
        Some(f) => EnvFilter::try_new(&f).map_err(|e| {
            format!(
                "RUST_LOG={}: not a log filter ({e}); expected e.g. `info` or \
                 `warn,kiwi_infra::apply=debug`",
                crate::text::escape_for_terminal(&f)
            )
        })?,
        None => EnvFilter::new(default),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .with_ansi(settings::use_color_on_stderr(global.color))
        .try_init();
    Ok(())
}

/// Where log lines go: stderr, with every registered secret masked, so that
/// no field at `-vvv` (a server's answer, a node's output) can print one,
/// and escaped for the terminal (the formatter escapes ESC in values, not
/// `\r`, C1 or bidi controls). The subscriber formats a whole event before
/// it writes it, so a secret is never split between two writes.
struct RedactingWriter(std::io::Stderr);

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let masked = crate::secret::redact::redact(&text);
        let shown = crate::text::escape_log_lines(&masked);
        self.0.write_all(shown.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `kiwi-infra status | head` closes stdout early; `println!` then panics.
/// Like other Unix tools, end quietly instead of printing a panic.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
