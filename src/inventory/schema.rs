//! JSON Schemas of the inventory files, so an editor (taplo, Even Better TOML)
//! can complete keys and flag typos while the operator types.
//!
//! The schemas are derived from the very structs [`super::load`] deserialises
//! each table into, so a key added to the reader shows up here without anyone
//! remembering to: only the shape of the whole file (which tables exist) is
//! spelled out below, because the reader walks the top level by hand to keep
//! one table's errors from hiding the next's.
//!
//! Every rule `kiwi-infra validate` applies to one file on its own and that
//! JSON Schema (draft 7) can state is in the schema too ([`add_rules`]):
//! required and unknown keys, enums (region, period, class, tier, backend,
//! access, flannel backend), ranges (count, lease_seconds, prices, ports, the
//! number of control-plane nodes), and the grammars of names, versions,
//! addresses, networks, endpoints, image names, prices, port rules, label and
//! taint keys and values, and the characters no string may hold. A file the schema accepts may still be refused by
//! `validate` for these rules only, which need more than the schema can see:
//!
//! - a product used by a pool needs an entry in `[prices]` (for customers, in
//!   another file; for Core pools, a reference between two tables, which
//!   draft 7 cannot express);
//! - node names are unique across the inventory (control-plane nodes, Core
//!   pools and every customer's pools);
//! - a Mesh or Fleet customer needs `[k3s]` in `kiwi.toml`;
//! - the customer's name comes from the file name: a DNS label, not `core`,
//!   and short enough that `kiwi-<customer>-<pool>-99` fits in 63
//!   characters (the schema is the same for every customer file; for Core
//!   pools, whose cluster name is fixed, the length is in the schema);
//! - `ssh_public_key_file` names a readable file holding a public key;
//! - the key data of `ssh_public_key` decodes to a key of its type (the
//!   schema checks its shape: type, base64, comment);
//! - a pool's taints name each key and effect once (the schema only refuses
//!   identical entries).
//! - a network (`operator_networks`, `cluster_networks`) has no host bits
//!   set, and a port range runs forwards (`"80-90"`, not `"90-80"`).

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
    let mut schema = schema.to_value();
    add_rules(file, &mut schema);
    schema
}

/// The schema as JSON text with every non-ASCII character escaped, so the
/// invisible characters the string rules name (bidirectional controls, line
/// separators) never reach a terminal or an editor as themselves.
pub fn json_text(file: InventoryFile) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string_pretty(&json_schema(file))?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Ok(out)
}

/// A version number: `0`, or up to 4 digits without a leading zero.
const NUMBER: &str = "(0|[1-9][0-9]{0,3})";

/// A DNS label as a pattern fragment (lowercase).
const LABEL: &str = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";

/// The name part of a label or taint key, and a non-empty label value.
const QUALIFIED_NAME: &str = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?";

/// A TCP port from 1 to 65535, without a leading zero.
const PORT: &str =
    "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";

/// An IPv4 address as Rust's parser reads one: four decimal octets, no
/// leading zeros.
const IPV4: &str = "((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/// A host label of a DNS host name (any case).
const HOST_LABEL: &str = "[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?";

/// An IPv6 address as Rust's parser reads one: eight groups, or fewer
/// around one `::`, the last 32 bits optionally an IPv4 address.
pub(crate) fn ipv6_pattern() -> String {
    const H: &str = "[0-9A-Fa-f]{1,4}";
    let groups = |n: usize, lead: bool| -> String {
        match n {
            0 => String::new(),
            n if lead => format!("({H}:){{{n}}}"),
            n => format!("(:{H}){{{n}}}"),
        }
    };
    let mut forms = vec![format!("({H}:){{7}}{H}"), format!("({H}:){{6}}{IPV4}")];
    // `::` stands for at least one group of zeros.
    for (total, tail) in [(7usize, ""), (5, IPV4)] {
        for left in 0..=total {
            for right in 0..=(total - left) {
                let left_text = match left {
                    0 => String::new(),
                    n => format!("({H}:){{{}}}{H}", n - 1),
                };
                let right_text = match (right, tail.is_empty()) {
                    (0, true) => String::new(),
                    (0, false) => tail.to_string(),
                    (n, true) => format!("{H}{}", groups(n - 1, false)),
                    (n, false) => format!("({H}:){{{n}}}{tail}"),
                };
                forms.push(format!("{left_text}::{right_text}"));
            }
        }
    }
    format!("({})", forms.join("|"))
}

