//! `kiwi-infra apply`: take the inventory's lock, observe, plan (or load a
//! saved plan and check it is still fresh), show the plan, get a `yes`,
//! execute, observe and plan again, and summarise.
//!
//! Exit codes: 0 when everything of the plan is done (with `--contabo-only`:
//! everything on the Contabo side), 2 when something is pending (needs the
//! operator, not carried out by this release, skipped), 3 when a step
//! failed, 1 for the operator's own mistakes (refused confirmation, stale
//! plan, lock held, bad inventory or credentials).
//!
//! Tests and the sandbox shorten the waits with environment variables:
//! `KIWI_APPLY_POLL_MS` (first poll interval), `KIWI_APPLY_STATUS_LIMIT_SECS`
//! (time limit per status), `KIWI_APPLY_UNLISTED_WAIT_MS` (how long to look
//! for an order Contabo may list late), `KIWI_APPLY_START_GRACE_MS`,
//! `KIWI_APPLY_CONCURRENCY` (Contabo steps at once, 8),
//! `KIWI_APPLY_NODE_CONCURRENCY` (node steps at once, 32).

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::args::{ApplyArgs, GlobalArgs};
use super::plan::{load_inventory, observe_all, plan_options};
use super::progress::CliReporter;
use super::{settings, CliError, EXIT_FAILURE, EXIT_USER_ERROR};
use crate::apply::journal::JournalStore;
use crate::apply::summary::{self, FreshPlan, SummaryInput};
use crate::apply::{self, is_node_step, resume, ApplyInput, ApplySettings};
use crate::plan::{self, PlanOptions, RenderOptions, SavedPlan, Step};

/// Exit code when the apply is incomplete but nothing failed.
const EXIT_INCOMPLETE: u8 = 2;

/// `kiwi-infra apply`.
pub(super) async fn run(global: &GlobalArgs, args: &ApplyArgs) -> Result<ExitCode, CliError> {
    let desired = load_inventory(global)?;
    let client = settings::contabo_client(global)?;
    // The lock and the journal live where the inventory's [state] says.
    let state = super::state::take(global, &desired, args.lock_timeout.unwrap_or_default()).await?;
    let result = observe_and_apply(global, args, &desired, &client, &*state.journal).await;
    // However it ended: the lock is given up (a killed apply's lease
    // expires on its own instead).
    state.finish().await;
    result
}

async fn observe_and_apply(
    global: &GlobalArgs,
    args: &ApplyArgs,
    desired: &crate::inventory::Desired,
    client: &crate::contabo::ContaboClient,
    journal: &dyn JournalStore,
) -> Result<ExitCode, CliError> {
    let (observed, nodes) = observe_all(global, client, desired, args.contabo_only).await?;
    let run = Observed {
        desired,
        client,
        journal,
        observed: &observed,
        nodes: &nodes,
    };
    let result = apply_observed(global, args, run).await;
    // However it ended: no SSH master process outlives the run.
    nodes.close().await;
    result
}

/// What `apply` has once the inventory is locked and read, and the world
/// observed.
struct Observed<'a> {
    desired: &'a crate::inventory::Desired,
    client: &'a crate::contabo::ContaboClient,
    journal: &'a dyn JournalStore,
    observed: &'a crate::plan::Observed,
    nodes: &'a super::nodes::Nodes,
}

