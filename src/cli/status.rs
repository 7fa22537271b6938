//! `kiwi-infra status`: per cluster, each node slot's instance state, IP,
//! product, class, Kubernetes readiness and labels, and whether anything
//! differs from the inventory. "Differs" is whatever the planner would
//! change, so status and plan can never disagree.

use std::collections::BTreeMap;

use crate::inventory::{slot_name, ClusterKind, Desired};
use crate::plan::{Observed, Plan, StepKind};

use super::args::{GlobalArgs, StatusArgs};
use super::plan::{load_inventory, observe_all};
use super::{settings, table, CliError};

/// `kiwi-infra status`: observes like `plan` and prints the tables.
pub(super) async fn run(
    global: &GlobalArgs,
    args: &StatusArgs,
) -> Result<std::process::ExitCode, CliError> {
    let desired = load_inventory(global)?;
    let client = settings::contabo_client(global)?;
    let (observed, nodes) = observe_all(global, &client, &desired, args.contabo_only).await?;
    nodes.close().await;
    let plan = crate::plan::plan(&desired, &observed, &Default::default());
    print!("{}", render(&desired, &observed, &plan));
    let not_ready = observed
        .clusters
        .values()
        .flatten()
        .flat_map(|c| &c.nodes)
        .filter(|n| !n.ready)
        .count();
    if plan.is_empty() && plan.warnings.is_empty() && not_ready == 0 {
        println!("Everything matches the inventory.");
    } else {
        if !plan.is_empty() {
            // The summary line ends with its own full stop.
            println!("Differences: {}", crate::plan::summary_line(&plan.summary));
        }
        if not_ready > 0 {
            println!("{not_ready} node(s) are not Ready.");
        }
        if !plan.warnings.is_empty() {
            println!("{} warning(s) need attention.", plan.warnings.len());
        }
        println!("`kiwi-infra plan` shows the details.");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Renders the status tables.
pub fn render(desired: &Desired, observed: &Observed, plan: &Plan) -> String {
    let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for step in &plan.steps {
        if let Some((node, what)) = node_change(&step.kind) {
            let changes = pending.entry(node).or_default();
            if !changes.contains(&what) {
                changes.push(what);
            }
        }
    }
    let mut out = String::new();
    for cluster in &desired.clusters {
        let kind = match cluster.kind {
            ClusterKind::Kubeadm { .. } => "kubeadm",
            ClusterKind::K3s { .. } => "k3s",
        };
        out.push_str(&format!(
            "Cluster {} ({kind}, tier {})\n",
            crate::text::escape_for_terminal(&cluster.name),
            cluster.tier.as_str()
        ));
        let observation = observed.cluster(&cluster.name);
        let mut rows = Vec::new();
        for pool in &cluster.pools {
            for i in 1..=pool.count {
                let name = slot_name(&cluster.name, &pool.name, i);
                let instance = observed
                    .instances
                    .iter()
                    .filter(|x| x.display_name == name && x.cancel_date.is_none())
                    .min_by_key(|x| x.created_date);
                let node = observation.and_then(|o| o.node(&name));
                let k8s = match (observation, node) {
                    (None, _) => "unverified".to_string(),
                    (Some(_), None) => "not a node".to_string(),
                    (Some(_), Some(n)) if n.ready => "Ready".to_string(),
                    (Some(_), Some(_)) => "NotReady".to_string(),
                };
                let class = node
                    .and_then(|n| n.labels.get("kiwistack.io/node-class"))
                    .cloned()
                    .unwrap_or_else(|| "-".to_string());
                let differs = match pending.get(&name) {
                    Some(changes) => changes.join("; "),
                    None if instance.is_none() => "to order".to_string(),
                    None if observation.is_none() => "?".to_string(),
                    None if node.is_some_and(|n| !n.ready) => "not Ready".to_string(),
                    None => "no".to_string(),
                };
                rows.push(vec![
                    name.clone(),
                    instance.map_or("-".into(), |x| x.id.0.to_string()),
                    instance.map_or("absent".into(), |x| x.status.as_str().to_string()),
                    instance
                        .and_then(|x| x.ipv4)
                        .map_or_else(|| "-".into(), |ip| ip.to_string()),
                    // What Contabo runs; the inventory may name another.
                    instance.map_or_else(|| pool.product.clone(), |x| x.product_id.clone()),
                    format!("{}", pool.class),
                    k8s,
                    class,
                    differs,
                ]);
            }
        }
        if rows.is_empty() {
            out.push_str("  (no nodes: a core-tier customer or an empty cluster)\n\n");
            continue;
        }
        out.push_str(&table::render(
            &[
                "NODE",
                "INSTANCE",
                "STATE",
                "IP",
                "PRODUCT",
                "CLASS",
                "K8S",
                "NODE-CLASS LABEL",
                "DIFFERS FROM INVENTORY",
            ],
            &rows,
        ));
        out.push('\n');
    }
    out
}

/// The node a step changes, and a short description.
fn node_change(kind: &StepKind) -> Option<(String, String)> {
    Some(match kind {
        StepKind::OrderInstance(o) => (o.slot.0.clone(), "to order".into()),
        StepKind::ReinstallInstance(r) => (r.instance.name.clone(), "to reinstall".into()),
        StepKind::BootstrapK3sServer(j) => (j.node.0.clone(), "to bootstrap".into()),
        StepKind::JoinK3sServer(j) | StepKind::JoinK3sAgent(j) => {
            (j.node.0.clone(), "to join".into())
        }
        StepKind::KubeadmJoin(j) => (j.node.0.clone(), "to join".into()),
        StepKind::SetLabel {
            node, key, value, ..
        } => (node.0.clone(), format!("label {key}={value}")),
        StepKind::RemoveLabel { node, key, .. } => {
            (node.0.clone(), format!("label {key} to remove"))
        }
        StepKind::RecordLabels { node, .. } => {
            (node.0.clone(), "record of kiwi-infra's labels".into())
        }
        StepKind::SetTaint { node, taint } => (node.0.clone(), format!("taint {taint}")),
        StepKind::RemoveTaint { node, taint } => {
            (node.0.clone(), format!("taint {taint} to remove"))
        }
        StepKind::DrainNode { node } | StepKind::DeleteNode { node } => {
            (node.0.clone(), "to remove".into())
        }
        StepKind::DeleteStaleNode { node } => (node.0.clone(), "stale node object".into()),
        StepKind::RenameInstance { instance, .. } => {
            (instance.name.clone(), "renamed; name to restore".into())
        }
        StepKind::AssignTag { instance, .. } => (instance.name.clone(), "tags missing".into()),
        _ => return None,
    })
}
