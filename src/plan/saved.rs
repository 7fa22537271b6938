//! Saved plans (`plan --out FILE`): the steps, plus digests of the inventory
//! and of what was observed, so that applying the file later can re-observe
//! and refuse a plan the world has moved away from. A saved plan holds no
//! secret: steps name secrets and templates, never their contents.

use super::observed::Observed;
use super::planner::PlanOptions;
use super::steps::Plan;
use crate::inventory::Desired;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the saved-plan file format. 5: the observed fingerprint
/// covers each node's whole firewall table (sets, chains, rules: the
/// `ruleset` of a present firewall) instead of the input chain's policy and
/// rule count, and firewall steps name their drift by rule; a version 4
/// file's fingerprint and drift lines can never match, so it is refused by
/// its version rather than as "changed".
pub const SAVED_PLAN_FORMAT_VERSION: u32 = 5;

/// A sha256 over what the planner reads from the observed state, in a
/// canonical order (instances by id, nodes by name, taints sorted), so the
/// order the API lists things in does not matter. Node readiness and IP
/// addresses are left out: the planner does not read readiness, and an
/// address matters only where it is a peer of the firewall an order or
/// reinstall carries, which the comparison of the steps themselves catches
/// (so a changed address makes only a plan it affects stale).
pub fn fingerprint(observed: &Observed) -> String {
    let mut canonical = observed.clone();
    canonical.instances.sort_by_key(|a| a.id);
    for instance in &mut canonical.instances {
        instance.ipv4 = None;
    }
    for cluster in canonical.clusters.values_mut().flatten() {
        cluster.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for node in &mut cluster.nodes {
            node.ready = false;
            node.taints.sort();
        }
    }
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

/// Where two step lists first differ, in words; `None` when identical.
fn first_difference(saved: &[super::Step], now: &[super::Step]) -> Option<String> {
    for (i, (a, b)) in saved.iter().zip(now).enumerate() {
        if a != b {
            return Some(if a.id == b.id {
                format!("step {} ({}) differs", i + 1, b.id)
            } else {
                format!("step {} is {} in the file, {} today", i + 1, a.id, b.id)
            });
        }
    }
    match saved.len().cmp(&now.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(format!(
            "the file lacks step {} ({})",
            saved.len() + 1,
            now[saved.len()].id
        )),
        std::cmp::Ordering::Greater => Some(format!(
            "the file has an extra step {} ({})",
            now.len() + 1,
            saved[now.len()].id
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A plan saved to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// [`SAVED_PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// `kiwi-infra <version>`.
    pub created_by: String,
    /// [`Desired::digest`] of the inventory it was planned from.
    pub inventory_digest: String,
    /// [`fingerprint`] of what was observed.
    pub observed_fingerprint: String,
    /// The flags it was planned with (`--adopt`, `--allow-destroy`): it is
    /// applied only with the same ones, so a plan reviewed with destructive
    /// steps held back is never carried out with them.
    pub options: PlanOptions,
    /// The plan.
    pub plan: Plan,
}

/// Why a saved plan can no longer be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The file was written by an incompatible version.
    #[error("saved plan has format version {found}, this kiwi-infra reads version {expected}; run `kiwi-infra plan` again")]
    FormatVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// `apply` was given other flags than `plan --out`.
    #[error(
        "it was made with --adopt {saved_adopt} and --allow-destroy {saved_destroy}, and is being \
         applied with --adopt {adopt} and --allow-destroy {destroy}; apply it with the flags it \
         was planned with, or run `kiwi-infra plan --out FILE` again with the new ones"
    )]
    FlagsDiffer {
        /// `--adopt` when planned.
        saved_adopt: bool,
        /// `--allow-destroy` when planned.
        saved_destroy: bool,
        /// `--adopt` now.
        adopt: bool,
        /// `--allow-destroy` now.
        destroy: bool,
    },
    /// The inventory changed since the plan was made.
    #[error("the inventory changed since this plan was made; run `kiwi-infra plan` again")]
    InventoryChanged,
    /// The file's steps are not the steps the planner makes now from the
    /// same inventory and observation: it was edited, or made by another
    /// build or with other flags.
    #[error(
        "its steps are not the plan the inventory gives today ({difference}); it was edited, or \
         made by another kiwi-infra. Run `kiwi-infra plan --out FILE` again"
    )]
    StepsDiffer {
        /// The first difference, e.g. `step 3 (order:kiwi-a-server-01) differs`.
        difference: String,
    },
    /// Contabo or a cluster changed since the plan was made.
    #[error(
        "Contabo or a cluster changed since this plan was made (or it was made with a \
         different --contabo-only); run `kiwi-infra plan` again"
    )]
    ObservedChanged,
}

/// A saved plan file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// Not JSON of the expected shape.
    #[error("not a kiwi-infra saved plan")]
    Malformed(#[source] serde_json::Error),
}

impl SavedPlan {
    /// Wraps a plan with the digests of what it was made from.
    pub fn new(desired: &Desired, observed: &Observed, plan: Plan, options: PlanOptions) -> Self {
        SavedPlan {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            created_by: format!("kiwi-infra {}", env!("CARGO_PKG_VERSION")),
            inventory_digest: desired.digest(),
            observed_fingerprint: fingerprint(observed),
            options,
            plan,
        }
    }

    /// The file's contents: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a saved plan file's contents.
    pub fn from_json(text: &str) -> Result<Self, SavedPlanError> {
        serde_json::from_str(text).map_err(SavedPlanError::Malformed)
    }

    /// Refuses a plan made from another inventory or another observed state,
    /// or whose steps are not exactly `now`'s: the plan the planner makes
    /// from today's inventory and observation. Nothing in the file is
    /// trusted beyond that comparison.
    pub fn check_fresh(
        &self,
        observed: &Observed,
        desired: &Desired,
        now: &Plan,
        options: &PlanOptions,
    ) -> Result<(), Stale> {
        if self.format_version != SAVED_PLAN_FORMAT_VERSION {
            return Err(Stale::FormatVersion {
                found: self.format_version,
                expected: SAVED_PLAN_FORMAT_VERSION,
            });
        }
        if self.options != *options {
            return Err(Stale::FlagsDiffer {
                saved_adopt: self.options.adopt,
                saved_destroy: self.options.allow_destroy,
                adopt: options.adopt,
                destroy: options.allow_destroy,
            });
        }
        if self.inventory_digest != desired.digest() {
            return Err(Stale::InventoryChanged);
        }
        if self.observed_fingerprint != fingerprint(observed) {
            return Err(Stale::ObservedChanged);
        }
        match first_difference(&self.plan.steps, &now.steps) {
            Some(difference) => Err(Stale::StepsDiffer { difference }),
            None => Ok(()),
        }
    }
}
