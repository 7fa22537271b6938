//! Property: carrying out a plan (as modelled by `simulate`) and planning
//! again finds nothing left to do, for generated inventories and observed
//! states, including duplicates, foreign and cancelled instances, broken
//! statuses, drifted labels and unobserved clusters.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, NaiveDate, Utc};
use kiwi_infra::firewall::{ClusterFirewall, FlannelBackend, K3S_POD_NETWORK, K3S_SERVICE_NETWORK};
use kiwi_infra::inventory::{
    slot_name, ClusterKind, ClusterSpec, ControlPlaneNode, Customer, Desired, Money, NodeClass,
    PoolRole, PoolSpec, Provider, Taint, TaintEffect, Tier,
};
use kiwi_infra::plan::{
    self, simulate, tags, ClusterObservation, ImageId, Instance, InstanceId, InstanceStatus, Node,
    NodeName, Observed, PlanOptions, RenderOptions, ResolvedImage, SecretId, TagId,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Turns a byte string into choices; running out of bytes means "the
/// simplest choice", so proptest shrinks towards small, plain cases.
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        self.0.next().map_or(0, |b| usize::from(*b) % n.max(1))
    }
    fn flip(&mut self) -> bool {
        self.pick(2) == 1
    }
}

const STATUSES: &[&str] = &[
    "running",
    "running",
    "running",
    "provisioning",
    "installing",
    "error",
    "uninstalled",
    "stopped",
    "pending_payment",
    "manual_provisioning",
    "migrating",
];

fn taint(key: &str, value: &str) -> Taint {
    Taint {
        key: key.into(),
        value: Some(value.into()),
        effect: TaintEffect::NoSchedule,
    }
}

fn pool(name: &str, role: PoolRole, class: NodeClass, count: u32, tainted: bool) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        role,
        class,
        product: if class == NodeClass::Vds {
            "V8".into()
        } else {
            "V94".into()
        },
        count,
        labels: if tainted {
            [("workload.example.com/rt".to_string(), "true".to_string())].into()
        } else {
            BTreeMap::new()
        },
        taints: if tainted {
            vec![taint("workload.example.com/rt", "true")]
        } else {
            Vec::new()
        },
    }
}

fn desired(c: &mut Choices<'_>) -> Desired {
    let mut clusters = vec![ClusterSpec {
        name: "core".into(),
        tier: Tier::Core,
        kind: ClusterKind::Kubeadm {
            api_endpoint: "api.example:6443".parse().unwrap(),
            kubernetes_version: "v1.31.4".parse().unwrap(),
            control_plane: vec![ControlPlaneNode {
                name: "cp-1".into(),
                address: "203.0.113.1".parse().unwrap(),
            }],
        },
        protected: c.pick(4) == 0,
        firewall: ClusterFirewall {
            public: vec!["tcp/443".parse().unwrap()],
            cni: vec!["udp/4789".parse().unwrap()],
            cluster_networks: vec!["10.244.0.0/16".parse().unwrap()],
        },
        private_network: false,
        pools: vec![
            pool(
                "general",
                PoolRole::KubeadmWorker,
                NodeClass::Vps,
                c.pick(4) as u32,
                false,
            ),
            pool(
                "rt",
                PoolRole::KubeadmWorker,
                NodeClass::Vds,
                c.pick(3) as u32,
                true,
            ),
        ],
    }];
    let mut customers = Vec::new();
    for name in ["a", "b"] {
        if c.pick(3) == 0 {
            continue;
        }
        let tier = if c.flip() { Tier::Mesh } else { Tier::Fleet };
        customers.push(Customer {
            name: name.into(),
            tier,
        });
        clusters.push(ClusterSpec {
            name: name.into(),
            tier,
            kind: ClusterKind::K3s {
                version: "v1.31.4+k3s1".parse().unwrap(),
                flannel_backend: FlannelBackend::WireguardNative,
            },
            protected: c.pick(4) == 0,
            firewall: ClusterFirewall {
                public: vec!["tcp/80".parse().unwrap()],
                cni: FlannelBackend::WireguardNative.ports(),
                cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
            },
            private_network: c.pick(3) == 0,
            pools: vec![
                pool(
                    "server",
                    PoolRole::K3sServer,
                    NodeClass::Vps,
                    [1, 3][c.pick(2)],
                    false,
                ),
                pool(
                    "general",
                    PoolRole::K3sAgent,
                    NodeClass::Vps,
                    c.pick(3) as u32,
                    false,
                ),
                pool(
                    "rt",
                    PoolRole::K3sAgent,
                    NodeClass::Vds,
                    c.pick(2) as u32,
                    true,
                ),
            ],
        });
    }
    Desired {
        state: Default::default(),
        provider: Provider {
            region: "EU".into(),
            image: "ubuntu-24.04".into(),
            ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops".into(),
            period: 1,
            operator_networks: vec!["198.51.100.0/24".parse().unwrap()],
        },
        prices: [("V94".to_string(), Money::from_cents(849)), ("V8".to_string(), Money::from_cents(3840))].into(),
        private_networking_price: Some(Money::from_cents(350)),
        clusters,
        customers,
    }
}

