//! Keeping every node's host firewall true (issue 18, part B): each node of
//! a cluster admits exactly the cluster's members, the inventory's operator
//! networks and ports. Planned after every other step of the plan, since it
//! follows them: a node this plan orders becomes a member once its wait
//! finds its address, and a node this plan removes stops being one after
//! its removal.
//!
//! The rules, per cluster (observed clusters, and new k3s clusters none of
//! whose machines has an address yet; another unobserved cluster's members
//! are unknown, so its firewalls stay unverified):
//! - members: every slot's node addresses (see [`Planner::cluster_addresses`]),
//!   the Core control plane's addresses from the inventory, and the address
//!   of every node the cluster lists (a node joined by hand, a node this
//!   plan does not remove: never cut off by a firewall change);
//! - a slot this plan orders has no address yet: it is a *pending* peer,
//!   named by slot; the step depends on its wait and the executor adds the
//!   address the wait found;
//! - a step `firewall:<node>` when the node's observed table differs from
//!   what it should admit now (members, plus nodes this plan removes, which
//!   are still members until their removal), or has pending peers; every
//!   join of the cluster depends on all of these, so no node joins before
//!   every member admits it;
//! - a step `firewall-after-removal:<node>` dropping the nodes this plan
//!   removes, after their removal steps (gated with them: a removal held
//!   back keeps the peer admitted);
//! - `protected` clusters: the same. A firewall step never drops a member
//!   (only addresses that are no node of the cluster, or nodes after their
//!   own, gated, removal), so it is not destructive; a protected cluster
//!   plans no removals, so its nodes stay admitted.
//! - k3s: the firewall opens the ports of the backend the cluster's
//!   servers run, never the inventory's if they differ (that is a warning
//!   with the migration, see [`Warning::FlannelBackendDiffers`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::Planner;
use crate::firewall::{
    differences, overlap, reserved_ports, ClusterFirewall, FirewallShape, FlannelBackend, NodeRole,
    PortRule, Ruleset,
};
use crate::inventory::{slot_name, ClusterKind, ClusterSpec};
use crate::plan::observed::NodeName;
use crate::plan::observed::{ClusterObservation, NodeFirewall, ObservedBackend};
use crate::plan::steps::{SetFirewall, Step, StepId, StepKind, Warning};

/// The members of one cluster, as this plan knows them.
struct Members {
    /// Addresses known at plan time.
    known: BTreeSet<Ipv4Addr>,
    /// Slots whose address the plan learns from their wait.
    pending: BTreeSet<String>,
    /// Nodes this plan removes: address and the step after which each is
    /// gone from the cluster.
    leaving: BTreeMap<Ipv4Addr, (String, StepId)>,
}

impl<'a> Planner<'a> {
    /// A member's cluster-traffic addresses, as the planner knows them
    /// (`Planner::addresses`: its public IPv4 address and, in a cluster with
    /// a private network, its private one; the same the firewall of a new
    /// node admits). Empty when none is known yet.
    pub(super) fn cluster_addresses(&self, slot: &str) -> Vec<Ipv4Addr> {
        self.addresses.get(slot).cloned().unwrap_or_default()
    }

    /// The firewall steps of every observed cluster (see the module
    /// comment), and the join dependencies on them.
    pub(super) fn firewalls(&mut self) {
        let mut moved = false;
        let desired = self.desired;
        for cluster in &desired.clusters {
            moved |= self.cluster_firewalls(cluster);
        }
        if moved {
            self.steps = super::dependencies_first(std::mem::take(&mut self.steps));
        }
    }