/// `^…$` around a fragment.
fn whole(fragment: &str) -> String {
    format!("^({fragment})$")
}

/// Characters no inventory string may hold ([`super::text::forbidden_char`]),
/// as the inside of a regular-expression character class, computed from the
/// same function so the two cannot drift apart.
fn forbidden_class() -> String {
    let mut class = String::new();
    let mut range: Option<(char, char)> = None;
    let push = |(a, b): (char, char), class: &mut String| {
        class.push_str(&escape_in_class(a));
        if a != b {
            class.push('-');
            class.push_str(&escape_in_class(b));
        }
    };
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        if super::text::forbidden_char(c).is_none() {
            continue;
        }
        range = match range {
            Some((a, b)) if u32::from(b) + 1 == u32::from(c) => Some((a, c)),
            Some(done) => {
                push(done, &mut class);
                Some((c, c))
            }
            None => Some((c, c)),
        };
    }
    if let Some(done) = range {
        push(done, &mut class);
    }
    class
}

/// A character inside a class: as itself, except the class's own syntax
/// characters (none of which is forbidden, but a class must not depend on it).
fn escape_in_class(c: char) -> String {
    match c {
        '\\' | ']' | '[' | '^' | '-' => format!("\\{c}"),
        c => c.to_string(),
    }
}

