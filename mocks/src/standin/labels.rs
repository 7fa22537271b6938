//! Label and taint syntax as Kubernetes checks it, with the same error texts, so that a
//! malformed label from kiwi-infra fails on a simulated node as it would on a real one.

use serde::{Deserialize, Serialize};

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Key (label-key syntax).
    pub key: String,
    /// Value; Kubernetes treats absent and empty alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// `key=value:Effect` or `key:Effect`, as kubectl prints taints.
    pub fn spec(&self) -> String {
        match &self.value {
            Some(v) if !v.is_empty() => format!("{}={}:{}", self.key, v, self.effect),
            _ => format!("{}:{}", self.key, self.effect),
        }
    }
}

/// The taint effects Kubernetes knows.
pub const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

const NAME_MAX: usize = 63;

fn is_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= NAME_MAX
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Checks a label key (`[prefix/]name`); the error is apimachinery's text.
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return Err(format!(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') in {key:?}"
            ));
        }
    }
    if !is_name_part(name) {
        return Err(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') in {key:?}"
        ));
    }
    Ok(())
}

/// Checks a label value; the error is apimachinery's text.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') in {value:?}"
        ))
    }
}

/// Parses `key=value:Effect` or `key:Effect` (kubelet's `--register-with-taints`,
/// k3s's `node-taint`, `kubectl taint`).
pub fn parse_taint(spec: &str) -> Result<Taint, String> {
    let Some((key_value, effect)) = spec.rsplit_once(':') else {
        return Err(format!("invalid taint spec: {spec}"));
    };
    if !EFFECTS.contains(&effect) {
        return Err(format!(
            "invalid taint effect: {effect}, unsupported taint effect"
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (key_value, None),
    };
    check_key(key).map_err(|e| format!("invalid taint spec: {spec}, {e}"))?;
    if let Some(v) = &value {
        check_value(v).map_err(|e| format!("invalid taint spec: {spec}, {e}"))?;
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
    })
}

/// Parses `key=value` (k3s's `node-label`, kubelet's `--node-labels` items).
pub fn parse_label(spec: &str) -> Result<(String, String), String> {
    let (key, value) = spec.split_once('=').unwrap_or((spec, ""));
    check_key(key).map_err(|e| format!("invalid label {spec:?}: {e}"))?;
    check_value(value).map_err(|e| format!("invalid label {spec:?}: {e}"))?;
    Ok((key.to_string(), value.to_string()))
}

/// Labels in the `kubernetes.io` namespaces a kubelet may set on itself.
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

/// The kubelet refuses `--node-labels` in the `kubernetes.io` / `k8s.io` namespaces other
/// than its own set (NodeRestriction); k3s's `node-label` goes through the same flag. So a
/// `node-role.kubernetes.io/...` label can only be set later, through the API.
pub fn check_kubelet_labels<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let refused: Vec<&str> = keys
        .into_iter()
        .filter(|key| {
            let Some((namespace, _)) = key.split_once('/') else {
                return false;
            };
            let restricted =
                in_namespace(namespace, "kubernetes.io") || in_namespace(namespace, "k8s.io");
            let allowed = KUBELET_LABELS.contains(key)
                || in_namespace(namespace, "kubelet.kubernetes.io")
                || in_namespace(namespace, "node.kubernetes.io");
            restricted && !allowed
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let mut allowed = KUBELET_LABELS.to_vec();
    allowed.sort_unstable();
    Err(format!(
        "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]\n\
         --node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix \
         (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set ({})",
        refused.join(" "),
        allowed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_like_kubectl() {
        let t = parse_taint("dedicated=db:NoSchedule").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.spec(), "dedicated=db:NoSchedule");
        assert!(parse_taint("dedicated=db:Never").is_err());
        assert!(parse_taint("dedicated=db").is_err());
    }

    #[test]
    fn kubelet_refuses_node_role_labels() {
        assert!(check_kubelet_labels(["node-role.kubernetes.io/worker"]).is_err());
        assert!(
            check_kubelet_labels(["node.kubernetes.io/pool", "kiwi/tier", "kubernetes.io/os"])
                .is_ok()
        );
    }

    #[test]
    fn label_syntax_is_checked() {
        assert!(parse_label("kiwistack.io/pool=fast").is_ok());
        assert!(parse_label("Bad_Prefix/x=1").is_err());
        assert!(parse_label("k=bad value").is_err());
    }
}
