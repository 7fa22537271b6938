//! The runbooks in `docs/runbooks/` are run, so they cannot rot: one
//! sandbox (`kiwi-infra sandbox up`, the real binary with the Contabo
//! stand-in and simulated nodes), then every ```sh block of each runbook in
//! order, with `bash -euo pipefail`, from a scratch working directory, with
//! the sandbox's `env` exported and the built `kiwi-infra` first on PATH.
//! A block must exit 0, or the code its fence line declares
//! (```sh expect-exit=2). Blocks marked `test-setup` play Contabo's part
//! through the sandbox's control API; they must sit inside HTML comments so
//! operators never see them as steps. After each runbook the test checks
//! what an operator would notice: the new customer's nodes Ready with their
//! class labels, the replaced node back under the same instance, and so on.
//!
//! The sandbox uses fixed addresses (127.0.10.x, 127.0.31.x), so everything
//! runs inside one test, sequentially. Needs root, like the sandbox.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The runbooks, in the order they run against the one sandbox. Onboarding
/// runs first, on a fresh sandbox, exactly as an operator rehearsing it
/// would; the others expect a built platform, which onboarding leaves (and
/// core-expansion grows). The firewall runbook runs on that built platform,
/// while every cluster is still in sync with the inventory.
const RUNBOOKS: [&str; 5] = [
    "onboarding.md",
    "core-expansion.md",
    "firewall.md",
    "replacing-a-node.md",
    "statuses-that-need-a-human.md",
];

/// Longest a single block may run; far above what any needs in the sandbox.
const BLOCK_LIMIT: Duration = Duration::from_secs(600);

fn kiwi_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiwi-infra"))
}

fn runbook_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks")
}

// ----- extracting the blocks ------------------------------------------------

/// One ```sh block of a runbook.
#[derive(Debug, Clone)]
struct Block {
    /// 1-based line of the opening fence, for messages.
    line: usize,
    code: String,
    /// Plays Contabo's part; never an operator step.
    setup: bool,
    expect_exit: i32,
    /// Inside an HTML comment (not shown on a rendered page).
    hidden: bool,
}

