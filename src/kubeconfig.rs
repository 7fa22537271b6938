//! Admin kubeconfigs for operators: the file a control node holds, with its
//! server rewritten to the cluster's endpoint and its cluster, user and
//! context named after the cluster, so several clusters merge into one file.

use serde_norway::{Mapping, Value};

use crate::secret::Secret;

/// What can go wrong with a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Not a kubeconfig (the content is not quoted: it holds credentials).
    #[error("{what} is not a kubeconfig: {reason}")]
    Malformed {
        /// Which file.
        what: String,
        /// Why.
        reason: String,
    },
}

fn malformed(what: &str, reason: impl Into<String>) -> KubeconfigError {
    KubeconfigError::Malformed {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// Rewrites a single-cluster admin kubeconfig: its server becomes `server`
/// and its cluster, user and context are all named `name`.
pub fn rename(text: &Secret, name: &str, server: &str) -> Result<Secret, KubeconfigError> {
    let source = "the node's admin kubeconfig";
    let mut doc: Value =
        serde_norway::from_str(text.expose()).map_err(|_| malformed(source, "not YAML"))?;
    let first = |doc: &mut Value, list: &str| -> Result<Mapping, KubeconfigError> {
        doc.get(list)
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .and_then(Value::as_mapping)
            .cloned()
            .ok_or_else(|| malformed(source, format!("no entry in `{list}`")))
    };
    let mut cluster = first(&mut doc, "clusters")?;
    let mut user = first(&mut doc, "users")?;
    cluster.insert("name".into(), name.into());
    if let Some(inner) = cluster.get_mut("cluster").and_then(Value::as_mapping_mut) {
        inner.insert("server".into(), server.into());
    } else {
        return Err(malformed(source, "the cluster entry has no `cluster`"));
    }
    user.insert("name".into(), name.into());
    let mut context = Mapping::new();
    let mut inner = Mapping::new();
    inner.insert("cluster".into(), name.into());
    inner.insert("user".into(), name.into());
    context.insert("name".into(), name.into());
    context.insert("context".into(), Value::Mapping(inner));
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Config".into());
    out.insert(
        "clusters".into(),
        Value::Sequence(vec![Value::Mapping(cluster)]),
    );
    out.insert("users".into(), Value::Sequence(vec![Value::Mapping(user)]));
    out.insert(
        "contexts".into(),
        Value::Sequence(vec![Value::Mapping(context)]),
    );
    out.insert("current-context".into(), name.into());
    out.insert("preferences".into(), Value::Mapping(Mapping::new()));
    serde_norway::to_string(&Value::Mapping(out))
        .map(Secret::new)
        .map_err(|e| malformed(source, e.to_string()))
}

/// Merges `addition` (from [`rename`]) into `existing`: entries of the same
/// name are replaced, others kept; the current context becomes the new one.
pub fn merge(existing: &Secret, addition: &Secret) -> Result<Secret, KubeconfigError> {
    let mut base: Value = if existing.expose().trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_norway::from_str(existing.expose())
            .map_err(|_| malformed("the existing kubeconfig", "not YAML"))?
    };
    let add: Value = serde_norway::from_str(addition.expose())
        .map_err(|_| malformed("the new kubeconfig", "not YAML"))?;
    let map = base
        .as_mapping_mut()
        .ok_or_else(|| malformed("the existing kubeconfig", "not a mapping"))?;
    map.entry("apiVersion".into()).or_insert("v1".into());
    map.entry("kind".into()).or_insert("Config".into());
    for list in ["clusters", "users", "contexts"] {
        let incoming = add
            .get(list)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let entry = map
            .entry(list.into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        let items = entry.as_sequence_mut().ok_or_else(|| {
            malformed("the existing kubeconfig", format!("`{list}` is not a list"))
        })?;
        for new in incoming {
            let name = new.get("name").cloned();
            items.retain(|old| old.get("name") != name.as_ref());
            items.push(new);
        }
    }
    if let Some(current) = add.get("current-context") {
        map.insert("current-context".into(), current.clone());
    }
    serde_norway::to_string(&base)
        .map(Secret::new)
        .map_err(|e| malformed("the merged kubeconfig", e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtY2FuYXJ5
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5LWNhbmFyeQ==
";

    #[test]
    fn the_server_and_names_follow_the_cluster() {
        let out = rename(&Secret::new(K3S.into()), "acme", "https://127.0.10.5:6443").unwrap();
        let v: Value = serde_norway::from_str(out.expose()).unwrap();
        assert_eq!(v["clusters"][0]["name"], "acme");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.10.5:6443"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0EtY2FuYXJ5"
        );
        assert_eq!(v["users"][0]["name"], "acme");
        assert_eq!(v["users"][0]["user"]["client-key-data"], "a2V5LWNhbmFyeQ==");
        assert_eq!(v["contexts"][0]["context"]["cluster"], "acme");
        assert_eq!(v["current-context"], "acme");
    }

    #[test]
    fn merging_replaces_same_names_and_keeps_others() {
        let acme = rename(&Secret::new(K3S.into()), "acme", "https://127.0.10.5:6443").unwrap();
        let globex = rename(
            &Secret::new(K3S.into()),
            "globex",
            "https://127.0.10.9:6443",
        )
        .unwrap();
        let both = merge(&acme, &globex).unwrap();
        let acme_again =
            rename(&Secret::new(K3S.into()), "acme", "https://127.0.10.6:6443").unwrap();
        let merged = merge(&both, &acme_again).unwrap();
        let v: Value = serde_norway::from_str(merged.expose()).unwrap();
        let names: Vec<&str> = v["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["globex", "acme"]);
        assert_eq!(
            v["clusters"][1]["cluster"]["server"],
            "https://127.0.10.6:6443"
        );
        assert_eq!(v["current-context"], "acme");
        let empty = merge(&Secret::new(String::new()), &globex).unwrap();
        assert!(empty.expose().contains("globex"));
    }

    #[test]
    fn a_broken_file_is_refused_without_quoting_it() {
        let err = rename(&Secret::new("key-canary: [".into()), "a", "https://x").unwrap_err();
        assert!(!err.to_string().contains("canary"));
    }
}
