//! The local backend (`[state] backend = "local"`): the apply lock and the
//! order journal in `<inventory>/.kiwi/`.
//!
//! The lock is an OS file lock on `<inventory>/.kiwi/apply.lock`: the
//! kernel releases it when the process ends, however it ends, so a crashed
//! or killed apply never blocks the next one. The file also holds who took
//! the lock (pid, host, user, time), so a second apply can say who is in
//! the way; that text is informative only, the OS lock is what counts.
//!
//! The journal is `<inventory>/.kiwi/orders.jsonl`, one fsynced line per
//! entry (the format is in [`super::orders`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;

use super::lock::{HeldLock, Holder};
use super::orders::{latest, parse, parse_entries, Entry, Event, JournalStore, Parsed};
use super::StateError;

/// The folder, inside the inventory, that holds the lock and the order journal.
pub const STATE_DIR: &str = ".kiwi";

impl JournalStore for OrderJournal {
    fn entries(&self) -> Vec<Entry> {
        OrderJournal::entries(self)
    }

    fn record<'a>(
        &'a self,
        slot: &'a str,
        event: Event,
    ) -> futures::future::BoxFuture<'a, Result<(), StateError>> {
        // An fsync of one short line: short enough to do in place.
        Box::pin(std::future::ready(OrderJournal::record(self, slot, event)))
    }

    fn location(&self) -> &Path {
        self.path()
    }
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
    pub fn open(inventory: &Path) -> Result<Self, StateError> {
        let dir = state_dir(inventory).map_err(|source| StateError::Journal {
            path: inventory.join(STATE_DIR),
            source,
        })?;
        Self::open_file(&dir.join("orders.jsonl"))
    }

    /// Opens (or creates) a journal file.
    pub fn open_file(path: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Journal {
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
    pub fn record(&self, slot: &str, event: Event) -> Result<(), StateError> {
        let entry = Entry {
            at: Utc::now(),
            slot: slot.to_string(),
            event,
        };
        let io = |source| StateError::Journal {
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

/// The entries of `<inventory>/.kiwi/orders.jsonl`, if there is one; reads
/// and changes nothing else.
pub fn local_entries(inventory: &Path) -> Result<Vec<Entry>, StateError> {
    let path = inventory.join(STATE_DIR).join("orders.jsonl");
    let text = crate::localfs::read_text_file_if_exists(&path, crate::localfs::JOURNAL_LIMIT)
        .map_err(|e| StateError::Journal {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .unwrap_or_default();
    parse_entries(&path, &text)
}

impl HeldLock for ApplyLock {
    fn describe(&self) -> String {
        format!("the local file {}", self.path.display())
    }

    fn release(&self) -> futures::future::BoxFuture<'_, Result<(), StateError>> {
        // The OS lock goes with the descriptor, when the lock is dropped.
        Box::pin(std::future::ready(Ok(())))
    }
}

/// How often a waiting apply tries the local lock again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The held lock. Dropping it closes the file, which releases the OS lock;
/// the holder text stays behind and is overwritten by the next apply.
#[derive(Debug)]
pub struct ApplyLock {
    /// Kept open: the OS lock lives as long as this descriptor.
    _file: File,
    path: PathBuf,
}

/// Creates `<inventory>/.kiwi/` with a `.gitignore` that keeps its contents
/// (lock, journal) out of the inventory's repository.
///
/// The folder is created with mode 0700, and one that other users may
/// write to is refused: the order journal decides which instances
/// kiwi-infra claims as its own, so no one else may write it.
pub fn state_dir(inventory: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = inventory.join(STATE_DIR);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory (a symbolic link or a file); expected kiwi-infra's state folder",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} may be written by other users (mode {:o}); anyone could forge the order journal. \
             Run `chmod 700 {}`",
            dir.display(),
            meta.permissions().mode() & 0o777,
            dir.display()
        )));
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(
            &ignore,
            "# kiwi-infra's local state (apply lock, order journal): not for version control.\n*\n",
        )?;
    }
    Ok(dir)
}

impl ApplyLock {
    /// Takes the lock of the inventory in `inventory`, or says who holds it.
    pub fn acquire(inventory: &Path) -> Result<Self, StateError> {
        let path = inventory.join(STATE_DIR).join("apply.lock");
        let io = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        state_dir(inventory).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match serde_json::from_str::<Holder>(&text) {
                    Ok(h) => format!(
                        "another apply (pid {} on host {}, user {}) has held the lock since {}",
                        h.pid,
                        h.host,
                        h.user,
                        h.since.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    Err(_) => "another apply holds the lock (it has not written who it is yet)"
                        .to_string(),
                };
                return Err(StateError::LockHeld { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = serde_json::to_string(&Holder::current()).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        Ok(ApplyLock { _file: file, path })
    }

    /// Takes the lock, waiting up to `wait` (`--lock-timeout`) for another
    /// apply to finish.
    pub async fn acquire_waiting(
        inventory: &Path,
        wait: std::time::Duration,
    ) -> Result<Self, StateError> {
        let deadline = crate::patience::deadline_in(wait);
        let mut last = None;
        let taken = crate::patience::poll_until(
            deadline,
            crate::patience::Backoff::constant(LOCK_POLL),
            || {
                let attempt = Self::acquire(inventory);
                let done = match attempt {
                    Err(held @ StateError::LockHeld { .. }) => {
                        last = Some(held);
                        None
                    }
                    other => Some(other),
                };
                std::future::ready(done)
            },
        )
        .await;
        match (taken, last) {
            (Ok(result), _) => result,
            (Err(_), Some(held)) => Err(held),
            // Not reachable: the poll only expires after a held lock.
            (Err(_), None) => Self::acquire(inventory),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
            matches!(err, StateError::JournalCorrupt { line: 2, .. }),
            "{shown}"
        );
        assert!(shown.contains(&format!("{}:2:", path.display())), "{shown}");
        // A complete (newline-ended) last line that is unreadable is damage too.
        std::fs::write(&path, format!("{text}not json\n")).unwrap();
        assert!(matches!(
            OrderJournal::open_file(&path),
            Err(StateError::JournalCorrupt { line: 2, .. })
        ));
    }

    #[test]
    fn the_state_folder_is_private_and_a_writable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = state_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = state_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path(), other.path().join(STATE_DIR)).unwrap();
        assert!(state_dir(other.path()).is_err(), "a symlinked state folder");
    }

    #[test]
    fn second_lock_names_the_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApplyLock::acquire(dir.path()).unwrap();
        let err = ApplyLock::acquire(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("has held the lock since"), "{text}");
        drop(first);
        ApplyLock::acquire(dir.path()).unwrap();
        let ignore = std::fs::read_to_string(dir.path().join(".kiwi/.gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "*"));
    }

    #[tokio::test]
    async fn lock_timeout_waits_for_the_holder_and_gives_up_when_it_does_not_finish() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApplyLock::acquire(dir.path()).unwrap();
        let err = ApplyLock::acquire_waiting(dir.path(), std::time::Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::LockHeld { .. }), "{err}");
        // The holder finishes while the second one waits.
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            drop(first);
        });
        ApplyLock::acquire_waiting(dir.path(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
        release.await.unwrap();
    }

    #[test]
    fn a_stale_lock_file_without_a_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        state_dir(dir.path()).unwrap();
        std::fs::write(
            dir.path().join(".kiwi/apply.lock"),
            r#"{"pid":1,"host":"gone","user":"x","since":"2020-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        ApplyLock::acquire(dir.path()).unwrap();
    }
}
