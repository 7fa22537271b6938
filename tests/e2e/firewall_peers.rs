//! The peer set kept true in the sandbox (issue 18, part B): the real
//! `kiwi-infra` binary against the Contabo mock with simulated nodes, whose
//! stand-in `nft` keeps each node's ruleset as what the real nft accepted
//! (never in the host). Every node ends with a ruleset `nft -c` accepts and
//! a peer set equal to its cluster's members; growing and shrinking the
//! cluster updates every member's set; a peer added by hand shows in `plan`
//! and `status` and is removed by `apply`. Needs root.
//!
//! Addresses: control plane on 127.0.39.x, instances on 127.0.49.x.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use crate::apply_support::{run, text};
use crate::cluster_support::{world, World};

const MESH: &str = "stadtwerke-nord";
const SERVER: &str = "kiwi-stadtwerke-nord-server-01";
const SERVERS: &str = "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 3";
const GENERAL: &str = "[pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 1";
const REALTIME: &str = "[pools.realtime]\nclass = \"vds\"\nproduct = \"V8\"\ncount = 1";
const CORE_GENERAL: &str = "[core.pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 3";
const CORE_REALTIME: &str = "[core.pools.realtime]\nclass = \"vds\"\nproduct = \"V9\"\ncount = 2";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Mesh cluster's machines at the mock that are not cancelled: name →
/// address.
fn members(w: &World) -> Vec<(String, Ipv4Addr)> {
    let mut m: Vec<(String, Ipv4Addr)> = w
        .mock
        .instances()
        .into_iter()
        .filter(|i| i.display_name.starts_with("kiwi-stadtwerke-nord-") && i.cancel_date.is_none())
        .map(|i| (i.display_name, i.ipv4))
        .collect();
    m.sort();
    m
}

/// The node's `peers4`, as its (stand-in) nft lists it.
async fn peers(w: &World, node: &str) -> BTreeSet<Ipv4Addr> {
    let out = w
        .sim
        .exec(node, "sudo nft -j list set inet kiwi peers4")
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{node}: {}", out.stderr);
    let listing: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("set"))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .map(|e| e.as_str().unwrap().parse().unwrap())
        .collect()
}

/// Every member admits exactly the members, and the ruleset the node holds
/// (listed back by the real nft) passes the real `nft -c` in a network
/// namespace of this test's own.
async fn assert_true_firewalls(w: &World) {
    // The nodes share the host's network namespace: none of their rules may
    // ever land there.
    let host = Command::new("/usr/sbin/nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host.stdout).contains("inet kiwi"),
        "a node's ruleset was loaded into the host"
    );
    let members = members(w);
    let addresses: BTreeSet<Ipv4Addr> = members.iter().map(|(_, ip)| *ip).collect();
    for (node, _) in &members {
        assert_eq!(peers(w, node).await, addresses, "{node}'s peer set");
        let listed = w.sim.exec(node, "sudo nft list ruleset").await.unwrap();
        assert_eq!(listed.code, 0, "{node}: {}", listed.stderr);
        assert!(
            listed.stdout.contains("table inet kiwi"),
            "{}",
            listed.stdout
        );
        assert!(listed.stdout.contains("policy drop"), "{}", listed.stdout);
        nft_check(&listed.stdout);
        let file = w
            .sim
            .exec(node, "sudo cat /etc/nftables.conf")
            .await
            .unwrap();
        nft_check(&file.stdout);
    }
}

fn nft_check(ruleset: &str) {
    let mut child = Command::new("unshare")
        .args(["-n", "--", "/usr/sbin/nft", "-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ruleset.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -c refuses:\n{}\n{ruleset}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_members_peer_set_follows_the_cluster_and_a_hand_edit_is_undone() {
    let w = world(39, 49, 3).await;
    // One Mesh server and one agent; no Core workers, no Fleet customer:
    // a short build.
    w.edit("kiwi.toml", "protected = true\n", "protected = false\n");
    w.edit(
        "kiwi.toml",
        CORE_GENERAL,
        &CORE_GENERAL.replace("count = 3", "count = 0"),
    );
    w.edit(
        "kiwi.toml",
        CORE_REALTIME,
        &CORE_REALTIME.replace("count = 2", "count = 0"),
    );
    let mesh_file = format!("customers/{MESH}.toml");
    w.edit(
        &mesh_file,
        SERVERS,
        &SERVERS.replace("count = 3", "count = 1"),
    );
    w.edit(
        &mesh_file,
        REALTIME,
        &REALTIME.replace("count = 1", "count = 0"),
    );
    std::fs::remove_file(w.inventory.join("customers/praxis-lindner.toml")).unwrap();

    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("Fresh plan: nothing left to do."),
        "{}",
        text(&out)
    );
    assert_eq!(members(&w).len(), 2);
    assert_true_firewalls(&w).await;

    // Grow: the new agent is admitted by every member (and by itself).
    w.edit(
        &mesh_file,
        GENERAL,
        &GENERAL.replace("count = 1", "count = 2"),
    );
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("Fresh plan: nothing left to do."),
        "{}",
        text(&out)
    );
    assert_eq!(members(&w).len(), 3);
    assert_true_firewalls(&w).await;

    // A peer added by hand on a node: plan and status name it, apply
    // removes it.
    let edit = w
        .sim
        .exec(
            SERVER,
            "sudo nft add element inet kiwi peers4 '{ 127.9.9.9 }'",
        )
        .await
        .unwrap();
    assert_eq!(edit.code, 0, "{}", edit.stderr);
    let plan = run(w.kiwi(&["plan"])).await;
    assert!(plan.status.success(), "{}", text(&plan));
    let shown = stdout(&plan);
    assert!(shown.contains(&format!("~ firewall {SERVER}")), "{shown}");
    assert!(
        shown.contains("127.9.9.9 admitted but not a member"),
        "{shown}"
    );
    let status = run(w.kiwi(&["status"])).await;
    assert!(status.status.success(), "{}", text(&status));
    let shown = stdout(&status);
    let row = shown
        .lines()
        .find(|l| l.starts_with(SERVER))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(row.contains("drift"), "{row}");
    assert!(row.contains("127.9.9.9 admitted but not a member"), "{row}");
    let agent = shown
        .lines()
        .find(|l| l.starts_with("kiwi-stadtwerke-nord-general-01"))
        .unwrap();
    assert!(agent.contains(" ok "), "{agent}");
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!peers(&w, SERVER)
        .await
        .contains(&Ipv4Addr::new(127, 9, 9, 9)));
    assert_true_firewalls(&w).await;

    // Shrink: the removed agent leaves every remaining member's set.
    w.edit(
        &mesh_file,
        &GENERAL.replace("count = 1", "count = 2"),
        GENERAL,
    );
    let out = run(w.kiwi(&["apply", "--auto-approve", "--allow-destroy"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("Fresh plan: nothing left to do."),
        "{}",
        text(&out)
    );
    assert_eq!(members(&w).len(), 2);
    assert_true_firewalls(&w).await;
}
