//! The identifiers that travel through every layer, defined once: Contabo's
//! ids as its API sends them (the client, the observation, the plan and the
//! executor all use these same types, so nothing is converted at a
//! boundary), and Kubernetes node names.

use serde::{Deserialize, Serialize};
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
