//! `<inventory>/known_hosts`: the public host key of every node, keyed by
//! the node's (slot) name.
//!
//! kiwi-infra chooses each node's host key when it orders or reinstalls the
//! node (see [`super::hostkey`]) and records the public half here *before*
//! the order is sent, when the node's IP address is not known yet. So the
//! entries are keyed by node name, and connections use OpenSSH's
//! `HostKeyAlias=<node>` so the check looks the name up whatever the
//! address (see [`super::openssh`] for how that option reaches `ssh`).
//! Keying by name also survives Contabo giving a reinstalled node a new
//! address, and an address reused by another customer never matches.
//!
//! The file is public data meant to be committed with the inventory. Each
//! node appears exactly once: recording a node replaces its line (a
//! reinstall gets a new key; an order retried after a failed attempt must
//! not leave two lines). Writes go to a temporary file that is fsynced and
//! renamed over the old one, so a crash leaves either the old or the new
//! file, never half of one. One apply at a time holds the inventory's lock;
//! within it, a mutex serialises the writers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File name inside the inventory directory.
pub const FILE_NAME: &str = "known_hosts";

const HEADER: &str = "\
# SSH host keys of the nodes kiwi-infra manages, one line per node, keyed by
# node name (kiwi-infra connects with HostKeyAlias=<node name>). kiwi-infra
# generated each key itself when it ordered or reinstalled the node, and
# writes this file; it holds public keys only. Commit it with the inventory.
";

/// Reading or writing the known-hosts file failed.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// I/O on the file failed.
    #[error("cannot {action} the known-hosts file {path}")]
    Io {
        /// What was being done: `read`, `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A name or key that would break the file's line format.
    #[error("refusing to record {what} {value:?} in {path}: it is not a single word")]
    InvalidField {
        /// `node name` or `public key`.
        what: &'static str,
        /// The value.
        value: String,
        /// The file.
        path: PathBuf,
    },
}

/// The known-hosts file of one inventory.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    write: Mutex<()>,
}

impl KnownHosts {
    /// The file at `path`. It need not exist yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownHosts {
            path: path.into(),
            write: Mutex::new(()),
        }
    }

    /// Where the inventory in directory `inventory` keeps its known hosts.
    pub fn path_in(inventory: &Path) -> PathBuf {
        inventory.join(FILE_NAME)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `public_key` (`ssh-ed25519 AAAA…`) as the host key of `node`,
    /// replacing any key recorded for it before.
    pub fn record(&self, node: &str, public_key: &str) -> Result<(), KnownHostsError> {
        let public_key = public_key.trim();
        let key_fields: Vec<&str> = public_key.split_whitespace().collect();
        if !is_word(node) {
            return Err(self.invalid("node name", node));
        }
        // `type base64`, optionally with a comment we drop.
        if key_fields.len() < 2 || !key_fields[0].starts_with("ssh-") {
            return Err(self.invalid("public key", public_key));
        }
        let line = format!("{node} {} {}", key_fields[0], key_fields[1]);
        // A poisoned lock only means another writer panicked; the file is
        // replaced atomically, so it is still whole.
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.read_text()?;
        let mut lines: Vec<String> = Vec::new();
        let mut placed = false;
        for existing in old.lines() {
            if entry_alias(existing) == Some(node) {
                if !placed {
                    lines.push(line.clone());
                    placed = true;
                }
                continue;
            }
            lines.push(existing.to_string());
        }
        if lines.is_empty() {
            lines.extend(HEADER.lines().map(str::to_string));
        }
        if !placed {
            lines.push(line);
        }
        let mut text = lines.join("\n");
        text.push('\n');
        self.write_atomically(&text)
    }

    /// The key recorded for `node` (`ssh-ed25519 AAAA…`), if any.
    pub fn lookup(&self, node: &str) -> Result<Option<String>, KnownHostsError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(alias, _)| alias == node)
            .map(|(_, key)| key))
    }

    /// Every entry, `(node, key)`, in file order.
    pub fn entries(&self) -> Result<Vec<(String, String)>, KnownHostsError> {
        Ok(self
            .read_text()?
            .lines()
            .filter_map(|line| {
                let alias = entry_alias(line)?;
                let key: Vec<&str> = line.split_whitespace().skip(1).take(2).collect();
                Some((alias.to_string(), key.join(" ")))
            })
            .collect())
    }

    fn read_text(&self) -> Result<String, KnownHostsError> {
        // A regular file of bounded size only: a FIFO or a device in its
        // place is refused, not read forever.
        crate::localfs::read_text_file_if_exists(&self.path, crate::localfs::KNOWN_HOSTS_LIMIT)
            .map(Option::unwrap_or_default)
            .map_err(|e| KnownHostsError::Io {
                action: "read",
                path: self.path.clone(),
                source: std::io::Error::other(e.reason()),
            })
    }

    fn write_atomically(&self, text: &str) -> Result<(), KnownHostsError> {
        let io = |source| KnownHostsError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        // Public data, readable like any inventory file. Only a regular
        // file is replaced: a symbolic link or a device at the path is
        // refused, never replaced or written through.
        crate::localfs::replace_file(&self.path, text.as_bytes(), 0o644)
            .map_err(|e| io(std::io::Error::other(e.reason())))
    }

    fn invalid(&self, what: &'static str, value: &str) -> KnownHostsError {
        KnownHostsError::InvalidField {
            what,
            value: value.to_string(),
            path: self.path.clone(),
        }
    }
}

