//! Plan at fleet scale (issues 9 and 14): an account of 200 clusters and
//! 2,000 owned instances (each tagged as apply tags it: ownership, cluster,
//! class, and protection for the protected Core cluster), 50 ms added to
//! every `/v1` request, then the real `kiwi-infra plan --contabo-only` at
//! its default flags, measured for wall time, API requests (the mock's own
//! counters) and peak RSS (`/usr/bin/time -f %M`):
//!
//! 1. against a mock serving up to 1,000 items a page;
//! 2. the same account against a mock capped at 100 a page (the client
//!    asks 1,000 and follows what is served);
//! 3. the naive baseline in the same run: one `GET /v1/compute/instances/{id}`
//!    per instance, as a per-resource refresh does;
//! 4. an account five times larger (1,000 clusters, 10,000 instances) at
//!    the defaults, to show how the cost grows.
//!
//! Run with `cargo bench --bench plan_at_scale`. Everything is on loopback;
//! the benchmark stops by itself. `BENCHMARKS.md` records its figures.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kiwi_infra::contabo::models::{CreateInstance, InstanceId, Period, Region, TagId};
use kiwi_infra::contabo::{ClientConfig, ContaboClient, Credentials, RetryPolicy};
use kiwi_infra::plan::tags;
use kiwi_infra::secret::Secret;
use kiwi_mocks::contabo::{spawn, Faults, MockConfig, MockHandle};

/// Customer clusters of the realistic account; with the Core cluster, 200.
const CUSTOMERS: usize = 199;
/// Customer clusters of the large account; with the Core cluster, 1,000.
const LARGE_CUSTOMERS: usize = 999;
/// Slots per cluster (Mesh: 3 servers and 7 agents; Core: 7 + 3 workers).
const SLOTS_PER_CLUSTER: usize = 10;
const LATENCY_MS: u64 = 50;
/// Concurrency of the naive baseline, like a per-resource refresh
/// (Terraform's default parallelism is 10).
const NAIVE_CONCURRENCY: usize = 10;
/// The mock's largest page (what Contabo may serve), and the smaller cap
/// of the second run (what Contabo's own CLI asks for).
const MOCK_MAX_PAGE: u32 = 1000;
const CAPPED_PAGE: u32 = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// A filled account: its mock and the inventory that matches it.
struct Account {
    mock: MockHandle,
    _dir: tempfile::TempDir,
    inventory: PathBuf,
}

async fn account(customers: usize) -> Account {
    let config = MockConfig {
        provisioning_delay: Duration::from_millis(10),
        installing_delay: Duration::from_millis(10),
        // 16,384 loopback addresses: room for the large account.
        ip_range: "127.64.0.0/18".parse().unwrap(),
        token_ttl: Duration::from_secs(3600),
        max_page_size: MOCK_MAX_PAGE,
        ..MockConfig::default()
    };
    let mock = spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory");
    let slots = write_inventory(&inventory, customers);
    let started = Instant::now();
    fill_mock(&mock, &slots).await;
    wait_until_running(&mock).await;
    println!(
        "account: {} clusters, {} owned instances and {} tags, created and tagged in {:.1} s \
         (no latency)",
        customers + 1,
        mock.instances().len(),
        mock_tag_count(&mock).await,
        started.elapsed().as_secs_f64()
    );
    mock.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::default()
    })
    .unwrap();
    Account {
        mock,
        _dir: dir,
        inventory,
    }
}

/// One measured `plan` at the defaults, printed.
fn measure(account: &Account, label: &str) -> (Duration, u64) {
    let mock = &account.mock;
    mock.reset_stats();
    let (wall, rss_kib, summary) = run_plan(mock, &account.inventory);
    let stats = mock.stats();
    let requests = stats.requests_total + stats.tokens_issued;
    println!("{label}: kiwi-infra plan --contabo-only (default flags)");
    println!("  wall time       {:.2} s", wall.as_secs_f64());
    println!(
        "  API requests    {requests} ({} /v1 + {} token)",
        stats.requests_total, stats.tokens_issued
    );
    for (route, n) in &stats.requests_by_route {
        println!("    {n:>5}  {route}");
    }
    match rss_kib {
        Some(kib) => println!("  peak RSS        {:.1} MiB", kib as f64 / 1024.0),
        None => println!("  peak RSS        not measured (/usr/bin/time missing)"),
    }
    println!("  plan said       {summary}");
    println!();
    (wall, requests)
}

