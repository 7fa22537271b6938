//! Renderings of a plan: for people, in the manner of `terraform plan`
//! (grouped by cluster, `+` add, `~` change, `-` remove, a summary line), and
//! as versioned JSON for scripts (documented in `docs/plan-json.md`).
//!
//! Names, statuses, tags and labels in a plan come from Contabo and the
//! clusters, so every line of the human form is escaped for the terminal
//! ([`crate::text::escape_for_terminal`]): a renamed instance cannot clear
//! the screen or forge a `+ order` line. (The JSON form is escaped by its
//! encoder, and by [`crate::text::json_for_terminal`] where it is printed.)

use super::observed::InstanceStatus;
use super::steps::{Plan, Step, StepKind, Summary, Warning};
use crate::inventory::{products, Money, Taint};
use crate::text::escape_for_terminal;
use anstyle::{AnsiColor, Style};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How to render for people.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Use ANSI colours (when the output is a terminal).
    pub color: bool,
    /// `--allow-destroy` was given; otherwise destructive steps say they
    /// need it.
    pub allow_destroy: bool,
}

/// The plan as JSON, with its `format_version`.
pub fn render_json(plan: &Plan) -> serde_json::Value {
    serde_json::to_value(plan).unwrap_or(serde_json::Value::Null)
}

/// The last line of an empty plan with nothing held back.
pub const NO_CHANGES: &str = "No changes. The inventory matches Contabo.\n";

/// The plan for people.
pub fn render_human(plan: &Plan, options: &RenderOptions) -> String {
    let r = Renderer { options: *options };
    let mut out = String::new();
    for (group, steps) in groups(plan) {
        let header = match group {
            None => "Contabo account".to_string(),
            Some(name) => format!("Cluster {name}"),
        };
        let _ = writeln!(out, "{}", r.paint(&header, Style::new().bold()));
        let mut i = 0;
        while i < steps.len() {
            i += r.step(&mut out, &steps[i..]);
        }
        for u in plan
            .unverified
            .iter()
            .filter(|u| Some(u.cluster.as_str()) == group)
        {
            let text = format!(
                "? {}: cluster not observed (no node access yet); join, labels and taints unverified",
                u.node
            );
            let _ = writeln!(out, "  {}", r.paint(&text, fg(AnsiColor::Cyan)));
        }
        out.push('\n');
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "{}", r.paint("Warnings", fg(AnsiColor::Yellow).bold()));
        for w in &plan.warnings {
            let _ = writeln!(
                out,
                "  {} {}",
                r.paint("!", fg(AnsiColor::Yellow).bold()),
                escape_for_terminal(&warning(w))
            );
        }
        out.push('\n');
    }
    let held_back = plan.warnings.iter().any(Warning::leaves_work);
    let changes = plan.steps.iter().any(|s| s.kind.changes_something());
    let waits: Vec<String> = plan
        .earlier_waits()
        .filter_map(|s| s.kind.slot())
        .map(|s| escape_for_terminal(s).into_owned())
        .collect();
    if !changes && held_back {
        out.push_str("No changes can be made; the warnings above say what is held back.\n");
    } else if !changes && !plan.finishing_orders.is_empty() {
        out.push_str(NO_NEW_CHANGES_FINISHING);
    } else if !changes && !waits.is_empty() {
        out.push_str(NO_NEW_CHANGES_WAITING);
    } else if !changes {
        out.push_str(NO_CHANGES);
    } else {
        let _ = writeln!(
            out,
            "{}",
            r.paint(&summary_line(&plan.summary), Style::new().bold())
        );
        if plan.summary.destructive > 0 && !options.allow_destroy {
            let _ = writeln!(
                out,
                "{} destructive step(s) will only be carried out with --allow-destroy.",
                plan.summary.destructive
            );
        }
    }
    if !plan.finishing_orders.is_empty() {
        let tags = plan
            .steps
            .iter()
            .filter(|s| match &s.kind {
                StepKind::AssignTag { instance, .. } => {
                    plan.finishing_orders.contains(&instance.name)
                }
                _ => false,
            })
            .count();
        let slots: Vec<String> = plan
            .finishing_orders
            .iter()
            .map(|s| escape_for_terminal(s).into_owned())
            .collect();
        let _ = writeln!(
            out,
            "\nAlso finishes {} order(s) of an interrupted apply (recorded in the order \
             journal): {tags} tag assignment(s) for {}",
            slots.len(),
            slots.join(", ")
        );
    }
    if !waits.is_empty() {
        let _ = writeln!(
            out,
            "\nWaits for {} instance(s) not running yet: {}",
            waits.len(),
            waits.join(", ")
        );
    }
    out
}

