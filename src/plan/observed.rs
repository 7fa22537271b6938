//! What exists, as observed: the Contabo account (instances, tags, secrets,
//! the OS image) and, when kiwi-infra can reach them, the clusters' nodes.
//! Plain data, filled by `observe/` and serialisable so test fixtures can be
//! JSON files.

use crate::inventory::{NodeClass, Taint};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

pub use crate::ids::{ImageId, InstanceId, NodeName, SecretId, TagId};

/// Everything the planner compares the inventory with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// Every instance of the account, whoever ordered it.
    pub instances: Vec<Instance>,
    /// Tags that exist, by name.
    #[serde(default)]
    pub tags: BTreeMap<String, TagId>,
    /// Secrets that exist, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretId>,
    /// The inventory's OS image, if the API knows an image of that name.
    #[serde(default)]
    pub image: Option<ResolvedImage>,
    /// Per cluster name: its nodes, or `None` when it could not be observed
    /// (no node access yet). A cluster missing from the map is unobserved too.
    #[serde(default)]
    pub clusters: BTreeMap<String, Option<ClusterObservation>>,
    /// Per slot name: the instance the order journal last recorded as
    /// placed for it (`.kiwi/orders.jsonl`). What kiwi-infra itself
    /// recorded: a machine renamed in the Contabo panel is still its slot's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub journal_placed: BTreeMap<String, InstanceId>,
    /// True when [`Self::secrets`] and [`Self::image`] were not read from
    /// Contabo (they are empty then). Observation reads them only when a
    /// plan would order or reinstall ([`crate::plan::needs_order_inputs`]),
    /// so that a plan with nothing to buy costs two requests less.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub order_inputs_unread: bool,
    /// Contabo private networks named like a cluster's (`kiwi-<cluster>`),
    /// by name; read only when some cluster has `private_network = true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub private_networks: BTreeMap<String, super::private_network::PrivateNetwork>,
}

/// The OS image the inventory names, as found through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedImage {
    /// Image name, as in the inventory.
    pub name: String,
    /// Its id.
    pub id: ImageId,
}

/// One Contabo instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// `instanceId`.
    pub id: InstanceId,
    /// `displayName`; for kiwi-infra's instances, the slot name.
    pub display_name: String,
    /// `productId`, e.g. `V94`.
    pub product_id: String,
    /// `region`, e.g. `EU`.
    pub region: String,
    /// `status`.
    pub status: InstanceStatus,
    /// Main IPv4 address, if any yet. Parsed where it enters (see
    /// `observe/`): a value the API sends that is not an IPv4 address is no
    /// address, and is kept in [`Instance::odd_ipv4`] for a warning only.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// What the API sent as the address when it was not an IPv4 address.
    /// Shown (escaped) in a warning; never used to reach anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odd_ipv4: Option<String>,
    /// `createdDate`.
    pub created_date: DateTime<Utc>,
    /// `cancelDate`: set once the instance is cancelled; it runs until then.
    #[serde(default)]
    pub cancel_date: Option<NaiveDate>,
    /// `imageId`.
    #[serde(default)]
    pub image_id: Option<ImageId>,
    /// Names of the tags assigned to it.
    #[serde(default)]
    pub tags: BTreeSet<String>,
}

/// An instance's `status`; values the spec does not list yet are kept in
/// [`InstanceStatus::Unknown`] rather than failing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceStatus {
    /// Being provisioned after an order.
    Provisioning,
    /// No OS installed.
    Uninstalled,
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Failed; reinstallable.
    Error,
    /// OS being installed.
    Installing,
    /// Contabo's own `unknown`.
    StatusUnknown,
    /// Contabo staff must act.
    ManualProvisioning,
    /// The product is sold out.
    ProductNotAvailable,
    /// The account must be verified.
    VerificationRequired,
    /// Booted into rescue.
    Rescue,
    /// Waiting for payment.
    PendingPayment,
    /// Contabo's own `other`.
    Other,
    /// Root password being reset.
    ResetPassword,
    /// A value the spec does not list.
    Unknown(String),
}

