//! The local order journal, `<inventory>/.kiwi/orders.jsonl`.
//!
//! Contabo has no idempotency key, and a new order may take a while to show
//! up in its instance list. So before every order kiwi-infra writes (and
//! fsyncs) an `intent` line, and after it a `placed` line with the instance
//! id. A later run that finds an `intent` for a slot whose instance Contabo
//! does not list yet knows an order may be on its way, and waits and looks
//! again before ordering; and an instance carrying a slot's name but no
//! ownership tag is recognised as this tool's own, interrupted before it
//! could tag it. Lines hold names, ids and times only, never user data or
//! credentials.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::ApplyError;
use super::lock::state_dir;

/// Where the order journal is kept: the local file ([`OrderJournal`]) or
/// the Core cluster (`crate::state::ClusterJournal`), as the inventory's
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
    ) -> futures::future::BoxFuture<'a, Result<(), ApplyError>>;

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

impl JournalStore for OrderJournal {
    fn entries(&self) -> Vec<Entry> {
        OrderJournal::entries(self)
    }

    fn record<'a>(
        &'a self,
        slot: &'a str,
        event: Event,
    ) -> futures::future::BoxFuture<'a, Result<(), ApplyError>> {
        // An fsync of one short line: short enough to do in place.
        Box::pin(std::future::ready(OrderJournal::record(self, slot, event)))
    }

    fn location(&self) -> &Path {
        self.path()
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

/// The journal of one inventory. Appends are serialised and each is fsynced
/// before the call returns.
#[derive(Debug)]
pub struct OrderJournal {
    path: PathBuf,
    file: Mutex<File>,
    entries: Mutex<Vec<Entry>>,
}

impl OrderJournal {
    /// Opens (or creates) the journal of the inventory in `inventory`.
    pub fn open(inventory: &Path) -> Result<Self, ApplyError> {
        let dir = state_dir(inventory).map_err(|source| ApplyError::Journal {
            path: inventory.join(super::lock::STATE_DIR),
            source,
        })?;
        Self::open_file(&dir.join("orders.jsonl"))
    }

    /// Opens (or creates) a journal file.
    pub fn open_file(path: &Path) -> Result<Self, ApplyError> {
        let io = |source| ApplyError::Journal {
            path: path.to_path_buf(),
            source,
        };
        // Read as a regular file of bounded size: a FIFO or a device put
        // in the journal's place is refused, not read forever.
        let text = crate::localfs::read_text_file_if_exists(path, crate::localfs::JOURNAL_LIMIT)
            .map_err(|e| io(std::io::Error::other(e)))?
            .unwrap_or_default();
        let Parsed {
            mut entries,
            complete,
            whole_tail,
        } = parse(path, &text)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        match whole_tail {
            Some(entry) => {
                // End the last entry's line, so the next starts on its own.
                file.write_all(b"\n").map_err(io)?;
                entries.push(entry);
            }
            None if complete < text.len() => {
                tracing::warn!(path = %path.display(), "dropping the order journal's last line, cut short by a crash");
                // Cut the torn line off, so the file stays whole.
                file.set_len(complete as u64).map_err(io)?;
            }
            None => {}
        }
        Ok(OrderJournal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            entries: Mutex::new(entries),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a line and fsyncs it.
    pub fn record(&self, slot: &str, event: Event) -> Result<(), ApplyError> {
        let entry = Entry {
            at: Utc::now(),
            slot: slot.to_string(),
            event,
        };
        let io = |source| ApplyError::Journal {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(&entry).map_err(|e| io(std::io::Error::other(e)))?;
        line.push('\n');
        {
            let mut file = self
                .file
                .lock()
                .map_err(|_| io(std::io::Error::other("journal lock poisoned")))?;
            file.write_all(line.as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(io)?;
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(entry);
        }
        Ok(())
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The last entry of each slot.
    pub fn latest(&self) -> BTreeMap<String, Entry> {
        latest(self.entries())
    }
}

/// The last entry of each slot.
fn latest(entries: Vec<Entry>) -> BTreeMap<String, Entry> {
    let mut latest = BTreeMap::new();
    for entry in entries {
        latest.insert(entry.slot.clone(), entry);
    }
    latest
}

/// A journal file's entries, read without changing it.
struct Parsed {
    /// The entries of the whole lines.
    entries: Vec<Entry>,
    /// Bytes of the text up to and including its last newline.
    complete: usize,
    /// The last line when it lacks only its newline (a whole entry).
    whole_tail: Option<Entry>,
}

/// Every line is written whole with its newline and fsynced, so only the
/// last one can be cut short, by a crash in the middle of a write. A last
/// line without its newline that still reads as a whole entry is kept; one
/// that does not is torn (it recorded nothing that was then acted on). Any
/// other unreadable line is damage the journal cannot vouch for: an error
/// naming the file and line, rather than a guess at what it said.
fn parse(path: &Path, text: &str) -> Result<Parsed, ApplyError> {
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    let mut entries = Vec::new();
    for (index, line) in text[..complete].lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(line).map_err(|e| ApplyError::JournalCorrupt {
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
pub fn parse_entries(path: &Path, text: &str) -> Result<Vec<Entry>, ApplyError> {
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
pub fn placed_by_slot_in(entries: Vec<Entry>) -> BTreeMap<String, crate::plan::InstanceId> {
    let intended: std::collections::BTreeSet<String> = entries
        .iter()
        .filter(|e| matches!(e.event, Event::Intent { .. }))
        .map(|e| e.slot.clone())
        .collect();
    latest(entries)
        .into_iter()
        .filter(|(slot, _)| intended.contains(slot))
        .filter_map(|(slot, entry)| match entry.event {
            Event::Placed { instance_id } => Some((slot, crate::plan::InstanceId(instance_id))),
            _ => None,
        })
        .collect()
}

/// The entries of `<inventory>/.kiwi/orders.jsonl`, if there is one; reads
/// and changes nothing else.
pub fn local_entries(inventory: &Path) -> Result<Vec<Entry>, ApplyError> {
    let path = inventory.join(super::lock::STATE_DIR).join("orders.jsonl");
    let text = crate::localfs::read_text_file_if_exists(&path, crate::localfs::JOURNAL_LIMIT)
        .map_err(|e| ApplyError::Journal {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .unwrap_or_default();
    parse_entries(&path, &text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let j = OrderJournal::open_file(&path).unwrap();
        j.record(
            "kiwi-a-server-01",
            Event::Intent {
                trace_id: "t".into(),
                product: "V94".into(),
            },
        )
        .unwrap();
        j.record("kiwi-a-server-01", Event::Placed { instance_id: 7 })
            .unwrap();
        drop(j);
        // A crash in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"at":"2026-01-01T00:00:00Z","slot":"kiwi-a-ser"#)
            .unwrap();
        let j = OrderJournal::open_file(&path).unwrap();
        assert_eq!(j.entries().len(), 2);
        assert_eq!(
            j.latest()["kiwi-a-server-01"].event,
            Event::Placed { instance_id: 7 }
        );
        j.record("kiwi-a-server-01", Event::Unresolved).unwrap();
        drop(j);
        let j = OrderJournal::open_file(&path).unwrap();
        assert_eq!(
            j.entries().len(),
            3,
            "the entry after the torn line is readable"
        );
        assert_eq!(j.latest()["kiwi-a-server-01"].event, Event::Unresolved);
    }

    #[test]
    fn a_whole_last_entry_without_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let j = OrderJournal::open_file(&path).unwrap();
        j.record("kiwi-a-server-01", Event::Placed { instance_id: 7 })
            .unwrap();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        let j = OrderJournal::open_file(&path).unwrap();
        assert_eq!(
            j.latest()["kiwi-a-server-01"].event,
            Event::Placed { instance_id: 7 }
        );
        j.record("kiwi-a-server-01", Event::Absent).unwrap();
        drop(j);
        let j = OrderJournal::open_file(&path).unwrap();
        assert_eq!(j.entries().len(), 2, "both lines are whole");
    }

    #[test]
    fn an_unreadable_line_that_is_not_the_torn_last_one_stops_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let j = OrderJournal::open_file(&path).unwrap();
        j.record("kiwi-a-server-01", Event::Placed { instance_id: 7 })
            .unwrap();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        // A damaged line in the middle, whole lines after it.
        std::fs::write(&path, format!("{text}{{\"at\":\"garbage\"}}\n{text}")).unwrap();
        let err = OrderJournal::open_file(&path).unwrap_err();
        let shown = err.to_string();
        assert!(
            matches!(err, ApplyError::JournalCorrupt { line: 2, .. }),
            "{shown}"
        );
        assert!(shown.contains(&format!("{}:2:", path.display())), "{shown}");
        // A complete (newline-ended) last line that is unreadable is damage too.
        std::fs::write(&path, format!("{text}not json\n")).unwrap();
        assert!(matches!(
            OrderJournal::open_file(&path),
            Err(ApplyError::JournalCorrupt { line: 2, .. })
        ));
    }
}
