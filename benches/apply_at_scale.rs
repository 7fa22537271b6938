//! Apply at fleet scale (issue 9): from an empty Contabo mock with a
//! provisioning delay and simulated nodes, the real `kiwi-infra apply`
//! onboards one Mesh customer (3 k3s servers, 6 agents), and then, in a
//! fresh world, 20 Mesh customers at once (180 nodes).
//!
//! For each run it reads the executor's own task log (`task started` /
//! `task finished` at debug level, with each task's dependencies) and
//! computes:
//! - the critical path: the longest chain of dependent tasks, each weighing
//!   what it took in this run (so it carries the same provisioning delays,
//!   SSH round trips and k3s joins as the run itself);
//! - sequential execution: the sum of all task durations, what one task at a
//!   time would take;
//! - the plan phase (process start to the first task), which every task
//!   depends on and which therefore heads the critical path, and the final
//!   check (last task to exit: apply reads everything again and shows the
//!   fresh plan), which depends on every task and ends it.
//!
//! The client's rate limit is set to the mock's, and the mock's 429 counter
//! is reported. The bench checks that the run did what it should (exit 0,
//! one order per slot, every node Ready) before it reports a time.
//!
//! Run with `cargo bench -p kiwi-infra --bench apply_at_scale`, as root
//! (simulated nodes use mount namespaces and port 22 on loopback addresses).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/apply_support/mod.rs"]
mod apply_support;
#[path = "../tests/cluster_support/mod.rs"]
mod cluster_support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use apply_support::inventory_copy;
use chrono::{DateTime, Utc};
use cluster_support::{
    assert_ready_with_class, bench_filter, loopback_range, world_with, World, K3S,
};
use kiwi_infra::inventory::{slot_name, SERVER_POOL};
use kiwi_mocks::contabo::{Faults, MockConfig};

/// The mock's provisioning delay (Contabo takes minutes; scaled down).
const PROVISIONING: Duration = Duration::from_secs(20);
/// The mock's installing delay.
const INSTALLING: Duration = Duration::from_secs(10);
/// Node slots per customer: 3 servers, 3 VPS agents, 3 VDS agents.
const SLOTS_PER_CUSTOMER: usize = 9;

