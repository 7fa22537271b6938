//! `kiwi-infra apply` (in progress).

use std::process::ExitCode;

use super::args::{ApplyArgs, GlobalArgs};
use super::CliError;

/// `kiwi-infra apply`.
pub(super) async fn run(_global: &GlobalArgs, _args: &ApplyArgs) -> Result<ExitCode, CliError> {
    Err(CliError::Internal("apply is not implemented yet".into()))
}
