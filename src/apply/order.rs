//! The order protocol: how a slot's machine is bought exactly once.
//!
//! Contabo has no idempotency key and its instance list can lag, so an
//! order is guarded by the order journal (`crate::state::orders`): before
//! each order the slot is looked up afresh and the journal read; an
//! `intent` is recorded before the request leaves and a `placed` after its
//! answer; an answer without the instance (lost, refused, throttled) is
//! settled only by looking the slot up again, never by ordering again; and
//! when looking cannot settle it, the slot stops for the operator
//! ([`Orders::unresolved`]), who may confirm a new order with `--reorder`.
//! [`journal_claims`] says which untagged machine an interrupted order
//! left behind, for this module and for the planner's observation
//! (`super::resume`).
//!
//! It exists apart from the scheduler and the other steps because it is the
//! one place where money is spent, and every rule that keeps a slot from
//! being bought twice should be readable together.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::contabo::models::{CreateInstance, Instance, InstanceId};
use crate::contabo::{CloudApi, ContaboError};
use crate::patience::{deadline_in, poll, Backoff, Check, Polling, Unsettled};
use crate::plan::{Order, Step};
use crate::report::{Reporter, Stage, StepOutcome};

use super::error::ApplyError;
use super::executor::ApplySettings;
use super::instance::{oldest_live, Slots};
use super::journal::{Entry, Event, JournalStore};

/// How long before an intent an instance's creation date may lie and still
/// be the answer to it (clock skew between this host and Contabo).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(10);

/// Look-ups of a slot's name, at the least, before an order whose answer
/// was lost and that Contabo does not list is given up on (and the slot
/// stopped for the operator).
const MIN_LOOKS_BEFORE_REORDER: u32 = 3;

/// How old a journal intent may be and still claim an instance that
/// appears under its slot's name ([`ApplySettings::journal_horizon`]'s
/// default, and what `plan` uses).
pub const JOURNAL_HORIZON: Duration = Duration::from_secs(3600);

/// Whether the journal says this tool ordered `instance` for `slot`. Only
/// the slot's latest event counts: a `placed` claims exactly its instance
/// id; an `intent` whose outcome is unknown claims an instance created after
/// it, within `horizon`. An order later found absent, refused or replaced
/// claims nothing, so a colleague's hand-made instance is never adopted.
pub fn journal_claims(
    entries: &[Entry],
    slot: &str,
    instance: InstanceId,
    created: chrono::DateTime<chrono::Utc>,
    horizon: chrono::Duration,
) -> bool {
    let of_slot: Vec<&Entry> = entries.iter().filter(|e| e.slot == slot).collect();
    let Some(latest) = of_slot.last() else {
        return false;
    };
    match &latest.event {
        // A `placed` claims its instance only after an `intent` of the same
        // slot, and only an instance created after that intent: a line
        // written by hand (or a stale id) claims nothing.
        Event::Placed { instance_id } => {
            *instance_id == instance.0
                && of_slot
                    .iter()
                    .rev()
                    .find(|e| matches!(e.event, Event::Intent { .. }))
                    .and_then(|intent| intent.at.checked_sub_signed(CLOCK_SKEW))
                    .is_some_and(|earliest| created >= earliest)
        }
        Event::Intent { .. } | Event::Unresolved => {
            let Some(intent) = of_slot
                .iter()
                .rev()
                .find(|e| matches!(e.event, Event::Intent { .. }))
            else {
                return false;
            };
            // A date from the file may sit at the edge of what chrono can
            // represent: an out-of-range bound claims nothing.
            let Some(earliest) = intent.at.checked_sub_signed(CLOCK_SKEW) else {
                return false;
            };
            created >= earliest && chrono::Utc::now().signed_duration_since(intent.at) < horizon
        }
        Event::Absent | Event::Refused { .. } | Event::ReorderConfirmed => false,
    }
}

/// Places orders for one apply and keeps what it ordered.
pub(super) struct Orders<'a, A> {
    api: &'a A,
    reporter: &'a dyn Reporter,
    journal: &'a dyn JournalStore,
    settings: &'a ApplySettings,
    slots: &'a Slots,
    ordered: Mutex<Vec<(String, InstanceId)>>,
}

