//! The desired state, as read from `inventory/` and validated: plain data the
//! planner can trust (every pool's product exists, has a price and matches
//! its class; every name is DNS-safe; versions, addresses and endpoints are
//! parsed into their types; no string holds a control character or a line
//! separator; k3s server counts are odd).

use super::kube::Taint;
use super::products::NodeClass;
use super::values::{ApiEndpoint, Host, K3sVersion, KubernetesVersion};
use crate::firewall::{ClusterFirewall, FlannelBackend, NodeRole};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// The cluster name of the shared Core cluster.
pub const CORE_CLUSTER: &str = "core";

/// The pool name of a k3s cluster's servers.
pub const SERVER_POOL: &str = "server";
/// The `[prices]` key of the private-networking add-on's monthly price per
/// instance. Contabo's product ids are `V` and digits, so it never clashes
/// with one.
pub const PRIVATE_NETWORKING_PRICE_KEY: &str = "private_networking";

/// An amount of money in euro cents. Money is never a float.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money {
    /// Euro cents; negative for savings.
    pub cents: i64,
}

impl Money {
    /// An amount from cents.
    pub const fn from_cents(cents: i64) -> Self {
        Self { cents }
    }

    /// Parses a euro amount written `"7.99"`, `"12"` or `"0.5"`.
    pub fn parse_euros(s: &str) -> Option<Money> {
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || frac.len() > 2 || !digits(frac) {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().ok()? * 10,
            _ => frac.parse().ok()?,
        };
        whole
            .checked_mul(100)?
            .checked_add(frac)
            .map(Money::from_cents)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.cents < 0 { "-" } else { "" };
        let abs = self.cents.unsigned_abs();
        write!(f, "{sign}€{}.{:02}", abs / 100, abs % 100)
    }
}

/// A customer's tier (architecture A7).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Namespaces in the shared Core cluster; adds no nodes.
    Core,
    /// Dedicated k3s cluster.
    Mesh,
    /// Dedicated k3s cluster, plus device management.
    Fleet,
}

impl Tier {
    /// Lowercase name, as in labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Core => "core",
            Tier::Mesh => "mesh",
            Tier::Fleet => "fleet",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Provider defaults from `[provider]` in `kiwi.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// Contabo region, e.g. `EU`.
    pub region: String,
    /// OS image name, resolved to an image id through the API (letters,
    /// digits, `.`, `_` and `-`).
    pub image: String,
    /// The operator's OpenSSH public key (public, so safe to print), as
    /// OpenSSH writes it: `type base64 [comment]`, the comment free of
    /// control characters and line separators.
    pub ssh_public_key: String,
    /// Contract period in months: 1, 3, 6 or 12.
    pub period: u8,
    /// The networks SSH and the Kubernetes API are open to on every node
    /// (`[provider] operator_networks`, CIDR without host bits). Empty: the
    /// operator chose to leave them open to anyone (warned about).
    pub operator_networks: Vec<IpNet>,
}

impl Provider {
    /// True when SSH and the Kubernetes API are open to anyone: no operator
    /// network (`[]`, the explicit choice) or one that is a whole address
    /// family (`0.0.0.0/0`, `::/0`), which means the same and is warned
    /// about the same way.
    pub fn operators_open_to_anyone(&self) -> bool {
        crate::firewall::admits_anyone(&self.operator_networks)
    }

    /// How much of the internet the operator networks cover when that is a
    /// very large part without being everyone (warned about):
    /// [`crate::firewall::wide_operator_networks`].
    pub fn operators_wide(&self) -> Option<String> {
        crate::firewall::wide_operator_networks(&self.operator_networks)
    }
}

/// The whole desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Provider defaults.
    pub provider: Provider,
    /// Monthly price per product id, kept by the operator.
    pub prices: BTreeMap<String, Money>,
    /// Monthly price of Contabo's private-networking add-on per instance
    /// (`[prices] private_networking`); present whenever a cluster sets
    /// `private_network = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_networking_price: Option<Money>,
    /// Clusters with nodes: Core first, then one per Mesh/Fleet customer in
    /// name order.
    pub clusters: Vec<ClusterSpec>,
    /// Every customer with its tier, Core-tier ones included.
    pub customers: Vec<Customer>,
    /// Where the apply lock and the order journal live (`[state]`).
    #[serde(default)]
    pub state: StateSettings,
}

