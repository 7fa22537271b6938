//! The order journal's entries and its seam.
//!
//! Contabo has no idempotency key, and a new order may take a while to show
//! up in its instance list. So before every order kiwi-infra writes (and
//! makes durable) an `intent` line, and after it a `placed` line with the
//! instance id. A later run that finds an `intent` for a slot whose instance
//! Contabo does not list yet knows an order may be on its way, and waits and
//! looks again before ordering; and an instance carrying a slot's name but
//! no ownership tag is recognised as this tool's own, interrupted before it
//! could tag it. Lines hold names, ids and times only, never user data or
//! credentials.
//!
//! Where the lines are kept is behind [`JournalStore`]: the local file
//! (`super::local::OrderJournal`) or the Core cluster
//! (`super::journal::ClusterJournal`). Both read the same text format
//! ([`parse_entries`]).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;

/// Where the order journal is kept: the local file ((`super::local::OrderJournal`)) or
/// the Core cluster (`super::ClusterJournal`), as the inventory's
/// `[state]` table says. The executor records through this seam, so an
/// order's intent lands in whichever journal every later run will read.
pub trait JournalStore: Send + Sync {
    /// Every entry, oldest first (as read at open, plus what this run wrote).
    fn entries(&self) -> Vec<Entry>;

    /// Appends an entry; returns once it is durable (fsynced, or stored by
    /// the cluster's API). An error means it may not be: the caller must
    /// not act as if it were recorded.
    fn record<'a>(
        &'a self,
        slot: &'a str,
        event: Event,
    ) -> futures::future::BoxFuture<'a, Result<(), StateError>>;

    /// The file or object, for messages.
    fn location(&self) -> &Path;

    /// `Some(why)` once the apply lock this journal writes under is no
    /// longer certainly held (a Core-cluster lease that was taken over or
    /// not renewed in time). The local file's OS lock cannot be lost.
    fn lock_lost(&self) -> Option<String> {
        None
    }

    /// The last entry of each slot.
    fn latest(&self) -> BTreeMap<String, Entry> {
        latest(self.entries())
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Slot name (the order's `displayName`).
    pub slot: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a journal line records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An order is about to be sent.
    Intent {
        /// The run's `x-trace-id`, to quote to Contabo support.
        trace_id: String,
        /// Product id.
        product: String,
    },
    /// Contabo confirmed the order, or it was found after a lost answer.
    Placed {
        /// The instance.
        instance_id: i64,
    },
    /// Looked for an unconfirmed order long enough: it was not placed.
    Absent,
    /// The order never left this machine (no token, bad configuration).
    Refused {
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The order's outcome is unknown after looking for it: no run orders
    /// the slot again until the operator confirms (`--reorder`) or the
    /// instance turns up.
    Unresolved,
    /// The operator confirmed (`apply --reorder SLOT`) that an unresolved
    /// order does not exist; the slot is ordered again.
    ReorderConfirmed,
}

/// The last entry of each slot.
pub(super) fn latest(entries: Vec<Entry>) -> BTreeMap<String, Entry> {
    let mut latest = BTreeMap::new();
    for entry in entries {
        latest.insert(entry.slot.clone(), entry);
    }
    latest
}

/// A journal file's entries, read without changing it.
pub(super) struct Parsed {
    /// The entries of the whole lines.
    pub(super) entries: Vec<Entry>,
    /// Bytes of the text up to and including its last newline.
    pub(super) complete: usize,
    /// The last line when it lacks only its newline (a whole entry).
    pub(super) whole_tail: Option<Entry>,
}

/// Every line is written whole with its newline and fsynced, so only the
/// last one can be cut short, by a crash in the middle of a write. A last
/// line without its newline that still reads as a whole entry is kept; one
/// that does not is torn (it recorded nothing that was then acted on). Any
/// other unreadable line is damage the journal cannot vouch for: an error
/// naming the file and line, rather than a guess at what it said.
pub(super) fn parse(path: &Path, text: &str) -> Result<Parsed, StateError> {
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    let mut entries = Vec::new();
    for (index, line) in text[..complete].lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(line).map_err(|e| StateError::JournalCorrupt {
            path: path.to_path_buf(),
            line: index + 1,
            reason: e.to_string(),
        })?;
        entries.push(entry);
    }
    Ok(Parsed {
        entries,
        complete,
        whole_tail: serde_json::from_str(&text[complete..]).ok(),
    })
}

/// The entries of a journal's text (a file's, or the cluster object's),
/// a last line that lacks only its newline included. `path` names where
/// the text came from in errors (`PATH:LINE: …`).
pub fn parse_entries(path: &Path, text: &str) -> Result<Vec<Entry>, StateError> {
    let Parsed {
        mut entries,
        whole_tail,
        ..
    } = parse(path, text)?;
    entries.extend(whole_tail);
    Ok(entries)
}

/// For each slot whose latest entry is `placed`, after an `intent` of the
/// same slot (a line written by hand claims nothing), that instance.
pub fn placed_by_slot_in(entries: &[Entry]) -> BTreeMap<String, crate::plan::InstanceId> {
    let intended: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter(|e| matches!(e.event, Event::Intent { .. }))
        .map(|e| e.slot.as_str())
        .collect();
    let mut latest: BTreeMap<&str, &Entry> = BTreeMap::new();
    for entry in entries {
        latest.insert(&entry.slot, entry);
    }
    latest
        .into_iter()
        .filter(|(slot, _)| intended.contains(slot))
        .filter_map(|(slot, entry)| match entry.event {
            Event::Placed { instance_id } => {
                Some((slot.to_string(), crate::plan::InstanceId(instance_id)))
            }
            _ => None,
        })
        .collect()
}