/// The host field of an entry line, when it names a single host (the only
/// kind of line kiwi-infra writes); `None` for comments, blank lines and
/// markers such as `@revoked`.
fn entry_alias(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
        return None;
    }
    line.split_whitespace().next()
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB";

    #[test]
    fn each_node_is_listed_once_and_a_new_key_replaces_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let kh = KnownHosts::new(KnownHosts::path_in(dir.path()));
        kh.record("kiwi-a-server-01", KEY_A).unwrap();
        kh.record("kiwi-a-agent-01", KEY_A).unwrap();
        // A reinstall (or a second order attempt) brings a new key.
        kh.record("kiwi-a-server-01", KEY_B).unwrap();
        let entries = kh.entries().unwrap();
        assert_eq!(
            entries,
            vec![
                ("kiwi-a-server-01".to_string(), KEY_B.to_string()),
                ("kiwi-a-agent-01".to_string(), KEY_A.to_string()),
            ]
        );
        let text = fs::read_to_string(kh.path()).unwrap();
        assert!(text.starts_with("# SSH host keys"), "{text}");
        assert_eq!(text.matches("kiwi-a-server-01").count(), 1, "{text}");
        assert_eq!(
            kh.lookup("kiwi-a-server-01").unwrap().as_deref(),
            Some(KEY_B)
        );
        assert_eq!(kh.lookup("kiwi-a-server-02").unwrap(), None);
    }

    #[test]
    fn duplicate_lines_from_a_hand_edit_collapse_and_other_lines_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(
            &path,
            format!("# mine\nn1 {KEY_A}\nother {KEY_A}\nn1 {KEY_A}\n"),
        )
        .unwrap();
        let kh = KnownHosts::new(&path);
        kh.record("n1", &format!("{KEY_B} a-comment")).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("# mine\nn1 {KEY_B}\nother {KEY_A}\n")
        );
    }

    #[test]
    fn names_and_keys_that_would_break_the_format_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kh = KnownHosts::new(dir.path().join("known_hosts"));
        assert!(matches!(
            kh.record("a b", KEY_A),
            Err(KnownHostsError::InvalidField { .. })
        ));
        assert!(matches!(
            kh.record("n", "AAAA"),
            Err(KnownHostsError::InvalidField { .. })
        ));
        assert!(!kh.path().exists());
    }
}
