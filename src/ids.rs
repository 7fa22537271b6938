//! The identifiers that travel through every layer, defined once: Contabo's
//! ids as its API sends them (the client, the observation, the plan and the
//! executor all use these same types, so nothing is converted at a
//! boundary), Kubernetes node names, and cluster names.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty) $(, $copy:ident)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, $($copy,)? PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// Contabo's numeric instance identifier (`instanceId`, int64).
    InstanceId(i64), Copy
);
id_newtype!(
    /// Identifier of a stored secret (`secretId`); instances take these in
    /// `sshKeys`.
    SecretId(i64), Copy
);
id_newtype!(
    /// Identifier of a tag (`tagId`).
    TagId(i64), Copy
);
id_newtype!(
    /// Contabo's `imageId` (a UUID).
    ImageId(String)
);
id_newtype!(
    /// A Kubernetes node name; for nodes kiwi-infra ordered, the slot name.
    NodeName(String)
);

/// A cluster's name: `core`, or a customer's name (its file stem). It is a
/// DNS label ([`is_dns_label`], the rule the inventory applies to customer
/// names), parsed where the inventory is validated and where `apply` hands
/// a plan's step to the node layer (a plan file is untrusted), so the
/// cluster reads and node steps only ever see a valid one. Serialized as
/// the plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(String);

/// A cluster name that does not fit [`ClusterName`]'s rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadClusterName {
    /// Not a DNS label.
    #[error(
        "cluster name `{shown}` is not a DNS label; expected 1 to 63 lowercase letters, digits \
         and `-`, starting and ending with a letter or digit"
    )]
    NotADnsLabel {
        /// The name, escaped for the terminal (it is untrusted).
        shown: String,
    },
    /// A step that acts on a cluster names none.
    #[error("the step names no cluster; expected the cluster it acts on")]
    Missing,
}

impl ClusterName {
    /// `name` as a cluster name.
    ///
    /// # Errors
    /// [`BadClusterName::NotADnsLabel`] when it is not a DNS label.
    pub fn parse(name: &str) -> Result<Self, BadClusterName> {
        if is_dns_label(name) {
            Ok(Self(name.to_string()))
        } else {
            Err(BadClusterName::NotADnsLabel {
                shown: crate::text::escape_for_terminal(name).into_owned(),
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Borrow<str> for ClusterName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ClusterName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ClusterName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ClusterName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for ClusterName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClusterName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// True for an RFC 1123 label: 1–63 lowercase alphanumerics or `-`, not
/// starting or ending with `-` (Kubernetes' rule for many names; the
/// inventory's for customer, pool and cluster names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_name_that_is_no_dns_label_is_refused_and_shown_escaped() {
        for bad in [
            "",
            "Acme",
            "-acme",
            "acme-",
            "a/b",
            "a\u{1b}[2Jb",
            &"a".repeat(64),
        ] {
            let err = ClusterName::parse(bad).unwrap_err();
            assert!(
                matches!(&err, BadClusterName::NotADnsLabel { shown } if !shown.contains('\u{1b}')),
                "{bad:?}: {err}"
            );
        }
        let core = ClusterName::parse(crate::inventory::CORE_CLUSTER).unwrap();
        assert_eq!(core.as_str(), "core");
        assert_eq!(serde_json::to_string(&core).unwrap(), "\"core\"");
        assert!(serde_json::from_str::<ClusterName>("\"Core\"").is_err());
    }
}
