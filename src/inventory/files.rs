//! The TOML file format of `inventory/`, as read: every value keeps its byte
//! span so validation can point at it, and every table denies unknown keys so
//! a typo is an error rather than a silently ignored setting.

use super::model::Tier;
use super::products::NodeClass;
use serde::Deserialize;
use toml::Spanned;

/// `[provider]` in `kiwi.toml`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Provider")]
#[schemars(description = "Defaults for every order.")]
#[schemars(extend("oneOf" = [{"required": ["ssh_public_key"]}, {"required": ["ssh_public_key_file"]}]))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    #[schemars(
        with = "String",
        description = "Contabo region, e.g. \"EU\" (Nürnberg)."
    )]
    pub(crate) region: Spanned<String>,
    #[schemars(
        with = "String",
        description = "OS image by name, e.g. \"ubuntu-24.04\"."
    )]
    pub(crate) image: Spanned<String>,
    #[schemars(
        with = "Option<String>",
        description = "The operator's OpenSSH public key, installed on every node; never a private key."
    )]
    pub(crate) ssh_public_key: Option<Spanned<String>>,
    #[schemars(
        with = "Option<String>",
        description = "Instead of ssh_public_key: a .pub file, relative to the inventory directory."
    )]
    pub(crate) ssh_public_key_file: Option<Spanned<String>>,
    #[schemars(
        with = "i64",
        description = "Contract period of new orders in months: 1, 3, 6 or 12."
    )]
    pub(crate) period: Spanned<i64>,
    #[serde(default)]
    #[schemars(
        with = "Vec<String>",
        description = "Required. The networks the operator reaches SSH (22) and the Kubernetes API (6443) from, as CIDR (\"198.51.100.0/24\", \"2001:db8::/48\"); every other source is dropped by each node's firewall. [] leaves SSH and the API open to the internet (accepted with a warning)."
    )]
    pub(crate) operator_networks: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A price in `[prices]`: a string of euros, though we recognise the other
/// spellings an operator might try so the error can say what to write. The
/// float itself is not kept: the suggestion quotes the digits as written
/// (`8.490`), which the parsed float (`8.49`) has lost.
#[derive(Debug)]
pub(crate) enum RawPrice {
    Text(String),
    Integer(i64),
    Float,
}

impl<'de> Deserialize<'de> for RawPrice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PriceVisitor)
    }
}

/// Accepts the three spellings of a price; anything else (a boolean, an
/// array, a table, a date) is one error saying what a price looks like.
struct PriceVisitor;

impl serde::de::Visitor<'_> for PriceVisitor {
    type Value = RawPrice;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a monthly price in euros as a string, e.g. \"8.49\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPrice, E> {
        Ok(RawPrice::Text(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawPrice, E> {
        Ok(RawPrice::Integer(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawPrice, E> {
        Ok(RawPrice::Integer(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawPrice, E> {
        Ok(RawPrice::Float)
    }
}

/// `[k3s]` in `kiwi.toml`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "K3s")]
#[schemars(description = "k3s for the dedicated Mesh and Fleet clusters.")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawK3s {
    #[schemars(
        with = "String",
        description = "Pinned k3s release, e.g. \"v1.31.4+k3s1\"."
    )]
    pub(crate) version: Spanned<String>,
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        extend("enum" = ["wireguard-native", "vxlan"]),
        description = "flannel's backend for new clusters: \"wireguard-native\" (default: pod traffic between nodes encrypted) or \"vxlan\" (unencrypted). Written to new servers' config.yaml; a running cluster's backend is never changed."
    )]
    pub(crate) flannel_backend: Option<Spanned<String>>,
}

/// A port in `public_tcp_ports` / `public_udp_ports`: a number, or a range
/// written as a string (`"30000-32767"`).
#[derive(Debug, Clone)]
pub(crate) enum RawPort {
    Number(i64),
    Text(String),
    Other,
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortVisitor)
    }
}

/// Accepts a number or a string; anything else is reported by validation
/// with what a port looks like.
struct PortVisitor;

