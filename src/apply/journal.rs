//! The order journal as `apply` uses it. It lives in `crate::state` (the
//! entries and the [`JournalStore`] seam in `state::orders`, the local file
//! in `state::local`, the Core cluster's copy in `state::journal`); these
//! re-exports keep the paths `apply` and its callers have always used.

pub use crate::state::local::{local_entries, OrderJournal};
pub use crate::state::orders::{parse_entries, placed_by_slot_in, Entry, Event, JournalStore};
