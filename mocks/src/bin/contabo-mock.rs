//! `contabo-mock`: runs the Contabo stand-in of [`kiwi_mocks::contabo`] until SIGINT/SIGTERM.
//! Prints its base URL as the first line on stdout so that scripts can read it; logs go to
//! stderr (filter with `RUST_LOG`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kiwi_mocks::contabo::{self, config, Credentials, Faults, IpRange, MockConfig};

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
    /// Hold new orders of a product in a status, e.g. V9=product_not_available (repeatable;
    /// also manual_provisioning, verification_required, pending_payment).
    #[arg(long, value_name = "PRODUCT=STATUS")]
    product_status: Vec<String>,
    /// Load state from and save it to this JSON file.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

impl Args {
    fn into_config(self) -> anyhow::Result<MockConfig> {
        let faults = Faults {
            latency_ms: self.latency_ms,
            error_rate: self.error_rate,
            rate_limit_rps: self.rate_limit,
            rate_burst: self.rate_burst,
            drop_create_responses: self.drop_create_responses,
            drop_create_probability: self.drop_create_probability,
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Args::parse().into_config()?;
    let handle = contabo::spawn(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handle.base_url()).context("cannot write the base URL to stdout")?;
        out.flush().context("cannot flush stdout")?;
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    handle.shutdown().await;
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
