//! Carries out a plan's steps as a graph: a step starts once every step it
//! depends on succeeded; independent steps run at once, up to a bound; a
//! failure stops only what depends on it; every outcome is kept for the
//! summary. The executor decides nothing the plan did not say, with one
//! exception that exists to keep money safe: before each order it looks for
//! the slot's instance again, and after a lost answer it looks before doing
//! anything else, so a slot is never bought twice. Destructive steps (drain,
//! delete node, cancel, reinstall of a running machine) run only with
//! `--allow-destroy` and never in a protected cluster; held back, they say so.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Mutex;

use crate::cloudinit::{self, UserDataVars};
use crate::contabo::models::{
    CreateInstance, Instance, InstanceId, Period, Region, ReinstallInstance, SecretId, TagId,
};
use crate::contabo::{CloudApi, ContaboError};
use crate::plan::{
    self, InstanceRef, Observed, Order, Reinstall, Step, StepId, StepKind, UserDataTemplate,
    WaitCause,
};
use crate::report::{Reporter, Stage, StepOutcome};
use crate::secret::Secret;
use crate::ssh::{HostKey, KnownHosts};

use super::account::{look_create_look, Ensured, NotEnsured};
use super::error::ApplyError;
use super::journal::{Entry, Event, JournalStore};
use super::node::{is_node_step, NodeExecutor, NodeStepDone};
use super::wait::{StatusBoard, WaitEnd, WaitSettings};

/// Colour of the tags kiwi-infra creates (Contabo shows it in its panel).
pub const TAG_COLOR: &str = "#0A78C3";

/// How long before an intent an instance's creation date may lie and still
/// be the answer to it (clock skew between this host and Contabo).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(10);

/// Knobs of one apply.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    /// Contabo steps (orders, tags, cancels, ...) running at once; the
    /// client's rate limit paces their requests in any case.
    pub concurrency: usize,
    /// Node steps (bootstraps, joins, labels, drains) running at once: SSH
    /// sessions whose work happens on the nodes themselves.
    pub node_concurrency: usize,
    /// Only Contabo-side steps; node steps are left for a later run.
    pub contabo_only: bool,
    /// Waiting for `running`.
    pub wait: WaitSettings,
    /// How long to keep looking for an order whose outcome is unknown (its
    /// answer was not a 2xx with the instance, or an earlier run was
    /// interrupted while ordering) before stopping the slot for the
    /// operator. Nothing is ever ordered again when it runs out.
    pub unlisted_order_wait: Duration,
    /// How old a journal intent may be and still claim an instance that
    /// appears under its slot's name (as this tool's own, to be tagged).
    pub journal_horizon: Duration,
    /// Slots the operator confirmed (`--reorder`) may be ordered again
    /// although an earlier order's outcome is unknown.
    pub reorder: BTreeSet<String>,
    /// The run's `x-trace-id`, written to the journal.
    pub trace_id: String,
    /// The operator's OpenSSH public key, from the inventory: what the SSH
    /// key secret holds and the user data authorises. Plan steps name it by
    /// the digest in the secret's name, and it must match.
    pub ssh_public_key: String,
    /// `<inventory>/known_hosts`, where the host key generated for each
    /// ordered or reinstalled node is recorded before the request is sent.
    /// `None` only in tests: keys are then generated but not recorded, and
    /// such nodes cannot be reached over SSH.
    pub known_hosts: Option<PathBuf>,
    /// `--allow-destroy`: carry out destructive steps (drain, delete node,
    /// cancel, reinstall of a running instance). Without it they are
    /// reported as not carried out and everything else is done.
    pub allow_destroy: bool,
    /// Clusters the inventory marks `protected = true`. The planner plans
    /// no destructive step for them; this is the second lock on the door,
    /// for a plan made elsewhere: their destructive steps never run,
    /// whatever the flags.
    pub protected_clusters: BTreeSet<String>,
}

impl ApplySettings {
    /// Production settings.
    pub fn production(trace_id: String) -> Self {
        ApplySettings {
            concurrency: 8,
            node_concurrency: 32,
            contabo_only: false,
            wait: WaitSettings::production(),
            unlisted_order_wait: Duration::from_secs(120),
            journal_horizon: JOURNAL_HORIZON,
            reorder: BTreeSet::new(),
            trace_id,
            ssh_public_key: String::new(),
            known_hosts: None,
            allow_destroy: false,
            protected_clusters: BTreeSet::new(),
        }
    }

    /// Millisecond settings for tests.
    pub fn fast(trace_id: String) -> Self {
        ApplySettings {
            wait: WaitSettings::fast(),
            unlisted_order_wait: Duration::from_millis(300),
            ..Self::production(trace_id)
        }
    }
}

