//! The peer set kept true (issue 18, part B), planned from the fixture
//! inventory (`tests/fixtures/plan/inventory`) and its `in_sync` account:
//! a node without its firewall gets it, a hand edit is named and undone, a
//! new node joins only once every member admits it, a removed node leaves
//! every member's set only after its removal, and a running cluster's
//! flannel backend is never changed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use kiwi_infra::firewall::{FlannelBackend, PortRange};
use kiwi_infra::inventory::{self, Desired};
use kiwi_infra::plan::{
    self, render_human, NodeFirewall, Observed, ObservedBackend, Plan, PlanOptions, RenderOptions,
    SetFirewall, StepKind, Warning,
};

const FIXTURES: &str = "tests/fixtures/plan";

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

fn in_sync() -> Observed {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("in_sync.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `in_sync` where every owned machine answered that it has no firewall.
fn without_firewalls() -> Observed {
    let mut observed = in_sync();
    for instance in observed.instances.clone() {
        let cluster = instance
            .tags
            .iter()
            .find_map(|t| t.strip_prefix("kiwi-cluster-"))
            .unwrap()
            .to_string();
        if let Some(Some(c)) = observed.clusters.get_mut(&cluster) {
            c.firewalls
                .insert(instance.display_name.clone(), NodeFirewall::Absent);
            if instance.display_name.contains("-server-") {
                c.flannel_backends.insert(
                    instance.display_name.clone(),
                    ObservedBackend::Known(FlannelBackend::WireguardNative),
                );
            }
        }
    }
    observed
}

/// `in_sync` with every node's firewall as the plan wants it.
fn with_true_firewalls(desired: &Desired) -> Observed {
    let observed = without_firewalls();
    let first = plan::plan(desired, &observed, &PlanOptions::default());
    plan::simulate(&observed, &first)
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

fn firewall_step<'p>(plan: &'p Plan, id: &str) -> &'p SetFirewall {
    match plan.steps.iter().find(|s| s.id.0 == id).map(|s| &s.kind) {
        Some(StepKind::SetFirewall(f)) => f,
        _ => panic!("no firewall step {id}:\n{}", human(plan)),
    }
}

fn deps(plan: &Plan, id: &str) -> BTreeSet<String> {
    plan.steps
        .iter()
        .find(|s| s.id.0 == id)
        .unwrap_or_else(|| panic!("no step {id}"))
        .depends_on
        .iter()
        .map(|d| d.0.clone())
        .collect()
}

fn acme_addresses(last: u8) -> BTreeSet<Ipv4Addr> {
    (24..=last)
        .map(|o| Ipv4Addr::new(198, 51, 100, o))
        .collect()
}

const ACME: [&str; 5] = [
    "kiwi-acme-server-01",
    "kiwi-acme-server-02",
    "kiwi-acme-server-03",
    "kiwi-acme-general-01",
    "kiwi-acme-realtime-01",
];

fn desired() -> Desired {
    desired_with(&[])
}

#[test]
fn nodes_without_a_firewall_get_one_admitting_exactly_their_cluster_and_then_nothing_is_left() {
    let desired = desired();
    let observed = without_firewalls();
    let first = plan::plan(&desired, &observed, &PlanOptions::default());
    let set: Vec<&SetFirewall> = first
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::SetFirewall(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(set.len(), 8, "{}", human(&first));
    for node in ACME {
        let step = firewall_step(&first, &format!("firewall:{node}"));
        assert_eq!(step.wanted.peers, acme_addresses(28), "{node}");
        assert!(
            step.drift[0].contains("no host firewall"),
            "{:?}",
            step.drift
        );
        assert!(step.pending_peers.is_empty());
    }
    // Core's workers admit the workers and the control plane the inventory
    // names by address.
    let core = firewall_step(&first, "firewall:kiwi-core-general-01");
    assert!(core.wanted.peers.contains(&Ipv4Addr::new(198, 51, 100, 21)));
    assert!(!core.wanted.peers.contains(&Ipv4Addr::new(198, 51, 100, 24)));
    assert!(!first.steps.iter().any(|s| s.destructive));
    let after = plan::simulate(&observed, &first);
    let second = plan::plan(&desired, &after, &PlanOptions::default());
    assert!(second.is_empty(), "{}", human(&second));
}

#[test]
fn a_peer_added_by_hand_is_named_in_the_plan_and_removed_by_it() {
    let desired = desired();
    let mut observed = with_true_firewalls(&desired);
    let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
    let Some(NodeFirewall::Present {
        peers: Some(peers), ..
    }) = acme.firewalls.get_mut("kiwi-acme-server-02")
    else {
        panic!("loaded");
    };
    peers.insert("127.9.9.9/32".parse().unwrap());
    peers.remove(&"198.51.100.27/32".parse().unwrap());
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    assert_eq!(plan.steps.len(), 1, "{}", human(&plan));
    let step = firewall_step(&plan, "firewall:kiwi-acme-server-02");
    assert_eq!(
        step.drift,
        [
            "peer 198.51.100.27 not admitted",
            "127.9.9.9 admitted but not a member"
        ]
    );
    assert_eq!(step.wanted.peers, acme_addresses(28));
    let shown = human(&plan);
    assert!(
        shown.contains("127.9.9.9 admitted but not a member"),
        "{shown}"
    );
    let after = plan::simulate(&observed, &plan);
    assert!(plan::plan(&desired, &after, &PlanOptions::default()).is_empty());
}

/// Issue 18: a node whose firewall was changed by hand shows up in `plan`
/// and is fixed by `apply`, whatever was changed: a deleted prerouting
/// rule (strangers reach NodePorts), an input chain unhooked, an input rule
/// replaced in place with the same rule count.
#[test]
fn a_hand_edited_chain_is_named_in_the_plan_and_set_again_by_it() {
    use kiwi_infra::firewall::{Match, PortRange, Protocol, Rule, Verdict};
    let desired = desired();
    let node = "kiwi-acme-server-02";
    type Edit = fn(&mut kiwi_infra::firewall::Ruleset);
    let edits: [(&str, Edit); 3] = [
        (
            "its prerouting chain lacks the ruleset's rule 3: `ip saddr @peers4 accept`",
            |r| {
                r.chains[0].rules.remove(2);
            },
        ),
        ("its input chain has no hook", |r| r.chains[1].base = None),
        (
            "differs: `tcp dport { 22 } accept` where the ruleset has `ip saddr @operators4",
            |r| {
                let input = &mut r.chains[1].rules;
                let at = input
                    .iter()
                    .position(|rule| rule.to_string().starts_with("ip saddr @operators4"))
                    .unwrap();
                input[at] = Rule::new(
                    vec![Match::Dport {
                        protocol: Protocol::Tcp,
                        ports: vec![PortRange::single(22)],
                    }],
                    Verdict::Accept,
                );
            },
        ),
    ];
    for (said, edit) in edits {
        let mut observed = with_true_firewalls(&desired);
        let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
        let Some(NodeFirewall::Present { ruleset, .. }) = acme.firewalls.get_mut(node) else {
            panic!("loaded");
        };
        edit(ruleset);
        let plan = plan::plan(&desired, &observed, &PlanOptions::default());
        assert_eq!(plan.steps.len(), 1, "{said}: {}", human(&plan));
        let step = firewall_step(&plan, &format!("firewall:{node}"));
        assert_eq!(step.drift.len(), 1, "{said}: {:?}", step.drift);
        assert!(step.drift[0].contains(said), "{said}: {:?}", step.drift);
        assert!(human(&plan).contains(said), "{}", human(&plan));
        let after = plan::simulate(&observed, &plan);
        assert!(plan::plan(&desired, &after, &PlanOptions::default()).is_empty());
    }
}

#[test]
fn a_new_node_joins_only_once_every_member_admits_it() {
    let desired = desired_with(&[(
        "customers/acme.toml",
        "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
        "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 2",
    )]);
    let observed = with_true_firewalls(&desired_with(&[]));
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    let join = deps(&plan, "join:kiwi-acme-general-02");
    for node in ACME.iter().chain(&["kiwi-acme-general-02"]) {
        assert!(
            join.contains(&format!("firewall:{node}")),
            "{node}: {join:?}\n{}",
            human(&plan)
        );
        let step = firewall_step(&plan, &format!("firewall:{node}"));
        // Its address is known once its wait ends: named by slot.
        assert_eq!(
            step.pending_peers,
            BTreeSet::from(["kiwi-acme-general-02".to_string()])
        );
        assert_eq!(step.wanted.peers, acme_addresses(28));
        assert!(deps(&plan, &format!("firewall:{node}")).contains("wait:kiwi-acme-general-02"));
    }
    // Steps come after what they depend on.
    let at = |id: &str| plan.steps.iter().position(|s| s.id.0 == id).unwrap();
    assert!(at("firewall:kiwi-acme-server-01") < at("join:kiwi-acme-general-02"));
    // Core is another cluster: its firewalls are left alone.
    assert!(!plan
        .steps
        .iter()
        .any(|s| s.id.0.starts_with("firewall:kiwi-core")));
}

#[test]
fn a_removed_node_leaves_every_members_peers_only_after_its_removal() {
    let desired = desired_with(&[(
        "customers/acme.toml",
        "[pools.realtime]\nclass = \"vds\"\nproduct = \"V8\"\ncount = 1",
        "[pools.realtime]\nclass = \"vds\"\nproduct = \"V8\"\ncount = 0",
    )]);
    let observed = with_true_firewalls(&desired_with(&[]));
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    for node in &ACME[..4] {
        let id = format!("firewall-after-removal:{node}");
        let step = firewall_step(&plan, &id);
        assert_eq!(step.wanted.peers, acme_addresses(27), "{node}");
        assert!(
            deps(&plan, &id).contains("delete-node:kiwi-acme-realtime-01"),
            "{:?}",
            deps(&plan, &id)
        );
        // Not destructive itself, but gated through its removal.
        assert!(
            !plan
                .steps
                .iter()
                .find(|s| s.id.0 == id)
                .unwrap()
                .destructive
        );
        // It is still a member until then: nothing to do before.
        assert!(!plan
            .steps
            .iter()
            .any(|s| s.id.0 == format!("firewall:{node}")));
    }
    let after = plan::simulate(&observed, &plan);
    let second = plan::plan(&desired, &after, &PlanOptions::default());
    assert!(
        !second
            .steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::SetFirewall(_))),
        "{}",
        human(&second)
    );
}

