//! The host firewall every node kiwi-infra orders or reinstalls is born
//! with: what it admits ([`FirewallShape`]), the typed model of the table
//! that admits it ([`Ruleset::of`]: sets, chains, every rule), the
//! nftables text written from that model ([`render`]), a reader of what a
//! node's nftables reports into the same model ([`parse_listing`]), and
//! their comparison ([`differences`]), so what is written and what is
//! checked cannot disagree.
//!
//! Contabo has no firewall API, so the firewall lives on the node, in one
//! nftables table of kiwi-infra's own, `table inet kiwi`. k3s, kube-proxy
//! and the CNI keep their rules in their own tables; a packet passes only if
//! no base chain drops it, so ours only narrows what reaches the node and
//! never touches theirs (no `flush ruleset`, no forward chain: k3s owns
//! forwarding). Two chains: `input` for what is delivered to the host, and
//! `prerouting`, before any DNAT, for what kube-proxy, servicelb or a
//! hostPort would forward to a pod from the node's own addresses. The ruleset is written to replace only our table
//! atomically: `table` / `delete table` / `table { … }` in one file, which
//! `nft -f` applies as one transaction whether or not the table exists.
//!
//! The module is pure (no I/O): the planner puts a node's shape into its
//! order or reinstall step, cloud-init writes the rendered text, and
//! `observe` and the firewall step read a node's live table back with
//! [`parse_listing`]. Every value is typed (addresses, networks, port
//! numbers), so nothing from the inventory or a saved plan can add nftables
//! syntax to the ruleset.

mod listing;
mod ports;
mod reserved;
mod ruleset;

pub use listing::{parse_listing, ListingError, ObservedFirewall};
pub use ports::{FlannelBackend, PortRange, PortRule, Protocol};
pub use reserved::{is_private_network, overlap, private_ranges, reserved_ports, ReservedPort};
pub use ruleset::{
    differences, priority_text, BaseChain, Chain, CtState, Family, L4Proto, Match, Rule, Ruleset,
    SetSpec, SetType, Sources, Verdict, Word, PRIORITY_DSTNAT, PRIORITY_FILTER,
};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The nftables table kiwi-infra owns on every node (family `inet`).
pub const TABLE: &str = "kiwi";
/// The named set of the operator's IPv4 networks (SSH and the API).
pub const OPERATORS4: &str = "operators4";
/// The named set of the operator's IPv6 networks (SSH and the API).
pub const OPERATORS6: &str = "operators6";
/// The named set of the cluster members' cluster-traffic addresses.
pub const PEERS4: &str = "peers4";
/// Where Debian's and Ubuntu's `nftables.service` loads its ruleset from.
pub const RULESET_PATH: &str = "/etc/nftables.conf";

/// SSH, open to the operator networks on every node.
pub const SSH_PORT: u16 = 22;
/// The Kubernetes API (and k3s' supervisor) port.
pub const API_PORT: u16 = 6443;
/// The kubelet API (logs, exec, metrics-server).
pub const KUBELET_PORT: u16 = 10250;

/// k3s' default pod network (`cluster-cidr`); kiwi-infra does not change it.
pub const K3S_POD_NETWORK: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 42, 0, 0), 16) {
    Ok(net) => net,
    Err(_) => panic!("10.42.0.0/16 is a network"),
};
/// k3s' default service network (`service-cidr`).
pub const K3S_SERVICE_NETWORK: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 43, 0, 0), 16) {
    Ok(net) => net,
    Err(_) => panic!("10.43.0.0/16 is a network"),
};

/// What a node is in its cluster, for the ports its firewall opens to the
/// cluster's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// A k3s server (API, embedded etcd, kubelet).
    K3sServer,
    /// A k3s agent (kubelet).
    K3sAgent,
    /// A kubeadm control-plane node of the Core cluster.
    KubeadmControlPlane,
    /// A kubeadm worker of the Core cluster.
    KubeadmWorker,
}

/// The firewall settings of one cluster, from the inventory
/// (`[firewall]` in a customer file, `[core.firewall]` for Core, and
/// `[k3s] flannel_backend`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFirewall {
    /// Ports open to anyone (ingress 80/443, a customer's WireGuard port).
    pub public: Vec<PortRule>,
    /// The CNI's ports between members (Core: from the inventory; k3s:
    /// flannel's backend ports, see [`FlannelBackend::ports`]).
    pub cni: Vec<PortRule>,
    /// The pod and service networks, allowed to reach the host ports
    /// in-cluster clients use (the API through its service, the kubelet
    /// for metrics-server).
    pub cluster_networks: Vec<Ipv4Net>,
}

