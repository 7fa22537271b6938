//! JSON Schemas of the inventory files, so an editor (taplo, Even Better TOML)
//! can complete keys and flag typos while the operator types.
//!
//! The schemas are derived from the very structs [`super::load`] deserialises
//! each table into, so a key added to the reader shows up here without anyone
//! remembering to: only the shape of the whole file (which tables exist) is
//! spelled out below, because the reader walks the top level by hand to keep
//! one table's errors from hiding the next's. Rules that need the whole
//! inventory (prices of used products, unique node names) stay with
//! `kiwi-infra validate`; the schema is a typing aid, not the judge.

use super::files::{RawCore, RawCustomerHead, RawK3s, RawPool, RawProvider, RawState};
use super::products::CATALOG;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::collections::BTreeMap;

/// Which inventory file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryFile {
    /// `kiwi.toml`: provider defaults, prices, k3s and the Core cluster.
    Main,
    /// `customers/<name>.toml`: one customer and its cluster's pools.
    Customer,
}

/// The JSON Schema (draft 7) of one inventory file.
///
/// Draft 7 rather than 2020-12 because that is the newest draft taplo (the
/// engine of Even Better TOML) fully understands.
pub fn json_schema(file: InventoryFile) -> serde_json::Value {
    let mut settings = SchemaSettings::draft07();
    // First, so that the draft-7 fixes schemars appends apply to the result.
    settings.transforms.insert(
        0,
        Box::new(RecursiveTransform(without_null as fn(&mut Schema))),
    );
    let generator = settings.into_generator();
    let schema = match file {
        InventoryFile::Main => generator.into_root_schema_for::<MainDocument>(),
        InventoryFile::Customer => generator.into_root_schema_for::<CustomerDocument>(),
    };
    schema.to_value()
}

/// TOML has no null: an optional key is simply left out, so the `null` that
/// schemars allows for `Option` fields would only offer editors a value that
/// cannot be written.
fn without_null(schema: &mut Schema) {
    let null = serde_json::json!({ "type": "null" });
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(serde_json::Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".into(), only);
        }
    }
    let other = match object.get("anyOf") {
        Some(serde_json::Value::Array(options))
            if options.len() == 2 && options.contains(&null) =>
        {
            options.iter().find(|o| **o != null).cloned()
        }
        _ => None,
    };
    if let Some(serde_json::Value::Object(other)) = other {
        object.remove("anyOf");
        for (key, value) in other {
            object.entry(key).or_insert(value);
        }
    }
}

/// The regular expression of a DNS label, the rule for customer and pool
/// names (the same as [`super::kube::is_dns_label`]).
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// `kiwi.toml`.
#[derive(JsonSchema)]
#[schemars(
    title = "kiwi.toml",
    description = "KiwiStack inventory: provider defaults, prices and the Core cluster. \
                   Check the whole inventory with `kiwi-infra validate`."
)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used; the reader has its own types.
struct MainDocument {
    provider: RawProvider,
    #[schemars(schema_with = "prices")]
    prices: BTreeMap<String, String>,
    k3s: Option<RawK3s>,
    state: Option<RawState>,
    core: CoreTable,
}

/// `[core]`: the shared Core cluster, joined with kubeadm.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CoreTable {
    #[serde(flatten)]
    core: RawCore,
    /// Worker pools, one `[core.pools.<name>]` table each.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": DNS_LABEL }))]
    pools: BTreeMap<String, RawPool>,
}

/// `customers/<name>.toml`.
#[derive(JsonSchema)]
#[schemars(
    title = "customers/<name>.toml",
    description = "A KiwiStack customer. Core-tier customers add no nodes; Mesh and Fleet \
                   customers get a dedicated k3s cluster with [servers] and [pools.<name>]. \
                   Check the whole inventory with `kiwi-infra validate`."
)]
#[schemars(extend(
    "if" = { "properties": { "tier": { "const": "core" } } },
    "then" = { "properties": { "servers": false, "pools": false } },
    "else" = { "required": ["servers"] }
))]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CustomerDocument {
    #[serde(flatten)]
    head: RawCustomerHead,
    /// The k3s servers: embedded etcd, so an odd count (3 for HA).
    servers: Option<RawPool>,
    /// Agent pools, one `[pools.<name>]` table each.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": DNS_LABEL }))]
    pools: BTreeMap<String, RawPool>,
}

/// A Contabo product id from the catalog, with its name for the editor's hover.
pub(crate) fn product_id(_: &mut SchemaGenerator) -> Schema {
    let choices: Vec<serde_json::Value> = CATALOG
        .iter()
        .map(|p| serde_json::json!({ "const": p.id, "description": format!("{} ({})", p.name, p.class.as_str().to_uppercase()) }))
        .collect();
    json_schema!({
        "description": "Contabo product id; its class must match the pool's class and it needs a price in kiwi.toml.",
        "type": "string",
        "oneOf": choices,
    })
}

/// `[prices]`: euros per product id, as a string so cents stay exact.
fn prices(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Monthly price in EUR per Contabo product id, e.g. V94 = \"8.49\". Every product used by a pool needs one.",
        "type": "object",
        "propertyNames": product_id(generator),
        "additionalProperties": {
            "anyOf": [
                { "type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,2})?$" },
                { "type": "integer", "minimum": 0 }
            ]
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_files_has_a_description_for_the_editor() {
        for file in [InventoryFile::Main, InventoryFile::Customer] {
            let schema = json_schema(file);
            let mut missing = Vec::new();
            collect_undescribed(&schema, &schema, "", &mut missing);
            assert!(missing.is_empty(), "{file:?}: no description: {missing:?}");
        }
    }

    fn collect_undescribed(
        root: &serde_json::Value,
        node: &serde_json::Value,
        path: &str,
        missing: &mut Vec<String>,
    ) {
        let Some(properties) = node.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        for (key, value) in properties {
            let here = format!("{path}.{key}");
            let target = resolve(root, value);
            if value.get("description").is_none() && target.get("description").is_none() {
                missing.push(here.clone());
            }
            collect_undescribed(root, target, &here, missing);
            if let Some(inner) = target.get("additionalProperties") {
                collect_undescribed(root, resolve(root, inner), &here, missing);
            }
        }
    }

    fn resolve<'a>(
        root: &'a serde_json::Value,
        node: &'a serde_json::Value,
    ) -> &'a serde_json::Value {
        // Draft 7 ignores keys beside `$ref`, so schemars wraps it in `allOf`.
        let node = match node.get("allOf").and_then(|a| a.as_array()) {
            Some(all) if all.len() == 1 => &all[0],
            _ => node,
        };
        match node.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => root.pointer(r.trim_start_matches('#')).unwrap_or(node),
            None => node,
        }
    }
}
