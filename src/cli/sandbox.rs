//! `kiwi-infra sandbox` (in progress).

use std::process::ExitCode;

use super::args::{GlobalArgs, SandboxCommand};
use super::CliError;

/// `kiwi-infra sandbox …`.
pub(super) async fn run(_global: &GlobalArgs, _cmd: &SandboxCommand) -> Result<ExitCode, CliError> {
    Err(CliError::Internal("the sandbox is not built yet".into()))
}
