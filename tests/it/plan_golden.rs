//! Golden plans: the fixture inventory (`tests/fixtures/plan/inventory`)
//! against observed states of the account and clusters, rendered for people
//! and as JSON. A diff of these snapshots is a review of the plan's behaviour.
#![allow(clippy::unwrap_used)]

use kiwi_infra::inventory::{self, Desired};
use kiwi_infra::plan::{
    self, render_human, render_json, Observed, Plan, PlanOptions, RenderOptions,
};
use std::path::Path;

const FIXTURES: &str = "tests/fixtures/plan";

fn desired() -> Desired {
    inventory::load(&Path::new(FIXTURES).join("inventory")).unwrap()
}

/// The fixture inventory with some text of one file replaced, as an
/// operator's edit would.
fn desired_with(edits: &[(&str, &str, &str)]) -> Desired {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(FIXTURES).join("inventory");
    std::fs::create_dir(dir.path().join("customers")).unwrap();
    for file in ["kiwi.toml", "customers/acme.toml", "customers/shop.toml"] {
        let mut text = std::fs::read_to_string(src.join(file)).unwrap();
        for (f, from, to) in edits {
            if *f == file {
                assert!(text.contains(from), "{file} has no {from:?}");
                text = text.replacen(from, to, 1);
            }
        }
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    inventory::load(dir.path()).unwrap()
}

fn observed(name: &str) -> Observed {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The observed node `name`, to change for one test.
fn node_mut<'a>(observed: &'a mut Observed, name: &str) -> &'a mut plan::Node {
    observed
        .clusters
        .values_mut()
        .flatten()
        .flat_map(|o| o.nodes.iter_mut())
        .find(|n| n.name.0 == name)
        .unwrap()
}

fn human(plan: &Plan) -> String {
    render_human(
        plan,
        &RenderOptions {
            color: false,
            allow_destroy: false,
        },
    )
}

fn ids(plan: &Plan, prefix: &str) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| s.id.0.clone())
        .filter(|id| id.starts_with(prefix))
        .collect()
}

fn deps(plan: &Plan, id: &str) -> Vec<String> {
    let step = plan
        .steps
        .iter()
        .find(|s| s.id.0 == id)
        .unwrap_or_else(|| panic!("no step {id}"));
    step.depends_on.iter().map(|d| d.0.clone()).collect()
}

