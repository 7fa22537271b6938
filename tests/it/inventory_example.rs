//! The example inventory in `inventory/` is valid and mirrors the platform of
//! the architecture page: a Core cluster with a VPS and a VDS worker pool,
//! Core-tier customers without nodes, and one Mesh and one Fleet customer with
//! three k3s servers and a VPS and a VDS agent pool each.
#![allow(clippy::unwrap_used)]

use kiwi_infra::inventory::{self, ClusterKind, NodeClass, PoolRole, Tier};
use std::path::Path;

fn example() -> inventory::Desired {
    match inventory::load(Path::new("inventory")) {
        Ok(d) => d,
        Err(e) => panic!("example inventory is invalid:\n{e}"),
    }
}

#[test]
fn example_inventory_mirrors_the_platform() {
    let desired = example();
    let core = desired.cluster("core").unwrap();
    assert!(
        matches!(&core.kind, ClusterKind::Kubeadm { control_plane, .. } if control_plane.len() == 3)
    );
    let classes: Vec<_> = core.pools.iter().map(|p| (p.role, p.class)).collect();
    assert_eq!(
        classes,
        [
            (PoolRole::KubeadmWorker, NodeClass::Vps),
            (PoolRole::KubeadmWorker, NodeClass::Vds)
        ]
    );

    let tiers: Vec<_> = desired.customers.iter().map(|c| c.tier).collect();
    assert_eq!(tiers.iter().filter(|t| **t == Tier::Core).count(), 2);
    for tier in [Tier::Mesh, Tier::Fleet] {
        let cluster = desired.clusters.iter().find(|c| c.tier == tier).unwrap();
        assert!(matches!(cluster.kind, ClusterKind::K3s { .. }));
        let server = &cluster.pools[0];
        assert_eq!((server.role, server.count), (PoolRole::K3sServer, 3));
        let agents: Vec<_> = cluster.pools[1..]
            .iter()
            .map(|p| (p.role, p.class))
            .collect();
        assert_eq!(
            agents,
            [
                (PoolRole::K3sAgent, NodeClass::Vps),
                (PoolRole::K3sAgent, NodeClass::Vds)
            ]
        );
    }
    let instances: u32 = desired
        .clusters
        .iter()
        .flat_map(|c| &c.pools)
        .map(|p| p.count)
        .sum();
    assert_eq!(instances, 15);
}