    /// The flannel backend a k3s cluster's servers run: `Ok(None)` when
    /// none was read (a new cluster: the inventory's applies), `Err` when
    /// they disagree or run one kiwi-infra does not know (warned about).
    fn running_backend(
        &mut self,
        cluster: &ClusterSpec,
        observation: &ClusterObservation,
        wanted: FlannelBackend,
    ) -> Result<Option<FlannelBackend>, ()> {
        let mut seen: Vec<&ObservedBackend> = Vec::new();
        for backend in observation.flannel_backends.values() {
            if !seen.contains(&backend) {
                seen.push(backend);
            }
        }
        let mut seen = seen.into_iter();
        match (seen.next(), seen.next()) {
            (None, _) => Ok(None),
            (Some(ObservedBackend::Known(running)), None) => {
                if *running != wanted {
                    self.warnings.push(Warning::FlannelBackendDiffers {
                        cluster: cluster.name.clone(),
                        running: Some(running.as_str().to_string()),
                        wanted,
                    });
                }
                Ok(Some(*running))
            }
            (Some(ObservedBackend::Other(name)), None) => {
                self.warnings.push(Warning::FlannelBackendDiffers {
                    cluster: cluster.name.clone(),
                    running: name.map(|n| n.as_str().to_string()),
                    wanted,
                });
                Err(())
            }
            (Some(_), Some(_)) => {
                let servers = observation
                    .flannel_backends
                    .iter()
                    .map(|(node, b)| {
                        let name = match b {
                            ObservedBackend::Known(k) => k.as_str().to_string(),
                            ObservedBackend::Other(Some(w)) => w.as_str().to_string(),
                            ObservedBackend::Other(None) => "?".to_string(),
                        };
                        (node.clone(), name)
                    })
                    .collect();
                self.warnings.push(Warning::FlannelBackendsMixed {
                    cluster: cluster.name.clone(),
                    servers,
                });
                Err(())
            }
        }
    }

    /// The firewall settings of `cluster`'s nodes: the inventory's, with
    /// the CNI ports of the flannel backend its servers run when they agree
    /// on one (a node born into a running vxlan cluster must admit vxlan).
    pub(super) fn firewall_settings(&self, cluster: &ClusterSpec) -> ClusterFirewall {
        let (settings, name) = match (&cluster.kind, self.backend_for_new_servers(cluster)) {
            (ClusterKind::K3s { .. }, Some(backend)) => (
                with_backend(cluster.firewall.clone(), backend),
                flannel_name(backend),
            ),
            _ => (cluster.firewall.clone(), CORE_CNI.to_string()),
        };
        // Never born opening a kept port to anyone (the plan warns of it
        // with the cluster's firewall steps).
        without_reserved(cluster, settings, &name).0
    }

    /// The backend new servers of `cluster` are configured with: the one
    /// its servers run, else the inventory's. Never a mix.
    pub(super) fn backend_for_new_servers(&self, cluster: &ClusterSpec) -> Option<FlannelBackend> {
        let ClusterKind::K3s {
            flannel_backend, ..
        } = &cluster.kind
        else {
            return None;
        };
        let mut running: Vec<FlannelBackend> = Vec::new();
        let observed = self.observed.cluster(&cluster.name);
        for backend in observed.iter().flat_map(|o| o.flannel_backends.values()) {
            if let ObservedBackend::Known(k) = backend {
                if !running.contains(k) {
                    running.push(*k);
                }
            }
        }
        match running.len() {
            1 => running.into_iter().next(),
            _ => Some(*flannel_backend),
        }
    }

    fn members(&self, cluster: &ClusterSpec, observation: &ClusterObservation) -> Members {
        let mut leaving: BTreeMap<String, StepId> = BTreeMap::new();
        for step in self
            .steps
            .iter()
            .filter(|s| s.cluster.as_deref() == Some(&cluster.name))
        {
            match &step.kind {
                StepKind::DeleteNode { node } => {
                    leaving.insert(node.0.clone(), step.id.clone());
                }
                StepKind::CancelInstance { instance, .. } => {
                    leaving
                        .entry(instance.name.clone())
                        .or_insert_with(|| step.id.clone());
                }
                _ => {}
            }
        }
        let mut known = BTreeSet::new();
        let mut pending = BTreeSet::new();
        for slot in cluster.slot_names() {
            let ips = self.cluster_addresses(&slot);
            let assigned_here = self.private_assignment(&slot).is_some();
            if !ips.is_empty() && !assigned_here {
                known.extend(ips);
            } else if assigned_here || (self.waits.contains_key(&slot) && self.may_run(&slot)) {
                // Its (private) address comes from this plan's steps.
                known.extend(ips);
                pending.insert(slot);
            }
        }
        known.extend(cluster.control_plane_ipv4());
        for node in &observation.nodes {
            if !leaving.contains_key(&node.name.0) {
                known.extend(node.addresses.iter().copied());
            }
        }
        let mut leaving_at = BTreeMap::new();
        for (name, step) in leaving {
            let addresses: Vec<Ipv4Addr> = self
                .cluster_addresses(&name)
                .into_iter()
                .chain(
                    observation
                        .node(&name)
                        .map(|n| n.addresses.clone())
                        .unwrap_or_default(),
                )
                .collect();
            for ip in addresses.into_iter().filter(|ip| !known.contains(ip)) {
                leaving_at.insert(ip, (name.clone(), step.clone()));
            }
        }
        Members {
            known,
            pending,
            leaving: leaving_at,
        }
    }

