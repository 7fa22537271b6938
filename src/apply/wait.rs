//! Waiting for instances to reach `running`, with a purpose.
//!
//! One poller asks for the instances that are waited for, once per round
//! for every node that waits (never one call per node per round, and never
//! the whole account: [`CloudApi::instances_by_ids`], so a round costs the
//! same in an account of 20 or 20,000 machines), backing off between
//! rounds. Each waiting node reads the rounds it cares about and decides on
//! its own: `running` ends the wait; statuses that need a human (payment,
//! verification, sold-out product, manual provisioning) or `error` end it at
//! once with a message saying what to do; every other status, known or not,
//! is waited out up to a per-status time limit. One node's end never stops
//! another's wait.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::contabo::models::{Instance, InstanceId, InstanceStatus};
use crate::contabo::CloudApi;
use crate::patience::{Backoff, Pauses};
use crate::plan::WaitCause;
use crate::report::{Reporter, Stage};

use super::error::ApplyError;

/// How patiently to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitSettings {
    /// First pause between two polls.
    pub poll_min: Duration,
    /// Longest pause between two polls.
    pub poll_max: Duration,
    /// Longest time an instance may stay `provisioning`.
    pub provisioning_limit: Duration,
    /// Longest time an instance may stay `installing`.
    pub installing_limit: Duration,
    /// Longest time in any other status on the way (unknown values, not
    /// listed yet, `reset_password`, ...).
    pub other_limit: Duration,
    /// After kiwi-infra's own order or reinstall, `error` and `uninstalled`
    /// seen within this time are taken as "not started yet", and so is
    /// `running` until the instance was seen in another status: Contabo may
    /// still report the instance's old state for a moment, and a reinstalled
    /// machine's old system must not be taken for its new one.
    pub start_grace: Duration,
}

impl WaitSettings {
    /// What production needs: Contabo takes minutes to hours per phase.
    pub fn production() -> Self {
        WaitSettings {
            poll_min: Duration::from_secs(5),
            poll_max: Duration::from_secs(30),
            provisioning_limit: Duration::from_secs(30 * 60),
            installing_limit: Duration::from_secs(30 * 60),
            other_limit: Duration::from_secs(30 * 60),
            start_grace: Duration::from_secs(60),
        }
    }

    /// Millisecond polls for tests against the mock or the fake.
    pub fn fast() -> Self {
        WaitSettings {
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(100),
            provisioning_limit: Duration::from_secs(60),
            installing_limit: Duration::from_secs(60),
            other_limit: Duration::from_secs(60),
            start_grace: Duration::from_millis(500),
        }
    }

    fn limit(&self, status: Option<&InstanceStatus>) -> Duration {
        match status {
            Some(InstanceStatus::Provisioning) => self.provisioning_limit,
            Some(InstanceStatus::Installing) => self.installing_limit,
            _ => self.other_limit,
        }
    }
}

/// How a wait ended.
#[derive(Debug)]
pub enum WaitEnd {
    /// The instance runs.
    Running(Box<Instance>),
    /// Only a human can move it on; the text says what to do.
    NeedsHuman {
        /// The last state seen.
        instance: Box<Instance>,
        /// What the operator should do.
        message: String,
    },
}

/// One poll round: the instances waited for, when they were asked for.
#[derive(Debug)]
struct Round {
    started: Instant,
    instances: HashMap<InstanceId, Instance>,
}

/// The shared poller and the rounds it publishes.
#[derive(Debug)]
pub struct StatusBoard {
    settings: WaitSettings,
    rounds: watch::Sender<Option<Arc<Round>>>,
    /// The instances waited for, with how many waits want each.
    waited: Mutex<BTreeMap<InstanceId, usize>>,
    wake: Notify,
    stopped: AtomicBool,
    stop: Notify,
}

/// Takes its instance off the waited-for set however the wait ends.
struct Registration<'a>(&'a StatusBoard, InstanceId);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut waited = self.0.waited();
        if let Some(n) = waited.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                waited.remove(&self.1);
            }
        }
    }
}

