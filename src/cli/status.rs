//! `kiwi-infra status`: per cluster, each node slot's instance state, IP,
//! product, class, Kubernetes readiness, its pool's labels and its taints,
//! and whether anything differs from the inventory; the Core cluster's
//! control-plane nodes (which kiwi-infra does not order) below its table.
//! "Differs" is whatever the planner would change, so status and plan can
//! never disagree. A node that is not Ready is something the plan does not
//! judge, so status names it and points at the runbook, not at `plan`.

use std::collections::BTreeMap;

use crate::inventory::{slot_name, ClusterKind, Desired};
use crate::plan::{Observed, Plan, StepKind};

use super::args::{GlobalArgs, StatusArgs};
use super::plan::{load_inventory, CliWorld};
use super::{settings, table, CliError};

/// `kiwi-infra status`: observes like `plan` and prints the tables.
pub(super) async fn run(
    global: &GlobalArgs,
    args: &StatusArgs,
) -> Result<std::process::ExitCode, CliError> {
    let desired = load_inventory(global)?;
    let client = settings::contabo_client(global)?;
    let entries = super::state::journal_entries(global, &desired).await?;
    let world = CliWorld {
        global,
        client: &client,
        desired: &desired,
        contabo_only: args.contabo_only,
    };
    let (observed, plan, nodes) =
        crate::reconcile::observe_and_plan(&desired, &Default::default(), &world, &entries).await?;
    crate::reconcile::World::close(&world, nodes).await;
    print!("{}", render(&desired, &observed, &plan));
    let not_ready = not_ready_nodes(&observed);
    let warned = !plan.warnings.is_empty();
    if plan.is_empty() && !warned && not_ready.is_empty() {
        println!("Everything matches the inventory.");
    } else {
        if !plan.is_empty() {
            // The summary line ends with its own full stop.
            println!("Differences: {}", crate::plan::summary_line(&plan.summary));
        }
        if warned {
            println!("{} warning(s) need attention.", plan.warnings.len());
        }
        if !plan.is_empty() || warned {
            println!("`kiwi-infra plan` shows the details.");
        }
        print!(
            "{}",
            not_ready_advice(&not_ready, &control_plane_names(&desired))
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `(cluster, node)` of every node its cluster reports not Ready.
fn not_ready_nodes(observed: &Observed) -> Vec<(String, String)> {
    observed
        .clusters
        .iter()
        .filter_map(|(cluster, c)| c.as_ref().map(|c| (cluster, c)))
        .flat_map(|(cluster, c)| {
            c.nodes
                .iter()
                .filter(|n| !n.ready)
                .map(move |n| (cluster.clone(), n.name.0.clone()))
        })
        .collect()
}

/// The Core control-plane nodes the inventory names (kiwi-infra neither
/// orders nor replaces them).
fn control_plane_names(desired: &Desired) -> std::collections::BTreeSet<String> {
    desired
        .clusters
        .iter()
        .flat_map(|c| c.control_plane())
        .map(|n| n.name.clone())
        .collect()
}

/// What to do about nodes that are not Ready: the plan does not judge node
/// health, so the way on is the replacing-a-node runbook for the nodes
/// kiwi-infra ordered, and the cluster's own procedures for the Core
/// control plane, which kiwi-infra does not replace.
fn not_ready_advice(
    nodes: &[(String, String)],
    control_plane: &std::collections::BTreeSet<String>,
) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let mut out = format!("{} node(s) are not Ready:\n", nodes.len());
    for (cluster, node) in nodes {
        out.push_str(&format!(
            "  {} (cluster {}{})\n",
            crate::text::escape_for_terminal(node),
            crate::text::escape_for_terminal(cluster),
            if control_plane.contains(node) {
                ", control plane"
            } else {
                ""
            }
        ));
    }
    let (planes, ordered): (Vec<_>, Vec<_>) =
        nodes.iter().partition(|(_, n)| control_plane.contains(n));
    if !ordered.is_empty() {
        out.push_str(
            "kiwi-infra does not judge node health, so `plan` has nothing to say about them: \
             repair each node, or replace it as docs/runbooks/replacing-a-node.md describes (\"the \
             instance runs, but its node is NotReady\").\n",
        );
    }
    if !planes.is_empty() {
        out.push_str(
            "The Core control plane is not kiwi-infra's to order or replace (kiwi.toml only names \
             it): repair those nodes with the cluster's own procedures (kubelet, etcd, kubeadm). \
             Joins into Core use the first control-plane node that answers.\n",
        );
    }
    out
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
                let labels = node.map_or_else(|| "-".to_string(), |n| pool_labels(pool, n));
                let taints = node.map_or_else(|| "-".to_string(), taints_of);
                let differs = match pending.get(&name) {
                    Some(changes) => changes.join("; "),
                    None if instance.is_none() => "to order".to_string(),
                    None if observation.is_none() => "?".to_string(),
                    None if node.is_some_and(|n| !n.ready) => "not Ready".to_string(),
                    None => "no".to_string(),
                };
                let firewall = firewall_state(observation, plan, &name);
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
                    labels,
                    taints,
                    firewall,
                    differs,
                ]);
            }
        }
        let control_plane = control_plane_table(cluster, observation);
        if rows.is_empty() {
            out.push_str("  (no nodes: a core-tier customer or an empty cluster)\n");
            out.push_str(&control_plane);
            out.push('\n');
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
                "POOL LABELS",
                "TAINTS",
                "FIREWALL",
                "DIFFERS FROM INVENTORY",
            ],
            &rows,
        ));
        out.push_str(&control_plane);
        out.push('\n');
    }
    out
}

