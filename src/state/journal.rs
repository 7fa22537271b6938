//! The order journal as a `ConfigMap` in the Core cluster
//! (`kiwi-infra/kiwi-infra-orders`, key `orders.jsonl`): the same JSON lines
//! as the local file (`super::local`), so a rerun from any machine
//! resolves what another machine left unconfirmed.
//!
//! Each entry is appended by a compare-and-swap: the whole text with the new
//! line is written carrying the resource version last read. When another
//! writer came in between, the write is a conflict: the text is read again,
//! the entry appended to it, and written again. An entry is only reported
//! written once the API stored it, and an order's intent is written before
//! the order is sent, exactly as with the local file. Before writing, the
//! journal asks the apply lock whether it is still held: an apply whose
//! lease was taken over records no intent, and so sends no order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{json, Value};

use super::lease::LeaseWatch;
use super::objects::{KubeObjects, Object, ObjectKind, Written};
use super::orders::{parse_entries, Entry, Event, JournalStore};
use super::{StateError, JOURNAL_KEY, JOURNAL_NAME, NAMESPACE};

/// Writes that lose to other writers in a row before giving up.
const MAX_CONFLICTS: u32 = 10;

/// What the journal last read or wrote.
#[derive(Debug, Default)]
struct Known {
    /// The text of `orders.jsonl`.
    text: String,
    /// The entries of `text`.
    entries: Vec<Entry>,
    /// Resource version of the object; `None` when there is none yet.
    resource_version: Option<String>,
}

/// The order journal kept in the Core cluster.
#[derive(Debug)]
pub struct ClusterJournal<S> {
    store: Arc<S>,
    lease: Option<LeaseWatch>,
    known: Mutex<Known>,
    /// One write at a time from this process: concurrent steps would only
    /// conflict with each other.
    writing: tokio::sync::Mutex<()>,
}

/// How the journal object is named in messages and errors
/// (`ConfigMap kiwi-infra/kiwi-infra-orders, key orders.jsonl`).
pub fn journal_location() -> PathBuf {
    PathBuf::from(format!(
        "Core cluster ConfigMap {NAMESPACE}/{JOURNAL_NAME} key {JOURNAL_KEY}"
    ))
}