impl StatusBoard {
    /// A board with no waiters; [`Self::run_poller`] must run beside the waits.
    pub fn new(settings: WaitSettings) -> Self {
        StatusBoard {
            settings,
            rounds: watch::channel(None).0,
            waited: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    fn waited(&self) -> std::sync::MutexGuard<'_, BTreeMap<InstanceId, usize>> {
        // The map holds counts only; a panic elsewhere cannot leave it half-written.
        self.waited.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends [`Self::run_poller`].
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        self.stop.notify_one();
    }

    /// Polls while anyone waits, until [`Self::stop`], pausing between
    /// rounds from `poll_min` growing by half up to `poll_max`
    /// ([`Backoff::by_half`]).
    pub async fn run_poller(&self, api: &impl CloudApi) {
        let mut pauses = Pauses::new(Backoff::by_half(
            self.settings.poll_min,
            self.settings.poll_max,
        ));
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            if self.waited().is_empty() {
                // Parked, not pausing: nothing to ask for until a wait
                // begins (or the run ends).
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = self.stop.notified() => {}
                }
                pauses.reset();
                continue;
            }
            let started = Instant::now();
            let ids: Vec<InstanceId> = self.waited().keys().copied().collect();
            match api.instances_by_ids(&ids).await {
                Ok(list) => {
                    let instances = list.into_iter().map(|i| (i.instance_id, i)).collect();
                    self.rounds
                        .send_replace(Some(Arc::new(Round { started, instances })));
                }
                // The waits' time limits bound how long failures may last.
                Err(e) => tracing::debug!(error = %e, "status poll failed; polling again"),
            }
            // A wait that begins while others run does not restart the
            // backoff: its instance was just ordered and is minutes from
            // running, and with 180 orders going out, rounds every
            // `poll_min` would spend a good part of the rate limit on
            // listing pages instead of orders. Only a parked poller (no
            // waits) is woken at once.
            pauses.pause_unless(self.stop.notified()).await;
        }
    }

    /// Waits until `instance` (the node `slot`) runs, needs a human, or stays
    /// in one status too long. `cause` says whether kiwi-infra just ordered
    /// or reinstalled it (see [`WaitSettings::start_grace`]) or an earlier
    /// run did.
    pub async fn wait_for_running(
        &self,
        slot: &str,
        instance: InstanceId,
        cause: WaitCause,
        reporter: &dyn Reporter,
    ) -> Result<WaitEnd, ApplyError> {
        let mut rx = self.rounds.subscribe();
        *self.waited().entry(instance).or_insert(0) += 1;
        let _registered = Registration(self, instance);
        self.wake.notify_one();
        let registered = Instant::now();
        // (status, since when); `None` = not listed yet.
        let mut current: Option<(Option<InstanceStatus>, Instant)> = None;
        let mut last_seen: Option<Instance> = None;
        // Whether a status other than `running` was seen since this wait
        // began: after kiwi-infra's own reinstall of a running machine,
        // `running` is only the new system's once the machine was seen
        // leaving it (or the start grace passed), never the old system's
        // answer from before Contabo took the reinstall in.
        let mut left_running = false;
        let own_action = cause != WaitCause::Earlier;
        let reinstalled = cause == WaitCause::Reinstall;
        loop {
            // Polls may fail for a while; the time limit still applies then.
            // (A watchdog on the poller's rounds, not a poll of its own:
            // the poller above is the one poll, on `crate::patience`.)
            let changed = tokio::select! {
                r = rx.changed() => r.is_ok(),
                () = tokio::time::sleep(self.settings.poll_max.saturating_mul(2)) => false,
            };
            let since = current.as_ref().map_or(registered, |(_, since)| *since);
            let status_now = current.as_ref().and_then(|(s, _)| s.as_ref());
            if since.elapsed() > self.settings.limit(status_now) {
                reporter.node_stage(slot, &Stage::Failed);
                return Err(self.timed_out(slot, instance, &current));
            }
            if !changed {
                continue;
            }
            let Some(round) = rx.borrow_and_update().clone() else {
                continue;
            };
            // A round asked for before this wait began may predate our own
            // order or reinstall.
            if round.started < registered {
                continue;
            }
            let seen = round.instances.get(&instance).cloned();
            let status = seen.as_ref().map(|i| i.status.clone());
            match &current {
                Some((s, _)) if *s == status => {}
                _ => {
                    reporter.node_stage(slot, &stage_of(status.as_ref()));
                    current = Some((status.clone(), Instant::now()));
                }
            }
            if let Some(i) = seen {
                last_seen = Some(i);
            }
            let in_grace = own_action && registered.elapsed() < self.settings.start_grace;
            left_running |= status
                .as_ref()
                .is_some_and(|s| *s != InstanceStatus::Running);
            if let (Some(status), Some(i)) = (&status, &last_seen) {
                match classify(status, in_grace, reinstalled && !left_running) {
                    Verdict::Done => return Ok(WaitEnd::Running(Box::new(i.clone()))),
                    Verdict::Human => {
                        reporter.node_stage(slot, &Stage::NeedsHuman);
                        return Ok(WaitEnd::NeedsHuman {
                            message: needs_human_message(slot, i),
                            instance: Box::new(i.clone()),
                        });
                    }
                    Verdict::Wait => {}
                }
            }
        }
    }

    fn timed_out(
        &self,
        slot: &str,
        instance: InstanceId,
        current: &Option<(Option<InstanceStatus>, Instant)>,
    ) -> ApplyError {
        let status = current.as_ref().and_then(|(s, _)| s.clone());
        ApplyError::WaitTimedOut {
            slot: slot.to_string(),
            instance,
            status: status
                .as_ref()
                .map_or_else(|| "not listed".to_string(), |s| s.to_string()),
            limit: self.settings.limit(status.as_ref()),
        }
    }
}