impl<'de> serde::de::Visitor<'de> for PortVisitor {
    type Value = RawPort;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a port number (443) or a range as a string (\"30000-32767\")")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawPort, E> {
        Ok(RawPort::Number(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawPort, E> {
        Ok(RawPort::Number(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPort, E> {
        Ok(RawPort::Text(v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawPort, E> {
        Ok(RawPort::Other)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawPort, E> {
        Ok(RawPort::Other)
    }
}

/// `[firewall]` in a customer file: the cluster's public ports.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Firewall")]
#[schemars(
    description = "What each node's firewall opens to anyone. Internal ports are opened to the cluster's members only, SSH and the API to [provider] operator_networks."
)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFirewall {
    #[serde(default = "default_public_tcp")]
    #[schemars(
        with = "Vec<u16>",
        description = "TCP ports open to anyone (default [80, 443], for ingress); a range as a string, \"30000-32767\"."
    )]
    pub(crate) public_tcp_ports: Vec<Spanned<RawPort>>,
    #[serde(default)]
    #[schemars(
        with = "Vec<u16>",
        description = "UDP ports open to anyone (default []), e.g. the customer's WireGuard endpoint port."
    )]
    pub(crate) public_udp_ports: Vec<Spanned<RawPort>>,
}

/// `[core.firewall]` in `kiwi.toml`: the Core cluster's public ports, and
/// what only the operator knows about its network.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "CoreFirewall")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCoreFirewall {
    #[serde(default = "default_public_tcp")]
    #[schemars(
        with = "Vec<u16>",
        description = "TCP ports open to anyone (default [80, 443])."
    )]
    pub(crate) public_tcp_ports: Vec<Spanned<RawPort>>,
    #[serde(default)]
    #[schemars(
        with = "Vec<u16>",
        description = "UDP ports open to anyone (default [])."
    )]
    pub(crate) public_udp_ports: Vec<Spanned<RawPort>>,
    #[schemars(
        with = "Vec<String>",
        description = "Required. The ports the Core cluster's CNI uses between nodes, as protocol/port or protocol/first-last, e.g. [\"udp/4789\", \"tcp/179\"] for Calico VXLAN and BGP; opened to the cluster's members only. [] for a CNI that needs none."
    )]
    pub(crate) cni_ports: Option<Spanned<Vec<Spanned<String>>>>,
    #[schemars(
        with = "Vec<String>",
        description = "Required. The Core cluster's pod and service networks (IPv4 CIDR), allowed to reach the kubelet (10250) on each worker."
    )]
    pub(crate) cluster_networks: Option<Spanned<Vec<Spanned<String>>>>,
}

impl RawFirewall {
    /// The ports of a customer file without `[firewall]`.
    pub(crate) fn default_ports() -> RawFirewall {
        RawFirewall {
            public_tcp_ports: default_public_tcp(),
            public_udp_ports: Vec::new(),
        }
    }
}

fn default_public_tcp() -> Vec<Spanned<RawPort>> {
    [80, 443]
        .into_iter()
        .map(|p| Spanned::new(0..0, RawPort::Number(p)))
        .collect()
}

/// `[state]` in `kiwi.toml`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "State")]
#[schemars(
    description = "Where the apply lock and the order journal live. Without this table: local."
)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    #[schemars(
        with = "super::model::StateBackend",
        description = "\"core-cluster\": a Lease and a ConfigMap in the Core cluster's kiwi-infra namespace, shared by every operator; \"local\": <inventory>/.kiwi/, one machine only."
    )]
    pub(crate) backend: Spanned<String>,
    #[serde(default)]
    #[schemars(
        with = "u32",
        range(min = 3, max = 3600),
        description = "core-cluster only: seconds the lease lives without renewal (3..=3600, default 60)."
    )]
    pub(crate) lease_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        extend("enum" = ["ssh", "kubeconfig"]),
        description = "core-cluster only: \"ssh\" (default): kubectl on a Core control-plane node over SSH, host keys pinned; \"kubeconfig\": kubectl on the operator's machine with the operator's own kubeconfig."
    )]
    pub(crate) access: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        description = "access = \"kubeconfig\" only: the kubeconfig context to use (default: kubectl's current context)."
    )]
    pub(crate) context: Option<Spanned<String>>,
}

/// `[core]` in `kiwi.toml`, without its pools (read one by one).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Core")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCore {
    #[schemars(
        with = "String",
        description = "API server the workers join, host:port."
    )]
    pub(crate) api_endpoint: Spanned<String>,
    #[schemars(
        with = "String",
        description = "Version of the control plane, e.g. \"v1.31.4\"."
    )]
    pub(crate) kubernetes_version: Spanned<String>,
    #[schemars(
        with = "Vec<RawControlPlaneNode>",
        description = "The existing HA control plane (an odd number of nodes); not ordered by kiwi-infra."
    )]
    pub(crate) control_plane: Spanned<Vec<RawControlPlaneNode>>,
    #[serde(default)]
    #[schemars(
        with = "Option<RawCoreFirewall>",
        description = "Required: the Core workers' firewall (cni_ports and cluster_networks; public ports)."
    )]
    pub(crate) firewall: Option<Spanned<RawCoreFirewall>>,
    #[serde(default)]
    #[schemars(
        description = "When true, no destructive step (drain, delete, cancel) is ever planned here."
    )]
    pub(crate) protected: bool,
    #[serde(default)]
    #[schemars(
        with = "Option<bool>",
        extend("const" = false),
        description = "Not supported for Core: its control plane is not ordered by kiwi-infra and is not in a Contabo private network, so its workers cannot move cluster traffic there. Only false is accepted."
    )]
    pub(crate) private_network: Option<Spanned<bool>>,
}