/// The last line of a plan that changes nothing but finishes the orders of
/// an interrupted apply.
const NO_NEW_CHANGES_FINISHING: &str =
    "No new changes; this plan finishes earlier orders (below).\n";

/// The last line of a plan that changes nothing but waits for machines
/// earlier runs started.
const NO_NEW_CHANGES_WAITING: &str =
    "No new changes; apply waits for machines of the inventory that are not running yet \
     (below).\n";

/// `Plan: 4 to order (+€83.96/month), 4 to bootstrap, 2 labels to change, 0 to cancel.`
/// Counts that are usually zero (reinstalls, taints, tags, node removals)
/// appear only when they are not.
pub fn summary_line(s: &Summary) -> String {
    let mut parts = Vec::new();
    if s.to_order > 0 {
        parts.push(format!(
            "{} to order (+{}/month)",
            s.to_order, s.monthly_cost_added
        ));
    } else {
        parts.push("0 to order".to_string());
    }
    if s.private_networking_cost.cents > 0 {
        if let Some(first) = parts.first_mut() {
            first.pop();
            first.push_str(&format!(
                ", of which {} private networking)",
                s.private_networking_cost
            ));
        }
    }
    if s.to_reinstall > 0 {
        parts.push(format!("{} to reinstall", s.to_reinstall));
    }
    if s.private_networks_to_create > 0 {
        parts.push(format!(
            "{} private {} to create",
            s.private_networks_to_create,
            plural(s.private_networks_to_create, "network", "networks")
        ));
    }
    if s.private_network_members_to_add > 0 {
        parts.push(format!(
            "{} to add to a private network",
            s.private_network_members_to_add
        ));
    }
    if s.instances_to_tag > 0 {
        parts.push(format!("{} to tag", s.instances_to_tag));
    }
    parts.push(format!("{} to bootstrap", s.to_bootstrap));
    parts.push(format!(
        "{} {} to change",
        s.labels_to_change,
        plural(s.labels_to_change, "label", "labels")
    ));
    if s.taints_to_change > 0 {
        parts.push(format!(
            "{} {} to change",
            s.taints_to_change,
            plural(s.taints_to_change, "taint", "taints")
        ));
    }
    if s.label_records > 0 {
        parts.push(format!(
            "{} {} of kiwi-infra's labels to write",
            s.label_records,
            plural(s.label_records, "record", "records")
        ));
    }
    if s.firewalls_to_set > 0 {
        parts.push(format!(
            "{} {} to set",
            s.firewalls_to_set,
            plural(s.firewalls_to_set, "firewall", "firewalls")
        ));
    }
    if s.nodes_to_remove > 0 {
        parts.push(format!(
            "{} {} to remove",
            s.nodes_to_remove,
            plural(s.nodes_to_remove, "node", "nodes")
        ));
    }
    if s.to_cancel > 0 {
        parts.push(format!(
            "{} to cancel (-{}/month)",
            s.to_cancel, s.monthly_cost_removed
        ));
    } else {
        parts.push("0 to cancel".to_string());
    }
    format!("Plan: {}.", parts.join(", "))
}

