//! The TOML file format of `inventory/`, as read: every value keeps its byte
//! span so validation can point at it, and every table denies unknown keys so
//! a typo is an error rather than a silently ignored setting.

use super::model::Tier;
use super::products::NodeClass;
use serde::Deserialize;
use toml::Spanned;

/// `[provider]` in `kiwi.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub(crate) region: Spanned<String>,
    pub(crate) image: Spanned<String>,
    pub(crate) ssh_public_key: Option<Spanned<String>>,
    pub(crate) ssh_public_key_file: Option<Spanned<String>>,
    pub(crate) period: Spanned<i64>,
}

/// A price in `[prices]`: a string of euros, though we recognise the other
/// spellings an operator might try so the error can say what to write.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPrice {
    Text(String),
    Integer(i64),
    Float(f64),
}

/// `[k3s]` in `kiwi.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawK3s {
    pub(crate) version: Spanned<String>,
}

/// `[core]` in `kiwi.toml`, without its pools (read one by one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCore {
    pub(crate) api_endpoint: Spanned<String>,
    pub(crate) kubernetes_version: Spanned<String>,
    pub(crate) control_plane: Spanned<Vec<RawControlPlaneNode>>,
    #[serde(default)]
    pub(crate) protected: bool,
}

/// One entry of `core.control_plane`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControlPlaneNode {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
}

/// A pool: `[core.pools.<name>]`, `[pools.<name>]` or `[servers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) class: Spanned<NodeClass>,
    pub(crate) product: Spanned<String>,
    pub(crate) count: Spanned<i64>,
    #[serde(default)]
    pub(crate) labels: std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub(crate) taints: Vec<Spanned<String>>,
}

/// The top-level keys of a customer file, without `servers` and `pools`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomerHead {
    pub(crate) tier: Spanned<Tier>,
    #[serde(default)]
    pub(crate) protected: bool,
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
    pub(crate) provider: Option<RawProvider>,
    pub(crate) provider_span: Option<std::ops::Range<usize>>,
    pub(crate) prices: Vec<(Spanned<String>, Spanned<RawPrice>)>,
    pub(crate) k3s: Option<RawK3s>,
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