/// Everything one node's firewall admits; [`render`] turns it into
/// nftables text. Built by the planner from the inventory and the cluster's
/// known members; carried by the order and reinstall steps, so a saved plan
/// says exactly what the node's firewall will be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallShape {
    /// The operator's networks, allowed to reach [`Self::operator_tcp`].
    /// Empty: the inventory chose to leave those ports open to anyone
    /// (warned about by `validate` and `plan`).
    pub operator_networks: Vec<IpNet>,
    /// TCP ports for the operator: SSH, and the API where the node serves it.
    pub operator_tcp: Vec<PortRange>,
    /// The cluster members' addresses (the `peers4` set).
    pub peers: BTreeSet<Ipv4Addr>,
    /// TCP ports open to the members.
    pub peer_tcp: Vec<PortRange>,
    /// UDP ports open to the members.
    pub peer_udp: Vec<PortRange>,
    /// The pod and service networks of the cluster.
    pub cluster_networks: Vec<Ipv4Net>,
    /// TCP ports the pod and service networks may reach on the host.
    pub cluster_tcp: Vec<PortRange>,
    /// TCP ports open to anyone.
    pub public_tcp: Vec<PortRange>,
    /// UDP ports open to anyone.
    pub public_udp: Vec<PortRange>,
}

impl FirewallShape {
    /// The shape of a node of `role` in a cluster with `cluster`'s settings,
    /// admitting `peers` as members and `operator_networks` to SSH and the
    /// API. The lists are normalised (sorted, overlaps merged), so two
    /// shapes that admit the same traffic are equal.
    pub fn for_node(
        role: NodeRole,
        cluster: &ClusterFirewall,
        operator_networks: &[IpNet],
        peers: BTreeSet<Ipv4Addr>,
    ) -> FirewallShape {
        let one = PortRange::single;
        let (mut operator_tcp, mut peer_tcp, mut cluster_tcp) =
            (vec![one(SSH_PORT)], vec![], vec![]);
        let mut peer_udp = Vec::new();
        match role {
            // k3s' "Inbound Rules for K3s Nodes": the supervisor and API,
            // embedded etcd between servers, the kubelet on every node.
            NodeRole::K3sServer => {
                operator_tcp.push(one(API_PORT));
                peer_tcp.extend([PortRange::ETCD, one(API_PORT), one(KUBELET_PORT)]);
                cluster_tcp.extend([one(API_PORT), one(KUBELET_PORT)]);
            }
            NodeRole::K3sAgent => {
                peer_tcp.push(one(KUBELET_PORT));
                cluster_tcp.push(one(KUBELET_PORT));
            }
            // Kubernetes' "Ports and Protocols".
            NodeRole::KubeadmControlPlane => {
                operator_tcp.push(one(API_PORT));
                peer_tcp.extend([
                    one(API_PORT),
                    PortRange::ETCD,
                    one(KUBELET_PORT),
                    one(10257),
                    one(10259),
                ]);
                cluster_tcp.extend([one(API_PORT), one(KUBELET_PORT)]);
            }
            NodeRole::KubeadmWorker => {
                peer_tcp.extend([one(KUBELET_PORT), one(10256), PortRange::NODE_PORTS]);
                peer_udp.push(PortRange::NODE_PORTS);
                cluster_tcp.push(one(KUBELET_PORT));
            }
        }
        for rule in &cluster.cni {
            match rule.protocol {
                Protocol::Tcp => peer_tcp.push(rule.ports),
                Protocol::Udp => peer_udp.push(rule.ports),
            }
        }
        let by = |p: Protocol| {
            cluster
                .public
                .iter()
                .filter(move |r| r.protocol == p)
                .map(|r| r.ports)
                .collect::<Vec<_>>()
        };
        FirewallShape {
            operator_networks: IpNet::aggregate(&operator_networks.to_vec()),
            operator_tcp: PortRange::merged(operator_tcp),
            peers,
            peer_tcp: PortRange::merged(peer_tcp),
            peer_udp: PortRange::merged(peer_udp),
            cluster_networks: Ipv4Net::aggregate(&cluster.cluster_networks),
            cluster_tcp: PortRange::merged(cluster_tcp),
            public_tcp: PortRange::merged(by(Protocol::Tcp)),
            public_udp: PortRange::merged(by(Protocol::Udp)),
        }
    }

