//! `kiwi-infra validate` and `kiwi-infra plan`: read the inventory, observe
//! Contabo, plan, render.

use std::process::ExitCode;

use super::args::{GlobalArgs, PlanArgs, PlanChoices};
use super::{nodes, settings, CliError};
use crate::contabo::ContaboClient;
use crate::inventory::{self, Desired};
use crate::observe::contabo::{complete_observation, observe_account};
use crate::plan::{self, Observed, Plan, PlanOptions, RenderOptions, SavedPlan};

/// Exit code of `plan --detailed-exitcode` when there are changes.
const EXIT_CHANGES: u8 = 2;

/// Loads and validates the inventory, turning diagnostics into a user error.
pub(super) fn load_inventory(global: &GlobalArgs) -> Result<Desired, CliError> {
    inventory::load(&global.inventory).map_err(CliError::Inventory)
}

/// `kiwi-infra validate`.
pub(super) fn validate(global: &GlobalArgs) -> Result<(), CliError> {
    let desired = load_inventory(global)?;
    // What apply will hand to ssh: a path it would misread fails here, not
    // half-way through an apply.
    nodes::ssh_settings(global)?;
    let nodes: usize = desired
        .clusters
        .iter()
        .flat_map(|c| &c.pools)
        .map(|p| p.count as usize)
        .sum();
    if let Some(what) = crate::firewall::open_to_anyone_because(&desired.provider.operator_networks)
    {
        eprintln!(
            "warning: {what} in {}: every node's firewall leaves SSH and the \
             Kubernetes API open to the internet; name the networks you administer from to close \
             them",
            global.inventory.join(inventory::MAIN_FILE).display()
        );
    }
    if let Some(covered) = desired.provider.operators_wide() {
        eprintln!(
            "warning: operator_networks in {} cover {covered}: every node's firewall admits SSH \
             and the Kubernetes API from a very large part of the internet; name the networks \
             you administer from",
            global.inventory.join(inventory::MAIN_FILE).display()
        );
    }
    println!(
        "{}: valid ({} customers, {} clusters, {} node slots)",
        global.inventory.display(),
        desired.customers.len(),
        desired.clusters.len(),
        nodes
    );
    Ok(())
}

/// Everything a plan is made from, observed at one moment.
#[derive(Debug)]
pub(super) struct Planned {
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
}

/// The CLI's world: the Contabo API of the flags, the nodes over SSH.
pub(super) struct CliWorld<'a> {
    pub global: &'a GlobalArgs,
    pub client: &'a ContaboClient,
    pub desired: &'a Desired,
    pub contabo_only: bool,
}

impl crate::reconcile::World for CliWorld<'_> {
    type Cloud = ContaboClient;
    type Nodes = super::nodes::Nodes;
    type Error = CliError;

    fn cloud(&self) -> &ContaboClient {
        self.client
    }

    async fn observe(
        &self,
        entries: &[crate::apply::journal::Entry],
    ) -> Result<(crate::plan::Observed, Self::Nodes), CliError> {
        observe_all(
            self.global,
            self.client,
            self.desired,
            self.contabo_only,
            entries,
        )
        .await
    }

    async fn close(&self, nodes: Self::Nodes) {
        // No SSH master process outlives its observation.
        nodes.close().await;
    }
}

/// Reads the inventory, observes Contabo (and, unless `contabo_only`, every
/// cluster over SSH) and plans, as every reconcile begins
/// (`crate::reconcile::observe_and_plan`).
pub(super) async fn observe_and_plan(
    global: &GlobalArgs,
    choices: PlanChoices,
    contabo_only: bool,
) -> Result<Planned, CliError> {
    let desired = load_inventory(global)?;
    let client = settings::contabo_client(global)?;
    let entries = super::state::journal_entries(global, &desired).await?;
    let world = CliWorld {
        global,
        client: &client,
        desired: &desired,
        contabo_only,
    };
    let (observed, plan, nodes) =
        crate::reconcile::observe_and_plan(&desired, &plan_options(choices), &world, &entries)
            .await?;
    crate::reconcile::World::close(&world, nodes).await;
    Ok(Planned {
        desired,
        observed,
        plan,
    })
}

