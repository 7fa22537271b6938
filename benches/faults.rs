//! The reliability suite of issue 9: `kiwi-infra apply --contabo-only` on
//! the example inventory against the mock under one fault at a time, rerun
//! until it completes (at most a few times). For each fault it reports the
//! applies attempted and completed, the instances ordered against the slots
//! (they must be equal), and anything lost (slots without an instance).
//!
//! Run with `cargo bench --bench faults`. Loopback only; stops by itself.
//! A node that never becomes Ready needs simulated nodes and root; it is
//! covered by the cluster tests, not here.

#![allow(clippy::unwrap_used)]

// The integration tests' helpers: a loopback copy of the example inventory
// and its slot names.
#[path = "../tests/apply_support/mod.rs"]
mod apply_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apply_support::{inventory_copy, slot_names};
use kiwi_mocks::contabo::{spawn, Faults, MockConfig, MockHandle};

/// Reruns after the first apply, at most.
const MAX_RERUNS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(suite());
}

struct Scenario {
    name: &'static str,
    config: MockConfig,
    /// SIGKILL the apply after these delays (one kill per attempt).
    kills: Vec<Duration>,
}

fn base() -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(300),
        installing_delay: Duration::from_millis(300),
        ip_range: "127.65.0.0/24".parse().unwrap(),
        seed: 9,
        ..MockConfig::default()
    }
}

fn faults(f: Faults) -> MockConfig {
    MockConfig {
        faults: f,
        ..base()
    }
}

async fn suite() {
    let scenarios = vec![
        Scenario {
            name: "10 % injected 500/503",
            config: faults(Faults {
                error_rate: 0.10,
                ..Faults::default()
            }),
            kills: vec![],
        },
        Scenario {
            name: "429s (mock limit 20/s, client paces at 50/s)",
            config: faults(Faults {
                rate_limit_rps: Some(20.0),
                rate_burst: 1,
                ..Faults::default()
            }),
            kills: vec![],
        },
        Scenario {
            name: "dropped order responses (50 %)",
            config: faults(Faults {
                drop_create_probability: 0.5,
                ..Faults::default()
            }),
            kills: vec![],
        },
        Scenario {
            name: "expired token mid-run (1 s tokens)",
            config: MockConfig {
                token_ttl: Duration::from_secs(1),
                faults: Faults {
                    latency_ms: 40,
                    ..Faults::default()
                },
                ..base()
            },
            kills: vec![],
        },
        Scenario {
            name: "SIGKILL at random points (6 kills)",
            config: base(),
            kills: [150, 400, 90, 700, 260, 1100]
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        },
    ];
    println!(
        "| fault | applies attempted | completed | instances ordered | slots | lost | \
         injected: 5xx / 429 / dropped orders / tokens issued | wall |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in scenarios {
        let started = Instant::now();
        let mock = spawn(s.config).await.unwrap();
        let (_dir, inventory) = inventory_copy();
        let slots = slot_names();
        let mut attempted = 0;
        let mut completed = 0;
        for delay in &s.kills {
            attempted += 1;
            let mut child = apply(&mock, &inventory).spawn().unwrap();
            tokio::time::sleep(*delay).await;
            let _ = child.kill();
            let _ = child.wait();
        }
        for _ in 0..=MAX_RERUNS {
            attempted += 1;
            let status = apply(&mock, &inventory).status().unwrap();
            if status.success() {
                completed += 1;
                break;
            }
        }
        let live: Vec<String> = mock
            .instances()
            .into_iter()
            .filter(|i| i.cancel_date.is_none())
            .map(|i| i.display_name)
            .collect();
        let stats = mock.stats();
        let ordered = stats.instances_created;
        let present: BTreeSet<String> = live.iter().cloned().collect();
        let lost = slots.difference(&present).count();
        println!(
            "| {} | {attempted} | {completed} | {ordered} | {} | {lost} | {} / {} / {} / {} | {:.1} s |",
            s.name,
            slots.len(),
            stats.injected_errors,
            stats.rate_limited,
            stats.dropped_create_responses,
            stats.tokens_issued,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            ordered as usize,
            slots.len(),
            "{}: instances ordered must equal slots",
            s.name
        );
        mock.shutdown().await;
    }
}

fn apply(mock: &MockHandle, inventory: &Path) -> Command {
    let c = mock.credentials();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"));
    cmd.args([
        "apply",
        "--auto-approve",
        "--contabo-only",
        "-q",
        "--inventory",
    ])
    .arg(inventory)
    .args([
        "--api-url",
        &mock.base_url(),
        "--auth-url",
        &mock.token_url(),
    ])
    .env("CNTB_OAUTH2_CLIENT_ID", c.client_id)
    .env("CNTB_OAUTH2_CLIENT_SECRET", c.client_secret)
    .env("CNTB_OAUTH2_USER", c.username)
    .env("CNTB_OAUTH2_PASS", &c.password)
    .env("KIWI_RATE_LIMIT", "50")
    .env("KIWI_APPLY_POLL_MS", "50")
    .env("KIWI_APPLY_UNLISTED_WAIT_MS", "1500")
    .env("KIWI_APPLY_START_GRACE_MS", "300")
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}
