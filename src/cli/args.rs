//! The command line, as clap structs. Turning these into settings happens in
//! [`super::settings`]; nothing here does I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::EnvVars;

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
        env = EnvVars::KIWI_INVENTORY
    )]
    pub inventory: PathBuf,

    /// Contabo API base URL.
    #[arg(long, global = true, env = EnvVars::KIWI_API_URL, default_value = crate::contabo::DEFAULT_API_URL)]
    pub api_url: String,

    /// Contabo OAuth2 token URL.
    #[arg(long, global = true, env = EnvVars::KIWI_AUTH_URL, default_value = crate::contabo::DEFAULT_AUTH_URL)]
    pub auth_url: String,

    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// When to use colour. With `auto`, a non-empty NO_COLOR in the environment
    /// means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(flatten)]
    pub credentials: CredentialArgs,

    /// Private key to log in to nodes with (default: your ssh agent and
    /// ~/.ssh/config, as plain `ssh` would use them).
    #[arg(long, global = true, env = EnvVars::KIWI_SSH_IDENTITY, value_name = "FILE")]
    pub ssh_identity: Option<std::path::PathBuf>,

    /// Contabo requests per second, shared by everything this run does
    /// (0.01-10000).
    #[arg(
        long,
        global = true,
        default_value_t = 10.0,
        env = EnvVars::KIWI_RATE_LIMIT,
        value_parser = parse_rate_limit
    )]
    pub rate_limit: f64,

    /// Items asked for per page of a Contabo list (1-1000). Contabo documents
    /// no maximum; when it serves fewer per page than asked, the tool follows
    /// the size it serves, and when it refuses a size above 100 (400), the
    /// tool asks for 100 from then on.
    #[arg(
        long,
        global = true,
        default_value_t = crate::contabo::paging::DEFAULT_PAGE_SIZE,
        env = EnvVars::KIWI_PAGE_SIZE,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub page_size: u32,

    /// How long a node may take to answer over SSH, finish its first boot
    /// and turn Ready (e.g. `90s`, `20m`; plain numbers are seconds; longer
    /// than a week counts as a week). Default: 10m for Ready, 30m for a
    /// first boot.
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = EnvVars::KIWI_NODE_READY_TIMEOUT,
        value_parser = crate::settings::parse_wait
    )]
    pub node_ready_timeout: Option<std::time::Duration>,
}