async fn bench() {
    println!(
        "latency: {LATENCY_MS} ms per /v1 request; default flags (page size 1,000, 10 requests/s)"
    );
    println!();
    let realistic = account(CUSTOMERS).await;
    let served_1000 = measure(&realistic, "2,000 instances, mock serving 1,000 a page");
    let mut faults = realistic.mock.faults();
    faults.page_size_cap = Some(CAPPED_PAGE);
    realistic.mock.set_faults(faults.clone()).unwrap();
    let capped = measure(&realistic, "2,000 instances, mock capped at 100 a page");
    faults.page_size_cap = None;
    realistic.mock.set_faults(faults).unwrap();

    realistic.mock.reset_stats();
    let (wall, fetched) = naive_refresh(&realistic.mock).await;
    let stats = realistic.mock.stats();
    let naive_requests = stats.requests_total + stats.tokens_issued;
    println!(
        "naive baseline (one GET per instance, {NAIVE_CONCURRENCY} at once, client ceiling 10,000/s):"
    );
    println!("  wall time       {:.2} s", wall.as_secs_f64());
    println!(
        "  API requests    {naive_requests} ({} /v1 + {} token; {fetched} instances fetched)",
        stats.requests_total, stats.tokens_issued
    );
    println!();
    for (label, (plan_wall, plan_requests)) in
        [("served 1,000", served_1000), ("capped at 100", capped)]
    {
        println!(
            "ratio naive/plan ({label}): requests {:.1}x, wall time {:.1}x",
            naive_requests as f64 / plan_requests as f64,
            wall.as_secs_f64() / plan_wall.as_secs_f64()
        );
    }
    println!();
    realistic.mock.shutdown().await;

    let large = account(LARGE_CUSTOMERS).await;
    measure(&large, "10,000 instances, mock serving 1,000 a page");
    large.mock.shutdown().await;
}

/// A slot, with what apply tags its machine with.
#[derive(Debug, Clone)]
struct Slot {
    name: String,
    product: &'static str,
    /// Tag names: ownership, cluster, class, and protection if the cluster has it.
    tags: Vec<String>,
}

/// Writes `kiwi.toml` and one Mesh customer file per customer; returns every
/// slot name with its product.
fn write_inventory(dir: &Path, customers: usize) -> Vec<Slot> {
    std::fs::create_dir_all(dir.join("customers")).unwrap();
    std::fs::write(
        dir.join("kiwi.toml"),
        r#"[provider]
region = "EU"
image = "ubuntu-24.04"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@kiwistack.io"
period = 1
operator_networks = ["198.51.100.0/24", "2001:db8::/48"]

[prices]
V94 = "8.49"
V97 = "15.49"
V8 = "38.40"
V9 = "49.90"

[k3s]
version = "v1.31.4+k3s1"

[core]
api_endpoint = "127.0.31.1:6443"
kubernetes_version = "v1.31.4"
protected = true
control_plane = [
  { name = "kiwi-core-cp-01", address = "127.0.31.11" },
  { name = "kiwi-core-cp-02", address = "127.0.31.12" },
  { name = "kiwi-core-cp-03", address = "127.0.31.13" },
]

[core.pools.general]
class = "vps"
product = "V97"
count = 7

[core.pools.realtime]
class = "vds"
product = "V9"
count = 3

[core.firewall]
cni_ports = ["udp/4789", "tcp/179"]
cluster_networks = ["10.244.0.0/16", "10.96.0.0/12"]
"#,
    )
    .unwrap();
    for n in 1..=customers {
        std::fs::write(
            dir.join("customers").join(format!("c{n:04}.toml")),
            "tier = \"mesh\"\n\n[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 3\n\n\
             [pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 7\n",
        )
        .unwrap();
    }
    let desired = kiwi_infra::inventory::load(dir).unwrap_or_else(|e| panic!("{e}"));
    let slots: Vec<Slot> = desired
        .clusters
        .iter()
        .flat_map(|c| {
            c.pools.iter().flat_map(move |p| {
                let product = match p.product.as_str() {
                    "V94" => "V94",
                    "V97" => "V97",
                    "V9" => "V9",
                    other => panic!("unexpected product {other}"),
                };
                let mut tags = vec![
                    tags::MANAGED.to_string(),
                    tags::cluster(&c.name),
                    tags::class(p.class),
                ];
                if c.protected {
                    tags.push(tags::PROTECTED.to_string());
                }
                (1..=p.count).map(move |i| Slot {
                    name: kiwi_infra::inventory::slot_name(&c.name, &p.name, i),
                    product,
                    tags: tags.clone(),
                })
            })
        })
        .collect();
    assert_eq!(desired.clusters.len(), customers + 1);
    assert_eq!(slots.len(), (customers + 1) * SLOTS_PER_CLUSTER);
    slots
}

