//! Shrinking end to end: the real `kiwi-infra` binary against the Contabo
//! mock with simulated nodes. Lowering a pool's count removes the
//! highest-numbered nodes — drained, deleted from the cluster, their
//! instances cancelled — only with `--allow-destroy`; without it nothing
//! destructive happens and apply says why. Shrinking k3s servers below etcd
//! quorum, and anything destructive in a protected cluster, is refused
//! whatever the flags. Needs root (mount namespaces, port 22 on loopback).
//!
//! Addresses: control plane on 127.0.(33+lane).x, instances on
//! 127.0.(43+lane).x, apart from `cluster_e2e`'s.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Output;

use crate::apply_support::{run, text};
use crate::cluster_support::{ready, world, World, K3S, KUBEADM};
use serde_json::Value;

const MESH: &str = "stadtwerke-nord";
const MESH_SERVER: &str = "kiwi-stadtwerke-nord-server-01";
const FLEET_SERVER: &str = "kiwi-praxis-lindner-server-01";

/// Display name → cancel date of every instance at the mock.
fn cancel_dates(w: &World) -> BTreeMap<String, Option<chrono::NaiveDate>> {
    w.mock
        .instances()
        .into_iter()
        .map(|i| (i.display_name, i.cancel_date))
        .collect()
}

async fn unit_state(w: &World, node: &str, unit: &str) -> String {
    let out = w
        .sim
        .exec(node, &format!("systemctl is-active {unit}"))
        .await
        .unwrap();
    out.stdout.trim().to_string()
}

