//! The one reconcile path: observe → plan → (check a saved plan) → show →
//! approve → execute → observe → plan. The CLI (`kiwi-infra apply`), the
//! tests and the benches all run this function; `cli/` keeps only flags,
//! the prompt and printing, behind the [`Operator`] seam.
//!
//! The plan is the whole contract: [`reconcile`] hands the executor exactly
//! the plan's steps (with `--contabo-only`, less the node steps and what
//! depends on them) and decides nothing of its own. After the run it
//! observes and plans again. When no saved plan was given, work that the
//! run's own waits made possible (a machine Contabo held is running now, so
//! it can be joined) is carried out too, as a new plan of its own that the
//! operator is shown first, and only when it holds nothing beyond node
//! steps that need no approval (joins, labels, taints; nothing bought,
//! reinstalled or removed), at most [`FOLLOW_UP_ROUNDS`] times. A saved
//! plan is carried out exactly: what is left afterwards is reported, not
//! done.

use std::future::Future;

use crate::apply::journal::JournalStore;
use crate::apply::{self, ApplyInput, ApplyOutcome, ApplySettings, NodeExecutor};
use crate::contabo::CloudApi;
use crate::inventory::Desired;
use crate::plan::{self, Observed, Plan, PlanOptions, SavedPlan, Stale, StepKind};
use crate::report::Reporter;

/// How many times a reconcile without a saved plan plans again and carries
/// out work its own waits made possible (see the module docs).
pub const FOLLOW_UP_ROUNDS: usize = 2;

/// What reconcile observes and changes, beyond the order journal: the
/// Contabo account and the clusters' nodes. The CLI's world is the real
/// Contabo API and SSH; the tests' is a fake account and fake nodes.
pub trait World: Sync {
    /// The Contabo API.
    type Cloud: CloudApi;
    /// Node access, knowing the addresses of what was observed.
    type Nodes: NodeExecutor;
    /// Why observing failed.
    type Error: std::error::Error;

    /// The Contabo API reconcile changes.
    fn cloud(&self) -> &Self::Cloud;

    /// Observes the account and (unless this world is Contabo-only) the
    /// clusters, with the order journal's `entries` as kiwi-infra's own
    /// record of what it ordered (see [`apply::resume::record_journal_claims`]).
    fn observe(
        &self,
        entries: &[apply::journal::Entry],
    ) -> impl Future<Output = Result<(Observed, Self::Nodes), Self::Error>>;

    /// Closes the node connections of one observation.
    fn close(&self, nodes: Self::Nodes) -> impl Future<Output = ()>;
}

/// The operator's side of a reconcile: seeing plans and approving one.
pub trait Operator<E> {
    /// Shows the plan about to be carried out (or that there is nothing to
    /// do).
    fn show(&self, plan: &Plan);

    /// Asks whether to carry out `plan`; `Ok(false)` cancels without
    /// changing anything.
    fn approve(&self, plan: &Plan) -> Result<bool, E>;

    /// Shows a follow-up plan before it is carried out (see the module
    /// docs).
    fn follow_up(&self, plan: &Plan);
}

/// What reconcile is asked to do.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// Planning choices (`--adopt`, `--allow-destroy`).
    pub plan: PlanOptions,
    /// Execution knobs; `apply.contabo_only` leaves node steps out.
    pub apply: ApplySettings,
    /// A saved plan: carried out only when the plan made now is exactly it,
    /// and then nothing beyond it.
    pub saved: Option<SavedPlan>,
}

/// How a reconcile ended.
#[derive(Debug)]
pub enum Reconciled {
    /// The plan has nothing that runs (with `--contabo-only`: nothing on
    /// the Contabo side); nothing was changed.
    NothingToDo {
        /// The plan.
        plan: Plan,
    },
    /// The operator did not approve; nothing was changed.
    Cancelled {
        /// The plan that was shown.
        plan: Plan,
    },
    /// The plan was carried out.
    Applied {
        /// The plan carried out first.
        plan: Plan,
        /// Every step's outcome, follow-up rounds included.
        outcome: Box<ApplyOutcome>,
        /// The plan made after the run: empty when the inventory is
        /// realised; the observation's error when it could not be made.
        fresh: Result<Plan, String>,
    },
}

/// Why a reconcile stopped before changing anything.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError<E> {
    /// Observing the account or the clusters failed.
    #[error("{0}")]
    Observe(E),
    /// The saved plan is not the plan made now.
    #[error("{0}")]
    Stale(Stale),
    /// Asking the operator failed.
    #[error("{0}")]
    Approval(E),
}

/// Observes `world` with the journal's `entries` and plans: the first half
/// of every reconcile, and all of `kiwi-infra plan` and `status`. Returns
/// the observation, the plan and the node access of that observation (for
/// the caller to use and then close with [`World::close`]).
pub async fn observe_and_plan<W: World>(
    desired: &Desired,
    options: &PlanOptions,
    world: &W,
    entries: &[apply::journal::Entry],
) -> Result<(Observed, Plan, W::Nodes), W::Error> {
    let (observed, nodes) = world.observe(entries).await?;
    let plan = plan::plan(desired, &observed, options);
    Ok((observed, plan, nodes))
}

