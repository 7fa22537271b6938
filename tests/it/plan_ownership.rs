//! Ownership and cluster membership come from what kiwi-infra recorded
//! (tags, a node's address), never from parsing a name. Each test is named
//! after what went wrong when names were parsed.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use kiwi_infra::inventory::{self, Desired};
use kiwi_infra::plan::{
    self, tags, ClusterObservation, Instance, InstanceId, InstanceStatus, Node, NodeName, Observed,
    Plan, PlanOptions, StepKind, Warning,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

const KIWI_TOML: &str = r#"
[provider]
region = "EU"
image = "ubuntu-24.04"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@kiwistack.io"
period = 1
operator_networks = ["198.51.100.0/24", "2001:db8::/48"]

[prices]
V94 = "8.49"
V8 = "38.40"

[k3s]
version = "v1.31.4+k3s1"

[core]
api_endpoint = "api.core.kiwistack.io:6443"
kubernetes_version = "v1.31.4"
control_plane = [{ name = "kiwi-core-cp-01", address = "127.0.0.9" }]

[core.pools.general]
class = "vps"
product = "V94"
count = 1

[core.firewall]
cni_ports = ["udp/4789", "tcp/179"]
cluster_networks = ["10.244.0.0/16", "10.96.0.0/12"]
"#;

/// An inventory of customers, each `(name, toml)`.
fn load(customers: &[(&str, &str)]) -> Result<Desired, inventory::Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("customers")).unwrap();
    std::fs::write(dir.path().join("kiwi.toml"), KIWI_TOML).unwrap();
    for (name, text) in customers {
        std::fs::write(dir.path().join(format!("customers/{name}.toml")), text).unwrap();
    }
    inventory::load(dir.path())
}

fn desired(customers: &[(&str, &str)]) -> Desired {
    load(customers).unwrap()
}

/// The Core cluster's one worker, in sync.
fn core_worker() -> Instance {
    instance(100, "kiwi-core-general-01", None, [10, 0, 1, 1])
}

fn customer(protected: bool, pools: &[(&str, u32)]) -> String {
    let mut text = format!(
        "tier = \"mesh\"\nprotected = {protected}\n\n[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n"
    );
    for (pool, count) in pools {
        text.push_str(&format!(
            "\n[pools.{pool}]\nclass = \"vps\"\nproduct = \"V94\"\ncount = {count}\n"
        ));
    }
    text
}

fn instance(id: i64, name: &str, cluster: Option<&str>, ip: [u8; 4]) -> Instance {
    let mut t = BTreeSet::from([tags::MANAGED.to_string()]);
    if let Some(c) = cluster {
        t.insert(tags::cluster(c));
    }
    Instance {
        id: InstanceId(id),
        display_name: name.to_string(),
        product_id: "V94".into(),
        region: "EU".into(),
        status: InstanceStatus::Running,
        ipv4: Some(Ipv4Addr::from(ip)),
        odd_ipv4: None,
        created_date: DateTime::<Utc>::UNIX_EPOCH,
        cancel_date: None,
        image_id: None,
        tags: t,
    }
}

fn node(name: &str, ip: [u8; 4], ready: bool) -> Node {
    Node {
        name: NodeName(name.to_string()),
        labels: BTreeMap::new(),
        taints: Vec::new(),
        ready,
        addresses: vec![Ipv4Addr::from(ip)],
        managed_labels: None,
    }
}

fn destroy() -> PlanOptions {
    PlanOptions {
        adopt: false,
        allow_destroy: true,
    }
}

fn step_ids(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(|s| s.id.0.clone()).collect()
}

/// Step ids other than label changes (the test nodes carry no labels).
fn non_label_steps(plan: &Plan) -> Vec<String> {
    step_ids(plan)
        .into_iter()
        // Label bookkeeping (labels, and the record of kiwi-infra's labels)
        // is not what these tests are about.
        .filter(|id| !id.starts_with("label:") && !id.starts_with("record-labels:"))
        .collect()
}

