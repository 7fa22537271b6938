//! One apply per inventory at a time, as `apply` uses it. The lock lives in
//! `crate::state` (who holds it and the [`HeldLock`] seam in `state::lock`,
//! the local file lock in `state::local`, the Core cluster's Lease in
//! `state::lease`); these re-exports keep the paths `apply` and its callers
//! have always used.

pub use crate::state::local::{state_dir, ApplyLock, STATE_DIR};
pub use crate::state::lock::{HeldLock, Holder};
