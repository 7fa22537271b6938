//! Resuming after an apply that was interrupted (killed, crashed, lost its
//! network) between ordering an instance and finishing with it.
//!
//! Two gaps can be left behind, and both are closed here from recorded facts
//! rather than guesses:
//!
//! - An instance was ordered but not (fully) tagged. It carries its slot's
//!   name but not `kiwi-managed`, so without more it would look like someone
//!   else's and need `--adopt`. The order journal proves it is this tool's
//!   own order: [`record_journal_claims`] records that in the observation,
//!   and the planner plans its tag assignments (`Plan::finishing_orders`).
//! - An owned instance is still on its way to `running` (or stuck in a
//!   status that needs a human). The planner plans a wait for it
//!   (`WaitCause::Earlier`), so a rerun finishes what the interrupted one
//!   began and reports what needs the operator.

use std::collections::BTreeSet;

use crate::plan::Observed;

use super::journal::Entry;
use super::order::{journal_claims, JOURNAL_HORIZON};

/// Records in `observed` what the order journal says kiwi-infra ordered
/// ([`Observed::journal_placed`]): each slot's last `placed` instance, and
/// the untagged machines its unanswered intents claim (a run cut short
/// between the order and its tags, [`interrupted_instances`]). The planner
/// then finishes those orders (tags them) instead of calling them foreign
/// or buying again.
pub fn record_journal_claims(entries: &[Entry], observed: &mut Observed) {
    let horizon = chrono::Duration::from_std(JOURNAL_HORIZON).unwrap_or(chrono::Duration::MAX);
    let interrupted = interrupted_instances(entries, observed, horizon);
    observed.journal_placed = super::journal::placed_by_slot_in(entries);
    for (slot, id) in interrupted {
        observed.journal_placed.entry(slot).or_insert(id);
    }
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
        .filter(|i| journal_claims(entries, &i.display_name, i.id, i.created_date, horizon))
        .map(|i| (i.display_name.clone(), i.id))
        .collect()
}