/// Contabo API credentials: from the Customer Control Panel, API section.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// OAuth2 client id.
    #[arg(
        long,
        global = true,
        env = EnvVars::CNTB_OAUTH2_CLIENT_ID,
        hide_env_values = true
    )]
    pub client_id: Option<String>,

    /// OAuth2 client secret. Prefer the environment variable over the flag,
    /// which other users can see in the process list.
    #[arg(
        long,
        global = true,
        env = EnvVars::CNTB_OAUTH2_CLIENT_SECRET,
        hide_env_values = true
    )]
    pub client_secret: Option<String>,

    /// API user (the e-mail address of the Contabo account).
    #[arg(long, global = true, env = EnvVars::CNTB_OAUTH2_USER, hide_env_values = true)]
    pub api_user: Option<String>,

    /// API password. Prefer the environment variable over the flag.
    #[arg(long, global = true, env = EnvVars::CNTB_OAUTH2_PASS, hide_env_values = true)]
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

    /// Check the inventory without touching the network.
    ///
    /// Every error of every file is reported at once, as FILE:LINE:COLUMN.
    ///
    /// Example: kiwi-infra validate --inventory ./inventory
    Validate,

    /// Show what apply would order, join, label and cancel, and what it costs
    ///
    /// Examples:
    ///   kiwi-infra plan
    ///   kiwi-infra plan --out plan.json      # apply it later with `kiwi-infra apply plan.json`
    ///   kiwi-infra plan --detailed-exitcode  # 0 nothing to do, 2 changes, 1 error
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),

    /// Carry out a plan: order, wait for and tag servers (asks first)
    ///
    /// Examples:
    ///   kiwi-infra apply                   # plan, show, ask for `yes`, apply
    ///   kiwi-infra apply --auto-approve    # no question (CI, runbooks)
    ///   kiwi-infra apply plan.json         # exactly a saved plan, if still fresh
    #[command(verbatim_doc_comment)]
    Apply(ApplyArgs),

    /// Break a stuck apply lock (refused while its holder is alive)
    ///
    /// With [state] backend = "core-cluster", frees the Lease of an apply
    /// that died, once its lease has expired; a lease still being renewed
    /// is refused (exit 1) with its holder's user, host and pid. The local
    /// lock needs no breaking: the OS frees it when its process ends.
    /// Example: kiwi-infra unlock
    #[command(verbatim_doc_comment)]
    Unlock(UnlockArgs),

    /// Show every cluster's nodes: instance state, IP, product, class,
    /// readiness, labels, and what differs from the inventory.
    ///
    /// Example: kiwi-infra status
    Status(StatusArgs),

    /// Print or write an admin kubeconfig for one cluster
    ///
    /// The server address is the cluster's endpoint and cluster, user and
    /// context are named after the cluster.
    /// Examples:
    ///   kiwi-infra kubeconfig core > core.yaml
    ///   kiwi-infra kubeconfig stadtwerke-nord --merge ~/.kube/config
    #[command(verbatim_doc_comment)]
    Kubeconfig(KubeconfigArgs),

    /// A local rehearsal world: a Contabo stand-in with simulated nodes
    ///
    /// Examples:
    ///   kiwi-infra sandbox demo     # up, plan, apply, status, plan again, down
    ///   kiwi-infra sandbox up       # keep it running; then `source <dir>/env`
    ///   kiwi-infra sandbox down
    #[command(subcommand, verbatim_doc_comment)]
    Sandbox(SandboxCommand),

    /// Add customers to the inventory, as files to review.
    ///
    /// Example: kiwi-infra customer add muster-gmbh --tier mesh
    #[command(subcommand)]
    Customer(CustomerCommand),

    /// Print a shell completion script
    ///
    /// Examples:
    ///   kiwi-infra completions bash > ~/.local/share/bash-completion/completions/kiwi-infra
    ///   kiwi-infra completions zsh > ~/.zfunc/_kiwi-infra   # with fpath+=~/.zfunc
    ///   kiwi-infra completions fish > ~/.config/fish/completions/kiwi-infra.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),

    /// Print the man page, or write one page per command
    ///
    /// Examples:
    ///   kiwi-infra man | man -l -
    ///   kiwi-infra man --out ~/.local/share/man/man1
    #[command(verbatim_doc_comment)]
    Man(ManArgs),

    /// Print the JSON Schema of an inventory file, for editors
    ///
    /// Editors that understand TOML schemas (taplo, VS Code's Even Better
    /// TOML) then complete keys and flag typos as you type; see docs/cli.md.
    ///
    /// Examples:
    ///   kiwi-infra schema main > inventory/.schema/kiwi.json
    ///   kiwi-infra schema customer > inventory/.schema/customer.json
    /// and as the first line of a customer file:
    ///   #:schema ../.schema/customer.json
    #[command(verbatim_doc_comment)]
    Schema(SchemaArgs),
}

/// `kiwi-infra customer …`.
#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Write a new customer file from the inventory's defaults, for review
    ///
    /// Mesh and Fleet customers get 3 k3s servers, a VPS agent pool and a
    /// VDS agent pool, on the products the inventory already uses; Core-tier
    /// customers add no nodes. Nothing is ordered until `kiwi-infra apply`.
    ///
    /// Examples:
    ///   kiwi-infra customer add muster-gmbh --tier mesh
    ///   kiwi-infra customer add muster-gmbh --tier fleet --force   # replace the file
    #[command(verbatim_doc_comment)]
    Add(CustomerAddArgs),
}

/// `kiwi-infra customer add`.
#[derive(Debug, Args)]
pub struct CustomerAddArgs {
    /// The customer's name: a DNS label (lowercase letters, digits, `-`),
    /// used for the file, the cluster and the node names.
    #[arg(value_hint = clap::ValueHint::Other)]
    pub name: String,

    /// The customer's tier.
    #[arg(long, value_enum)]
    pub tier: TierChoice,

    /// Replace an existing customer file of that name.
    #[arg(long)]
    pub force: bool,
}

