//! The final word of an apply: what was ordered (ids, names, IPs), what is
//! still pending and why, what failed with its whole error chain, what the
//! fresh plan still holds, and the exact command to run next. Plain text,
//! built here so the CLI only prints it and tests can read it.
//!
//! It quotes what Contabo and the nodes said (statuses, addresses, error
//! messages), so every value is escaped for the terminal where it is put
//! in: only the summary's own line breaks remain.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::{Plan, StepKind, Warning};
use crate::report::{HoldBack, StepOutcome};
use crate::text::{escape_for_terminal as shown, escape_lines_for_terminal};

use super::executor::ApplyOutcome;
use super::node::is_node_step;

/// What the re-observation after the apply found.
#[derive(Debug)]
pub enum FreshPlan<'a> {
    /// The plan made from a fresh observation.
    Planned(&'a Plan),
    /// Observing again failed; the text says why.
    Unavailable(String),
}

/// Inputs of the summary.
#[derive(Debug)]
pub struct SummaryInput<'a> {
    /// What the executor did.
    pub outcome: &'a ApplyOutcome,
    /// The plan made after it.
    pub fresh: FreshPlan<'a>,
    /// `--contabo-only` was given.
    pub contabo_only: bool,
    /// The command that applies again, e.g. `kiwi-infra apply --inventory x`.
    pub apply_command: String,
    /// The cluster of each of the inventory's slots (slot name → cluster
    /// name), so the lists are sorted by cluster, then node. Slots it does
    /// not name (a node the inventory dropped) come first.
    pub cluster_of: BTreeMap<String, String>,
}

/// The verdict: is everything of this run done?
pub fn complete(input: &SummaryInput<'_>) -> bool {
    input.outcome.all_done()
        && match &input.fresh {
            FreshPlan::Planned(plan) => {
                remaining(plan, input.contabo_only).is_empty()
                    && !plan.warnings.iter().any(Warning::leaves_work)
            }
            FreshPlan::Unavailable(_) => false,
        }
}

/// Steps of the fresh plan that count as left to do.
fn remaining(plan: &Plan, contabo_only: bool) -> Vec<&crate::plan::Step> {
    plan.steps
        .iter()
        .filter(|s| !(contabo_only && is_node_step(&s.kind)))
        .collect()
}

/// Warnings meaning a slot is not realised and needs the operator, in
/// words: one for each warning that [`Warning::leaves_work`].
fn human_warnings(plan: &Plan) -> Vec<String> {
    plan.warnings
        .iter()
        .filter_map(|w| match w {
            Warning::NeedsAttention {
                name,
                instance,
                status,
            } => Some(format!("{name} (instance {instance}) is {status}")),
            Warning::NeedsAdoption { name, instance } => Some(format!(
                "{name}: instance {} has the slot's name but is not kiwi-infra's; take it over \
                 with `kiwi-infra apply --adopt`, or rename it",
                instance.id
            )),
            Warning::ImageUnresolved { image } => {
                Some(format!("image {image:?} is not known to Contabo"))
            }
            // The inventory asks for less than there is, and that is refused
            // on purpose: not done, and only the operator can change it.
            Warning::Protected { cluster, skipped } => Some(format!(
                "cluster {cluster} is protected; held back: {}",
                skipped.join("; ")
            )),
            Warning::BelowQuorum {
                cluster,
                servers,
                wanted,
                quorum,
                ..
            } => Some(format!(
                "cluster {cluster}: {servers} → {wanted} k3s servers refused (etcd quorum is \
                 {quorum}); keep {servers} servers in the inventory"
            )),
            Warning::OrdersHeld { cluster, slots } => Some(format!(
                "{}: orders held back (an unattributed instance may be one of them): {}",
                cluster
                    .as_ref()
                    .map_or_else(|| "every cluster".to_string(), |c| format!("cluster {c}")),
                slots.join(", ")
            )),
            _ => None,
        })
        .collect()
}

