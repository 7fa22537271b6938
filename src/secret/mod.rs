//! Secrets (credentials, tokens, private keys, the documents that carry
//! them) live in [`Secret`], whose `Debug` and `Display` print `***`, so no
//! log line, error or plan can leak them by accident.
//!
//! That guards what kiwi-infra prints of its own values. A server can still
//! hand a secret back: a proxy that echoes the request in an error body
//! (the bearer token, the order's user data with the node's host private
//! key), a token endpoint quoting its form, a node printing what it was fed.
//! So every secret is also *registered* the moment it exists
//! ([`Secret::new`] does it), in one process-wide [`registry`], and every
//! text that came from outside goes through [`redact`] before it is kept in
//! an error, logged or shown.

use std::fmt;

pub mod redact;
pub mod registry;

pub use redact::MASK;
pub use registry::{register, register_credential};

/// A value that must never be printed. Read it with [`Secret::expose`], only at
/// the point where it leaves the process (an HTTP form, a file on a node).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T = String>(T);

impl<T: AsRef<[u8]>> Secret<T> {
    /// Wraps a secret value and registers it, so that any text from outside
    /// that echoes it is masked (see [`redact`]).
    pub fn new(value: T) -> Self {
        registry::register_bytes(value.as_ref());
        Self(value)
    }
}

impl Secret<String> {
    /// Wraps a credential (API password, client secret, a token) and
    /// registers it whatever its length: even a password of two
    /// characters is masked in an echo (see [`registry::register_credential`]).
    pub fn credential(value: String) -> Self {
        registry::register_credential(&value);
        Self(value)
    }
}

impl<T> Secret<T> {
    /// Wraps a value that holds no secret but travels where secrets do (a
    /// Kubernetes manifest fed to a command's stdin). It is not registered
    /// for masking, so its words stay readable in every message.
    pub fn not_secret(value: T) -> Self {
        Self(value)
    }

    /// The value itself. Every call site is a place where the secret leaves
    /// the redacting wrapper, so keep them few and obvious.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-canary".to_string());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2-canary");
    }

    #[test]
    fn a_new_secret_is_masked_in_text_from_outside_at_once() {
        let s = Secret::new("registered-on-creation-4f1c".to_string());
        let echoed = format!("400: bad request {}", s.expose());
        assert_eq!(super::redact::redact(&echoed), "400: bad request ***");
    }
}