/// `--tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TierChoice {
    /// A dedicated k3s cluster.
    Mesh,
    /// A dedicated k3s cluster, plus device management.
    Fleet,
    /// Namespaces in the shared Core cluster; no nodes of its own.
    Core,
}

/// `kiwi-infra completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the script for.
    pub shell: clap_complete::Shell,
}

/// `kiwi-infra man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write kiwi-infra.1 and one page per command (kiwi-infra-plan.1, …)
    /// to DIR instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `kiwi-infra schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file the schema is for.
    #[arg(value_enum, default_value_t = SchemaFile::Main)]
    pub file: SchemaFile,
}

/// Which inventory file `kiwi-infra schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFile {
    /// kiwi.toml.
    Main,
    /// customers/<name>.toml.
    Customer,
}

/// `kiwi-infra sandbox …`.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start the sandbox and leave it running.
    ///
    /// Example: kiwi-infra sandbox up && source /tmp/kiwi-sandbox/env
    Up(SandboxArgs),
    /// Stop the sandbox and its simulated nodes, and delete its directory
    /// (the rehearsal inventory included, unless --keep-inventory).
    ///
    /// Examples:
    ///   kiwi-infra sandbox down
    ///   kiwi-infra sandbox down --keep-inventory   # moved to /tmp/kiwi-sandbox-inventory
    #[command(verbatim_doc_comment)]
    Down(SandboxDownArgs),
    /// The whole tour: up, apply (which shows the plan), status, plan again, down.
    ///
    /// Example: kiwi-infra sandbox demo --dir /tmp/kiwi-demo
    Demo(SandboxArgs),
}

/// Where the sandbox keeps its state.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The sandbox's directory (inventory copy, keys, mock state, nodes).
    #[arg(long, default_value = "/tmp/kiwi-sandbox", env = EnvVars::KIWI_SANDBOX_DIR)]
    pub dir: std::path::PathBuf,
}

/// `kiwi-infra sandbox down`.
#[derive(Debug, Args)]
pub struct SandboxDownArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Keep the rehearsal inventory: move DIR/inventory to DIR-inventory
    /// (next to the sandbox's directory) before deleting the rest. Refused,
    /// with nothing deleted, when DIR-inventory exists already.
    #[arg(long)]
    pub keep_inventory: bool,
}

/// `kiwi-infra status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Contabo only: do not connect to nodes.
    #[arg(long)]
    pub contabo_only: bool,
}

/// `kiwi-infra kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The cluster: `core` or a Mesh/Fleet customer's name.
    #[arg(value_hint = clap::ValueHint::Other)]
    pub cluster: String,

    /// Write to FILE (mode 0600) instead of printing.
    #[arg(long, value_name = "FILE", conflicts_with = "merge")]
    pub out: Option<std::path::PathBuf>,

    /// Merge into an existing kubeconfig FILE (entries of the same name are
    /// replaced; the current context becomes this cluster).
    #[arg(long, value_name = "FILE")]
    pub merge: Option<std::path::PathBuf>,
}

/// `kiwi-infra apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `kiwi-infra plan --out FILE`; refused when stale.
    #[arg(value_name = "PLAN_FILE")]
    pub plan_file: Option<std::path::PathBuf>,

    /// Apply without asking for confirmation.
    #[arg(long)]
    pub auto_approve: bool,

    /// Only the Contabo side (secrets, tags, orders, reinstalls, waiting for
    /// `running`); node steps are left for a later apply.
    #[arg(long)]
    pub contabo_only: bool,

    /// Order SLOT again although an earlier order's outcome is unknown
    /// (apply stopped it with "needs you"). Check the Contabo panel first:
    /// only when no instance of that name exists. Repeatable.
    #[arg(long, value_name = "SLOT", value_hint = clap::ValueHint::Other)]
    pub reorder: Vec<String>,

    /// Wait this long for another apply's lock (e.g. `90s`, `10m`; plain
    /// numbers are seconds) before giving up with exit 1. Default: no wait.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub lock_timeout: Option<std::time::Duration>,

    #[command(flatten)]
    pub choices: PlanChoices,

    #[command(flatten, next_help_heading = "Concurrency and time limits")]
    pub tuning: ApplyTuning,
}