impl<'a, A: CloudApi> Orders<'a, A> {
    pub(super) fn new(
        api: &'a A,
        reporter: &'a dyn Reporter,
        journal: &'a dyn JournalStore,
        settings: &'a ApplySettings,
        slots: &'a Slots,
    ) -> Self {
        Orders {
            api,
            reporter,
            journal,
            settings,
            slots,
            ordered: Mutex::new(Vec::new()),
        }
    }

    /// The slots ordered (or found ordered) in this run, with their instance.
    pub(super) fn into_ordered(self) -> Vec<(String, InstanceId)> {
        self.ordered.into_inner().unwrap_or_default()
    }

    /// Orders one slot's machine. Contabo has no idempotency key and its
    /// list can lag, so a second order is only ever sent when nothing
    /// recorded says the first one may exist; when that cannot be known,
    /// the slot stops and waits for the operator.
    ///
    /// `request` makes the order's request (with a new identity, see
    /// `super::identity`); it is called only when an order is sent.
    pub(super) async fn order<F, Fut>(
        &self,
        step: &Step,
        order: &Order,
        request: F,
    ) -> Result<StepOutcome, ApplyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CreateInstance, ApplyError>>,
    {
        let slot = order.slot.0.as_str();
        self.reporter.node_stage(slot, &Stage::Ordering);
        // 1. A fresh look: the plan may be minutes old, or an earlier run's
        //    order may have become visible since.
        if let Some(found) = self.live_instance(step, slot).await? {
            return self.continue_with_found(step, slot, found).await;
        }
        // 2. What the journal last recorded for the slot.
        let confirmed = self.settings.reorder.contains(slot);
        if let Some(entry) = self.journal.latest().remove(slot) {
            match entry.event {
                // The instance an earlier run placed: if Contabo still knows
                // it, it is this slot's machine even though its list does not
                // show it (yet). Never order beside it.
                Event::Placed { instance_id } => {
                    if let Some(outcome) = self.placed_earlier(step, slot, instance_id).await? {
                        return Ok(outcome);
                    }
                }
                // An order was sent (or about to be) and nothing proved what
                // became of it: look again, then ask the operator.
                Event::Intent { .. } | Event::Unresolved if !confirmed => {
                    self.reporter.message(&format!(
                        "{slot}: an earlier apply sent an order at {} whose outcome is unknown; \
                         looking for it for up to {:.1}s",
                        entry.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        self.settings.unlisted_order_wait.as_secs_f64()
                    ));
                    if let Some(found) = self
                        .look_again(
                            step,
                            slot,
                            Duration::ZERO,
                            self.settings.unlisted_order_wait,
                        )
                        .await?
                    {
                        return self.continue_with_found(step, slot, found).await;
                    }
                    return self
                        .unresolved(slot, &entry.at, "an earlier apply's order")
                        .await;
                }
                Event::Intent { .. } | Event::Unresolved => {
                    self.reporter.message(&format!(
                        "{slot}: ordering again as confirmed with --reorder {slot}"
                    ));
                    self.record(slot, Event::ReorderConfirmed).await?;
                }
                Event::Absent | Event::Refused { .. } | Event::ReorderConfirmed => {}
            }
        }
        // 3. Order, once. Only a 2xx answer with the instance proves what
        //    happened; any other answer leaves the outcome unknown, and only
        //    a look-up can settle it.
        let request = request().await?;
        let sent_at = chrono::Utc::now();
        self.record(
            slot,
            Event::Intent {
                trace_id: self.settings.trace_id.clone(),
                product: order.product.clone(),
            },
        )
        .await?;
        // The last moment before money is spent: with the lock no longer
        // certainly ours, the order is not sent (the intent stays, and
        // whoever holds the lock settles it by look-up).
        if let Some(why) = self.journal.lock_lost() {
            return Err(ApplyError::State(crate::state::StateError::Lost {
                what: why,
            }));
        }
        let error = match self.api.create_instance(request).await {
            Ok(created) => return self.placed(slot, created.instance_id, "ordered").await,
            Err(e) => e,
        };
        if error.never_sent() {
            self.record(slot, Event::Refused { status: None }).await?;
            return Err(ApplyError::Contabo {
                step: step.id.clone(),
                action: format!("ordering {slot} ({})", order.product),
                source: error,
            });
        }
        self.reporter.message(&format!(
            "{slot}: the order was answered without the instance ({}); looking for it before \
             anything else",
            first_line(&error)
        ));
        // A server that asked for patience gets it before the look-ups
        // (at most a few of the longest pauses between polls).
        let pause = error.retry_after().map_or(Duration::ZERO, |pause| {
            pause.min(self.settings.wait.poll_max.saturating_mul(4))
        });
        if let Some(found) = self
            .look_again(step, slot, pause, self.settings.unlisted_order_wait)
            .await?
        {
            return self
                .placed(
                    slot,
                    found.instance_id,
                    "ordered (found after an answer without the instance)",
                )
                .await;
        }
        self.unresolved(slot, &sent_at, "this order").await
    }

