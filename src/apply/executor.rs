//! Carries out a plan's steps: the executor hands the plan's steps to the
//! step scheduler (`super::schedule`: a step starts once every step it
//! depends on succeeded; independent steps run at once, up to a bound; a
//! failure stops only what depends on it) and carries each out through the
//! part that owns its concern: the order protocol (`super::order`), account
//! look-ups (`super::account`), identity (`super::identity`), instance steps
//! (`super::instance`), waits (`super::wait`) and node steps
//! (`super::node`). Every outcome is kept for the summary. The executor
//! decides nothing the plan did not say, with one exception that exists to
//! keep money safe: before each order it looks for the slot's instance
//! again, and after a lost answer it looks before doing anything else, so a
//! slot is never bought twice. Destructive steps (drain, delete node,
//! cancel, reinstall of a running machine) run only with `--allow-destroy`
//! and never in a protected cluster; held back, they say so.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::contabo::models::{Instance, InstanceId};
use crate::contabo::CloudApi;
use crate::plan::{NodeName, Observed, Step, StepId, StepKind, WaitCause};
use crate::report::{HoldBack, Reporter, Stage, StepOutcome};

use super::account::Account;
use super::error::ApplyError;
use super::identity::Identity;
use super::instance::{InstanceSteps, Slots};
use super::journal::JournalStore;
use super::node::{is_node_step, NodeExecutor, NodeStepDone};
use super::order::Orders;
use super::schedule::{run_graph, Runner, Task};
use super::wait::{StatusBoard, WaitEnd, WaitSettings};

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
            journal_horizon: super::order::JOURNAL_HORIZON,
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
    /// Adds what a later round of the same apply did (see
    /// `crate::reconcile`).
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
        /// The instance's name: the slot, which is the node's name.
        slot: NodeName,
        instance: Option<InstanceId>,
        /// Whose action the wait follows (this plan's order or reinstall,
        /// or an earlier run's).
        cause: WaitCause,
    },
}

/// The concurrency limits' classes: Contabo steps, node steps (waits are
/// not limited).
const CONTABO: usize = 0;
const NODE: usize = 1;

