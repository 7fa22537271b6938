//! Reading and changing Kubernetes nodes with `kubectl` on a node that can
//! reach the cluster's API (a k3s server, a kubeadm control-plane node).
//!
//! Parsing a `NodeList` is pure, so it is tested on its own; the commands are
//! the ones `docs/node-contract.md` lists.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::inventory::{kube, Taint, TaintEffect};
use crate::plan::{Node, NodeName};
use crate::ssh::shell_quote as quote;

/// How `kubectl` is invoked on a cluster's API node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kubectl {
    /// `sudo k3s kubectl` on a k3s server.
    K3s,
    /// `sudo kubectl --kubeconfig /etc/kubernetes/admin.conf` on a kubeadm
    /// control-plane node.
    Kubeadm,
}

impl Kubectl {
    /// The command prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::K3s => "sudo k3s kubectl",
            Self::Kubeadm => "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf",
        }
    }

    /// `get nodes -o json`.
    pub fn get_nodes(self) -> String {
        format!("{} get nodes -o json", self.prefix())
    }

    /// Sets `key=value` on `node`, replacing another value.
    pub fn set_label(self, node: &str, key: &str, value: &str) -> String {
        format!(
            "{} label node {} {}={} --overwrite",
            self.prefix(),
            quote(node),
            quote(key),
            quote(value)
        )
    }

    /// Removes label `key` from `node`.
    pub fn remove_label(self, node: &str, key: &str) -> String {
        format!(
            "{} label node {} {}-",
            self.prefix(),
            quote(node),
            quote(key)
        )
    }

    /// Records on `node` which label keys kiwi-infra set (the annotation
    /// [`crate::plan::MANAGED_LABELS_ANNOTATION`]), replacing the record.
    pub fn record_labels<'a>(
        self,
        node: &str,
        keys: impl IntoIterator<Item = &'a String>,
    ) -> String {
        let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
        format!(
            "{} annotate node {} {} --overwrite",
            self.prefix(),
            quote(node),
            quote(&format!(
                "{}={}",
                crate::plan::MANAGED_LABELS_ANNOTATION,
                keys.join(",")
            ))
        )
    }

    /// Adds `taint` to `node`, replacing one with the same key and effect.
    pub fn set_taint(self, node: &str, taint: &Taint) -> String {
        format!(
            "{} taint node {} {} --overwrite",
            self.prefix(),
            quote(node),
            quote(&taint.to_string())
        )
    }

    /// Removes `taint` from `node`.
    pub fn remove_taint(self, node: &str, taint: &Taint) -> String {
        format!(
            "{} taint node {} {}-",
            self.prefix(),
            quote(node),
            quote(&taint.to_string())
        )
    }

    /// Cordons and drains `node`: evictions respect PodDisruptionBudgets
    /// (no `--disable-eviction`, no `--force`), DaemonSet pods stay, pods
    /// with emptyDir volumes are evicted, and it gives up after `timeout`.
    pub fn drain(self, node: &str, timeout: std::time::Duration) -> String {
        format!(
            "{} drain {} --ignore-daemonsets --delete-emptydir-data --timeout={}s",
            self.prefix(),
            quote(node),
            timeout.as_secs().max(1)
        )
    }

    /// Deletes the node object `node`.
    pub fn delete_node(self, node: &str) -> String {
        format!("{} delete node {}", self.prefix(), quote(node))
    }
}

#[derive(Deserialize)]
struct NodeList {
    kind: String,
    #[serde(default)]
    items: Vec<NodeItem>,
}

#[derive(Deserialize)]
struct NodeItem {
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    taints: Vec<TaintItem>,
}

#[derive(Deserialize)]
struct TaintItem {
    key: String,
    #[serde(default)]
    value: Option<String>,
    effect: String,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    addresses: Vec<AddressItem>,
}