fn plural<'s>(n: u32, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Steps grouped by cluster: account-wide steps first, then clusters in the
/// order they first appear (steps, then unverified nodes).
fn groups(plan: &Plan) -> Vec<(Option<&str>, Vec<&Step>)> {
    let mut order: Vec<Option<&str>> = Vec::new();
    let mut by: BTreeMap<Option<&str>, Vec<&Step>> = BTreeMap::new();
    // Waits change nothing: they are summed up below the plan (those for
    // earlier runs' machines) or implied by the order or reinstall shown.
    for step in plan.steps.iter().filter(|s| s.kind.changes_something()) {
        let key = step.cluster.as_deref();
        if !order.contains(&key) {
            order.push(key);
        }
        by.entry(key).or_default().push(step);
    }
    for u in &plan.unverified {
        let key = Some(u.cluster.as_str());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    order.sort_by_key(|k| k.is_some());
    order
        .into_iter()
        .map(|k| (k, by.remove(&k).unwrap_or_default()))
        .collect()
}

fn fg(color: AnsiColor) -> Style {
    Style::new().fg_color(Some(color.into()))
}

struct Renderer {
    options: RenderOptions,
}

impl Renderer {
    /// One line of output: escaped, then coloured. Every line of the human
    /// form goes through here or through [`warning`].
    fn paint(&self, text: &str, style: Style) -> String {
        let text = escape_for_terminal(text);
        if self.options.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    fn line(&self, out: &mut String, sign: char, text: &str, step: &Step) {
        let style = match sign {
            '+' => fg(AnsiColor::Green),
            '-' => fg(AnsiColor::Red),
            _ => fg(AnsiColor::Yellow),
        };
        let mut text = format!("{sign} {text}");
        if step.destructive {
            text.push_str(if self.options.allow_destroy {
                "  [destructive]"
            } else {
                "  [destructive, needs --allow-destroy]"
            });
        }
        let _ = writeln!(out, "  {}", self.paint(&text, style));
    }

    fn detail(&self, out: &mut String, text: &str) {
        let _ = writeln!(out, "      {}", self.paint(text, Style::new().dimmed()));
    }

    /// Renders the first step (and any following tag assignments to the same
    /// instance, shown as one line); returns how many steps it used.
    fn step(&self, out: &mut String, steps: &[&Step]) -> usize {
        let Some(step) = steps.first() else { return 1 };
        match &step.kind {
            StepKind::WaitForRunning { .. } => {}
            StepKind::EnsureSecret { name } => self.line(
                out,
                '+',
                &format!("create secret {name} (operator SSH public key)"),
                step,
            ),
            StepKind::EnsureTag { name } => {
                self.line(out, '+', &format!("create tag {name}"), step)
            }
            StepKind::EnsurePrivateNetwork { name, region } => self.line(
                out,
                '+',
                &format!("create private network {name} (region {region})"),
                step,
            ),
            StepKind::AssignPrivateNetwork { network, instance } => {
                let who = match &instance.id {
                    Some(id) => format!("{} (instance {id})", instance.name),
                    None => instance.name.clone(),
                };
                self.line(
                    out,
                    '+',
                    &format!("add {who} to private network {network}"),
                    step,
                );
            }
            StepKind::OrderInstance(o) => {
                self.line(out, '+', &format!("order {}", o.slot), step);
                self.detail(
                    out,
                    &format!(
                        "{} ({}), class {}, region {}, {}/month, {}-month term, image {}",
                        o.product,
                        o.product_name,
                        o.class,
                        o.region,
                        o.monthly_price,
                        o.period,
                        o.image.name
                    ),
                );
                self.detail(out, &format!("firewall: {}", o.firewall.summary()));
                if let Some(add_on) = o.private_networking {
                    self.detail(
                        out,
                        &format!(
                            "add-on private networking, {add_on}/month: {}/month in all",
                            o.monthly_total()
                        ),
                    );
                }
            }
            StepKind::AssignTag { instance, .. } => {
                let run: Vec<&str> = steps
                    .iter()
                    .map_while(|s| match &s.kind {
                        StepKind::AssignTag { tag, instance: i } if i == instance => {
                            Some(tag.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                let who = match &instance.id {
                    Some(id) => format!("{} (instance {id})", instance.name),
                    None => instance.name.clone(),
                };
                self.line(out, '~', &format!("tag {who}: {}", run.join(", ")), step);
                return run.len().max(1);
            }
            StepKind::UnassignTag { tag, instance } => {
                let who = match &instance.id {
                    Some(id) => format!("{} (instance {id})", instance.name),
                    None => instance.name.clone(),
                };
                self.line(out, '~', &format!("untag {who}: {tag}"), step);
            }
            StepKind::ReinstallInstance(r) => {
                let id = r
                    .instance
                    .id
                    .as_ref()
                    .map_or_else(String::new, |id| format!(" (instance {id})"));
                let why = match (&r.private_network, &r.status) {
                    (Some(net), _) => {
                        format!("to wire its private network {net} (Contabo does so on reinstall)")
                    }
                    (None, InstanceStatus::Running) => {
                        "running but not a node of the cluster".to_string()
                    }
                    (None, other) => format!("status {other}"),
                };
                self.line(
                    out,
                    '~',
                    &format!("reinstall {}{id}: {why}", r.instance.name),
                    step,
                );
                self.detail(out, &format!("image {}", r.image.name));
                self.detail(out, &format!("firewall: {}", r.firewall.summary()));
            }
            StepKind::BootstrapK3sServer(j) => {
                self.line(
                    out,
                    '+',
                    &format!(
                        "bootstrap {} as the first k3s server (cluster-init, {})",
                        j.node, j.version
                    ),
                    step,
                );
                self.node_details(out, &j.labels, &j.taints);
                self.private_details(out, j);
            }
            StepKind::JoinK3sServer(j) | StepKind::JoinK3sAgent(j) => {
                let role = if matches!(step.kind, StepKind::JoinK3sServer(_)) {
                    "server"
                } else {
                    "agent"
                };
                let via = j
                    .via
                    .as_ref()
                    .map_or_else(String::new, |v| format!(" via {v}"));
                self.line(
                    out,
                    '+',
                    &format!("join {} as k3s {role}{via}", j.node),
                    step,
                );
                self.node_details(out, &j.labels, &j.taints);
                self.private_details(out, j);
            }
            StepKind::KubeadmJoin(j) => {
                let role = match j.role {
                    super::steps::KubeadmRole::Worker => "worker",
                    super::steps::KubeadmRole::ControlPlane => "control-plane node",
                };
                self.line(
                    out,
                    '+',
                    &format!("kubeadm join {} as {role} via {}", j.node, j.via),
                    step,
                );
                self.node_details(out, &j.labels, &j.taints);
            }
            StepKind::SetLabel {
                node,
                key,
                value,
                previous,
                ..
            } => match previous {
                Some(p) => self.line(
                    out,
                    '~',
                    &format!("label {node}: {key}={value} (was {p:?})"),
                    step,
                ),
                None => self.line(out, '+', &format!("label {node}: {key}={value}"), step),
            },
            StepKind::RemoveLabel {
                node,
                key,
                previous,
                ..
            } => self.line(
                out,
                '-',
                &format!("label {node}: {key} (was {previous:?})"),
                step,
            ),
            StepKind::RecordLabels {
                node,
                keys,
                previous,
            } => {
                let what = match previous {
                    None => "record",
                    Some(_) => "update the record of",
                };
                self.line(
                    out,
                    '~',
                    &format!(
                        "{what} the labels kiwi-infra sets on {node} ({} {}, annotation {})",
                        keys.len(),
                        plural(u32::try_from(keys.len()).unwrap_or(u32::MAX), "key", "keys"),
                        super::observed::MANAGED_LABELS_ANNOTATION
                    ),
                    step,
                )
            }
            StepKind::SetTaint { node, taint, .. } => {
                self.line(out, '+', &format!("taint {node}: {taint}"), step)
            }
            StepKind::RemoveTaint { node, taint, .. } => {
                self.line(out, '-', &format!("taint {node}: {taint}"), step)
            }
            StepKind::DrainNode { node } => self.line(out, '-', &format!("drain {node}"), step),
            StepKind::DeleteNode { node } => {
                self.line(out, '-', &format!("delete node {node}"), step)
            }
            StepKind::SetFirewall(f) => {
                let mut what = format!("firewall {}: {}", f.node, f.wanted.summary());
                if !f.pending_peers.is_empty() {
                    let pending: Vec<&str> = f.pending_peers.iter().map(String::as_str).collect();
                    let n = u32::try_from(pending.len()).unwrap_or(u32::MAX);
                    what.push_str(&format!(
                        " (+ {n} {} whose address its instance's wait finds: {})",
                        plural(n, "peer", "peers"),
                        pending.join(", ")
                    ));
                }
                self.line(out, '~', &what, step);
                for drift in &f.drift {
                    self.detail(out, &escape_for_terminal(drift));
                }
            }
            StepKind::DeleteStaleNode { node } => self.line(
                out,
                '-',
                &format!("delete stale node object {node} (not Ready; its machine is gone)"),
                step,
            ),
            StepKind::RenameInstance {
                instance,
                current_name,
            } => {
                let id = instance
                    .id
                    .as_ref()
                    .map_or_else(String::new, |id| format!(" (instance {id})"));
                self.line(
                    out,
                    '~',
                    &format!(
                        "rename {}{id} back to {}: renamed to \"{}\"; recognised by its node's address or the order journal",
                        instance.name,
                        instance.name,
                        escape_for_terminal(current_name)
                    ),
                    step,
                );
            }
            StepKind::CancelInstance {
                instance,
                product,
                monthly_price,
            } => {
                let id = instance
                    .id
                    .as_ref()
                    .map_or_else(String::new, |id| format!(" (instance {id})"));
                let name = products::product(product).map_or("", |p| p.name);
                let price = monthly_price.map_or_else(
                    || "price unknown".to_string(),
                    |m: Money| format!("-{m}/month"),
                );
                self.line(out, '-', &format!("cancel {}{id}", instance.name), step);
                // The API tells the date only in its answer to the cancel:
                // until then all that is known is the contract's rule.
                self.detail(
                    out,
                    &format!(
                        "{product} ({name}), {price}; runs and is billed until the end of its \
                         contract period"
                    ),
                );
            }
        }
        1
    }

    fn private_details(&self, out: &mut String, join: &super::steps::K3sJoin) {
        if let Some(net) = &join.private_network {
            self.detail(
                out,
                &format!(
                    "cluster traffic over private network {net}: node-ip is its private address"
                ),
            );
        }
    }

    fn node_details(&self, out: &mut String, labels: &BTreeMap<String, String>, taints: &[Taint]) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.detail(out, &format!("labels: {}", labels.join(", ")));
        if !taints.is_empty() {
            let taints: Vec<String> = taints.iter().map(Taint::to_string).collect();
            self.detail(out, &format!("taints: {}", taints.join(", ")));
        }
    }
}

fn warning(w: &Warning) -> String {
    match w {
        Warning::DuplicateInstances { name, instances, kept } => {
            let list: Vec<String> = instances
                .iter()
                .map(|i| {
                    format!(
                        "{} created {} ({}{})",
                        i.id,
                        i.created_date.format("%Y-%m-%d %H:%M UTC"),
                        i.status,
                        if i.owned { ", owned" } else { "" }
                    )
                })
                .collect();
            format!(
                "{name}: {} instances share this name (a past double order): {}. The plan uses {kept} and leaves the others alone; cancel the extra ones once checked.",
                instances.len(),
                list.join("; ")
            )
        }
        Warning::NeedsAdoption { name, instance } => format!(
            "{name}: instance {} (created {}) has this slot's name but not the kiwi-managed tag; left alone. Pass --adopt to take it over.",
            instance.id,
            instance.created_date.format("%Y-%m-%d %H:%M UTC")
        ),
        Warning::NeedsAttention { name, instance, status } => format!(
            "{name}: instance {instance} is `{status}`; it needs a human (Contabo panel or support) before it can be used."
        ),
        Warning::CancelledInstance { name, instance, cancel_date } => format!(
            "{name}: instance {instance} is cancelled (runs until {cancel_date}); it does not count as capacity."
        ),
        Warning::ImageUnresolved { image } => format!(
            "image `{image}` was not found at Contabo; orders and reinstalls cannot be placed until it resolves."
        ),
        Warning::Mismatch { name, instance, field, expected, actual } => format!(
            "{name}: instance {instance} has {field} {actual}, the inventory says {expected}; changing it is not automated."
        ),
        Warning::Protected { cluster, skipped } => format!(
            "cluster {cluster} is protected; not planned: {}.",
            skipped.join("; ")
        ),
        Warning::BelowQuorum { cluster, servers, wanted, quorum, skipped } => format!(
            "cluster {cluster}: going from {servers} to {wanted} k3s server(s) would drop below etcd quorum ({quorum} of {servers}); refused, not planned: {}. Keep {servers} servers (or remove the whole customer).",
            skipped.join("; ")
        ),
        Warning::NoServerToJoin { cluster, node } => format!(
            "{node}: cluster {cluster} has no server or control-plane node to join through; not joined."
        ),
        Warning::ControlPlaneNodeMissing { cluster, node } => format!(
            "{node}: control-plane node of cluster {cluster} listed in the inventory is not in the cluster."
        ),
        Warning::AmbiguousSlot { name, clusters } => format!(
            "{name}: this slot name belongs to more than one of {}; nothing is planned for it. Rename a pool or customer so that every slot name is unique.",
            clusters.join(", ")
        ),
        Warning::Unattributed { name, instance, cluster, reason } => format!(
            "instance {instance} (named \"{}\") is kiwi-infra's, but {reason}; it is left alone{}. Give it back its slot name in the Contabo panel, or check its kiwi-cluster-* tag.",
            escape_for_terminal(name),
            cluster.as_ref().map_or_else(String::new, |c| format!(" (tagged for cluster {c})"))
        ),
        Warning::OrdersHeld { cluster, slots } => format!(
            "{}: not ordered, so that the machine of the unattributed instance above is not bought a second time: {}.",
            cluster.as_ref().map_or_else(|| "every cluster".to_string(), |c| format!("cluster {c}")),
            slots.join(", ")
        ),
        Warning::NodeWithoutInstance { cluster, node } => format!(
            "{node}: its node is Ready in cluster {cluster}, but no instance carries its name or its address; nothing is ordered for it. Was it renamed or moved in the Contabo panel?"
        ),
        Warning::SignalsDisagree { name, instance, what } => format!(
            "{name}: instance {instance}: {what}."
        ),
        Warning::FlannelBackendDiffers { cluster, running, wanted } => format!(
            "cluster {cluster}: its k3s servers run flannel backend {} and the inventory wants \
             {wanted}. kiwi-infra never changes a running cluster's backend: new servers join \
             with the running one, and the firewall opens its ports. To migrate (k3s: flannel \
             options are server flags, identical on every server): set `flannel-backend: \
             {wanted}` in /etc/rancher/k3s/config.yaml on every server; restart k3s on the \
             servers one at a time (`sudo systemctl restart k3s`), then k3s-agent on the \
             agents; then remove the old interface (`sudo ip link delete flannel.1`) or reboot \
             each node. Pod traffic is interrupted while the nodes disagree.",
            running.as_deref().unwrap_or("(unknown: none k3s documents, or unreadable)")
        ),
        Warning::FlannelBackendsMixed { cluster, servers } => format!(
            "cluster {cluster}: its k3s servers name different flannel backends ({}), which \
             k3s does not support; no firewall change is planned for it until every server's \
             /etc/rancher/k3s/config.yaml names the same one.",
            servers
                .iter()
                .map(|(n, b)| format!("{n}: {b}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Warning::FlannelBackendUnread { cluster } => format!(
            "cluster {cluster}: the flannel backend of its k3s servers could not be read \
             (`flannel-backend` in /etc/rancher/k3s/config.yaml); the ports its nodes' \
             firewalls must open are unknown, so they are unverified and not changed."
        ),
        Warning::PublicPortReserved {
            cluster,
            port,
            what,
        } => format!(
            "cluster {cluster}: its public port {port} is what its nodes keep for {what}, which \
             its running servers use; opening it to anyone would undo the firewall, so no \
             firewall opens it. Drop it from the cluster's [firewall]."
        ),
        Warning::FirewallUnreadable { node, reason } => format!(
            "{node}: its host firewall could not be read ({}); it is unverified and this plan \
             changes nothing on it.",
            escape_for_terminal(reason)
        ),
        Warning::OperatorNetworksWide { covered } => format!(
            "operator_networks in kiwi.toml cover {covered}: the firewall of every node this \
             plan orders or reinstalls admits SSH and the Kubernetes API from a very large part \
             of the internet. Name the networks you administer from."
        ),
        Warning::OperatorNetworksOpen => "operator_networks in kiwi.toml is [] or covers every IPv4 or IPv6 address (a /0, whole or in parts): the firewall of \
            every node this plan orders or reinstalls leaves SSH and the Kubernetes API open to \
            the internet. Name the networks you administer from to close them."
            .to_string(),
        Warning::OutsidePrivateNetwork { cluster, node, state } => format!(
            "{node}: cluster {cluster} uses a private network, but {state}; its cluster traffic stays on its public address. Joining needs the private-networking add-on and a reinstall, which rebuilds the node: kiwi-infra does not do that to a running node. Rebuild it as a new machine (docs/runbooks/replacing-a-node.md), or book the add-on and reinstall it by hand."
        ),
        Warning::AmbiguousPrivateNetwork { cluster, network, count } => format!(
            "cluster {cluster}: {count} private networks are named {network}; kiwi-infra cannot tell which is the cluster's, so no machine is added to one and no new node joins. Delete or rename the extra ones in the Contabo panel."
        ),
        Warning::PrivateNetworkKept { cluster, network, members } => format!(
            "cluster {cluster} no longer sets private_network, but private network {network} ({members} member(s)) exists; kiwi-infra neither removes its members nor deletes it, and its nodes keep the addresses they joined with."
        ),
        Warning::OddValue { name, instance, field, value } => format!(
            "instance {instance} (named \"{}\"): {field} is \"{}\", which is not of the expected form; not used.",
            escape_for_terminal(name),
            escape_for_terminal(value)
        ),
    }
}