/// Text free of the forbidden characters.
fn printable() -> String {
    format!("^[^{}]*$", forbidden_class())
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain of at most 253
/// characters.
fn label_key_pattern() -> String {
    format!("({LABEL}(\\.{LABEL})*/)?{QUALIFIED_NAME}")
}

/// The part of a label or taint key's rule a pattern cannot hold in one
/// piece: the prefix before `/` is at most 253 characters.
fn prefix_length() -> serde_json::Value {
    serde_json::json!({ "anyOf": [ { "pattern": "^[^/]*$" }, { "pattern": "^[^/]{1,253}/" } ] })
}

/// Merges `rules` into the schema object at `pointer`.
fn merge(schema: &mut serde_json::Value, pointer: &str, rules: serde_json::Value) {
    let (Some(target), serde_json::Value::Object(rules)) = (schema.pointer_mut(pointer), rules)
    else {
        return;
    };
    let Some(target) = target.as_object_mut() else {
        return;
    };
    for (key, value) in rules {
        target.insert(key, value);
    }
}

/// Adds the rules of `validate` that the derived shape lacks (see the
/// module documentation for the ones that stay with `validate`).
fn add_rules(file: InventoryFile, schema: &mut serde_json::Value) {
    use super::kube::{KIWI_LABEL_PREFIX, KUBELET_ALLOWED_LABELS, KUBELET_ALLOWED_PREFIXES};
    use super::products::{ids_of_class, NodeClass};
    use super::validate::{
        MAX_CONTROL_PLANE, MAX_IMAGE_NAME, MAX_POOL_COUNT, MAX_PRICE_EUROS, PERIODS, REGIONS,
        SSH_KEY_TYPES,
    };
    use serde_json::json;

    let escaped = |s: &str| s.replace('.', "\\.");
    let restricted_prefixes = KUBELET_ALLOWED_PREFIXES
        .iter()
        .map(|p| escaped(p))
        .collect::<Vec<_>>()
        .join("|");
    let label_key = json!({
        "allOf": [
            { "pattern": whole(&label_key_pattern()) },
            prefix_length(),
            { "not": { "pattern": format!("^{}", escaped(KIWI_LABEL_PREFIX)) } },
            { "anyOf": [
                { "not": { "pattern": "^([^/]*\\.)?(kubernetes|k8s)\\.io/" } },
                { "enum": KUBELET_ALLOWED_LABELS },
                { "pattern": format!("^({restricted_prefixes})") }
            ] }
        ]
    });
    let label_value = format!("^({QUALIFIED_NAME})?$");
    let taint = format!(
        "^{}(=({QUALIFIED_NAME})?)?:(NoSchedule|PreferNoSchedule|NoExecute)$",
        label_key_pattern()
    );
    let class_products = |class: NodeClass| {
        json!({
            "if": { "properties": { "class": { "const": class.as_str() } }, "required": ["class"] },
            "then": { "properties": { "product": { "enum": ids_of_class(class) } } }
        })
    };
    merge(
        schema,
        "/definitions/Pool",
        json!({ "allOf": [class_products(NodeClass::Vps), class_products(NodeClass::Vds)] }),
    );
    merge(
        schema,
        "/definitions/Pool/properties/count",
        json!({ "minimum": 0, "maximum": MAX_POOL_COUNT }),
    );
    merge(
        schema,
        "/definitions/Pool/properties/labels",
        json!({
            "propertyNames": label_key,
            "additionalProperties": { "type": "string", "pattern": label_value }
        }),
    );
    merge(
        schema,
        "/definitions/Pool/properties/taints",
        json!({
            "uniqueItems": true,
            "items": { "type": "string", "allOf": [ { "pattern": taint }, prefix_length() ] }
        }),
    );

    // Firewall ports: a number, or a range as a string; CIDR networks.
    let port_item = json!({
        "anyOf": [
            { "type": "integer", "minimum": 1, "maximum": 65535 },
            { "type": "string", "pattern": format!("^{PORT}(-{PORT})?$") }
        ]
    });
    let ipv4_cidr = format!("{IPV4}/(3[0-2]|[12]?[0-9])");
    let ipv6_cidr = format!("({})/(12[0-8]|1[01][0-9]|[1-9]?[0-9])", ipv6_pattern());
    for table in ["Firewall", "CoreFirewall"] {
        for key in ["public_tcp_ports", "public_udp_ports"] {
            merge(
                schema,
                &format!("/definitions/{table}/properties/{key}"),
                json!({ "type": "array", "items": port_item }),
            );
        }
    }

    match file {
        InventoryFile::Main => {
            merge(
                schema,
                "/definitions/Provider/properties/operator_networks",
                json!({
                    "type": "array",
                    "items": { "anyOf": [
                        { "type": "string", "pattern": whole(&ipv4_cidr) },
                        { "type": "string", "pattern": whole(&ipv6_cidr) }
                    ] }
                }),
            );
            merge(
                schema,
                "/definitions/Provider",
                json!({ "allOf": [ { "required": ["operator_networks"] } ] }),
            );
            merge(
                schema,
                "/definitions/CoreFirewall/properties/cni_ports",
                json!({
                    "type": "array",
                    "items": { "type": "string", "pattern": format!("^(tcp|udp)/{PORT}(-{PORT})?$") }
                }),
            );
            merge(
                schema,
                "/definitions/CoreFirewall/properties/cluster_networks",
                json!({ "type": "array", "items": { "type": "string", "pattern": whole(&ipv4_cidr) } }),
            );
            merge(
                schema,
                "/definitions/CoreFirewall",
                json!({ "required": ["cni_ports", "cluster_networks"] }),
            );
            merge(
                schema,
                "/definitions/CoreTable",
                json!({ "allOf": [ { "required": ["firewall"] } ] }),
            );
            let ssh_key = format!(
                "^({}) [A-Za-z0-9+/]+={{0,2}}( [^{}]*)?$",
                SSH_KEY_TYPES
                    .iter()
                    .map(|t| escaped(t))
                    .collect::<Vec<_>>()
                    .join("|"),
                forbidden_class()
            );
            merge(
                schema,
                "/definitions/Provider/properties/region",
                json!({ "enum": REGIONS }),
            );
            merge(
                schema,
                "/definitions/Provider/properties/image",
                json!({
                    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
                    "maxLength": MAX_IMAGE_NAME
                }),
            );
            merge(
                schema,
                "/definitions/Provider/properties/period",
                json!({ "enum": PERIODS }),
            );
            merge(
                schema,
                "/definitions/Provider/properties/ssh_public_key",
                json!({ "pattern": ssh_key }),
            );
            merge(
                schema,
                "/definitions/Provider/properties/ssh_public_key_file",
                json!({ "pattern": printable(), "minLength": 1 }),
            );
            merge(
                schema,
                "/properties/prices",
                json!({
                    "additionalProperties": {
                        "anyOf": [
                            { "type": "string", "pattern": "^[0-9]{1,7}(\\.[0-9]{1,2}0*)?$" },
                            { "type": "integer", "minimum": 0, "maximum": MAX_PRICE_EUROS }
                        ]
                    }
                }),
            );
            merge(
                schema,
                "/definitions/K3s/properties/version",
                json!({ "pattern": format!("^v{NUMBER}\\.{NUMBER}\\.{NUMBER}(-rc{NUMBER})?\\+k3s{NUMBER}$") }),
            );
            merge(
                schema,
                "/definitions/State",
                json!({
                    "allOf": [
                        {
                            "if": { "properties": { "backend": { "const": "local" } }, "required": ["backend"] },
                            "then": { "properties": { "lease_seconds": false, "access": false, "context": false } }
                        },
                        {
                            "if": { "required": ["context"] },
                            "then": { "required": ["access"], "properties": { "access": { "const": "kubeconfig" } } }
                        }
                    ]
                }),
            );
            merge(
                schema,
                "/definitions/State/properties/context",
                json!({ "pattern": "^[A-Za-z0-9._@:/][-A-Za-z0-9._@:/]{0,252}$" }),
            );
            let host_name = format!("{HOST_LABEL}(\\.{HOST_LABEL})*");
            let numeric_last_label = "(^|\\.)[0-9]+$";
            merge(
                schema,
                "/definitions/ControlPlaneNode/properties/address",
                json!({
                    "anyOf": [
                        { "pattern": whole(IPV4) },
                        { "pattern": whole(&ipv6_pattern()) },
                        { "allOf": [
                            { "pattern": whole(&host_name), "maxLength": 253 },
                            { "not": { "pattern": numeric_last_label } }
                        ] }
                    ]
                }),
            );
            merge(
                schema,
                "/definitions/ControlPlaneNode/properties/name",
                json!({ "pattern": format!("^{LABEL}(\\.{LABEL})*$"), "maxLength": 253 }),
            );
            merge(
                schema,
                "/definitions/CoreTable/properties/api_endpoint",
                json!({
                    "anyOf": [
                        { "pattern": format!("^{IPV4}:{PORT}$") },
                        { "pattern": format!("^\\[{}\\]:{PORT}$", ipv6_pattern()) },
                        { "allOf": [
                            { "pattern": format!("^{host_name}:{PORT}$") },
                            { "pattern": "^[^:]{1,253}:" },
                            { "not": { "pattern": "(^|\\.)[0-9]+:[0-9]+$" } }
                        ] }
                    ]
                }),
            );
            merge(
                schema,
                "/definitions/CoreTable/properties/kubernetes_version",
                json!({ "pattern": format!("^v{NUMBER}\\.{NUMBER}\\.{NUMBER}$") }),
            );
            let even: Vec<serde_json::Value> = (0..=MAX_CONTROL_PLANE)
                .step_by(2)
                .map(|n| json!({ "minItems": n, "maxItems": n }))
                .collect();
            merge(
                schema,
                "/definitions/CoreTable/properties/control_plane",
                json!({ "minItems": 1, "maxItems": MAX_CONTROL_PLANE, "not": { "anyOf": even } }),
            );
            // kiwi-core-<pool>-99 fits in 63 characters.
            let longest = 63 - super::model::slot_name(super::model::CORE_CLUSTER, "", 99).len();
            merge(
                schema,
                "/definitions/CoreTable/properties/pools/propertyNames",
                json!({ "maxLength": longest }),
            );
        }
        InventoryFile::Customer => {
            let odd: Vec<i64> = (1..=MAX_POOL_COUNT).step_by(2).collect();
            if let Some(serde_json::Value::Array(all)) =
                schema.pointer_mut("/properties/servers/allOf")
            {
                all.push(json!({ "properties": { "count": { "enum": odd } } }));
            }
            merge(
                schema,
                "/properties/pools/propertyNames",
                json!({ "not": { "const": super::model::SERVER_POOL } }),
            );
        }
    }
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
        "description": "Monthly price in EUR per Contabo product id, e.g. V94 = \"8.49\". Every product used by a pool needs one; private_networking prices the private-networking add-on per instance.",
        "type": "object",
        "propertyNames": {
            "anyOf": [
                product_id(generator),
                {
                    "const": super::model::PRIVATE_NETWORKING_PRICE_KEY,
                    "description": "Monthly price of Contabo's private-networking add-on per instance; needed when a customer sets private_network = true."
                }
            ]
        },
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
    use crate::inventory::values::{ApiEndpoint, Host, K3sVersion, KubernetesVersion};
    use crate::inventory::Taint;

    /// The rule at `pointer` in the schema of `file`, as a validator.
    fn rule(file: InventoryFile, pointer: &str) -> jsonschema::Validator {
        let schema = json_schema(file);
        let rule = schema.pointer(pointer).unwrap().clone();
        jsonschema::validator_for(&rule).unwrap()
    }

    /// Deterministic strings over `alphabet`, up to `max` characters.
    fn strings(alphabet: &str, max: usize, count: usize) -> Vec<String> {
        let chars: Vec<char> = alphabet.chars().collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|_| {
                let len = usize::try_from(next() % (max as u64 + 1)).unwrap();
                (0..len)
                    .map(|_| chars[usize::try_from(next() % chars.len() as u64).unwrap()])
                    .collect()
            })
            .collect()
    }

    /// Checks that the schema rule and the parser accept the same strings.
    fn agree(rule: &jsonschema::Validator, parses: impl Fn(&str) -> bool, inputs: &[String]) {
        let mut differ = Vec::new();
        for input in inputs {
            let by_schema = rule.is_valid(&serde_json::Value::String(input.clone()));
            if by_schema != parses(input) {
                differ.push(format!("{input:?}: schema {by_schema}"));
            }
        }
        assert!(differ.is_empty(), "{}", differ.join("\n"));
    }

    fn with_edges(mut generated: Vec<String>, edges: &[&str]) -> Vec<String> {
        generated.extend(edges.iter().map(|e| e.to_string()));
        generated
    }

    #[test]
    fn the_address_rule_accepts_exactly_what_host_parses() {
        let rule = rule(
            InventoryFile::Main,
            "/definitions/ControlPlaneNode/properties/address",
        );
        let edges = [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "::1.2.3.04",
            "12345::",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.1.1.1",
            "1.2.3",
            "a.1",
            "1.a",
            "a-.b",
            "-a",
            "A.B",
            "x.y-z.example",
        ];
        let inputs = with_edges(strings("0123456789abf:.-", 14, 20_000), &edges);
        agree(&rule, |s| s.parse::<Host>().is_ok(), &inputs);
    }

    #[test]
    fn the_endpoint_rule_accepts_exactly_what_api_endpoint_parses() {
        let rule = rule(
            InventoryFile::Main,
            "/definitions/CoreTable/properties/api_endpoint",
        );
        let edges = [
            "a:1",
            "a:65535",
            "a:65536",
            "a:0",
            "a:01",
            "[::1]:6443",
            "[::1]:",
            "::1:6443",
            "1.2.3.4:6443",
            "1.2.3:6443",
            "[1.2.3.4]:6443",
            "a.b:99999",
        ];
        let inputs = with_edges(strings("0123456a:.[]-", 14, 20_000), &edges);
        agree(&rule, |s| s.parse::<ApiEndpoint>().is_ok(), &inputs);
    }

    #[test]
    fn the_version_rules_accept_exactly_what_the_version_types_parse() {
        let k8s = rule(
            InventoryFile::Main,
            "/definitions/CoreTable/properties/kubernetes_version",
        );
        let k3s = rule(InventoryFile::Main, "/definitions/K3s/properties/version");
        let edges = [
            "v1.31.4",
            "v0.0.0",
            "v9999.0.0",
            "v10000.0.0",
            "v1.31.4+k3s1",
            "v1.3.4-rc1+k3s2",
            "v1.3.4-rc01+k3s2",
            "v01.3.4",
        ];
        let inputs = with_edges(strings("v0119.+k3s-rc", 16, 20_000), &edges);
        agree(&k8s, |s| s.parse::<KubernetesVersion>().is_ok(), &inputs);
        agree(&k3s, |s| s.parse::<K3sVersion>().is_ok(), &inputs);
    }

    #[test]
    fn the_taint_rule_accepts_exactly_what_taint_parses() {
        let rule = rule(
            InventoryFile::Main,
            "/definitions/Pool/properties/taints/items",
        );
        let edges = [
            "a:NoSchedule",
            "a=:NoExecute",
            "a=b:PreferNoSchedule",
            "a/b:NoSchedule",
            "a.b/c=d:NoSchedule",
            "A/b:NoSchedule",
            "a=b=c:NoSchedule",
            "a:b:NoSchedule",
        ];
        let mut inputs = with_edges(strings("aB1-_./=:", 10, 20_000), &edges);
        for effect in [":NoSchedule", ":NoExecute"] {
            let more: Vec<String> = strings("aB1-_./=", 10, 5_000)
                .into_iter()
                .map(|s| s + effect)
                .collect();
            inputs.extend(more);
        }
        agree(&rule, |s| Taint::parse(s).is_ok(), &inputs);
    }

    #[test]
    fn the_label_key_rule_accepts_exactly_what_validate_accepts() {
        use crate::inventory::kube::{check_label_key, kubelet_may_set, KIWI_LABEL_PREFIX};
        let rule = rule(
            InventoryFile::Main,
            "/definitions/Pool/properties/labels/propertyNames",
        );
        let edges = [
            "kiwistack.io/x",
            "a.kiwistack.io/x",
            "kubernetes.io/role",
            "kubernetes.io/os",
            "node.kubernetes.io/x",
            "kubelet.kubernetes.io/x",
            "a.k8s.io/x",
            "k8s.io/x",
            "xk8s.io/x",
            "topology.kubernetes.io/zone",
        ];
        let mut inputs = with_edges(strings("ak8s.io/-_B", 16, 20_000), &edges);
        inputs.extend(
            strings("a./", 8, 2_000)
                .into_iter()
                .map(|s| s + "kubernetes.io/x"),
        );
        agree(
            &rule,
            |k| {
                !k.starts_with(KIWI_LABEL_PREFIX)
                    && check_label_key(k).is_ok()
                    && kubelet_may_set(k)
            },
            &inputs,
        );
    }

    #[test]
    fn the_price_rule_accepts_exactly_what_validate_reads_as_euros() {
        let rule = rule(
            InventoryFile::Main,
            "/properties/prices/additionalProperties",
        );
        let edges = [
            "8", "8.", ".5", "8.490", "8.491", "9999999", "10000000", "0.00",
        ];
        let inputs = with_edges(strings("0190.", 10, 20_000), &edges);
        agree(
            &rule,
            |s| super::super::validate::price_from_text(s).is_some(),
            &inputs,
        );
    }

    #[test]
    fn the_string_rule_refuses_exactly_the_forbidden_characters() {
        let rule =
            jsonschema::validator_for(&serde_json::json!({ "pattern": printable() })).unwrap();
        for c in (0..=0x10FFFFu32).step_by(7).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(
                rule.is_valid(&serde_json::Value::String(text)),
                super::super::text::forbidden_char(c).is_none(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

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