/// The flags and variables of `crate::settings` applied here, so that the
/// settings registry stays below the code it tunes.
impl crate::settings::ApplyKnobs {
    /// Sets what is given in `s`, leaving the rest.
    pub fn tune(&self, s: &mut ApplySettings) {
        if let Some(poll) = self.internal.poll {
            s.wait.poll_min = poll;
            s.wait.poll_max = poll.saturating_mul(5);
        }
        if let Some(limit) = self.status_timeout {
            s.wait.provisioning_limit = limit;
            s.wait.installing_limit = limit;
            s.wait.other_limit = limit;
        }
        if let Some(wait) = self.unlisted_order_wait {
            s.unlisted_order_wait = wait;
        }
        if let Some(grace) = self.internal.start_grace {
            s.wait.start_grace = grace;
        }
        if let Some(n) = self.concurrency {
            s.concurrency = n;
        }
        if let Some(n) = self.node_concurrency {
            s.node_concurrency = n;
        }
    }
}

/// What to apply.
#[derive(Debug, Clone)]
pub struct ApplyInput {
    /// The plan's steps, in plan order: exactly what runs (with
    /// `--contabo-only`, less the node steps and what depends on them).
    pub steps: Vec<Step>,
}

/// The end of one task: a plan step or a wait for `running`.
#[derive(Debug)]
pub struct TaskResult {
    /// Step id; waits are `wait:<slot>`.
    pub id: StepId,
    /// The slot it concerns, if any.
    pub slot: Option<String>,
    /// How it ended.
    pub outcome: StepOutcome,
    /// The error, for failed tasks.
    pub error: Option<ApplyError>,
}

/// One instance this run cancelled (or found cancelled already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    /// Display (slot) name.
    pub slot: String,
    /// The instance.
    pub instance: InstanceId,
    /// The date Contabo reported: the server runs, and is billed, until
    /// then. `None` when the API answered without one.
    pub cancel_date: Option<chrono::NaiveDate>,
    /// Monthly price saved, if the inventory knows the product's price.
    pub monthly_price: Option<crate::inventory::Money>,
}

/// Everything an apply did.
#[derive(Debug, Default)]
pub struct ApplyOutcome {
    /// Every task, in plan order (waits after their step).
    pub results: Vec<TaskResult>,
    /// Node steps left out by `--contabo-only`.
    pub deferred: Vec<StepId>,
    /// Slots ordered in this run, with their instance.
    pub ordered: Vec<(String, InstanceId)>,
    /// The last state seen of each slot's instance.
    pub instances: BTreeMap<String, Instance>,
    /// Instances cancelled by this run, in the order it cancelled them.
    pub cancelled: Vec<Cancellation>,
}

impl ApplyOutcome {
    /// Adds what a later round of the same apply did (see `cli::apply`).
    pub fn merge(&mut self, later: ApplyOutcome) {
        self.results.extend(later.results);
        self.deferred.extend(later.deferred);
        self.ordered.extend(later.ordered);
        self.instances.extend(later.instances);
        self.cancelled.extend(later.cancelled);
    }

    /// True when every task is done.
    pub fn all_done(&self) -> bool {
        self.results.iter().all(|r| r.outcome.is_done())
    }
}

#[derive(Debug, Clone)]
enum Work {
    Step(Box<Step>),
    /// A [`StepKind::WaitForRunning`] step, with what the status board needs.
    Wait {
        step: Box<Step>,
        slot: String,
        instance: Option<InstanceId>,
        own_action: bool,
    },
}

/// Which concurrency limit a task counts against: 0 for Contabo steps, 1
/// for node steps, none for waits.
fn limit_kind(work: &Work) -> Option<usize> {
    match work {
        Work::Wait { .. } => None,
        Work::Step(step) if is_node_step(&step.kind) => Some(1),
        Work::Step(_) => Some(0),
    }
}

/// Which ready task starts first when steps compete for the concurrency
/// limit (lower first). Orders and reinstalls come first: each starts
/// minutes to hours of provisioning that everything after it waits for.
/// Node steps (bootstraps, joins, labels) come next: they are on the way
/// to a working cluster. Bookkeeping on Contabo (tags, secrets, tag
/// assignments, cancellations) comes last; nothing waits on it for long.
fn urgency(work: &Work) -> u8 {
    match work {
        Work::Wait { .. } => 0,
        Work::Step(step) => match &step.kind {
            StepKind::OrderInstance(_) | StepKind::ReinstallInstance(_) => 0,
            kind if is_node_step(kind) => 1,
            _ => 2,
        },
    }
}

#[derive(Debug)]
struct Task {
    id: StepId,
    deps: Vec<StepId>,
    work: Work,
}

/// What is known about the account while applying: filled from the
/// observation and by steps as they create things.
#[derive(Debug, Default)]
struct Known {
    tags: BTreeMap<String, TagId>,
    secrets: BTreeMap<String, SecretId>,
    instances: BTreeMap<String, InstanceId>,
}