fn main() {
    if let Err(why) = cluster_support::nodes_preflight() {
        eprintln!("apply_at_scale runs simulated nodes, and {why}");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench --bench apply_at_scale -- 20` runs the scenarios whose
    // name contains "20".
    let chosen = bench_filter();
    // (name, customers, requests per second of the mock and the client,
    // Core control-plane octet, instance octet)
    let scenarios = [
        ("one Mesh customer (3 servers, 6 agents)", 1, 50.0, 50, 51),
        ("20 Mesh customers at once (180 nodes)", 20, 50.0, 52, 53),
        ("20 Mesh customers at once (180 nodes)", 20, 100.0, 54, 55),
    ];
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for (name, customers, rate, cp, instances) in scenarios {
            if chosen(&format!("{name} {rate}")) {
                rows.push(scenario(name, customers, rate, cp, instances).await);
            }
        }
        rows
    });
    print_table(&rows);
}

struct Row {
    name: &'static str,
    rate: f64,
    planning: Duration,
    checking: Duration,
    nodes: usize,
    wall: Duration,
    critical: Duration,
    chain: Vec<(String, Duration)>,
    sequential: Duration,
    requests: u64,
    rate_limited: u64,
    ordered: u64,
    /// CPU-seconds the whole machine was busy during the apply.
    machine_busy: f64,
    /// CPU-seconds `kiwi-infra` itself used (user + system).
    tool_cpu: Option<f64>,
}

async fn scenario(name: &'static str, customers: usize, rate: f64, cp: u8, instances: u8) -> Row {
    eprintln!("== {name}: setting up");
    let (dir, inventory) = inventory_copy();
    reshape_inventory(&inventory, customers);
    let mock = MockConfig {
        provisioning_delay: PROVISIONING,
        installing_delay: INSTALLING,
        ip_range: loopback_range(instances),
        faults: Faults {
            rate_limit_rps: Some(rate),
            rate_burst: 2,
            ..Faults::default()
        },
        seed: 9,
        ..MockConfig::default()
    };
    let world = world_with(dir, inventory, cp, 3, mock).await;

    eprintln!("== {name}: kiwi-infra apply");
    let mut cmd = world.kiwi(&["apply", "--auto-approve"]);
    cmd.env("KIWI_RATE_LIMIT", rate.to_string())
        // Polls from 0.2 s backing off to 1 s: the production 5-30 s
        // scaled like the delays.
        .env("KIWI_INTERNAL_POLL_MS", "200")
        .env("KIWI_STATUS_TIMEOUT", "600s")
        .env("KIWI_INTERNAL_START_GRACE_MS", "2000")
        .env("KIWI_NODE_READY_TIMEOUT", "600s")
        .env("KIWI_INTERNAL_NODE_POLL_MS", "200")
        .env("RUST_LOG", "warn,kiwi_infra::apply::executor=debug");
    // The tool's own CPU time, and the whole machine's, over the run.
    let cpu_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = with_cpu_time(&cmd, cpu_file.path());
    let busy_before = machine_busy_secs();
    let started = Instant::now();
    let spawned = Utc::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let wall = started.elapsed();
    let machine_busy = machine_busy_secs() - busy_before;
    let tool_cpu = std::fs::read_to_string(cpu_file.path()).ok().and_then(|t| {
        let mut f = t.lines().last()?.split_whitespace();
        Some(f.next()?.parse::<f64>().ok()? + f.next()?.parse::<f64>().ok()?)
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Kept for a closer look at the timeline.
    let log = std::env::temp_dir().join(format!("apply_at_scale-{customers}-{rate}.log"));
    std::fs::write(&log, &out.stderr).unwrap();
    eprintln!("== {name}: apply's log is in {}", log.display());
    if !out.status.success() {
        // What the failed nodes' k3s says, before the world is gone.
        for line in stderr.lines().filter(|l| l.contains(" failed: step ")) {
            let Some(slot) = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.split(':').nth(1))
            else {
                continue;
            };
            for unit in ["k3s", "k3s-agent"] {
                if let Ok(journal) = world
                    .sim
                    .exec(slot, &format!("journalctl -u {unit} --no-pager | tail -20"))
                    .await
                {
                    eprintln!("--- {slot}: {unit}\n{}", journal.stdout);
                }
            }
        }
    }
    assert!(
        out.status.success(),
        "apply failed ({}):\n{}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );

    let stats = world.mock.stats();
    let slots = customers * SLOTS_PER_CUSTOMER;
    assert_eq!(stats.instances_created, slots as u64, "one order per slot");
    check_clusters(&world, customers).await;

    let tasks = parse_tasks(&stderr);
    // Every task depends on the plan the apply makes first (reading
    // Contabo and the clusters): that phase heads the critical path.
    let first = tasks.values().map(|t| t.started).min().unwrap();
    let planning = (first - spawned).to_std().unwrap_or_default();
    let (tasks_path, chain) = critical_path(&tasks);
    // And after the last task, apply reads everything again to show the
    // fresh plan: that phase depends on every task, and ends the path.
    let last = tasks.values().filter_map(|t| t.finished).max().unwrap();
    let ended = spawned + chrono::Duration::from_std(wall).unwrap();
    let checking = (ended - last).to_std().unwrap_or_default();
    let critical = planning + tasks_path + checking;
    let sequential = tasks.values().map(Task::duration).sum();
    eprintln!(
        "== {name} at {rate}/s: wall {:.1} s, critical path {:.1} s, sequential {:.1} s",
        wall.as_secs_f64(),
        critical.as_secs_f64(),
        secs(sequential)
    );
    Row {
        name,
        rate,
        planning,
        checking,
        nodes: slots,
        wall,
        critical,
        chain,
        sequential,
        requests: stats.requests_total,
        rate_limited: stats.rate_limited,
        ordered: stats.instances_created,
        machine_busy,
        tool_cpu,
    }
}

/// `cmd` run under `/usr/bin/time`, which writes its user and system CPU
/// seconds to `out`; `cmd` itself when `/usr/bin/time` is missing.
fn with_cpu_time(cmd: &std::process::Command, out: &Path) -> std::process::Command {
    let time = Path::new("/usr/bin/time");
    let mut timed = if time.exists() {
        let mut t = std::process::Command::new(time);
        t.arg("-f")
            .arg("%U %S")
            .arg("-o")
            .arg(out)
            .arg(cmd.get_program());
        t
    } else {
        std::process::Command::new(cmd.get_program())
    };
    timed.args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    timed
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    timed
}

/// CPU-seconds all cores have been busy since boot (`/proc/stat`, in
/// USER_HZ = 100 ticks).
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    busy / 100.0
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The example inventory (`inventory_copy`) reshaped: its Core control
/// plane without the Core pools (not under test here), and `customers`
/// copies `m01`, `m02`, ... of its Mesh customer with 3 agents per pool.
fn reshape_inventory(dir: &Path, customers: usize) {
    let main = dir.join("kiwi.toml");
    let text = std::fs::read_to_string(&main).unwrap();
    let pools = text
        .find("[core.pools")
        .expect("the example has Core pools");
    std::fs::write(&main, &text[..pools]).unwrap();
    let mesh = std::fs::read_to_string(dir.join("customers/stadtwerke-nord.toml")).unwrap();
    assert_eq!(
        mesh.matches("count = 1\n").count(),
        2,
        "two agent pools of 1"
    );
    let mesh = mesh.replace("count = 1\n", "count = 3\n");
    std::fs::remove_dir_all(dir.join("customers")).unwrap();
    std::fs::create_dir(dir.join("customers")).unwrap();
    for n in 1..=customers {
        std::fs::write(dir.join("customers").join(format!("m{n:02}.toml")), &mesh).unwrap();
    }
}

/// Every customer's cluster has its 9 nodes, Ready, with their class label.
async fn check_clusters(world: &World, customers: usize) {
    for n in 1..=customers {
        let server = slot_name(&format!("m{n:02}"), SERVER_POOL, 1);
        let nodes = world.nodes(&server, K3S).await;
        assert_eq!(
            nodes.len(),
            SLOTS_PER_CUSTOMER,
            "{server}: {:?}",
            nodes.keys()
        );
        for (name, node) in &nodes {
            assert_ready_with_class(name, node);
        }
    }
}

/// One executor task as its log lines tell it.
#[derive(Debug)]
struct Task {
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    after: Vec<String>,
}

impl Task {
    fn duration(&self) -> Duration {
        self.finished
            .and_then(|f| (f - self.started).to_std().ok())
            .unwrap_or_default()
    }
}

/// The tasks of `kiwi_infra::apply::executor`'s debug lines:
/// `<time> DEBUG kiwi_infra::apply::executor: task started task=<id> after=<ids>`
/// and `... task finished task=<id> done=<bool>`.
fn parse_tasks(log: &str) -> HashMap<String, Task> {
    let mut tasks = HashMap::new();
    for line in log.lines() {
        let Some(time) = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        else {
            continue;
        };
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        if line.contains(" task started ") {
            let id = field("task=").expect("task started names its task");
            let after = field("after=")
                .map(|a| {
                    a.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            tasks.insert(
                id,
                Task {
                    started: time,
                    finished: None,
                    after,
                },
            );
        } else if line.contains(" task finished ") {
            let id = field("task=").expect("task finished names its task");
            if let Some(task) = tasks.get_mut(&id) {
                task.finished = Some(time);
            }
        }
    }
    assert!(
        !tasks.is_empty(),
        "no task lines in the log: did the executor's debug output change?"
    );
    assert!(
        tasks.values().all(|t| t.finished.is_some()),
        "a task started and never finished"
    );
    tasks
}

/// The longest chain of dependent tasks, each weighing its duration; with
/// the chain, first task first.
fn critical_path(tasks: &HashMap<String, Task>) -> (Duration, Vec<(String, Duration)>) {
    // A task starts after its dependencies finish, so start order is a
    // topological order.
    let mut order: Vec<&String> = tasks.keys().collect();
    order.sort_by_key(|id| tasks[*id].started);
    let mut best: HashMap<&str, (Duration, Option<&str>)> = HashMap::new();
    for id in order {
        let task = &tasks[id];
        let before = task
            .after
            .iter()
            .filter_map(|d| best.get(d.as_str()).map(|(len, _)| (*len, d.as_str())))
            .max_by_key(|(len, _)| *len);
        let (len, prev) = match before {
            Some((len, dep)) => (len + task.duration(), Some(dep)),
            None => (task.duration(), None),
        };
        best.insert(id.as_str(), (len, prev));
    }
    let (&end, &(length, _)) = best.iter().max_by_key(|(_, (len, _))| *len).unwrap();
    let mut chain = Vec::new();
    let mut at = Some(end);
    while let Some(id) = at {
        chain.push((id.to_string(), tasks[id].duration()));
        at = best[id].1;
    }
    chain.reverse();
    (length, chain)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "mock: provisioning {} s + installing {} s; the mock's rate limit (burst 2) and the \
         client's are equal",
        PROVISIONING.as_secs(),
        INSTALLING.as_secs()
    );
    println!(
        "| run | nodes | requests/s | wall | critical path (plan + tasks + final check) | \
         wall / critical | sequential | sequential / wall | requests | 429s | ordered / slots |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} s | {:.1} s ({:.1} + {:.1} + {:.1}) | {:.2} | {:.0} s | {:.0}× | {} | {} | {} / {} |",
            r.name,
            r.nodes,
            r.rate,
            secs(r.wall),
            secs(r.critical),
            secs(r.planning),
            secs(r.critical - r.planning - r.checking),
            secs(r.checking),
            secs(r.wall) / secs(r.critical),
            secs(r.sequential),
            secs(r.sequential) / secs(r.wall),
            r.requests,
            r.rate_limited,
            r.ordered,
            r.nodes,
        );
    }
    println!();
    println!("| run | requests/s | machine busy during the apply | kiwi-infra's own CPU |");
    println!("| --- | --- | --- | --- |");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for r in rows {
        println!(
            "| {} | {} | {:.0} CPU-s of {:.0} ({:.0} %) | {} |",
            r.name,
            r.rate,
            r.machine_busy,
            cores * secs(r.wall),
            100.0 * r.machine_busy / (cores * secs(r.wall)),
            r.tool_cpu
                .map_or("not measured (/usr/bin/time missing)".to_string(), |c| {
                    format!("{c:.1} CPU-s")
                }),
        );
    }
    for r in rows {
        println!();
        println!("critical path of \"{}\" at {}/s:", r.name, r.rate);
        println!(
            "  {:>6.1} s  plan phase (start to first task)",
            secs(r.planning)
        );
        for (id, d) in &r.chain {
            println!("  {:>6.1} s  {id}", secs(*d));
        }
        println!(
            "  {:>6.1} s  final check (last task to exit)",
            secs(r.checking)
        );
    }
}