fn cancels(plan: &Plan) -> Vec<(Option<String>, i64)> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::CancelInstance { instance, .. } => {
                Some((s.cluster.clone(), instance.id.as_ref().unwrap().0))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn shrinking_a_pool_never_cancels_a_protected_cluster_whose_name_shares_its_prefix() {
    // acme (protected) has pool eu-west; acme-eu has pool west. Both make
    // names starting `kiwi-acme-eu-west-`. acme-eu's pool is shrunk.
    // Both clusters asking for the same slot name is refused outright.
    let refused = load(&[
        ("acme", &customer(true, &[("eu-west", 2)])),
        ("acme-eu", &customer(false, &[("west", 1)])),
    ])
    .unwrap_err();
    assert!(
        format!("{refused:?}").contains("duplicate node name `kiwi-acme-eu-west-01`"),
        "{refused:?}"
    );

    // Without the collision: acme keeps eu-west 2, acme-eu has no pool
    // west any more, and acme's second eu-west node (tagged acme) must stay.
    let d = desired(&[
        ("acme", &customer(true, &[("eu-west", 2)])),
        ("acme-eu", &customer(false, &[])),
    ]);
    let mut o = Observed::default();
    let mut dropped = instance(6, "kiwi-acme-eu-west-09", Some("acme-eu"), [10, 0, 0, 6]);
    dropped.created_date += chrono::Duration::minutes(1);
    o.instances = vec![
        core_worker(),
        instance(1, "kiwi-acme-server-01", None, [10, 0, 0, 1]),
        instance(2, "kiwi-acme-eu-west-01", None, [10, 0, 0, 2]),
        instance(3, "kiwi-acme-eu-west-02", None, [10, 0, 0, 3]),
        instance(4, "kiwi-acme-eu-server-01", None, [10, 0, 0, 4]),
        dropped,
        // acme's own dropped slot, tagged acme: protected, never cancelled.
        instance(7, "kiwi-acme-eu-west-03", Some("acme"), [10, 0, 0, 7]),
    ];
    let p = plan::plan(&d, &o, &destroy());
    assert_eq!(
        cancels(&p),
        vec![(Some("acme-eu".to_string()), 6)],
        "only acme-eu's own dropped instance goes: {:?}",
        step_ids(&p)
    );
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::Protected { cluster, skipped } if cluster == "acme" && skipped.iter().any(|s| s.contains("instance 7"))
    )));
}

#[test]
fn an_owned_instance_without_a_cluster_tag_is_never_removed_or_reordered() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            // The cluster tag was lost, and the name is no slot of the inventory.
            instance(2, "kiwi-shop-web-07", None, [10, 0, 0, 2]),
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(cancels(&p).is_empty(), "{:?}", step_ids(&p));
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::OrderInstance(_))),
        "no order while an owned machine is unaccounted for: {:?}",
        step_ids(&p)
    );
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::Unattributed { instance, cluster: None, .. } if instance.0 == 2
    )));
    assert!(p
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::OrdersHeld { cluster: None, slots } if slots == &["kiwi-shop-web-01".to_string()])));
    assert!(p.warnings.iter().any(Warning::holds_back));
}

#[test]
fn a_renamed_joined_instance_is_its_slots_machine_and_gets_its_name_back() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let mut o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            // Renamed in the Contabo panel, for cosmetic reasons.
            instance(2, "shop web (prod)", Some("shop"), [10, 0, 0, 2]),
        ],
        ..Observed::default()
    };
    o.clusters.insert(
        "shop".into(),
        Some(ClusterObservation {
            nodes: vec![
                node("kiwi-shop-server-01", [10, 0, 0, 1], true),
                node("kiwi-shop-web-01", [10, 0, 0, 2], true),
            ],
            pristine: BTreeSet::new(),
            ..Default::default()
        }),
    );
    let p = plan::plan(&d, &o, &destroy());
    assert_eq!(
        non_label_steps(&p),
        vec!["rename:kiwi-shop-web-01".to_string()]
    );
    let rename = p
        .step(&plan::StepId("rename:kiwi-shop-web-01".into()))
        .unwrap();
    let StepKind::RenameInstance {
        instance,
        current_name,
    } = &rename.kind
    else {
        panic!("{rename:?}");
    };
    assert_eq!(instance.id, Some(InstanceId(2)));
    assert_eq!(instance.name, "kiwi-shop-web-01");
    assert_eq!(current_name, "shop web (prod)");
    assert!(!rename.destructive);
    // After the rename, nothing is left to do.
    let after = plan::simulate(&o, &p);
    assert!(plan::plan(&d, &after, &destroy()).is_empty());
}

