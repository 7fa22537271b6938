//! `spec-proxy`: a validating proxy in front of a Contabo API stand-in.
//!
//! Runs [`kiwi_mocks::openapi::spawn_proxy_with`] so that any client (kiwi-infra, curl, a test
//! harness in another language) can be checked against Contabo's published spec without linking
//! this crate. It prints its base URL as the first line of stdout, each violation on stderr as it
//! happens, and on SIGINT/SIGTERM writes a JSON summary and exits non-zero if anything broke the
//! spec. With `--record FILE` it also writes every exchange as a JSON line (credentials
//! redacted) for `scripts/check_contabo_traffic.py`, the validator built on `openapi-core`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kiwi_mocks::openapi::{spawn_proxy_with, ProxyConfig, Spec, Violation};
use serde::Serialize;

/// Forward HTTP traffic to an upstream and check both directions against the Contabo spec.
#[derive(Debug, Parser)]
#[command(name = "spec-proxy", version)]
struct Args {
    /// Base URL of the server to forward to (loopback only), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    upstream: String,
    /// Address to listen on (loopback only); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The OpenAPI spec; defaults to $KIWI_CONTABO_SPEC or <workspace>/../shared/contabo/openapi.yaml.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Where to write the JSON summary (counts and violations) on shutdown.
    #[arg(long)]
    violations_out: Option<PathBuf>,
    /// Where to write every forwarded exchange, one JSON line each (credentials redacted); the
    /// file is created or truncated at start.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

/// What `--violations-out` receives.
#[derive(Debug, Serialize)]
struct Summary {
    requests_checked: u64,
    responses_checked: u64,
    upstream_failures: u64,
    /// Exchanges written to `--record` (0 without it).
    exchanges_recorded: u64,
    /// Exchanges that could not be written to `--record`.
    record_failures: u64,
    violations: Vec<Violation>,
}

/// Exit code when the traffic broke the spec.
const EXIT_VIOLATIONS: u8 = 1;
/// Exit code when the proxy could not run at all.
const EXIT_FAILURE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_VIOLATIONS),
        Err(error) => {
            eprintln!("spec-proxy: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs until a signal; returns the number of violations.
async fn run(args: Args) -> anyhow::Result<usize> {
    let spec_path = args.spec.clone().unwrap_or_else(Spec::default_path);
    let spec =
        Spec::load(&spec_path).with_context(|| format!("loading {}", spec_path.display()))?;
    let proxy = spawn_proxy_with(ProxyConfig {
        upstream_base_url: args.upstream.clone(),
        listen: args.listen,
        spec: Arc::new(spec),
        on_violation: Some(Arc::new(|violation| eprintln!("violation: {violation}"))),
        record: args.record.clone(),
    })
    .await?;
    // println! flushes at the newline, so a parent reading line by line sees the URL at once.
    println!("{}", proxy.base_url());

    wait_for_signal().await?;

    let (requests_checked, responses_checked) = proxy.checked();
    let (exchanges_recorded, record_failures) = proxy.recorded();
    let summary = Summary {
        requests_checked,
        responses_checked,
        upstream_failures: proxy.upstream_failures(),
        exchanges_recorded,
        record_failures,
        violations: proxy.violations(),
    };
    proxy.shutdown().await;
    eprintln!(
        "spec-proxy: checked {requests_checked} requests and {responses_checked} responses, {} violations",
        summary.violations.len()
    );
    if let Some(path) = &args.violations_out {
        let text = serde_json::to_string_pretty(&summary).context("encoding the summary")?;
        tokio::fs::write(path, text)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if record_failures > 0 {
        // A recording with holes would let the other validator pass traffic it never saw.
        anyhow::bail!(
            "{record_failures} exchanges could not be written to the recording; it is incomplete"
        );
    }
    Ok(summary.violations.len())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("listening for SIGINT")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("listening for Ctrl-C")?;
    Ok(())
}
