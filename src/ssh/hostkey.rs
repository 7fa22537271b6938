//! SSH host keys kiwi-infra chooses for its nodes.
//!
//! Trust-on-first-use would let whoever answers first at a new IP address
//! impersonate the node. So kiwi-infra generates each node's ed25519 host
//! key pair itself, when it orders or reinstalls the node: the private half
//! goes only into the node's user data (cloud-init's `ssh_keys`), the public
//! half into the inventory's known-hosts file (see [`super::known_hosts`]).
//! The private half lives in a [`Secret`] and is never written anywhere else.
//!
//! The seed comes from the operating system's CSPRNG (`rand`'s `OsRng`).
//! `ssh-key` is used for the OpenSSH encodings only; its own random source
//! would need `rand_core` 0.6, while this workspace uses `rand` 0.9, and a
//! 32-byte seed is all an ed25519 key is.

use rand::TryRngCore;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};

use crate::secret::Secret;

/// A node's host key pair, in OpenSSH encodings.
#[derive(Debug, Clone)]
pub struct HostKey {
    private_openssh: Secret<String>,
    public_openssh: String,
}

/// Generating or encoding a host key failed.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The operating system's random source failed.
    #[error("cannot read random bytes from the operating system for the host key of {node}")]
    Random {
        /// Node name.
        node: String,
        /// The OS error.
        #[source]
        source: rand::rand_core::OsError,
    },
    /// The key could not be encoded (should not happen for ed25519).
    #[error("cannot encode the host key of {node}")]
    Encode {
        /// Node name.
        node: String,
        /// Why.
        #[source]
        source: ssh_key::Error,
    },
}

impl HostKey {
    /// A new random ed25519 key pair for `node` (used as the key's comment).
    pub fn generate(node: &str) -> Result<Self, HostKeyError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|source| HostKeyError::Random {
                node: node.to_string(),
                source,
            })?;
        let key = Self::from_seed(seed, node);
        // Best effort: the seed is the private key.
        seed.fill(0);
        key
    }

    /// The key pair derived from `seed`. Deterministic, so only for test
    /// fixtures and snapshots; nodes get [`HostKey::generate`].
    pub fn from_seed(seed: [u8; 32], node: &str) -> Result<Self, HostKeyError> {
        let encode = |source| HostKeyError::Encode {
            node: node.to_string(),
            source,
        };
        let keypair = KeypairData::from(Ed25519Keypair::from_seed(&seed));
        let private = PrivateKey::new(keypair, node).map_err(encode)?;
        let private_openssh = private.to_openssh(LineEnding::LF).map_err(encode)?;
        // The public key without its comment: the known-hosts line and the
        // user data carry the node's name elsewhere.
        let mut public = private.public_key().clone();
        public.set_comment("");
        let public_openssh = public.to_openssh().map_err(encode)?;
        Ok(HostKey {
            private_openssh: Secret::new(private_openssh.as_str().to_string()),
            public_openssh: public_openssh.trim().to_string(),
        })
    }

    /// The private key, `-----BEGIN OPENSSH PRIVATE KEY-----` … (with a
    /// final line break).
    pub fn private_openssh(&self) -> &Secret<String> {
        &self.private_openssh
    }

    /// The public key, `ssh-ed25519 AAAA…` (no comment).
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_ed25519_in_openssh_format_and_differ() {
        let a = HostKey::generate("kiwi-a-server-01").unwrap();
        let b = HostKey::generate("kiwi-a-server-01").unwrap();
        assert!(a.public_openssh().starts_with("ssh-ed25519 AAAA"));
        assert_eq!(a.public_openssh().split(' ').count(), 2);
        assert!(a
            .private_openssh()
            .expose()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(a
            .private_openssh()
            .expose()
            .ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        assert_ne!(a.public_openssh(), b.public_openssh());
        // The private key parses back to the same public key.
        let parsed = PrivateKey::from_openssh(a.private_openssh().expose()).unwrap();
        let mut public = parsed.public_key().clone();
        public.set_comment("");
        assert_eq!(public.to_openssh().unwrap(), a.public_openssh());
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let key = HostKey::generate("n").unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn seeded_keys_are_stable() {
        let a = HostKey::from_seed([7; 32], "n").unwrap();
        let b = HostKey::from_seed([7; 32], "n").unwrap();
        assert_eq!(a.public_openssh(), b.public_openssh());
        assert_eq!(a.private_openssh().expose(), b.private_openssh().expose());
    }
}