impl<S: KubeObjects> ClusterJournal<S> {
    /// Reads the journal (an empty one when the object does not exist yet).
    /// `lease`: the apply lock to check before each write; `None` for a
    /// reader that never writes.
    pub async fn open(store: Arc<S>, lease: Option<LeaseWatch>) -> Result<Self, StateError> {
        let journal = ClusterJournal {
            store,
            lease,
            known: Mutex::new(Known::default()),
            writing: tokio::sync::Mutex::new(()),
        };
        journal.reread().await?;
        Ok(journal)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the object again, replacing what was known.
    async fn reread(&self) -> Result<(), StateError> {
        let object = self.store.get(ObjectKind::ConfigMap, JOURNAL_NAME).await?;
        let known = match object {
            None => Known::default(),
            Some(object) => read(&object)?,
        };
        *self.known() = known;
        Ok(())
    }

    /// Brings `local` entries (the local journal of an inventory that moved
    /// to the Core cluster) into this journal: those it lacks are appended
    /// after its own, in their order, with one compare-and-swap (re-read on
    /// conflict).
    /// Returns how many were added. Importing twice adds nothing.
    pub async fn import(&self, local: &[Entry]) -> Result<usize, StateError> {
        let _one_at_a_time = self.writing.lock().await;
        self.write_with(|known| {
            let merged = merge_entries(&known.entries, local);
            let added = merged.len() - known.entries.len();
            if added == 0 {
                return Change::Stop(Ok(0));
            }
            let mut text = String::new();
            for entry in &merged {
                match entry_line(entry) {
                    Ok(line) => text.push_str(&line),
                    Err(e) => return Change::Stop(Err(e)),
                }
            }
            Change::Write {
                text,
                entries: merged,
                done: added,
            }
        })
        .await
    }

    /// Appends `entry` with a compare-and-swap, re-reading on conflict.
    async fn append(&self, entry: &Entry) -> Result<(), StateError> {
        let line = entry_line(entry)?;
        let _one_at_a_time = self.writing.lock().await;
        // An intent is written only while no other apply's order of this
        // slot is unsettled in the journal as it is now (read afresh, and
        // again after every conflict): an intent another apply wrote since
        // this one looked (a write that landed late) is never ordered over.
        let own_trace = match &entry.event {
            Event::Intent { trace_id, .. } => Some(trace_id.clone()),
            _ => None,
        };
        if own_trace.is_some() {
            self.reread().await?;
        }
        self.write_with(|known| {
            if let Some(other) = own_trace
                .as_deref()
                .and_then(|trace| unsettled_by_another(&known.entries, &entry.slot, trace))
            {
                return Change::Stop(Err(StateError::Lost {
                    what: format!(
                        "another apply recorded an order of {} at {} whose outcome is not \
                         settled; this apply does not order it again",
                        entry.slot,
                        other.at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                }));
            }
            let mut text = known.text.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
            let mut entries = known.entries.clone();
            entries.push(entry.clone());
            Change::Write {
                text,
                entries,
                done: (),
            }
        })
        .await?;
        // The write may have taken long (a stalled link): an intent is only
        // acted on while the lease is still certainly held. Otherwise the
        // intent stays recorded, and whoever holds the lock settles it by
        // look-up.
        if own_trace.is_some() {
            if let Some(what) = self.lease.as_ref().and_then(LeaseWatch::lost) {
                return Err(StateError::Lost { what });
            }
        }
        Ok(())
    }

    /// One compare-and-swap write of the journal object, tried again on a
    /// conflict (another writer came first, or the object went) after
    /// reading what is there now: `change` says, from what is known, what
    /// to write (or to stop). Refused once the lock is no longer certainly
    /// held; the caller holds `self.writing`.
    async fn write_with<R>(
        &self,
        mut change: impl FnMut(&Known) -> Change<R>,
    ) -> Result<R, StateError> {
        for _ in 0..MAX_CONFLICTS {
            if let Some(what) = self.lease.as_ref().and_then(LeaseWatch::lost) {
                return Err(StateError::Lost { what });
            }
            let (planned, rv) = {
                let k = self.known();
                (change(&k), k.resource_version.clone())
            };
            let (text, entries, done) = match planned {
                Change::Stop(result) => return result,
                Change::Write {
                    text,
                    entries,
                    done,
                } => (text, entries, done),
            };
            let manifest = manifest(&text, rv.as_deref());
            let written = match rv {
                None => self.store.create(ObjectKind::ConfigMap, &manifest).await?,
                Some(_) => self.store.replace(ObjectKind::ConfigMap, &manifest).await?,
            };
            match written {
                Written::Done(object) => {
                    let mut k = self.known();
                    k.text = text;
                    k.entries = entries;
                    k.resource_version = Some(object.resource_version);
                    return Ok(done);
                }
                Written::Conflict | Written::AlreadyExists | Written::NotFound => {
                    tracing::debug!("order journal changed under this apply; reading it again");
                    self.reread().await?;
                }
            }
        }
        Err(StateError::Contended {
            object: ObjectKind::ConfigMap.describe(JOURNAL_NAME),
            attempts: MAX_CONFLICTS,
        })
    }
}

/// What one attempt of [`ClusterJournal::write_with`] does.
enum Change<R> {
    /// Write this text (holding these entries); the write returns `done`.
    Write {
        text: String,
        entries: Vec<Entry>,
        done: R,
    },
    /// Write nothing: the result as it stands.
    Stop(Result<R, StateError>),
}

/// One journal line for `entry`, newline included.
fn entry_line(entry: &Entry) -> Result<String, StateError> {
    serde_json::to_string(entry)
        .map(|line| line + "\n")
        .map_err(|e| StateError::Malformed {
            object: ObjectKind::ConfigMap.describe(JOURNAL_NAME),
            what: format!("cannot write an entry: {e}"),
        })
}

/// The slot's latest entry in `entries` when it is an order another run
/// left unsettled: an intent of another trace, or `unresolved`.
fn unsettled_by_another(entries: &[Entry], slot: &str, own_trace: &str) -> Option<Entry> {
    let latest = entries.iter().rev().find(|e| e.slot == slot)?;
    match &latest.event {
        Event::Intent { trace_id, .. } if trace_id != own_trace => Some(latest.clone()),
        Event::Unresolved => Some(latest.clone()),
        _ => None,
    }
}

/// `ours` in its own order, then the entries of `other` it lacks, in
/// theirs. Append order is the journal's truth (writes are compare-and-
/// swap); timestamps come from different machines' clocks, so nothing is
/// re-sorted by them. An imported entry may thus become a slot's latest
/// even if older: at worst an order looks unsettled and is looked up,
/// never the reverse.
pub fn merge_entries(ours: &[Entry], other: &[Entry]) -> Vec<Entry> {
    let mut merged: Vec<Entry> = ours.to_vec();
    for entry in other {
        if !ours.contains(entry) {
            merged.push(entry.clone());
        }
    }
    merged
}

/// The journal's text and entries from the object, read at the edge: a
/// `data` that is not a map of strings, or a line that is not an entry, is
/// an error naming the object and the line.
fn read(object: &Object) -> Result<Known, StateError> {
    let malformed = |what: &str| StateError::Malformed {
        object: ObjectKind::ConfigMap.describe(JOURNAL_NAME),
        what: what.to_string(),
    };
    let text = match &object.value["data"] {
        Value::Null => String::new(),
        Value::Object(data) => match data.get(JOURNAL_KEY) {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(_) => return Err(malformed("data.\"orders.jsonl\" is not a string")),
        },
        _ => return Err(malformed("data is not a map of strings")),
    };
    if text.len() > crate::localfs::JOURNAL_LIMIT as usize {
        return Err(malformed(
            "the journal is larger than the limit of a journal file",
        ));
    }
    let entries = parse_entries(&journal_location(), &text).map_err(|e| StateError::Malformed {
        object: ObjectKind::ConfigMap.describe(JOURNAL_NAME),
        what: crate::secret::redact::error_chain(&e, ": "),
    })?;
    Ok(Known {
        text,
        entries,
        resource_version: Some(object.resource_version.clone()),
    })
}

fn manifest(text: &str, resource_version: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": JOURNAL_NAME,
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/managed-by": "kiwi-infra"},
    });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {JOURNAL_KEY: text},
    })
}