/// Every slot that could exist, desired or not: more than any inventory
/// above asks for, plus a cluster `gone` no inventory has.
fn universe() -> Vec<(String, String, NodeClass)> {
    let mut slots = Vec::new();
    for cluster in ["core", "a", "b", "gone"] {
        let pools: &[(&str, NodeClass, u32)] = if cluster == "core" {
            &[("general", NodeClass::Vps, 4), ("rt", NodeClass::Vds, 3)]
        } else {
            &[
                ("server", NodeClass::Vps, 3),
                ("general", NodeClass::Vps, 3),
                ("rt", NodeClass::Vds, 2),
            ]
        };
        for (pool, class, max) in pools {
            for i in 1..=*max {
                slots.push((cluster.to_string(), slot_name(cluster, pool, i), *class));
            }
        }
    }
    slots
}

fn observed(c: &mut Choices<'_>, desired: &Desired) -> Observed {
    let mut o = Observed::default();
    let all_tags: Vec<String> = ["core", "a", "b", "gone"]
        .iter()
        .map(|n| tags::cluster(n))
        .chain([
            tags::MANAGED.to_string(),
            tags::class(NodeClass::Vps),
            tags::class(NodeClass::Vds),
        ])
        .collect();
    for (i, t) in all_tags.iter().enumerate() {
        if c.flip() {
            o.tags.insert(t.clone(), TagId(i as i64 + 1));
        }
    }
    if c.flip() {
        o.secrets.insert(
            plan::ssh_key_secret_name(&desired.provider.ssh_public_key),
            SecretId(7),
        );
    }
    if c.pick(4) != 0 {
        o.image = Some(ResolvedImage {
            name: "ubuntu-24.04".into(),
            id: ImageId("img-1".into()),
        });
    }
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut next_id = 100;
    let mut nodes: BTreeMap<String, Vec<Node>> = BTreeMap::new();
    for (cluster, name, class) in universe() {
        let copies = [0, 0, 1, 1, 1, 2][c.pick(6)];
        for _ in 0..copies {
            next_id += 1;
            let owned = c.pick(5) != 0;
            let mut instance_tags = BTreeSet::new();
            if owned {
                instance_tags.insert(tags::MANAGED.to_string());
                if c.pick(4) != 0 {
                    instance_tags.insert(tags::cluster(&cluster));
                }
                if c.pick(4) != 0 {
                    instance_tags.insert(tags::class(class));
                }
            }
            o.instances.push(Instance {
                id: InstanceId(next_id),
                display_name: name.clone(),
                product_id: if c.pick(6) == 0 {
                    "V97".into()
                } else if class == NodeClass::Vds {
                    "V8".into()
                } else {
                    "V94".into()
                },
                region: "EU".into(),
                status: InstanceStatus::parse(STATUSES[c.pick(STATUSES.len())]),
                ipv4: None,
                odd_ipv4: None,
                created_date: epoch + chrono::Duration::minutes(c.pick(3) as i64),
                cancel_date: (c.pick(6) == 0)
                    .then(|| NaiveDate::from_ymd_opt(2030, 1, 31).unwrap()),
                image_id: None,
                tags: instance_tags,
            });
        }
        if c.pick(3) != 0 {
            let mut labels = BTreeMap::new();
            if c.flip() {
                labels.insert("kiwistack.io/node-class".to_string(), class.to_string());
                labels.insert("kiwistack.io/cluster".to_string(), cluster.clone());
            }
            if c.pick(3) == 0 {
                labels.insert("kiwistack.io/pool".to_string(), "wrong".into());
            }
            if c.pick(3) == 0 {
                labels.insert("kiwistack.io/legacy".to_string(), "x".into());
            }
            if c.pick(3) == 0 {
                labels.insert("team.example.com/owner".to_string(), "ops".into());
            }
            let mut taints = Vec::new();
            match c.pick(4) {
                1 => taints.push(taint("workload.example.com/rt", "true")),
                2 => taints.push(taint("workload.example.com/rt", "false")),
                3 => taints.push(taint("old.example.com/x", "y")),
                _ => {}
            }
            if c.pick(4) == 0 {
                taints.push(Taint {
                    key: "node.kubernetes.io/unreachable".into(),
                    value: None,
                    effect: TaintEffect::NoExecute,
                });
            }
            nodes.entry(cluster.clone()).or_default().push(Node {
                name: NodeName(name),
                labels,
                taints,
                ready: true,
                addresses: Vec::new(),
                managed_labels: None,
            });
        }
    }
    for cluster in ["core", "a", "b", "gone"] {
        if c.pick(3) != 0 {
            let mut observation = ClusterObservation {
                nodes: nodes.remove(cluster).unwrap_or_default(),
                pristine: Default::default(),
                ..Default::default()
            };
            if cluster == "core" && c.pick(4) != 0 {
                observation.nodes.push(Node {
                    name: NodeName("cp-1".into()),
                    labels: BTreeMap::new(),
                    taints: Vec::new(),
                    ready: true,
                    addresses: Vec::new(),
                    managed_labels: None,
                });
            }
            o.clusters.insert(cluster.to_string(), Some(observation));
        } else if c.flip() {
            o.clusters.insert(cluster.to_string(), None);
        }
    }
    o
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_a_plan_leaves_nothing_to_do(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        let mut choices = Choices(bytes.iter());
        let desired = desired(&mut choices);
        let observed = observed(&mut choices, &desired);
        let options = PlanOptions { adopt: choices.flip(), allow_destroy: choices.flip() };
        let first = plan::plan(&desired, &observed, &options);
        let after = simulate(&observed, &first);
        let second = plan::plan(&desired, &after, &options);
        prop_assert!(
            second.is_empty(),
            "first plan:\n{}\nsecond plan:\n{}",
            plan::render_human(&first, &RenderOptions::default()),
            plan::render_human(&second, &RenderOptions::default())
        );
    }

    #[test]
    fn every_dependency_names_an_earlier_step(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        let mut choices = Choices(bytes.iter());
        let desired = desired(&mut choices);
        let observed = observed(&mut choices, &desired);
        let plan = plan::plan(&desired, &observed, &PlanOptions { adopt: choices.flip(), allow_destroy: false });
        let mut seen = BTreeSet::new();
        for step in &plan.steps {
            for dep in &step.depends_on {
                prop_assert!(seen.contains(dep), "{} depends on {} which does not come before it", step.id, dep);
            }
            prop_assert!(seen.insert(step.id.clone()), "step id {} is not unique", step.id);
        }
    }
}
