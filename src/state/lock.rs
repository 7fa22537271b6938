//! Who holds the apply lock, and the seam over where it is kept: the local
//! file (`super::local::ApplyLock`) or the Core cluster's Lease
//! (`super::LeaseGuard`). One apply per inventory at a time: two applies
//! could both decide a slot is empty and both order it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;

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
/// (`super::local::ApplyLock`) or the Core cluster's Lease (`super::LeaseGuard`).
pub trait HeldLock: Send + Sync {
    /// Where the lock lives, for messages.
    fn describe(&self) -> String;

    /// Gives the lock up at the end of the run. A lock not released (the
    /// process was killed) is freed by the OS (file) or expires (Lease).
    fn release(&self) -> futures::future::BoxFuture<'_, Result<(), StateError>>;
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
}