impl<S: KubeObjects> JournalStore for ClusterJournal<S> {
    fn entries(&self) -> Vec<Entry> {
        self.known().entries.clone()
    }

    fn lock_lost(&self) -> Option<String> {
        self.lease.as_ref().and_then(LeaseWatch::lost)
    }

    fn record<'a>(
        &'a self,
        slot: &'a str,
        event: Event,
    ) -> futures::future::BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let entry = Entry {
                at: Utc::now(),
                slot: slot.to_string(),
                event,
            };
            self.append(&entry).await
        })
    }

    fn location(&self) -> &Path {
        static LOCATION: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        LOCATION.get_or_init(journal_location)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::fake::FakeObjects;

    fn intent() -> Event {
        Event::Intent {
            trace_id: "t".into(),
            product: "V94".into(),
        }
    }

    fn intent_of(trace: &str) -> Event {
        Event::Intent {
            trace_id: trace.into(),
            product: "V94".into(),
        }
    }

    #[tokio::test]
    async fn an_intent_another_apply_wrote_after_this_one_looked_is_never_ordered_over() {
        // b opened (and decided from) the journal before a's intent landed.
        let store = Arc::new(FakeObjects::default());
        let b = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        let a = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        a.record("kiwi-a-server-01", intent_of("run-a"))
            .await
            .unwrap();
        let refused = b.record("kiwi-a-server-01", intent_of("run-b")).await;
        let text = format!("{:?}", refused.unwrap_err());
        assert!(text.contains("another apply recorded an order"), "{text}");
        // Another slot is not held up; a confirmed reorder is allowed.
        b.record("kiwi-a-server-02", intent_of("run-b"))
            .await
            .unwrap();
        b.record("kiwi-a-server-01", Event::ReorderConfirmed)
            .await
            .unwrap();
        b.record("kiwi-a-server-01", intent_of("run-b"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_local_journal_is_imported_once_after_the_clusters_own_entries() {
        let store = Arc::new(FakeObjects::default());
        let j = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        j.record("kiwi-a-server-02", intent_of("cluster"))
            .await
            .unwrap();
        let earlier = chrono::Utc::now() - chrono::Duration::minutes(5);
        let local = vec![
            Entry {
                at: earlier,
                slot: "kiwi-a-server-01".into(),
                event: intent_of("local"),
            },
            Entry {
                at: earlier + chrono::Duration::seconds(1),
                slot: "kiwi-a-server-01".into(),
                event: Event::Placed { instance_id: 9 },
            },
        ];
        assert_eq!(j.import(&local).await.unwrap(), 2);
        assert_eq!(
            j.import(&local).await.unwrap(),
            0,
            "importing again adds nothing"
        );
        let fresh = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        let slots: Vec<String> = fresh.entries().into_iter().map(|e| e.slot).collect();
        // Never re-sorted by clocks of different machines: the cluster's
        // own entries keep their order, the imported ones follow.
        assert_eq!(
            slots,
            ["kiwi-a-server-02", "kiwi-a-server-01", "kiwi-a-server-01"]
        );
        assert_eq!(
            fresh.latest()["kiwi-a-server-01"].event,
            Event::Placed { instance_id: 9 }
        );
    }

    #[tokio::test]
    async fn two_machines_append_to_one_journal_and_neither_entry_is_lost() {
        let store = Arc::new(FakeObjects::default());
        let a = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        let b = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        a.record("kiwi-a-server-01", intent()).await.unwrap();
        // b read before a wrote: its create is refused, it reads and appends.
        b.record("kiwi-a-server-02", intent()).await.unwrap();
        // a's known version is stale now: a conflict, a re-read, an append.
        a.record("kiwi-a-server-01", Event::Placed { instance_id: 7 })
            .await
            .unwrap();
        let fresh = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        let slots: Vec<(String, Event)> = fresh
            .entries()
            .into_iter()
            .map(|e| (e.slot, e.event))
            .collect();
        assert_eq!(
            slots,
            vec![
                ("kiwi-a-server-01".to_string(), intent()),
                ("kiwi-a-server-02".to_string(), intent()),
                (
                    "kiwi-a-server-01".to_string(),
                    Event::Placed { instance_id: 7 }
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_writer_that_keeps_losing_gives_up_without_claiming_a_write() {
        let store = Arc::new(FakeObjects::default());
        let j = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap();
        j.record("kiwi-a-server-01", intent()).await.unwrap();
        store.conflict_next(MAX_CONFLICTS);
        let err = j.record("kiwi-a-server-02", intent()).await.unwrap_err();
        assert!(err.to_string().contains("kept changing"), "{err}");
        assert_eq!(j.entries().len(), 1);
        // One conflict fewer: the last attempt succeeds.
        store.conflict_next(MAX_CONFLICTS - 1);
        j.record("kiwi-a-server-02", intent()).await.unwrap();
        assert_eq!(j.entries().len(), 2);
    }

    #[tokio::test]
    async fn a_damaged_journal_object_names_the_object_and_line() {
        let store = Arc::new(FakeObjects::default());
        store.put(
            ObjectKind::ConfigMap,
            JOURNAL_NAME,
            json!({"data": {JOURNAL_KEY: "{\"at\":\"garbage\"}\nmore\n"}}),
        );
        let err = ClusterJournal::open(Arc::clone(&store), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ConfigMap kiwi-infra/kiwi-infra-orders"),
            "{err}"
        );
        assert!(err.contains(":1:"), "{err}");
        store.put(
            ObjectKind::ConfigMap,
            JOURNAL_NAME,
            json!({"data": {JOURNAL_KEY: 5}}),
        );
        assert!(ClusterJournal::open(store, None).await.is_err());
    }

    #[tokio::test]
    async fn no_intent_is_recorded_once_the_lock_is_lost() {
        let store = Arc::new(FakeObjects::default());
        let holder = crate::state::Holder::current();
        let settings = crate::state::LeaseSettings {
            duration: std::time::Duration::from_secs(30),
            wait: std::time::Duration::ZERO,
            poll: std::time::Duration::from_millis(10),
        };
        let now = Utc::now();
        let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&late);
        let clock: crate::state::lease::Clock = Arc::new(move || {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                now + chrono::Duration::seconds(31)
            } else {
                now
            }
        });
        let guard = crate::state::lease::acquire(Arc::clone(&store), &holder, settings, clock)
            .await
            .unwrap();
        let j = ClusterJournal::open(Arc::clone(&store), Some(guard.watch()))
            .await
            .unwrap();
        j.record("kiwi-a-server-01", intent()).await.unwrap();
        late.store(true, std::sync::atomic::Ordering::SeqCst);
        let err = j.record("kiwi-a-server-02", intent()).await.unwrap_err();
        assert!(err.to_string().contains("lost the lock"), "{err}");
        assert_eq!(j.entries().len(), 1);
    }
}
