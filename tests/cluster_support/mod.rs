//! Shared set-up of the end-to-end tests on simulated nodes: a Contabo mock,
//! a node simulator, the example inventory pointed at them, and helpers to
//! read what the clusters report. Needs root (mount namespaces, port 22).

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiwi_mocks::contabo::{spawn, IpRange, MockConfig, MockHandle};
use kiwi_mocks::nodes::{
    default_standin_binary, HostFacts, NodeSimulator, NodesConfig, StaticNode,
};
use serde_json::Value;

use super::apply_support::{self, inventory_copy};

/// kubectl on a k3s server.
pub const K3S: &str = "k3s kubectl";
/// kubectl on a kubeadm control-plane node.
pub const KUBEADM: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

pub const CONTROL_PLANE: [&str; 3] = ["kiwi-core-cp-01", "kiwi-core-cp-02", "kiwi-core-cp-03"];

/// Whether this machine can run simulated nodes (root, namespaces, port
/// 22, the stand-in binary); the error says what is missing and how to fix it.
pub fn nodes_preflight() -> Result<(), String> {
    let standin = default_standin_binary()
        .ok_or("kiwi-node-standin is not built: build the workspace (cargo build --workspace)")?;
    kiwi_mocks::nodes::preflight::check(&HostFacts::detect(&standin), 22, &standin)
        .map_err(|e| e.to_string())
}

/// A Contabo mock with simulated nodes and an inventory pointing at them.
pub struct World {
    pub mock: MockHandle,
    pub sim: NodeSimulator,
    _dir: tempfile::TempDir,
    pub inventory: PathBuf,
    pub identity: PathBuf,
}

/// An operator key pair, made with ssh-keygen.
pub fn operator_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("operator");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ops@test", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// The example inventory (see `inventory_copy`) with the test's operator
/// key, its Core control plane on simulated nodes at 127.0.`cp`.1-3 with the
/// first `formed` of them already forming the cluster (as the operator
/// built it), and instances on 127.0.`instances`.x. Tests run in parallel,
/// so each picks octets no other test uses.
pub async fn world(cp: u8, instances: u8, formed: usize) -> World {
    let (dir, inventory) = inventory_copy();
    let mock = MockConfig {
        provisioning_delay: Duration::from_millis(100),
        installing_delay: Duration::from_millis(100),
        ip_range: loopback_range(instances),
        ..MockConfig::default()
    };
    world_with(dir, inventory, cp, formed, mock).await
}

/// Instance addresses 127.0.`octet`.2-254.
pub fn loopback_range(octet: u8) -> IpRange {
    IpRange {
        first: Ipv4Addr::new(127, 0, octet, 2),
        last: Ipv4Addr::new(127, 0, octet, 254),
        prefix: 24,
        gateway: Ipv4Addr::new(127, 0, octet, 1),
    }
}

/// Like [`world`], for any inventory in `dir` whose Core control plane is
/// written as 127.0.31.x: the operator key replaces its `ssh_public_key`,
/// the control plane moves to 127.0.`cp`.1-3, and the mock runs with
/// `mock` (whose `ip_range` says where instances appear).
pub async fn world_with(
    dir: tempfile::TempDir,
    inventory: PathBuf,
    cp: u8,
    formed: usize,
    mock: MockConfig,
) -> World {
    let (identity, public) = operator_key(dir.path());
    let main = inventory.join("kiwi.toml");
    let mut text = std::fs::read_to_string(&main).unwrap();
    let old_key = text
        .lines()
        .find(|l| l.starts_with("ssh_public_key"))
        .unwrap()
        .to_string();
    text = text.replace(&old_key, &format!("ssh_public_key = \"{public}\""));
    text = text.replace("127.0.31.", &format!("127.0.{cp}."));
    std::fs::write(&main, text).unwrap();

    let mock = spawn(mock).await.unwrap();
    let standin = default_standin_binary()
        .expect("kiwi-node-standin is built with the workspace (cargo test --workspace)");
    let mut sim = NodeSimulator::start(NodesConfig::new(dir.path().join("nodes"), standin))
        .await
        .unwrap();
    sim.attach(&mock);
    let mut known_hosts = String::new();
    for (i, name) in (1u8..).zip(CONTROL_PLANE) {
        let key = sim
            .add_static_node(StaticNode {
                name: name.into(),
                ip: Ipv4Addr::new(127, 0, cp, i),
                user: "kiwi".into(),
                authorized_keys: vec![public.clone()],
                host_key: None,
            })
            .await
            .unwrap();
        // The operator verified these keys when the control plane was built.
        known_hosts.push_str(&format!("{name} {key}\n"));
    }
    std::fs::write(inventory.join("known_hosts"), known_hosts).unwrap();
    let control_plane: Vec<(String, Ipv4Addr)> = (1u8..)
        .zip(CONTROL_PLANE)
        .map(|(i, name)| (name.to_string(), Ipv4Addr::new(127, 0, cp, i)))
        .collect();
    sim.form_control_plane(&control_plane[..formed])
        .await
        .unwrap();
    World {
        mock,
        sim,
        _dir: dir,
        inventory,
        identity,
    }
}

impl World {
    /// `kiwi-infra` against this world, with short waits.
    pub fn kiwi(&self, args: &[&str]) -> Command {
        let mut cmd = apply_support::command(&self.mock, &self.inventory, args);
        cmd.env("KIWI_SSH_IDENTITY", &self.identity)
            .env("KIWI_NODE_READY_TIMEOUT", "90s")
            .env("KIWI_INTERNAL_NODE_POLL_MS", "300");
        cmd
    }

    /// Replaces `from` (which must be there) by `to` in an inventory file.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.inventory.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}:\n{text}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// `kubectl get nodes -o json` on a control node, as name → node JSON.
    pub async fn nodes(&self, control: &str, kubectl: &str) -> BTreeMap<String, Value> {
        let out = self
            .sim
            .exec(control, &format!("{kubectl} get nodes -o json"))
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let list: Value = serde_json::from_str(&out.stdout).unwrap();
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

pub fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `node` (named `name`) is Ready and carries the class label its pool
/// name implies: `vds` for realtime pools, `vps` otherwise.
pub fn assert_ready_with_class(name: &str, node: &Value) {
    assert!(ready(node), "{name} is not Ready");
    let class = if name.contains("-realtime-") {
        "vds"
    } else {
        "vps"
    };
    assert_eq!(
        label(node, "kiwistack.io/node-class"),
        Some(class),
        "{name}"
    );
}

/// For benches: the names given after `--` (`cargo bench --bench X -- 20`)
/// select the scenarios whose name contains one of them; none selects all.
pub fn bench_filter() -> impl Fn(&str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    move |name| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

pub fn label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node["metadata"]["labels"][key].as_str()
}