    /// Plans one cluster's firewall steps; true when a join got a new
    /// dependency (the steps must be reordered).
    fn cluster_firewalls(&mut self, cluster: &ClusterSpec) -> bool {
        let observed = self.observed;
        let unborn = ClusterObservation::default();
        let observation = match observed.cluster(&cluster.name) {
            Some(observation) => observation,
            // A k3s cluster none of whose machines has an address yet does
            // not exist: its members are exactly the slots this plan orders.
            None if self.is_unborn(cluster) => &unborn,
            // Members unknown: its firewalls stay unverified.
            None => return false,
        };
        let mut settings = cluster.firewall.clone();
        let mut cni_name = CORE_CNI.to_string();
        if let ClusterKind::K3s {
            flannel_backend, ..
        } = &cluster.kind
        {
            cni_name = flannel_name(*flannel_backend);
            match self.running_backend(cluster, observation, *flannel_backend) {
                Ok(Some(running)) => {
                    cni_name = flannel_name(running);
                    settings = with_backend(settings, running);
                }
                // Servers run, but their backend was not read: never guess
                // the ports a running cluster's pod network needs.
                Ok(None) if has_server_nodes(cluster, observation) => {
                    // Said only when firewalls were read: an observation
                    // without them (an older kiwi-infra's fixture) has
                    // nothing to say about either.
                    if !observation.firewalls.is_empty() {
                        self.warnings.push(Warning::FlannelBackendUnread {
                            cluster: cluster.name.clone(),
                        });
                    }
                    return false;
                }
                Ok(None) => {}
                Err(()) => return false,
            }
        }
        let (settings, dropped) = without_reserved(cluster, settings, &cni_name);
        for (port, what) in dropped {
            self.warnings.push(Warning::PublicPortReserved {
                cluster: cluster.name.clone(),
                port: port.to_string(),
                what,
            });
        }
        let members = self.members(cluster, observation);
        let operators = self.desired.provider.operator_networks.clone();
        let now_peers: BTreeSet<Ipv4Addr> = members
            .known
            .iter()
            .chain(members.leaving.keys())
            .copied()
            .collect();
        let mut admitting: Vec<StepId> = Vec::new();
        for pool in &cluster.pools {
            let role: NodeRole = pool.role.into();
            for index in 1..=pool.count {
                let slot = slot_name(&cluster.name, &pool.name, index);
                let observed = observation.firewalls.get(&slot);
                if let Some(NodeFirewall::Unreadable { reason }) = observed {
                    self.warnings.push(Warning::FirewallUnreadable {
                        node: NodeName(slot.clone()),
                        reason: reason.clone(),
                    });
                    continue;
                }
                let born = self.born_with(&slot);
                if observed.is_none() && born.is_none() && !members.pending.contains(&slot) {
                    // Not read (not reachable, not running, or no machine):
                    // unverified; a later plan sets it once it answers.
                    continue;
                }
                let wanted =
                    FirewallShape::for_node(role, &settings, &operators, now_peers.clone());
                let drift = match (born, observed) {
                    (Some(born), _) => shape_drift(born, &wanted, &members.pending),
                    (None, Some(fw)) => observed_drift(fw, &wanted, &members.pending),
                    (None, None) => vec![
                        "its instance is not running yet; its firewall is set once it runs"
                            .to_string(),
                    ],
                };
                let mut after_admit: Vec<StepId> = Vec::new();
                if !drift.is_empty() {
                    let depends_on: Vec<StepId> = self.pending_steps(&members.pending);
                    let id = self.push(
                        &cluster.name,
                        StepId(format!("firewall:{slot}")),
                        StepKind::SetFirewall(SetFirewall {
                            node: NodeName(slot.clone()),
                            wanted: wanted.clone(),
                            pending_peers: members.pending.clone(),
                            drift,
                        }),
                        depends_on,
                        false,
                    );
                    admitting.push(id.clone());
                    after_admit.push(id);
                }
                if !members.leaving.is_empty() {
                    let mut depends_on: Vec<StepId> = members
                        .leaving
                        .values()
                        .map(|(_, step)| step.clone())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    depends_on.extend(after_admit);
                    depends_on.extend(self.pending_steps(&members.pending));
                    let drift = members
                        .leaving
                        .iter()
                        .map(|(ip, (node, _))| {
                            format!("{ip} ({node}, removed by this plan) leaves the peers after its removal")
                        })
                        .collect();
                    self.push(
                        &cluster.name,
                        StepId(format!("firewall-after-removal:{slot}")),
                        StepKind::SetFirewall(SetFirewall {
                            node: NodeName(slot.clone()),
                            wanted: FirewallShape::for_node(
                                role,
                                &settings,
                                &operators,
                                members.known.clone(),
                            ),
                            pending_peers: members.pending.clone(),
                            drift,
                        }),
                        depends_on,
                        false,
                    );
                }
            }
        }
        if admitting.is_empty() {
            return !members.leaving.is_empty();
        }
        // No node joins before every member admits it.
        for step in self
            .steps
            .iter_mut()
            .filter(|s| s.cluster.as_deref() == Some(&cluster.name))
            .filter(|s| is_join(s))
        {
            for id in &admitting {
                if !step.depends_on.contains(id) {
                    step.depends_on.push(id.clone());
                }
            }
        }
        true
    }