enum Verdict {
    Done,
    Wait,
    Human,
}

/// What a wait does at `status`. `in_grace`: kiwi-infra's own order or
/// reinstall is younger than [`WaitSettings::start_grace`];
/// `old_system`: the wait follows a reinstall and the machine was not yet
/// seen leaving `running` (an ordered machine never ran before, so its
/// first `running` is its own).
fn classify(status: &InstanceStatus, in_grace: bool, old_system: bool) -> Verdict {
    use InstanceStatus as S;
    match status {
        S::Running if in_grace && old_system => Verdict::Wait,
        S::Running => Verdict::Done,
        S::ManualProvisioning
        | S::ProductNotAvailable
        | S::VerificationRequired
        | S::PendingPayment
        | S::Stopped
        | S::Rescue => Verdict::Human,
        S::Error | S::Uninstalled if in_grace => Verdict::Wait,
        S::Error | S::Uninstalled => Verdict::Human,
        S::Provisioning
        | S::Installing
        | S::ResetPassword
        | S::UnknownStatus
        | S::Other
        | S::Unknown(_) => Verdict::Wait,
    }
}

fn stage_of(status: Option<&InstanceStatus>) -> Stage {
    match status {
        None => Stage::Waiting("not listed yet".into()),
        Some(InstanceStatus::Provisioning) => Stage::Provisioning,
        Some(InstanceStatus::Installing) => Stage::Installing,
        Some(InstanceStatus::Running) => Stage::Running,
        Some(other) => Stage::Waiting(other.to_string()),
    }
}

