//! The command line, as clap structs. Turning these into settings happens in
//! [`super::settings`]; nothing here does I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Order, bootstrap and label KiwiStack's machines at Contabo.
///
/// kiwi-infra reconciles the inventory (TOML files in `inventory/`) with what
/// exists at Contabo and in each cluster: `plan` says exactly what would be
/// bought and changed, `apply` does it.
#[derive(Debug, Parser)]
#[command(
    name = "kiwi-infra",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Inventory directory.
    #[arg(
        long,
        global = true,
        default_value = "inventory",
        env = "KIWI_INVENTORY"
    )]
    pub inventory: PathBuf,

    /// Contabo API base URL.
    #[arg(long, global = true, env = "KIWI_API_URL", default_value = crate::contabo::DEFAULT_API_URL)]
    pub api_url: String,

    /// Contabo OAuth2 token URL.
    #[arg(long, global = true, env = "KIWI_AUTH_URL", default_value = crate::contabo::DEFAULT_AUTH_URL)]
    pub auth_url: String,

    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// When to use colour. NO_COLOR in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(flatten)]
    pub credentials: CredentialArgs,

    /// Contabo requests per second, shared by everything this run does.
    #[arg(long, global = true, default_value_t = 10.0, env = "KIWI_RATE_LIMIT")]
    pub rate_limit: f64,
}

/// Contabo API credentials: from the Customer Control Panel, API section.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// OAuth2 client id.
    #[arg(
        long,
        global = true,
        env = "CNTB_OAUTH2_CLIENT_ID",
        hide_env_values = true
    )]
    pub client_id: Option<String>,

    /// OAuth2 client secret. Prefer the environment variable over the flag,
    /// which other users can see in the process list.
    #[arg(
        long,
        global = true,
        env = "CNTB_OAUTH2_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,

    /// API user (the e-mail address of the Contabo account).
    #[arg(long, global = true, env = "CNTB_OAUTH2_USER", hide_env_values = true)]
    pub api_user: Option<String>,

    /// API password. Prefer the environment variable over the flag.
    #[arg(long, global = true, env = "CNTB_OAUTH2_PASS", hide_env_values = true)]
    pub api_password: Option<String>,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the account's instances (read-only).
    ///
    /// Example: kiwi-infra instances --json | jq '.[].displayName'
    Instances(InstancesArgs),
}

/// `kiwi-infra instances`.
#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Print JSON (an array of instances) instead of a table.
    #[arg(long)]
    pub json: bool,
}