    /// This plan's step that adds `slot` to its cluster's private network
    /// (the step that gives it its private address).
    fn private_assignment(&self, slot: &str) -> Option<StepId> {
        let id = StepId(format!("private-network-assign:{slot}"));
        self.steps.iter().any(|s| s.id == id).then_some(id)
    }

    /// What the addresses of `pending` peers come from: their waits and
    /// their private-network assignments.
    fn pending_steps(&self, pending: &BTreeSet<String>) -> Vec<StepId> {
        let mut steps: Vec<StepId> = Vec::new();
        for slot in pending {
            for id in self
                .waits
                .get(slot)
                .cloned()
                .into_iter()
                .chain(self.private_assignment(slot))
            {
                if !steps.contains(&id) {
                    steps.push(id);
                }
            }
        }
        steps
    }

    /// True for a k3s cluster with no machine that has an address: nothing
    /// of it runs yet, so nothing of it can be observed.
    fn is_unborn(&self, cluster: &ClusterSpec) -> bool {
        matches!(cluster.kind, ClusterKind::K3s { .. })
            && cluster
                .slot_names()
                .all(|slot| self.cluster_addresses(&slot).is_empty())
    }

    /// True when the slot's machine is ordered by this plan or on its way to
    /// running: its wait will find its address. A machine in a status that
    /// needs a human is no member until it runs.
    fn may_run(&self, slot: &str) -> bool {
        let Some(wait) = self.waits.get(slot) else {
            return false;
        };
        let waited = self.steps.iter().find_map(|s| match &s.kind {
            StepKind::WaitForRunning { instance, .. } if &s.id == wait => Some(instance),
            _ => None,
        });
        match waited.map(|i| i.id) {
            None => false,
            // Ordered by this plan: it has no id yet.
            Some(None) => true,
            Some(Some(id)) => self
                .observed
                .instances
                .iter()
                .any(|i| i.id == id && i.status.is_usable()),
        }
    }