#[test]
fn empty_account_orders_and_bootstraps_everything() {
    let plan = plan::plan(
        &desired(),
        &observed("empty_account"),
        &PlanOptions::default(),
    );
    assert_eq!(
        plan::summary_line(&plan.summary),
        "Plan: 8 to order (+€127.74/month), 8 to bootstrap, 0 labels to change, 8 firewalls to \
         set, 0 to cancel."
    );
    // Orders wait for the SSH key secret; tags wait for their order and tag.
    assert_eq!(
        deps(&plan, "order:kiwi-acme-server-01"),
        ["secret:kiwi-operator-ssh-5330dd7cf30c"]
    );
    assert_eq!(
        deps(&plan, "assign:kiwi-cluster-acme:kiwi-acme-server-01"),
        ["order:kiwi-acme-server-01", "tag:kiwi-cluster-acme"]
    );
    // The ownership tag comes last: its presence means "fully tagged".
    assert_eq!(
        deps(&plan, "assign:kiwi-managed:kiwi-acme-server-01"),
        [
            "order:kiwi-acme-server-01",
            "tag:kiwi-managed",
            "assign:kiwi-cluster-acme:kiwi-acme-server-01",
            "assign:kiwi-class-vps:kiwi-acme-server-01"
        ]
    );
    // Each node step waits for its machine to run (the wait follows the
    // order); the first server initialises the cluster; the others join
    // one after the other; agents only need the bootstrap.
    assert_eq!(
        deps(&plan, "wait:kiwi-acme-server-01"),
        ["order:kiwi-acme-server-01"]
    );
    // A new k3s cluster's members are its ordered slots: every node step
    // also waits until every node's firewall admits them all.
    let acme_firewalls = [
        "firewall:kiwi-acme-server-01",
        "firewall:kiwi-acme-server-02",
        "firewall:kiwi-acme-server-03",
        "firewall:kiwi-acme-general-01",
        "firewall:kiwi-acme-realtime-01",
    ];
    let with_firewalls = |first: &[&str]| -> Vec<String> {
        first
            .iter()
            .chain(&acme_firewalls)
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(
        deps(&plan, "bootstrap:kiwi-acme-server-01"),
        with_firewalls(&["wait:kiwi-acme-server-01"])
    );
    assert_eq!(
        deps(&plan, "join:kiwi-acme-server-02"),
        with_firewalls(&["wait:kiwi-acme-server-02", "bootstrap:kiwi-acme-server-01"])
    );
    assert_eq!(
        deps(&plan, "join:kiwi-acme-server-03"),
        with_firewalls(&["wait:kiwi-acme-server-03", "join:kiwi-acme-server-02"])
    );
    assert_eq!(
        deps(&plan, "join:kiwi-acme-general-01"),
        with_firewalls(&["wait:kiwi-acme-general-01", "bootstrap:kiwi-acme-server-01"])
    );
    // Core is observed: no worker joins before every new worker's firewall
    // admits it (each names the others by slot until their waits end).
    assert_eq!(
        deps(&plan, "join:kiwi-core-general-01"),
        [
            "wait:kiwi-core-general-01",
            "firewall:kiwi-core-general-01",
            "firewall:kiwi-core-general-02",
            "firewall:kiwi-core-realtime-01"
        ]
    );
    assert_eq!(
        deps(&plan, "firewall:kiwi-core-general-01"),
        [
            "wait:kiwi-core-general-01",
            "wait:kiwi-core-general-02",
            "wait:kiwi-core-realtime-01"
        ]
    );
    insta::assert_snapshot!("empty_account", human(&plan));
    insta::assert_json_snapshot!("empty_account_json", render_json(&plan));
}

#[test]
fn an_account_in_sync_needs_no_changes() {
    let plan = plan::plan(&desired(), &observed("in_sync"), &PlanOptions::default());
    assert!(
        plan.is_empty() && plan.warnings.is_empty(),
        "{}",
        human(&plan)
    );
    assert_eq!(human(&plan), "No changes. The inventory matches Contabo.\n");
}

#[test]
fn a_partial_order_is_completed_without_ordering_twice() {
    let plan = plan::plan(
        &desired(),
        &observed("partial_order"),
        &PlanOptions::default(),
    );
    assert_eq!(
        ids(&plan, "order:"),
        [
            "order:kiwi-core-realtime-01",
            "order:kiwi-acme-server-02",
            "order:kiwi-acme-server-03",
            "order:kiwi-acme-general-01",
            "order:kiwi-acme-realtime-01"
        ]
    );
    // acme cannot be observed yet, and server-01 exists: the new servers join
    // it rather than bootstrapping a second cluster.
    assert!(ids(&plan, "bootstrap:").is_empty());
    assert_eq!(
        deps(&plan, "join:kiwi-acme-server-03"),
        ["wait:kiwi-acme-server-03", "join:kiwi-acme-server-02"]
    );
    insta::assert_snapshot!("partial_order", human(&plan));
    insta::assert_json_snapshot!("partial_order_json", render_json(&plan));
}

#[test]
fn a_double_order_is_reported_with_ids_and_dates() {
    let plan = plan::plan(
        &desired(),
        &observed("double_order"),
        &PlanOptions::default(),
    );
    assert!(plan.is_empty());
    let text = human(&plan);
    assert!(
        text.contains("201400102 created 2025-03-04 09:12 UTC"),
        "{text}"
    );
    assert!(
        text.contains("201400199 created 2025-03-04 09:16 UTC"),
        "{text}"
    );
    insta::assert_snapshot!("double_order", text);
}

#[test]
fn scaling_up_orders_and_joins_the_new_slots_only() {
    let desired = desired_with(&[
        ("kiwi.toml", "count = 2", "count = 4"),
        (
            "customers/acme.toml",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 2",
        ),
    ]);
    let plan = plan::plan(&desired, &observed("in_sync"), &PlanOptions::default());
    assert_eq!(
        ids(&plan, "order:"),
        [
            "order:kiwi-core-general-03",
            "order:kiwi-core-general-04",
            "order:kiwi-acme-general-02"
        ]
    );
    // The agent joins the existing server; nothing is bootstrapped. (The
    // fixture's servers report no flannel backend, so no firewall is
    // changed: `plan_firewall` covers joins behind firewall steps.)
    assert_eq!(
        deps(&plan, "join:kiwi-acme-general-02"),
        ["wait:kiwi-acme-general-02"]
    );
    insta::assert_snapshot!("scale_up", human(&plan));
    insta::assert_json_snapshot!("scale_up_json", render_json(&plan));
}

#[test]
fn scaling_down_and_removing_a_customer_is_planned_destructive() {
    let desired = desired_with(&[
        ("kiwi.toml", "count = 2", "count = 1"),
        (
            "customers/acme.toml",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 0",
        ),
    ]);
    let plan = plan::plan(&desired, &observed("scale_down"), &PlanOptions::default());
    assert!(plan.steps.iter().all(|s| s.destructive));
    // Removed customer oldco: agents first, highest slot first, the server last.
    assert_eq!(
        ids(&plan, "cancel:"),
        [
            "cancel:201400102",
            "cancel:201400107",
            "cancel:201400303",
            "cancel:201400302",
            "cancel:201400301"
        ]
    );
    let server_drain = deps(&plan, "drain:kiwi-oldco-server-01");
    assert_eq!(server_drain, ["cancel:201400303", "cancel:201400302"]);
    insta::assert_snapshot!("scale_down", human(&plan));
    insta::assert_json_snapshot!("scale_down_json", render_json(&plan));
}

#[test]
fn a_protected_cluster_gets_no_destructive_step() {
    let desired = desired_with(&[
        (
            "customers/acme.toml",
            "tier = \"mesh\"",
            "tier = \"mesh\"\nprotected = true",
        ),
        (
            "customers/acme.toml",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 0",
        ),
    ]);
    let options = PlanOptions {
        adopt: false,
        allow_destroy: true,
    };
    // Before an apply has marked its machines, the plan only marks them
    // (`kiwi-protected`), which destroys nothing.
    let unmarked = plan::plan(&desired, &observed("in_sync"), &options);
    assert!(
        unmarked.steps.iter().all(|s| !s.destructive
            && (s.id.0 == "tag:kiwi-protected"
                || s.id.0.starts_with("assign:kiwi-protected:kiwi-acme-"))),
        "{}",
        human(&unmarked)
    );
    assert!(!unmarked.is_empty());
    // Once marked, as an apply leaves them, nothing at all.
    let mut marked = observed("in_sync");
    marked
        .tags
        .insert("kiwi-protected".into(), plan::TagId(999));
    for i in &mut marked.instances {
        if i.display_name.starts_with("kiwi-acme-") {
            i.tags.insert("kiwi-protected".into());
        }
    }
    let plan = plan::plan(&desired, &marked, &options);
    assert!(plan.is_empty(), "{}", human(&plan));
    insta::assert_snapshot!("protected", human(&plan));
}

#[test]
fn a_machine_marked_protected_keeps_its_protection_when_its_customer_file_goes() {
    let options = PlanOptions {
        adopt: false,
        allow_destroy: true,
    };
    let mut marked = observed("in_sync");
    marked
        .tags
        .insert("kiwi-protected".into(), plan::TagId(999));
    for i in &mut marked.instances {
        if i.display_name.starts_with("kiwi-acme-") {
            i.tags.insert("kiwi-protected".into());
        }
    }
    // acme's file is gone (deleted, or renamed to another customer).
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(FIXTURES).join("inventory");
    std::fs::create_dir(dir.path().join("customers")).unwrap();
    std::fs::copy(src.join("kiwi.toml"), dir.path().join("kiwi.toml")).unwrap();
    std::fs::copy(
        src.join("customers/shop.toml"),
        dir.path().join("customers/shop.toml"),
    )
    .unwrap();
    let desired = inventory::load(dir.path()).unwrap();
    let plan = plan::plan(&desired, &marked, &options);
    assert!(
        !plan.steps.iter().any(|s| s.destructive),
        "{}",
        human(&plan)
    );
    assert!(plan.warnings.iter().any(|w| matches!(
        w,
        plan::Warning::Protected { cluster, .. } if cluster == "acme"
    )));
    // Unprotected in its file (protected = false): the mark is removed
    // first, and only the plan after that can remove anything.
    let unprotected = plan::plan(&self::desired(), &marked, &options);
    assert!(unprotected
        .steps
        .iter()
        .any(|s| matches!(s.kind, plan::StepKind::UnassignTag { .. })));
}

#[test]
fn shrinking_k3s_servers_below_quorum_is_refused_and_the_agents_still_go() {
    let desired = desired_with(&[
        (
            "customers/acme.toml",
            "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 3",
            "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
        ),
        (
            "customers/acme.toml",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
            "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 0",
        ),
    ]);
    let plan = plan::plan(
        &desired,
        &observed("in_sync"),
        &PlanOptions {
            adopt: false,
            allow_destroy: true,
        },
    );
    // 3 → 1 would leave one etcd member of three: no server step at all.
    assert!(
        plan.steps.iter().all(|s| !s.id.0.contains("server")),
        "{}",
        human(&plan)
    );
    assert_eq!(ids(&plan, "cancel:"), ["cancel:201400107"]);
    assert!(
        plan.warnings.iter().any(|w| matches!(
            w,
            plan::Warning::BelowQuorum { cluster, servers: 3, wanted: 1, quorum: 2, skipped }
                if cluster == "acme" && skipped.len() == 2
        )),
        "{:?}",
        plan.warnings
    );
    insta::assert_snapshot!("below_quorum", human(&plan));
}

#[test]
fn label_and_taint_drift_is_corrected() {
    let plan = plan::plan(
        &desired(),
        &observed("label_drift"),
        &PlanOptions::default(),
    );
    let text = human(&plan);
    // Labels other software set, and system taints, are left alone.
    assert!(!text.contains("team.example.com/owner"), "{text}");
    assert!(!text.contains("node.kubernetes.io/unreachable"), "{text}");
    insta::assert_snapshot!("label_drift", text);
    insta::assert_json_snapshot!("label_drift_json", render_json(&plan));
}

#[test]
fn a_pool_label_the_inventory_dropped_is_removed_and_other_softwares_labels_stay() {
    // kiwi-acme-general-01 carries `workload.kiwistack.io/storage`, which
    // kiwi-infra set and recorded in its annotation before the inventory
    // dropped it, and `storage.example.com/disk`, which another tool set.
    let plan = plan::plan(
        &desired(),
        &observed("label_drift"),
        &PlanOptions::default(),
    );
    let text = human(&plan);
    assert!(
        text.contains("- label kiwi-acme-general-01: workload.kiwistack.io/storage"),
        "{text}"
    );
    assert!(!text.contains("storage.example.com/disk"), "{text}");
    assert!(!text.contains("No changes"), "{text}");
    let record = plan
        .steps
        .iter()
        .find(|s| s.id.0 == "record-labels:kiwi-acme-general-01")
        .expect("the record is updated");
    assert!(
        record
            .depends_on
            .iter()
            .any(|d| d.0 == "unlabel:kiwi-acme-general-01:workload.kiwistack.io/storage"),
        "the record forgets the label only after it is removed: {record:?}"
    );
}

#[test]
fn an_untagged_instance_with_a_slot_name_is_only_adopted_on_request() {
    let observed = observed("adoption");
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    assert!(plan.is_empty());
    insta::assert_snapshot!("adoption_without_flag", human(&plan));

    let plan = plan::plan(
        &desired(),
        &observed,
        &PlanOptions {
            adopt: true,
            allow_destroy: false,
        },
    );
    assert_eq!(plan.summary.instances_to_tag, 1);
    assert!(ids(&plan, "order:").is_empty());
    insta::assert_snapshot!("adoption_with_flag", human(&plan));
}

#[test]
fn an_order_the_journal_recorded_is_tagged_never_offered_for_adoption() {
    // A run bought kiwi-core-general-02 and was stopped (429s, a crash)
    // before its tags were assigned: the journal holds its id.
    let mut observed = observed("adoption");
    let untagged = observed
        .instances
        .iter()
        .find(|i| i.display_name == "kiwi-core-general-02")
        .unwrap()
        .id;
    observed
        .journal_placed
        .insert("kiwi-core-general-02".into(), untagged);
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    let text = human(&plan);
    assert!(!text.contains("adopt"), "{text}");
    assert_eq!(plan.summary.instances_to_tag, 1, "{text}");
    assert!(ids(&plan, "order:").is_empty(), "{text}");
    // Without the journal's word it is someone else's until adopted.
    let plan = plan::plan(
        &desired(),
        &self::observed("adoption"),
        &PlanOptions::default(),
    );
    assert!(human(&plan).contains("adopt"));
}

#[test]
fn broken_instances_are_reinstalled_replaced_or_reported() {
    let plan = plan::plan(
        &desired(),
        &observed("broken_instances"),
        &PlanOptions::default(),
    );
    // error → reinstall; cancelled → new order; running but not a node →
    // reinstall marked destructive; pending_payment → a human.
    assert_eq!(
        ids(&plan, "reinstall:"),
        [
            "reinstall:kiwi-acme-server-03",
            "reinstall:kiwi-acme-general-01"
        ]
    );
    assert_eq!(ids(&plan, "order:"), ["order:kiwi-core-realtime-01"]);
    assert!(
        plan.step(&plan::StepId("reinstall:kiwi-acme-server-03".into()))
            .unwrap()
            .destructive
    );
    assert!(
        !plan
            .step(&plan::StepId("reinstall:kiwi-acme-general-01".into()))
            .unwrap()
            .destructive
    );
    insta::assert_snapshot!("broken_instances", human(&plan));
}

#[test]
fn colour_is_only_used_when_asked() {
    let plan = plan::plan(
        &desired(),
        &observed("empty_account"),
        &PlanOptions::default(),
    );
    assert!(!human(&plan).contains('\u{1b}'));
    let coloured = render_human(
        &plan,
        &RenderOptions {
            color: true,
            allow_destroy: false,
        },
    );
    assert!(
        coloured.contains("\u{1b}[32m+ order kiwi-core-general-01"),
        "{coloured}"
    );
}

#[test]
fn a_node_without_a_record_loses_dropped_labels_of_kiwis_namespace_and_keeps_others() {
    // Joined by a release that kept no record: labels in kiwi-infra's
    // namespace the inventory no longer wants are its own and go; any
    // other label may be another tool's and stays.
    let mut observed = observed("label_drift");
    let node = node_mut(&mut observed, "kiwi-acme-general-01");
    node.managed_labels = None;
    node.labels.insert("example.org/team".into(), "a".into());
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    let text = human(&plan);
    assert!(
        text.contains("- label kiwi-acme-general-01: workload.kiwistack.io/storage"),
        "{text}"
    );
    assert!(!text.contains("example.org/team"), "{text}");
    assert!(!text.contains("storage.example.com/disk"), "{text}");
}

#[test]
fn a_recorded_node_keeps_labels_of_kiwis_namespace_that_kiwi_infra_never_set() {
    // The record proves kiwi-infra did not set it: another tool did.
    let mut observed = observed("label_drift");
    let node = node_mut(&mut observed, "kiwi-acme-server-01");
    assert!(node.managed_labels.is_some());
    node.labels
        .insert("kiwistack.io/maintenance".into(), "planned".into());
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    assert!(!human(&plan).contains("kiwistack.io/maintenance"));
}

#[test]
fn a_tampered_record_never_removes_the_labels_kubernetes_and_k3s_own() {
    let mut observed = observed("label_drift");
    let node = node_mut(&mut observed, "kiwi-acme-server-01");
    let system = [
        "kubernetes.io/hostname",
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/etcd",
        "beta.kubernetes.io/os",
        "node.kubernetes.io/instance-type",
        "node.k3s.io/something",
        "example.k8s.io/x",
    ];
    for key in system {
        node.labels.insert(key.into(), "x".into());
        node.managed_labels.as_mut().unwrap().insert(key.into());
    }
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    let text = human(&plan);
    for key in system {
        assert!(
            !text.contains(&format!("label kiwi-acme-server-01: {key}")),
            "{key}: {text}"
        );
    }
}

/// The firewall each order or reinstall of `plan` gives its node, by slot.
fn firewalls(
    plan: &Plan,
) -> std::collections::BTreeMap<String, kiwi_infra::firewall::FirewallShape> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.kind {
            plan::StepKind::OrderInstance(o) => Some((o.slot.0.clone(), o.firewall.clone())),
            plan::StepKind::ReinstallInstance(r) => {
                Some((r.instance.name.clone(), r.firewall.clone()))
            }
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn a_new_node_admits_its_clusters_known_members_and_no_other_clusters() {
    let plan = plan::plan(
        &desired(),
        &observed("broken_instances"),
        &PlanOptions::default(),
    );
    let fw = firewalls(&plan);
    // A Core worker: the control plane the inventory names and the Core
    // workers with addresses; not acme's machines.
    let core = &fw["kiwi-core-realtime-01"];
    let control_plane: Vec<String> = match &desired().cluster("core").unwrap().kind {
        inventory::ClusterKind::Kubeadm { control_plane, .. } => control_plane
            .iter()
            .map(|n| n.address.to_string())
            .collect(),
        _ => unreachable!(),
    };
    let mut expected: Vec<&str> = control_plane.iter().map(String::as_str).collect();
    // .23 is the slot's cancelled machine (the plan orders a new one): it
    // does not count as a member.
    expected.extend(["198.51.100.21", "198.51.100.22"]);
    assert_eq!(core.peers, ips(&expected));
    // A reinstalled acme server admits acme's members, itself included
    // (its address is known), and no Core machine.
    let server = &fw["kiwi-acme-server-03"];
    assert_eq!(
        server.peers,
        ips(&[
            "198.51.100.24",
            "198.51.100.25",
            "198.51.100.26",
            "198.51.100.27",
            "198.51.100.28"
        ])
    );
    assert!(server.peer_tcp.iter().any(|r| r.start() == 2379));
    assert!(
        fw["kiwi-acme-general-01"]
            .peer_tcp
            .iter()
            .all(|r| r.start() != 2379),
        "agents run no etcd"
    );
    // The operator's networks reach SSH everywhere.
    for shape in fw.values() {
        assert_eq!(
            shape.operator_networks,
            desired().provider.operator_networks
        );
        assert_eq!(shape.operator_tcp[0].to_string(), "22");
    }
}

#[test]
fn an_empty_operator_list_is_warned_about_in_every_plan() {
    let open = desired_with(&[(
        "kiwi.toml",
        "operator_networks = [\"198.51.100.0/24\", \"2001:db8::/48\"]",
        "operator_networks = []",
    )]);
    let plan = plan::plan(&open, &observed("in_sync"), &PlanOptions::default());
    assert!(plan.warnings.contains(&plan::Warning::OperatorNetworksOpen));
    assert!(human(&plan).contains("leaves SSH and the Kubernetes API open to the internet"));
    // Only a warning: an account in sync stays without changes.
    assert!(!plan.has_changes());
    let plan = plan::plan(&desired(), &observed("in_sync"), &PlanOptions::default());
    assert!(!plan.warnings.contains(&plan::Warning::OperatorNetworksOpen));
}

/// The fixture inventory with acme on a private network.
fn desired_private() -> Desired {
    desired_with(&[
        (
            "customers/acme.toml",
            "tier = \"mesh\"",
            "tier = \"mesh\"\nprivate_network = true",
        ),
        (
            "kiwi.toml",
            "V8 = \"38.40\"",
            "V8 = \"38.40\"\nprivate_networking = \"2.99\"",
        ),
    ])
}

#[test]
fn a_private_network_cluster_orders_the_add_on_and_wires_each_node_before_it_joins() {
    let plan = plan::plan(
        &desired_private(),
        &observed("empty_account"),
        &PlanOptions::default(),
    );
    // Five acme machines with the add-on at €2.99 each: €14.95 more than
    // the same plan without it (€127.74).
    assert_eq!(
        plan::summary_line(&plan.summary),
        "Plan: 8 to order (+€142.69/month, of which €14.95 private networking), 5 to \
         reinstall, 1 private network to create, 5 to add to a private network, 8 to \
         bootstrap, 0 labels to change, 8 firewalls to set, 0 to cancel."
    );
    let order = plan
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            plan::StepKind::OrderInstance(o) if o.slot.0 == "kiwi-acme-server-01" => Some(o),
            _ => None,
        })
        .unwrap();
    assert_eq!(order.private_networking.map(|m| m.cents), Some(299));
    // Core's orders carry no add-on.
    assert!(plan.steps.iter().all(|s| match &s.kind {
        plan::StepKind::OrderInstance(o) =>
            o.private_networking.is_some() == o.slot.0.starts_with("kiwi-acme-"),
        _ => true,
    }));
    // One network for the cluster; each machine is added once it runs,
    // reinstalled after that (Contabo wires the NIC on reinstall), waited
    // for again, and only then joined.
    assert_eq!(
        ids(&plan, "private-network:"),
        ["private-network:kiwi-acme"]
    );
    assert_eq!(
        deps(&plan, "private-network-assign:kiwi-acme-server-01"),
        ["private-network:kiwi-acme", "wait:kiwi-acme-server-01"]
    );
    assert_eq!(
        deps(&plan, "reinstall:kiwi-acme-server-01"),
        [
            "private-network-assign:kiwi-acme-server-01",
            "wait:kiwi-acme-server-01",
            "secret:kiwi-operator-ssh-5330dd7cf30c"
        ]
    );
    assert_eq!(
        deps(&plan, "wait:kiwi-acme-server-01:private-network"),
        ["reinstall:kiwi-acme-server-01"]
    );
    // (and, as in every new cluster, after every member's firewall step)
    let firewalls = [
        "firewall:kiwi-acme-server-01",
        "firewall:kiwi-acme-server-02",
        "firewall:kiwi-acme-server-03",
        "firewall:kiwi-acme-general-01",
        "firewall:kiwi-acme-realtime-01",
    ];
    let then_firewalls = |first: &[&str]| -> Vec<String> {
        first
            .iter()
            .chain(&firewalls)
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(
        deps(&plan, "bootstrap:kiwi-acme-server-01"),
        then_firewalls(&["wait:kiwi-acme-server-01:private-network"])
    );
    assert_eq!(
        deps(&plan, "join:kiwi-acme-server-02"),
        then_firewalls(&[
            "wait:kiwi-acme-server-02:private-network",
            "bootstrap:kiwi-acme-server-01"
        ])
    );
    // The joins say their cluster traffic uses the network; Core's do not.
    for step in &plan.steps {
        if let plan::StepKind::BootstrapK3sServer(j)
        | plan::StepKind::JoinK3sServer(j)
        | plan::StepKind::JoinK3sAgent(j) = &step.kind
        {
            assert_eq!(
                j.private_network.as_deref(),
                Some("kiwi-acme"),
                "{}",
                step.id
            );
        }
    }
    // Every step comes after what it depends on.
    for (i, step) in plan.steps.iter().enumerate() {
        for d in &step.depends_on {
            let at = plan.steps.iter().position(|s| &s.id == d).unwrap();
            assert!(at < i, "{} comes before its dependency {d}", step.id);
        }
    }
    insta::assert_snapshot!("private_network", human(&plan));
    insta::assert_json_snapshot!("private_network_json", render_json(&plan));
}

#[test]
fn a_running_cluster_that_turns_the_switch_on_is_warned_about_not_rebuilt() {
    let plan = plan::plan(
        &desired_private(),
        &observed("in_sync"),
        &PlanOptions {
            adopt: false,
            allow_destroy: true,
        },
    );
    assert!(
        !plan.steps.iter().any(|s| matches!(
            s.kind,
            plan::StepKind::ReinstallInstance(_) | plan::StepKind::AssignPrivateNetwork { .. }
        )),
        "{}",
        human(&plan)
    );
    let outside: Vec<&str> = plan
        .warnings
        .iter()
        .filter_map(|w| match w {
            plan::Warning::OutsidePrivateNetwork { node, .. } => Some(node.0.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(outside.len(), 5, "{}", human(&plan));
    // The change is not done: plan and apply say so with their exit codes.
    assert!(plan.has_changes());
}

#[test]
fn a_member_whose_nic_works_joins_over_its_private_address_without_a_reinstall() {
    let mut observed = observed("empty_account");
    let d = desired_private();
    let mut first = plan::plan(&d, &observed, &PlanOptions::default());
    // Everything the plan does, done.
    observed = plan::simulate(&observed, &first);
    first = plan::plan(&d, &observed, &PlanOptions::default());
    assert!(first.is_empty(), "{}", human(&first));
    let net = observed.private_networks.get("kiwi-acme").unwrap();
    assert_eq!(net.members.len(), 5);
    let server = observed
        .instances
        .iter()
        .find(|i| i.display_name == "kiwi-acme-server-01")
        .unwrap();
    let acme = d.cluster("acme").unwrap();
    let private = plan::cluster_address(&observed, server, acme).unwrap();
    assert_eq!(Some(private), net.member(server.id).unwrap().private_ipv4);
    assert_ne!(Some(private), server.ipv4);
    assert_eq!(
        plan::private_addresses(&d, &observed).get("kiwi-acme-server-01"),
        Some(&private)
    );
}

#[test]
fn an_apply_cut_short_after_the_assignments_reinstalls_without_assigning_again() {
    let d = desired_private();
    let empty = observed("empty_account");
    let first = plan::plan(&d, &empty, &PlanOptions::default());
    // Everything up to the assignments happened; the reinstalls did not.
    let mut done = first.clone();
    done.steps.retain(|s| {
        !matches!(
            s.kind,
            plan::StepKind::ReinstallInstance(_)
                | plan::StepKind::BootstrapK3sServer(_)
                | plan::StepKind::JoinK3sServer(_)
                | plan::StepKind::JoinK3sAgent(_)
                | plan::StepKind::KubeadmJoin(_)
        ) && !s.id.0.ends_with(":private-network")
    });
    let mut observed = plan::simulate(&empty, &done);
    // The machines never joined: the cluster reads found no trace of a join.
    let names: Vec<String> = observed
        .instances
        .iter()
        .map(|i| i.display_name.clone())
        .collect();
    observed.clusters.insert(
        "acme".into(),
        Some(plan::ClusterObservation {
            nodes: Vec::new(),
            pristine: names.iter().cloned().collect(),
            ..Default::default()
        }),
    );
    for obs in observed.clusters.values_mut().flatten() {
        obs.pristine.extend(names.iter().cloned());
    }
    let net = observed.private_networks.get("kiwi-acme").unwrap();
    assert!(net
        .members
        .iter()
        .all(|m| m.status == plan::MemberStatus::Reinstall));
    let again = plan::plan(&d, &observed, &PlanOptions::default());
    assert!(
        ids(&again, "private-network").is_empty(),
        "{}",
        human(&again)
    );
    assert_eq!(ids(&again, "reinstall:").len(), 5, "{}", human(&again));
    assert_eq!(
        deps(&again, "bootstrap:kiwi-acme-server-01"),
        ["wait:kiwi-acme-server-01:private-network"]
    );
    // The node steps know the address Contabo gave at the assignment.
    assert_eq!(plan::private_addresses(&d, &observed).len(), 5);
    // Without the reinstall there is no working address for cluster traffic yet.
    let server = observed
        .instances
        .iter()
        .find(|i| i.display_name == "kiwi-acme-server-01")
        .unwrap();
    assert_eq!(
        plan::cluster_address(&observed, server, d.cluster("acme").unwrap()),
        None
    );
}