/// What the operator should do about an instance stuck in `status`.
pub fn needs_human_message(slot: &str, i: &Instance) -> String {
    use InstanceStatus as S;
    let id = i.instance_id;
    let what = match &i.status {
        S::PendingPayment => {
            "pay the open invoice in the Contabo Customer Control Panel, then rerun \
             `kiwi-infra apply`"
                .to_string()
        }
        S::ProductNotAvailable => format!(
            "Contabo cannot deliver {} in {} right now; wait and rerun `kiwi-infra apply` \
             (the order goes on by itself once Contabo can deliver), or cancel this order in \
             the Contabo Customer Control Panel and choose another product for the pool in the \
             inventory",
            i.product_id, i.region
        ),
        S::VerificationRequired => {
            "Contabo must verify the account first; follow Contabo's e-mail or \
             the Customer Control Panel, then rerun `kiwi-infra apply`"
                .to_string()
        }
        S::ManualProvisioning => format!(
            "Contabo staff set this machine up by hand, which can take hours; rerun \
             `kiwi-infra apply` later, or ask Contabo support about instance {id}"
        ),
        S::Stopped => "it is stopped; start it in the Contabo Customer Control Panel (kiwi-infra \
             never starts machines), then rerun `kiwi-infra apply`"
            .to_string(),
        S::Rescue => "it is booted into the rescue system; leave rescue mode in the Contabo \
             Customer Control Panel, then rerun `kiwi-infra apply`"
            .to_string(),
        S::Error => format!(
            "Contabo reports an error{}; rerun `kiwi-infra apply`, which reinstalls it, and if \
             that fails again ask Contabo support about instance {id}",
            i.error_message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(" ({})", crate::secret::redact::excerpt(m)))
                .unwrap_or_default()
        ),
        S::Uninstalled => {
            "it has no operating system; rerun `kiwi-infra apply`, which reinstalls it".to_string()
        }
        other => format!("it is {other}; check it in the Contabo Customer Control Panel"),
    };
    format!("{slot} (instance {id}) is {}: {what}", i.status)
}