#[derive(Deserialize)]
struct AddressItem {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

/// Parses `kubectl get nodes -o json`: a node's own word, so it is parsed
/// here, at the edge. Taints with an effect this build does not know, and
/// labels and taints whose key or value breaks Kubernetes' grammar (which
/// the API server would never have accepted, and which could read as a
/// `kubectl` option), are skipped: nothing kiwi-infra plans can name them.
/// Errors quote the node's output only as a redacted, escaped excerpt.
pub fn parse_node_list(json: &str) -> Result<Vec<Node>, String> {
    use crate::secret::redact::excerpt;
    let list: NodeList = serde_json::from_str(json)
        .map_err(|e| format!("not a Kubernetes NodeList: {}", excerpt(&e.to_string())))?;
    if list.kind != "NodeList" && list.kind != "List" {
        return Err(format!(
            "expected kind NodeList, got {}",
            excerpt(&list.kind)
        ));
    }
    Ok(list
        .items
        .into_iter()
        .map(|item| Node {
            name: NodeName(item.metadata.name),
            labels: item
                .metadata
                .labels
                .into_iter()
                .filter(|(k, v)| {
                    kube::check_label_key(k).is_ok() && kube::check_label_value(v).is_ok()
                })
                .collect(),
            taints: item
                .spec
                .taints
                .into_iter()
                .filter(|t| {
                    kube::check_label_key(&t.key).is_ok()
                        && t.value
                            .as_deref()
                            .is_none_or(|v| kube::check_label_value(v).is_ok())
                })
                .filter_map(|t| {
                    let effect = match t.effect.as_str() {
                        "NoSchedule" => TaintEffect::NoSchedule,
                        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                        "NoExecute" => TaintEffect::NoExecute,
                        _ => return None,
                    };
                    Some(Taint {
                        key: t.key,
                        value: t.value.filter(|v| !v.is_empty()),
                        effect,
                    })
                })
                .collect(),
            ready: item
                .status
                .conditions
                .iter()
                .any(|c| c.kind == "Ready" && c.status == "True"),
            // A node's own word: only well-formed IPv4 addresses are kept.
            addresses: item
                .status
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP" || a.kind == "ExternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect(),
            managed_labels: managed_labels(&item.metadata.annotations),
        })
        .collect())
}

/// Reads kiwi-infra's record of the labels it set from a node's
/// annotations: keys that break Kubernetes' grammar are dropped (they could
/// read as a `kubectl` option), and a value that is not a string is no
/// record at all.
fn managed_labels(
    annotations: &BTreeMap<String, serde_json::Value>,
) -> Option<std::collections::BTreeSet<String>> {
    let value = annotations
        .get(crate::plan::MANAGED_LABELS_ANNOTATION)?
        .as_str()?;
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty() && kube::check_label_key(k).is_ok())
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn the_record_of_managed_labels_keeps_only_well_formed_keys() {
        let list = r#"{"kind": "NodeList", "items": [
          {"metadata": {"name": "a", "annotations": {
             "kiwistack.io/managed-labels": "kiwistack.io/pool,workload.kiwistack.io/storage,--all,x y"}}},
          {"metadata": {"name": "b"}},
          {"metadata": {"name": "c", "annotations": {"kiwistack.io/managed-labels": 3}}}
        ]}"#;
        let nodes = parse_node_list(list).unwrap();
        let keys: Vec<&str> = nodes[0]
            .managed_labels
            .as_ref()
            .unwrap()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["kiwistack.io/pool", "workload.kiwistack.io/storage"]);
        assert_eq!(nodes[1].managed_labels, None);
        assert_eq!(nodes[2].managed_labels, None);
    }

    #[test]
    fn labels_and_taints_that_break_the_grammar_are_never_read() {
        let list = r#"{"kind": "NodeList", "items": [
          {"metadata": {"name": "kiwi-a-server-01",
                        "labels": {"kiwistack.io/x; rm -rf /": "1", "--kubeconfig": "x",
                                   "kiwistack.io/pool": "web"}},
           "spec": {"taints": [{"key": "--kubeconfig=/tmp/x", "effect": "NoSchedule"},
                               {"key": "ok.example.com/rt", "value": "a b", "effect": "NoSchedule"},
                               {"key": "ok.example.com/rt", "value": "true", "effect": "NoSchedule"}]}}
        ]}"#;
        let nodes = parse_node_list(list).unwrap();
        assert_eq!(
            nodes[0].labels.keys().collect::<Vec<_>>(),
            vec!["kiwistack.io/pool"]
        );
        assert_eq!(nodes[0].taints.len(), 1);
        assert_eq!(nodes[0].taints[0].value.as_deref(), Some("true"));
    }

    use super::*;

    const LIST: &str = r#"{
      "apiVersion": "v1", "kind": "NodeList",
      "items": [
        {"metadata": {"name": "kiwi-acme-server-01",
                      "labels": {"kiwistack.io/node-class": "vps", "kubernetes.io/os": "linux"}},
         "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                             {"key": "workload.kiwistack.io/realtime", "value": "true", "effect": "NoSchedule"},
                             {"key": "x", "effect": "SomethingNew"}]},
         "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                   {"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "kiwi-acme-general-01"},
         "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
      ]}"#;

    #[test]
    fn a_node_list_gives_labels_taints_and_readiness() {
        let nodes = parse_node_list(LIST).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].name.0, "kiwi-acme-server-01");
        assert_eq!(nodes[0].labels["kiwistack.io/node-class"], "vps");
        assert!(nodes[0].ready);
        let taints: Vec<String> = nodes[0].taints.iter().map(ToString::to_string).collect();
        assert_eq!(
            taints,
            [
                "node-role.kubernetes.io/control-plane:NoSchedule",
                "workload.kiwistack.io/realtime=true:NoSchedule"
            ]
        );
        assert!(!nodes[1].ready, "Unknown is not Ready");
        assert!(nodes[1].labels.is_empty());
    }

    #[test]
    fn anything_but_a_node_list_is_an_error() {
        assert!(parse_node_list("{\"kind\": \"PodList\", \"items\": []}").is_err());
        assert!(parse_node_list("error: the server doesn't have a resource type").is_err());
    }

    #[test]
    fn commands_quote_what_a_shell_would_split() {
        assert_eq!(
            Kubectl::K3s.set_label("n1", "kiwistack.io/pool", "general"),
            "sudo k3s kubectl label node n1 kiwistack.io/pool=general --overwrite"
        );
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        let taint = Taint::parse("workload.kiwistack.io/realtime=true:NoSchedule").unwrap();
        assert_eq!(
            Kubectl::Kubeadm.remove_taint("n1", &taint),
            "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf taint node n1 \
             workload.kiwistack.io/realtime=true:NoSchedule-"
        );
    }
}