#[test]
fn a_ready_node_without_any_instance_is_never_ordered_again() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let mut o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
        ],
        ..Observed::default()
    };
    o.clusters.insert(
        "shop".into(),
        Some(ClusterObservation {
            nodes: vec![
                node("kiwi-shop-server-01", [10, 0, 0, 1], true),
                // Its machine is not listed under any name we can match.
                node("kiwi-shop-web-01", [10, 0, 0, 2], true),
            ],
            pristine: BTreeSet::new(),
            ..Default::default()
        }),
    );
    let p = plan::plan(&d, &o, &destroy());
    assert!(non_label_steps(&p).is_empty(), "{:?}", step_ids(&p));
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::NodeWithoutInstance { node, .. } if node.0 == "kiwi-shop-web-01"
    )));
}

#[test]
fn a_join_deletes_a_stale_node_only_in_a_destructive_step_of_its_own() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let mut o = Observed::default();
    let mut gone = instance(2, "kiwi-shop-web-01", Some("shop"), [10, 0, 0, 2]);
    gone.cancel_date = chrono::NaiveDate::from_ymd_opt(2030, 1, 31);
    o.instances = vec![
        core_worker(),
        instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
        gone,
    ];
    o.image = Some(plan::ResolvedImage {
        name: "ubuntu-24.04".into(),
        id: plan::ImageId("img".into()),
    });
    o.clusters.insert(
        "shop".into(),
        Some(ClusterObservation {
            nodes: vec![
                node("kiwi-shop-server-01", [10, 0, 0, 1], true),
                node("kiwi-shop-web-01", [10, 0, 0, 2], false),
            ],
            pristine: BTreeSet::new(),
            ..Default::default()
        }),
    );
    let p = plan::plan(&d, &o, &PlanOptions::default());
    let stale = p
        .steps
        .iter()
        .find(|s| matches!(s.kind, StepKind::DeleteStaleNode { .. }))
        .expect("a stale-node step");
    assert!(stale.destructive);
    let join = p
        .step(&plan::StepId("join:kiwi-shop-web-01".into()))
        .unwrap();
    assert!(join.depends_on.contains(&stale.id));

    // The same in a protected cluster: no destructive step, no join.
    let d = desired(&[("shop", &customer(true, &[("web", 1)]))]);
    let p = plan::plan(&d, &o, &destroy());
    assert!(!p.steps.iter().any(|s| s.destructive), "{:?}", step_ids(&p));
    assert!(p
        .step(&plan::StepId("join:kiwi-shop-web-01".into()))
        .is_none());
}

#[test]
fn an_instance_renamed_to_a_control_plane_node_gets_no_step() {
    let d = desired(&[]);
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(2, "kiwi-core-cp-01", Some("core"), [10, 0, 0, 2]),
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(p.is_empty(), "{:?}", step_ids(&p));
    let addresses = plan::node_addresses(&d, &o);
    assert!(
        !addresses.contains_key("kiwi-core-cp-01"),
        "an API answer never sets a control-plane node's address: {addresses:?}"
    );
}

#[test]
fn an_address_that_is_not_ipv4_is_a_warning_and_never_a_target() {
    let d = desired(&[("shop", &customer(false, &[]))]);
    let mut i = instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]);
    i.ipv4 = None;
    i.odd_ipv4 = Some("10.0.0.1\n  ProxyCommand sh -c 'touch /tmp/pwned'".into());
    let o = Observed {
        instances: vec![core_worker(), i],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &PlanOptions::default());
    assert!(!plan::node_addresses(&d, &o).contains_key("kiwi-shop-server-01"));
    let text = plan::render_human(
        &p,
        &plan::RenderOptions {
            color: false,
            allow_destroy: false,
        },
    );
    assert!(text.contains("ipConfig.v4.ip"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("ProxyCommand")),
        "{text}"
    );
}

fn shop_observed(nodes: Vec<Node>) -> Option<ClusterObservation> {
    Some(ClusterObservation {
        nodes,
        pristine: BTreeSet::new(),
        ..Default::default()
    })
}