pub use crate::patience::{deadline_in, FAR_FUTURE};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{StatusBoard, WaitCause, WaitSettings};
    use crate::contabo::fake::FakeCloud;
    use std::sync::Arc;
    use std::time::Duration;

    fn settings() -> WaitSettings {
        let mut w = WaitSettings::production();
        w.poll_min = Duration::from_secs(5);
        w.poll_max = Duration::from_secs(25);
        w
    }

    /// A status board over a fresh fake account, with its poller running.
    fn polling() -> (
        Arc<StatusBoard>,
        Arc<FakeCloud>,
        tokio::task::JoinHandle<()>,
    ) {
        let board = Arc::new(StatusBoard::new(settings()));
        let fake = Arc::new(FakeCloud::default());
        let (b, f) = (board.clone(), fake.clone());
        let poller = tokio::spawn(async move { b.run_poller(&*f).await });
        (board, fake, poller)
    }

    #[tokio::test(start_paused = true)]
    async fn stop_before_the_poller_starts_ends_it_at_once() {
        let board = StatusBoard::new(settings());
        let fake = FakeCloud::default();
        board.stop();
        tokio::time::timeout(Duration::from_secs(1), board.run_poller(&fake))
            .await
            .expect("poller hung after an early stop");
    }

    #[tokio::test(start_paused = true)]
    async fn stop_while_parked_ends_the_poller_at_once() {
        let (board, _fake, h) = polling();
        tokio::time::sleep(Duration::from_secs(3)).await;
        board.stop();
        tokio::time::timeout(Duration::from_millis(10), h)
            .await
            .expect("poller hung after stop while parked")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_while_pausing_between_rounds_ends_the_poller_at_once() {
        let (board, fake, h) = polling();
        let id = fake.add_instance(
            "kiwi-x-general-01",
            crate::contabo::models::InstanceStatus::Provisioning,
        );
        // Unlisted: the wait goes on (start grace), so the poller keeps pausing.
        fake.state.lock().unwrap().unlisted.insert(id.0);
        let b2 = board.clone();
        let w = tokio::spawn(async move {
            let r = crate::report::RecordingReporter::default();
            let _ = b2
                .wait_for_running("kiwi-x-general-01", id, WaitCause::Order, &r)
                .await;
        });
        tokio::time::sleep(Duration::from_secs(40)).await;
        let polls = fake.state.lock().unwrap().id_polls;
        // 0, 5, 12.5, 23.75, 40.6.. => 4 rounds in 40 s with ×1.5 from 5 s
        eprintln!("id polls in 40 s: {polls}");
        assert_eq!(
            polls, 4,
            "rounds at 0, 5, 12.5, 23.75 s (x1.5 from poll_min)"
        );
        board.stop();
        tokio::time::timeout(Duration::from_millis(10), h)
            .await
            .expect("poller hung after stop mid-pause")
            .unwrap();
        w.abort();
    }

    /// After a quiet spell (parked), a new wait is polled from poll_min again.
    #[tokio::test(start_paused = true)]
    async fn a_new_wait_after_a_parked_spell_starts_from_poll_min_again() {
        let (board, fake, h) = polling();
        let wait = |name: &'static str| {
            let id = fake.add_instance(name, crate::contabo::models::InstanceStatus::Provisioning);
            fake.state.lock().unwrap().unlisted.insert(id.0);
            let b2 = board.clone();
            tokio::spawn(async move {
                let r = crate::report::RecordingReporter::default();
                let _ = b2.wait_for_running(name, id, WaitCause::Order, &r).await;
            })
        };
        let w = wait("kiwi-x-general-01");
        tokio::time::sleep(Duration::from_secs(40)).await; // pauses grew to 16.875 s
        w.abort();
        tokio::time::sleep(Duration::from_secs(60)).await; // parked
        let before = fake.state.lock().unwrap().id_polls;
        let w = wait("kiwi-x-general-02");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let polls = fake.state.lock().unwrap().id_polls - before;
        eprintln!("polls in the first 6 s of the new wait: {polls}");
        assert_eq!(polls, 2, "rounds at 0 and 5 s after the wake");
        board.stop();
        tokio::time::timeout(Duration::from_millis(10), h)
            .await
            .unwrap()
            .unwrap();
        w.abort();
    }

    /// A reinstall of a running machine: Contabo may list it `running` for a
    /// moment after taking the reinstall in. That is the old system, whose
    /// host key is not the new one: the wait ends only after the machine was
    /// seen leaving `running` and coming back (or after the start grace).
    #[tokio::test(start_paused = true)]
    async fn after_a_reinstall_the_old_systems_running_is_not_taken_for_the_new_one() {
        use crate::contabo::models::InstanceStatus;
        let (board, fake, poller) = polling();
        let id = fake.add_instance("kiwi-x-general-01", InstanceStatus::Running);
        let b2 = board.clone();
        let wait = tokio::spawn(async move {
            let r = crate::report::RecordingReporter::default();
            b2.wait_for_running("kiwi-x-general-01", id, WaitCause::Reinstall, &r)
                .await
        });
        let set = |status: InstanceStatus| {
            let mut s = fake.state.lock().unwrap();
            s.instances
                .iter_mut()
                .find(|i| i.instance_id == id)
                .unwrap()
                .status = status;
        };
        // Rounds at 0, 5 and 12.5 s all list the old `running`.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(
            !wait.is_finished(),
            "the old system's `running` ended the wait"
        );
        // The reinstall is taken in: the fake moves a machine on by one
        // status a listing, so the round at 23.75 s lists it `installing`
        // and the one at 40.6 s (within the grace) `running`.
        set(InstanceStatus::Provisioning);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!wait.is_finished());
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(
            wait.is_finished(),
            "`running` after `installing` is the new system"
        );
        assert!(matches!(
            wait.await.unwrap(),
            Ok(super::WaitEnd::Running(_))
        ));
        board.stop();
        poller.await.unwrap();
    }

    /// A wait for an earlier run's machine, or for one this plan ordered
    /// (a new machine never ran before: its first `running` is its own),
    /// takes `running` at once, within the start grace too.
    #[tokio::test(start_paused = true)]
    async fn a_machine_kiwi_infra_did_not_reinstall_is_running_at_the_first_round() {
        for cause in [WaitCause::Earlier, WaitCause::Order] {
            running_at_the_first_round(cause).await;
        }
    }

    async fn running_at_the_first_round(cause: WaitCause) {
        use crate::contabo::models::InstanceStatus;
        let (board, fake, poller) = polling();
        let id = fake.add_instance("kiwi-x-general-01", InstanceStatus::Running);
        let r = crate::report::RecordingReporter::default();
        let end = tokio::time::timeout(
            Duration::from_secs(1),
            board.wait_for_running("kiwi-x-general-01", id, cause, &r),
        )
        .await
        .expect("the first round ends the wait");
        assert!(matches!(end, Ok(super::WaitEnd::Running(_))));
        board.stop();
        poller.await.unwrap();
    }
}
