//! What each cluster reports: its nodes with labels, taints and readiness,
//! read through a control node, and which of the cluster's instances have
//! never been joined (pristine). Without this, the planner could not tell
//! drift, or a fresh machine from a failed bootstrap.
//!
//! Reads go through `crate::cluster` (over the SSH session pool), never
//! through the code that changes nodes.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use crate::cluster::ClusterReads;
use crate::ids::ClusterName;
use crate::inventory::{ClusterKind, ClusterSpec, Desired};
use crate::plan::{ClusterObservation, NodeFirewall, NodeName, Observed, ObservedBackend};
use crate::ssh::NodeConnector;

/// A file whose presence shows that a node was joined, or tried to be.
fn join_trace(kind: &ClusterKind) -> &'static str {
    match kind {
        ClusterKind::K3s { .. } => "/etc/rancher/k3s/config.yaml",
        ClusterKind::Kubeadm { .. } => "/etc/kubernetes/kubelet.conf",
    }
}

/// Observes every cluster of the inventory. A cluster is `None` (its node
/// steps unverified) when it has nodes that cannot be read; it is `Some`
/// with no nodes when none of its instances was ever joined.
pub async fn observe_clusters<C: NodeConnector>(
    reads: &ClusterReads<C>,
    desired: &Desired,
    observed: &Observed,
) -> BTreeMap<String, Option<ClusterObservation>> {
    // Clusters are independent: read them side by side, so that a fleet of
    // 200 clusters costs a few round trips, not 200 of them in a row.
    futures::stream::iter(&desired.clusters)
        .map(|cluster| async move {
            let observation = observe_cluster(reads, cluster, observed).await;
            (cluster.name.clone(), observation)
        })
        .buffer_unordered(CLUSTERS_AT_ONCE)
        .collect()
        .await
}

/// Reads the host firewall of each of the cluster's machines (`instances`:
/// kiwi-infra's, running, with an address) and, for k3s, the flannel
/// backend of each server that is a node of `nodes`. A machine that does
/// not answer is left out: its firewall is unverified, not absent.
async fn read_firewalls<C: NodeConnector>(
    reads: &ClusterReads<C>,
    cluster: &ClusterSpec,
    instances: &[&str],
    nodes: &[crate::plan::Node],
) -> (
    BTreeMap<String, NodeFirewall>,
    BTreeMap<String, ObservedBackend>,
) {
    let firewalls = futures::stream::iter(instances)
        .map(|name| async move {
            let node = NodeName((*name).to_string());
            match reads.firewall_of(&node).await {
                Ok(fw) => Some((node.0, fw)),
                Err(e) => {
                    tracing::warn!(%node, error = %e, "host firewall not read; it stays unverified");
                    None
                }
            }
        })
        .buffer_unordered(NODES_AT_ONCE)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let mut backends = BTreeMap::new();
    if let ClusterKind::K3s { .. } = cluster.kind {
        let servers = cluster
            .server_slots()
            .filter(|slot| nodes.iter().any(|n| &n.name.0 == slot));
        for server in servers {
            match reads.flannel_backend_of(&NodeName(server.clone())).await {
                Ok(backend) => {
                    backends.insert(server, backend);
                }
                Err(e) => {
                    tracing::warn!(node = %server, error = %e, "flannel backend not read");
                }
            }
        }
    }
    (firewalls, backends)
}

/// Nodes of one cluster read at once.
const NODES_AT_ONCE: usize = 8;

/// Clusters read at once.
const CLUSTERS_AT_ONCE: usize = 16;

async fn observe_cluster<C: NodeConnector>(
    reads: &ClusterReads<C>,
    cluster: &ClusterSpec,
    observed: &Observed,
) -> Option<ClusterObservation> {
    // The cluster's own slots only: exact names from the inventory, never a
    // prefix of one (cluster `acme` is a prefix of cluster `acme-eu`'s).
    let slots: std::collections::BTreeSet<String> = cluster.slot_names().collect();
    let instances: Vec<&str> = observed
        .instances
        .iter()
        .filter(|i| observed.is_ours(i) && i.cancel_date.is_none() && i.ipv4.is_some())
        .filter(|i| slots.contains(&i.display_name))
        .map(|i| i.display_name.as_str())
        .collect();
    let trace = join_trace(&cluster.kind);
    let read = match ClusterName::parse(&cluster.name) {
        Ok(name) => reads.nodes_of(&name).await,
        Err(e) => Err(e.into()),
    };
    match read {
        Ok(list) => {
            let joined: BTreeSet<&str> = list.iter().map(|n| n.name.0.as_str()).collect();
            let mut pristine = BTreeSet::new();
            // Control-plane machines kiwi-infra did not order (a
            // replacement among them) are candidates too.
            let control_plane: Vec<&str> = match &cluster.kind {
                ClusterKind::Kubeadm { control_plane, .. } => {
                    control_plane.iter().map(|n| n.name.as_str()).collect()
                }
                ClusterKind::K3s { .. } => Vec::new(),
            };
            let candidates = instances.iter().chain(&control_plane);
            for name in candidates.filter(|n| !joined.contains(*n)) {
                if reads
                    .is_pristine(&NodeName((*name).to_string()), trace)
                    .await
                {
                    pristine.insert((*name).to_string());
                }
            }
            let (firewalls, flannel_backends) =
                read_firewalls(reads, cluster, &instances, &list).await;
            Some(ClusterObservation {
                nodes: list,
                pristine,
                firewalls,
                flannel_backends,
            })
        }
        Err(e) => {
            // No control node answers. If every instance of a k3s
            // cluster answers and was never joined, the cluster simply
            // does not exist yet; otherwise its state is unknown.
            let mut pristine = BTreeSet::new();
            for name in &instances {
                if reads
                    .is_pristine(&NodeName((*name).to_string()), trace)
                    .await
                {
                    pristine.insert((*name).to_string());
                }
            }
            let never_built = matches!(cluster.kind, ClusterKind::K3s { .. })
                && !instances.is_empty()
                && pristine.len() == instances.len();
            if never_built {
                let (firewalls, _) = read_firewalls(reads, cluster, &instances, &[]).await;
                Some(ClusterObservation {
                    nodes: Vec::new(),
                    pristine,
                    firewalls,
                    flannel_backends: BTreeMap::new(),
                })
            } else {
                if !instances.is_empty() {
                    tracing::warn!(
                        cluster = %cluster.name,
                        error = %e,
                        "cluster cannot be observed; its node steps stay unverified"
                    );
                }
                None
            }
        }
    }
}