/// One entry of `core.control_plane`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "ControlPlaneNode")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControlPlaneNode {
    #[schemars(with = "String", description = "Kubernetes node name.")]
    pub(crate) name: Spanned<String>,
    #[schemars(
        with = "String",
        description = "Address kiwi-infra reaches it at, for join tokens."
    )]
    pub(crate) address: Spanned<String>,
}

/// A pool: `[core.pools.<name>]`, `[pools.<name>]` or `[servers]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Pool")]
#[schemars(description = "A pool of identical nodes.")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    #[schemars(with = "NodeClass")]
    pub(crate) class: Spanned<NodeClass>,
    #[schemars(schema_with = "super::schema::product_id")]
    pub(crate) product: Spanned<String>,
    #[schemars(
        with = "u32",
        description = "Number of nodes (k3s servers: an odd number, 3 for HA)."
    )]
    pub(crate) count: Spanned<i64>,
    #[serde(default)]
    #[schemars(
        with = "std::collections::BTreeMap<String, String>",
        description = "Extra node labels, outside kiwistack.io/ (which kiwi-infra sets itself)."
    )]
    pub(crate) labels: std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    #[schemars(
        with = "Vec<String>",
        description = "Taints as key=value:Effect, e.g. \"workload.kiwistack.io/realtime=true:NoSchedule\"."
    )]
    pub(crate) taints: Vec<Spanned<String>>,
}

/// The top-level keys of a customer file, without `servers` and `pools`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "CustomerHead")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomerHead {
    #[schemars(with = "Tier")]
    pub(crate) tier: Spanned<Tier>,
    #[serde(default)]
    #[schemars(
        description = "When true, no destructive step (drain, delete, cancel) is ever planned for this cluster."
    )]
    pub(crate) protected: bool,
    #[serde(default)]
    #[schemars(with = "Option<RawFirewall>")]
    pub(crate) firewall: Option<RawFirewall>,
    #[serde(default)]
    #[schemars(
        with = "bool",
        description = "Mesh and Fleet only: when true, nodes are ordered with Contabo's private-networking add-on (priced by [prices] private_networking in kiwi.toml), join the private network kiwi-<customer> and use their private addresses for node-ip and cluster traffic."
    )]
    pub(crate) private_network: Option<Spanned<bool>>,
}

/// A named pool as read; `pool` is `None` when its table had errors (already
/// reported), but the name still takes part in duplicate checks.
#[derive(Debug)]
pub(crate) struct NamedPool {
    pub(crate) name: Spanned<String>,
    pub(crate) pool: Option<RawPool>,
}

/// `kiwi.toml` as read.
#[derive(Debug, Default)]
pub(crate) struct MainFile {
    /// False when the file is not TOML: then nothing is known about its
    /// tables, and what other files need from it is not reported missing.
    pub(crate) parsed: bool,
    pub(crate) provider: Option<RawProvider>,
    pub(crate) provider_span: Option<std::ops::Range<usize>>,
    pub(crate) prices: Vec<(Spanned<String>, Spanned<RawPrice>)>,
    /// True when `[prices]` was read (its entries may still be wrong): only
    /// then is a product without an entry an error of its own.
    pub(crate) prices_read: bool,
    pub(crate) k3s: Option<RawK3s>,
    /// Span of the `k3s` key when present, even if its table had errors.
    pub(crate) k3s_span: Option<std::ops::Range<usize>>,
    pub(crate) state: Option<RawState>,
    pub(crate) core: Option<RawCore>,
    pub(crate) core_span: Option<std::ops::Range<usize>>,
    pub(crate) core_pools: Vec<NamedPool>,
}

/// `customers/<name>.toml` as read.
#[derive(Debug)]
pub(crate) struct CustomerFile {
    pub(crate) name: String,
    pub(crate) head: Option<RawCustomerHead>,
    /// Span of the `servers` key, and the pool if it read cleanly.
    pub(crate) servers: Option<(std::ops::Range<usize>, Option<RawPool>)>,
    /// Span of the `pools` key when present.
    pub(crate) pools_span: Option<std::ops::Range<usize>>,
    pub(crate) pools: Vec<NamedPool>,
}