#[test]
fn a_cluster_running_vxlan_is_warned_with_its_migration_and_never_switched() {
    let mut observed = without_firewalls();
    let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
    for server in &ACME[..3] {
        acme.flannel_backends.insert(
            server.to_string(),
            ObservedBackend::Known(FlannelBackend::Vxlan),
        );
    }
    let desired = desired_with(&[(
        "customers/acme.toml",
        "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 3",
        "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 5",
    )]);
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    let warning = plan
        .warnings
        .iter()
        .find(|w| matches!(w, Warning::FlannelBackendDiffers { .. }))
        .unwrap_or_else(|| panic!("{}", human(&plan)));
    assert_eq!(
        *warning,
        Warning::FlannelBackendDiffers {
            cluster: "acme".into(),
            running: Some("vxlan".into()),
            wanted: FlannelBackend::WireguardNative,
        }
    );
    let shown = human(&plan);
    for words in [
        "flannel-backend: wireguard-native",
        "one at a time",
        "flannel.1",
    ] {
        assert!(shown.contains(words), "{words}: {shown}");
    }
    // The firewall opens the running backend's port, not the wanted one's.
    let step = firewall_step(&plan, "firewall:kiwi-acme-server-01");
    assert_eq!(step.wanted.peer_udp, [PortRange::single(8472)]);
    // The new server joins with the running backend: never a mix.
    let join = plan
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::JoinK3sServer(j) if j.node.0 == "kiwi-acme-server-04" => Some(j),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}", human(&plan)));
    assert_eq!(join.flannel_backend, Some(FlannelBackend::Vxlan));
    // And it is born admitting vxlan, not the inventory's backend.
    let order = plan
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::OrderInstance(o) if o.slot.0 == "kiwi-acme-server-04" => Some(o),
            _ => None,
        })
        .unwrap();
    assert_eq!(order.firewall.peer_udp, [PortRange::single(8472)]);
}