    /// The firewall a node this plan orders or reinstalls is born with.
    fn born_with(&self, slot: &str) -> Option<&FirewallShape> {
        self.steps.iter().find_map(|s| match &s.kind {
            StepKind::OrderInstance(o) if o.slot.0 == slot => Some(&o.firewall),
            StepKind::ReinstallInstance(r) if r.instance.name == slot => Some(&r.firewall),
            _ => None,
        })
    }
}

/// True when the cluster lists one of its k3s server slots as a node.
fn has_server_nodes(cluster: &ClusterSpec, observation: &ClusterObservation) -> bool {
    cluster
        .server_slots()
        .any(|slot| observation.node(&slot).is_some())
}

fn is_join(step: &Step) -> bool {
    matches!(
        step.kind,
        StepKind::BootstrapK3sServer(_)
            | StepKind::JoinK3sServer(_)
            | StepKind::JoinK3sAgent(_)
            | StepKind::KubeadmJoin(_)
    )
}

/// `settings` with the CNI ports of flannel's `backend`.
/// `settings` without the public ports that open what `cluster`'s nodes
/// keep for operators or members under `settings`' CNI ports (those of the
/// running servers' backend, which may not be the one the inventory was
/// checked against; named `cni_name`), and what was dropped: the public
/// port and what it is kept for. No ruleset that admits strangers to them is
/// ever planned.
fn without_reserved(
    cluster: &ClusterSpec,
    settings: ClusterFirewall,
    cni_name: &str,
) -> (ClusterFirewall, Vec<(PortRule, String)>) {
    let roles = match &cluster.kind {
        ClusterKind::K3s { .. } => [NodeRole::K3sServer, NodeRole::K3sAgent],
        ClusterKind::Kubeadm { .. } => [NodeRole::KubeadmControlPlane, NodeRole::KubeadmWorker],
    };
    let reserved = reserved_ports(&roles, &settings.cni, cni_name);
    let mut dropped = Vec::new();
    let mut public = Vec::new();
    for port in settings.public {
        match overlap(&port, &reserved) {
            Some(used) => dropped.push((port, used.what.clone())),
            None => public.push(port),
        }
    }
    (ClusterFirewall { public, ..settings }, dropped)
}

/// How a k3s cluster's CNI is named in messages: by its flannel backend.
fn flannel_name(backend: FlannelBackend) -> String {
    format!("flannel's {backend} backend")
}

/// How a kubeadm cluster's CNI is named in messages.
const CORE_CNI: &str = "the CNI (cni_ports)";

fn with_backend(settings: ClusterFirewall, backend: FlannelBackend) -> ClusterFirewall {
    ClusterFirewall {
        cni: backend.ports(),
        ..settings
    }
}

fn host(ip: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(ip))
}

fn pending_lines(pending: &BTreeSet<String>) -> impl Iterator<Item = String> + '_ {
    pending
        .iter()
        .map(|slot| format!("peer {slot} (address known once its instance runs) not admitted yet"))
}

/// What a node born in this plan with `born` lacks of `wanted`.
fn shape_drift(
    born: &FirewallShape,
    wanted: &FirewallShape,
    pending: &BTreeSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = wanted
        .peers
        .difference(&born.peers)
        .map(|ip| format!("peer {ip} not admitted by the firewall it is born with"))
        .collect();
    out.extend(pending_lines(pending));
    let same_rest = FirewallShape {
        peers: BTreeSet::new(),
        ..born.clone()
    } == FirewallShape {
        peers: BTreeSet::new(),
        ..wanted.clone()
    };
    if !same_rest {
        out.push("its ports differ from the firewall it is born with".to_string());
    }
    out
}

