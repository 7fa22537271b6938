//! `contabo-mock`: runs the Contabo stand-in of [`kiwi_mocks::contabo`] until SIGINT/SIGTERM.
//! Prints its base URL as the first line on stdout so that scripts can read it; logs go to
//! stderr (filter with `RUST_LOG`).
//!
//! With `--nodes DIR`, instances that become `running` also appear as simulated nodes
//! ([`kiwi_mocks::nodes`]): an SSH server on port 22 of the instance's loopback address, with
//! the node's own filesystem. This needs root; the mock says what is missing otherwise.
//! `--control-plane` adds nodes that exist without an order (the Core cluster's control plane,
//! built before kiwi-infra): `kubeadm init` runs on the first, the others join it as
//! control-plane nodes.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kiwi_mocks::contabo::{self, config, Credentials, Faults, IpRange, MockConfig, PrivateRange};
use kiwi_mocks::nodes::{self, NodeSimulator, NodesConfig, StaticNode};

/// Local stand-in for Contabo's API (token endpoint, /v1 and the /_mock control API).
#[derive(Debug, Parser)]
#[command(name = "contabo-mock", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// OAuth2 client id the token endpoint accepts.
    #[arg(long, default_value = "kiwi-sandbox")]
    client_id: String,
    /// OAuth2 client secret the token endpoint accepts.
    #[arg(long, default_value = "sandbox-secret", hide_default_value = true)]
    client_secret: String,
    /// API user the token endpoint accepts.
    #[arg(long, default_value = "operator@kiwistack.test")]
    username: String,
    /// API password the token endpoint accepts.
    #[arg(long, default_value = "sandbox-password", hide_default_value = true)]
    password: String,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    token_ttl: u64,
    /// Time a new order spends in `provisioning`, in milliseconds.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    provisioning_ms: u64,
    /// Time an install spends in `installing`, in milliseconds.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    installing_ms: u64,
    /// How often instance statuses are advanced, in milliseconds.
    #[arg(long, default_value_t = 25, value_name = "MS")]
    tick_ms: u64,
    /// Loopback addresses for instances: FIRST-LAST or NETWORK/PREFIX.
    #[arg(long, default_value = "127.0.10.2-127.0.10.254")]
    ip_range: String,
    /// Where private networks' addresses come from (a /22 each): NETWORK/PREFIX, /8 to /22.
    /// Simulated nodes bind their private address only when it is a loopback one.
    #[arg(long, default_value = "10.0.0.0/8")]
    private_range: String,
    /// Page size of list requests that name none.
    #[arg(long, default_value_t = 10)]
    page_size_default: u32,
    /// Largest page size served (bigger requests are cut down).
    #[arg(long, default_value_t = 100)]
    page_size_max: u32,
    /// Latency added to every /v1 request, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Fraction (0..=1) of /v1 requests answered with an injected 500 or 503.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    error_rate: f64,
    /// Fraction (0..=1) of /v1 requests refused with 429 whatever the rate limit says.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    throttle_rate: f64,
    /// Seed of the RNG behind injected errors and dropped responses.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shared rate limit for /v1 in requests per second (unlimited if absent).
    #[arg(long, value_name = "RPS")]
    rate_limit: Option<f64>,
    /// Requests that may arrive at once before the rate limit bites.
    #[arg(long, default_value_t = 10, value_name = "N")]
    rate_burst: u32,
    /// Place the next N instance orders but close the connection instead of answering.
    #[arg(long, default_value_t = 0, value_name = "N")]
    drop_create_responses: u32,
    /// Probability (0..=1) that an instance order's response is dropped the same way.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    drop_create_probability: f64,
    /// A hostile Contabo: the `Retry-After` of every 429, verbatim (e.g. 1e300).
    #[arg(long, value_name = "TEXT")]
    retry_after: Option<String>,
    /// A hostile Contabo: the token endpoint's `expires_in`, as JSON (e.g. 1e300, 0, -5).
    #[arg(long, value_name = "JSON", value_parser = parse_json, allow_hyphen_values = true)]
    token_expires_in: Option<serde_json::Value>,
    /// A hostile Contabo: `_pagination.totalPages` of every list, as JSON (e.g. 1e300).
    #[arg(long, value_name = "JSON", value_parser = parse_json, allow_hyphen_values = true)]
    total_pages: Option<serde_json::Value>,
    /// A hostile Contabo: `_pagination.totalElements` of every list, as JSON.
    #[arg(long, value_name = "JSON", value_parser = parse_json, allow_hyphen_values = true)]
    total_elements: Option<serde_json::Value>,
    /// A hostile Contabo: serve at most N items of each list page, whatever `_pagination` says.
    #[arg(long, value_name = "N")]
    serve_at_most: Option<u32>,
    /// A hostile Contabo: pages after the first start N rows later (negative: earlier), so rows
    /// are skipped (or repeated) between pages.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    page_shift: i64,
    /// A server that validates `size`: answer 400 to list requests asking for more than N.
    #[arg(long, value_name = "N")]
    refuse_page_size_above: Option<u32>,
    /// Serve at most N items a page (and say so), below the largest page of the mock's config.
    #[arg(long, value_name = "N")]
    page_size_cap: Option<u32>,
    /// Make error answers quote the request (headers with the bearer token, and the body), and
    /// the token endpoint's error answers its form (client secret, password): a careless server.
    #[arg(long)]
    echo_request_in_errors: bool,
    /// Hold new orders of a product in a status, e.g. V9=product_not_available (repeatable;
    /// also manual_provisioning, verification_required, pending_payment).
    #[arg(long, value_name = "PRODUCT=STATUS")]
    product_status: Vec<String>,
    /// Load state from and save it to this JSON file.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Run simulated nodes for running instances, with their disks in DIR (needs root).
    #[arg(long, value_name = "DIR")]
    nodes: Option<PathBuf>,
    /// The stand-in programs binary linked into every node [default: kiwi-node-standin next
    /// to this executable].
    #[arg(long, value_name = "PATH", requires = "nodes")]
    standin: Option<PathBuf>,
    /// Port of the simulated nodes' SSH servers.
    #[arg(long, default_value_t = 22, value_name = "PORT", requires = "nodes")]
    node_ssh_port: u16,
    /// Nodes that exist without an order (the Core control plane): NAME=IP[,NAME=IP…].
    /// `kubeadm init` runs on the first.
    #[arg(long, value_name = "NAME=IP,…", requires_all = ["nodes", "control_plane_authorized_key", "control_plane_known_hosts"])]
    control_plane: Option<String>,
    /// OpenSSH public key file allowed to log in to the control-plane nodes.
    #[arg(long, value_name = "FILE", requires = "control_plane")]
    control_plane_authorized_key: Option<PathBuf>,
    /// Login user of the control-plane nodes.
    #[arg(long, default_value = "kiwi", value_name = "USER")]
    control_plane_user: String,
    /// Where to write the control-plane nodes' host keys (OpenSSH known_hosts, by IP and name).
    #[arg(long, value_name = "FILE", requires = "control_plane")]
    control_plane_known_hosts: Option<PathBuf>,
}