#[test]
fn a_machine_named_as_another_clusters_slot_is_never_reinstalled_joined_or_bought_beside() {
    // A protected cluster's machine carries (renamed, or an old slot name
    // reused) a name the unprotected cluster `shop` wants.
    let d = desired(&[
        ("shop", &customer(false, &[("web", 1)])),
        ("praxis", &customer(true, &[])),
    ]);
    let mut foreign = instance(2, "kiwi-shop-web-01", Some("praxis"), [10, 0, 0, 2]);
    let mut o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            instance(3, "kiwi-praxis-server-01", None, [10, 0, 0, 3]),
            foreign.clone(),
        ],
        ..Observed::default()
    };
    o.clusters.insert(
        "shop".into(),
        shop_observed(vec![node("kiwi-shop-server-01", [10, 0, 0, 1], true)]),
    );
    for (what, o) in [
        ("tag of another cluster", o.clone()),
        ("no tag read", {
            // The same, before the observation read its cluster tag: the plan
            // asks for it, and without it does nothing either.
            foreign.tags = BTreeSet::from([tags::MANAGED.to_string()]);
            let mut o = o.clone();
            o.instances[3] = foreign.clone();
            assert_eq!(
                plan::cluster_tags_to_check(&d, &o),
                vec![(InstanceId(2), "shop".to_string())]
            );
            o
        }),
    ] {
        let p = plan::plan(&d, &o, &destroy());
        let ids = non_label_steps(&p);
        assert!(
            !ids.iter().any(|s| s.contains("kiwi-shop-web-01")),
            "{what}: {ids:?}"
        );
        assert!(p.warnings.iter().any(|w| matches!(
            w,
            Warning::SignalsDisagree { instance, .. } if instance.0 == 2
        )));
    }
}

#[test]
fn an_owned_instance_renamed_to_another_slot_form_name_is_neither_bought_again_nor_removed() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    // web-01's machine, renamed to web-07 in the panel; the cluster cannot
    // be observed (or web-01 never joined), so no address says whose it is.
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            instance(2, "kiwi-shop-web-07", Some("shop"), [10, 0, 0, 2]),
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(
        !p.steps.iter().any(|s| matches!(
            s.kind,
            StepKind::OrderInstance(_) | StepKind::CancelInstance { .. }
        )),
        "{:?}",
        step_ids(&p)
    );
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::Unattributed { instance, .. } if instance.0 == 2
    )));
    assert!(p.warnings.iter().any(Warning::holds_back));

    // The journal recorded it as web-01's order: it is renamed back.
    let mut journaled = o.clone();
    journaled
        .journal_placed
        .insert("kiwi-shop-web-01".into(), InstanceId(2));
    let p = plan::plan(&d, &journaled, &destroy());
    assert_eq!(
        non_label_steps(&p),
        vec!["rename:kiwi-shop-web-01".to_string()]
    );

    // A real shrink (web-01 has its machine; web-02 is not wanted) still
    // removes web-02.
    let shrink = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            instance(2, "kiwi-shop-web-01", None, [10, 0, 0, 2]),
            instance(3, "kiwi-shop-web-02", Some("shop"), [10, 0, 0, 3]),
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &shrink, &destroy());
    assert_eq!(cancels(&p), vec![(Some("shop".to_string()), 3)]);
}

#[test]
fn a_broken_status_alone_never_wipes_a_node_that_could_not_be_checked() {
    let mut broken = instance(2, "kiwi-shop-web-01", Some("shop"), [10, 0, 0, 2]);
    broken.status = InstanceStatus::Error;
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            broken,
        ],
        image: Some(plan::ResolvedImage {
            name: "ubuntu-24.04".into(),
            id: plan::ImageId("img".into()),
        }),
        ..Observed::default()
    };
    // Cluster not observed: the reinstall is destructive.
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let p = plan::plan(&d, &o, &PlanOptions::default());
    let reinstall = p
        .step(&plan::StepId("reinstall:kiwi-shop-web-01".into()))
        .expect("a reinstall");
    assert!(reinstall.destructive);
    // Protected: not planned at all.
    let d = desired(&[("shop", &customer(true, &[("web", 1)]))]);
    let p = plan::plan(&d, &o, &destroy());
    assert!(!p.steps.iter().any(|s| s.destructive), "{:?}", step_ids(&p));
    assert!(p
        .step(&plan::StepId("reinstall:kiwi-shop-web-01".into()))
        .is_none());
}

fn tagged(mut i: Instance, extra: &[&str]) -> Instance {
    i.tags.extend(extra.iter().map(|t| (*t).to_string()));
    i
}