/// How many steps `apply` runs at once and how long it waits: flags with
/// environment fallbacks (the flag wins), declared in [`crate::settings`].
#[derive(Debug, Clone, Copy, Args)]
pub struct ApplyTuning {
    /// Contabo steps (orders, tags, cancels, ...) at once; the rate limit
    /// paces their requests in any case. Default: 8 (more than 1024 counts
    /// as 1024).
    #[arg(long, value_name = "N", env = EnvVars::KIWI_CONCURRENCY, value_parser = crate::settings::parse_count)]
    pub concurrency: Option<usize>,

    /// Node steps (bootstraps, joins, labels, drains) at once. Default: 32
    /// (more than 1024 counts as 1024).
    #[arg(long, value_name = "N", env = EnvVars::KIWI_NODE_CONCURRENCY, value_parser = crate::settings::parse_count)]
    pub node_concurrency: Option<usize>,

    /// Time limit per Contabo status (provisioning, installing, ...) while
    /// waiting for `running` (e.g. `90s`, `45m`; plain numbers are seconds).
    /// Default: 30m.
    #[arg(long, value_name = "DURATION", env = EnvVars::KIWI_STATUS_TIMEOUT, value_parser = crate::settings::parse_wait)]
    pub status_timeout: Option<std::time::Duration>,

    /// How long to keep looking for an order whose outcome is unknown
    /// (Contabo may list it late) before stopping its slot for you; nothing
    /// is ever ordered twice (e.g. `500ms`, `5m`). Default: 2m.
    #[arg(long, value_name = "DURATION", env = EnvVars::KIWI_UNLISTED_ORDER_WAIT, value_parser = crate::settings::parse_wait)]
    pub unlisted_order_wait: Option<std::time::Duration>,
}

/// `kiwi-infra unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {}

/// A wait of at most a day: `90`, `90s`, `10m` or `2h`.
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; expected e.g. 90s, 10m or 2h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => {
            return Err(format!(
                "unknown unit in {text:?}; expected s, m or h (e.g. 10m)"
            ))
        }
    };
    if secs > 86_400 {
        return Err(format!("{text} is longer than a day; expected at most 24h"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// `kiwi-infra plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON (schema: docs/plan-json.md) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    /// Changes held back (destructive steps without --allow-destroy, orders
    /// Contabo holds, a protected cluster) count as changes, as for apply.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Also save the plan to FILE, for `kiwi-infra apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,

    /// Plan the Contabo side only: do not connect to nodes (their join,
    /// labels and taints are shown as unverified).
    #[arg(long)]
    pub contabo_only: bool,

    #[command(flatten)]
    pub choices: PlanChoices,
}

/// Choices that change what a plan contains or allows.
#[derive(Debug, Clone, Copy, Args)]
pub struct PlanChoices {
    /// Take over instances that carry a slot's name but no kiwi-managed tag.
    #[arg(long)]
    pub adopt: bool,

    /// Allow destructive steps (drain, delete node, cancel instance).
    #[arg(long)]
    pub allow_destroy: bool,
}

/// `kiwi-infra instances`.
#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Print JSON (an array of instances) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--rate-limit`: a finite number of requests per second within
/// [`crate::contabo::RATE_LIMIT_RANGE`]. A rate of zero, `NaN` or `1e-300`
/// would make the pacing period meaningless (or overflow it).
fn parse_rate_limit(text: &str) -> Result<f64, String> {
    let range = crate::contabo::RATE_LIMIT_RANGE;
    let expected = format!(
        "expected a number of requests per second from {} to {}",
        range.start(),
        range.end()
    );
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number; {expected}"))?;
    if rate.is_finite() && range.contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{text:?} is out of range; {expected}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_must_be_a_sensible_number() {
        for bad in [
            "0", "-1", "NaN", "inf", "1e-300", "1e300", "fast", "", "0.001",
        ] {
            assert!(parse_rate_limit(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_rate_limit("10").unwrap(), 10.0);
        assert_eq!(parse_rate_limit(" 0.5 ").unwrap(), 0.5);
    }
}