    /// One line for people: `ssh/api from 2 operator networks, 3 peers,
    /// public tcp 80,443`.
    pub fn summary(&self) -> String {
        let operators = match self.operator_networks.len() {
            _ if admits_anyone(&self.operator_networks) => "ssh/api OPEN TO ANYONE".to_string(),
            1 => "ssh/api from 1 operator network".to_string(),
            n => format!("ssh/api from {n} operator networks"),
        };
        let peers = match self.peers.len() {
            1 => "1 peer".to_string(),
            n => format!("{n} peers"),
        };
        let mut out = format!("{operators}, {peers}");
        for (name, ports) in [("tcp", &self.public_tcp), ("udp", &self.public_udp)] {
            if !ports.is_empty() {
                let _ = write!(out, ", public {name} {}", list(ports, ","));
            }
        }
        if self.public_tcp.is_empty() && self.public_udp.is_empty() {
            out.push_str(", no public ports");
        }
        out
    }
}

/// True when `operator_networks` lets anyone reach the operator ports: none
/// named (`operator_networks = []`, the explicit choice) or one that is a
/// whole address family (`0.0.0.0/0`, `::/0`), which means the same.
/// Networks that together cover a whole family (`0.0.0.0/1` and
/// `128.0.0.0/1`) count as one.
pub fn admits_anyone(operator_networks: &[IpNet]) -> bool {
    open_to_anyone_because(operator_networks).is_some()
}

/// Why `operator_networks` let anyone reach the operator ports, in the
/// operator's terms (`operator_networks = []`, `0.0.0.0/0 in
/// operator_networks`, `operator_networks that together make 0.0.0.0/0`);
/// `None` when they do not.
pub fn open_to_anyone_because(operator_networks: &[IpNet]) -> Option<String> {
    if operator_networks.is_empty() {
        return Some("operator_networks = []".to_string());
    }
    let whole = IpNet::aggregate(&operator_networks.to_vec())
        .into_iter()
        .filter(|n| n.prefix_len() == 0)
        .collect::<Vec<_>>();
    let first = whole.first()?;
    let named = whole
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    Some(if operator_networks.contains(first) && whole.len() == 1 {
        format!("{named} in operator_networks")
    } else {
        format!("operator_networks that together make {named}")
    })
}

/// More IPv4 addresses than this (a /8) are "a very large part of the
/// internet" for operator networks.
const WIDE_IPV4: u128 = 1 << 24;
/// As many IPv6 addresses as this (a /16: all of 6to4's `2002::/16`, which
/// holds a network for every IPv4 address) or more are too.
const WIDE_IPV6: u128 = 1 << 112;