/// What must not change on a node that stays: its identity, its labels and
/// taints, and that it accepts pods.
fn fingerprint(node: &Value) -> Value {
    serde_json::json!({
        "uid": node["metadata"]["uid"],
        "labels": node["metadata"]["labels"],
        "taints": node["spec"]["taints"],
        "unschedulable": node["spec"]["unschedulable"].as_bool().unwrap_or(false),
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const MESH_GENERAL: &str = "[pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 1";
const MESH_REALTIME: &str = "[pools.realtime]\nclass = \"vds\"\nproduct = \"V8\"\ncount = 1";
const CORE_GENERAL: &str = "[core.pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 3";
const CORE_REALTIME: &str = "[core.pools.realtime]\nclass = \"vds\"\nproduct = \"V9\"\ncount = 2";
const SERVERS: &str = "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_counts_removes_the_highest_nodes_only_with_allow_destroy() {
    let w = world(33, 43, 3).await;
    // Core unprotected with 3 general workers, Mesh with 3 general agents;
    // no realtime pools and no Fleet customer, to keep the build short.
    w.edit("kiwi.toml", "protected = true\n", "protected = false\n");
    w.edit(
        "kiwi.toml",
        CORE_REALTIME,
        &CORE_REALTIME.replace("count = 2", "count = 0"),
    );
    let mesh_file = format!("customers/{MESH}.toml");
    w.edit(
        &mesh_file,
        MESH_GENERAL,
        &MESH_GENERAL.replace("count = 1", "count = 3"),
    );
    w.edit(
        &mesh_file,
        MESH_REALTIME,
        &MESH_REALTIME.replace("count = 1", "count = 0"),
    );
    std::fs::remove_file(w.inventory.join("customers/praxis-lindner.toml")).unwrap();
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mesh_before = w.nodes(MESH_SERVER, K3S).await;
    let core_before = w.nodes("kiwi-core-cp-01", KUBEADM).await;
    assert_eq!(mesh_before.len(), 6, "{:?}", mesh_before.keys());
    assert_eq!(core_before.len(), 3 + 3, "{:?}", core_before.keys());

    // Mesh agents 3 → 1, Core VPS workers 3 → 2.
    w.edit(
        &mesh_file,
        &MESH_GENERAL.replace("count = 1", "count = 3"),
        MESH_GENERAL,
    );
    w.edit(
        "kiwi.toml",
        CORE_GENERAL,
        &CORE_GENERAL.replace("count = 3", "count = 2"),
    );
    let removed = [
        "kiwi-stadtwerke-nord-general-03",
        "kiwi-stadtwerke-nord-general-02",
        "kiwi-core-general-03",
    ];

    let plan = run(w.kiwi(&["plan"])).await;
    assert!(plan.status.success(), "{}", text(&plan));
    let shown = stdout(&plan);
    for node in removed {
        assert!(shown.contains(&format!("- drain {node}")), "{shown}");
        assert!(shown.contains(&format!("- delete node {node}")), "{shown}");
        assert!(shown.contains(&format!("- cancel {node}")), "{shown}");
    }
    assert!(
        shown.contains("-€15.49/month; runs and is billed until the end of its contract period"),
        "{shown}"
    );
    assert!(
        shown.contains("3 to cancel (-€46.47/month)"),
        "the monthly saving: {shown}"
    );
    assert!(
        shown.contains("[destructive, needs --allow-destroy]"),
        "{shown}"
    );

    // Without --allow-destroy: nothing destructive, exit 2, and why.
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("9 step(s) not carried out: needs --allow-destroy"),
        "{shown}"
    );
    assert!(shown.contains("--allow-destroy`"), "{shown}");
    assert!(
        cancel_dates(&w).values().all(Option::is_none),
        "nothing was cancelled: {:?}",
        cancel_dates(&w)
    );
    let mesh_held = w.nodes(MESH_SERVER, K3S).await;
    let core_held = w.nodes("kiwi-core-cp-01", KUBEADM).await;
    for (before, after) in [(&mesh_before, &mesh_held), (&core_before, &core_held)] {
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
        for (name, node) in before {
            assert_eq!(
                fingerprint(node),
                fingerprint(&after[name]),
                "{name} untouched"
            );
        }
    }

    // With it: drained, deleted, cancelled; the others untouched.
    let out = run(w.kiwi(&["apply", "--auto-approve", "--allow-destroy"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let dates = cancel_dates(&w);
    for (name, date) in &dates {
        if removed.contains(&name.as_str()) {
            let date = date.unwrap_or_else(|| panic!("{name} is not cancelled"));
            assert!(
                shown.contains(&format!("until {date}")),
                "the summary shows the date the API returned for {name}: {shown}"
            );
        } else {
            assert_eq!(*date, None, "{name} was cancelled");
        }
    }
    assert!(shown.contains("Fresh plan: nothing left to do."), "{shown}");
    let mesh_after = w.nodes(MESH_SERVER, K3S).await;
    let core_after = w.nodes("kiwi-core-cp-01", KUBEADM).await;
    for (before, after) in [(&mesh_before, &mesh_after), (&core_before, &core_after)] {
        for (name, node) in before {
            if removed.contains(&name.as_str()) {
                assert!(!after.contains_key(name), "{name} is still a node");
                continue;
            }
            let now = after
                .get(name)
                .unwrap_or_else(|| panic!("{name} was removed"));
            assert!(ready(now), "{name} is not Ready");
            assert_eq!(fingerprint(node), fingerprint(now), "{name} untouched");
        }
    }
    assert_eq!(mesh_after.len(), 4);
    assert_eq!(core_after.len(), 3 + 2);
    // The removed machines run until their cancel date but never come back
    // into the cluster.
    for node in &removed[..2] {
        assert_eq!(
            unit_state(&w, node, "k3s-agent").await,
            "inactive",
            "{node}"
        );
    }
    assert_eq!(
        unit_state(&w, "kiwi-core-general-03", "kubelet").await,
        "inactive"
    );

    // A new plan is empty; the cancelled instances show until they are gone.
    let plan = run(w.kiwi(&["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let shown = stdout(&plan);
    for node in removed {
        assert!(
            shown.contains(&format!("{node}: instance")) && shown.contains("is cancelled"),
            "{shown}"
        );
    }
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_quorum_and_protected_shrinks_are_refused_whatever_the_flags() {
    let w = world(34, 44, 3).await;
    // No Core workers and no realtime pools, to keep the build short. Core
    // and praxis-lindner (Fleet) are protected in the example inventory.
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
    for customer in [MESH, "praxis-lindner"] {
        let file = format!("customers/{customer}.toml");
        w.edit(
            &file,
            MESH_REALTIME,
            &MESH_REALTIME.replace("count = 1", "count = 0"),
        );
    }
    let out = run(w.kiwi(&["apply", "--auto-approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mesh_before = w.nodes(MESH_SERVER, K3S).await;
    let fleet_before = w.nodes(FLEET_SERVER, K3S).await;
    assert_eq!(mesh_before.len(), 4, "{:?}", mesh_before.keys());
    assert_eq!(fleet_before.len(), 4, "{:?}", fleet_before.keys());

    // Mesh servers 3 → 1 (below etcd quorum); Fleet agents 1 → 0 (protected).
    w.edit(
        &format!("customers/{MESH}.toml"),
        SERVERS,
        &SERVERS.replace("count = 3", "count = 1"),
    );
    w.edit(
        "customers/praxis-lindner.toml",
        "[pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 1",
        "[pools.general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 0",
    );

    let plan = run(w.kiwi(&["plan", "--allow-destroy"])).await;
    assert!(plan.status.success(), "{}", text(&plan));
    let shown = stdout(&plan);
    assert!(
        shown.contains(
            "cluster stadtwerke-nord: going from 3 to 1 k3s server(s) would drop below etcd \
             quorum (2 of 3); refused"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("cluster praxis-lindner is protected; not planned: remove kiwi-praxis-lindner-general-01"),
        "{shown}"
    );
    assert!(!shown.contains("- drain"), "{shown}");
    assert!(!shown.contains("- cancel"), "{shown}");

    let out = run(w.kiwi(&["apply", "--auto-approve", "--allow-destroy"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let shown = stdout(&out);
    assert!(shown.contains("Nothing was changed"), "{shown}");
    assert!(shown.contains("would drop below etcd quorum"), "{shown}");
    assert!(shown.contains("is protected"), "{shown}");
    assert!(
        cancel_dates(&w).values().all(Option::is_none),
        "nothing was cancelled: {:?}",
        cancel_dates(&w)
    );
    for (control, before) in [(MESH_SERVER, &mesh_before), (FLEET_SERVER, &fleet_before)] {
        let after = w.nodes(control, K3S).await;
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
        for (name, node) in before {
            assert!(ready(&after[name]), "{name} is not Ready");
            assert_eq!(
                fingerprint(node),
                fingerprint(&after[name]),
                "{name} untouched"
            );
        }
    }
    w.sim.shutdown().await;
}
