//! `kiwi-infra man` and the command-line reference in `docs/cli.md`: both are
//! rendered from the clap definition that parses the command line, so the
//! documentation cannot drift from what the binary accepts.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::args::{Cli, ManArgs};
use super::CliError;

/// The line that opens the generated part of `docs/cli.md`.
pub const REFERENCE_BEGIN: &str = "<!-- BEGIN GENERATED: `KIWI_UPDATE_DOCS=1 cargo test --test it cli_habits::docs_cli_md` rewrites this part from the clap definitions; do not edit by hand -->";
/// The line that closes the generated part of `docs/cli.md`.
pub const REFERENCE_END: &str = "<!-- END GENERATED -->";

/// Width the reference is wrapped at, whatever terminal renders it.
const REFERENCE_WIDTH: usize = 100;

/// Prints the main man page, or writes one page per command to `--out`.
pub(super) fn run(args: &ManArgs) -> Result<(), CliError> {
    match &args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(documented_command())
                .render(&mut page)
                .and_then(|()| std::io::stdout().write_all(&page))
                .map_err(|e| CliError::User(format!("cannot write the man page: {e}")))
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                CliError::User(format!("cannot create directory {}: {e}", dir.display()))
            })?;
            let mut written = Vec::new();
            write_pages(&documented_command(), dir, &mut written).map_err(|e| {
                CliError::User(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes the page of `cmd` and of each visible subcommand below it.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    written.push(clap_mangen::Man::new(cmd.clone()).generate_to(dir)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// The command line as documented: built (so subcommands know their full
/// names and inherit the global flags), without the `help` subcommand, and
/// without the values of environment variables, which belong to whoever
/// generated the documentation, not to the documentation.
fn documented_command() -> clap::Command {
    let mut cmd = hide_env_values(Cli::command()).disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn hide_env_values(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| arg.hide_env_values(true))
        .mut_subcommands(hide_env_values)
}

/// The generated part of `docs/cli.md`: a list of every command and the
/// `--help` text of each, between [`REFERENCE_BEGIN`] and [`REFERENCE_END`].
pub fn markdown_reference() -> String {
    let mut commands = Vec::new();
    collect_commands(&documented_command(), &mut commands);
    let mut out = format!("{REFERENCE_BEGIN}\n\n");
    for cmd in &commands {
        let name = full_name(cmd);
        out.push_str(&format!(
            "- [`{name}`](#{}): {}\n",
            name.replace(' ', "-"),
            cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
        ));
    }
    out.push_str(
        "\nEvery command also takes the options of `kiwi-infra` itself (inventory, API, \
         credentials, output); they are listed once, under `kiwi-infra`.\n",
    );
    for (i, cmd) in commands.iter().enumerate() {
        let mut cmd = cmd.clone().term_width(REFERENCE_WIDTH);
        if i > 0 {
            cmd = cmd.mut_args(|arg| {
                let global = arg.is_global_set();
                arg.hide(global)
            });
        }
        let help = cmd.render_long_help().to_string();
        let help: Vec<&str> = help.lines().map(str::trim_end).collect();
        out.push_str(&format!(
            "\n## `{}`\n\n```text\n{}\n```\n",
            full_name(&cmd),
            help.join("\n").trim_end()
        ));
    }
    out.push('\n');
    out.push_str(REFERENCE_END);
    out.push('\n');
    out
}

fn collect_commands(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_commands(sub, out);
    }
}

/// `kiwi-infra plan` rather than `plan`.
fn full_name(cmd: &clap::Command) -> String {
    cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string()
}