/// What `--nodes` and the flags around it ask for.
#[derive(Debug)]
struct NodeSettings {
    config: NodesConfig,
    control_plane: Vec<(String, Ipv4Addr)>,
    authorized_key: Option<PathBuf>,
    user: String,
    known_hosts: Option<PathBuf>,
}

impl Args {
    fn node_settings(&self) -> anyhow::Result<Option<NodeSettings>> {
        let Some(dir) = &self.nodes else {
            return Ok(None);
        };
        let standin = match &self.standin {
            Some(path) => path.clone(),
            None => nodes::default_standin_binary().with_context(|| {
                format!(
                    "{} is not next to contabo-mock: build it with `cargo build -p kiwi-mocks \
                     --bin {}`, or name it with --standin",
                    nodes::STANDIN_BINARY_NAME,
                    nodes::STANDIN_BINARY_NAME
                )
            })?,
        };
        let mut config = NodesConfig::new(dir, standin);
        config.ssh_port = self.node_ssh_port;
        let control_plane = match &self.control_plane {
            None => Vec::new(),
            Some(list) => parse_control_plane(list)?,
        };
        Ok(Some(NodeSettings {
            config,
            control_plane,
            authorized_key: self.control_plane_authorized_key.clone(),
            user: self.control_plane_user.clone(),
            known_hosts: self.control_plane_known_hosts.clone(),
        }))
    }