/// Applies `input` against `api`, running node steps through `nodes`.
/// Never fails as a whole: every failure is in the outcome.
pub async fn execute<A: CloudApi, N: NodeExecutor>(
    api: &A,
    nodes: &N,
    reporter: &dyn Reporter,
    journal: &dyn JournalStore,
    observed: &Observed,
    input: ApplyInput,
    settings: &ApplySettings,
) -> ApplyOutcome {
    let known = Known {
        tags: observed
            .tags
            .iter()
            .map(|(n, id)| (n.clone(), *id))
            .collect(),
        secrets: observed
            .secrets
            .iter()
            .map(|(n, id)| (n.clone(), *id))
            .collect(),
        instances: BTreeMap::new(),
    };
    let executor = Executor {
        api,
        nodes,
        reporter,
        journal,
        settings,
        known_hosts: settings.known_hosts.as_ref().map(KnownHosts::new),
        known: Mutex::new(known),
        board: StatusBoard::new(settings.wait),
        seen: Mutex::new(BTreeMap::new()),
        ordered: Mutex::new(Vec::new()),
        cancelled: Mutex::new(Vec::new()),
    };
    let (tasks, deferred) = build_tasks(input, settings.contabo_only);
    let results = {
        let schedule = async {
            let results = executor.schedule(tasks).await;
            executor.board.stop();
            results
        };
        let (results, ()) = tokio::join!(schedule, executor.board.run_poller(api));
        results
    };
    ApplyOutcome {
        results,
        deferred,
        ordered: executor.ordered.into_inner().unwrap_or_default(),
        instances: executor.seen.into_inner().unwrap_or_default(),
        cancelled: executor.cancelled.into_inner().unwrap_or_default(),
    }
}

/// [`build_tasks`], for the unit tests: how many tasks, and what is left.
#[cfg(test)]
pub(super) fn build_tasks_for_test(
    input: ApplyInput,
    contabo_only: bool,
) -> (Vec<()>, Vec<StepId>) {
    let (tasks, deferred) = build_tasks(input, contabo_only);
    (tasks.iter().map(|_| ()).collect(), deferred)
}

/// Turns the plan's steps into tasks, one per step and with the plan's
/// dependencies alone (the planner states every one, waits included). With
/// `contabo_only`, node steps are left out together with every step that
/// depends on one: a cancel waits for its node's drain and delete, it
/// never runs without them.
fn build_tasks(input: ApplyInput, contabo_only: bool) -> (Vec<Task>, Vec<StepId>) {
    let mut deferred = Vec::new();
    let mut left: HashSet<StepId> = HashSet::new();
    let mut tasks = Vec::new();
    // Steps come in an order that respects their dependencies, so one pass
    // sees every prerequisite before its dependents.
    for step in input.steps {
        let waits_for_deferred = step.depends_on.iter().any(|d| left.contains(d));
        if contabo_only && (is_node_step(&step.kind) || waits_for_deferred) {
            left.insert(step.id.clone());
            deferred.push(step.id);
            continue;
        }
        let work = match &step.kind {
            StepKind::WaitForRunning { instance, cause } => Work::Wait {
                slot: instance.name.clone(),
                instance: instance.id,
                own_action: *cause != WaitCause::Earlier,
                step: Box::new(step.clone()),
            },
            _ => Work::Step(Box::new(step.clone())),
        };
        tasks.push(Task {
            id: step.id,
            deps: step.depends_on,
            work,
        });
    }
    (tasks, deferred)
}

/// Look-ups of a slot's name, at the least, before an order whose answer
/// was lost and that Contabo does not list is sent again.
const MIN_LOOKS_BEFORE_REORDER: u32 = 3;

/// Why a destructive step was not carried out without `--allow-destroy`.
pub const NEEDS_ALLOW_DESTROY: &str = "needs --allow-destroy";

/// True when an order's request never left this machine: no token could
/// be had, or the client is misconfigured. Every answer from the server, an
/// error status included, leaves the order's outcome unknown.
fn nothing_was_sent(e: &ContaboError) -> bool {
    matches!(
        e,
        ContaboError::Credentials { .. }
            | ContaboError::Config(_)
            | ContaboError::TokenTransport { .. }
    )
}

/// Whether the journal says this tool ordered `instance` for `slot`. Only
/// the slot's latest event counts: a `placed` claims exactly its instance
/// id; an `intent` whose outcome is unknown claims an instance created after
/// it, within `horizon`. An order later found absent, refused or replaced
/// claims nothing, so a colleague's hand-made instance is never adopted.
/// How old a journal intent may be and still claim an instance that
/// appears under its slot's name ([`ApplySettings::journal_horizon`]'s
/// default, and what `plan` uses).
pub const JOURNAL_HORIZON: Duration = Duration::from_secs(3600);

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

/// What an order's or a reinstall's step says its user data is made of.
#[derive(Debug, Clone, Copy)]
struct UserDataInputs<'a> {
    template: UserDataTemplate,
    ssh_public_key: &'a str,
    kubernetes_version: Option<&'a str>,
}

type TaskFuture<'a> = BoxFuture<'a, (usize, Result<StepOutcome, ApplyError>)>;