    /// The slot's order may or may not exist, and looking did not find it:
    /// stop the slot and say what the operator can do. Recorded, so that no
    /// later run orders it again without the operator's word.
    async fn unresolved(
        &self,
        slot: &str,
        since: &chrono::DateTime<chrono::Utc>,
        what: &str,
    ) -> Result<StepOutcome, ApplyError> {
        self.record(slot, Event::Unresolved).await?;
        Ok(StepOutcome::NeedsHuman(format!(
            "the outcome of {what} for {slot} (sent {}) is unknown: Contabo did not confirm it and \
             does not list an instance of that name after {:.1}s of looking. Nothing was ordered \
             again. Check the Contabo Customer Control Panel (and `kiwi-infra instances`): if an \
             instance is there, rerun `kiwi-infra apply` to continue with it; if there is none, \
             and no apply that may have sent it is still running anywhere (a suspended laptop or \
             a stalled link can still deliver it), order it with \
             `kiwi-infra apply --reorder {slot}`",
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.settings.unlisted_order_wait.as_secs_f64()
        )))
    }

    /// An earlier run recorded `instance_id` as this slot's order. If
    /// Contabo still has it (not cancelled), it is the slot's machine: go on
    /// with it. `None` when it is gone or cancelled, so a new order is due.
    async fn placed_earlier(
        &self,
        step: &Step,
        slot: &str,
        instance_id: i64,
    ) -> Result<Option<StepOutcome>, ApplyError> {
        let id = InstanceId(instance_id);
        match self.api.get_instance(id).await {
            // Only an instance that carries the slot's name is its machine:
            // a journal line naming any other instance (edited, or a stale
            // id reused) claims nothing, and certainly not someone else's.
            Ok(instance) if instance.display_name != slot => {
                Ok(Some(StepOutcome::NeedsHuman(format!(
                    "the order journal records instance {id} as {slot}'s order, but Contabo names \
                     it \"{}\": nothing is ordered and nothing taken over. Check the instance in \
                     the Contabo panel: if it is {slot}'s machine, name it {slot} again; if not, \
                     the journal line is wrong",
                    crate::text::escape_for_terminal(&instance.display_name)
                ))))
            }
            Ok(instance) if instance.cancel_date.is_none() => {
                self.reporter.message(&format!(
                    "{slot}: instance {id}, ordered by an earlier apply, exists but is not listed \
                     yet; continuing with it"
                ));
                self.slots.set(slot, id);
                if let Ok(mut ordered) = self.ordered.lock() {
                    ordered.push((slot.to_string(), id));
                }
                self.reporter.node_stage(slot, &Stage::Provisioning);
                Ok(Some(StepOutcome::Done(format!(
                    "found instance {id} ordered by an earlier apply"
                ))))
            }
            Ok(_) => Ok(None),
            Err(e)
                if e.status()
                    .is_some_and(|s| s == reqwest::StatusCode::NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(source) => Err(ApplyError::Contabo {
                step: step.id.clone(),
                action: format!(
                    "looking up instance {id}, which an earlier apply ordered for {slot}"
                ),
                source,
            }),
        }
    }

    async fn placed(
        &self,
        slot: &str,
        id: InstanceId,
        how: &str,
    ) -> Result<StepOutcome, ApplyError> {
        self.record(slot, Event::Placed { instance_id: id.0 })
            .await?;
        self.slots.set(slot, id);
        if let Ok(mut ordered) = self.ordered.lock() {
            ordered.push((slot.to_string(), id));
        }
        self.reporter.node_stage(slot, &Stage::Provisioning);
        Ok(StepOutcome::Done(format!("{how} instance {id}")))
    }

    /// An instance of the slot exists although the plan orders one: use it
    /// if the journal says this tool ordered it, else leave it alone.
    async fn continue_with_found(
        &self,
        step: &Step,
        slot: &str,
        found: Instance,
    ) -> Result<StepOutcome, ApplyError> {
        if !journal_claims(
            &self.journal.entries(),
            slot,
            found.instance_id,
            found.created_date,
            self.horizon(),
        ) {
            return Err(ApplyError::ForeignInstance {
                step: step.id.clone(),
                slot: slot.to_string(),
                instance: found.instance_id,
            });
        }
        self.reporter.message(&format!(
            "{slot}: instance {} from an earlier, interrupted apply exists; continuing with it",
            found.instance_id
        ));
        self.record(
            slot,
            Event::Placed {
                instance_id: found.instance_id.0,
            },
        )
        .await?;
        self.slots.set(slot, found.instance_id);
        if let Ok(mut ordered) = self.ordered.lock() {
            ordered.push((slot.to_string(), found.instance_id));
        }
        Ok(StepOutcome::Done(format!(
            "found instance {} ordered by an earlier apply",
            found.instance_id
        )))
    }

    async fn live_instance(&self, step: &Step, slot: &str) -> Result<Option<Instance>, ApplyError> {
        let found = self
            .api
            .find_instances_by_display_name(slot)
            .await
            .map_err(ApplyError::contabo(
                step,
                format!("looking for instance {slot}"),
            ))?;
        Ok(oldest_live(found))
    }

    /// Looks for the slot's instance, after `first` (a pause the server
    /// asked for), until `patience` has passed, and at least
    /// [`MIN_LOOKS_BEFORE_REORDER`] times. `None` only if the last look-up
    /// succeeded and found nothing. A failed look-up (the client already
    /// retried it) is a miss like an empty list: Contabo's list lags, and
    /// the window is for it to catch up.
    async fn look_again(
        &self,
        step: &Step,
        slot: &str,
        first: Duration,
        patience: Duration,
    ) -> Result<Option<Instance>, ApplyError> {
        let polling = Polling {
            // The window is a time, but a slow network or a loaded machine
            // must not shrink it to a single look: always look a few times.
            min_checks: MIN_LOOKS_BEFORE_REORDER,
            first_check_after: first,
            ..Polling::until(
                deadline_in(first.saturating_add(patience)),
                Backoff::doubling(self.settings.wait.poll_min, self.settings.wait.poll_max),
            )
        };
        let looked = poll(polling, || async {
            match self.api.find_instances_by_display_name(slot).await {
                Ok(found) => match oldest_live(found) {
                    Some(i) => Check::Done(i),
                    None => Check::Pending(None),
                },
                Err(e) => Check::Pending(Some(e)),
            }
        })
        .await;
        match looked {
            Ok(found) => Ok(Some(found)),
            Err(Unsettled { last: None, .. }) => Ok(None),
            Err(Unsettled {
                expired,
                last: Some(source),
            }) => Err(ApplyError::OrderUnresolved {
                step: step.id.clone(),
                slot: slot.to_string(),
                attempts: expired.checks,
                source,
            }),
        }
    }

    /// How long an order whose outcome is unknown may claim an instance
    /// that appears under its slot's name.
    fn horizon(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.journal_horizon)
            .unwrap_or(chrono::Duration::hours(1))
    }

    async fn record(&self, slot: &str, event: Event) -> Result<(), ApplyError> {
        self.journal
            .record(slot, event)
            .await
            .map_err(ApplyError::from)
    }
}

fn first_line(e: &ContaboError) -> String {
    match e {
        ContaboError::OrderOutcomeUnknown { cause, .. } => cause.to_string(),
        other => other.to_string(),
    }
}
