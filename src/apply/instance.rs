//! Instance steps: the Contabo steps that act on one existing machine (tag
//! assignment and removal, rename, reinstall, cancel), and which instance
//! is each slot's while applying ([`Slots`]).
//!
//! They exist apart from the order protocol because none of them can buy
//! anything: each acts on an instance id the plan or an earlier step named,
//! and each is safe to carry out again after a lost answer (a cancel looks
//! first, since Contabo refuses a second one).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use crate::contabo::models::{Instance, InstanceId, ReinstallInstance};
use crate::contabo::CloudApi;
use crate::plan::{InstanceRef, NodeName, Reinstall, Step, StepId};
use crate::report::{Reporter, Stage, StepOutcome};

use super::account::Account;
use super::error::ApplyError;
use super::executor::Cancellation;
use super::node::NodeExecutor;

/// Each slot's instance as this run knows it: the one it ordered or found,
/// else looked up by name.
#[derive(Debug, Default)]
pub(super) struct Slots {
    known: Mutex<BTreeMap<String, InstanceId>>,
}

impl Slots {
    fn known(&self) -> MutexGuard<'_, BTreeMap<String, InstanceId>> {
        // A poisoned lock means a panic elsewhere; the map is still usable.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `id` as `slot`'s instance.
    pub(super) fn set(&self, slot: &str, id: InstanceId) {
        self.known().insert(slot.to_string(), id);
    }

    /// The instance of a slot: the one this run ordered, else looked up by
    /// name (the oldest that is not cancelled).
    pub(super) async fn instance_of(
        &self,
        api: &impl CloudApi,
        step: &StepId,
        slot: &str,
    ) -> Result<InstanceId, ApplyError> {
        if let Some(id) = self.known().get(slot) {
            return Ok(*id);
        }
        let live = api
            .find_instances_by_display_name(slot)
            .await
            .map_err(|source| ApplyError::Contabo {
                step: step.clone(),
                action: format!("looking for instance {slot}"),
                source,
            })?;
        let chosen = oldest_live(live).ok_or_else(|| ApplyError::InstanceMissing {
            step: step.clone(),
            slot: slot.to_string(),
        })?;
        self.set(slot, chosen.instance_id);
        Ok(chosen.instance_id)
    }
}

/// The oldest instance that is not cancelled.
pub(super) fn oldest_live(mut found: Vec<Instance>) -> Option<Instance> {
    found.retain(|i| i.cancel_date.is_none());
    found.sort_by_key(|i| (i.created_date, i.instance_id));
    found.into_iter().next()
}

/// Carries out instance steps and keeps what the run cancelled.
pub(super) struct InstanceSteps<'a, A> {
    api: &'a A,
    slots: &'a Slots,
    cancelled: Mutex<Vec<Cancellation>>,
}

impl<'a, A: CloudApi> InstanceSteps<'a, A> {
    pub(super) fn new(api: &'a A, slots: &'a Slots) -> Self {
        InstanceSteps {
            api,
            slots,
            cancelled: Mutex::new(Vec::new()),
        }
    }

    /// The instances cancelled, in the order this run cancelled them.
    pub(super) fn into_cancelled(self) -> Vec<Cancellation> {
        self.cancelled.into_inner().unwrap_or_default()
    }

    /// Assigns the tag `tag` (its id from `account`) to an instance.
    pub(super) async fn assign_tag(
        &self,
        step: &Step,
        tag: &str,
        instance: &InstanceRef,
        account: &Account<'_, A>,
    ) -> Result<StepOutcome, ApplyError> {
        let tag_id = account.tag_id(step, tag).await?;
        let id = match &instance.id {
            Some(id) => *id,
            None => {
                self.slots
                    .instance_of(self.api, &step.id, &instance.name)
                    .await?
            }
        };
        self.api
            .assign_tag(tag_id, id)
            .await
            .map_err(ApplyError::contabo(
                step,
                format!("assigning tag {tag} to instance {id}"),
            ))?;
        Ok(StepOutcome::Done(format!(
            "tagged instance {id} with {tag}"
        )))
    }

    /// Removes a tag from an instance (`kiwi-protected`, once unprotected).
    pub(super) async fn unassign_tag(
        &self,
        step: &Step,
        tag: &str,
        instance: &InstanceRef,
        account: &Account<'_, A>,
    ) -> Result<StepOutcome, ApplyError> {
        let Some(id) = instance.id else {
            return Err(ApplyError::InstanceMissing {
                step: step.id.clone(),
                slot: instance.name.clone(),
            });
        };
        let Some(tag_id) = account.find_tag(step, tag).await? else {
            return Ok(StepOutcome::Done(format!("tag {tag} no longer exists")));
        };
        self.api
            .unassign_tag(tag_id, id)
            .await
            .map_err(ApplyError::contabo(
                step,
                format!("removing tag {tag} from instance {id}"),
            ))?;
        Ok(StepOutcome::Done(format!(
            "removed {tag} from instance {id}"
        )))
    }