/// Where the apply lock and the order journal are kept: `[state]` in
/// `kiwi.toml`. Without the table, `local`; apply says which it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSettings {
    /// The store.
    pub backend: StateBackend,
    /// How the Core cluster is reached (core-cluster only).
    #[serde(default)]
    pub access: StateAccess,
    /// How long the cluster lease lives without renewal, in seconds
    /// (3..=3600, 60 unless `lease_seconds` says otherwise). A holder that
    /// dies blocks others this long at most.
    pub lease_seconds: u32,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: StateBackend::Local,
            access: StateAccess::Ssh,
            lease_seconds: DEFAULT_LEASE_SECONDS,
        }
    }
}

/// How kiwi-infra reaches the Core cluster's API for the lock and the
/// journal (`[state] access`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateAccess {
    /// kubectl on a Core control-plane node over SSH, host keys pinned in
    /// `known_hosts`: no credential beyond the operator's SSH key.
    #[default]
    Ssh,
    /// kubectl on the operator's machine with the operator's kubeconfig
    /// (kubectl's `KUBECONFIG`, else `~/.kube/config`).
    Kubeconfig {
        /// The kubeconfig context to use; kubectl's current one if `None`.
        context: Option<String>,
    },
}

/// The default `[state] lease_seconds`.
pub const DEFAULT_LEASE_SECONDS: u32 = 60;

/// The store of the apply lock and the order journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// `<inventory>/.kiwi/`: one machine only.
    Local,
    /// A Lease and a ConfigMap in the Core cluster's `kiwi-infra`
    /// namespace, reached with kubectl on a control-plane node over SSH:
    /// every operator and CI job shares them.
    CoreCluster,
}

/// A customer file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// File stem of `customers/<name>.toml`.
    pub name: String,
    /// Tier.
    pub tier: Tier,
}

/// A cluster and the nodes it should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// `core`, or the customer's name.
    pub name: String,
    /// The tier its nodes are labelled with.
    pub tier: Tier,
    /// Kubeadm (Core) or k3s (Mesh/Fleet), with what joining needs.
    pub kind: ClusterKind,
    /// When true, no destructive step is ever planned for this cluster.
    pub protected: bool,
    /// When true (a customer file's `private_network = true`), its
    /// instances are ordered with the private-networking add-on, join the
    /// Contabo private network `kiwi-<cluster>`, and use their private
    /// addresses for node-ip and cluster traffic. Never true for Core.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private_network: bool,
    /// Pools in inventory order; for k3s the server pool comes first.
    pub pools: Vec<PoolSpec>,
    /// What its nodes' firewalls open beyond SSH and the Kubernetes ports
    /// (`[firewall]`, `[core.firewall]`; for k3s, flannel's ports and k3s'
    /// default pod and service networks).
    pub firewall: ClusterFirewall,
}

impl ClusterSpec {
    /// The existing control-plane nodes the inventory names (kubeadm's
    /// Core cluster); empty for k3s clusters, whose servers are slots.
    pub fn control_plane(&self) -> &[ControlPlaneNode] {
        match &self.kind {
            ClusterKind::Kubeadm { control_plane, .. } => control_plane,
            ClusterKind::K3s { .. } => &[],
        }
    }

    /// The slot names of all the cluster's pools, in inventory order.
    pub fn slot_names(&self) -> impl Iterator<Item = String> + '_ {
        self.pools
            .iter()
            .flat_map(|p| (1..=p.count).map(|i| slot_name(&self.name, &p.name, i)))
    }

    /// The slot names of the cluster's k3s server pools (none for kubeadm
    /// clusters), in inventory order.
    pub fn server_slots(&self) -> impl Iterator<Item = String> + '_ {
        self.pools
            .iter()
            .filter(|p| p.role == PoolRole::K3sServer)
            .flat_map(|p| (1..=p.count).map(|i| slot_name(&self.name, &p.name, i)))
    }

    /// The IPv4 addresses of the control-plane nodes the inventory names by
    /// address (a node named by host name has none here): members of the
    /// cluster for its nodes' firewalls.
    pub fn control_plane_ipv4(&self) -> impl Iterator<Item = std::net::Ipv4Addr> + '_ {
        self.control_plane().iter().filter_map(|n| match n.address {
            Host::V4(ip) => Some(ip),
            _ => None,
        })
    }
}

/// How nodes join a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "snake_case")]
pub enum ClusterKind {
    /// Upstream Kubernetes with an existing HA control plane; workers join
    /// with `kubeadm join`.
    Kubeadm {
        /// `host:port` of the API server.
        api_endpoint: ApiEndpoint,
        /// Kubernetes version of the cluster, e.g. `v1.31.4`.
        kubernetes_version: KubernetesVersion,
        /// The existing control-plane nodes, which kiwi-infra does not order.
        control_plane: Vec<ControlPlaneNode>,
    },
    /// k3s with embedded etcd.
    K3s {
        /// Pinned k3s version, e.g. `v1.31.4+k3s1`.
        version: K3sVersion,
        /// flannel's backend for new servers (`[k3s] flannel_backend`).
        flannel_backend: FlannelBackend,
    },
}

