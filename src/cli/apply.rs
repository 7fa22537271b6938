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
use std::time::Duration;

use super::args::{ApplyArgs, GlobalArgs};
use super::plan::{load_inventory, observe_all, plan_options};
use super::progress::CliReporter;
use super::{settings, CliError, EXIT_FAILURE, EXIT_USER_ERROR};
use crate::apply::summary::{self, FreshPlan, SummaryInput};
use crate::apply::{
    self, is_node_step, resume, ApplyError, ApplyInput, ApplyLock, ApplySettings, OrderJournal,
};
use crate::plan::{self, PlanOptions, RenderOptions, SavedPlan, Step};

/// Exit code when the apply is incomplete but nothing failed.
const EXIT_INCOMPLETE: u8 = 2;

/// `kiwi-infra apply`.
pub(super) async fn run(global: &GlobalArgs, args: &ApplyArgs) -> Result<ExitCode, CliError> {
    let desired = load_inventory(global)?;
    let client = settings::contabo_client(global)?;
    let _lock = ApplyLock::acquire(&global.inventory).map_err(apply_error)?;
    let journal = OrderJournal::open(&global.inventory).map_err(apply_error)?;

    let (observed, nodes) = observe_all(global, &client, &desired, args.contabo_only).await?;
    let run = Observed {
        desired: &desired,
        client: &client,
        journal: &journal,
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
    journal: &'a OrderJournal,
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
    let plan = match &args.plan_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::User(format!(
                    "cannot read the saved plan {}: {e}",
                    path.display()
                ))
            })?;
            let saved = SavedPlan::from_json(&text)
                .map_err(|e| CliError::User(format!("{} is not usable: {e}", path.display())))?;
            saved.check_fresh(observed, desired).map_err(|stale| {
                CliError::User(format!(
                    "refusing to apply {}: {stale}. Nothing was changed",
                    path.display()
                ))
            })?;
            saved.plan
        }
        None => plan::plan(desired, observed, &options),
    };

    // Orders an interrupted apply placed but could not tag (see apply::resume).
    let interrupted = resume::interrupted_orders(&journal.entries(), observed);
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
        print!("{}", plan::render_human(&plan, &render));
    }
    if runnable == 0 && settle.is_empty() {
        if plan.warnings.iter().any(plan::Warning::holds_back) {
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

    if !args.auto_approve && runnable > 0 && !confirmed()? {
        println!("Apply cancelled; nothing was changed.");
        return Ok(ExitCode::from(EXIT_USER_ERROR));
    }

    let mut apply_settings = ApplySettings::production(client.trace_id().to_string());
    apply_settings.contabo_only = args.contabo_only;
    apply_settings.allow_destroy = args.choices.allow_destroy;
    apply_settings.protected_clusters = desired
        .clusters
        .iter()
        .filter(|c| c.protected)
        .map(|c| c.name.clone())
        .collect();
    apply_settings.known_hosts = Some(crate::ssh::KnownHosts::path_in(&global.inventory));
    tune_from_env(&mut apply_settings);
    let reporter = CliReporter::new(global.quiet);
    let input = ApplyInput {
        steps,
        settle,
        ssh_public_key: desired.provider.ssh_public_key.clone(),
    };
    let outcome = apply::execute(
        client,
        nodes,
        &reporter,
        journal,
        observed,
        input,
        &apply_settings,
    )
    .await;
    reporter.finish();

    // Finish with a fresh plan that should be empty.
    let fresh = match observe_all(global, client, desired, args.contabo_only).await {
        Ok((o, fresh_nodes)) => {
            fresh_nodes.close().await;
            Ok(plan::plan(desired, &o, &options))
        }
        Err(e) => Err(e),
    };
    let fresh_view = match &fresh {
        Ok(p) => FreshPlan::Planned(p),
        Err(e) => FreshPlan::Unavailable(crate::text::error_chain(e, ": ")),
    };
    let input = SummaryInput {
        outcome: &outcome,
        fresh: fresh_view,
        contabo_only: args.contabo_only,
        apply_command: apply_command(global, args),
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

fn apply_error(e: ApplyError) -> CliError {
    match e {
        ApplyError::LockHeld { .. } => CliError::User(e.to_string()),
        other => CliError::Internal(other.chain()),
    }
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

/// Asks for `yes` on a terminal; refuses without one.
fn confirmed() -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::User(
            "refusing to apply without confirmation: stdin is not a terminal. Review the plan \
             above (or save it with `kiwi-infra plan --out FILE`), then run \
             `kiwi-infra apply --auto-approve` (or `kiwi-infra apply FILE`). Nothing was ordered"
                .into(),
        ));
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
    command
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Shorter waits for tests and the sandbox (see the module docs).
fn tune_from_env(s: &mut ApplySettings) {
    if let Some(ms) = env_number("KIWI_APPLY_POLL_MS") {
        s.wait.poll_min = Duration::from_millis(ms);
        s.wait.poll_max = Duration::from_millis(ms.saturating_mul(5));
    }
    if let Some(secs) = env_number("KIWI_APPLY_STATUS_LIMIT_SECS") {
        let limit = Duration::from_secs(secs);
        s.wait.provisioning_limit = limit;
        s.wait.installing_limit = limit;
        s.wait.other_limit = limit;
    }
    if let Some(ms) = env_number("KIWI_APPLY_UNLISTED_WAIT_MS") {
        s.unlisted_order_wait = Duration::from_millis(ms);
    }
    if let Some(ms) = env_number("KIWI_APPLY_START_GRACE_MS") {
        s.wait.start_grace = Duration::from_millis(ms);
    }
    if let Some(n) = env_number("KIWI_APPLY_CONCURRENCY") {
        s.concurrency = usize::try_from(n).unwrap_or(8).max(1);
    }
    if let Some(n) = env_number("KIWI_APPLY_NODE_CONCURRENCY") {
        s.node_concurrency = usize::try_from(n).unwrap_or(32).max(1);
    }
}
