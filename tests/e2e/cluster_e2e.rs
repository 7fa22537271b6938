//! Clusters end to end: the real `kiwi-infra` binary against the Contabo mock
//! with simulated nodes (real SSH, a filesystem per node, stand-ins for k3s,
//! kubeadm and kubectl). One apply of the example inventory must leave every
//! cluster's nodes Ready with the right labels and taints; a label change in
//! the inventory must become exactly that label change; a second apply must
//! change nothing. Needs root (mount namespaces, port 22 on loopback).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use crate::apply_support::{run, slot_names, text};
use crate::cluster_support::{assert_ready_with_class, label, ready, world, World, K3S, KUBEADM};
use serde_json::Value;

/// Everything secret this run used: API credentials, the k3s tokens (read
/// from the servers), and every node's host private key (from the user data
/// the mock received). None may appear in `out`.
async fn assert_no_secret_in(w: &World, out: &std::process::Output) {
    let c = w.mock.credentials();
    let mut secrets = vec![c.client_secret, c.password];
    for server in [
        "kiwi-stadtwerke-nord-server-01",
        "kiwi-praxis-lindner-server-01",
    ] {
        for file in ["token", "agent-token"] {
            let read = w
                .sim
                .exec(server, &format!("cat /var/lib/rancher/k3s/server/{file}"))
                .await
                .unwrap();
            let token = read.stdout.trim().to_string();
            assert!(token.starts_with("K10"), "{server} {file}: {token}");
            // The whole token and its password part.
            secrets.push(token.rsplit(':').next().unwrap().to_string());
            secrets.push(token);
        }
    }
    for instance in w.mock.instances() {
        let user_data = instance.user_data.unwrap_or_default();
        let key: Vec<&str> = user_data
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.contains("BEGIN OPENSSH PRIVATE KEY"))
            .skip(1)
            .take_while(|l| !l.contains("END OPENSSH PRIVATE KEY"))
            .collect();
        assert!(!key.is_empty(), "{} has a host key", instance.display_name);
        secrets.extend(key.iter().map(|l| l.to_string()));
    }
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.len() > 10_000, "trace logging printed little");
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !printed.contains(secret.as_str()),
            "a secret was printed: {secret:.12}…"
        );
    }
    let journal = std::fs::read_to_string(w.inventory.join(".kiwi/orders.jsonl")).unwrap();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !journal.contains(secret.as_str()),
            "a secret is in the journal"
        );
    }
}

