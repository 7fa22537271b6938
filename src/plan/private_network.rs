//! Contabo private networks as the planner sees them: the observed network
//! of each cluster that asks for one (`private_network = true`), and the
//! one rule for a node's *cluster-traffic address*.
//!
//! A cluster with the switch gets one private network, named
//! [`network_name`] (`kiwi-<cluster>`). Its instances are ordered with the
//! private-networking add-on, assigned to the network, and reinstalled,
//! because Contabo wires a member's private NIC only on a reinstall (the
//! member's status is `reinstall` until then). From then on the node's
//! cluster traffic (k3s `node-ip`, the `server:` URL others join, the
//! firewall's peer set) uses its private IPv4 address; its public address
//! stays its `node-external-ip` and the address kiwi-infra reaches it at.

use super::observed::{Instance, InstanceId, Observed};
use crate::inventory::{ClusterSpec, Desired};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The name of a cluster's private network: `kiwi-<cluster>`.
pub fn network_name(cluster: &str) -> String {
    format!("kiwi-{cluster}")
}

/// A private network as observed (only those named like a cluster's
/// network, and only when some cluster uses one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateNetwork {
    /// `privateNetworkId`.
    pub id: i64,
    /// Its name (`kiwi-<cluster>`).
    pub name: String,
    /// How many networks of the account carry this name: more than one,
    /// and kiwi-infra cannot tell which is the cluster's (nothing is
    /// planned on any of them). Absent means one.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub same_name: u32,
    /// Its members.
    #[serde(default)]
    pub members: Vec<NetworkMember>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// An instance in a private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkMember {
    /// The instance.
    pub instance: InstanceId,
    /// Its private address, parsed where it entered (observe refuses an
    /// address that does not parse, naming the field).
    pub private_ipv4: Option<Ipv4Addr>,
    /// Whether its private NIC works.
    pub status: MemberStatus,
}

/// A member's state (the spec's `Instances.status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// `ok`: the private NIC works.
    Ok,
    /// `reinstall`: assigned, the NIC works after the instance's next reinstall.
    Reinstall,
    /// Any other value (`restart`, `installing`, `reinstallation failed`,
    /// or one the spec does not list): not usable yet.
    Pending(String),
}

impl MemberStatus {
    /// Parses the API's spelling.
    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => MemberStatus::Ok,
            "reinstall" => MemberStatus::Reinstall,
            other => MemberStatus::Pending(other.to_string()),
        }
    }
}

impl PrivateNetwork {
    /// The membership of `instance`, if it is a member.
    pub fn member(&self, instance: InstanceId) -> Option<&NetworkMember> {
        self.members.iter().find(|m| m.instance == instance)
    }
}

impl NetworkMember {
    /// The private address, once the NIC works (status `ok`).
    pub fn wired_ipv4(&self) -> Option<Ipv4Addr> {
        (self.status == MemberStatus::Ok)
            .then_some(self.private_ipv4)
            .flatten()
    }
}

impl Observed {
    /// The private network of `cluster` (by name), when exactly one exists.
    pub fn private_network_of(&self, cluster: &str) -> Option<&PrivateNetwork> {
        self.private_networks
            .get(&network_name(cluster))
            .filter(|n| n.same_name == 1)
    }
}

/// The address a node of `cluster` on `instance` uses for cluster traffic
/// *now*: for a cluster with `private_network = true`, the instance's
/// private IPv4 once its membership in the cluster's network is `ok`
/// (`None` before: it has no cluster-traffic address yet); for any other
/// cluster, its public IPv4. The node steps take the private address from
/// [`private_addresses`] (a member whose NIC a later step of the plan wires
/// included), and the firewall admits a member's public and private
/// addresses both (the planner's `cluster_addresses`).
pub fn cluster_address(
    observed: &Observed,
    instance: &Instance,
    cluster: &ClusterSpec,
) -> Option<Ipv4Addr> {
    if !cluster.private_network {
        return instance.ipv4;
    }
    observed
        .private_network_of(&cluster.name)?
        .member(instance.id)?
        .wired_ipv4()
}

/// The private address of every slot whose instance is a member of its
/// cluster's private network, by slot name: what node steps use for
/// `node-ip` and to join through existing nodes. Members whose NIC does not
/// work yet are included: Contabo gives the address at assignment and keeps
/// it, and the plan makes every join wait for the reinstall that wires the
/// NIC (an apply resumed between the two needs the address too). For the
/// address a node uses *now*, see [`cluster_address`].
pub fn private_addresses(desired: &Desired, observed: &Observed) -> BTreeMap<String, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for (cluster, slot) in desired.slot_names() {
        if !cluster.private_network {
            continue;
        }
        let Some(net) = observed.private_network_of(&cluster.name) else {
            continue;
        };
        let wired: Vec<Ipv4Addr> = observed
            .instances
            .iter()
            .filter(|i| i.display_name == slot && !i.is_cancelled())
            .filter_map(|i| net.member(i.id).and_then(|m| m.private_ipv4))
            .collect();
        // Two live machines of one slot in the network: which one is the
        // node is not known here; use neither.
        if let [ip] = wired[..] {
            out.insert(slot, ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_status_parses_the_spec_values_and_keeps_others() {
        assert_eq!(MemberStatus::parse("ok"), MemberStatus::Ok);
        assert_eq!(MemberStatus::parse("reinstall"), MemberStatus::Reinstall);
        assert_eq!(
            MemberStatus::parse("reinstallation failed"),
            MemberStatus::Pending("reinstallation failed".into())
        );
    }

    #[test]
    fn a_member_has_a_cluster_address_only_once_its_nic_works() {
        let mut m = NetworkMember {
            instance: InstanceId(1),
            private_ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
            status: MemberStatus::Reinstall,
        };
        assert_eq!(m.wired_ipv4(), None);
        m.status = MemberStatus::Ok;
        assert_eq!(m.wired_ipv4(), Some(Ipv4Addr::new(10, 0, 0, 2)));
    }
}