/// The number of the plan's steps that run (all but the node steps and
/// their dependents with `contabo_only`).
pub fn runnable_steps(plan: &Plan, contabo_only: bool) -> usize {
    if contabo_only {
        plan.steps.len() - apply::left_for_later(&plan.steps).len()
    } else {
        plan.steps.len()
    }
}

/// Observes, plans (checking `settings.saved` against the plan made now),
/// shows the plan, asks for approval, carries it out, and observes and
/// plans again (see the module docs). Errors are returned only before
/// anything was changed; once execution starts, every failure is in the
/// outcome.
pub async fn reconcile<W: World>(
    desired: &Desired,
    settings: &ReconcileSettings,
    world: &W,
    journal: &dyn JournalStore,
    reporter: &dyn Reporter,
    operator: &dyn Operator<W::Error>,
) -> Result<Reconciled, ReconcileError<W::Error>> {
    let contabo_only = settings.apply.contabo_only;
    let (observed, plan, nodes) =
        observe_and_plan(desired, &settings.plan, world, &journal.entries())
            .await
            .map_err(ReconcileError::Observe)?;
    let plan = match gate(desired, settings, &observed, plan, operator) {
        Ok(plan) => plan,
        Err(stopped) => {
            world.close(nodes).await;
            return stopped;
        }
    };
    let mut outcome = run(world, &nodes, reporter, journal, &observed, &plan, settings).await;
    world.close(nodes).await;

    let mut rounds = if settings.saved.is_some() {
        0
    } else {
        FOLLOW_UP_ROUNDS
    };
    let fresh = loop {
        let (observed, next, nodes) =
            match observe_and_plan(desired, &settings.plan, world, &journal.entries()).await {
                Ok(seen) => seen,
                Err(e) => break Err(e),
            };
        let failed = outcome.results.iter().any(|r| r.outcome.is_failure());
        if rounds == 0 || failed || !is_follow_up(&next, contabo_only) {
            world.close(nodes).await;
            break Ok(next);
        }
        rounds -= 1;
        operator.follow_up(&next);
        let more = run(world, &nodes, reporter, journal, &observed, &next, settings).await;
        world.close(nodes).await;
        outcome.merge(more);
    };
    Ok(Reconciled::Applied {
        plan,
        outcome: Box::new(outcome),
        fresh: fresh.map_err(|e| error_text(&e)),
    })
}

/// Everything between the first plan and its execution, none of it I/O:
/// the saved plan's check, showing the plan, and the operator's approval.
/// `Ok` hands on the plan to carry out; `Err` is how the reconcile ends
/// without changing anything.
// Called once per reconcile: the size of its answer costs nothing.
#[allow(clippy::result_large_err)]
fn gate<E>(
    desired: &Desired,
    settings: &ReconcileSettings,
    observed: &Observed,
    plan: Plan,
    operator: &dyn Operator<E>,
) -> Result<Plan, Result<Reconciled, ReconcileError<E>>> {
    if let Some(saved) = &settings.saved {
        // The file is only a promise: the plan carried out is always the
        // one the planner makes now, and the file must name exactly its
        // steps.
        if let Err(stale) = saved.check_fresh(observed, desired, &plan, &settings.plan) {
            return Err(Err(ReconcileError::Stale(stale)));
        }
    }
    operator.show(&plan);
    if runnable_steps(&plan, settings.apply.contabo_only) == 0 {
        return Err(Ok(Reconciled::NothingToDo { plan }));
    }
    match operator.approve(&plan) {
        Ok(true) => Ok(plan),
        Ok(false) => Err(Ok(Reconciled::Cancelled { plan })),
        Err(e) => Err(Err(ReconcileError::Approval(e))),
    }
}

async fn run<W: World>(
    world: &W,
    nodes: &W::Nodes,
    reporter: &dyn Reporter,
    journal: &dyn JournalStore,
    observed: &Observed,
    plan: &Plan,
    settings: &ReconcileSettings,
) -> ApplyOutcome {
    apply::execute(
        world.cloud(),
        nodes,
        reporter,
        journal,
        observed,
        ApplyInput {
            steps: plan.steps.clone(),
        },
        &settings.apply,
    )
    .await
}

/// The observation error of the fresh plan, with its causes, for the
/// summary.
fn error_text(e: &dyn std::error::Error) -> String {
    crate::secret::redact::error_chain(e, ": ")
}

/// True when a plan made after a run's waits holds only work that the
/// approved plan already implied: node steps that are not destructive
/// (joins, labels, taints), and the waits they need. Anything that buys,
/// reinstalls, cancels or removes is left for the operator to see and
/// approve.
pub fn is_follow_up(plan: &Plan, contabo_only: bool) -> bool {
    !contabo_only
        && plan.steps.iter().any(|s| s.kind.is_node_step())
        && plan.steps.iter().all(|s| {
            matches!(s.kind, StepKind::WaitForRunning { .. })
                || (s.kind.is_node_step() && !s.destructive && !is_removal(&s.kind))
        })
}

fn is_removal(kind: &StepKind) -> bool {
    matches!(
        kind,
        StepKind::DrainNode { .. } | StepKind::DeleteNode { .. } | StepKind::DeleteStaleNode { .. }
    )
}