/// Observes Contabo only, with what the order journal `entries` record as
/// kiwi-infra's own orders (see `apply::resume::record_journal_claims`).
pub(super) async fn observe(
    client: &ContaboClient,
    desired: &Desired,
    entries: &[crate::apply::journal::Entry],
) -> Result<Observed, CliError> {
    let mut observed = observe_account(client, desired).await?.into_observed();
    crate::apply::resume::record_journal_claims(entries, &mut observed);
    Ok(observed)
}

/// Observes Contabo and, unless `contabo_only`, every cluster; returns the
/// node executor that knows the nodes' addresses, for apply to reuse.
pub(super) async fn observe_all(
    global: &GlobalArgs,
    client: &ContaboClient,
    desired: &Desired,
    contabo_only: bool,
    entries: &[crate::apply::journal::Entry],
) -> Result<(Observed, nodes::Nodes), CliError> {
    let mut observed = observe(client, desired, entries).await?;
    let executor = nodes::executor(global, desired, &observed)?;
    if !contabo_only {
        nodes::observe_nodes(&executor, desired, &mut observed).await;
    }
    // What the clusters showed decides which machines the plan would
    // reinstall or join (their cluster tags are read before it does), and
    // whether it orders (then the secrets and the image are read).
    complete_observation(client, desired, &mut observed).await?;
    Ok((observed, executor))
}

pub(super) fn plan_options(choices: PlanChoices) -> PlanOptions {
    PlanOptions {
        adopt: choices.adopt,
        allow_destroy: choices.allow_destroy,
    }
}

/// `kiwi-infra plan`.
pub(super) async fn run(global: &GlobalArgs, args: &PlanArgs) -> Result<ExitCode, CliError> {
    let result = plan_and_print(global, args).await;
    match result {
        Ok(has_changes) if args.detailed_exitcode && has_changes => {
            Ok(ExitCode::from(EXIT_CHANGES))
        }
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) if args.detailed_exitcode => {
            // The documented contract of --detailed-exitcode: any error is 1.
            super::report(&e);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

async fn plan_and_print(global: &GlobalArgs, args: &PlanArgs) -> Result<bool, CliError> {
    // A target that is not a regular file is refused before any work.
    if let Some(path) = &args.out {
        crate::localfs::check_replaceable(path).map_err(|e| plan_not_saved(&e))?;
    }
    let planned = observe_and_plan(global, args.choices, args.contabo_only).await?;
    if let Some(path) = &args.out {
        let saved = SavedPlan::new(
            &planned.desired,
            &planned.observed,
            planned.plan.clone(),
            plan_options(args.choices),
        );
        write_new_file(path, &saved.to_json())?;
    }
    if args.json {
        let json = serde_json::to_string_pretty(&plan::render_json(&planned.plan))
            .map_err(|e| CliError::Internal(format!("cannot encode the plan as JSON: {e}")))?;
        println!("{}", crate::text::json_for_terminal(&json));
    } else {
        let options = RenderOptions {
            color: settings::use_color(global.color),
            allow_destroy: args.choices.allow_destroy,
        };
        print!("{}", plan::render_human(&planned.plan, &options));
        if let Some(path) = &args.out {
            println!(
                "\nSaved this plan to {0}. Apply exactly it with: kiwi-infra apply {0}",
                path.display()
            );
        }
    }
    // Held-back changes count: see `Plan::has_changes`.
    Ok(planned.plan.has_changes())
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// crash never leaves half a plan behind, a file planted at a temporary
/// name is never written through, and a `path` that is not a regular file
/// (`/dev/null`, a FIFO, a symbolic link) is refused, never replaced: see
/// [`crate::localfs::replace_file`].
fn write_new_file(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    crate::localfs::replace_file(path, text.as_bytes(), 0o644).map_err(|e| plan_not_saved(&e))
}

fn plan_not_saved(e: &crate::localfs::LocalFileError) -> CliError {
    CliError::User(format!("the plan cannot be saved: {e}"))
}
