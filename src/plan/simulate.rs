//! A model of what carrying out a plan does to the observed state, without
//! doing it. The property "planning again after the simulated apply finds
//! nothing to do" checks that the planner and its steps agree; it is also a
//! cheap way for `apply` tests to predict the mock's end state.

use super::observed::{
    ClusterObservation, Instance, InstanceId, InstanceStatus, Node, NodeName, Observed, SecretId,
    TagId,
};
use super::private_network::{MemberStatus, NetworkMember, PrivateNetwork};
use super::steps::{InstanceRef, K3sJoin, Plan, StepKind};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// The observed state after every step of `plan` succeeded. New ids follow
/// the highest existing ones; dates are fixed, since the model has no clock.
pub fn simulate(observed: &Observed, plan: &Plan) -> Observed {
    let mut state = observed.clone();
    // The instance this plan's steps use for a slot: with duplicates of a
    // name (a past double order) the planner picks one, and only its steps
    // say which.
    let mut used: BTreeMap<String, InstanceId> = BTreeMap::new();
    for step in &plan.steps {
        let named = match &step.kind {
            StepKind::AssignTag { instance, .. }
            | StepKind::AssignPrivateNetwork { instance, .. }
            | StepKind::WaitForRunning { instance, .. } => Some(instance),
            StepKind::ReinstallInstance(r) => Some(&r.instance),
            _ => None,
        };
        if let Some(i) = named.and_then(|r| find_instance(&mut state, r)) {
            used.insert(i.display_name.clone(), i.id);
        }
        match &step.kind {
            StepKind::EnsureSecret { name } => {
                let id = next_id(state.secrets.values().map(|s| s.0));
                state.secrets.entry(name.clone()).or_insert(SecretId(id));
            }
            StepKind::EnsureTag { name } => {
                let id = next_id(state.tags.values().map(|t| t.0));
                state.tags.entry(name.clone()).or_insert(TagId(id));
            }
            StepKind::OrderInstance(order) => {
                let id = next_id(state.instances.iter().map(|i| i.id.0));
                used.insert(order.slot.0.clone(), InstanceId(id));
                state.instances.push(Instance {
                    id: InstanceId(id),
                    display_name: order.slot.0.clone(),
                    product_id: order.product.clone(),
                    region: order.region.clone(),
                    status: InstanceStatus::Running,
                    ipv4: None,
                    odd_ipv4: None,
                    created_date: simulated_now(),
                    cancel_date: None,
                    image_id: order.image.id.clone(),
                    tags: BTreeSet::new(),
                });
            }
            StepKind::AssignTag { tag, instance } => {
                if let Some(i) = find_instance(&mut state, instance) {
                    i.tags.insert(tag.clone());
                }
            }
            StepKind::UnassignTag { tag, instance } => {
                if let Some(i) = find_instance(&mut state, instance) {
                    i.tags.remove(tag);
                }
            }
            StepKind::ReinstallInstance(r) => {
                if let Some(i) = find_instance(&mut state, &r.instance) {
                    i.status = InstanceStatus::Running;
                    i.image_id = r.image.id.clone();
                    let id = i.id;
                    // A reinstall wires the instance's private NICs.
                    for net in state.private_networks.values_mut() {
                        for m in net.members.iter_mut().filter(|m| m.instance == id) {
                            m.status = MemberStatus::Ok;
                        }
                    }
                }
            }
            StepKind::EnsurePrivateNetwork { name, .. } => {
                let id = next_id(state.private_networks.values().map(|n| n.id));
                state
                    .private_networks
                    .entry(name.clone())
                    .or_insert(PrivateNetwork {
                        id,
                        name: name.clone(),
                        same_name: 1,
                        members: Vec::new(),
                    });
            }
            StepKind::AssignPrivateNetwork { network, instance } => {
                let id = find_instance(&mut state, instance).map(|i| i.id);
                if let (Some(id), Some(net)) = (id, state.private_networks.get_mut(network)) {
                    if net.member(id).is_none() {
                        let host = u8::try_from(net.members.len() % 250).unwrap_or(0) + 2;
                        net.members.push(NetworkMember {
                            instance: id,
                            private_ipv4: Some(std::net::Ipv4Addr::new(10, 0, 0, host)),
                            status: MemberStatus::Reinstall,
                        });
                    }
                }
            }
            StepKind::BootstrapK3sServer(j)
            | StepKind::JoinK3sServer(j)
            | StepKind::JoinK3sAgent(j) => {
                add_node(&mut state, step.cluster.as_deref(), j);
            }
            StepKind::KubeadmJoin(j) => {
                let join = K3sJoin {
                    node: j.node.clone(),
                    instance: j.instance.clone(),
                    version: j.kubernetes_version.clone(),
                    via: Some(j.via.clone()),
                    labels: j.labels.clone(),
                    taints: j.taints.clone(),
                    flannel_backend: None,
                    private_network: None,
                };
                add_node(&mut state, step.cluster.as_deref(), &join);
            }
            StepKind::SetLabel {
                node, key, value, ..
            } => {
                if let Some(n) = find_node(&mut state, step.cluster.as_deref(), node) {
                    n.labels.insert(key.clone(), value.clone());
                }
            }
            StepKind::RemoveLabel { node, key, .. } => {
                if let Some(n) = find_node(&mut state, step.cluster.as_deref(), node) {
                    n.labels.remove(key);
                }
            }
            StepKind::RecordLabels { node, keys, .. } => {
                if let Some(n) = find_node(&mut state, step.cluster.as_deref(), node) {
                    n.managed_labels = Some(keys.clone());
                }
            }
            StepKind::SetTaint { node, taint, .. } => {
                if let Some(n) = find_node(&mut state, step.cluster.as_deref(), node) {
                    n.taints
                        .retain(|t| !(t.key == taint.key && t.effect == taint.effect));
                    n.taints.push(taint.clone());
                }
            }
            StepKind::RemoveTaint { node, taint, .. } => {
                if let Some(n) = find_node(&mut state, step.cluster.as_deref(), node) {
                    n.taints.retain(|t| t != taint);
                }
            }
            StepKind::DrainNode { .. } => {}
            StepKind::SetFirewall(f) => {
                let mut shape = f.wanted.clone();
                // A pending peer's cluster-traffic addresses: its public
                // one and, in a cluster with a private network, its private
                // one (as the planner counts a member's addresses).
                for slot in &f.pending_peers {
                    let Some(instance) = state.instances.iter().find(|i| match used.get(slot) {
                        Some(id) => &i.id == id,
                        None => &i.display_name == slot && !i.is_cancelled(),
                    }) else {
                        continue;
                    };
                    shape.peers.extend(instance.ipv4);
                    let private = step
                        .cluster
                        .as_deref()
                        .and_then(|c| state.private_network_of(c))
                        .and_then(|n| n.member(instance.id))
                        .and_then(|m| m.private_ipv4);
                    shape.peers.extend(private);
                }
                if let Some(Some(cluster)) = step
                    .cluster
                    .as_deref()
                    .and_then(|c| state.clusters.get_mut(c))
                {
                    cluster
                        .firewalls
                        .insert(f.node.0.clone(), super::planner::firewall_as_loaded(&shape));
                }
            }
            // A wait that succeeded saw its instance running; one for a
            // status that needs a human ends without changing it.
            StepKind::WaitForRunning { instance, .. } => {
                if let Some(i) = find_instance(&mut state, instance) {
                    if i.status.is_usable() {
                        i.status = InstanceStatus::Running;
                    }
                }
            }
            StepKind::RenameInstance { instance, .. } => {
                if let Some(i) = state
                    .instances
                    .iter_mut()
                    .find(|i| Some(&i.id) == instance.id.as_ref())
                {
                    i.display_name = instance.name.clone();
                }
            }
            StepKind::DeleteNode { node } | StepKind::DeleteStaleNode { node } => {
                if let Some(Some(c)) = step
                    .cluster
                    .as_deref()
                    .and_then(|c| state.clusters.get_mut(c))
                {
                    c.nodes.retain(|n| &n.name != node);
                }
            }
            StepKind::CancelInstance { instance, .. } => {
                if let Some(i) = find_instance(&mut state, instance) {
                    i.cancel_date = Some(simulated_cancel_date());
                }
            }
        }
    }
    state
}

