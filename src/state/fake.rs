//! An in-memory [`KubeObjects`] with the API's resource-version rules (a
//! create of an existing object is refused, a replace with a stale version
//! is a conflict), for unit tests of the lock and the journal. Tests can
//! also write behind the code's back, as another machine would.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::objects::{KubeObjects, Object, ObjectKind, Written};
use super::StateError;

#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<String, Object>,
    version: u64,
    /// Writes refused with a conflict before they are looked at: another
    /// writer that keeps winning.
    conflicts_ahead: u32,
}

/// The fake store.
#[derive(Debug, Default)]
pub(crate) struct FakeObjects {
    store: Mutex<Store>,
}

fn key(kind: ObjectKind, name: &str) -> String {
    format!("{}/{name}", kind.resource())
}

impl FakeObjects {
    fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    }

    /// The object as stored.
    pub(crate) fn object(&self, kind: ObjectKind, name: &str) -> Option<Object> {
        self.with(|s| s.objects.get(&key(kind, name)).cloned())
    }

    /// Writes `value` as another client would (no version check).
    pub(crate) fn put(&self, kind: ObjectKind, name: &str, mut value: Value) {
        self.with(|s| {
            s.version += 1;
            value["metadata"]["name"] = json!(name);
            value["metadata"]["resourceVersion"] = json!(s.version.to_string());
            s.objects.insert(
                key(kind, name),
                Object {
                    resource_version: s.version.to_string(),
                    value,
                },
            );
        });
    }

    /// The next `n` writes lose to another writer.
    pub(crate) fn conflict_next(&self, n: u32) {
        self.with(|s| s.conflicts_ahead = n);
    }

    fn store(s: &mut Store, kind: ObjectKind, manifest: &Value) -> Object {
        s.version += 1;
        let mut value = manifest.clone();
        value["metadata"]["resourceVersion"] = json!(s.version.to_string());
        let name = manifest["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let object = Object {
            resource_version: s.version.to_string(),
            value,
        };
        s.objects.insert(key(kind, &name), object.clone());
        object
    }
}

impl KubeObjects for FakeObjects {
    async fn get(&self, kind: ObjectKind, name: &str) -> Result<Option<Object>, StateError> {
        Ok(self.object(kind, name))
    }

    async fn create(&self, kind: ObjectKind, manifest: &Value) -> Result<Written, StateError> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        Ok(self.with(|s| {
            if s.objects.contains_key(&key(kind, name)) {
                return Written::AlreadyExists;
            }
            Written::Done(Self::store(s, kind, manifest))
        }))
    }

    async fn replace(&self, kind: ObjectKind, manifest: &Value) -> Result<Written, StateError> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        Ok(self.with(|s| {
            if s.conflicts_ahead > 0 {
                s.conflicts_ahead -= 1;
                s.version += 1;
                if let Some(o) = s.objects.get_mut(&key(kind, name)) {
                    o.resource_version = s.version.to_string();
                    o.value["metadata"]["resourceVersion"] = json!(s.version.to_string());
                }
                return Written::Conflict;
            }
            let Some(current) = s.objects.get(&key(kind, name)) else {
                return Written::NotFound;
            };
            if manifest["metadata"]["resourceVersion"].as_str()
                != Some(current.resource_version.as_str())
            {
                return Written::Conflict;
            }
            Written::Done(Self::store(s, kind, manifest))
        }))
    }

    fn location(&self) -> String {
        "the fake store".into()
    }
}
