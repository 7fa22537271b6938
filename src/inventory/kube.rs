//! Kubernetes' rules for node labels and taints, checked before any node
//! exists: a label the kubelet may not set on itself, or a malformed taint,
//! would only fail much later, on the node, in the middle of a join.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The label prefix kiwi-infra sets on every node itself; pools may not
/// override it.
pub const KIWI_LABEL_PREFIX: &str = "kiwistack.io/";

/// True for a label key in kiwi-infra's own namespace: `kiwistack.io/…`
/// or a subdomain of it (`workload.kiwistack.io/…`, where `validate`
/// steers pool labels). On a node without kiwi-infra's record of the
/// labels it set (joined by an older release), these are the labels known
/// to be kiwi-infra's.
pub fn in_kiwi_namespace(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(domain, _)| domain == "kiwistack.io" || domain.ends_with(".kiwistack.io"))
}

/// True for a label key in a domain that Kubernetes or k3s themselves own
/// (`kubernetes.io`, `k8s.io`, `k3s.io` and their subdomains: hostname,
/// arch, os, node roles, instance type, …). kiwi-infra never removes such a
/// label, whatever a node's record says: a record is text on the node, and
/// a tampered one must not strip a node of the labels its cluster relies on.
pub fn in_system_domain(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return false;
    };
    ["kubernetes.io", "k8s.io", "k3s.io"]
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

/// Labels under `kubernetes.io` / `k8s.io` that the NodeRestriction admission
/// plugin still lets a kubelet set on its own node.
pub(crate) const KUBELET_ALLOWED_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Label prefixes under `kubernetes.io` a kubelet may use freely.
pub(crate) const KUBELET_ALLOWED_PREFIXES: &[&str] =
    &["kubelet.kubernetes.io/", "node.kubernetes.io/"];

/// Checks a label (or taint) key: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix)
            .map_err(|why| format!("label key `{key}` has an invalid prefix: {why}"))?;
    }
    check_qualified_name_part(name)
        .map_err(|why| format!("label key `{key}` has an invalid name: {why}"))
}

/// Checks a label (or taint) value: empty, or at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, beginning and ending alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_qualified_name_part(value).map_err(|why| format!("label value `{value}` {why}"))
}

/// Checks the labels a node registers with (k3s `node-label`, kubelet
/// `--node-labels`): both tools read them as `key=value` items, kubelet as
/// one comma-separated list, so a key or value outside Kubernetes' grammar
/// (a `,`, a second `=`) would add labels nobody asked for.
pub fn check_node_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    for (key, value) in labels {
        check_label_key(key)?;
        check_label_value(value)?;
    }
    Ok(())
}

/// True when the NodeRestriction admission plugin lets a kubelet put this
/// label on its own node, which is how joins set labels.
pub fn kubelet_may_set(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|d| prefix == *d || prefix.ends_with(&format!(".{d}")));
    !restricted
        || KUBELET_ALLOWED_LABELS.contains(&key)
        || KUBELET_ALLOWED_PREFIXES.iter().any(|p| key.starts_with(p))
}

fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("expected 1 to 253 characters".into());
    }
    for part in s.split('.') {
        if !is_dns_label(part) {
            return Err(format!(
                "`{part}` is not a DNS label; expected lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// True for an RFC 1123 label (defined beside [`crate::ids::ClusterName`],
/// whose rule it is, so the inventory and the id share one definition).
pub use crate::ids::is_dns_label;

fn check_qualified_name_part(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty; expected 1 to 63 characters".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "is {} characters long; expected at most 63",
            s.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !s.chars().all(ok_char) || !ends_ok {
        return Err(
            "is malformed; expected letters, digits, `-`, `_` and `.`, starting and ending \
             with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// What a taint does to pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New pods are not scheduled.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// Running pods are evicted too.
    NoExecute,
}

impl TaintEffect {
    /// The effect as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A node taint. In the inventory it is written like kubectl does:
/// `key=value:Effect` or `key:Effect`. Read from JSON (a saved plan), its key
/// and value are checked like the inventory's, since both end up in node
/// configuration and command lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "TaintFields")]
pub struct Taint {
    /// Taint key (label-key syntax).
    pub key: String,
    /// Optional value (label-value syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Effect.
    pub effect: TaintEffect,
}

/// A taint as written in JSON, before its key and value are checked.
#[derive(Deserialize)]
struct TaintFields {
    key: String,
    #[serde(default)]
    value: Option<String>,
    effect: TaintEffect,
}

impl TryFrom<TaintFields> for Taint {
    type Error = String;
    fn try_from(f: TaintFields) -> Result<Self, String> {
        check_label_key(&f.key).map_err(|why| format!("taint {why}"))?;
        if let Some(value) = &f.value {
            check_label_value(value).map_err(|why| format!("taint {why}"))?;
        }
        Ok(Taint {
            key: f.key,
            value: f.value,
            effect: f.effect,
        })
    }
}

impl Taint {
    /// Parses `key=value:Effect` or `key:Effect`.
    pub fn parse(s: &str) -> Result<Taint, String> {
        let expected = "expected `key=value:Effect` or `key:Effect` with Effect one of \
                        NoSchedule, PreferNoSchedule, NoExecute";
        let Some((key_value, effect)) = s.rsplit_once(':') else {
            return Err(format!("taint `{s}` has no effect; {expected}"));
        };
        let effect = match effect {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            other => {
                return Err(format!(
                    "taint `{s}` has unknown effect `{other}`; {expected}"
                ))
            }
        };
        let (key, value) = match key_value.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (key_value, None),
        };
        check_label_key(key).map_err(|why| format!("taint `{s}`: {why}; {expected}"))?;
        if let Some(v) = &value {
            check_label_value(v).map_err(|why| format!("taint `{s}`: {why}; {expected}"))?;
        }
        Ok(Taint {
            key: key.to_string(),
            value,
            effect,
        })
    }

    /// True for taints Kubernetes itself manages (not-ready, unschedulable,
    /// control-plane, cloud-provider); the planner never adds or removes them.
    pub fn is_system(&self) -> bool {
        let Some((prefix, _)) = self.key.split_once('/') else {
            return false;
        };
        ["kubernetes.io", "k8s.io"]
            .iter()
            .any(|d| prefix == *d || prefix.ends_with(&format!(".{d}")))
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_may_not_set_node_role_labels() {
        assert!(!kubelet_may_set("node-role.kubernetes.io/worker"));
        assert!(!kubelet_may_set("kubernetes.io/role"));
        assert!(!kubelet_may_set("example.k8s.io/x"));
    }

    #[test]
    fn kubelet_may_set_the_allowed_kubernetes_labels_and_any_other_domain() {
        assert!(kubelet_may_set("topology.kubernetes.io/zone"));
        assert!(kubelet_may_set("node.kubernetes.io/anything"));
        assert!(kubelet_may_set("kubelet.kubernetes.io/x"));
        assert!(kubelet_may_set("workload.kiwistack.io/realtime"));
        assert!(kubelet_may_set("plain"));
    }

    #[test]
    fn label_syntax_follows_kubernetes() {
        assert!(check_label_key("example.com/name_1.x").is_ok());
        assert!(check_label_key("-bad").is_err());
        assert!(check_label_key("Upper.Case/x").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("a b").is_err());
    }

    #[test]
    fn a_taint_read_from_json_is_checked_like_one_from_the_inventory() {
        let good = r#"{"key":"example.com/gpu","value":"true","effect":"NoSchedule"}"#;
        let t: Taint = serde_json::from_str(good).unwrap();
        assert_eq!(t.to_string(), "example.com/gpu=true:NoSchedule");
        for bad in [
            r#"{"key":"a,b","effect":"NoSchedule"}"#,
            r#"{"key":"a","value":"x y","effect":"NoSchedule"}"#,
            r#"{"key":"a","value":"b\n- c","effect":"NoExecute"}"#,
        ] {
            assert!(serde_json::from_str::<Taint>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn taints_round_trip_through_their_kubectl_form() {
        for s in ["a=b:NoSchedule", "example.com/gpu:NoExecute"] {
            assert_eq!(Taint::parse(s).map(|t| t.to_string()), Ok(s.to_string()));
        }
        assert!(Taint::parse("a=b").is_err());
        assert!(Taint::parse("a=b:Sometimes").is_err());
        assert!(Taint::parse("=b:NoSchedule").is_err());
    }
}
