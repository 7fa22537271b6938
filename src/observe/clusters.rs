//! What each cluster reports: its nodes with labels, taints and readiness,
//! read through a control node, and which of the cluster's instances have
//! never been joined (pristine). Without this, the planner could not tell
//! drift, or a fresh machine from a failed bootstrap.

use std::collections::{BTreeMap, BTreeSet};

use crate::bootstrap::{NodeConnector, SshNodeExecutor};
use crate::inventory::{ClusterKind, Desired};
use crate::plan::{ClusterObservation, Observed};
use crate::ssh::{RemoteCommand, RemoteExec};

/// Files whose presence shows that a node was joined, or tried to be.
fn join_trace(kind: &ClusterKind) -> &'static str {
    match kind {
        ClusterKind::K3s { .. } => "/etc/rancher/k3s/config.yaml",
        ClusterKind::Kubeadm { .. } => "/etc/kubernetes/kubelet.conf",
    }
}

/// Observes every cluster of the inventory. A cluster is `None` (its node
/// steps unverified) when it has nodes that cannot be read; it is
/// `Some` with no nodes when none of its instances was ever joined.
pub async fn observe_clusters<C: NodeConnector>(
    nodes: &SshNodeExecutor<C>,
    connector: &C,
    desired: &Desired,
    observed: &Observed,
    addresses: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<ClusterObservation>> {
    let mut out = BTreeMap::new();
    for cluster in &desired.clusters {
        let prefix = format!("kiwi-{}-", cluster.name);
        let instances: Vec<&str> = observed
            .instances
            .iter()
            .filter(|i| i.is_owned() && i.cancel_date.is_none())
            .filter(|i| i.display_name.starts_with(&prefix))
            .map(|i| i.display_name.as_str())
            .collect();
        let observation = match nodes.nodes_of(&cluster.name).await {
            Ok(list) => {
                let joined: BTreeSet<&str> = list.iter().map(|n| n.name.0.as_str()).collect();
                let candidates: Vec<&str> = instances
                    .iter()
                    .copied()
                    .filter(|n| !joined.contains(n))
                    .collect();
                let pristine = pristine(connector, &cluster.kind, &candidates, addresses).await;
                Some(ClusterObservation {
                    nodes: list,
                    pristine,
                })
            }
            Err(e) => {
                // No control node answers. If every instance of the cluster
                // is reachable and was never joined, the cluster simply does
                // not exist yet; otherwise its state is unknown.
                let pristine = pristine(connector, &cluster.kind, &instances, addresses).await;
                let never_built = matches!(cluster.kind, ClusterKind::K3s { .. })
                    && pristine.len() == instances.len();
                if never_built {
                    Some(ClusterObservation {
                        nodes: Vec::new(),
                        pristine,
                    })
                } else {
                    if !instances.is_empty() {
                        tracing::warn!(cluster = %cluster.name, error = %e, "cluster cannot be observed; its node steps stay unverified");
                    }
                    None
                }
            }
        };
        out.insert(cluster.name.clone(), observation);
    }
    out
}

/// The instances among `names` that answer over SSH and carry no trace of a
/// join. One that cannot be reached is not pristine (nothing is assumed).
async fn pristine<C: NodeConnector>(
    connector: &C,
    kind: &ClusterKind,
    names: &[&str],
    addresses: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let probe = format!("sudo test -e {}", join_trace(kind));
    for name in names {
        let Some(address) = addresses.get(*name) else {
            continue;
        };
        let Ok(exec) = connector.connect(name, address).await else {
            continue;
        };
        let command = RemoteCommand {
            command: probe.clone(),
            stdin: None,
            timeout: std::time::Duration::from_secs(30),
        };
        // `test -e` exits 1 when the file is absent: that is the pristine case.
        if let Ok(out) = exec.run(&command).await {
            if out.status == Some(1) {
                found.insert((*name).to_string());
            }
        }
    }
    found
}
