//! Namespaced objects the API server keeps besides nodes: `Namespace`, `ConfigMap` and
//! `coordination.k8s.io/v1` `Lease`, with the real API's optimistic concurrency, so a client's
//! compare-and-swap is exercised honestly:
//! - every write hands out a new `metadata.resourceVersion`;
//! - a create of an object that exists is refused with `409 AlreadyExists`;
//! - an update carrying a `metadata.resourceVersion` that is no longer current is refused with
//!   `409 Conflict` (an update without one is unconditional, as the API allows for these kinds);
//! - objects live in a namespace that must exist (`default`, `kube-system`, `kube-public` and
//!   `kube-node-lease` always do).
//!
//! Pure: the caller passes the time and the next resource version.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cluster::{timestamp, ApiFailure};

/// Namespaces every cluster has from the start.
pub const BUILT_IN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Largest `ConfigMap` the API stores (data and binaryData together), in bytes.
pub const CONFIG_MAP_LIMIT: usize = 1024 * 1024;

/// A kind of object this API server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `v1` `Namespace` (cluster-scoped).
    Namespace,
    /// `v1` `ConfigMap`.
    ConfigMap,
    /// `coordination.k8s.io/v1` `Lease`.
    Lease,
}

impl Kind {
    /// The kind of a resource name as kubectl accepts it (`lease`, `leases`, `cm`, …).
    pub fn from_resource(word: &str) -> Option<Kind> {
        match word.to_ascii_lowercase().as_str() {
            "namespace" | "namespaces" | "ns" => Some(Kind::Namespace),
            "configmap" | "configmaps" | "cm" => Some(Kind::ConfigMap),
            "lease" | "leases" | "leases.coordination.k8s.io" | "lease.coordination.k8s.io" => {
                Some(Kind::Lease)
            }
            _ => None,
        }
    }

    /// The kind of a manifest's `apiVersion` and `kind`.
    pub fn from_manifest(api_version: &str, kind: &str) -> Option<Kind> {
        match (api_version, kind) {
            ("v1", "Namespace") => Some(Kind::Namespace),
            ("v1", "ConfigMap") => Some(Kind::ConfigMap),
            ("coordination.k8s.io/v1", "Lease") => Some(Kind::Lease),
            _ => None,
        }
    }

    /// `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::ConfigMap => "v1",
            Kind::Lease => "coordination.k8s.io/v1",
        }
    }

    /// `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ConfigMap => "ConfigMap",
            Kind::Lease => "Lease",
        }
    }

    /// The resource as the API names it in messages (`leases.coordination.k8s.io`).
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::ConfigMap => "configmaps",
            Kind::Lease => "leases.coordination.k8s.io",
        }
    }

    /// The singular form kubectl prints (`lease.coordination.k8s.io/NAME created`).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::ConfigMap => "configmap",
            Kind::Lease => "lease.coordination.k8s.io",
        }
    }

    /// The URL path of the collection (`namespace` ignored for namespaces).
    pub fn collection_path(self, namespace: &str) -> String {
        match self {
            Kind::Namespace => "/api/v1/namespaces".into(),
            Kind::ConfigMap => format!("/api/v1/namespaces/{namespace}/configmaps"),
            Kind::Lease => {
                format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases")
            }
        }
    }

    fn key(self, namespace: &str, name: &str) -> String {
        match self {
            Kind::Namespace => format!("{}//{name}", self.name()),
            _ => format!("{}/{namespace}/{name}", self.name()),
        }
    }
}

/// One stored object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredObject {
    /// The whole object as last written, metadata included.
    pub body: Value,
    /// Current resource version.
    pub resource_version: u64,
}

/// Every namespaced object, keyed by kind, namespace and name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Objects {
    /// Objects by `Kind/namespace/name`.
    pub items: BTreeMap<String, StoredObject>,
}

fn not_found(kind: Kind, name: &str) -> ApiFailure {
    ApiFailure {
        code: 404,
        reason: "NotFound".into(),
        message: format!("{} {name:?} not found", kind.resource()),
    }
}

fn invalid(kind: Kind, name: &str, what: String) -> ApiFailure {
    ApiFailure {
        code: 422,
        reason: "Invalid".into(),
        message: format!("{} {name:?} is invalid: {what}", qualified(kind)),
    }
}

fn qualified(kind: Kind) -> String {
    match kind {
        Kind::Lease => "Lease.coordination.k8s.io".into(),
        other => other.name().into(),
    }
}

