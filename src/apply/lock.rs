//! One apply at a time per inventory.
//!
//! Two applies of the same inventory could both decide a slot is empty and
//! both order it. The lock is an OS file lock on `<inventory>/.kiwi/apply.lock`:
//! the kernel releases it when the process ends, however it ends, so a
//! crashed or killed apply never blocks the next one. The file also holds who
//! took the lock (pid, host, user, time), so a second apply can say who is
//! in the way; that text is informative only, the OS lock is what counts.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::ApplyError;

/// The folder, inside the inventory, that holds the lock and the order journal.
pub const STATE_DIR: &str = ".kiwi";

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// User name.
    pub user: String,
    /// When the lock was taken.
    pub since: DateTime<Utc>,
}

impl Holder {
    /// This process.
    pub fn current() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(crate::settings::host_name)
            .unwrap_or_else(|| "unknown host".into());
        Holder {
            pid: std::process::id(),
            host,
            user: crate::settings::login_name()
                .or_else(user_of_this_process)
                .unwrap_or_else(|| "unknown user".into()),
            since: Utc::now(),
        }
    }

    /// `user U on host H (pid N) since T`, the names escaped for the
    /// terminal (another machine wrote them).
    pub fn describe(&self) -> String {
        format!(
            "user {} on host {} (pid {}) since {}",
            crate::text::escape_for_terminal(&self.user),
            crate::text::escape_for_terminal(&self.host),
            self.pid,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held apply lock, whichever store keeps it: the local file
/// ([`ApplyLock`]) or the Core cluster's Lease (`crate::state::LeaseGuard`).
pub trait HeldLock: Send + Sync {
    /// Where the lock lives, for messages.
    fn describe(&self) -> String;

    /// Gives the lock up at the end of the run. A lock not released (the
    /// process was killed) is freed by the OS (file) or expires (Lease).
    fn release(&self) -> futures::future::BoxFuture<'_, Result<(), ApplyError>>;
}

impl HeldLock for ApplyLock {
    fn describe(&self) -> String {
        format!("the local file {}", self.path.display())
    }

    fn release(&self) -> futures::future::BoxFuture<'_, Result<(), ApplyError>> {
        // The OS lock goes with the descriptor, when the lock is dropped.
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The name of this process's user when no environment variable says it
/// (cron, systemd, CI containers): the real uid from `/proc/self/status`,
/// looked up in `/etc/passwd`, or `uid N` when it has no entry there.
fn user_of_this_process() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid {uid}")))
}

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
    pub fn acquire(inventory: &Path) -> Result<Self, ApplyError> {
        let path = inventory.join(STATE_DIR).join("apply.lock");
        let io = |source| ApplyError::Lock {
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
                return Err(ApplyError::LockHeld { path, holder });
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
    ) -> Result<Self, ApplyError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Self::acquire(inventory) {
                Err(ApplyError::LockHeld { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                other => return other,
            }
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

    #[test]
    fn the_holders_user_is_known_without_environment_variables() {
        // Under cron, systemd or a CI container USER may be unset: the
        // process's own uid still names someone.
        let user = super::user_of_this_process().unwrap();
        assert!(!user.is_empty() && user != "unknown user", "{user}");
    }
    use super::*;

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
        assert!(matches!(err, ApplyError::LockHeld { .. }), "{err}");
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