/// The node's host firewall: `ok` (admits exactly what the plan wants),
/// `drift` (the plan sets it), `absent` (no table inet kiwi; the plan sets
/// it), `unreadable` (its answer was no listing), `-` (not read: no running
/// machine, or no answer), `?` (the cluster was not observed).
fn firewall_state(
    observation: Option<&crate::plan::ClusterObservation>,
    plan: &Plan,
    node: &str,
) -> String {
    use crate::plan::NodeFirewall;
    let Some(observation) = observation else {
        return "?".to_string();
    };
    let planned = plan.steps.iter().any(|s| {
        matches!(&s.kind, StepKind::SetFirewall(f) if f.node.0 == node)
            && s.id.0 == format!("firewall:{node}")
    });
    match (observation.firewalls.get(node), planned) {
        (Some(NodeFirewall::Absent), _) => "absent",
        (Some(NodeFirewall::Unreadable { .. }), _) => "unreadable",
        (Some(NodeFirewall::Present { .. }), true) => "drift",
        (Some(NodeFirewall::Present { .. }), false) => "ok",
        (None, _) => "-",
    }
    .to_string()
}

/// The existing control-plane nodes of a kubeadm cluster, which kiwi-infra
/// does not order: their address from the inventory, readiness and taints
/// from the cluster. Empty for other clusters.
fn control_plane_table(
    cluster: &crate::inventory::ClusterSpec,
    observation: Option<&crate::plan::ClusterObservation>,
) -> String {
    let control_plane = cluster.control_plane();
    if control_plane.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = control_plane
        .iter()
        .map(|cp| {
            let node = observation.and_then(|o| o.node(&cp.name));
            let k8s = match (observation, node) {
                (None, _) => "unverified",
                (Some(_), None) => "not a node",
                (Some(_), Some(n)) if n.ready => "Ready",
                (Some(_), Some(_)) => "NotReady",
            };
            vec![
                cp.name.clone(),
                cp.address.to_string(),
                k8s.to_string(),
                node.map_or_else(|| "-".to_string(), taints_of),
            ]
        })
        .collect();
    let mut out = String::from("Control plane (not ordered by kiwi-infra):\n");
    out.push_str(&table::render(
        &["CONTROL-PLANE NODE", "ADDRESS", "K8S", "TAINTS"],
        &rows,
    ));
    out
}

/// The node's values of the labels its pool sets (`key=value,…`), as the
/// cluster reports them; `-` when it has none of them.
fn pool_labels(pool: &crate::inventory::PoolSpec, node: &crate::plan::Node) -> String {
    let shown: Vec<String> = pool
        .labels
        .keys()
        .filter_map(|k| node.labels.get(k).map(|v| format!("{k}={v}")))
        .collect();
    if shown.is_empty() {
        "-".to_string()
    } else {
        shown.join(",")
    }
}