impl Objects {
    /// True when the namespace exists.
    pub fn namespace_exists(&self, namespace: &str) -> bool {
        BUILT_IN_NAMESPACES.contains(&namespace)
            || self.items.contains_key(&Kind::Namespace.key("", namespace))
    }

    /// The object, `404 NotFound` when there is none.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ApiFailure> {
        self.items
            .get(&kind.key(namespace, name))
            .map(|o| o.body.clone())
            .ok_or_else(|| not_found(kind, name))
    }

    /// Creates the object in `body`; refuses one that exists (`409 AlreadyExists`).
    pub fn create(
        &mut self,
        kind: Kind,
        namespace: &str,
        body: &Value,
        resource_version: u64,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiFailure> {
        let name = object_name(kind, body)?;
        if kind != Kind::Namespace && !self.namespace_exists(namespace) {
            return Err(not_found(Kind::Namespace, namespace));
        }
        check_body(kind, &name, body)?;
        let key = kind.key(namespace, &name);
        if self.items.contains_key(&key)
            || (kind == Kind::Namespace && BUILT_IN_NAMESPACES.contains(&name.as_str()))
        {
            return Err(ApiFailure {
                code: 409,
                reason: "AlreadyExists".into(),
                message: format!("{} {name:?} already exists", kind.resource()),
            });
        }
        let mut stored = body.clone();
        let mut metadata = json!({
            "name": name,
            "uid": uuid::Uuid::new_v4().to_string(),
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": timestamp(now),
        });
        for field in ["labels", "annotations"] {
            if let Some(v) = body["metadata"].get(field) {
                metadata[field] = v.clone();
            }
        }
        set_metadata(kind, namespace, &mut stored, metadata);
        self.items.insert(
            key,
            StoredObject {
                body: stored.clone(),
                resource_version,
            },
        );
        Ok(stored)
    }

    /// Replaces the object named `name` with `body`. A `metadata.resourceVersion` in `body`
    /// that is not the current one is a `409 Conflict`: someone wrote in between.
    pub fn replace(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        body: &Value,
        resource_version: u64,
    ) -> Result<Value, ApiFailure> {
        let key = kind.key(namespace, name);
        let current = self.items.get(&key).ok_or_else(|| not_found(kind, name))?;
        if let Some(rv) = body["metadata"].get("resourceVersion") {
            if rv.as_str() != Some(current.resource_version.to_string().as_str()) {
                return Err(ApiFailure {
                    code: 409,
                    reason: "Conflict".into(),
                    message: format!(
                        "Operation cannot be fulfilled on {} {name:?}: the object has been \
                         modified; please apply your changes to the latest version and try again",
                        kind.resource()
                    ),
                });
            }
        }
        let body_name = object_name(kind, body)?;
        if body_name != name {
            return Err(ApiFailure::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        check_body(kind, name, body)?;
        let mut stored = body.clone();
        let mut metadata = current.body["metadata"].clone();
        metadata["resourceVersion"] = json!(resource_version.to_string());
        // What a client may change in metadata: labels and annotations.
        for field in ["labels", "annotations"] {
            match body["metadata"].get(field) {
                Some(v) => metadata[field] = v.clone(),
                None => {
                    if let Some(m) = metadata.as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        set_metadata(kind, namespace, &mut stored, metadata);
        self.items.insert(
            key,
            StoredObject {
                body: stored.clone(),
                resource_version,
            },
        );
        Ok(stored)
    }

    /// Deletes the object, `404 NotFound` when there is none.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ApiFailure> {
        self.items
            .remove(&kind.key(namespace, name))
            .map(|o| o.body)
            .ok_or_else(|| not_found(kind, name))
    }
}

fn set_metadata(kind: Kind, namespace: &str, object: &mut Value, mut metadata: Value) {
    if kind != Kind::Namespace {
        metadata["namespace"] = json!(namespace);
    }
    object["apiVersion"] = json!(kind.api_version());
    object["kind"] = json!(kind.name());
    object["metadata"] = metadata;
}

fn object_name(kind: Kind, body: &Value) -> Result<String, ApiFailure> {
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(invalid(
            kind,
            "",
            "metadata.name: Required value: name or generateName is required".into(),
        ));
    }
    let dns = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !dns {
        return Err(invalid(
            kind,
            name,
            format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must \
                 consist of lower case alphanumeric characters, '-' or '.', and must start and \
                 end with an alphanumeric character"
            ),
        ));
    }
    Ok(name.to_string())
}

/// The checks the real API makes on the fields kiwi-infra writes.
fn check_body(kind: Kind, name: &str, body: &Value) -> Result<(), ApiFailure> {
    match kind {
        Kind::Namespace => Ok(()),
        Kind::ConfigMap => {
            let mut size = 0;
            for field in ["data", "binaryData"] {
                match &body[field] {
                    Value::Null => {}
                    Value::Object(map) => {
                        for (k, v) in map {
                            let Some(text) = v.as_str() else {
                                return Err(ApiFailure::bad_request(format!(
                                    "json: cannot unmarshal {} into Go struct field \
                                     ConfigMap.{field} of type string",
                                    json_type(v)
                                )));
                            };
                            size += k.len() + text.len();
                        }
                    }
                    other => {
                        return Err(ApiFailure::bad_request(format!(
                            "json: cannot unmarshal {} into Go struct field ConfigMap.{field} \
                             of type map[string]string",
                            json_type(other)
                        )))
                    }
                }
            }
            if size > CONFIG_MAP_LIMIT {
                return Err(invalid(
                    kind,
                    name,
                    format!("[]: Too long: must have at most {CONFIG_MAP_LIMIT} bytes"),
                ));
            }
            Ok(())
        }
        Kind::Lease => {
            let spec = &body["spec"];
            if let Some(d) = spec.get("leaseDurationSeconds") {
                match d.as_i64() {
                    Some(d) if d > 0 => {}
                    Some(d) => {
                        return Err(invalid(
                            kind,
                            name,
                            format!(
                                "spec.leaseDurationSeconds: Invalid value: {d}: must be greater \
                                 than 0"
                            ),
                        ))
                    }
                    None => {
                        return Err(ApiFailure::bad_request(format!(
                            "json: cannot unmarshal {} into Go struct field \
                             LeaseSpec.spec.leaseDurationSeconds of type int32",
                            json_type(d)
                        )))
                    }
                }
            }
            for field in ["acquireTime", "renewTime"] {
                if let Some(t) = spec.get(field) {
                    let ok = t
                        .as_str()
                        .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok());
                    if !ok {
                        return Err(ApiFailure::bad_request(format!(
                            "parsing time {t} as \"2006-01-02T15:04:05.000000Z07:00\": cannot \
                             parse as RFC 3339 time"
                        )));
                    }
                }
            }
            if let Some(h) = spec.get("holderIdentity") {
                if !h.is_string() && !h.is_null() {
                    return Err(ApiFailure::bad_request(format!(
                        "json: cannot unmarshal {} into Go struct field \
                         LeaseSpec.spec.holderIdentity of type string",
                        json_type(h)
                    )));
                }
            }
            Ok(())
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lease(rv: Option<&str>, holder: &str) -> Value {
        let mut v = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "apply"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
        });
        if let Some(rv) = rv {
            v["metadata"]["resourceVersion"] = json!(rv);
        }
        v
    }

    #[test]
    fn a_stale_write_is_a_conflict_and_a_second_create_already_exists() {
        let now = Utc::now();
        let mut o = Objects::default();
        let ns = json!({"metadata": {"name": "kiwi-infra"}});
        assert_eq!(
            o.create(Kind::Lease, "kiwi-infra", &lease(None, "a"), 1, now)
                .unwrap_err()
                .reason,
            "NotFound",
            "the namespace must exist first"
        );
        o.create(Kind::Namespace, "", &ns, 2, now).unwrap();
        let mut with_annotation = lease(None, "a");
        with_annotation["metadata"]["annotations"] = json!({"kiwistack.io/holder": "{}"});
        let created = o
            .create(Kind::Lease, "kiwi-infra", &with_annotation, 3, now)
            .unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "3");
        assert_eq!(
            created["metadata"]["annotations"]["kiwistack.io/holder"],
            "{}"
        );
        let again = o
            .create(Kind::Lease, "kiwi-infra", &lease(None, "b"), 4, now)
            .unwrap_err();
        assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
        o.replace(
            Kind::Lease,
            "kiwi-infra",
            "apply",
            &lease(Some("3"), "b"),
            5,
        )
        .unwrap();
        let stale = o
            .replace(
                Kind::Lease,
                "kiwi-infra",
                "apply",
                &lease(Some("3"), "c"),
                6,
            )
            .unwrap_err();
        assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
        let kept = o.get(Kind::Lease, "kiwi-infra", "apply").unwrap();
        assert_eq!(kept["spec"]["holderIdentity"], "b");
        assert_eq!(kept["metadata"]["resourceVersion"], "5");
    }
}