/// Every ```sh block of `text`, in order. Other fences (```text, ```toml)
/// are skipped; an unknown word on a sh fence is an error, so a typo in a
/// marker cannot silently turn a check off.
fn sh_blocks(name: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut in_comment = false;
    let mut fence: Option<(usize, Vec<String>, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some((start, info, code)) = &mut fence {
            if trimmed == "```" {
                if info.first().map(String::as_str) == Some("sh") {
                    let mut block = Block {
                        line: *start,
                        code: code.clone(),
                        setup: false,
                        expect_exit: 0,
                        hidden: in_comment,
                    };
                    for word in &info[1..] {
                        if word == "test-setup" {
                            block.setup = true;
                        } else if let Some(n) = word.strip_prefix("expect-exit=") {
                            block.expect_exit = n
                                .parse()
                                .unwrap_or_else(|_| panic!("{name}:{start}: bad marker {word:?}"));
                        } else {
                            panic!("{name}:{start}: unknown marker {word:?} on a sh fence");
                        }
                    }
                    blocks.push(block);
                }
                fence = None;
            } else {
                code.push_str(line);
                code.push('\n');
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let words = info.split_whitespace().map(str::to_string).collect();
            fence = Some((i + 1, words, String::new()));
            continue;
        }
        if trimmed.starts_with("<!--") {
            in_comment = true;
        }
        if trimmed.ends_with("-->") {
            in_comment = false;
        }
    }
    assert!(fence.is_none(), "{name}: a code fence is not closed");
    blocks
}

#[test]
fn block_extraction_reads_markers_and_comments() {
    let text =
        "intro\n```sh\nkiwi-infra plan\n```\n<!-- setup\n```sh test-setup\ncurl x\n```\n-->\n\
                ```text\nPlan: 1\n```\n```sh expect-exit=2\nkiwi-infra apply\n```\n";
    let blocks = sh_blocks("t.md", text);
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert_eq!(blocks[0].code, "kiwi-infra plan\n");
    assert!(!blocks[0].setup && !blocks[0].hidden && blocks[0].expect_exit == 0);
    assert!(blocks[1].setup && blocks[1].hidden);
    assert_eq!(blocks[2].expect_exit, 2);
    assert!(!blocks[2].hidden);
}

/// What every runbook must look like, before anything runs.
fn check_shape(name: &str, blocks: &[Block]) {
    assert!(
        blocks.iter().any(|b| !b.setup),
        "{name} has no operator commands"
    );
    for b in blocks {
        let at = format!("{name}:{}", b.line);
        if b.setup {
            assert!(
                b.hidden,
                "{at}: a test-setup block must sit inside <!-- … -->"
            );
        } else {
            assert!(!b.hidden, "{at}: an operator step is hidden in a comment");
            assert!(
                !b.code.contains("_mock"),
                "{at}: operators never use the sandbox's control API; mark the block test-setup"
            );
        }
    }
}

// ----- the sandbox ----------------------------------------------------------

/// A running sandbox; `Drop` stops it, whether the test passed or not.
struct Sandbox {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Sandbox {
    fn up() -> Sandbox {
        let bin = kiwi_binary();
        for sibling in ["contabo-mock", "kiwi-node-standin"] {
            let path = bin.with_file_name(sibling);
            assert!(
                path.is_file(),
                "{} is missing: the sandbox needs the whole workspace built. Run \
                 `cargo build --workspace` (or `cargo test --workspace`, which builds it) first",
                path.display()
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&bin)
            .args(["sandbox", "up", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // Constructed before asserting, so a half-started sandbox is stopped.
        let mut sandbox = Sandbox {
            dir,
            env: Vec::new(),
        };
        assert!(
            out.status.success(),
            "kiwi-infra sandbox up failed (it needs root and ssh, unshare, nsenter):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env_file = std::fs::read_to_string(sandbox.dir.path().join("env")).unwrap();
        sandbox.env = parse_env(&env_file);
        assert!(
            sandbox.env.iter().any(|(k, _)| k == "KIWI_INVENTORY"),
            "{env_file}"
        );
        sandbox
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} not in the sandbox's env"))
    }

    fn inventory(&self) -> PathBuf {
        PathBuf::from(self.var("KIWI_INVENTORY"))
    }

    /// A command with the operator's environment: the sandbox's exports,
    /// the built kiwi-infra first on PATH, no colour.
    fn command(&self, program: &str, work: &Path) -> Command {
        let mut cmd = Command::new(program);
        let bin_dir = kiwi_binary().parent().unwrap().to_path_buf();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin_dir];
        paths.extend(std::env::split_paths(&path));
        cmd.current_dir(work)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PATH", std::env::join_paths(paths).unwrap())
            .env("NO_COLOR", "1")
            // The double-order guard's pause before re-ordering a slot whose
            // journalled order was cancelled (statuses runbook, last section):
            // 120 s in production, shortened so the test stays bounded. It
            // changes how long apply looks, not what it decides.
            .env("KIWI_UNLISTED_ORDER_WAIT", "5s")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// `kiwi-infra ARGS`, which must succeed; its stdout.
    fn kiwi(&self, work: &Path, args: &[&str]) -> String {
        let out = self
            .command(kiwi_binary().to_str().unwrap(), work)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kiwi-infra {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn instances(&self, work: &Path) -> Vec<Value> {
        let json: Value = serde_json::from_str(&self.kiwi(work, &["instances", "--json"])).unwrap();
        json.as_array().unwrap().clone()
    }

    /// The one live (not cancelled) instance named `name`.
    fn live_instance(&self, work: &Path, name: &str) -> Value {
        let live: Vec<Value> = self
            .instances(work)
            .into_iter()
            .filter(|i| i["displayName"] == name && i["cancelDate"].is_null())
            .collect();
        assert_eq!(live.len(), 1, "live instances named {name}: {live:?}");
        live[0].clone()
    }

    /// The live instance's IPv4 address.
    fn ip(&self, work: &Path, name: &str) -> String {
        self.live_instance(work, name)["ipConfig"]["v4"]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `command` on `node`, over SSH with the operator's key and the host
    /// key kiwi-infra pinned, as the runbooks' own ssh lines do; its stdout,
    /// parsed as JSON.
    fn ssh_json(&self, work: &Path, node: &str, command: &str) -> Value {
        let ip = self.ip(work, node);
        let known_hosts = self.inventory().join("known_hosts");
        let out = self
            .command("ssh", work)
            .args(["-o", "BatchMode=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-o")
            .arg(format!("HostKeyAlias={node}"))
            .arg("-i")
            .arg(self.var("KIWI_SSH_IDENTITY"))
            .arg(format!("kiwi@{ip}"))
            .arg(command)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{command} on {node}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The elements of set `set` of `table inet kiwi` on `node`, as nft
    /// lists them (`sudo nft -j list set inet kiwi SET`): addresses as
    /// `a.b.c.d`, networks as `a.b.c.d/len`.
    fn nft_set(&self, work: &Path, node: &str, set: &str) -> BTreeSet<String> {
        let listing = self.ssh_json(work, node, &format!("sudo nft -j list set inet kiwi {set}"));
        listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("set"))
            .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
            .map(|e| match &e {
                Value::String(addr) => addr.clone(),
                _ if e["prefix"].is_object() => {
                    format!(
                        "{}/{}",
                        e["prefix"]["addr"].as_str().unwrap(),
                        e["prefix"]["len"]
                    )
                }
                other => panic!("{node}: unexpected element of {set}: {other}"),
            })
            .collect()
    }

    /// `kubectl get nodes -o json` on a k3s server, over SSH with the
    /// operator's key and the host key kiwi-infra pinned: name → node.
    fn k3s_nodes(&self, work: &Path, server: &str) -> BTreeMap<String, Value> {
        let list = self.ssh_json(work, server, "sudo k3s kubectl get nodes -o json");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().unwrap().to_string(),
                    n.clone(),
                )
            })
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(kiwi_binary())
            .args(["sandbox", "down", "--dir"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output();
    }
}

/// `export K='V'` lines (the sandbox's env file) as pairs.
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn env_lines_are_parsed_like_the_shell_would() {
    let env = parse_env("export A='x y'\nexport KIWI_API_URL='http://127.0.0.1:1'\n# no\n");
    assert_eq!(
        env,
        [
            ("A".to_string(), "x y".to_string()),
            ("KIWI_API_URL".to_string(), "http://127.0.0.1:1".to_string())
        ]
    );
}

// ----- running ----------------------------------------------------------------

/// Runs every block of runbook `name`, asserting each one's exit code.
fn run_runbook(sandbox: &Sandbox, work: &Path, name: &str) {
    let text = std::fs::read_to_string(runbook_dir().join(name)).unwrap();
    let blocks = sh_blocks(name, &text);
    check_shape(name, &blocks);
    for (n, block) in blocks.iter().enumerate() {
        let out_path = work.join(format!(".block-{n}.out"));
        let stdout = std::fs::File::create(&out_path).unwrap();
        let stderr = stdout.try_clone().unwrap();
        let started = Instant::now();
        let mut child = sandbox
            .command("bash", work)
            .args(["-euo", "pipefail", "-c", &block.code])
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > BLOCK_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name}:{}: still running after {BLOCK_LIMIT:?}:\n{}\n--- output ---\n{}",
                    block.line,
                    block.code,
                    std::fs::read_to_string(&out_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        let kind = if block.setup { "test-setup" } else { "step" };
        eprintln!(
            "{name}:{} ({kind}) exit {:?} after {:.1?}",
            block.line,
            status.code(),
            started.elapsed()
        );
        assert_eq!(
            status.code(),
            Some(block.expect_exit),
            "{name}:{}: the {kind} block exited with {:?}, the runbook expects {}:\n{}\n--- output ---\n{}",
            block.line,
            status.code(),
            block.expect_exit,
            block.code,
            output
        );
    }
}

/// The rows of one cluster's table in `kiwi-infra status`, by node name,
/// as whitespace-separated columns.
fn status_rows(status: &str, cluster: &str) -> BTreeMap<String, Vec<String>> {
    let header = format!("Cluster {cluster} (");
    status
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(2)
        .take_while(|l| l.starts_with("kiwi-"))
        .map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            (cols[0].clone(), cols)
        })
        .collect()
}

/// Every node of `cluster` is running and Ready with the class label its
/// pool asks for, as `kiwi-infra status` shows it; `count` nodes.
fn assert_cluster_ready(status: &str, cluster: &str, count: usize) {
    let rows = status_rows(status, cluster);
    assert_eq!(rows.len(), count, "{cluster} in:\n{status}");
    for (name, cols) in &rows {
        let class = if name.contains("-realtime-") {
            "vds"
        } else {
            "vps"
        };
        // NODE INSTANCE STATE IP PRODUCT CLASS K8S NODE-CLASS-LABEL DIFFERS
        assert_eq!(cols[2], "running", "{name}: {cols:?}");
        assert_eq!(cols[5], class, "{name}: {cols:?}");
        assert_eq!(cols[6], "Ready", "{name}: {cols:?}");
        assert_eq!(cols[7], class, "{name}: node-class label {cols:?}");
    }
}

/// Every node row of every cluster in `kiwi-infra status` shows `ok` under
/// FIREWALL. Each cluster's table has its own column widths, so the column
/// is found in each table's header; the Core control-plane table below the
/// Core nodes has no FIREWALL column and is skipped.
fn assert_every_firewall_ok(status: &str) {
    let mut column: Option<usize> = None;
    let mut rows = 0;
    for line in status.lines() {
        if line.starts_with("NODE ") {
            let at = line.find("FIREWALL").unwrap_or_else(|| panic!("{line}"));
            column = Some(line[..at].chars().count());
        } else if line.starts_with("CONTROL-PLANE NODE") || line.starts_with("Cluster ") {
            column = None;
        } else if let (Some(col), true) = (column, line.starts_with("kiwi-")) {
            let rest: String = line.chars().skip(col).collect();
            let value = rest.split_whitespace().next().unwrap_or("");
            assert_eq!(value, "ok", "firewall of:\n{line}\nin:\n{status}");
            rows += 1;
        }
    }
    // 15 nodes of the example inventory, 10 of the two onboarded customers,
    // the Core worker core-expansion added.
    assert_eq!(rows, 26, "node rows in:\n{status}");
}

/// The UDP ports a listed input chain (`nft -j list chain inet kiwi input`)
/// accepts from anyone: rules with a `udp dport` match and no address match.
fn public_udp_ports(listing: &Value) -> BTreeSet<u64> {
    let mut ports = BTreeSet::new();
    for rule in listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
    {
        let exprs = rule["expr"].as_array().cloned().unwrap_or_default();
        let matches: Vec<&Value> = exprs.iter().filter_map(|e| e.get("match")).collect();
        let by_address = matches
            .iter()
            .any(|m| m["left"]["payload"]["field"] == "saddr");
        let accepts = exprs.iter().any(|e| e.get("accept").is_some());
        if by_address || !accepts {
            continue;
        }
        for m in matches {
            let left = &m["left"]["payload"];
            if left["protocol"] != "udp" || left["field"] != "dport" {
                continue;
            }
            let right = &m["right"];
            let values: Vec<Value> = right["set"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![right.clone()]);
            for v in values {
                if let Some(p) = v.as_u64() {
                    ports.insert(p);
                } else if let Some([lo, hi]) = v["range"].as_array().map(Vec::as_slice) {
                    ports.extend(lo.as_u64().unwrap()..=hi.as_u64().unwrap());
                }
            }
        }
    }
    ports
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node["metadata"]["labels"][key].as_str()
}

#[test]
fn every_runbook_runs_against_the_sandbox() {
    // Fail on a malformed runbook before spending time on a sandbox.
    for name in RUNBOOKS {
        let text = std::fs::read_to_string(runbook_dir().join(name))
            .unwrap_or_else(|e| panic!("docs/runbooks/{name}: {e}"));
        check_shape(name, &sh_blocks(name, &text));
    }
    let sandbox = Sandbox::up();
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();

    // Onboarding, word for word, on a fresh sandbox.
    run_runbook(&sandbox, work, "onboarding.md");
    let status = sandbox.kiwi(work, &["status"]);
    assert_cluster_ready(&status, "muster-gmbh", 5);
    assert_cluster_ready(&status, "autohaus-berger", 5);
    assert!(
        status.contains("Cluster muster-gmbh (k3s, tier mesh)"),
        "{status}"
    );
    // The cluster's own view: the Mesh customer's nodes, Ready and labelled.
    let nodes = sandbox.k3s_nodes(work, "kiwi-muster-gmbh-server-01");
    let names: Vec<&String> = nodes.keys().collect();
    assert_eq!(
        names,
        [
            "kiwi-muster-gmbh-general-01",
            "kiwi-muster-gmbh-realtime-01",
            "kiwi-muster-gmbh-server-01",
            "kiwi-muster-gmbh-server-02",
            "kiwi-muster-gmbh-server-03"
        ]
    );
    for (name, node) in &nodes {
        let class = if name.contains("-realtime-") {
            "vds"
        } else {
            "vps"
        };
        assert!(ready(node), "{name} is not Ready");
        assert_eq!(
            label(node, "kiwistack.io/node-class"),
            Some(class),
            "{name}"
        );
        assert_eq!(label(node, "kiwistack.io/tier"), Some("mesh"), "{name}");
        assert_eq!(
            label(node, "kiwistack.io/cluster"),
            Some("muster-gmbh"),
            "{name}"
        );
    }
    // The Core-tier customer is in the inventory and bought nothing.
    assert!(sandbox
        .inventory()
        .join("customers/steuerbuero-klein.toml")
        .is_file());
    assert!(
        !sandbox.instances(work).iter().any(|i| i["displayName"]
            .as_str()
            .unwrap()
            .contains("steuerbuero-klein")),
        "a Core-tier customer has no servers of its own"
    );
    let kubeconfig = std::fs::read_to_string(work.join("muster-gmbh.kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("current-context: muster-gmbh"),
        "{kubeconfig}"
    );

    run_runbook(&sandbox, work, "core-expansion.md");
    let status = sandbox.kiwi(work, &["status"]);
    assert_cluster_ready(&status, "core", 6);
    assert!(status_rows(&status, "core").contains_key("kiwi-core-general-04"));

    // The firewall: the new operator network on every node, the hand-made
    // peer gone, the new public port open, every node's firewall as the
    // plan wants it.
    run_runbook(&sandbox, work, "firewall.md");
    let status = sandbox.kiwi(work, &["status"]);
    assert_every_firewall_ok(&status);
    for node in [
        "kiwi-stadtwerke-nord-server-01",
        "kiwi-core-general-04",
        "kiwi-muster-gmbh-general-01",
    ] {
        let operators = sandbox.nft_set(work, node, "operators4");
        assert_eq!(
            operators,
            BTreeSet::from(["127.0.0.0/8".to_string(), "192.0.2.0/24".to_string()]),
            "{node}: operators4"
        );
    }
    // The hand-edited node admits exactly its cluster's members again.
    let members: BTreeSet<String> = sandbox
        .instances(work)
        .iter()
        .filter(|i| {
            i["displayName"]
                .as_str()
                .unwrap()
                .starts_with("kiwi-stadtwerke-nord-")
                && i["cancelDate"].is_null()
        })
        .map(|i| i["ipConfig"]["v4"]["ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members.len(), 5, "{members:?}");
    assert_eq!(
        sandbox.nft_set(work, "kiwi-stadtwerke-nord-server-01", "peers4"),
        members,
        "peers4 of kiwi-stadtwerke-nord-server-01"
    );
    // The Fleet customer's WireGuard endpoint is public on its nodes.
    let table = sandbox.ssh_json(
        work,
        "kiwi-praxis-lindner-general-01",
        "sudo nft -j list chain inet kiwi input",
    );
    assert!(
        public_udp_ports(&table).contains(&51830),
        "udp 51830 is not open to anyone on kiwi-praxis-lindner-general-01: {table}"
    );
    let inventory = std::fs::read_to_string(sandbox.inventory().join("kiwi.toml")).unwrap();
    assert!(
        inventory.contains("operator_networks = [\"127.0.0.0/8\", \"192.0.2.0/24\"]"),
        "{inventory}"
    );

    // The failed node comes back in place: same instance, nothing bought.
    let before = sandbox.live_instance(work, "kiwi-stadtwerke-nord-general-01");
    run_runbook(&sandbox, work, "replacing-a-node.md");
    let after = sandbox.live_instance(work, "kiwi-stadtwerke-nord-general-01");
    assert_eq!(
        before["instanceId"], after["instanceId"],
        "reinstalled, not re-bought"
    );
    let status = sandbox.kiwi(work, &["status"]);
    // The realtime node was removed (count 0): 3 servers and the agent.
    assert_cluster_ready(&status, "stadtwerke-nord", 4);
    let realtime: Vec<Value> = sandbox
        .instances(work)
        .into_iter()
        .filter(|i| i["displayName"] == "kiwi-stadtwerke-nord-realtime-01")
        .collect();
    assert_eq!(realtime.len(), 1, "{realtime:?}");
    assert!(
        realtime[0]["cancelDate"].is_string(),
        "the removed node's instance is cancelled: {:?}",
        realtime[0]
    );
    let nodes = sandbox.k3s_nodes(work, "kiwi-stadtwerke-nord-server-01");
    assert!(!nodes.contains_key("kiwi-stadtwerke-nord-realtime-01"));
    assert!(ready(&nodes["kiwi-stadtwerke-nord-general-01"]));

    // Held orders resume; the sold-out one moved to another product.
    run_runbook(&sandbox, work, "statuses-that-need-a-human.md");
    let status = sandbox.kiwi(work, &["status"]);
    assert_cluster_ready(&status, "stadtwerke-nord", 6);
    let moved = sandbox.live_instance(work, "kiwi-stadtwerke-nord-general-03");
    assert_eq!(moved["productId"], "V94", "{moved:?}");
    let nodes = sandbox.k3s_nodes(work, "kiwi-stadtwerke-nord-server-01");
    for name in [
        "kiwi-stadtwerke-nord-general-02",
        "kiwi-stadtwerke-nord-general-03",
    ] {
        let node = nodes
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a node: {:?}", nodes.keys()));
        assert!(ready(node), "{name} is not Ready");
        assert_eq!(
            label(node, "kiwistack.io/node-class"),
            Some("vps"),
            "{name}"
        );
    }
    drop(sandbox);
}
