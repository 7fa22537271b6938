//! Turns flags and environment into plain settings for the core. Every
//! environment variable is declared, and read, in [`crate::settings`].

use std::io::IsTerminal;

use super::args::{ApplyTuning, ColorChoice, GlobalArgs};
use super::CliError;
use crate::contabo::{ClientConfig, ContaboClient, Credentials};
use crate::secret::Secret;
use crate::settings::{ApplyKnobs, EnvVars, InternalTimings, NodeKnobs};

/// Whether to colour output written to stdout.
pub fn use_color(choice: ColorChoice) -> bool {
    color_for(choice, std::io::stdout().is_terminal())
}

/// Whether to colour log lines, which go to stderr.
pub fn use_color_on_stderr(choice: ColorChoice) -> bool {
    color_for(choice, std::io::stderr().is_terminal())
}

/// `--color` decides; with `auto`, a non-empty NO_COLOR or a stream that is
/// not a terminal means no colour.
fn color_for(choice: ColorChoice, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !crate::settings::no_color() && terminal,
    }
}

/// The Contabo credentials, or an error naming every one that is missing.
pub fn credentials(global: &GlobalArgs) -> Result<Credentials, CliError> {
    let c = &global.credentials;
    let missing: Vec<String> = [
        (
            c.client_id.is_none(),
            EnvVars::CNTB_OAUTH2_CLIENT_ID,
            "--client-id",
        ),
        (
            c.client_secret.is_none(),
            EnvVars::CNTB_OAUTH2_CLIENT_SECRET,
            "--client-secret",
        ),
        (
            c.api_user.is_none(),
            EnvVars::CNTB_OAUTH2_USER,
            "--api-user",
        ),
        (
            c.api_password.is_none(),
            EnvVars::CNTB_OAUTH2_PASS,
            "--api-password",
        ),
    ]
    .into_iter()
    .filter(|(absent, _, _)| *absent)
    .map(|(_, name, flag)| format!("{name} ({flag})"))
    .collect();
    match (&c.client_id, &c.client_secret, &c.api_user, &c.api_password) {
        (Some(id), Some(secret), Some(user), Some(password)) => Ok(Credentials {
            client_id: id.clone(),
            client_secret: Secret::credential(secret.clone()),
            username: user.clone(),
            password: Secret::credential(password.clone()),
        }),
        _ => Err(CliError::User(format!(
            "missing Contabo API credentials: {}. They are in the Contabo Customer Control \
             Panel under API; export them as environment variables",
            missing.join(", ")
        ))),
    }
}

/// A Contabo client configured from the global flags.
pub fn contabo_client(global: &GlobalArgs) -> Result<ContaboClient, CliError> {
    let mut config = ClientConfig::new(credentials(global)?);
    config.api_url = global.api_url.clone();
    config.auth_url = global.auth_url.clone();
    config.requests_per_second = global.rate_limit;
    config.page_size = global.page_size;
    ContaboClient::new(config).map_err(CliError::from)
}

/// What `apply`'s flags (or their variables) and the test-only timings
/// change; a bad `KIWI_INTERNAL_*` value is the operator's error, naming it.
pub fn apply_knobs(tuning: &ApplyTuning) -> Result<ApplyKnobs, CliError> {
    let knobs = ApplyKnobs {
        concurrency: tuning.concurrency,
        node_concurrency: tuning.node_concurrency,
        status_timeout: tuning.status_timeout,
        unlisted_order_wait: tuning.unlisted_order_wait,
        internal: internal_timings()?,
    };
    // At -vv: which value won, the flag's or its variable's.
    tracing::debug!(?knobs, "apply settings from flags and environment");
    Ok(knobs)
}

/// What `--node-ready-timeout` (or its variable) and the node poll timing
/// change in reaching nodes.
pub fn node_knobs(global: &GlobalArgs) -> Result<NodeKnobs, CliError> {
    Ok(NodeKnobs {
        ready_timeout: global.node_ready_timeout,
        internal: internal_timings()?,
    })
}

fn internal_timings() -> Result<InternalTimings, CliError> {
    InternalTimings::from_env().map_err(|e| CliError::User(e.to_string()))
}
