//! `kiwi-infra completions SHELL`: the shell completion script, generated
//! from the same clap definition that parses the command line, so it always
//! knows every subcommand and flag of this build.

use std::io::Write;

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs};
use super::CliError;

/// Prints the completion script for the chosen shell.
pub(super) fn run(args: &CompletionsArgs) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kiwi-infra", &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| CliError::User(format!("cannot write the completion script: {e}")))
}