/// What differs between a node's observed firewall and `wanted`, one line
/// each; empty when it admits exactly what it should: the members in
/// `peers4`, the operator networks, and the whole table (sets' types,
/// both chains' hook, type, priority, policy and every rule) against the
/// model [`crate::firewall::render`] writes for `wanted` ([`Ruleset::of`]).
pub fn observed_drift(
    observed: &NodeFirewall,
    wanted: &FirewallShape,
    pending: &BTreeSet<String>,
) -> Vec<String> {
    let NodeFirewall::Present {
        peers,
        operators,
        ruleset,
    } = observed
    else {
        return match observed {
            NodeFirewall::Absent => {
                vec!["no host firewall (no table inet kiwi): every port is open".to_string()]
            }
            _ => Vec::new(),
        };
    };
    let mut out = Vec::new();
    // A missing peers4 is said by the comparison of the sets below.
    if let Some(peers) = peers {
        let wanted_peers: BTreeSet<IpNet> = wanted.peers.iter().map(|ip| host(*ip)).collect();
        for missing in wanted_peers.difference(peers) {
            out.push(format!("peer {} not admitted", missing.addr()));
        }
        for extra in peers.difference(&wanted_peers) {
            let shown = if extra.prefix_len() == extra.max_prefix_len() {
                extra.addr().to_string()
            } else {
                extra.to_string()
            };
            out.push(format!("{shown} admitted but not a member"));
        }
    }
    out.extend(pending_lines(pending));
    let wanted_operators: BTreeSet<IpNet> = IpNet::aggregate(&wanted.operator_networks)
        .into_iter()
        .collect();
    for missing in wanted_operators.difference(operators) {
        out.push(format!("operator network {missing} not admitted"));
    }
    for extra in operators.difference(&wanted_operators) {
        out.push(format!(
            "{extra} admitted to SSH and the API but not an operator network"
        ));
    }
    out.extend(differences(ruleset, &Ruleset::of(wanted)));
    out
}

