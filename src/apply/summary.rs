//! The final word of an apply: what was ordered (ids, names, IPs), what is
//! still pending and why, what failed with its whole error chain, what the
//! fresh plan still holds, and the exact command to run next. Plain text,
//! built here so the CLI only prints it and tests can read it.
//!
//! It quotes what Contabo and the nodes said (statuses, addresses, error
//! messages), so every value is escaped for the terminal where it is put
//! in: only the summary's own line breaks remain.

use std::fmt::Write;

use crate::plan::{Plan, StepKind, Warning};
use crate::report::StepOutcome;
use crate::text::{escape_for_terminal as shown, escape_lines_for_terminal};

use super::executor::{ApplyOutcome, NEEDS_ALLOW_DESTROY};
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
}

/// The verdict: is everything of this run done?
pub fn complete(input: &SummaryInput<'_>) -> bool {
    input.outcome.all_done()
        && match &input.fresh {
            FreshPlan::Planned(plan) => {
                remaining(plan, input.contabo_only).is_empty() && human_warnings(plan).is_empty()
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

/// Warnings meaning a slot is not realised and needs the operator.
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
            _ => None,
        })
        .collect()
}

/// True when destructive steps waited for `--allow-destroy`.
fn needs_allow_destroy(outcome: &ApplyOutcome) -> bool {
    outcome.results.iter().any(
        |r| matches!(&r.outcome, StepOutcome::NotCarriedOut(why) if why == NEEDS_ALLOW_DESTROY),
    )
}

/// Renders the summary.
pub fn render(input: &SummaryInput<'_>) -> String {
    let outcome = input.outcome;
    let mut out = String::new();
    let _ = writeln!(out, "\nApply summary");

    if !outcome.ordered.is_empty() {
        let _ = writeln!(out, "\nOrdered:");
        for (slot, id) in &outcome.ordered {
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
        let mut reasons: Vec<(&str, Vec<String>)> = Vec::new();
        for r in &not_carried {
            if let StepOutcome::NotCarriedOut(why) = &r.outcome {
                match reasons.iter_mut().find(|(w, _)| *w == why.as_str()) {
                    Some((_, ids)) => ids.push(r.id.to_string()),
                    None => reasons.push((why.as_str(), vec![r.id.to_string()])),
                }
            }
        }
        for (why, ids) in reasons {
            let _ = writeln!(
                out,
                "  {} step(s) not carried out: {}",
                ids.len(),
                shown(why)
            );
            let _ = writeln!(out, "    {}", shown(&ids.join(", ")));
            if why == NEEDS_ALLOW_DESTROY {
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
                shown(why)
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
    } else if needs_allow_destroy(outcome) {
        format!(
            "Next: review the destructive steps, then run `{} --allow-destroy`",
            input.apply_command
        )
    } else {
        format!("Next: `{}`", input.apply_command)
    };
    let _ = writeln!(out, "{next}");
    out
}
