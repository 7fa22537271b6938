//! `kiwi-infra apply`: take the inventory's lock, run the one reconcile
//! path (`crate::reconcile`: observe, plan or check a saved plan, show,
//! approve, execute, observe and plan again) with the terminal as the
//! operator, and summarise.
//!
//! Exit codes: 0 when everything of the plan is done (with `--contabo-only`:
//! everything on the Contabo side), 2 when something is pending (needs the
//! operator, not carried out by this release, skipped), 3 when a step
//! failed, 1 for the operator's own mistakes (refused confirmation, stale
//! plan, lock held, bad inventory or credentials).
//!
//! How many steps run at once and how long apply waits come from its flags
//! (`--concurrency`, `--node-concurrency`, `--status-timeout`,
//! `--unlisted-order-wait`), their environment fallbacks and the test-only
//! `KIWI_INTERNAL_*` timings, all declared in [`crate::settings`].

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::args::{ApplyArgs, GlobalArgs};
use super::plan::{load_inventory, plan_options, CliWorld};
use super::progress::CliReporter;
use super::{settings, CliError, EXIT_FAILURE, EXIT_USER_ERROR};
use crate::apply::journal::JournalStore;
use crate::apply::summary::{self, FreshPlan, SummaryInput};
use crate::apply::ApplySettings;
use crate::contabo::ContaboClient;
use crate::inventory::Desired;
use crate::plan::{self, Plan, RenderOptions, SavedPlan};
use crate::reconcile::{self, reconcile, Operator, ReconcileError, ReconcileSettings, Reconciled};

/// Exit code when the apply is incomplete but nothing failed.
const EXIT_INCOMPLETE: u8 = 2;

/// `kiwi-infra apply`.
pub(super) async fn run(global: &GlobalArgs, args: &ApplyArgs) -> Result<ExitCode, CliError> {
    let desired = load_inventory(global)?;
    let client = settings::contabo_client(global)?;
    // The lock and the journal live where the inventory's [state] says.
    let state = super::state::take(global, &desired, args.lock_timeout.unwrap_or_default()).await?;
    let result = apply(global, args, &desired, &client, &*state.journal).await;
    // However it ended: the lock is given up (a killed apply's lease
    // expires on its own instead).
    state.finish().await;
    result
}

/// The operator at the terminal: plans are printed, approval is `yes`.
struct CliOperator<'a> {
    global: &'a GlobalArgs,
    args: &'a ApplyArgs,
    render: RenderOptions,
    reporter: &'a CliReporter,
}

impl Operator<CliError> for CliOperator<'_> {
    fn show(&self, plan: &Plan) {
        let runnable = reconcile::runnable_steps(plan, self.args.contabo_only);
        if !self.global.quiet || runnable > 0 {
            print!("{}", plan::render_human(plan, &self.render));
        }
        let deferred = plan.steps.iter().filter(|s| s.kind.is_node_step()).count();
        if runnable > 0 && self.args.contabo_only && deferred > 0 {
            println!("\n--contabo-only: {deferred} node step(s) are left for a later apply.");
        }
    }

    fn approve(&self, _plan: &Plan) -> Result<bool, CliError> {
        if self.args.auto_approve {
            return Ok(true);
        }
        confirmed(&refused_command(self.global, self.args))
    }

    fn follow_up(&self, plan: &Plan) {
        self.reporter.suspend(|| {
            println!(
                "\nNow that apply's waits are over, {} more step(s) can be carried out:",
                plan.steps.len()
            );
            print!("{}", plan::render_human(plan, &self.render));
        });
    }
}

async fn apply(
    global: &GlobalArgs,
    args: &ApplyArgs,
    desired: &Desired,
    client: &ContaboClient,
    journal: &dyn JournalStore,
) -> Result<ExitCode, CliError> {
    let reorder = reorder_slots(desired, &args.reorder)?;
    // Host keys are recorded there before each order or reinstall: a file
    // that cannot be replaced is the operator's to fix, before anything is
    // shown or approved, not a failed step half-way through.
    let known_hosts = crate::ssh::KnownHosts::path_in(&global.inventory);
    crate::localfs::check_replaceable(&known_hosts).map_err(|e| CliError::User(e.to_string()))?;
    let saved = match &args.plan_file {
        Some(path) => {
            // A FIFO or a device given as the plan file is refused, not read.
            let text = crate::localfs::read_text_file(path, crate::localfs::SAVED_PLAN_LIMIT)
                .map_err(|e| CliError::User(format!("cannot use the saved plan: {e}")))?;
            Some(
                SavedPlan::from_json(&text).map_err(|e| {
                    CliError::User(format!("{} is not usable: {e}", path.display()))
                })?,
            )
        }
        None => None,
    };
    let mut apply_settings = ApplySettings::production(client.trace_id().to_string());
    settings::apply_knobs(&args.tuning)?.tune(&mut apply_settings);
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
    apply_settings.ssh_public_key = desired.provider.ssh_public_key.clone();
    let settings = ReconcileSettings {
        plan: plan_options(args.choices),
        apply: apply_settings,
        saved,
    };
    let world = CliWorld {
        global,
        client,
        desired,
        contabo_only: args.contabo_only,
    };
    // One reporter for every round: each node keeps one progress line.
    let reporter = CliReporter::new(global.quiet);
    let operator = CliOperator {
        global,
        args,
        render: RenderOptions {
            color: settings::use_color(global.color),
            allow_destroy: args.choices.allow_destroy,
        },
        reporter: &reporter,
    };
    let reconciled = reconcile(desired, &settings, &world, journal, &reporter, &operator)
        .await
        .map_err(|e| match e {
            ReconcileError::Observe(e) | ReconcileError::Approval(e) => e,
            ReconcileError::Stale(stale) => CliError::User(format!(
                "refusing to apply {}: {stale}. Nothing was changed",
                args.plan_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )),
        })?;
    match reconciled {
        Reconciled::NothingToDo { plan } => {
            // Held-back changes count as changes, as for `plan
            // --detailed-exitcode` (see `Plan::has_changes`): pending, exit 2.
            if plan.warnings.iter().any(plan::Warning::leaves_work) {
                println!(
                    "\nNothing was changed; the warnings above say what is held back and why."
                );
                return Ok(ExitCode::from(EXIT_INCOMPLETE));
            }
            if args.contabo_only && !plan.steps.is_empty() {
                println!(
                    "\nNothing to do on the Contabo side ({} node step(s) left for later).",
                    plan.steps.len()
                );
            } else {
                println!("\nNothing to do.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Reconciled::Cancelled { .. } => {
            println!("Apply cancelled; nothing was changed.");
            Ok(ExitCode::from(EXIT_USER_ERROR))
        }
        Reconciled::Applied { outcome, fresh, .. } => {
            reporter.finish(&summary::node_states(&outcome));
            let fresh_view = match &fresh {
                Ok(p) => FreshPlan::Planned(p),
                Err(e) => FreshPlan::Unavailable(e.clone()),
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