/// The node's taints (`key=value:Effect,…`), `-` when it has none.
fn taints_of(node: &crate::plan::Node) -> String {
    if node.taints.is_empty() {
        "-".to_string()
    } else {
        node.taints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
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
        StepKind::SetTaint { node, taint, .. } => (node.0.clone(), format!("taint {taint}")),
        StepKind::RemoveTaint { node, taint, .. } => {
            (node.0.clone(), format!("taint {taint} to remove"))
        }
        StepKind::DrainNode { node } | StepKind::DeleteNode { node } => {
            (node.0.clone(), "to remove".into())
        }
        StepKind::DeleteStaleNode { node } => (node.0.clone(), "stale node object".into()),
        StepKind::SetFirewall(f) => (
            f.node.0.clone(),
            match f.drift.first() {
                Some(first) if f.drift.len() > 1 => format!(
                    "firewall: {} (+{} more)",
                    crate::text::escape_for_terminal(first),
                    f.drift.len() - 1
                ),
                Some(first) => format!("firewall: {}", crate::text::escape_for_terminal(first)),
                None => "firewall to set".into(),
            },
        ),
        StepKind::RenameInstance { instance, .. } => {
            (instance.name.clone(), "renamed; name to restore".into())
        }
        StepKind::AssignTag { instance, .. } => (instance.name.clone(), "tags missing".into()),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> (Desired, Observed) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
        let desired = crate::inventory::load(&dir.join("inventory")).unwrap();
        let text = std::fs::read_to_string(dir.join("in_sync.json")).unwrap();
        (desired, serde_json::from_str(&text).unwrap())
    }

    fn row<'a>(shown: &'a str, node: &str) -> &'a str {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no row for {node}:\n{shown}"))
    }

    #[test]
    fn status_lists_the_core_control_plane_and_every_nodes_pool_labels_and_taints() {
        let (desired, observed) = fixture();
        let plan = crate::plan::plan(&desired, &observed, &Default::default());
        let shown = render(&desired, &observed, &plan);
        for cp in ["kiwi-core-cp-01", "kiwi-core-cp-02", "kiwi-core-cp-03"] {
            let line = row(&shown, cp);
            assert!(line.contains(" Ready "), "{line}");
            assert!(
                line.contains("node-role.kubernetes.io/control-plane:NoSchedule"),
                "{line}"
            );
        }
        let realtime = row(&shown, "kiwi-core-realtime-01");
        assert!(
            realtime.contains(" workload.kiwistack.io/realtime=true "),
            "{realtime}"
        );
        assert!(
            realtime.contains(" workload.kiwistack.io/realtime=true:NoSchedule "),
            "{realtime}"
        );
    }

    #[test]
    fn a_not_ready_node_is_named_with_the_replacing_a_node_runbook_not_plan() {
        let (_, mut observed) = fixture();
        let acme = observed.clusters.get_mut("acme").unwrap().as_mut().unwrap();
        acme.nodes
            .iter_mut()
            .find(|n| n.name.0 == "kiwi-acme-general-01")
            .unwrap()
            .ready = false;
        let nodes = not_ready_nodes(&observed);
        assert_eq!(
            nodes,
            [("acme".to_string(), "kiwi-acme-general-01".to_string())]
        );
        let advice = not_ready_advice(&nodes, &Default::default());
        assert!(
            advice.contains("  kiwi-acme-general-01 (cluster acme)"),
            "{advice}"
        );
        assert!(
            advice.contains("docs/runbooks/replacing-a-node.md"),
            "{advice}"
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/runbooks/replacing-a-node.md")
                .is_file(),
            "the runbook status points at exists"
        );
        assert!(advice.contains("`plan` has nothing to say"), "{advice}");
        let planes = ["kiwi-core-cp-02".to_string()].into_iter().collect();
        let advice = not_ready_advice(
            &[("core".to_string(), "kiwi-core-cp-02".to_string())],
            &planes,
        );
        assert!(
            advice.contains("kiwi-core-cp-02 (cluster core, control plane)"),
            "{advice}"
        );
        assert!(!advice.contains("replacing-a-node"), "{advice}");
        assert!(
            advice.contains("not kiwi-infra's to order or replace"),
            "{advice}"
        );
    }
}
