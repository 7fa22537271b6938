//! The inventory: what KiwiStack wants to exist at Contabo, written by the
//! operator as TOML under `inventory/` (`kiwi.toml` plus one file per customer
//! in `customers/`), read and validated without any network access.
//!
//! [`load`] returns either the [`Desired`] state the planner works from, or
//! every error of every file at once, each with file, line and column.

mod diagnostics;
mod files;
pub mod kube;
mod load;
mod model;
pub mod products;
pub mod schema;
pub mod text;
mod validate;
pub mod values;

pub use diagnostics::{Diagnostic, Diagnostics, Position};
pub use kube::{Taint, TaintEffect};
pub use load::{CUSTOMERS_DIR, MAIN_FILE};
pub use model::{
    slot_name, slot_pool, ClusterKind, ClusterSpec, ControlPlaneNode, Customer, Desired, Money,
    PoolRole, PoolSpec, Provider, StateAccess, StateBackend, StateSettings, Tier, CORE_CLUSTER,
    DEFAULT_LEASE_SECONDS, PRIVATE_NETWORKING_PRICE_KEY, SERVER_POOL,
};
pub use products::{NodeClass, Product};
pub use values::{ApiEndpoint, Host, K3sVersion, KubernetesVersion};

use std::path::Path;

/// Reads and validates the inventory in `dir` (the folder holding
/// `kiwi.toml`). On failure, every error found in every file is returned;
/// display the [`Diagnostics`] to print one per line.
pub fn load(dir: &Path) -> Result<Desired, Diagnostics> {
    let mut errors = diagnostics::Collector::default();
    let raw = load::read_inventory(dir, &mut errors);
    let desired = validate::validate(dir, raw, &mut errors);
    match desired {
        Some(desired) if !errors.has_errors() => Ok(desired),
        _ => Err(errors.finish()),
    }
}
