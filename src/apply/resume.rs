//! Resuming after an apply that was interrupted (killed, crashed, lost its
//! network) between ordering an instance and finishing with it.
//!
//! Two gaps can be left behind, and both are closed here from recorded facts
//! rather than guesses:
//!
//! - An instance was ordered but not (fully) tagged. It carries its slot's
//!   name but not `kiwi-managed`, so the planner treats it as someone else's
//!   and asks for `--adopt`. The order journal proves it is this tool's own
//!   order; its tag assignments are taken from the plan the planner makes
//!   *with* adoption, limited to exactly those instances.
//! - An owned instance is still on its way to `running` (or stuck in a
//!   status that needs a human) and the plan has no step for it any more.
//!   Apply waits for it, so a rerun finishes what the interrupted one began
//!   and reports what needs the operator.

use std::collections::{BTreeSet, HashSet};

use crate::contabo::models::InstanceId;
use crate::inventory::{slot_name, Desired};
use crate::plan::{self, Observed, Plan, Step, StepId, StepKind};

use super::executor::{journal_claims, SettleTarget};
use super::journal::Entry;

/// Slots whose live instance lacks the ownership tag although the journal
/// shows this tool ordered it.
pub fn interrupted_orders(
    entries: &[Entry],
    observed: &Observed,
    horizon: chrono::Duration,
) -> BTreeSet<String> {
    interrupted_instances(entries, observed, horizon)
        .into_keys()
        .collect()
}

/// Per slot, the live instance without the ownership tag that the journal
/// claims (an `intent` whose answer was never recorded, or a `placed`):
/// kiwi-infra's own order that a run cut short before tagging it.
pub fn interrupted_instances(
    entries: &[Entry],
    observed: &Observed,
    horizon: chrono::Duration,
) -> std::collections::BTreeMap<String, crate::plan::InstanceId> {
    let journal_slots: BTreeSet<&str> = entries.iter().map(|e| e.slot.as_str()).collect();
    observed
        .instances
        .iter()
        .filter(|i| !i.is_cancelled() && !i.is_owned())
        .filter(|i| journal_slots.contains(i.display_name.as_str()))
        .filter(|i| {
            journal_claims(
                entries,
                &i.display_name,
                InstanceId(i.id.0),
                i.created_date,
                horizon,
            )
        })
        .map(|i| (i.display_name.clone(), i.id.clone()))
        .collect()
}

/// The tag steps (and the tag and secret creations they need) that finish
/// the `slots`' interrupted orders, taken from `adopt_plan` (the plan made
/// with adoption allowed) and left out where `main` already has a step of
/// the same id.
pub fn finishing_steps(main: &Plan, adopt_plan: &Plan, slots: &BTreeSet<String>) -> Vec<Step> {
    let mut wanted: Vec<&Step> = adopt_plan
        .steps
        .iter()
        .filter(|s| matches!(&s.kind, StepKind::AssignTag { instance, .. } if slots.contains(&instance.name)))
        .collect();
    let ids: HashSet<&StepId> = wanted.iter().flat_map(|s| &s.depends_on).collect();
    let prerequisites: Vec<&Step> = adopt_plan
        .steps
        .iter()
        .filter(|s| ids.contains(&s.id))
        .filter(|s| {
            matches!(
                s.kind,
                StepKind::EnsureTag { .. } | StepKind::EnsureSecret { .. }
            )
        })
        .collect();
    let mut steps: Vec<&Step> = prerequisites;
    steps.append(&mut wanted);
    steps
        .into_iter()
        .filter(|s| main.step(&s.id).is_none())
        .cloned()
        .collect()
}

/// Owned (or just-recovered) live instances of the inventory's slots that
/// are not running and that no step of `steps` orders or reinstalls: apply
/// waits for them.
pub fn settle_targets(
    desired: &Desired,
    observed: &Observed,
    recovered: &BTreeSet<String>,
    steps: &[Step],
) -> Vec<SettleTarget> {
    let handled: HashSet<&str> = steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::OrderInstance(o) => Some(o.slot.0.as_str()),
            StepKind::ReinstallInstance(r) => Some(r.instance.name.as_str()),
            _ => None,
        })
        .collect();
    let mut targets = Vec::new();
    for cluster in &desired.clusters {
        for pool in &cluster.pools {
            for index in 1..=pool.count {
                let slot = slot_name(&cluster.name, &pool.name, index);
                if handled.contains(slot.as_str()) {
                    continue;
                }
                let mut live: Vec<&plan::Instance> = observed
                    .instances
                    .iter()
                    .filter(|i| i.display_name == slot && !i.is_cancelled())
                    .filter(|i| i.is_owned() || recovered.contains(&slot))
                    .collect();
                live.sort_by(|a, b| (a.created_date, &a.id).cmp(&(b.created_date, &b.id)));
                if let Some(i) = live.first() {
                    if i.status != plan::InstanceStatus::Running {
                        targets.push(SettleTarget {
                            slot,
                            instance: InstanceId(i.id.0),
                        });
                    }
                }
            }
        }
    }
    targets
}