    /// Gives a renamed owned instance its slot's name back.
    pub(super) async fn rename(
        &self,
        step: &Step,
        instance: &InstanceRef,
    ) -> Result<StepOutcome, ApplyError> {
        let Some(id) = instance.id else {
            return Err(ApplyError::InstanceMissing {
                step: step.id.clone(),
                slot: instance.name.clone(),
            });
        };
        self.api
            .rename_instance(id, &instance.name)
            .await
            .map_err(ApplyError::contabo(
                step,
                format!("renaming instance {id} back to {}", instance.name),
            ))?;
        Ok(StepOutcome::Done(format!(
            "instance {id} is named {} again",
            instance.name
        )))
    }

    /// Reinstalls an instance with the request `request` makes (a new
    /// identity, `super::identity`), then tells `nodes` to forget any
    /// connection to it.
    pub(super) async fn reinstall<N, F, Fut>(
        &self,
        step: &Step,
        r: &Reinstall,
        reporter: &dyn Reporter,
        nodes: &N,
        request: F,
    ) -> Result<StepOutcome, ApplyError>
    where
        N: NodeExecutor,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ReinstallInstance, ApplyError>>,
    {
        let slot = r.instance.name.as_str();
        let id = match &r.instance.id {
            Some(id) => *id,
            None => self.slots.instance_of(self.api, &step.id, slot).await?,
        };
        let request = request().await?;
        reporter.node_stage(slot, &Stage::Reinstalling);
        self.api
            .reinstall_instance(id, &request)
            .await
            .map_err(ApplyError::contabo(
                step,
                format!("reinstalling instance {id} ({slot})"),
            ))?;
        self.slots.set(slot, id);
        // The machine boots afresh with a new host key: a connection kept
        // from before leads nowhere.
        nodes.forget(&NodeName(slot.to_string()));
        Ok(StepOutcome::Done(format!(
            "reinstall of instance {id} (was {}) started",
            r.status
        )))
    }

    /// Cancels an instance. Contabo refuses a second cancel (409), so a
    /// fresh look comes first, and a failed call is followed by another
    /// look: an answer lost after the cancel took effect is not a failure.
    pub(super) async fn cancel(
        &self,
        step: &Step,
        instance: &InstanceRef,
        monthly_price: Option<crate::inventory::Money>,
    ) -> Result<StepOutcome, ApplyError> {
        let slot = instance.name.as_str();
        let id = match &instance.id {
            Some(id) => *id,
            None => self.slots.instance_of(self.api, &step.id, slot).await?,
        };
        let current = self
            .api
            .get_instance(id)
            .await
            .map_err(ApplyError::contabo(
                step,
                format!("reading instance {id} ({slot}) before cancelling it"),
            ))?;
        if current.display_name != slot {
            // Renamed since the plan was made: it may be someone else's now.
            return Err(ApplyError::NotCancelled {
                step: step.id.clone(),
                slot: slot.to_string(),
                instance: id,
                reason: format!(
                    "it is now named {:?}; plan again to see what it is",
                    current.display_name
                ),
            });
        }
        let (date, how) = match current.cancel_date {
            Some(date) => (Some(date), "was already cancelled"),
            None => match self.api.cancel_instance(id).await {
                Ok(date) => (date, "cancelled"),
                Err(e) => match self.api.get_instance(id).await {
                    Ok(i) if i.cancel_date.is_some() => (i.cancel_date, "cancelled"),
                    _ => {
                        return Err(ApplyError::Contabo {
                            step: step.id.clone(),
                            action: format!("cancelling instance {id} ({slot})"),
                            source: e,
                        })
                    }
                },
            },
        };
        // An answer without a date: the instance itself says it.
        let date = match date {
            Some(d) => Some(d),
            None => self
                .api
                .get_instance(id)
                .await
                .ok()
                .and_then(|i| i.cancel_date),
        };
        if let Ok(mut cancelled) = self.cancelled.lock() {
            cancelled.push(Cancellation {
                slot: slot.to_string(),
                instance: id,
                cancel_date: date,
                monthly_price,
            });
        }
        let until = date.map_or_else(
            || "the end of its contract period (Contabo gave no date)".to_string(),
            |d| d.to_string(),
        );
        Ok(StepOutcome::Done(format!(
            "instance {id} {how}; it runs and is billed until {until}"
        )))
    }
}