#[test]
fn servers_that_disagree_on_the_backend_get_no_firewall_change() {
    let mut observed = without_firewalls();
    let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
    acme.flannel_backends.insert(
        "kiwi-acme-server-01".into(),
        ObservedBackend::Known(FlannelBackend::Vxlan),
    );
    acme.flannel_backends.insert(
        "kiwi-acme-server-02".into(),
        ObservedBackend::Known(FlannelBackend::WireguardNative),
    );
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    assert!(plan
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::FlannelBackendsMixed { cluster, .. } if cluster == "acme")));
    assert!(!plan
        .steps
        .iter()
        .any(|s| s.id.0.starts_with("firewall:kiwi-acme")));
}

#[test]
fn a_running_cluster_whose_backend_was_not_read_gets_no_firewall_change() {
    let mut observed = without_firewalls();
    let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
    acme.flannel_backends.clear();
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    assert!(plan
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::FlannelBackendUnread { cluster } if cluster == "acme")));
    assert!(!plan
        .steps
        .iter()
        .any(|s| s.id.0.starts_with("firewall:kiwi-acme")));
    // Core (kubeadm) has no flannel: its firewalls are still kept.
    assert!(plan
        .steps
        .iter()
        .any(|s| s.id.0.starts_with("firewall:kiwi-core")));
}