    fn into_config(self) -> anyhow::Result<MockConfig> {
        let faults = Faults {
            latency_ms: self.latency_ms,
            error_rate: self.error_rate,
            rate_limit_rps: self.rate_limit,
            rate_burst: self.rate_burst,
            throttle_rate: self.throttle_rate,
            drop_create_responses: self.drop_create_responses,
            drop_create_probability: self.drop_create_probability,
            retry_after_secs: self.retry_after,
            token_expires_in: self.token_expires_in,
            total_pages: self.total_pages,
            total_elements: self.total_elements,
            serve_at_most: self.serve_at_most,
            page_shift: self.page_shift,
            refuse_page_size_above: self.refuse_page_size_above,
            page_size_cap: self.page_size_cap,
            echo_request_in_errors: self.echo_request_in_errors,
            // Hostile-mode order failures are set at run time through `PUT /_mock/faults`.
            ..Faults::default()
        };
        faults.check().map_err(anyhow::Error::msg)?;
        let product_statuses = self
            .product_status
            .iter()
            .map(|s| config::parse_product_status(s))
            .collect::<Result<_, _>>()?;
        Ok(MockConfig {
            listen: self.listen,
            credentials: Credentials {
                client_id: self.client_id,
                client_secret: self.client_secret,
                username: self.username,
                password: self.password,
            },
            token_ttl: Duration::from_secs(self.token_ttl),
            provisioning_delay: Duration::from_millis(self.provisioning_ms),
            installing_delay: Duration::from_millis(self.installing_ms),
            tick: Duration::from_millis(self.tick_ms),
            ip_range: self.ip_range.parse::<IpRange>()?,
            private_range: self.private_range.parse::<PrivateRange>()?,
            default_page_size: self.page_size_default.max(1),
            max_page_size: self.page_size_max.max(1),
            faults,
            product_statuses,
            seed: self.seed,
            state_file: self.state,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Colour only on a terminal: the sandbox writes this log to mock.log,
    // where escape sequences are noise (and NO_COLOR asks for none).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let node_settings = args.node_settings()?;
    let config = args.into_config()?;
    // Preflight before the mock listens, so a machine that cannot run nodes fails at once.
    let simulator = match &node_settings {
        Some(settings) => Some(
            NodeSimulator::start(settings.config.clone())
                .await
                .context("cannot start simulated nodes")?,
        ),
        None => None,
    };
    let handle = contabo::spawn(config).await?;
    let simulator = match (simulator, node_settings) {
        (Some(mut simulator), Some(settings)) => {
            simulator.attach(&handle);
            start_control_plane(&simulator, &settings).await?;
            Some(simulator)
        }
        _ => None,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handle.base_url()).context("cannot write the base URL to stdout")?;
        out.flush().context("cannot flush stdout")?;
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    if let Some(simulator) = simulator {
        simulator.shutdown().await;
    }
    handle.shutdown().await;
    Ok(())
}

/// A flag's value as JSON (`1e300`, `-5`, `"soon"`).
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

fn parse_control_plane(list: &str) -> anyhow::Result<Vec<(String, Ipv4Addr)>> {
    list.split(',')
        .map(|item| {
            let (name, ip) = item
                .split_once('=')
                .with_context(|| format!("--control-plane: {item:?} is not NAME=IP"))?;
            let ip: Ipv4Addr = ip
                .trim()
                .parse()
                .with_context(|| format!("--control-plane: {ip:?} is not an IPv4 address"))?;
            anyhow::ensure!(
                ip.is_loopback(),
                "--control-plane: {ip} is not a loopback address"
            );
            Ok((name.trim().to_owned(), ip))
        })
        .collect()
}

/// Creates the static control-plane nodes, writes their known_hosts lines, runs the stand-in
/// `kubeadm init` on the first and joins the others as control-plane nodes.
async fn start_control_plane(
    simulator: &NodeSimulator,
    settings: &NodeSettings,
) -> anyhow::Result<()> {
    let (Some(_), Some(key_file), Some(known_hosts)) = (
        settings.control_plane.first(),
        &settings.authorized_key,
        &settings.known_hosts,
    ) else {
        return Ok(());
    };
    let key = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read {}", key_file.display()))?;
    let port = settings.config.ssh_port;
    let mut lines = String::new();
    for (name, ip) in &settings.control_plane {
        let host_key = simulator
            .add_static_node(StaticNode {
                name: name.clone(),
                ip: *ip,
                user: settings.user.clone(),
                authorized_keys: vec![key.trim().to_owned()],
                host_key: None,
            })
            .await
            .with_context(|| format!("cannot start control-plane node {name}"))?;
        for host in [ip.to_string(), name.clone()] {
            let host = if port == 22 {
                host
            } else {
                format!("[{host}]:{port}")
            };
            lines.push_str(&format!("{host} {host_key}\n"));
        }
    }
    std::fs::write(known_hosts, lines)
        .with_context(|| format!("cannot write {}", known_hosts.display()))?;
    simulator
        .form_control_plane(&settings.control_plane)
        .await
        .context("cannot form the control plane")?;
    tracing::info!("control plane formed");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