#[test]
fn a_protected_machine_renamed_to_another_clusters_slot_keeps_its_mark_and_its_slot_is_not_bought()
{
    let d = desired(&[
        ("shop", &customer(false, &[("general", 2)])),
        ("praxis", &customer(true, &[("general", 1)])),
    ]);
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            instance(2, "kiwi-shop-general-01", None, [10, 0, 0, 2]),
            tagged(
                instance(3, "kiwi-praxis-server-01", Some("praxis"), [10, 0, 0, 3]),
                &[tags::PROTECTED],
            ),
            // praxis's general-01, renamed in the panel to shop's free slot.
            tagged(
                instance(4, "kiwi-shop-general-02", Some("praxis"), [10, 0, 0, 4]),
                &[tags::PROTECTED],
            ),
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(
        !p.steps.iter().any(|s| matches!(
            s.kind,
            StepKind::UnassignTag { .. } | StepKind::OrderInstance(_)
        ) || s.destructive),
        "{:?}",
        step_ids(&p)
    );
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::SignalsDisagree { instance, .. } if instance.0 == 4
    )));
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::OrdersHeld { slots, .. } if slots.contains(&"kiwi-praxis-general-01".to_string())
    )));
}

#[test]
fn an_owned_machine_renamed_to_another_existing_slot_name_is_not_bought_again() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let mut renamed = instance(2, "kiwi-shop-server-01", Some("shop"), [10, 0, 0, 2]);
    renamed.created_date += chrono::Duration::minutes(5);
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", Some("shop"), [10, 0, 0, 1]),
            // web-01's machine, now also named server-01.
            renamed,
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::OrderInstance(_)) || s.destructive),
        "{:?}",
        step_ids(&p)
    );
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::Unattributed { instance, .. } if instance.0 == 2
    )));
    // The journal says it is web-01's: it gets that name back.
    let mut journaled = o.clone();
    journaled
        .journal_placed
        .insert("kiwi-shop-web-01".into(), InstanceId(2));
    let p = plan::plan(&d, &journaled, &destroy());
    assert_eq!(
        non_label_steps(&p),
        vec!["rename:kiwi-shop-web-01".to_string()]
    );
}

#[test]
fn unprotecting_a_cluster_while_shrinking_it_lifts_the_mark_before_anything_is_removed() {
    let d = desired(&[("shop", &customer(false, &[("web", 0)]))]);
    let o = Observed {
        instances: vec![
            core_worker(),
            tagged(
                instance(1, "kiwi-shop-server-01", Some("shop"), [10, 0, 0, 1]),
                &[tags::PROTECTED],
            ),
            tagged(
                instance(2, "kiwi-shop-web-01", Some("shop"), [10, 0, 0, 2]),
                &[tags::PROTECTED],
            ),
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(!p.steps.iter().any(|s| s.destructive), "{:?}", step_ids(&p));
    assert!(p
        .steps
        .iter()
        .any(|s| s.id.0 == "untag:kiwi-protected:kiwi-shop-web-01"));
    // The plan after that removes it.
    let after = plan::simulate(&o, &p);
    let p = plan::plan(&d, &after, &destroy());
    assert_eq!(cancels(&p), vec![(Some("shop".to_string()), 2)]);
}

#[test]
fn a_protected_machine_renamed_into_another_slot_without_its_cluster_tag_holds_every_order() {
    let d = desired(&[
        ("shop", &customer(false, &[("general", 2)])),
        ("praxis", &customer(true, &[("general", 1)])),
    ]);
    let mut stripped = instance(4, "kiwi-shop-general-02", None, [10, 0, 0, 4]);
    stripped.tags.insert(tags::PROTECTED.to_string());
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            instance(2, "kiwi-shop-general-01", None, [10, 0, 0, 2]),
            tagged(
                instance(3, "kiwi-praxis-server-01", Some("praxis"), [10, 0, 0, 3]),
                &[tags::PROTECTED],
            ),
            // praxis's general-01, renamed into shop's free slot, its
            // cluster tag removed in the panel.
            stripped,
        ],
        ..Observed::default()
    };
    for options in [
        destroy(),
        PlanOptions {
            adopt: true,
            allow_destroy: true,
        },
    ] {
        let p = plan::plan(&d, &o, &options);
        assert!(
            !p.steps.iter().any(|s| matches!(
                s.kind,
                StepKind::OrderInstance(_) | StepKind::UnassignTag { .. }
            ) || s.destructive),
            "{:?}",
            step_ids(&p)
        );
        assert!(p
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::OrdersHeld { cluster: None, .. })));
    }
}