/// Where each node (slot) this run touched ended up, in a few words, for
/// the last state of its progress line and the summary's `Nodes:` list:
/// `ordered, joined, Ready, labelled`, `failed: …`, `held: …`, `not done: …`.
///
/// Built from every task of the run (all rounds merged), so a node that was
/// bootstrapping in the first round and labelled in the second ends
/// `…, labelled`, never on a stage it has left. What a task did is read
/// from its step id, which the planner forms as `<what>:<node>…`.
pub fn node_states(outcome: &ApplyOutcome) -> BTreeMap<String, String> {
    let mut by_slot: BTreeMap<&str, Vec<&super::executor::TaskResult>> = BTreeMap::new();
    for r in &outcome.results {
        if let Some(slot) = &r.slot {
            by_slot.entry(slot.as_str()).or_default().push(r);
        }
    }
    by_slot
        .into_iter()
        .map(|(slot, results)| (slot.to_string(), node_state(slot, &results)))
        .collect()
}

/// What a done task did to its node, in lifecycle order (see [`DONE_WORDS`]).
fn done_word(id: &str) -> Option<usize> {
    let what = id.split(':').next().unwrap_or_default();
    DONE_WORDS
        .iter()
        .position(|(prefixes, _)| prefixes.contains(&what))
}

/// Step id prefixes and what a node that went through them is now.
const DONE_WORDS: &[(&[&str], &str)] = &[
    (&["order"], "ordered"),
    (&["reinstall"], "reinstalled"),
    (&["wait"], "running"),
    (&["bootstrap"], "bootstrapped, Ready"),
    (&["join"], "joined, Ready"),
    (&["label", "unlabel", "taint", "untaint"], "labelled"),
    // Only kiwi-infra's own bookkeeping changed, no label the node carries.
    (&["record-labels"], "label record updated"),
    (&["assign", "untag"], "tags set"),
    (&["rename"], "renamed back"),
    (&["delete-stale-node"], "stale node object deleted"),
    (&["drain"], "drained"),
    (&["delete-node"], "removed from its cluster"),
    (&["cancel"], "cancelled"),
];