async fn apply_observed(
    global: &GlobalArgs,
    args: &ApplyArgs,
    run: Observed<'_>,
) -> Result<ExitCode, CliError> {
    let Observed {
        desired,
        client,
        journal,
        observed,
        nodes,
    } = run;
    let options = plan_options(args.choices);
    let reorder = reorder_slots(desired, &args.reorder)?;
    // Host keys are recorded there before each order or reinstall: a file
    // that cannot be replaced is the operator's to fix, before anything is
    // shown or approved, not a failed step half-way through.
    let known_hosts = crate::ssh::KnownHosts::path_in(&global.inventory);
    crate::localfs::check_replaceable(&known_hosts).map_err(|e| CliError::User(e.to_string()))?;
    let plan = match &args.plan_file {
        Some(path) => {
            // A FIFO or a device given as the plan file is refused, not read.
            let text = crate::localfs::read_text_file(path, crate::localfs::SAVED_PLAN_LIMIT)
                .map_err(|e| CliError::User(format!("cannot use the saved plan: {e}")))?;
            let saved = SavedPlan::from_json(&text)
                .map_err(|e| CliError::User(format!("{} is not usable: {e}", path.display())))?;
            // The file is only a promise: the plan carried out (and shown,
            // summary and prices included) is always the one the planner
            // makes now, and the file must name exactly its steps.
            let now = plan::plan(desired, observed, &options);
            saved
                .check_fresh(observed, desired, &now, &options)
                .map_err(|stale| {
                    CliError::User(format!(
                        "refusing to apply {}: {stale}. Nothing was changed",
                        path.display()
                    ))
                })?;
            now
        }
        None => plan::plan(desired, observed, &options),
    };

    // Orders an interrupted apply placed but could not tag (see apply::resume).
    let mut apply_settings = ApplySettings::production(client.trace_id().to_string());
    tune_from_env(&mut apply_settings);
    let horizon = chrono::Duration::from_std(apply_settings.journal_horizon)
        .unwrap_or(chrono::Duration::hours(1));
    let interrupted = resume::interrupted_orders(&journal.entries(), observed, horizon);
    let finishing = if interrupted.is_empty() {
        Vec::new()
    } else {
        let adopt_all = PlanOptions {
            adopt: true,
            ..options
        };
        resume::finishing_steps(
            &plan,
            &plan::plan(desired, observed, &adopt_all),
            &interrupted,
        )
    };
    let mut steps: Vec<Step> = finishing.clone();
    steps.extend(plan.steps.iter().cloned());
    let settle = resume::settle_targets(desired, observed, &interrupted, &steps);

    let color = settings::use_color(global.color);
    let render = RenderOptions {
        color,
        allow_destroy: args.choices.allow_destroy,
    };
    let runnable = steps
        .iter()
        .filter(|s| !(args.contabo_only && is_node_step(&s.kind)))
        .count();
    if !global.quiet || runnable > 0 {
        let mut shown = plan::render_human(&plan, &render);
        if plan.is_empty() && !(settle.is_empty() && interrupted.is_empty()) {
            // Not "matches Contabo": earlier orders are still being set up,
            // and this apply waits for them (said just below).
            shown = shown.replace(
                plan::NO_CHANGES,
                if interrupted.is_empty() {
                    "No new changes; this apply waits for machines of the inventory that are not \
                     running yet (below).\n"
                } else {
                    "No new changes; this apply finishes earlier orders (below).\n"
                },
            );
        }
        print!("{shown}");
    }
    if runnable == 0 && settle.is_empty() {
        // Held-back changes count as changes, as for `plan
        // --detailed-exitcode` (see `Plan::has_changes`): pending, exit 2.
        if plan.warnings.iter().any(plan::Warning::leaves_work) {
            println!("\nNothing was changed; the warnings above say what is held back and why.");
            return Ok(ExitCode::from(EXIT_INCOMPLETE));
        }
        if args.contabo_only && !steps.is_empty() {
            println!(
                "\nNothing to do on the Contabo side ({} node step(s) left for later).",
                steps.len()
            );
        } else {
            println!("\nNothing to do.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    describe_extras(&finishing, &interrupted, &settle, &steps, args.contabo_only);

    if !args.auto_approve && runnable > 0 && !confirmed(&refused_command(global, args))? {
        println!("Apply cancelled; nothing was changed.");
        return Ok(ExitCode::from(EXIT_USER_ERROR));
    }

    apply_settings.contabo_only = args.contabo_only;
    apply_settings.reorder = reorder;
    apply_settings.allow_destroy = args.choices.allow_destroy;
    apply_settings.protected_clusters = desired
        .clusters
        .iter()
        .filter(|c| c.protected)
        .map(|c| c.name.clone())
        .collect();
    apply_settings.known_hosts = Some(known_hosts);
    // One reporter for every round: each node keeps one progress line.
    let reporter = CliReporter::new(global.quiet);
    let input = ApplyInput {
        steps,
        settle,
        ssh_public_key: desired.provider.ssh_public_key.clone(),
    };
    let mut outcome = apply::execute(
        client,
        nodes,
        &reporter,
        journal,
        observed,
        input,
        &apply_settings,
    )
    .await;

    // Finish with a fresh plan that should be empty. Apply's own waits may
    // have made work possible that the first plan could not contain (an
    // instance Contabo held is running now, so it can be joined): that work
    // is done in this run too, a bounded number of times, and only when it
    // is node work that needs no approval beyond the plan's (joins, labels,
    // taints; nothing bought, reinstalled or removed).
    let mut fresh = observe_and_plan(global, client, desired, args.contabo_only, &options).await;
    for _ in 0..FOLLOW_UP_ROUNDS {
        let Ok((fresh_observed, fresh_plan, fresh_nodes)) = &fresh else {
            break;
        };
        if outcome.results.iter().any(|r| r.outcome.is_failure())
            || !is_follow_up(fresh_plan, args.contabo_only)
        {
            break;
        }
        reporter.suspend(|| {
            println!(
                "\nNow that apply's waits are over, {} more step(s) can be carried out:",
                fresh_plan.steps.len()
            );
            print!("{}", plan::render_human(fresh_plan, &render));
        });
        let more = apply::execute(
            client,
            fresh_nodes,
            &reporter,
            journal,
            fresh_observed,
            ApplyInput {
                steps: fresh_plan.steps.clone(),
                settle: Vec::new(),
                ssh_public_key: desired.provider.ssh_public_key.clone(),
            },
            &apply_settings,
        )
        .await;
        fresh_nodes.close().await;
        outcome.merge(more);
        fresh = observe_and_plan(global, client, desired, args.contabo_only, &options).await;
    }
    let fresh = match fresh {
        Ok((_, p, fresh_nodes)) => {
            fresh_nodes.close().await;
            Ok(p)
        }
        Err(e) => Err(e),
    };
    reporter.finish(&summary::node_states(&outcome));
    let fresh_view = match &fresh {
        Ok(p) => FreshPlan::Planned(p),
        Err(e) => FreshPlan::Unavailable(crate::secret::redact::error_chain(e, ": ")),
    };
    let input = SummaryInput {
        outcome: &outcome,
        fresh: fresh_view,
        contabo_only: args.contabo_only,
        apply_command: apply_command(global, args),
        cluster_of: desired
            .slot_names()
            .map(|(cluster, slot)| (slot, cluster.name.clone()))
            .collect(),
    };
    print!("{}", summary::render(&input));
    let failed = outcome.results.iter().any(|r| r.outcome.is_failure());
    Ok(if summary::complete(&input) {
        ExitCode::SUCCESS
    } else if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

/// How many times apply plans again and carries out work its own waits made
/// possible (see [`is_follow_up`]).
const FOLLOW_UP_ROUNDS: usize = 2;

/// Observes again, plans, and keeps the node connections for more work.
async fn observe_and_plan(
    global: &GlobalArgs,
    client: &crate::contabo::ContaboClient,
    desired: &crate::inventory::Desired,
    contabo_only: bool,
    options: &PlanOptions,
) -> Result<
    (
        crate::plan::Observed,
        crate::plan::Plan,
        super::nodes::Nodes,
    ),
    CliError,
> {
    let (observed, nodes) = observe_all(global, client, desired, contabo_only).await?;
    let plan = plan::plan(desired, &observed, options);
    Ok((observed, plan, nodes))
}

/// True when a plan made after apply's waits holds only work that the
/// approved plan already implied: node steps that are not destructive
/// (joins, labels, taints). Anything that buys, reinstalls, cancels or
/// removes is left for the operator to see and approve.
fn is_follow_up(plan: &crate::plan::Plan, contabo_only: bool) -> bool {
    !contabo_only
        && !plan.steps.is_empty()
        && plan
            .steps
            .iter()
            .all(|s| is_node_step(&s.kind) && !s.destructive && !is_removal(&s.kind))
}

fn is_removal(kind: &plan::StepKind) -> bool {
    matches!(
        kind,
        plan::StepKind::DrainNode { .. }
            | plan::StepKind::DeleteNode { .. }
            | plan::StepKind::DeleteStaleNode { .. }
    )
}

/// Says what apply does beyond the plan shown.
fn describe_extras(
    finishing: &[Step],
    interrupted: &BTreeSet<String>,
    settle: &[apply::SettleTarget],
    steps: &[Step],
    contabo_only: bool,
) {
    if !interrupted.is_empty() {
        println!(
            "\nAlso finishes {} order(s) of an interrupted apply (recorded in the order journal): \
             {} tag assignment(s) for {}",
            interrupted.len(),
            finishing
                .iter()
                .filter(|s| matches!(s.kind, plan::StepKind::AssignTag { .. }))
                .count(),
            crate::text::escape_for_terminal(
                &interrupted.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        );
    }
    if !settle.is_empty() {
        println!(
            "\nWaits for {} instance(s) not running yet: {}",
            settle.len(),
            crate::text::escape_for_terminal(
                &settle
                    .iter()
                    .map(|t| t.slot.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
    }
    let deferred = steps.iter().filter(|s| is_node_step(&s.kind)).count();
    if contabo_only && deferred > 0 {
        println!("\n--contabo-only: {deferred} node step(s) are left for a later apply.");
    }
}

/// The slots `--reorder` names, each one of the inventory's slot names.
fn reorder_slots(
    desired: &crate::inventory::Desired,
    named: &[String],
) -> Result<BTreeSet<String>, CliError> {
    let slots: BTreeSet<String> = desired.slot_names().map(|(_, name)| name).collect();
    for name in named {
        if !slots.contains(name) {
            return Err(CliError::User(format!(
                "--reorder {}: not a slot of this inventory; expected a node slot name such as \
                 `kiwi-<customer>-<pool>-01`, as apply's \"needs you\" line names it. Nothing was \
                 changed",
                crate::text::escape_for_terminal(name)
            )));
        }
    }
    Ok(named.iter().cloned().collect())
}

/// The command the operator typed, with `--auto-approve`: what the
/// refusal without a terminal suggests (their flags kept, or following it
/// would do something else than they asked).
fn refused_command(global: &GlobalArgs, args: &ApplyArgs) -> String {
    let mut command = apply_command(global, args);
    if let Some(file) = &args.plan_file {
        command = command.replacen(
            "kiwi-infra apply",
            &format!(
                "kiwi-infra apply {}",
                crate::text::escape_for_terminal(&file.display().to_string())
            ),
            1,
        );
    }
    for slot in &args.reorder {
        command.push_str(&format!(" --reorder {slot}"));
    }
    if let Some(wait) = args.lock_timeout {
        command.push_str(&format!(" --lock-timeout {}s", wait.as_secs()));
    }
    command
}

/// Asks for `yes` on a terminal; refuses without one, naming `command`
/// (the one typed, with `--auto-approve`).
fn confirmed(command: &str) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::User(format!(
            "refusing to apply without confirmation: stdin is not a terminal. Review the plan \
             above (or save it with `kiwi-infra plan --out FILE` and apply that file), then run \
             `{command}`. Nothing was ordered"
        )));
    }
    print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Internal(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == "yes")
}

/// The command that applies this inventory again.
fn apply_command(global: &GlobalArgs, args: &ApplyArgs) -> String {
    let mut command = "kiwi-infra apply".to_string();
    if global.inventory != std::path::Path::new("inventory") {
        command.push_str(&format!(" --inventory {}", global.inventory.display()));
    }
    if args.contabo_only {
        command.push_str(" --contabo-only");
    }
    if args.choices.adopt {
        command.push_str(" --adopt");
    }
    if args.choices.allow_destroy {
        command.push_str(" --allow-destroy");
    }
    // A command the operator can run as given: without a terminal, apply
    // refuses to ask, so the suggestion carries the approval this run had.
    if args.auto_approve || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        command.push_str(" --auto-approve");
    }
    command
}

/// Shorter waits for tests and the sandbox (see the module docs). The
/// values are checked and clamped in [`settings`].
fn tune_from_env(s: &mut ApplySettings) {
    if let Some(poll) = settings::env_millis("KIWI_APPLY_POLL_MS") {
        s.wait.poll_min = poll;
        s.wait.poll_max = poll.saturating_mul(5);
    }
    if let Some(limit) = settings::env_secs("KIWI_APPLY_STATUS_LIMIT_SECS") {
        s.wait.provisioning_limit = limit;
        s.wait.installing_limit = limit;
        s.wait.other_limit = limit;
    }
    if let Some(wait) = settings::env_millis("KIWI_APPLY_UNLISTED_WAIT_MS") {
        s.unlisted_order_wait = wait;
    }
    if let Some(grace) = settings::env_millis("KIWI_APPLY_START_GRACE_MS") {
        s.wait.start_grace = grace;
    }
    if let Some(n) = settings::env_concurrency("KIWI_APPLY_CONCURRENCY") {
        s.concurrency = n;
    }
    if let Some(n) = settings::env_concurrency("KIWI_APPLY_NODE_CONCURRENCY") {
        s.node_concurrency = n;
    }
}