#[test]
fn an_unreadable_firewall_is_unverified_and_nothing_is_planned_on_it() {
    let mut observed = without_firewalls();
    let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
    acme.firewalls.insert(
        "kiwi-acme-server-01".into(),
        NodeFirewall::Unreadable {
            reason: "set peers4 holds an element that is not an address".into(),
        },
    );
    let plan = plan::plan(&desired(), &observed, &PlanOptions::default());
    assert!(!plan
        .steps
        .iter()
        .any(|s| s.id.0 == "firewall:kiwi-acme-server-01"));
    assert!(plan.warnings.iter().any(
        |w| matches!(w, Warning::FirewallUnreadable { node, .. } if node.0 == "kiwi-acme-server-01")
    ));
}

/// Found by an attacker: the inventory's public ports are checked against
/// the backend it names (wireguard-native), so `udp/8472` passed on a
/// cluster whose servers run vxlan, and every firewall opened VXLAN's
/// unauthenticated pod traffic to anyone.
#[test]
fn a_public_port_the_running_backend_uses_is_never_opened_and_is_warned() {
    let mut observed = without_firewalls();
    let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
    for server in &ACME[..3] {
        acme.flannel_backends.insert(
            server.to_string(),
            ObservedBackend::Known(FlannelBackend::Vxlan),
        );
    }
    let desired = desired_with(&[
        (
            "customers/acme.toml",
            "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 3",
            "[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 5",
        ),
        (
            "customers/acme.toml",
            "tier = \"mesh\"\n",
            "tier = \"mesh\"\n\n[firewall]\npublic_tcp_ports = [80, 443]\npublic_udp_ports = [3478, 8472]\n",
        ),
    ]);
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    assert!(
        plan.warnings.contains(&Warning::PublicPortReserved {
            cluster: "acme".into(),
            port: "udp/8472".into(),
            what: "flannel's vxlan backend".into(),
        }),
        "{}",
        human(&plan)
    );
    assert!(human(&plan)
        .contains("public port udp/8472 is what its nodes keep for flannel's vxlan backend"));
    let vxlan = PortRange::single(8472);
    // Not on the running nodes' firewalls...
    let step = firewall_step(&plan, "firewall:kiwi-acme-server-01");
    assert_eq!(step.wanted.peer_udp, [vxlan]);
    assert!(
        !step.wanted.public_udp.contains(&vxlan),
        "{:?}",
        step.wanted
    );
    // ...while the other public ports stay (a TURN server's 3478).
    assert!(step.wanted.public_udp.contains(&PortRange::single(3478)));
    // ...nor on a node born into the cluster.
    let order = plan
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::OrderInstance(o) if o.slot.0 == "kiwi-acme-server-04" => Some(o),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}", human(&plan)));
    assert!(
        !order.firewall.public_udp.contains(&vxlan),
        "{:?}",
        order.firewall
    );
    let rendered = kiwi_infra::firewall::render(&step.wanted);
    let vxlan_rules: Vec<&str> = rendered.lines().filter(|l| l.contains("8472")).collect();
    assert!(!vxlan_rules.is_empty(), "{rendered}");
    assert!(
        vxlan_rules.iter().all(|l| l.contains("@peers4")),
        "{rendered}"
    );
}
