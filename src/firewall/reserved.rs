//! What the inventory may not ask the firewall to open to anyone: the ports
//! it keeps for the operator networks and for the cluster's members (SSH,
//! the API, etcd, the kubelet, the CNI), and pod and service networks that
//! are not private. A public port `22` or a cluster network `0.0.0.0/0`
//! would quietly undo what the firewall is for, so the inventory refuses
//! them with the reason, instead of rendering a ruleset that admits
//! strangers.
//!
//! The reserved ports are derived from [`FirewallShape::for_node`], the one
//! place that says which ports each role opens, so a port added there is
//! reserved here without a second list.

use super::{
    ClusterFirewall, FirewallShape, NodeRole, PortRange, PortRule, Protocol, API_PORT,
    KUBELET_PORT, SSH_PORT,
};
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// A port the firewall opens only to the operator networks or to the
/// cluster's members, with what uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedPort {
    /// The protocol and ports.
    pub rule: PortRule,
    /// What listens there, for people: `SSH`, `etcd`, `the CNI (udp/8472)`.
    pub what: String,
}

/// The ports that nodes of `roles` open to operators or members in a
/// cluster whose CNI uses `cni` (named `cni_name` in messages). Kubernetes'
/// NodePort range is not among them: publishing a NodePort service is a
/// public port's normal use.
pub fn reserved_ports(roles: &[NodeRole], cni: &[PortRule], cni_name: &str) -> Vec<ReservedPort> {
    let settings = ClusterFirewall {
        public: Vec::new(),
        cni: cni.to_vec(),
        cluster_networks: Vec::new(),
    };
    let mut rules: BTreeSet<PortRule> = BTreeSet::new();
    for role in roles {
        let shape = FirewallShape::for_node(*role, &settings, &[], BTreeSet::new());
        let tcp = shape
            .operator_tcp
            .iter()
            .chain(&shape.peer_tcp)
            .map(|r| PortRule::tcp(*r));
        let udp = shape.peer_udp.iter().map(|r| PortRule::udp(*r));
        rules.extend(tcp.chain(udp).filter(|r| r.ports != PortRange::NODE_PORTS));
    }
    // Merged ranges may join a CNI port with a neighbour; name each piece
    // by the first thing it holds.
    rules
        .into_iter()
        .map(|rule| ReservedPort {
            what: name_of(rule, cni, cni_name),
            rule,
        })
        .collect()
}

/// The first reserved port `public` overlaps, if any.
pub fn overlap<'a>(public: &PortRule, reserved: &'a [ReservedPort]) -> Option<&'a ReservedPort> {
    reserved.iter().find(|r| {
        r.rule.protocol == public.protocol
            && r.rule.ports.start() <= public.ports.end()
            && public.ports.start() <= r.rule.ports.end()
    })
}

fn name_of(rule: PortRule, cni: &[PortRule], cni_name: &str) -> String {
    let covers = |port: u16| rule.ports.start() <= port && port <= rule.ports.end();
    let known: [(Protocol, u16, &str); 7] = [
        (Protocol::Tcp, SSH_PORT, "SSH"),
        (Protocol::Tcp, API_PORT, "the Kubernetes API"),
        (Protocol::Tcp, PortRange::ETCD.start(), "etcd"),
        (Protocol::Tcp, KUBELET_PORT, "the kubelet"),
        (Protocol::Tcp, 10256, "kube-proxy's health check"),
        (Protocol::Tcp, 10257, "kube-controller-manager"),
        (Protocol::Tcp, 10259, "kube-scheduler"),
    ];
    if let Some((_, _, name)) = known
        .iter()
        .find(|(p, port, _)| *p == rule.protocol && covers(*port))
    {
        return (*name).to_string();
    }
    if cni.iter().any(|c| {
        c.protocol == rule.protocol
            && c.ports.start() <= rule.ports.end()
            && rule.ports.start() <= c.ports.end()
    }) {
        return cni_name.to_string();
    }
    "an internal port".to_string()
}

/// The networks pod and service networks live in: RFC 1918's private
/// ranges and RFC 6598's shared address space (some CNIs use it).
const PRIVATE: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
];

/// True when `net` lies inside one private range ([`PRIVATE`]). A cluster
/// network is admitted to the kubelet and the API, and in the prerouting
/// chain to everything, so a public one would admit strangers.
pub fn is_private_network(net: Ipv4Net) -> bool {
    PRIVATE
        .iter()
        .any(|(addr, len)| Ipv4Net::new(*addr, *len).is_ok_and(|private| private.contains(&net)))
}