fn node_state(slot: &str, results: &[&super::executor::TaskResult]) -> String {
    // The most pressing first: a failure, then what waits for the operator.
    for r in results {
        if let StepOutcome::Failed(text) = &r.outcome {
            let first = match &r.error {
                Some(e) => e.to_string(),
                None => text.clone(),
            };
            return format!("failed: {}", first_line(&first));
        }
    }
    for r in results {
        match &r.outcome {
            StepOutcome::NeedsHuman(text) => {
                let text = text.strip_prefix(slot).unwrap_or(text).trim_start();
                return format!("held: {}", first_line(text));
            }
            StepOutcome::NotCarriedOut(why) => {
                return format!("held: {}", first_line(&why.to_string()))
            }
            _ => {}
        }
    }
    for r in results {
        if let StepOutcome::Skipped { because } = &r.outcome {
            return format!("not done: {because} did not succeed");
        }
    }
    let mut done: Vec<usize> = results.iter().filter_map(|r| done_word(&r.id.0)).collect();
    done.sort_unstable();
    done.dedup();
    let joined = done.iter().any(|&i| DONE_WORDS[i].1.ends_with(", Ready"));
    let words: Vec<&str> = done
        .into_iter()
        .map(|i| DONE_WORDS[i].1)
        // Joined and Ready says more than running.
        .filter(|w| !(joined && *w == "running"))
        .collect();
    if words.is_empty() {
        "done".to_string()
    } else {
        words.join(", ")
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Sort key: cluster, then node name.
fn by_cluster<'a>(cluster_of: &'a BTreeMap<String, String>, slot: &'a str) -> (&'a str, &'a str) {
    (cluster_of.get(slot).map_or("", String::as_str), slot)
}

/// True when destructive steps waited for `--allow-destroy`.
fn needs_allow_destroy(outcome: &ApplyOutcome) -> bool {
    outcome.results.iter().any(|r| {
        matches!(
            &r.outcome,
            StepOutcome::NotCarriedOut(HoldBack::NeedsAllowDestroy)
        )
    })
}

/// The `Next:` line when work is only pending: the command that moves it
/// on, not the one that just stopped (rerunning that would stop the same
/// way). Destructive steps held for `--allow-destroy` get the flag, with a
/// word to review them; node steps a `--contabo-only` run left (drains
/// before cancels among them) get the command without that flag.
fn next_command(input: &SummaryInput<'_>) -> String {
    let fresh = match &input.fresh {
        FreshPlan::Planned(plan) => Some(plan),
        FreshPlan::Unavailable(_) => None,
    };
    let mut command = input.apply_command.clone();
    let mut why = Vec::new();
    let held_destructive = needs_allow_destroy(input.outcome)
        || fresh.is_some_and(|p| p.steps.iter().any(|s| s.destructive));
    if held_destructive && !command.contains(" --allow-destroy") {
        command.push_str(" --allow-destroy");
        why.push("review the destructive steps");
    }
    let node_left = fresh.is_some_and(|p| p.steps.iter().any(|s| is_node_step(&s.kind)));
    if input.contabo_only && node_left {
        command = command.replace(" --contabo-only", "");
        why.push("once the nodes can be reached over SSH");
    }
    if why.is_empty() {
        format!("Next: `{command}`")
    } else {
        format!("Next: {}, run `{command}`", why.join("; "))
    }
}

/// Renders the summary.
pub fn render(input: &SummaryInput<'_>) -> String {
    let outcome = input.outcome;
    let mut out = String::new();
    let _ = writeln!(out, "\nApply summary");

    if !outcome.ordered.is_empty() {
        let _ = writeln!(out, "\nOrdered:");
        // In the inventory's terms, not in the order Contabo answered.
        let mut ordered: Vec<_> = outcome.ordered.iter().collect();
        ordered.sort_by(|a, b| {
            by_cluster(&input.cluster_of, &a.0).cmp(&by_cluster(&input.cluster_of, &b.0))
        });
        for (slot, id) in ordered {
            let seen = outcome.instances.get(slot);
            let ip = seen
                .and_then(|i| i.ipv4())
                .map_or_else(|| "no IPv4 yet".to_string(), |ip| ip.to_string());
            let status =
                seen.map_or_else(|| "status unknown".to_string(), |i| i.status.to_string());
            let (slot, ip, status) = (shown(slot), shown(&ip), shown(&status));
            let _ = writeln!(out, "  {slot:<34} instance {id:<10} {ip:<15} {status}");
        }
    }

    // Every node this run touched, with where it ended: an apply that only
    // joins, labels or reinstalls says so here.
    let states = node_states(outcome);
    if !states.is_empty() {
        let _ = writeln!(out, "\nNodes:");
        let mut slots: Vec<&String> = states.keys().collect();
        slots.sort_by(|a, b| {
            by_cluster(&input.cluster_of, a).cmp(&by_cluster(&input.cluster_of, b))
        });
        for slot in slots {
            let _ = writeln!(out, "  {:<34} {}", shown(slot), shown(&states[slot]));
        }
    }
    let account: Vec<_> = outcome
        .results
        .iter()
        .filter(|r| r.slot.is_none() && r.outcome.is_done())
        .collect();
    if !account.is_empty() {
        let _ = writeln!(out, "\nContabo account:");
        for r in account {
            if let StepOutcome::Done(text) = &r.outcome {
                let _ = writeln!(out, "  {}: {}", shown(&r.id.0), shown(first_line(text)));
            }
        }
    }

    if !outcome.cancelled.is_empty() {
        let _ = writeln!(
            out,
            "\nCancelled (each runs, and is billed, until its date):"
        );
        let mut saved = crate::inventory::Money::default();
        let mut unknown = 0;
        for c in &outcome.cancelled {
            let until = c
                .cancel_date
                .map_or_else(|| "date not reported".to_string(), |d| d.to_string());
            let price = match c.monthly_price {
                Some(m) => {
                    saved.cents += m.cents;
                    format!("-{m}/month")
                }
                None => {
                    unknown += 1;
                    "price unknown".to_string()
                }
            };
            let _ = writeln!(
                out,
                "  {:<34} instance {:<10} until {until:<10}  {price}",
                shown(&c.slot),
                c.instance
            );
        }
        let _ = writeln!(
            out,
            "  Monthly saving once they stop: {saved}{}",
            if unknown > 0 {
                format!(" (+{unknown} of unknown price)")
            } else {
                String::new()
            }
        );
    }

    let failed: Vec<_> = outcome
        .results
        .iter()
        .filter(|r| matches!(r.outcome, StepOutcome::Failed(_)))
        .collect();
    let human: Vec<_> = outcome
        .results
        .iter()
        .filter(|r| matches!(r.outcome, StepOutcome::NeedsHuman(_)))
        .collect();
    let not_carried: Vec<_> = outcome
        .results
        .iter()
        .filter(|r| matches!(r.outcome, StepOutcome::NotCarriedOut(_)))
        .collect();
    let skipped: Vec<_> = outcome
        .results
        .iter()
        .filter(|r| matches!(r.outcome, StepOutcome::Skipped { .. }))
        .collect();

    if !human.is_empty() {
        let _ = writeln!(out, "\nNeeds you:");
        for r in &human {
            if let StepOutcome::NeedsHuman(text) = &r.outcome {
                let _ = writeln!(out, "  {}", shown(text));
            }
        }
    }
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailed:");
        for r in &failed {
            // The chain's parts are escaped one by one, so every line
            // break left in it is its own.
            let text = match (&r.error, &r.outcome) {
                (Some(e), _) => e.chain(),
                (None, StepOutcome::Failed(text)) => shown(text).into_owned(),
                _ => String::new(),
            };
            let text = escape_lines_for_terminal(&text);
            let _ = writeln!(
                out,
                "  {}: {}",
                shown(&r.id.to_string()),
                text.replace('\n', "\n  ")
            );
        }
    }
    if !not_carried.is_empty() || !skipped.is_empty() || !outcome.deferred.is_empty() {
        let _ = writeln!(out, "\nPending:");
        let mut reasons: Vec<(&HoldBack, Vec<String>)> = Vec::new();
        for r in &not_carried {
            if let StepOutcome::NotCarriedOut(why) = &r.outcome {
                match reasons.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, ids)) => ids.push(r.id.to_string()),
                    None => reasons.push((why, vec![r.id.to_string()])),
                }
            }
        }
        for (why, ids) in reasons {
            let _ = writeln!(
                out,
                "  {} step(s) not carried out: {}",
                ids.len(),
                shown(&why.to_string())
            );
            let _ = writeln!(out, "    {}", shown(&ids.join(", ")));
            if *why == HoldBack::NeedsAllowDestroy {
                let _ = writeln!(
                    out,
                    "    (destructive: review them in the plan above, then run `{} \
                     --allow-destroy`)",
                    input.apply_command
                );
            }
        }
        for r in &skipped {
            if let StepOutcome::Skipped { because } = &r.outcome {
                let _ = writeln!(
                    out,
                    "  {}",
                    shown(&format!(
                        "{}: skipped because {because} did not succeed",
                        r.id
                    ))
                );
            }
        }
        if !outcome.deferred.is_empty() {
            let _ = writeln!(
                out,
                "  {} step(s) left for later (--contabo-only: node steps, and the cancels that wait \
                 for a drain)",
                outcome.deferred.len()
            );
        }
    }

    let _ = writeln!(out);
    match &input.fresh {
        FreshPlan::Planned(plan) => {
            let left = remaining(plan, input.contabo_only);
            let warnings = human_warnings(plan);
            let scope = if input.contabo_only {
                " for the Contabo side"
            } else {
                ""
            };
            if left.is_empty() && warnings.is_empty() {
                let _ = writeln!(out, "Fresh plan: nothing left to do{scope}.");
            } else {
                let _ = writeln!(
                    out,
                    "Fresh plan: {} step(s) left{scope}{}",
                    left.len(),
                    if left.is_empty() { "" } else { ":" }
                );
                for s in left.iter().take(20) {
                    let _ = writeln!(out, "  {}", shown(&s.id.to_string()));
                }
                if left.len() > 20 {
                    let _ = writeln!(out, "  … and {} more", left.len() - 20);
                }
                for w in warnings {
                    let _ = writeln!(out, "  {}", shown(&w));
                }
            }
            let node_left = plan.steps.iter().filter(|s| is_node_step(&s.kind)).count();
            if input.contabo_only && node_left > 0 {
                let _ = writeln!(
                    out,
                    "  ({node_left} node step(s) remain for when node access exists)"
                );
            }
            let unverified = plan.unverified.len();
            if unverified > 0 {
                let _ = writeln!(
                    out,
                    "  ({unverified} node(s) not verified: their clusters cannot be observed yet)"
                );
            }
            let cancels = plan
                .steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::CancelInstance { .. }))
                .count();
            if cancels > 0 {
                let _ = writeln!(out, "  ({cancels} cancellation(s) planned)");
            }
        }
        FreshPlan::Unavailable(why) => {
            let _ = writeln!(
                out,
                "Fresh plan: could not observe Contabo again: {}",
                shown(&why.to_string())
            );
        }
    }

    let next = if complete(input) {
        "Next: nothing to do; `kiwi-infra plan` shows an empty plan.".to_string()
    } else if !human.is_empty() || !failed.is_empty() {
        format!(
            "Next: fix what is listed above, then run `{}`",
            input.apply_command
        )
    } else {
        next_command(input)
    };
    let _ = writeln!(out, "{next}");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apply::executor::TaskResult;
    use crate::plan::StepId;

    fn task(id: &str, slot: &str, outcome: StepOutcome) -> TaskResult {
        TaskResult {
            id: StepId(id.to_string()),
            slot: Some(slot.to_string()),
            outcome,
            error: None,
        }
    }

    fn done(id: &str, slot: &str) -> TaskResult {
        task(id, slot, StepOutcome::Done("ok".into()))
    }

    const A: &str = "kiwi-zeta-general-01";
    const B: &str = "kiwi-alpha-general-02";
    const C: &str = "kiwi-alpha-general-01";

    /// An apply over two rounds: C ordered, waited for and joined in the
    /// first, labelled in the second; B only labelled; A held by Contabo.
    fn two_rounds() -> ApplyOutcome {
        let mut first = ApplyOutcome {
            results: vec![
                done(&format!("order:{C}"), C),
                done(&format!("wait:{C}"), C),
                done(&format!("join:{C}"), C),
                done(&format!("label:{B}:kiwistack.io/pool"), B),
                task(
                    &format!("wait:{A}"),
                    A,
                    StepOutcome::NeedsHuman(format!("{A} (instance 7) is product_not_available")),
                ),
            ],
            ..ApplyOutcome::default()
        };
        first.ordered = vec![
            (A.to_string(), crate::contabo::models::InstanceId(7)),
            (C.to_string(), crate::contabo::models::InstanceId(8)),
        ];
        first.merge(ApplyOutcome {
            results: vec![done(&format!("label:{C}:kiwistack.io/pool"), C)],
            ..ApplyOutcome::default()
        });
        first
    }

    #[test]
    fn each_node_ends_on_what_the_whole_run_did_to_it() {
        let states = node_states(&two_rounds());
        assert_eq!(states[C], "ordered, joined, Ready, labelled");
        assert_eq!(states[B], "labelled");
        assert_eq!(states[A], "held: (instance 7) is product_not_available");
    }

    #[test]
    fn a_node_whose_only_change_was_the_label_record_is_not_called_labelled() {
        let outcome = ApplyOutcome {
            results: vec![done(&format!("record-labels:{B}"), B)],
            ..ApplyOutcome::default()
        };
        assert_eq!(node_states(&outcome)[B], "label record updated");
    }

    #[test]
    fn a_failure_or_a_step_held_for_allow_destroy_is_the_final_state() {
        let outcome = ApplyOutcome {
            results: vec![
                done(&format!("wait:{A}"), A),
                task(
                    &format!("join:{A}"),
                    A,
                    StepOutcome::Failed("ssh: connection refused\ncaused by: …".into()),
                ),
                task(
                    &format!("drain:{B}"),
                    B,
                    StepOutcome::NotCarriedOut(HoldBack::NeedsAllowDestroy),
                ),
            ],
            ..ApplyOutcome::default()
        };
        let states = node_states(&outcome);
        assert_eq!(states[A], "failed: ssh: connection refused");
        assert_eq!(states[B], "held: needs --allow-destroy");
    }

    #[test]
    fn an_apply_that_only_labels_says_so_under_its_heading_sorted_by_cluster() {
        let outcome = two_rounds();
        let text = render(&SummaryInput {
            outcome: &outcome,
            fresh: FreshPlan::Unavailable("not observed in this test".into()),
            contabo_only: false,
            apply_command: "kiwi-infra apply".into(),
            cluster_of: BTreeMap::from([
                (A.to_string(), "zeta".to_string()),
                (B.to_string(), "alpha".to_string()),
                (C.to_string(), "alpha".to_string()),
            ]),
        });
        let nodes = text.split("\nNodes:\n").nth(1).expect(&text);
        let order: Vec<&str> = nodes
            .lines()
            .take(3)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(order, [C, B, A], "{text}");
        assert!(
            nodes
                .lines()
                .any(|l| l.contains(B) && l.ends_with("labelled")),
            "{text}"
        );
        // Ordered: by cluster and node, not in the order Contabo answered.
        let ordered = text.split("\nOrdered:\n").nth(1).expect(&text);
        let first: Vec<&str> = ordered
            .lines()
            .take(2)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(first, [C, A], "{text}");
    }

    #[test]
    fn the_next_command_moves_held_work_on_instead_of_repeating_the_run_that_stopped() {
        let plan = crate::plan::Plan {
            format_version: crate::plan::PLAN_FORMAT_VERSION,
            finishing_orders: Default::default(),
            steps: vec![
                crate::plan::Step {
                    id: StepId("drain:kiwi-a-realtime-01".into()),
                    cluster: Some("a".into()),
                    kind: StepKind::DrainNode {
                        node: crate::plan::NodeName("kiwi-a-realtime-01".into()),
                    },
                    depends_on: Vec::new(),
                    destructive: true,
                },
                crate::plan::Step {
                    id: StepId("cancel:kiwi-a-realtime-01".into()),
                    cluster: Some("a".into()),
                    kind: StepKind::CancelInstance {
                        instance: crate::plan::InstanceRef {
                            name: "kiwi-a-realtime-01".into(),
                            id: Some(crate::plan::InstanceId(7)),
                        },
                        product: "V9".into(),
                        monthly_price: None,
                    },
                    depends_on: vec![StepId("drain:kiwi-a-realtime-01".into())],
                    destructive: true,
                },
            ],
            unverified: Vec::new(),
            warnings: Vec::new(),
            summary: Default::default(),
        };
        let outcome = ApplyOutcome::default();
        let text = render(&SummaryInput {
            outcome: &outcome,
            fresh: FreshPlan::Planned(&plan),
            contabo_only: true,
            apply_command: "kiwi-infra apply --contabo-only --auto-approve".into(),
            cluster_of: BTreeMap::new(),
        });
        let next = text.lines().last().unwrap();
        assert!(
            next.contains("`kiwi-infra apply --auto-approve --allow-destroy`"),
            "{next}"
        );
        assert!(next.contains("review the destructive steps"), "{next}");
        assert!(next.contains("reached over SSH"), "{next}");
    }
}