struct Executor<'a, A, N> {
    api: &'a A,
    nodes: &'a N,
    reporter: &'a dyn Reporter,
    journal: &'a dyn JournalStore,
    settings: &'a ApplySettings,
    /// Where host keys are recorded (see [`ApplySettings::known_hosts`]).
    known_hosts: Option<KnownHosts>,
    known: Mutex<Known>,
    board: StatusBoard,
    seen: Mutex<BTreeMap<String, Instance>>,
    ordered: Mutex<Vec<(String, InstanceId)>>,
    cancelled: Mutex<Vec<Cancellation>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done,
    NotDone,
}

impl<'a, A: CloudApi, N: NodeExecutor> Executor<'a, A, N> {
    async fn schedule(&self, tasks: Vec<Task>) -> Vec<TaskResult> {
        let index: HashMap<StepId, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut state = vec![State::Pending; tasks.len()];
        let mut results: Vec<Option<TaskResult>> = tasks.iter().map(|_| None).collect();
        let mut running: FuturesUnordered<TaskFuture<'_>> = FuturesUnordered::new();
        // Running steps per kind: [Contabo, node]; waits are not limited.
        let mut busy = [0usize; 2];
        let limits = [
            self.settings.concurrency.max(1),
            self.settings.node_concurrency.max(1),
        ];
        // Ready tasks start in plan order within their urgency (see
        // `urgency`): with 180 slots, tag assignments must not hold the
        // last orders back for seconds of rate-limited requests.
        let mut scan: Vec<usize> = (0..tasks.len()).collect();
        scan.sort_by_key(|&i| urgency(&tasks[i].work));
        loop {
            // Settle what can be settled without running anything, then
            // start what is ready.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for &i in &scan {
                    if state[i] != State::Pending {
                        continue;
                    }
                    let mut blocked = None;
                    let mut ready = true;
                    for dep in &tasks[i].deps {
                        match index.get(dep).map(|&d| state[d]) {
                            // Not part of this run (done already, or deferred
                            // by --contabo-only and not a prerequisite here).
                            None => {}
                            Some(State::Done) => {}
                            Some(State::NotDone) => {
                                blocked = Some(dep.clone());
                                break;
                            }
                            Some(State::Pending | State::Running) => ready = false,
                        }
                    }
                    if let Some(because) = blocked {
                        state[i] = State::NotDone;
                        // A step that would be held back anyway says so
                        // itself: every destructive step of a plan applied
                        // without --allow-destroy reads the same.
                        let held = match &tasks[i].work {
                            Work::Step(step) => self.held_back(step),
                            Work::Wait { .. } => None,
                        };
                        let outcome = match held {
                            Some(why) => StepOutcome::NotCarriedOut(why),
                            None => StepOutcome::Skipped { because },
                        };
                        self.reporter.step_finished(&tasks[i].id, &outcome);
                        results[i] = Some(TaskResult {
                            id: tasks[i].id.clone(),
                            slot: task_slot(&tasks[i]),
                            outcome,
                            error: None,
                        });
                        progressed = true;
                        continue;
                    }
                    let kind = limit_kind(&tasks[i].work);
                    if ready && kind.is_none_or(|k| busy[k] < limits[k]) {
                        state[i] = State::Running;
                        if let Some(k) = kind {
                            busy[k] += 1;
                        }
                        let work = tasks[i].work.clone();
                        let id = tasks[i].id.clone();
                        // With its dependencies, so a run's timing can be
                        // read back from a debug log (benches/apply_at_scale.rs).
                        tracing::debug!(
                            task = %id,
                            after = %tasks[i].deps.iter().map(|d| d.0.as_str()).collect::<Vec<_>>().join(","),
                            "task started"
                        );
                        running.push(Box::pin(
                            async move { (i, self.run_task(&id, &work).await) },
                        ));
                    }
                }
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            if let Some(k) = limit_kind(&tasks[i].work) {
                busy[k] -= 1;
            }
            let (outcome, error) = match result {
                Ok(outcome) => (outcome, None),
                Err(e) => (StepOutcome::Failed(e.chain()), Some(e)),
            };
            tracing::debug!(task = %tasks[i].id, done = outcome.is_done(), "task finished");
            state[i] = if outcome.is_done() {
                State::Done
            } else {
                State::NotDone
            };
            if let Some(slot) = task_slot(&tasks[i]) {
                if error.is_some() {
                    self.reporter.node_stage(&slot, &Stage::Failed);
                }
            }
            self.reporter.step_finished(&tasks[i].id, &outcome);
            results[i] = Some(TaskResult {
                id: tasks[i].id.clone(),
                slot: task_slot(&tasks[i]),
                outcome,
                error,
            });
        }
        // Anything still pending sits on a dependency cycle (a plan bug).
        results
            .into_iter()
            .zip(&tasks)
            .map(|(r, t)| {
                r.unwrap_or_else(|| TaskResult {
                    id: t.id.clone(),
                    slot: task_slot(t),
                    outcome: StepOutcome::Failed("its dependencies form a cycle".into()),
                    error: None,
                })
            })
            .collect()
    }

    async fn run_task(&self, id: &StepId, work: &Work) -> Result<StepOutcome, ApplyError> {
        match work {
            Work::Step(step) => {
                self.reporter.step_started(step);
                self.run_step(step).await
            }
            Work::Wait {
                step,
                slot,
                instance,
                own_action,
            } => {
                self.reporter.step_started(step);
                let instance = match instance {
                    Some(id) => *id,
                    None => self.instance_of(id, slot).await?,
                };
                match self
                    .board
                    .wait_for_running(slot, instance, *own_action, self.reporter)
                    .await?
                {
                    WaitEnd::Running(i) => {
                        let ip = i
                            .ipv4()
                            .map_or_else(|| "no IPv4 yet".to_string(), |ip| ip.to_string());
                        self.remember(slot, &i);
                        // Node steps need the node itself, not just Contabo's
                        // word: wait until it answers over SSH with its pinned
                        // host key and cloud-init has finished. Not with
                        // --contabo-only, which leaves the nodes for later.
                        if !self.settings.contabo_only {
                            self.reporter.node_stage(slot, &Stage::Connecting);
                            let checked = self.nodes.wait_ready(slot, i.ipv4()).await?;
                            self.reporter.node_stage(slot, &Stage::Reachable);
                            if checked {
                                return Ok(StepOutcome::Done(format!(
                                    "instance {instance} is running at {ip} and ready over SSH"
                                )));
                            }
                        }
                        Ok(StepOutcome::Done(format!(
                            "instance {instance} is running at {ip}"
                        )))
                    }
                    WaitEnd::NeedsHuman { instance, message } => {
                        self.remember(slot, &instance);
                        Ok(StepOutcome::NeedsHuman(message))
                    }
                }
            }
        }
    }

    fn remember(&self, slot: &str, instance: &Instance) {
        if let Some(ip) = instance.ipv4() {
            self.nodes.learn_address(slot, ip);
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(slot.to_string(), instance.clone());
        }
    }

    async fn run_step(&self, step: &Step) -> Result<StepOutcome, ApplyError> {
        if let Some(why) = self.held_back(step) {
            return Ok(StepOutcome::NotCarriedOut(why));
        }
        // One apply at a time: once the lock is no longer certainly ours,
        // no step starts (another apply may hold it and work on the same
        // machines); the next apply carries on from what is recorded.
        if let Some(why) = self.journal.lock_lost() {
            return Err(ApplyError::State(crate::state::StateError::Lost {
                what: why,
            }));
        }
        match &step.kind {
            StepKind::EnsureSecret { name } => self.ensure_secret(step, name).await,
            StepKind::EnsureTag { name } => self.ensure_tag(step, name).await,
            StepKind::OrderInstance(order) => self.order(step, order).await,
            StepKind::AssignTag { tag, instance } => self.assign_tag(step, tag, instance).await,
            StepKind::RenameInstance { instance, .. } => self.rename(step, instance).await,
            StepKind::UnassignTag { tag, instance } => self.unassign_tag(step, tag, instance).await,
            StepKind::ReinstallInstance(r) => self.reinstall(step, r).await,
            StepKind::CancelInstance {
                instance,
                monthly_price,
                ..
            } => self.cancel(step, instance, *monthly_price).await,
            kind if is_node_step(kind) => {
                let stage = match kind {
                    StepKind::SetLabel { .. }
                    | StepKind::RemoveLabel { .. }
                    | StepKind::RecordLabels { .. }
                    | StepKind::SetTaint { .. }
                    | StepKind::RemoveTaint { .. } => Some(Stage::Labelling),
                    StepKind::DrainNode { .. }
                    | StepKind::DeleteNode { .. }
                    | StepKind::DeleteStaleNode { .. } => None,
                    _ => Some(Stage::Bootstrapping),
                };
                if let (Some(slot), Some(stage)) = (kind.slot(), stage) {
                    self.reporter.node_stage(slot, &stage);
                }
                Ok(match self.nodes.run(step).await? {
                    NodeStepDone::Done(text) => StepOutcome::Done(text),
                    NodeStepDone::NotCarriedOut(why) => StepOutcome::NotCarriedOut(why),
                })
            }
            _ => Ok(StepOutcome::NotCarriedOut(
                "this kind of step is not carried out by this kiwi-infra release".into(),
            )),
        }
    }

    /// Why a destructive step must not run, if it must not: its cluster is
    /// protected (whatever the flags), or `--allow-destroy` was not given.
    fn held_back(&self, step: &Step) -> Option<String> {
        if !step.destructive {
            return None;
        }
        if let Some(cluster) = step
            .cluster
            .as_ref()
            .filter(|c| self.settings.protected_clusters.contains(*c))
        {
            return Some(format!(
                "cluster {cluster} is protected (protected = true in the inventory); no \
                 destructive step runs there"
            ));
        }
        if !self.settings.allow_destroy {
            return Some(NEEDS_ALLOW_DESTROY.to_string());
        }
        None
    }

    fn contabo(step: &Step, action: impl Into<String>) -> impl FnOnce(ContaboError) -> ApplyError {
        let step = step.id.clone();
        let action = action.into();
        move |source| ApplyError::Contabo {
            step,
            action,
            source,
        }
    }

    // ----- account-wide steps ---------------------------------------------

    async fn ensure_secret(&self, step: &Step, name: &str) -> Result<StepOutcome, ApplyError> {
        let public_key = self.operator_key(step, name)?;
        let ensured = look_create_look(
            self.settings.wait.poll_min,
            || self.find_secret(step, name),
            || async {
                let secret = self.api.create_ssh_key(name, public_key.trim()).await?;
                Ok(secret.secret_id)
            },
        )
        .await;
        self.ensured(step, &format!("secret {name}"), ensured, |id| {
            self.lock_known().secrets.insert(name.to_string(), id);
        })
    }

    /// The operator's public key ([`ApplySettings::ssh_public_key`]),
    /// checked to be the one the step names by digest (`secret`, the name
    /// of the secret that holds it): a plan made for another key is refused,
    /// never carried out with this one.
    fn operator_key(&self, step: &Step, secret: &str) -> Result<&str, ApplyError> {
        let key = self.settings.ssh_public_key.as_str();
        if plan::ssh_key_secret_name(key) == secret {
            Ok(key)
        } else {
            Err(ApplyError::InvalidOrder {
                step: step.id.clone(),
                reason: format!(
                    "the plan names the SSH key of secret {secret}, but the inventory's key is \
                     {}'s; plan again",
                    plan::ssh_key_secret_name(key)
                ),
            })
        }
    }

    /// The outcome of a [`look_create_look`] for `what`; `remember` records
    /// a created id.
    fn ensured<Id: std::fmt::Display + Copy>(
        &self,
        step: &Step,
        what: &str,
        ensured: Result<Ensured<Id>, NotEnsured<ApplyError>>,
        remember: impl FnOnce(Id),
    ) -> Result<StepOutcome, ApplyError> {
        match ensured {
            Ok(Ensured::Found(id)) => Ok(StepOutcome::Done(format!("{what} exists (id {id})"))),
            Ok(Ensured::Created(id)) => {
                remember(id);
                Ok(StepOutcome::Done(format!("created {what} (id {id})")))
            }
            Err(NotEnsured::Look(e)) => Err(e),
            Err(NotEnsured::Create(source)) => Err(ApplyError::NotCreated {
                step: step.id.clone(),
                what: what.to_string(),
                source,
            }),
        }
    }

    async fn find_secret(&self, step: &Step, name: &str) -> Result<Option<SecretId>, ApplyError> {
        let secrets = self
            .api
            .list_secrets()
            .await
            .map_err(Self::contabo(step, "listing secrets"))?;
        let found = secrets
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.secret_id);
        if let Some(id) = found {
            self.lock_known().secrets.insert(name.to_string(), id);
        }
        Ok(found)
    }

    async fn ensure_tag(&self, step: &Step, name: &str) -> Result<StepOutcome, ApplyError> {
        let ensured = look_create_look(
            self.settings.wait.poll_min,
            || self.find_tag(step, name),
            || self.api.create_tag(name, TAG_COLOR),
        )
        .await;
        self.ensured(step, &format!("tag {name}"), ensured, |id| {
            self.lock_known().tags.insert(name.to_string(), id);
        })
    }

    async fn find_tag(&self, step: &Step, name: &str) -> Result<Option<TagId>, ApplyError> {
        let tags = self
            .api
            .list_tags()
            .await
            .map_err(Self::contabo(step, "listing tags"))?;
        let found = tags.into_iter().find(|t| t.name == name).map(|t| t.tag_id);
        if let Some(id) = found {
            self.lock_known().tags.insert(name.to_string(), id);
        }
        Ok(found)
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A poisoned lock means a panic elsewhere; the data is still usable.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- tags on instances ----------------------------------------------

    async fn assign_tag(
        &self,
        step: &Step,
        tag: &str,
        instance: &InstanceRef,
    ) -> Result<StepOutcome, ApplyError> {
        let known_tag = self.lock_known().tags.get(tag).copied();
        let tag_id = match known_tag {
            Some(id) => id,
            None => self
                .find_tag(step, tag)
                .await?
                .ok_or_else(|| ApplyError::TagMissing {
                    step: step.id.clone(),
                    name: tag.to_string(),
                })?,
        };
        let id = match &instance.id {
            Some(id) => *id,
            None => self.instance_of(&step.id, &instance.name).await?,
        };
        self.api
            .assign_tag(tag_id, id)
            .await
            .map_err(Self::contabo(
                step,
                format!("assigning tag {tag} to instance {id}"),
            ))?;
        Ok(StepOutcome::Done(format!(
            "tagged instance {id} with {tag}"
        )))
    }

    /// Removes a tag from an instance (`kiwi-protected`, once unprotected).
    async fn unassign_tag(
        &self,
        step: &Step,
        tag: &str,
        instance: &InstanceRef,
    ) -> Result<StepOutcome, ApplyError> {
        let Some(id) = instance.id else {
            return Err(ApplyError::InstanceMissing {
                step: step.id.clone(),
                slot: instance.name.clone(),
            });
        };
        let Some(tag_id) = self.find_tag(step, tag).await? else {
            return Ok(StepOutcome::Done(format!("tag {tag} no longer exists")));
        };
        self.api
            .unassign_tag(tag_id, id)
            .await
            .map_err(Self::contabo(
                step,
                format!("removing tag {tag} from instance {id}"),
            ))?;
        Ok(StepOutcome::Done(format!(
            "removed {tag} from instance {id}"
        )))
    }

    /// Gives a renamed owned instance its slot's name back.
    async fn rename(&self, step: &Step, instance: &InstanceRef) -> Result<StepOutcome, ApplyError> {
        let Some(id) = instance.id else {
            return Err(ApplyError::InstanceMissing {
                step: step.id.clone(),
                slot: instance.name.clone(),
            });
        };
        self.api
            .rename_instance(id, &instance.name)
            .await
            .map_err(Self::contabo(
                step,
                format!("renaming instance {id} back to {}", instance.name),
            ))?;
        Ok(StepOutcome::Done(format!(
            "instance {id} is named {} again",
            instance.name
        )))
    }

    /// The instance of a slot: the one this run ordered, else looked up by name.
    async fn instance_of(&self, step: &StepId, slot: &str) -> Result<InstanceId, ApplyError> {
        if let Some(id) = self.lock_known().instances.get(slot) {
            return Ok(*id);
        }
        let live = self
            .api
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
        self.lock_known()
            .instances
            .insert(slot.to_string(), chosen.instance_id);
        Ok(chosen.instance_id)
    }

    // ----- orders -----------------------------------------------------------

    /// Orders one slot's machine. Contabo has no idempotency key and its
    /// list can lag, so a second order is only ever sent when nothing
    /// recorded says the first one may exist; when that cannot be known,
    /// the slot stops and waits for the operator.
    async fn order(&self, step: &Step, order: &Order) -> Result<StepOutcome, ApplyError> {
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
                        .look_again(step, slot, self.settings.unlisted_order_wait)
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
        let request = self.create_request(step, order).await?;
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
        if nothing_was_sent(&error) {
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
        // A server that asked for patience gets it before the look-ups.
        if let Some(pause) = error.retry_after() {
            tokio::time::sleep(pause.min(self.settings.wait.poll_max * 4)).await;
        }
        if let Some(found) = self
            .look_again(step, slot, self.settings.unlisted_order_wait)
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
                self.lock_known().instances.insert(slot.to_string(), id);
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
        self.lock_known().instances.insert(slot.to_string(), id);
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
        self.lock_known()
            .instances
            .insert(slot.to_string(), found.instance_id);
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
            .map_err(Self::contabo(step, format!("looking for instance {slot}")))?;
        Ok(oldest_live(found))
    }

    /// Looks for the slot's instance until `patience` has passed. `None`
    /// only if the last look-up succeeded and found nothing.
    async fn look_again(
        &self,
        step: &Step,
        slot: &str,
        patience: Duration,
    ) -> Result<Option<Instance>, ApplyError> {
        let deadline = crate::apply::wait::deadline_in(patience);
        let mut delay = self.settings.wait.poll_min;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = match self.api.find_instances_by_display_name(slot).await {
                Ok(found) => {
                    if let Some(i) = oldest_live(found) {
                        return Ok(Some(i));
                    }
                    None
                }
                Err(e) => Some(e),
            };
            // The window is a time, but a slow network or a loaded machine
            // must not shrink it to a single look: always look a few times.
            if tokio::time::Instant::now() >= deadline && attempts >= MIN_LOOKS_BEFORE_REORDER {
                return match last {
                    None => Ok(None),
                    Some(source) => Err(ApplyError::OrderUnresolved {
                        step: step.id.clone(),
                        slot: slot.to_string(),
                        attempts,
                        source,
                    }),
                };
            }
            tokio::time::sleep(
                delay.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            delay = delay.saturating_mul(2).min(self.settings.wait.poll_max);
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

    async fn secret_id(&self, step: &Step, name: &str) -> Result<SecretId, ApplyError> {
        let known = self.lock_known().secrets.get(name).copied();
        match known {
            Some(id) => Ok(id),
            None => self
                .find_secret(step, name)
                .await?
                .ok_or_else(|| ApplyError::SecretMissing {
                    step: step.id.clone(),
                    name: name.to_string(),
                }),
        }
    }

    /// Renders a node's user data with a new host key, whose public half
    /// is recorded in the known-hosts file first: before the order or
    /// reinstall is sent, so a crash right after cannot leave a node whose
    /// key kiwi-infra does not know. Recording replaces the node's earlier
    /// key (a reinstall, or a retried order). The private half exists only
    /// in the returned user data.
    fn user_data(
        &self,
        step: &Step,
        slot: &str,
        inputs: UserDataInputs<'_>,
    ) -> Result<Secret<String>, ApplyError> {
        let host_key = HostKey::generate(slot).map_err(|source| ApplyError::HostKey {
            step: step.id.clone(),
            slot: slot.to_string(),
            source,
        })?;
        let user_data = cloudinit::render(
            inputs.template,
            &UserDataVars {
                hostname: slot.to_string(),
                ssh_public_key: inputs.ssh_public_key.to_string(),
                host_private_key: host_key.private_openssh().clone(),
                host_public_key: host_key.public_openssh().to_string(),
                kubernetes_version: inputs.kubernetes_version.map(str::to_string),
            },
        )
        .map_err(|source| ApplyError::UserData {
            step: step.id.clone(),
            slot: slot.to_string(),
            source,
        })?;
        match &self.known_hosts {
            Some(known_hosts) => known_hosts
                .record(slot, host_key.public_openssh())
                .map_err(|source| ApplyError::KnownHosts {
                    step: step.id.clone(),
                    slot: slot.to_string(),
                    source,
                })?,
            None => tracing::debug!(
                slot,
                "no known-hosts file configured; host key not recorded"
            ),
        }
        Ok(user_data)
    }

    async fn create_request(
        &self,
        step: &Step,
        order: &Order,
    ) -> Result<CreateInstance, ApplyError> {
        let slot = order.slot.0.as_str();
        let image_id = order
            .image
            .id
            .as_ref()
            .ok_or_else(|| ApplyError::ImageUnresolved {
                step: step.id.clone(),
                image: order.image.name.clone(),
            })?
            .0
            .clone();
        let period = Period::try_from(order.period).map_err(|reason| ApplyError::InvalidOrder {
            step: step.id.clone(),
            reason,
        })?;
        let secret = self.secret_id(step, &order.ssh_key_secret).await?;
        Ok(CreateInstance {
            product_id: order.product.clone(),
            region: Region::from(order.region.as_str()),
            image_id,
            period,
            display_name: slot.to_string(),
            ssh_keys: vec![secret],
            user_data: Some(self.user_data(
                step,
                slot,
                UserDataInputs {
                    template: order.user_data,
                    ssh_public_key: self.operator_key(step, &order.ssh_key_secret)?,
                    kubernetes_version: order.kubernetes_version.as_deref(),
                },
            )?),
            default_user: None,
        })
    }

    // ----- reinstalls -------------------------------------------------------

    async fn reinstall(&self, step: &Step, r: &Reinstall) -> Result<StepOutcome, ApplyError> {
        let slot = r.instance.name.as_str();
        let id = match &r.instance.id {
            Some(id) => *id,
            None => self.instance_of(&step.id, slot).await?,
        };
        let image_id = r
            .image
            .id
            .as_ref()
            .ok_or_else(|| ApplyError::ImageUnresolved {
                step: step.id.clone(),
                image: r.image.name.clone(),
            })?
            .0
            .clone();
        let secret = self.secret_id(step, &r.ssh_key_secret).await?;
        let request = ReinstallInstance {
            image_id,
            ssh_keys: vec![secret],
            user_data: Some(self.user_data(
                step,
                slot,
                UserDataInputs {
                    template: r.user_data,
                    ssh_public_key: self.operator_key(step, &r.ssh_key_secret)?,
                    kubernetes_version: r.kubernetes_version.as_deref(),
                },
            )?),
            default_user: None,
        };
        self.reporter.node_stage(slot, &Stage::Reinstalling);
        self.api
            .reinstall_instance(id, &request)
            .await
            .map_err(Self::contabo(
                step,
                format!("reinstalling instance {id} ({slot})"),
            ))?;
        self.lock_known().instances.insert(slot.to_string(), id);
        // The machine boots afresh with a new host key: a connection kept
        // from before leads nowhere.
        self.nodes.forget(slot);
        Ok(StepOutcome::Done(format!(
            "reinstall of instance {id} (was {}) started",
            r.status
        )))
    }

    // ----- cancellations ----------------------------------------------------

    /// Cancels an instance. Contabo refuses a second cancel (409), so a
    /// fresh look comes first, and a failed call is followed by another
    /// look: an answer lost after the cancel took effect is not a failure.
    async fn cancel(
        &self,
        step: &Step,
        instance: &InstanceRef,
        monthly_price: Option<crate::inventory::Money>,
    ) -> Result<StepOutcome, ApplyError> {
        let slot = instance.name.as_str();
        let id = match &instance.id {
            Some(id) => *id,
            None => self.instance_of(&step.id, slot).await?,
        };
        let current = self.api.get_instance(id).await.map_err(Self::contabo(
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

fn task_slot(task: &Task) -> Option<String> {
    match &task.work {
        Work::Step(step) => step.kind.slot().map(str::to_string),
        Work::Wait { slot, .. } => Some(slot.clone()),
    }
}

/// The oldest instance that is not cancelled.
fn oldest_live(mut found: Vec<Instance>) -> Option<Instance> {
    found.retain(|i| i.cancel_date.is_none());
    found.sort_by_key(|i| (i.created_date, i.instance_id));
    found.into_iter().next()
}

fn first_line(e: &ContaboError) -> String {
    match e {
        ContaboError::OrderOutcomeUnknown { cause, .. } => cause.to_string(),
        other => other.to_string(),
    }
}