/// What a node reports once `shape` is loaded (the simulation of a
/// [`SetFirewall`] step, and what a second plan then finds).
pub fn firewall_as_loaded(shape: &FirewallShape) -> NodeFirewall {
    NodeFirewall::Present {
        peers: Some(shape.peers.iter().map(|ip| host(*ip)).collect()),
        operators: IpNet::aggregate(&shape.operator_networks)
            .into_iter()
            .collect(),
        ruleset: Ruleset::of(shape),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::firewall::{PortRange, PortRule, K3S_POD_NETWORK, K3S_SERVICE_NETWORK};

    fn shape(peers: &[[u8; 4]]) -> FirewallShape {
        FirewallShape::for_node(
            NodeRole::K3sServer,
            &ClusterFirewall {
                public: vec![PortRule::tcp(PortRange::single(443))],
                cni: FlannelBackend::WireguardNative.ports(),
                cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
            },
            &["198.51.100.0/24".parse().unwrap()],
            peers.iter().map(|o| Ipv4Addr::from(*o)).collect(),
        )
    }

    fn present(peers: &[&str], wanted: &FirewallShape) -> NodeFirewall {
        NodeFirewall::Present {
            peers: Some(peers.iter().map(|p| p.parse().unwrap()).collect()),
            operators: ["198.51.100.0/24".parse().unwrap()].into(),
            ruleset: Ruleset::of(wanted),
        }
    }

    #[test]
    fn a_hand_added_peer_and_a_missing_member_are_both_named() {
        let wanted = shape(&[[192, 0, 2, 10], [192, 0, 2, 9]]);
        let drift = observed_drift(
            &present(&["192.0.2.10/32", "198.51.100.7/32"], &wanted),
            &wanted,
            &BTreeSet::new(),
        );
        assert_eq!(
            drift,
            vec![
                "peer 192.0.2.9 not admitted".to_string(),
                "198.51.100.7 admitted but not a member".to_string()
            ]
        );
        assert!(observed_drift(
            &present(&["192.0.2.10/32", "192.0.2.9/32"], &wanted),
            &wanted,
            &BTreeSet::new()
        )
        .is_empty());
        assert_eq!(
            observed_drift(&NodeFirewall::Absent, &wanted, &BTreeSet::new()).len(),
            1
        );
    }

    /// The real listing nft printed for the fixture's shape, edited as a
    /// hand on the node would edit the table, and what the plan says of it.
    fn drift_of(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> Vec<String> {
        use crate::firewall::test_support::{captured_shape, CAPTURED};
        let mut doc: serde_json::Value = serde_json::from_str(CAPTURED).unwrap();
        edit(doc["nftables"].as_array_mut().unwrap());
        let listed = crate::cluster::firewall::firewall_from_answer(Some(0), &doc.to_string(), "");
        observed_drift(&listed, &captured_shape(), &BTreeSet::new())
    }

    /// The index of `chain`'s rule `n` (from 1) in the listing.
    fn rule_at(items: &[serde_json::Value], chain: &str, n: usize) -> usize {
        items
            .iter()
            .enumerate()
            .filter(|(_, i)| i["rule"]["chain"] == chain)
            .nth(n - 1)
            .unwrap()
            .0
    }

    fn chain_mut<'a>(items: &'a mut [serde_json::Value], name: &str) -> &'a mut serde_json::Value {
        items
            .iter_mut()
            .find(|i| i["chain"]["name"] == name)
            .map(|i| &mut i["chain"])
            .unwrap()
    }

    #[test]
    fn the_captured_listing_of_the_shape_is_no_drift() {
        assert_eq!(drift_of(|_| {}), Vec::<String>::new());
    }

    /// F4: the prerouting chain keeps strangers off NodePorts; a deleted
    /// rule of it, or the whole chain, is drift.
    #[test]
    fn a_deleted_prerouting_rule_or_chain_is_drift() {
        let drift = drift_of(|items| {
            let peers = rule_at(items, "prerouting", 3);
            items.remove(peers);
        });
        assert_eq!(
            drift,
            ["its prerouting chain lacks the ruleset's rule 3: `ip saddr @peers4 accept`"]
        );
        let drift = drift_of(|items| {
            let gateway = rule_at(items, "prerouting", 5);
            items.remove(gateway);
        });
        assert_eq!(
            drift,
            ["its prerouting chain lacks the ruleset's rule 5: `ip daddr { 10.42.0.0/15 } drop`"]
        );
        let drift = drift_of(|items| {
            let last = rule_at(items, "prerouting", 11);
            items.remove(last);
        });
        assert_eq!(
            drift,
            ["its prerouting chain lacks the ruleset's rule 11: `drop`"]
        );
        let drift = drift_of(|items| {
            items.retain(|i| {
                i["chain"]["name"] != "prerouting" && i["rule"]["chain"] != "prerouting"
            });
        });
        assert_eq!(drift, ["its prerouting chain is missing"]);
    }

    /// F5: an input rule replaced in place (the rule count unchanged):
    /// SSH from anyone instead of from the operator networks.
    #[test]
    fn an_input_rule_replaced_in_place_is_drift() {
        let drift = drift_of(|items| {
            let ssh = rule_at(items, "input", 8);
            items[ssh]["rule"]["expr"] = serde_json::json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
                {"accept": null}
            ]);
        });
        assert_eq!(
            drift,
            [
                "input rule 8 differs: `tcp dport { 22 } accept` where the ruleset has \
              `ip saddr @operators4 tcp dport { 22, 6443 } accept`"
            ]
        );
        // A public port changed.
        let drift = drift_of(|items| {
            let public = rule_at(items, "input", 10);
            items[public]["rule"]["expr"][0]["match"]["right"] =
                serde_json::json!({"set": [80, 8080]});
        });
        assert_eq!(
            drift,
            [
                "input rule 10 differs: `tcp dport { 80, 8080 } accept` where the ruleset has \
              `tcp dport { 80, 443 } accept`"
            ]
        );
    }

    /// F6: a chain's hook, type, priority or policy.
    #[test]
    fn a_chain_without_its_hook_or_at_another_priority_is_drift() {
        let drift = drift_of(|items| {
            let input = chain_mut(items, "input");
            for key in ["type", "hook", "prio", "policy"] {
                input.as_object_mut().unwrap().remove(key);
            }
        });
        assert_eq!(
            drift,
            ["its input chain has no hook (a regular chain: no packet passes through it)"]
        );
        let drift = drift_of(|items| {
            let prerouting = chain_mut(items, "prerouting");
            prerouting["prio"] = serde_json::json!(-90);
            prerouting["hook"] = serde_json::json!("input");
        });
        assert_eq!(
            drift,
            [
                "its prerouting chain is hooked at input, not prerouting",
                "its prerouting chain has priority dstnat + 10, not dstnat - 10"
            ]
        );
        let drift = drift_of(|items| chain_mut(items, "input")["policy"] = "accept".into());
        assert_eq!(drift, ["its input policy is accept, not drop"]);
    }

    /// An added rule, or one kiwi-infra never writes, is drift, in
    /// kiwi-infra's words only.
    #[test]
    fn an_extra_or_unrecognised_rule_is_drift_without_node_text() {
        let drift = drift_of(|items| {
            let at = rule_at(items, "input", 4);
            items.insert(
                at,
                serde_json::json!({"rule": {"family": "inet", "table": "kiwi", "chain": "input",
                    "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 2379}}, {"accept": null}]}}),
            );
        });
        assert_eq!(
            drift,
            ["input rule 4 is not the ruleset's: `tcp dport { 2379 } accept`"]
        );
        let drift = drift_of(|items| {
            items.push(
                serde_json::json!({"rule": {"family": "inet", "table": "kiwi", "chain": "input",
                "expr": [{"jump": {"target": "\u{1b}[2Jowned"}}]}}),
            );
        });
        assert_eq!(
            drift,
            ["input rule 11 is not the ruleset's: a rule kiwi-infra does not write (a jump statement)"]
        );
        let drift = drift_of(|items| {
            items.push(serde_json::json!({"chain": {"family": "inet", "table": "kiwi",
                "name": "sneaky\u{1b}]0;x\u{7}", "type": "filter", "hook": "input", "prio": -5, "policy": "accept"}}));
            items.push(
                serde_json::json!({"set": {"family": "inet", "table": "kiwi",
                "name": "extra", "type": "ipv4_addr"}}),
            );
            items.push(
                serde_json::json!({"flowtable": {"family": "inet", "table": "kiwi", "name": "f"}}),
            );
            let peers = items
                .iter_mut()
                .find(|i| i["set"]["name"] == "peers4")
                .unwrap();
            peers["set"]["flags"] = serde_json::json!(["interval"]);
        });
        assert_eq!(
            drift,
            [
                "its set peers4 has flags [interval], not []",
                "an extra set extra that the ruleset does not have",
                "an extra chain \"sneaky\\u{1b}]0;x\\u{7}\" that the ruleset does not have",
                "its table holds a flowtable, which the ruleset does not have"
            ]
        );
        assert!(drift.iter().all(|l| !l.contains('\u{1b}')));
    }

    /// F9: a listing that names a chain or set twice is never read as its
    /// last copy.
    #[test]
    fn a_listing_with_a_duplicate_chain_or_set_is_not_trusted() {
        use crate::firewall::test_support::CAPTURED;
        for kind in ["chain", "set"] {
            let mut doc: serde_json::Value = serde_json::from_str(CAPTURED).unwrap();
            let items = doc["nftables"].as_array_mut().unwrap();
            let first = items
                .iter()
                .find(|i| i.get(kind).is_some())
                .unwrap()
                .clone();
            let mut copy = first.clone();
            copy[kind]["policy"] = "accept".into();
            copy[kind].as_object_mut().unwrap().remove("elem");
            items.push(copy);
            let listed =
                crate::cluster::firewall::firewall_from_answer(Some(0), &doc.to_string(), "");
            let NodeFirewall::Unreadable { reason } = listed else {
                panic!("{kind}: {listed:?}");
            };
            assert!(reason.contains("twice"), "{reason}");
        }
    }

    #[test]
    fn what_a_loaded_shape_reads_back_as_is_no_drift() {
        let wanted = shape(&[[192, 0, 2, 10]]);
        assert!(observed_drift(&firewall_as_loaded(&wanted), &wanted, &BTreeSet::new()).is_empty());
    }
}
