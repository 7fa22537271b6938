//! The background ticker that moves orders along `provisioning` → `installing` → `running`
//! after the configured delays, and releases orders held by a product override once the
//! override is cleared (realistically they would wait for Contabo staff; tests need them to move
//! on). Each change is broadcast as an [`InstanceEvent`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::model::{Instance, State};
use super::server::stopped;
use super::shared::{InstanceEvent, Shared};

/// Runs until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(shared.tick());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stopped(&mut shutdown) => return,
        }
        let holds = shared.product_statuses();
        let (prov, inst) = (
            shared.config.provisioning_delay,
            shared.config.installing_delay,
        );
        // Skip the write (and the state file) when nothing is due.
        let due = shared.read(|s| {
            s.instances
                .values()
                .any(|i| is_due(i, &holds, prov, inst, Utc::now()))
        });
        if due {
            shared.mutate(|s| ((), advance(s, &holds, prov, inst, Utc::now())));
        }
    }
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

fn next_status(
    i: &Instance,
    holds: &BTreeMap<String, String>,
    prov: Duration,
    inst: Duration,
    now: DateTime<Utc>,
) -> Option<&'static str> {
    if i.held_by_product {
        return match holds.get(&i.product_id) {
            None => Some("provisioning"),
            // The override changed to another hold status: follow it.
            Some(s) if *s != i.status => super::config::HOLD_STATUSES
                .iter()
                .find(|h| **h == s.as_str())
                .copied(),
            Some(_) => None,
        };
    }
    match i.status.as_str() {
        "provisioning" if elapsed(i.status_since, now) >= prov => Some("installing"),
        "installing" if elapsed(i.status_since, now) >= inst => Some("running"),
        _ => None,
    }
}

fn is_due(
    i: &Instance,
    holds: &BTreeMap<String, String>,
    prov: Duration,
    inst: Duration,
    now: DateTime<Utc>,
) -> bool {
    next_status(i, holds, prov, inst, now).is_some()
}

/// Applies every due transition (several per instance if delays are zero) and returns the
/// events in order.
pub fn advance(
    state: &mut State,
    holds: &BTreeMap<String, String>,
    prov: Duration,
    inst: Duration,
    now: DateTime<Utc>,
) -> Vec<InstanceEvent> {
    let mut events = Vec::new();
    for i in state.instances.values_mut() {
        // Bounded: at most held → provisioning → installing → running.
        for _ in 0..4 {
            let Some(next) = next_status(i, holds, prov, inst, now) else {
                break;
            };
            if next == "provisioning" {
                i.held_by_product = false;
            }
            i.status = next.to_owned();
            i.status_since = now;
            tracing::info!(
                instance_id = i.instance_id,
                status = next,
                "instance status changed"
            );
            events.push(InstanceEvent::of(i));
        }
    }
    events
}