const STATUS_NAMES: &[(InstanceStatus, &str)] = &[
    (InstanceStatus::Provisioning, "provisioning"),
    (InstanceStatus::Uninstalled, "uninstalled"),
    (InstanceStatus::Running, "running"),
    (InstanceStatus::Stopped, "stopped"),
    (InstanceStatus::Error, "error"),
    (InstanceStatus::Installing, "installing"),
    (InstanceStatus::StatusUnknown, "unknown"),
    (InstanceStatus::ManualProvisioning, "manual_provisioning"),
    (InstanceStatus::ProductNotAvailable, "product_not_available"),
    (
        InstanceStatus::VerificationRequired,
        "verification_required",
    ),
    (InstanceStatus::Rescue, "rescue"),
    (InstanceStatus::PendingPayment, "pending_payment"),
    (InstanceStatus::Other, "other"),
    (InstanceStatus::ResetPassword, "reset_password"),
];

impl InstanceStatus {
    /// The API's spelling.
    pub fn as_str(&self) -> &str {
        if let InstanceStatus::Unknown(s) = self {
            return s;
        }
        STATUS_NAMES
            .iter()
            .find(|(status, _)| status == self)
            .map_or("", |(_, name)| name)
    }

    /// Parses the API's spelling; anything else is kept as `Unknown`.
    pub fn parse(s: &str) -> Self {
        STATUS_NAMES
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(
                || InstanceStatus::Unknown(s.to_string()),
                |(status, _)| status.clone(),
            )
    }

    /// On its way to running, or running: a node can be joined once it is.
    pub fn is_usable(&self) -> bool {
        matches!(
            self,
            InstanceStatus::Running
                | InstanceStatus::Provisioning
                | InstanceStatus::Installing
                | InstanceStatus::ResetPassword
        )
    }

    /// Broken in a way a reinstall fixes, without a new order.
    pub fn needs_reinstall(&self) -> bool {
        matches!(self, InstanceStatus::Uninstalled | InstanceStatus::Error)
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InstanceStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InstanceStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(InstanceStatus::parse(&s))
    }
}

/// The nodes of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterObservation {
    /// Every node of the cluster.
    pub nodes: Vec<Node>,
    /// Instances of the cluster that are no node yet and carry no trace of
    /// an earlier join attempt (checked over SSH): they simply join. A
    /// running instance that is no node and not listed here is a failed
    /// bootstrap, which is reinstalled before it joins again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pristine: BTreeSet<String>,
    /// Per node (kiwi-infra's machines of the cluster that answered over
    /// SSH): its host firewall as `sudo nft -j list table inet kiwi`
    /// reported it. A node missing here was not read; its firewall is
    /// neither checked nor changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub firewalls: BTreeMap<String, NodeFirewall>,
    /// Per k3s server node: the flannel backend its
    /// `/etc/rancher/k3s/config.yaml` selects (`flannel-backend`; absent
    /// means `vxlan`, k3s' default). Servers that could not be read are
    /// missing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flannel_backends: BTreeMap<String, ObservedBackend>,
}

/// What a node's `table inet kiwi` holds, as far as the planner compares
/// it (parsed from the node's answer by `crate::firewall::parse_listing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeFirewall {
    /// The table exists.
    Present {
        /// The `peers4` set's elements; `None` when the set is missing.
        peers: Option<BTreeSet<ipnet::IpNet>>,
        /// The `operators4` and `operators6` sets' elements.
        operators: BTreeSet<ipnet::IpNet>,
        /// The table's sets (type, flags), chains (hook, type, priority,
        /// policy) and every rule, in the model `render` writes from
        /// ([`crate::firewall::Ruleset`]), compared whole with what the
        /// plan wants.
        ruleset: crate::firewall::Ruleset,
    },
    /// The node has no `table inet kiwi` (never loaded, or deleted by hand).
    Absent,
    /// The node answered something that is not a listing; the reason is
    /// kiwi-infra's own words (the node's text never travels further).
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// A k3s server's flannel backend, as its config selects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ObservedBackend {
    /// One kiwi-infra knows.
    Known(crate::firewall::FlannelBackend),
    /// Another one: its name when it is one k3s documents as a flannel
    /// backend, else `None` (shown as unknown: whatever else the node's
    /// config holds there, perhaps the cluster's token, is never shown).
    Other(Option<OtherBackend>),
}

/// A flannel backend k3s documents (`k3s server --help`, docs.k3s.io
/// "Basic Network Options") that kiwi-infra does not run. The only names
/// of a node's backend that are ever shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OtherBackend {
    /// `none`: flannel off, another CNI.
    None,
    /// `host-gw`: routes between nodes, unencapsulated.
    HostGw,
    /// `ipsec`: strongSwan, removed in k3s v1.27.
    Ipsec,
    /// `wireguard`: the userspace WireGuard backend, removed in k3s v1.26.
    Wireguard,
}

