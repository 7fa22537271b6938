//! Turns flags and environment into plain settings for the core.

use std::io::IsTerminal;
use std::time::Duration;

use super::args::{ColorChoice, GlobalArgs};
use super::CliError;
use crate::contabo::{ClientConfig, ContaboClient, Credentials};
use crate::secret::Secret;

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
        ColorChoice::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && terminal,
    }
}

/// The Contabo credentials, or an error naming every one that is missing.
pub fn credentials(global: &GlobalArgs) -> Result<Credentials, CliError> {
    let c = &global.credentials;
    let missing: Vec<&str> = [
        (c.client_id.is_none(), "CNTB_OAUTH2_CLIENT_ID (--client-id)"),
        (
            c.client_secret.is_none(),
            "CNTB_OAUTH2_CLIENT_SECRET (--client-secret)",
        ),
        (c.api_user.is_none(), "CNTB_OAUTH2_USER (--api-user)"),
        (
            c.api_password.is_none(),
            "CNTB_OAUTH2_PASS (--api-password)",
        ),
    ]
    .into_iter()
    .filter_map(|(absent, name)| absent.then_some(name))
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

/// The environment variables that shorten kiwi-infra's waits and change its
/// concurrency (tests, benchmarks and the sandbox use them; see
/// `src/cli/apply.rs` and `src/cli/nodes.rs`). Each holds a whole number.
pub const TUNING_VARIABLES: [&str; 8] = [
    "KIWI_APPLY_POLL_MS",
    "KIWI_APPLY_STATUS_LIMIT_SECS",
    "KIWI_APPLY_UNLISTED_WAIT_MS",
    "KIWI_APPLY_START_GRACE_MS",
    "KIWI_APPLY_CONCURRENCY",
    "KIWI_APPLY_NODE_CONCURRENCY",
    "KIWI_NODE_READY_SECS",
    "KIWI_NODE_POLL_MS",
];

/// No tuning variable sets a wait longer than this. Waits are added to
/// clocks and doubled in back-off; a week keeps all of that far from
/// overflowing, and no wait of kiwi-infra's is meant to be longer.
pub const LONGEST_WAIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Most tasks at once any concurrency variable may ask for.
pub const MOST_CONCURRENT: usize = 1024;

/// Refuses a tuning variable that is set but is not a whole number, naming
/// it, before the command does anything.
pub fn check_tuning_env() -> Result<(), CliError> {
    for name in TUNING_VARIABLES {
        if let Some(text) = std::env::var_os(name) {
            let text = text.to_string_lossy();
            if text.trim().parse::<u64>().is_err() {
                return Err(CliError::User(format!(
                    "{name}={:?} is not a whole number; expected e.g. {name}=500, or unset it",
                    text.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(())
}

/// A whole number from a tuning variable ([`check_tuning_env`] has refused
/// anything else before).
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// A wait in milliseconds from a tuning variable, at most [`LONGEST_WAIT`].
pub fn env_millis(name: &str) -> Option<Duration> {
    env_number(name).map(|ms| Duration::from_millis(ms).min(LONGEST_WAIT))
}

/// A wait in seconds from a tuning variable, at most [`LONGEST_WAIT`].
pub fn env_secs(name: &str) -> Option<Duration> {
    env_number(name).map(|s| Duration::from_secs(s).min(LONGEST_WAIT))
}

/// A number of tasks at once from a tuning variable, 1 to [`MOST_CONCURRENT`].
pub fn env_concurrency(name: &str) -> Option<usize> {
    env_number(name).map(|n| {
        usize::try_from(n)
            .unwrap_or(MOST_CONCURRENT)
            .clamp(1, MOST_CONCURRENT)
    })
}