/// When `operator_networks` are not [`admits_anyone`] but still cover a
/// very large part of the internet (more than a /8 of IPv4, a /16 of IPv6,
/// counted over all of them together): how much, in the operator's terms
/// ("33554432 IPv4 addresses (0.78% of all)").
pub fn wide_operator_networks(operator_networks: &[IpNet]) -> Option<String> {
    if admits_anyone(operator_networks) {
        return None;
    }
    let mut v4: u128 = 0;
    let mut v6: u128 = 0;
    for net in IpNet::aggregate(&operator_networks.to_vec()) {
        match net {
            IpNet::V4(n) => v4 += 1u128 << (32 - u32::from(n.prefix_len())),
            // prefix_len > 0 here, so the shift stays below 128.
            IpNet::V6(n) => v6 += 1u128 << (128 - u32::from(n.prefix_len())),
        }
    }
    let mut parts = Vec::new();
    if v4 > WIDE_IPV4 {
        #[allow(clippy::cast_precision_loss)]
        let share = v4 as f64 / (1u64 << 32) as f64 * 100.0;
        parts.push(format!("{v4} IPv4 addresses ({share:.2}% of all)"));
    }
    if v6 >= WIDE_IPV6 {
        let bits = 127 - v6.leading_zeros();
        let shown = if v6.is_power_of_two() {
            format!("2^{bits}")
        } else {
            format!("more than 2^{bits}")
        };
        parts.push(format!(
            "{shown} IPv6 addresses (as many as a /{} or more)",
            128 - bits
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// The nftables ruleset of a node: `nft -f` loads it, replacing only
/// `table inet kiwi` (see the module comment). Printable ASCII, indented
/// with spaces, so it fits a cloud-init literal block.
pub fn render(shape: &FirewallShape) -> String {
    let model = Ruleset::of(shape);
    let operators = IpNet::aggregate(&shape.operator_networks);
    let elements = |name: &str| -> Vec<String> {
        match name {
            OPERATORS4 => operators
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)))
                .map(|n| ruleset::element(*n))
                .collect(),
            OPERATORS6 => operators
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)))
                .map(|n| ruleset::element(*n))
                .collect(),
            PEERS4 => shape.peers.iter().map(Ipv4Addr::to_string).collect(),
            _ => Vec::new(),
        }
    };

    let mut out = String::new();
    out.push_str(
        "# kiwi-infra's host firewall (docs/node-contract.md). Generated: kiwi-infra keeps\n\
         # it true, and a hand edit is reported as drift. Loading this file replaces only\n\
         # table inet kiwi, in one transaction; other tables (k3s, kube-proxy, the CNI)\n\
         # are left alone.\n",
    );
    let _ = writeln!(out, "table inet {TABLE}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    for (name, spec) in &model.sets {
        set(&mut out, name, spec, &elements(name));
    }
    for chain in &model.chains {
        let _ = write!(out, "{chain}");
    }
    out.push_str("}\n");
    out
}

/// An `nft -f` transaction that makes `peers4` hold exactly `peers`,
/// touching nothing else: the set is flushed and refilled in one
/// transaction, so no packet ever meets a half-updated set. For keeping a
/// running node's members true (issue 18, part B); the table must exist.
pub fn render_peer_set(peers: &BTreeSet<Ipv4Addr>) -> String {
    let mut out = format!("flush set inet {TABLE} {PEERS4}\n");
    if !peers.is_empty() {
        let list: Vec<String> = peers.iter().map(Ipv4Addr::to_string).collect();
        let _ = writeln!(
            out,
            "add element inet {TABLE} {PEERS4} {{ {} }}",
            list.join(", ")
        );
    }
    out
}

/// A named set; nftables refuses an empty `elements`, so an empty set has
/// none.
fn set(out: &mut String, name: &str, spec: &SetSpec, elements: &[String]) {
    let _ = writeln!(out, "  set {name} {{");
    let _ = writeln!(out, "    type {}", spec.kind);
    if !spec.flags.is_empty() {
        let flags: Vec<&str> = spec.flags.iter().map(String::as_str).collect();
        let _ = writeln!(out, "    flags {}", flags.join(", "));
    }
    if !elements.is_empty() {
        let _ = writeln!(out, "    elements = {{ {} }}", elements.join(", "));
    }
    out.push_str("  }\n");
}