fn taints(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    format!(
                        "{}={}:{}",
                        t["key"].as_str().unwrap(),
                        t["value"].as_str().unwrap_or(""),
                        t["effect"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_builds_every_cluster_and_keeps_labels_true() {
    let w = world(35, 45, 2).await;

    let mut first = w.kiwi(&["-vvv", "apply", "--auto-approve"]);
    first.env("RUST_LOG", "trace");
    let out = run(first).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_secret_in(&w, &out).await;

    // Every node of every cluster is Ready with its class and labels.
    let expected = slot_names();
    let mesh = w.nodes("kiwi-stadtwerke-nord-server-01", K3S).await;
    let fleet = w.nodes("kiwi-praxis-lindner-server-01", K3S).await;
    let core = w.nodes("kiwi-core-cp-01", KUBEADM).await;
    for slot in &expected {
        let (nodes, tier) = if slot.starts_with("kiwi-stadtwerke-nord-") {
            (&mesh, "mesh")
        } else if slot.starts_with("kiwi-praxis-lindner-") {
            (&fleet, "fleet")
        } else {
            (&core, "core")
        };
        let node = nodes
            .get(slot)
            .unwrap_or_else(|| panic!("{slot} is not a node; nodes: {:?}", nodes.keys()));
        assert_ready_with_class(slot, node);
        assert_eq!(label(node, "kiwistack.io/tier"), Some(tier), "{slot}");
        if slot.contains("-realtime-") {
            assert_eq!(label(node, "workload.kiwistack.io/realtime"), Some("true"));
            assert!(
                taints(node).contains(&"workload.kiwistack.io/realtime=true:NoSchedule".into()),
                "{slot}: {:?}",
                taints(node)
            );
        }
    }
    assert_eq!(mesh.len(), 5, "3 servers and 2 agents: {:?}", mesh.keys());
    let replacement = &core["kiwi-core-cp-03"];
    assert!(
        ready(replacement),
        "the replacement control-plane node joined"
    );
    assert_eq!(label(replacement, "kiwistack.io/cluster"), Some("core"));
    assert!(
        text(&out).contains("kiwi-core-cp-03 joined the cluster as control-plane node"),
        "{}",
        text(&out)
    );
    assert_eq!(
        core.len(),
        3 + 5,
        "control plane and workers: {:?}",
        core.keys()
    );

    // Each node answers with its pinned key and is listed once.
    let known = std::fs::read_to_string(w.inventory.join("known_hosts")).unwrap();
    for slot in &expected {
        let lines = known
            .lines()
            .filter(|l| l.starts_with(&format!("{slot} ")))
            .count();
        assert_eq!(lines, 1, "{slot} in known_hosts:\n{known}");
    }

    // Nothing is left to do.
    let plan = run(w.kiwi(&["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // A label changed in the inventory is exactly one label change.
    let customer = w.inventory.join("customers/stadtwerke-nord.toml");
    let original = std::fs::read_to_string(&customer).unwrap();
    let old_labels = r#"labels = { "workload.kiwistack.io/realtime" = "true" }"#;
    assert!(original.contains(old_labels), "{original}");
    let changed = original.replacen(
        old_labels,
        r#"labels = { "workload.kiwistack.io/realtime" = "true", "team.kiwistack.io/owner" = "rtc" }"#,
        1,
    );
    std::fs::write(&customer, changed).unwrap();
    let plan = run(w.kiwi(&["plan", "--json"])).await;
    assert!(plan.status.success(), "{}", text(&plan));
    let json: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let kinds: Vec<(String, String)> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().into(),
                s["node"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    // The label, then the record of kiwi-infra's labels on that node.
    assert_eq!(
        kinds,
        [
            (
                "set_label".to_string(),
                "kiwi-stadtwerke-nord-realtime-01".to_string()
            ),
            (
                "record_labels".to_string(),
                "kiwi-stadtwerke-nord-realtime-01".to_string()
            )
        ],
        "{}",
        text(&plan)
    );
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mesh_after = w.nodes("kiwi-stadtwerke-nord-server-01", K3S).await;
    let node = &mesh_after["kiwi-stadtwerke-nord-realtime-01"];
    assert_eq!(label(node, "team.kiwistack.io/owner"), Some("rtc"));
    let config = w
        .sim
        .exec(
            "kiwi-stadtwerke-nord-realtime-01",
            "cat /etc/rancher/k3s/config.yaml",
        )
        .await
        .unwrap();
    assert!(
        config.stdout.contains("team.kiwistack.io/owner=rtc"),
        "the k3s config keeps the label for restarts"
    );
    for (name, before) in &mesh {
        if name != "kiwi-stadtwerke-nord-realtime-01" {
            assert_eq!(
                before["metadata"]["labels"], mesh_after[name]["metadata"]["labels"],
                "{name} was not touched"
            );
        }
    }

    // A second apply changes nothing.
    let again = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("No changes"),
        "{}",
        text(&again)
    );
    assert_eq!(w.mock.stats().instances_created as usize, expected.len());

    // A pool label the inventory drops is removed, from the node and from
    // its k3s config; a label another tool set is left alone.
    std::fs::write(&customer, &original).unwrap();
    let other = w
        .sim
        .exec(
            "kiwi-stadtwerke-nord-server-01",
            "sudo k3s kubectl label node kiwi-stadtwerke-nord-realtime-01 storage.example.com/disk=ssd",
        )
        .await
        .unwrap();
    assert_eq!(other.code, 0, "{other:?}");
    let plan = run(w.kiwi(&["plan"])).await;
    let shown = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        shown.contains("- label kiwi-stadtwerke-nord-realtime-01: team.kiwistack.io/owner"),
        "{}",
        text(&plan)
    );
    assert!(!shown.contains("storage.example.com/disk"), "{shown}");
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mesh_after = w.nodes("kiwi-stadtwerke-nord-server-01", K3S).await;
    let node = &mesh_after["kiwi-stadtwerke-nord-realtime-01"];
    assert_eq!(label(node, "team.kiwistack.io/owner"), None);
    assert_eq!(label(node, "storage.example.com/disk"), Some("ssd"));
    let config = w
        .sim
        .exec(
            "kiwi-stadtwerke-nord-realtime-01",
            "cat /etc/rancher/k3s/config.yaml",
        )
        .await
        .unwrap();
    assert!(
        !config.stdout.contains("team.kiwistack.io/owner"),
        "a restart does not bring the label back: {}",
        config.stdout
    );
    let plan = run(w.kiwi(&["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // Status shows every node Ready; kubeconfig points at the cluster.
    let status = run(w.kiwi(&["status"])).await;
    assert!(status.status.success(), "{}", text(&status));
    let shown = String::from_utf8_lossy(&status.stdout);
    // One row per slot, each Ready (the Core control plane, listed below
    // its cluster's table, is not counted).
    let ready_slots = shown
        .lines()
        .filter(|l| {
            expected.iter().any(|s| l.starts_with(&format!("{s} "))) && l.contains(" Ready ")
        })
        .count();
    assert_eq!(ready_slots, expected.len(), "{shown}");
    let kubeconfig = w.inventory.join("../kubeconfig");
    // The temporary path kiwi-infra once wrote through, planted as a link
    // to a file another user could read: the credentials must not go there.
    let stolen = w.inventory.join("../stolen");
    std::fs::write(&stolen, "").unwrap();
    std::os::unix::fs::symlink(&stolen, kubeconfig.with_extension("kiwi-tmp")).unwrap();
    let out = run(w.kiwi(&[
        "kubeconfig",
        "stadtwerke-nord",
        "--out",
        kubeconfig.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&stolen).unwrap(),
        "",
        "written through a link"
    );
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        written.contains("current-context: stadtwerke-nord"),
        "{written}"
    );
    let server_ip = w
        .mock
        .instances()
        .into_iter()
        .find(|i| i.display_name == "kiwi-stadtwerke-nord-server-01")
        .unwrap()
        .ipv4;
    assert!(
        written.contains(&format!("https://{server_ip}:6443")),
        "{written}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_presenting_another_host_key_is_refused_and_nothing_runs_on_it() {
    let w = world(36, 46, 2).await;
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Record a different key for one agent, as if the node had been
    // replaced behind kiwi-infra's back (or someone is in the middle).
    let victim = "kiwi-praxis-lindner-general-01";
    let other = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(w.inventory.join("../impostor"))
        .status()
        .unwrap();
    assert!(other.success());
    let impostor = std::fs::read_to_string(w.inventory.join("../impostor.pub")).unwrap();
    let impostor = impostor
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known = w.inventory.join("known_hosts");
    let edited: String = std::fs::read_to_string(&known)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{victim} ")) {
                format!("{victim} {impostor}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&known, edited).unwrap();
    let customer = w.inventory.join("customers/praxis-lindner.toml");
    let original = std::fs::read_to_string(&customer).unwrap();
    assert!(original.contains("[pools.general]"), "{original}");
    std::fs::write(
        &customer,
        original.replacen(
            "[pools.general]",
            "[pools.general]\nlabels = { \"x.kiwistack.io/y\" = \"z\" }",
            1,
        ),
    )
    .unwrap();
    let before = w
        .sim
        .exec(victim, "cat /etc/rancher/k3s/config.yaml")
        .await
        .unwrap();

    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;

    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("presented a host key that does not match"),
        "{shown}"
    );
    let after = w
        .sim
        .exec(victim, "cat /etc/rancher/k3s/config.yaml")
        .await
        .unwrap();
    assert_eq!(
        before.stdout, after.stdout,
        "nothing was written on the refused node"
    );
    let nodes = w.nodes("kiwi-praxis-lindner-server-01", K3S).await;
    assert_eq!(
        label(&nodes[victim], "x.kiwistack.io/y"),
        None,
        "not relabelled"
    );
    w.sim.shutdown().await;
}