fn client(mock: &MockHandle, rps: f64) -> ContaboClient {
    let c = mock.credentials();
    let mut config = ClientConfig::new(Credentials {
        client_id: c.client_id,
        client_secret: Secret::new(c.client_secret),
        username: c.username,
        password: Secret::new(c.password),
    });
    config.api_url = mock.base_url();
    config.auth_url = mock.token_url();
    config.requests_per_second = rps;
    config.retry = RetryPolicy::default();
    ContaboClient::new(config).unwrap()
}

/// Orders every slot and assigns its tags, as a finished apply would have,
/// through the mock's HTTP API with no latency.
async fn fill_mock(mock: &MockHandle, slots: &[Slot]) {
    let api = client(mock, 10_000.0);
    let image = api.find_images_by_name("ubuntu-24.04").await.unwrap()[0]
        .image_id
        .clone();
    let names: std::collections::BTreeSet<&String> = slots.iter().flat_map(|s| &s.tags).collect();
    let mut ids: std::collections::BTreeMap<String, TagId> = std::collections::BTreeMap::new();
    for name in names {
        ids.insert(name.clone(), api.create_tag(name, "#0A78C3").await.unwrap());
    }
    let ids = Arc::new(ids);
    let api = Arc::new(api);
    futures::stream::iter(slots.iter().cloned())
        .map(
            |Slot {
                 name,
                 product,
                 tags,
             }| {
                let api = api.clone();
                let image = image.clone();
                let ids = ids.clone();
                async move {
                    let created = api
                        .create_instance(CreateInstance {
                            product_id: product.to_string(),
                            region: Region::Eu,
                            image_id: image,
                            period: Period::OneMonth,
                            display_name: name,
                            ssh_keys: Vec::new(),
                            user_data: None,
                            default_user: None,
                            add_ons: None,
                        })
                        .await?;
                    for tag in &tags {
                        api.assign_tag(ids[tag], created.instance_id).await?;
                    }
                    Ok::<(), kiwi_infra::contabo::ContaboError>(())
                }
            },
        )
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
}

async fn wait_until_running(mock: &MockHandle) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while mock.instances().iter().any(|i| i.status != "running") {
        assert!(Instant::now() < deadline, "instances never became running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tags in the account (all of them: the mock's own view).
async fn mock_tag_count(mock: &MockHandle) -> usize {
    client(mock, 10_000.0).list_tags().await.unwrap().len()
}

fn kiwi_infra_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiwi-infra"))
}

/// Runs `kiwi-infra plan --contabo-only` at its default flags; returns its
/// wall time, peak RSS in KiB (when `/usr/bin/time` exists) and the plan's
/// summary line.
fn run_plan(mock: &MockHandle, inventory: &Path) -> (Duration, Option<u64>, String) {
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = if time.exists() {
        let mut cmd = Command::new(time);
        cmd.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(rss_file.path())
            .arg(kiwi_infra_bin());
        cmd
    } else {
        Command::new(kiwi_infra_bin())
    };
    let c = mock.credentials();
    cmd.args(["plan", "--contabo-only", "--inventory"])
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
        .env("CNTB_OAUTH2_PASS", c.password)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("KIWI_RATE_LIMIT")
        .env_remove("KIWI_PAGE_SIZE")
        .stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plan failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Plan:") || l.contains("No changes"))
        .unwrap_or("(no summary line)")
        .to_string();
    let rss = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.trim().lines().last()?.trim().parse().ok());
    (wall, rss, summary)
}

/// The per-resource refresh: the same non-instance lists as observe (tags,
/// secrets, image, ownership assignments), then each instance on its own by
/// id, as a tool that keeps ids in a state file does.
async fn naive_refresh(mock: &MockHandle) -> (Duration, usize) {
    let ids: Vec<InstanceId> = mock
        .instances()
        .iter()
        .map(|i| InstanceId(i.instance_id))
        .collect();
    // The highest ceiling the client accepts: the baseline's only real
    // brake is its concurrency.
    let api = client(mock, 10_000.0);
    let started = Instant::now();
    let (tags, _, _) = tokio::try_join!(
        api.list_tags(),
        api.list_secrets(),
        api.find_images_by_name("ubuntu-24.04"),
    )
    .unwrap();
    if let Some(tag) = tags
        .iter()
        .find(|t| t.name == kiwi_infra::observe::contabo::OWNERSHIP_TAG)
    {
        let _ = api.list_tag_assignments(tag.tag_id).await.unwrap();
    }
    let api = Arc::new(api);
    let fetched: Vec<_> = futures::stream::iter(ids)
        .map(|id| {
            let api = api.clone();
            async move { api.get_instance(id).await }
        })
        .buffer_unordered(NAIVE_CONCURRENCY)
        .try_collect()
        .await
        .unwrap();
    (started.elapsed(), fetched.len())
}