fn list(ports: &[PortRange], sep: &str) -> String {
    PortRange::merged(ports.to_vec())
        .iter()
        .map(PortRange::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// What tests of the firewall's readers share: the shape of the captured
/// listing (`tests/fixtures/firewall/`).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    use ipnet::IpNet;
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    /// The listing nft printed for [`captured_shape`]'s ruleset.
    pub(crate) const CAPTURED: &str =
        include_str!("../../tests/fixtures/firewall/nft-list-table-inet-kiwi.json");

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The shape whose ruleset the fixture holds: a k3s server with
    /// wireguard-native, public 80/443, the k3s networks, IPv4 and IPv6
    /// operators and two peers.
    pub(crate) fn captured_shape() -> crate::firewall::FirewallShape {
        use crate::firewall::{
            ClusterFirewall, FirewallShape, FlannelBackend, NodeRole, PortRange, PortRule,
            K3S_POD_NETWORK, K3S_SERVICE_NETWORK,
        };
        FirewallShape::for_node(
            NodeRole::K3sServer,
            &ClusterFirewall {
                public: vec![
                    PortRule::tcp(PortRange::single(80)),
                    PortRule::tcp(PortRange::single(443)),
                ],
                cni: FlannelBackend::WireguardNative.ports(),
                cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
            },
            &[
                net("198.51.100.0/24"),
                net("192.0.2.7/32"),
                net("203.0.113.0/25"),
                net("2001:db8::/48"),
            ],
            BTreeSet::from([Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn k3s(backend: FlannelBackend) -> ClusterFirewall {
        ClusterFirewall {
            public: vec![
                PortRule::tcp(PortRange::single(80)),
                PortRule::tcp(PortRange::single(443)),
            ],
            cni: backend.ports(),
            cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_k3s_server_opens_etcd_the_api_and_wireguard_to_peers_only() {
        let shape = FirewallShape::for_node(
            NodeRole::K3sServer,
            &k3s(FlannelBackend::WireguardNative),
            &[net("198.51.100.0/24"), net("2001:db8::/48")],
            BTreeSet::from([Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)]),
        );
        let text = render(&shape);
        assert!(text.contains("policy drop;"), "{text}");
        assert!(
            text.contains("ip saddr @peers4 tcp dport { 2379-2380, 6443, 10250 } accept"),
            "{text}"
        );
        assert!(
            text.contains("ip saddr @peers4 udp dport { 51820-51821 } accept"),
            "{text}"
        );
        assert!(
            text.contains("ip saddr @operators4 tcp dport { 22, 6443 } accept"),
            "{text}"
        );
        assert!(text.contains("elements = { 2001:db8::/48 }"), "{text}");
        assert!(
            text.contains("elements = { 192.0.2.10, 192.0.2.11 }"),
            "{text}"
        );
        assert!(
            text.contains("\n    tcp dport { 80, 443 } accept\n"),
            "{text}"
        );
        assert!(!text.contains("8472"), "{text}");
        assert!(text
            .bytes()
            .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)));
    }

    #[test]
    fn an_empty_operator_list_opens_ssh_to_anyone_and_says_so() {
        let shape = FirewallShape::for_node(
            NodeRole::K3sAgent,
            &k3s(FlannelBackend::Vxlan),
            &[],
            BTreeSet::new(),
        );
        let text = render(&shape);
        assert!(text.contains("\n    tcp dport { 22 } accept\n"), "{text}");
        assert!(
            text.contains("ip saddr @peers4 udp dport { 8472 } accept"),
            "{text}"
        );
        assert!(shape.summary().contains("OPEN TO ANYONE"));
    }

    /// `0.0.0.0/0` or `::/0` among the operator networks admits anyone just
    /// as `[]` does: the plan's line for an order says so, not "from 1
    /// operator network".
    #[test]
    fn a_whole_address_family_as_operator_network_is_shown_as_open_to_anyone() {
        for open in ["0.0.0.0/0", "::/0"] {
            let shape = FirewallShape::for_node(
                NodeRole::K3sAgent,
                &k3s(FlannelBackend::Vxlan),
                &[net("198.51.100.0/24"), net(open)],
                BTreeSet::new(),
            );
            assert!(
                shape.summary().starts_with("ssh/api OPEN TO ANYONE"),
                "{open}: {}",
                shape.summary()
            );
        }
        let named = FirewallShape::for_node(
            NodeRole::K3sAgent,
            &k3s(FlannelBackend::Vxlan),
            &[net("198.51.100.0/24")],
            BTreeSet::new(),
        );
        assert!(named
            .summary()
            .starts_with("ssh/api from 1 operator network"));
    }

    #[test]
    fn overlapping_networks_and_ports_are_merged_so_nft_accepts_the_set() {
        let shape = FirewallShape::for_node(
            NodeRole::KubeadmWorker,
            &ClusterFirewall {
                public: vec![
                    PortRule::tcp(PortRange::new(80, 90).unwrap()),
                    PortRule::tcp(PortRange::single(85)),
                ],
                cni: vec![PortRule::tcp(PortRange::single(10250))],
                cluster_networks: vec![],
            },
            &[
                net("198.51.100.0/24"),
                net("198.51.100.128/25"),
                net("192.0.2.1/24"),
            ],
            BTreeSet::new(),
        );
        assert_eq!(
            shape.operator_networks,
            vec![net("192.0.2.0/24"), net("198.51.100.0/24")]
        );
        assert_eq!(shape.public_tcp, vec![PortRange::new(80, 90).unwrap()]);
        assert_eq!(
            shape.summary(),
            "ssh/api from 2 operator networks, 0 peers, public tcp 80-90"
        );
    }
}