/// Which concurrency limit a task counts against.
fn limit_class(work: &Work) -> Option<usize> {
    match work {
        Work::Wait { .. } => None,
        Work::Step(step) if is_node_step(&step.kind) => Some(NODE),
        Work::Step(_) => Some(CONTABO),
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
    let slots = Slots::default();
    let orders = Orders::new(api, reporter, journal, settings, &slots);
    let instances = InstanceSteps::new(api, &slots);
    let seen = Mutex::new(BTreeMap::new());
    let executor = Executor {
        api,
        nodes,
        reporter,
        journal,
        settings,
        account: Account::new(
            api,
            crate::patience::Backoff::constant(settings.wait.poll_min),
            observed,
        ),
        identity: Identity::new(&settings.ssh_public_key, settings.known_hosts.as_deref()),
        orders: &orders,
        instances: &instances,
        slots: &slots,
        board: StatusBoard::new(settings.wait),
        seen: &seen,
    };
    let (tasks, deferred) = build_tasks(input, settings.contabo_only);
    let results = {
        let schedule = async {
            let limits = [settings.concurrency, settings.node_concurrency];
            let results = run_graph(&executor, &tasks, &limits).await;
            executor.board.stop();
            results
        };
        let (results, ()) = tokio::join!(schedule, executor.board.run_poller(api));
        results
    };
    drop(executor);
    ApplyOutcome {
        results,
        deferred,
        ordered: orders.into_ordered(),
        instances: seen.into_inner().unwrap_or_default(),
        cancelled: instances.into_cancelled(),
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

/// The steps `--contabo-only` leaves for a later apply, in plan order:
/// every node step, and every step that depends on one (a cancel waits for
/// its node's drain and delete; it never runs without them).
pub fn left_for_later(steps: &[Step]) -> Vec<&StepId> {
    let mut left: HashSet<&StepId> = HashSet::new();
    let mut in_order = Vec::new();
    // Steps come in an order that respects their dependencies, so one pass
    // sees every prerequisite before its dependents.
    for step in steps {
        if is_node_step(&step.kind) || step.depends_on.iter().any(|d| left.contains(d)) {
            left.insert(&step.id);
            in_order.push(&step.id);
        }
    }
    in_order
}

/// Turns the plan's steps into tasks, one per step and with the plan's
/// dependencies alone (the planner states every one, waits included). With
/// `contabo_only`, the steps [`left_for_later`] names are left out.
fn build_tasks(input: ApplyInput, contabo_only: bool) -> (Vec<Task<Work>>, Vec<StepId>) {
    let deferred: Vec<StepId> = if contabo_only {
        left_for_later(&input.steps).into_iter().cloned().collect()
    } else {
        Vec::new()
    };
    let left: HashSet<&StepId> = deferred.iter().collect();
    let mut tasks = Vec::new();
    for step in input.steps {
        if left.contains(&step.id) {
            continue;
        }
        let work = match &step.kind {
            StepKind::WaitForRunning { instance, cause } => Work::Wait {
                slot: NodeName(instance.name.clone()),
                instance: instance.id,
                cause: *cause,
                step: Box::new(step.clone()),
            },
            _ => Work::Step(Box::new(step.clone())),
        };
        tasks.push(Task {
            id: step.id,
            deps: step.depends_on,
            class: limit_class(&work),
            urgency: urgency(&work),
            work,
        });
    }
    (tasks, deferred)
}

/// One apply's parts, each owning the state of its concern.
struct Executor<'a, A, N> {
    api: &'a A,
    nodes: &'a N,
    reporter: &'a dyn Reporter,
    journal: &'a dyn JournalStore,
    settings: &'a ApplySettings,
    account: Account<'a, A>,
    identity: Identity<'a>,
    orders: &'a Orders<'a, A>,
    instances: &'a InstanceSteps<'a, A>,
    slots: &'a Slots,
    board: StatusBoard,
    /// The last state seen of each slot's instance.
    seen: &'a Mutex<BTreeMap<String, Instance>>,
}

impl<A: CloudApi, N: NodeExecutor> Runner<Work> for Executor<'_, A, N> {
    type Out = TaskResult;

    async fn run(&self, task: &Task<Work>) -> TaskResult {
        let (outcome, error) = match self.run_task(&task.id, &task.work).await {
            Ok(outcome) => (outcome, None),
            Err(e) => (StepOutcome::Failed(e.chain()), Some(e)),
        };
        TaskResult {
            id: task.id.clone(),
            slot: task_slot(&task.work),
            outcome,
            error,
        }
    }

    fn succeeded(&self, out: &TaskResult) -> bool {
        out.outcome.is_done()
    }

    fn finished(&self, task: &Task<Work>, out: &TaskResult) {
        if let Some(slot) = &out.slot {
            if out.error.is_some() {
                self.reporter.node_stage(slot, &Stage::Failed);
            }
        }
        self.reporter.step_finished(&task.id, &out.outcome);
    }

    fn not_started(&self, task: &Task<Work>, because: &StepId) -> TaskResult {
        // A step that would be held back anyway says so itself: every
        // destructive step of a plan applied without --allow-destroy reads
        // the same.
        let held = match &task.work {
            Work::Step(step) => self.held_back(step),
            Work::Wait { .. } => None,
        };
        let outcome = match held {
            Some(why) => StepOutcome::NotCarriedOut(why),
            None => StepOutcome::Skipped {
                because: because.clone(),
            },
        };
        self.reporter.step_finished(&task.id, &outcome);
        TaskResult {
            id: task.id.clone(),
            slot: task_slot(&task.work),
            outcome,
            error: None,
        }
    }

    fn on_cycle(&self, task: &Task<Work>) -> TaskResult {
        TaskResult {
            id: task.id.clone(),
            slot: task_slot(&task.work),
            outcome: StepOutcome::Failed("its dependencies form a cycle".into()),
            error: None,
        }
    }
}

impl<A: CloudApi, N: NodeExecutor> Executor<'_, A, N> {
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
                cause,
            } => {
                self.reporter.step_started(step);
                let instance = match instance {
                    Some(id) => *id,
                    None => self.slots.instance_of(self.api, id, &slot.0).await?,
                };
                match self
                    .board
                    .wait_for_running(&slot.0, instance, *cause, self.reporter)
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
                            self.reporter.node_stage(&slot.0, &Stage::Connecting);
                            let checked = self.nodes.wait_ready(slot, i.ipv4()).await?;
                            self.reporter.node_stage(&slot.0, &Stage::Reachable);
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

    fn remember(&self, slot: &NodeName, instance: &Instance) {
        if let Some(ip) = instance.ipv4() {
            self.nodes.learn_address(slot, ip);
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(slot.0.clone(), instance.clone());
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
            StepKind::EnsureSecret { name } => {
                let public_key = self.identity.operator_key(step, name)?;
                self.account.ensure_secret(step, name, public_key).await
            }
            StepKind::EnsureTag { name } => self.account.ensure_tag(step, name).await,
            StepKind::OrderInstance(order) => {
                self.orders
                    .order(step, order, || {
                        self.identity.create_request(step, order, &self.account)
                    })
                    .await
            }
            StepKind::AssignTag { tag, instance } => {
                self.instances
                    .assign_tag(step, tag, instance, &self.account)
                    .await
            }
            StepKind::RenameInstance { instance, .. } => {
                self.instances.rename(step, instance).await
            }
            StepKind::EnsurePrivateNetwork { name, region } => {
                super::network::ensure(self.api, self.account.pauses(), step, name, region).await
            }
            StepKind::AssignPrivateNetwork { network, instance } => {
                super::network::assign(self.api, self.slots, self.nodes, step, network, instance)
                    .await
            }
            StepKind::UnassignTag { tag, instance } => {
                self.instances
                    .unassign_tag(step, tag, instance, &self.account)
                    .await
            }
            StepKind::ReinstallInstance(r) => {
                self.instances
                    .reinstall(step, r, self.reporter, self.nodes, || {
                        self.identity.reinstall_request(step, r, &self.account)
                    })
                    .await
            }
            StepKind::CancelInstance {
                instance,
                monthly_price,
                ..
            } => self.instances.cancel(step, instance, *monthly_price).await,
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
            _ => Ok(StepOutcome::NotCarriedOut(HoldBack::NotInThisRelease)),
        }
    }

    /// Why a destructive step must not run, if it must not: its cluster is
    /// protected (whatever the flags), or `--allow-destroy` was not given.
    fn held_back(&self, step: &Step) -> Option<HoldBack> {
        if !step.destructive {
            return None;
        }
        if let Some(cluster) = step
            .cluster
            .as_ref()
            .filter(|c| self.settings.protected_clusters.contains(*c))
        {
            return Some(HoldBack::ProtectedCluster {
                cluster: cluster.clone(),
            });
        }
        if !self.settings.allow_destroy {
            return Some(HoldBack::NeedsAllowDestroy);
        }
        None
    }
}

fn task_slot(work: &Work) -> Option<String> {
    match work {
        Work::Step(step) => step.kind.slot().map(str::to_string),
        Work::Wait { slot, .. } => Some(slot.0.clone()),
    }
}