fn next_id(ids: impl Iterator<Item = i64>) -> i64 {
    ids.max().unwrap_or(0) + 1
}

fn simulated_now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

fn simulated_cancel_date() -> NaiveDate {
    DateTime::<Utc>::UNIX_EPOCH.date_naive()
}

/// The instance a step means: by id, or the live one with that name.
fn find_instance<'s>(state: &'s mut Observed, r: &InstanceRef) -> Option<&'s mut Instance> {
    match &r.id {
        Some(id) => state.instances.iter_mut().find(|i| &i.id == id),
        None => state
            .instances
            .iter_mut()
            .rev()
            .find(|i| i.display_name == r.name && i.cancel_date.is_none()),
    }
}

fn find_node<'s>(
    state: &'s mut Observed,
    cluster: Option<&str>,
    node: &NodeName,
) -> Option<&'s mut Node> {
    let c = state.clusters.get_mut(cluster?)?.as_mut()?;
    c.nodes.iter_mut().find(|n| &n.name == node)
}

/// A joined node appears in its cluster, if that cluster is observed; an
/// unobserved cluster stays unobserved.
fn add_node(state: &mut Observed, cluster: Option<&str>, join: &K3sJoin) {
    let Some(Some(c)) = cluster.and_then(|c| state.clusters.get_mut(c)) else {
        return;
    };
    let c: &mut ClusterObservation = c;
    c.nodes.retain(|n| n.name != join.node);
    c.nodes.push(Node {
        name: join.node.clone(),
        labels: join.labels.clone(),
        taints: join.taints.clone(),
        ready: true,
        addresses: Vec::new(),
        // A join records the labels it registers the node with.
        managed_labels: Some(join.labels.keys().cloned().collect()),
    });
}
