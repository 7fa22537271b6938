//! A cluster on a Contabo private network, end to end: the real binary
//! against the mock (whose private networks take addresses from a loopback
//! range, so the simulated nodes can bind theirs) and simulated nodes. The
//! plan shows the add-on and its price; after apply, every node's k3s
//! `node-ip` is its private address, its `node-external-ip` its public one,
//! the nodes joined through the first server's private address, and the
//! cluster reports the private addresses as the nodes' InternalIP.
//! Needs root (mount namespaces, port 22 on loopback).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::apply_support::{inventory_copy, run, text};
use crate::cluster_support::{loopback_range, ready, world_with, K3S};
use kiwi_mocks::contabo::MockConfig;

const SERVER: &str = "kiwi-stadtwerke-nord-server-01";

/// The value of a top-level `key: "value"` line of a k3s config.
fn config_value(config: &str, key: &str) -> Option<String> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_cluster_uses_private_addresses_for_node_ip_and_joins() {
    let (dir, inventory) = inventory_copy();
    // Only the Mesh customer (and Core's workers): fewer machines to wait for.
    for other in ["praxis-lindner", "baeckerei-huber", "kanzlei-weber"] {
        std::fs::remove_file(inventory.join(format!("customers/{other}.toml"))).unwrap();
    }
    // An install long enough for the simulator to stop a reinstalled node
    // before the mock reports it running again (as a real reinstall takes
    // minutes): with 100 ms, a wait could reach the old node and, rightly,
    // refuse its old host key.
    let mock = MockConfig {
        provisioning_delay: Duration::from_millis(100),
        installing_delay: Duration::from_secs(1),
        ip_range: loopback_range(62),
        private_range: "127.78.0.0/16".parse().unwrap(),
        ..MockConfig::default()
    };
    let w = world_with(dir, inventory, 61, 2, mock).await;
    w.edit(
        "customers/stadtwerke-nord.toml",
        "tier = \"mesh\"",
        "tier = \"mesh\"\nprivate_network = true",
    );
    w.edit(
        "kiwi.toml",
        "[prices]\n",
        "[prices]\nprivate_networking = \"2.99\"\n",
    );

    let plan = run(w.kiwi(&["plan"])).await;
    let shown = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        shown.contains("add-on private networking, €2.99/month: €11.48/month in all")
            && shown.contains("+ create private network kiwi-stadtwerke-nord")
            && shown.contains("+ add kiwi-stadtwerke-nord-server-01 to private network")
            && shown.contains("of which €14.95 private networking"),
        "{}",
        text(&plan)
    );

    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let instances: Vec<_> = w
        .mock
        .instances()
        .into_iter()
        .filter(|i| i.display_name.starts_with("kiwi-stadtwerke-nord-"))
        .collect();
    assert_eq!(instances.len(), 5);
    let private_of = |name: &str| -> Ipv4Addr {
        let i = instances.iter().find(|i| i.display_name == name).unwrap();
        w.mock
            .private_ip_of(i.instance_id)
            .unwrap_or_else(|| panic!("{name} has no working private address"))
    };
    let server_private = private_of(SERVER);
    let nodes = w.nodes(SERVER, K3S).await;
    for i in &instances {
        let name = &i.display_name;
        let private = private_of(name);
        assert_eq!(private.octets()[..2], [127, 78], "{name}: {private}");
        let config = w
            .sim
            .exec(name, "cat /etc/rancher/k3s/config.yaml")
            .await
            .unwrap();
        assert_eq!(config.code, 0, "{}", config.stderr);
        assert_eq!(
            config_value(&config.stdout, "node-ip"),
            Some(private.to_string()),
            "{name}:\n{}",
            config.stdout
        );
        assert_eq!(
            config_value(&config.stdout, "node-external-ip"),
            Some(i.ipv4.to_string()),
            "{name}"
        );
        if name != SERVER {
            assert_eq!(
                config_value(&config.stdout, "server"),
                Some(format!("https://{server_private}:6443")),
                "{name} did not join over the private network"
            );
        }
        let node = nodes
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} not joined"));
        assert!(ready(node), "{name} is not Ready");
        let internal = node["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .unwrap()
            .to_string();
        assert_eq!(internal, private.to_string(), "{name}");
    }
    // Nothing left to do.
    let again = run(w.kiwi(&["plan", "--detailed-exitcode"])).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}