/// The private ranges, for messages: `10.0.0.0/8, 172.16.0.0/12, …`.
pub fn private_ranges() -> String {
    PRIVATE
        .iter()
        .map(|(a, l)| format!("{a}/{l}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::firewall::FlannelBackend;

    fn tcp(a: u16, b: u16) -> PortRule {
        PortRule::tcp(PortRange::new(a, b).unwrap())
    }

    fn udp(a: u16, b: u16) -> PortRule {
        PortRule::udp(PortRange::new(a, b).unwrap())
    }

    #[test]
    fn k3s_keeps_ssh_the_api_etcd_the_kubelet_and_flannel_for_operators_and_members() {
        let wg = FlannelBackend::WireguardNative;
        let reserved = reserved_ports(
            &[NodeRole::K3sServer, NodeRole::K3sAgent],
            &wg.ports(),
            "flannel (wireguard-native)",
        );
        let named = |rule: PortRule| overlap(&rule, &reserved).map(|r| r.what.clone());
        assert_eq!(named(tcp(22, 22)).as_deref(), Some("SSH"));
        assert_eq!(named(tcp(1, 65535)).as_deref(), Some("SSH"));
        assert_eq!(named(tcp(2380, 2380)).as_deref(), Some("etcd"));
        assert_eq!(
            named(tcp(6443, 6443)).as_deref(),
            Some("the Kubernetes API")
        );
        assert_eq!(named(tcp(10250, 10250)).as_deref(), Some("the kubelet"));
        assert_eq!(
            named(udp(51820, 51820)).as_deref(),
            Some("flannel (wireguard-native)")
        );
        for free in [
            tcp(80, 80),
            tcp(443, 443),
            udp(51830, 51830),
            udp(8472, 8472),
            udp(22, 22),
        ] {
            assert_eq!(named(free), None, "{free}");
        }
    }

    #[test]
    fn core_keeps_the_control_plane_ports_and_the_cni_but_not_the_node_port_range() {
        let cni = [udp(4789, 4789), tcp(179, 179)];
        let reserved = reserved_ports(
            &[NodeRole::KubeadmControlPlane, NodeRole::KubeadmWorker],
            &cni,
            "the CNI",
        );
        let named = |rule: PortRule| overlap(&rule, &reserved).map(|r| r.what.clone());
        assert_eq!(named(tcp(179, 179)).as_deref(), Some("the CNI"));
        assert_eq!(named(udp(4789, 4789)).as_deref(), Some("the CNI"));
        assert_eq!(
            named(tcp(10257, 10259)).as_deref(),
            Some("kube-controller-manager")
        );
        assert_eq!(
            named(tcp(10256, 10256)).as_deref(),
            Some("kube-proxy's health check")
        );
        assert_eq!(named(tcp(30080, 30080)), None);
        assert_eq!(named(udp(30000, 32767)), None);
    }

    /// Every port a role opens to operators or members (but the NodePort
    /// range) is reserved: nothing `for_node` adds can be opened to anyone
    /// by a public port.
    #[test]
    fn every_port_opened_to_operators_or_members_is_reserved() {
        let cni = FlannelBackend::Vxlan.ports();
        for role in [
            NodeRole::K3sServer,
            NodeRole::K3sAgent,
            NodeRole::KubeadmControlPlane,
            NodeRole::KubeadmWorker,
        ] {
            let reserved = reserved_ports(&[role], &cni, "cni");
            let settings = ClusterFirewall {
                public: vec![],
                cni: cni.clone(),
                cluster_networks: vec![],
            };
            let shape = FirewallShape::for_node(role, &settings, &[], BTreeSet::new());
            let opened = shape
                .operator_tcp
                .iter()
                .chain(&shape.peer_tcp)
                .map(|r| PortRule::tcp(*r))
                .chain(shape.peer_udp.iter().map(|r| PortRule::udp(*r)))
                .filter(|r| r.ports != PortRange::NODE_PORTS);
            for rule in opened {
                for port in [rule.ports.start(), rule.ports.end()] {
                    let one = PortRule {
                        protocol: rule.protocol,
                        ports: PortRange::single(port),
                    };
                    assert!(overlap(&one, &reserved).is_some(), "{role:?}: {one}");
                }
            }
        }
    }

    #[test]
    fn only_networks_inside_a_private_range_are_private() {
        for private in [
            "10.42.0.0/16",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.1.0/24",
            "100.64.0.0/10",
        ] {
            assert!(is_private_network(private.parse().unwrap()), "{private}");
        }
        for public in [
            "0.0.0.0/0",
            "8.0.0.0/7",
            "10.0.0.0/7",
            "172.0.0.0/8",
            "198.51.100.0/24",
            "100.0.0.0/8",
        ] {
            assert!(!is_private_network(public.parse().unwrap()), "{public}");
        }
    }
}