impl OtherBackend {
    /// The name k3s takes; `None` for any other text.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(OtherBackend::None),
            "host-gw" => Some(OtherBackend::HostGw),
            "ipsec" => Some(OtherBackend::Ipsec),
            "wireguard" => Some(OtherBackend::Wireguard),
            _ => Option::None,
        }
    }

    /// The name k3s takes.
    pub fn as_str(self) -> &'static str {
        match self {
            OtherBackend::None => "none",
            OtherBackend::HostGw => "host-gw",
            OtherBackend::Ipsec => "ipsec",
            OtherBackend::Wireguard => "wireguard",
        }
    }
}

/// One Kubernetes node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Node name.
    pub name: NodeName,
    /// All its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// All its taints.
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// Whether its `Ready` condition is true.
    #[serde(default)]
    pub ready: bool,
    /// Its `InternalIP` and `ExternalIP` addresses (IPv4 only), as the
    /// cluster reports them: how a machine renamed in the Contabo panel is
    /// still recognised as its node's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Ipv4Addr>,
    /// The label keys kiwi-infra recorded as its own on this node (its
    /// annotation [`MANAGED_LABELS_ANNOTATION`]), or `None` when the node
    /// carries no such record (joined by an older kiwi-infra, or by hand).
    /// A label in this set that the inventory no longer wants is removed;
    /// any other label outside `kiwistack.io/` belongs to other software.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_labels: Option<BTreeSet<String>>,
}

/// The node annotation in which kiwi-infra records which labels it set:
/// the keys, sorted, separated by commas (a label key never holds one).
pub const MANAGED_LABELS_ANNOTATION: &str = "kiwistack.io/managed-labels";

/// The Contabo tags that mark an instance as kiwi-infra's.
pub mod tags {
    use super::NodeClass;

    /// The start of every tag kiwi-infra assigns; only tags named so are
    /// read from Contabo.
    pub const PREFIX: &str = "kiwi-";

    /// Present on every instance kiwi-infra owns.
    pub const MANAGED: &str = "kiwi-managed";

    /// The tag naming an owned instance's cluster.
    pub fn cluster(name: &str) -> String {
        format!("kiwi-cluster-{name}")
    }

    /// The tag naming an owned instance's node class.
    pub fn class(class: NodeClass) -> String {
        format!("kiwi-class-{class}")
    }

    /// Present on every instance of a cluster the inventory protects
    /// (`protected = true`): no destructive step is ever planned for it,
    /// even when its customer's file is renamed or removed.
    pub const PROTECTED: &str = "kiwi-protected";

    /// Prefix of the cluster tags.
    pub const CLUSTER_PREFIX: &str = "kiwi-cluster-";

    /// Every cluster an instance's tags name (normally one; none when the
    /// cluster tags were not observed for it, several when someone added
    /// more: then its cluster is unknown).
    pub fn clusters_of<'a>(tags: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
        tags.into_iter()
            .filter_map(|t| t.strip_prefix(CLUSTER_PREFIX))
            .collect()
    }
}

impl Instance {
    /// True when kiwi-infra owns it (it carries the `kiwi-managed` tag).
    pub fn is_owned(&self) -> bool {
        self.tags.contains(tags::MANAGED)
    }

    /// True once it has been cancelled; it never counts as capacity again.
    pub fn is_cancelled(&self) -> bool {
        self.cancel_date.is_some()
    }
}

impl Observed {
    /// True when `instance` is kiwi-infra's: it carries the ownership tag,
    /// or the order journal claims it for its name (an order a run cut
    /// short before tagging it, see [`Self::journal_placed`]). Such a
    /// machine is read (pristine or not) and reached like an owned one.
    pub fn is_ours(&self, instance: &Instance) -> bool {
        instance.is_owned() || self.journal_placed.get(&instance.display_name) == Some(&instance.id)
    }

    /// The observation of a cluster, `None` when it was not observed.
    pub fn cluster(&self, name: &str) -> Option<&ClusterObservation> {
        self.clusters.get(name).and_then(Option::as_ref)
    }
}

impl ClusterObservation {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.0 == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_fourteen_documented_statuses_round_trip_and_others_survive() {
        assert_eq!(STATUS_NAMES.len(), 14);
        for (status, name) in STATUS_NAMES {
            assert_eq!(InstanceStatus::parse(name), *status);
            assert_eq!(status.as_str(), *name);
        }
        let odd = InstanceStatus::parse("migrating");
        assert_eq!(odd, InstanceStatus::Unknown("migrating".into()));
        assert_eq!(odd.as_str(), "migrating");
    }
}