#[test]
fn a_machine_of_another_product_in_a_new_slot_holds_the_free_slots_of_its_product() {
    let shop = "tier = \"mesh\"\n\n[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n\n\
                [pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 2\n\n\
                [pools.realtime]\nclass = \"vds\"\nproduct = \"V8\"\ncount = 1\n";
    let d = desired(&[("shop", shop)]);
    // realtime-01 (a V8) renamed to the new slot general-02.
    let mut vds = instance(3, "kiwi-shop-general-02", Some("shop"), [10, 0, 0, 3]);
    vds.product_id = "V8".into();
    let o = Observed {
        instances: vec![
            core_worker(),
            instance(1, "kiwi-shop-server-01", None, [10, 0, 0, 1]),
            instance(2, "kiwi-shop-general-01", None, [10, 0, 0, 2]),
            vds,
        ],
        ..Observed::default()
    };
    let p = plan::plan(&d, &o, &destroy());
    assert!(
        !p.steps.iter().any(
            |s| matches!(&s.kind, StepKind::OrderInstance(o) if o.slot.0 == "kiwi-shop-realtime-01")
        ),
        "{:?}",
        step_ids(&p)
    );
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        Warning::OrdersHeld { slots, .. } if slots.contains(&"kiwi-shop-realtime-01".to_string())
    )));
}

/// Every step `id` depends on, directly or not.
fn ancestors(plan: &Plan, id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![id.to_string()];
    while let Some(current) = todo.pop() {
        if let Some(step) = plan.steps.iter().find(|s| s.id.0 == current) {
            for dep in &step.depends_on {
                if seen.insert(dep.0.clone()) {
                    todo.push(dep.0.clone());
                }
            }
        }
    }
    seen
}

fn resolved_image(o: &mut Observed) {
    o.image = Some(kiwi_infra::plan::ResolvedImage {
        name: "ubuntu-24.04".into(),
        id: kiwi_infra::plan::ImageId("img".into()),
    });
}

#[test]
fn a_running_machine_of_an_interrupted_order_is_tagged_reached_and_joined_never_wiped() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let mut o = Observed::default();
    let mut web = instance(2, "kiwi-shop-web-01", None, [10, 0, 0, 2]);
    web.tags.clear(); // placed by a run cut short, never tagged
    o.instances = vec![
        core_worker(),
        instance(1, "kiwi-shop-server-01", Some("shop"), [10, 0, 0, 1]),
        web,
    ];
    o.journal_placed
        .insert("kiwi-shop-web-01".into(), kiwi_infra::plan::InstanceId(2));
    resolved_image(&mut o);
    // Observation reads a journal-claimed machine like an owned one: it
    // was never joined (pristine), and it is an SSH target.
    assert_eq!(
        kiwi_infra::plan::node_addresses(&d, &o).get("kiwi-shop-web-01"),
        Some(&Ipv4Addr::new(10, 0, 0, 2))
    );
    o.clusters.insert(
        "shop".into(),
        Some(ClusterObservation {
            nodes: vec![node("kiwi-shop-server-01", [10, 0, 0, 1], true)],
            pristine: BTreeSet::from(["kiwi-shop-web-01".to_string()]),
            ..Default::default()
        }),
    );
    let p = plan::plan(&d, &o, &PlanOptions::default());
    assert!(p.finishing_orders.contains("kiwi-shop-web-01"));
    assert!(!p.steps.iter().any(|s| s.destructive), "{:?}", step_ids(&p));
    assert!(step_ids(&p).contains(&"join:kiwi-shop-web-01".to_string()));
    assert!(step_ids(&p).contains(&"assign:kiwi-managed:kiwi-shop-web-01".to_string()));
}

#[test]
fn a_join_waits_for_the_machine_of_the_server_it_joins_through() {
    let d = desired(&[("shop", &customer(false, &[("web", 1)]))]);
    let mut o = Observed::default();
    let mut server = instance(1, "kiwi-shop-server-01", Some("shop"), [10, 0, 0, 1]);
    server.status = kiwi_infra::plan::InstanceStatus::Installing;
    o.instances = vec![core_worker(), server];
    resolved_image(&mut o);
    o.clusters.insert(
        "shop".into(),
        Some(ClusterObservation {
            nodes: vec![node("kiwi-shop-server-01", [10, 0, 0, 1], false)],
            pristine: BTreeSet::new(),
            ..Default::default()
        }),
    );
    let p = plan::plan(&d, &o, &PlanOptions::default());
    assert!(step_ids(&p).contains(&"wait:kiwi-shop-server-01".to_string()));
    assert!(
        ancestors(&p, "join:kiwi-shop-web-01").contains("wait:kiwi-shop-server-01"),
        "{:?}",
        p.steps
            .iter()
            .map(|s| (&s.id.0, &s.depends_on))
            .collect::<Vec<_>>()
    );
}