/// An existing control-plane node of the Core cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneNode {
    /// Kubernetes node name.
    pub name: String,
    /// Address kiwi-infra reaches it at (for join tokens).
    pub address: Host,
}

/// What nodes of a pool do in their cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolRole {
    /// k3s server (embedded etcd member).
    K3sServer,
    /// k3s agent.
    K3sAgent,
    /// kubeadm worker of the Core cluster.
    KubeadmWorker,
}

impl From<PoolRole> for NodeRole {
    /// What a pool's nodes are, for the ports their firewall opens.
    fn from(role: PoolRole) -> NodeRole {
        match role {
            PoolRole::K3sServer => NodeRole::K3sServer,
            PoolRole::K3sAgent => NodeRole::K3sAgent,
            PoolRole::KubeadmWorker => NodeRole::KubeadmWorker,
        }
    }
}

/// A pool of identical nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Pool name (DNS label).
    pub name: String,
    /// Server, agent or kubeadm worker.
    pub role: PoolRole,
    /// VPS or VDS.
    pub class: NodeClass,
    /// Contabo product id.
    pub product: String,
    /// Number of nodes.
    pub count: u32,
    /// Extra labels, on top of the `kiwistack.io/*` ones.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
}

/// The deterministic name of a node slot, used as the instance's
/// `displayName` and the Kubernetes node name, so a rerun finds what an
/// earlier run ordered.
pub fn slot_name(cluster: &str, pool: &str, index: u32) -> String {
    format!("kiwi-{cluster}-{pool}-{index:02}")
}

/// The pool of `name` when it has `cluster`'s slot form
/// `kiwi-<cluster>-<pool>-<NN>`: a pool name of lower-case letters, digits
/// and dashes, and an index of at least two digits.
pub fn slot_pool(name: &str, cluster: &str) -> Option<String> {
    let rest = name
        .strip_prefix("kiwi-")?
        .strip_prefix(cluster)?
        .strip_prefix('-')?;
    let (pool, index) = rest.rsplit_once('-')?;
    let index_ok = index.len() >= 2 && index.bytes().all(|b| b.is_ascii_digit());
    let pool_ok = !pool.is_empty()
        && !pool.starts_with('-')
        && !pool.ends_with('-')
        && pool
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (index_ok && pool_ok).then(|| pool.to_string())
}

impl Desired {
    /// Every node slot name the inventory asks for, with its cluster. A
    /// name two clusters both produce (`acme` pool `eu-west` and `acme-eu`
    /// pool `west`) appears twice.
    pub fn slot_names(&self) -> impl Iterator<Item = (&ClusterSpec, String)> + '_ {
        self.clusters
            .iter()
            .flat_map(|c| c.slot_names().map(move |slot| (c, slot)))
    }

    /// The cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterSpec> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The monthly price of a product, if the operator gave one.
    pub fn price(&self, product: &str) -> Option<Money> {
        self.prices.get(product).copied()
    }

    /// A sha256 over the canonical JSON form, so a saved plan can tell
    /// whether the inventory changed since.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }
}

impl PoolSpec {
    /// The labels every node of this pool carries: the pool's extra labels
    /// plus the `kiwistack.io/*` labels kiwi-infra sets itself.
    pub fn node_labels(&self, cluster: &ClusterSpec) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("kiwistack.io/node-class".into(), self.class.to_string());
        labels.insert("kiwistack.io/cluster".into(), cluster.name.clone());
        labels.insert("kiwistack.io/pool".into(), self.name.clone());
        labels.insert("kiwistack.io/tier".into(), cluster.tier.to_string());
        labels
    }
}

/// Lowercase hex of a byte string.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euro_amounts_parse_to_exact_cents() {
        assert_eq!(Money::parse_euros("7.99"), Some(Money::from_cents(799)));
        assert_eq!(Money::parse_euros("12"), Some(Money::from_cents(1200)));
        assert_eq!(Money::parse_euros("0.5"), Some(Money::from_cents(50)));
        assert_eq!(Money::parse_euros("7.999"), None);
        assert_eq!(Money::parse_euros("-1"), None);
        assert_eq!(Money::parse_euros("€7"), None);
    }

    #[test]
    fn money_prints_as_euros() {
        assert_eq!(Money::from_cents(8396).to_string(), "€83.96");
        assert_eq!(Money::from_cents(-1505).to_string(), "-€15.05");
    }

    #[test]
    fn slot_names_are_two_digit_and_one_based() {
        assert_eq!(slot_name("core", "general", 1), "kiwi-core-general-01");
    }
}
