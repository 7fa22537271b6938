//! `kiwi-infra schema` and `kiwi-infra validate` agree: every rule `validate`
//! applies to one file on its own is in the schema too, so an editor flags
//! what `validate` would refuse. Each case below breaks exactly one rule of a
//! valid inventory; both must refuse it. The rules that need more than one
//! file are listed in `src/inventory/schema.rs` and are not cases here.
//!
//! Also: a value of the wrong type is one error saying what to write, with
//! the digits as written, and nothing else fails because of it.
#![allow(clippy::unwrap_used)]

use kiwi_infra::inventory::schema::{json_text, InventoryFile};
use std::path::{Path, PathBuf};

const KIWI: &str = r#"[provider]
region = "EU"
image = "ubuntu-24.04"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@example"
period = 1
operator_networks = ["198.51.100.0/24", "2001:db8::/48"]

[prices]
V94 = "8.49"
V8 = "38.40"

[k3s]
version = "v1.31.4+k3s1"

[state]
backend = "core-cluster"
lease_seconds = 60

[core]
api_endpoint = "api.core.example:6443"
kubernetes_version = "v1.31.4"
protected = true
control_plane = [
  { name = "cp-01", address = "203.0.113.11" },
  { name = "cp-02", address = "cp-02.core.example" },
  { name = "cp-03", address = "2001:db8::13" },
]

[core.pools.general]
class = "vps"
product = "V94"
count = 2
labels = { "workload.example.com/general" = "true" }
taints = ["workload.example.com/general=true:PreferNoSchedule"]

[core.firewall]
cni_ports = ["udp/4789", "tcp/179"]
cluster_networks = ["10.244.0.0/16", "10.96.0.0/12"]
"#;

const ACME: &str = r#"tier = "mesh"
protected = false

[servers]
class = "vps"
product = "V94"
count = 3

[pools.rtc]
class = "vds"
product = "V8"
count = 1
labels = { "workload.example.com/rtc" = "true" }
taints = ["workload.example.com/rtc=true:NoSchedule"]
"#;

/// Which file a case changes.
#[derive(Clone, Copy, Debug)]
enum Which {
    Main,
    Acme,
}

fn validator(file: InventoryFile) -> jsonschema::Validator {
    // The text `kiwi-infra schema` prints, not the value behind it.
    let schema: serde_json::Value = serde_json::from_str(&json_text(file).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn as_json(text: &str) -> serde_json::Value {
    toml::from_str(text).unwrap()
}

/// What the schema says about one file: its errors, empty when valid.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    validator
        .iter_errors(&as_json(text))
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn write(dir: &Path, kiwi: &str, customers: &[(&str, &str)]) {
    std::fs::write(dir.join("kiwi.toml"), kiwi).unwrap();
    std::fs::create_dir_all(dir.join("customers")).unwrap();
    for (name, text) in customers {
        std::fs::write(dir.join("customers").join(format!("{name}.toml")), text).unwrap();
    }
}

/// `validate`'s errors for the inventory, one per line; empty when valid.
fn validate_errors(kiwi: &str, acme: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), kiwi, &[("acme", acme)]);
    match kiwi_infra::inventory::load(dir.path()) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .map(|e| {
                e.to_string()
                    .replace(&dir.path().display().to_string(), "inventory")
            })
            .collect(),
    }
}

/// Replaces `from` (which must be there) with `to`.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "case does not apply: {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn the_base_inventory_of_these_cases_passes_both() {
    assert_eq!(validate_errors(KIWI, ACME), Vec::<String>::new());
    let main = validator(InventoryFile::Main);
    let customer = validator(InventoryFile::Customer);
    assert_eq!(schema_errors(&main, KIWI), Vec::<String>::new());
    assert_eq!(schema_errors(&customer, ACME), Vec::<String>::new());
}

/// One rule broken per case: (what, which file, from, to).
fn cases() -> Vec<(&'static str, Which, &'static str, String)> {
    use Which::{Acme, Main};
    let s = |x: &str| x.to_string();
    vec![
        // kiwi.toml: the file's shape.
        ("unknown top-level key", Main, "[provider]\n", s("tpyo = 1\n[provider]\n")),
        ("missing [prices]", Main, "[prices]\nV94 = \"8.49\"\nV8 = \"38.40\"\n", s("")),
        ("missing [core]", Main, "[core]\n", s("[corex]\n")),
        // [provider]
        ("unknown provider key", Main, "region = \"EU\"\n", s("region = \"EU\"\nzone = \"a\"\n")),
        ("missing provider key", Main, "image = \"ubuntu-24.04\"\n", s("")),
        ("region not offered", Main, "region = \"EU\"", s("region = \"Mars\"")),
        ("region in another case", Main, "region = \"EU\"", s("region = \"eu\"")),
        ("period not offered", Main, "period = 1", s("period = 2")),
        ("period as a string", Main, "period = 1", s("period = \"12\"")),
        ("image with a space", Main, "\"ubuntu-24.04\"", s("\"ubuntu 24.04\"")),
        ("image starting with a dash", Main, "\"ubuntu-24.04\"", s("\"-ubuntu\"")),
        ("image too long", Main, "\"ubuntu-24.04\"", format!("\"{}\"", "u".repeat(256))),
        ("both key and key file", Main, "period = 1", s("period = 1\nssh_public_key_file = \"a.pub\"")),
        ("no ssh key at all", Main, "ssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@example\"\n", s("")),
        ("a private key", Main, "ssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@example\"", s("ssh_public_key = \"-----BEGIN OPENSSH PRIVATE KEY-----\"")),
        ("an unknown key type", Main, "\"ssh-ed25519 AAAA", s("\"ssh-dss AAAA")),
        ("a line separator in the key comment", Main, "ops@example\"", s("ops@\\u2028example\"")),
        ("a bidi control in the key comment", Main, "ops@example\"", s("ops@\\u202Eelpmaxe\"")),
        ("a tab in the key file name", Main, "period = 1", s("period = 1\nssh_public_key_file = \"a\\tb.pub\"")),
        // [prices]
        ("price of an unknown product", Main, "V8 = \"38.40\"", s("V8 = \"38.40\"\nX1 = \"1.00\"")),
        ("price as a float", Main, "V94 = \"8.49\"", s("V94 = 8.49")),
        ("price below a cent", Main, "\"8.49\"", s("\"8.495\"")),
        ("price with a comma", Main, "\"8.49\"", s("\"8,49\"")),
        ("price without euros", Main, "\"8.49\"", s("\".49\"")),
        ("price with eight digits of euros", Main, "\"8.49\"", s("\"12345678\"")),
        ("negative whole price", Main, "V94 = \"8.49\"", s("V94 = -8")),
        ("whole price too high", Main, "V94 = \"8.49\"", s("V94 = 10000000")),
        ("price as a boolean", Main, "V94 = \"8.49\"", s("V94 = true")),
        // [k3s]
        ("k3s version without build", Main, "\"v1.31.4+k3s1\"", s("\"v1.31.4\"")),
        ("k3s version latest", Main, "\"v1.31.4+k3s1\"", s("\"latest\"")),
        ("k3s version with a leading zero", Main, "\"v1.31.4+k3s1\"", s("\"v1.031.4+k3s1\"")),
        ("k3s version with a shell tail", Main, "\"v1.31.4+k3s1\"", s("\"v1.31.4+k3s1;id\"")),
        ("unknown k3s key", Main, "[k3s]\n", s("[k3s]\nchannel = \"stable\"\n")),
        // [state]
        ("unknown backend", Main, "backend = \"core-cluster\"", s("backend = \"s3\"")),
        ("lease too short", Main, "lease_seconds = 60", s("lease_seconds = 2")),
        ("lease too long", Main, "lease_seconds = 60", s("lease_seconds = 3601")),
        ("lease as a string", Main, "lease_seconds = 60", s("lease_seconds = \"60\"")),
        ("lease with the local backend", Main, "backend = \"core-cluster\"", s("backend = \"local\"")),
        ("access with the local backend", Main, "backend = \"core-cluster\"\nlease_seconds = 60", s("backend = \"local\"\naccess = \"ssh\"")),
        ("unknown access", Main, "lease_seconds = 60", s("lease_seconds = 60\naccess = \"http\"")),
        ("context without kubeconfig access", Main, "lease_seconds = 60", s("lease_seconds = 60\ncontext = \"prod\"")),
        ("context with ssh access", Main, "lease_seconds = 60", s("lease_seconds = 60\naccess = \"ssh\"\ncontext = \"prod\"")),
        ("context with a space", Main, "lease_seconds = 60", s("lease_seconds = 60\naccess = \"kubeconfig\"\ncontext = \"my prod\"")),
        ("context starting with a dash", Main, "lease_seconds = 60", s("lease_seconds = 60\naccess = \"kubeconfig\"\ncontext = \"-prod\"")),
        // [core]
        ("unknown core key", Main, "protected = true", s("protected = true\ncni = \"cilium\"")),
        ("protected as a string", Main, "protected = true", s("protected = \"yes\"")),
        ("endpoint without port", Main, "\"api.core.example:6443\"", s("\"api.core.example\"")),
        ("endpoint with port 0", Main, "\"api.core.example:6443\"", s("\"api.core.example:0\"")),
        ("endpoint with port 65536", Main, "\"api.core.example:6443\"", s("\"api.core.example:65536\"")),
        ("endpoint with a leading zero port", Main, "\"api.core.example:6443\"", s("\"api.core.example:06443\"")),
        ("endpoint as a URL", Main, "\"api.core.example:6443\"", s("\"https://api.core.example:6443\"")),
        ("endpoint with a numeric last label", Main, "\"api.core.example:6443\"", s("\"10.1.2:6443\"")),
        ("endpoint with an octet too high", Main, "\"api.core.example:6443\"", s("\"10.1.2.256:6443\"")),
        ("endpoint with unbracketed IPv6", Main, "\"api.core.example:6443\"", s("\"2001:db8::1:6443\"")),
        ("endpoint with a bad IPv6", Main, "\"api.core.example:6443\"", s("\"[2001:db8:::1]:6443\"")),
        ("endpoint with an underscore", Main, "\"api.core.example:6443\"", s("\"api_core:6443\"")),
        ("kubernetes version without v", Main, "\"v1.31.4\"", s("\"1.31.4\"")),
        ("kubernetes version of two numbers", Main, "\"v1.31.4\"", s("\"v1.31\"")),
        ("kubernetes version of k3s", Main, "\"v1.31.4\"", s("\"v1.31.4+k3s1\"")),
        ("an even control plane", Main, "  { name = \"cp-03\", address = \"2001:db8::13\" },\n", s("")),
        ("an empty control plane", Main, "control_plane = [\n", s("control_plane = [\n]\nx = [\n")),
        ("a control-plane name with capitals", Main, "name = \"cp-01\"", s("name = \"CP-01\"")),
        ("a control-plane name with an underscore", Main, "name = \"cp-01\"", s("name = \"cp_01\"")),
        ("a control-plane address out of range", Main, "\"203.0.113.11\"", s("\"203.0.113.300\"")),
        ("a control-plane address with a leading zero", Main, "\"203.0.113.11\"", s("\"203.0.113.011\"")),
        ("a control-plane address with an option", Main, "\"203.0.113.11\"", s("\"-oProxyCommand=sh\"")),
        ("a control-plane address with a space", Main, "\"cp-02.core.example\"", s("\"cp-02 core\"")),
        ("a control-plane IPv6 with two gaps", Main, "\"2001:db8::13\"", s("\"2001::db8::13\"")),
        ("a control-plane IPv6 of nine groups", Main, "\"2001:db8::13\"", s("\"1:2:3:4:5:6:7:8:9\"")),
        ("a control-plane entry with an unknown key", Main, "address = \"203.0.113.11\" }", s("address = \"203.0.113.11\", port = 22 }")),
        ("a control-plane entry without address", Main, ", address = \"203.0.113.11\" }", s(" }")),
        // [core.pools.*]
        ("core pool name with capitals", Main, "[core.pools.general]", s("[core.pools.General]")),
        ("core pool name too long for node names", Main, "[core.pools.general]", format!("[core.pools.{}]", "g".repeat(51))),
        ("core pool of the wrong class", Main, "class = \"vps\"\nproduct = \"V94\"", s("class = \"vds\"\nproduct = \"V94\"")),
        ("core pool with an unknown class", Main, "class = \"vps\"", s("class = \"gpu\"")),
        ("core pool with an unknown product", Main, "product = \"V94\"\ncount", s("product = \"V999\"\ncount")),
        ("core pool count too high", Main, "count = 2", s("count = 100")),
        ("core pool count negative", Main, "count = 2", s("count = -1")),
        ("core pool count as a string", Main, "count = 2", s("count = \"2\"")),
        ("core pool without count", Main, "count = 2\n", s("")),
        ("core pool with an unknown key", Main, "count = 2\n", s("count = 2\ncolour = \"red\"\n")),
        ("a label under kiwistack.io/", Main, "\"workload.example.com/general\"", s("\"kiwistack.io/pool\"")),
        ("a label a kubelet may not set", Main, "\"workload.example.com/general\"", s("\"node-role.kubernetes.io/worker\"")),
        ("a label under a k8s.io subdomain", Main, "\"workload.example.com/general\"", s("\"x.k8s.io/y\"")),
        ("a label key starting with a dash", Main, "\"workload.example.com/general\"", s("\"-general\"")),
        ("a label key with a capital prefix", Main, "\"workload.example.com/general\"", s("\"Example.com/general\"")),
        ("a label key with an empty name", Main, "\"workload.example.com/general\"", s("\"example.com/\"")),
        ("a label key with a long name", Main, "\"workload.example.com/general\"", format!("\"{}\"", "n".repeat(64))),
        ("a label key with a long prefix", Main, "\"workload.example.com/general\"", format!("\"{}/n\"", ["p".repeat(60), "p".repeat(60), "p".repeat(60), "p".repeat(60), "p".repeat(60)].join("."))),
        ("a label key with an invisible space", Main, "\"workload.example.com/general\"", s("\"workload.example.com/gen\\u200Beral\"")),
        ("a label value with a space", Main, "= \"true\" }", s("= \"very true\" }")),
        ("a label value with a comma", Main, "= \"true\" }", s("= \"a,b=c\" }")),
        ("a label value too long", Main, "= \"true\" }", format!("= \"{}\" }}", "t".repeat(64))),
        ("a label value as a number", Main, "= \"true\" }", s("= 1 }")),
        ("a taint with an unknown effect", Main, ":PreferNoSchedule\"", s(":Sometimes\"")),
        ("a taint without effect", Main, "\"workload.example.com/general=true:PreferNoSchedule\"", s("\"workload.example.com/general=true\"")),
        ("a taint without key", Main, "\"workload.example.com/general=true:PreferNoSchedule\"", s("\"=true:PreferNoSchedule\"")),
        ("a taint value with a space", Main, "general=true:", s("general=so true:")),
        ("a taint key with a capital prefix", Main, "\"workload.example.com/general=true", s("\"Workload.example.com/general=true")),
        ("a taint given twice", Main, "taints = [\"workload.example.com/general=true:PreferNoSchedule\"]", s("taints = [\"a=b:NoSchedule\", \"a=b:NoSchedule\"]")),
        ("taints as a string", Main, "taints = [\"workload.example.com/general=true:PreferNoSchedule\"]", s("taints = \"a=b:NoSchedule\"")),
        // customers/<name>.toml
        ("unknown customer key", Acme, "tier = \"mesh\"\n", s("tier = \"mesh\"\nplan = \"gold\"\n")),
        ("unknown tier", Acme, "tier = \"mesh\"", s("tier = \"gold\"")),
        ("no tier", Acme, "tier = \"mesh\"\n", s("")),
        ("protected as a string", Acme, "protected = false", s("protected = \"no\"")),
        ("mesh without servers", Acme, "[servers]", s("[pools.general]")),
        ("core tier with nodes", Acme, "tier = \"mesh\"", s("tier = \"core\"")),
        ("an even number of servers", Acme, "count = 3", s("count = 2")),
        ("no servers", Acme, "count = 3", s("count = 0")),
        ("more servers than slots", Acme, "count = 3", s("count = 101")),
        ("servers count as a string", Acme, "count = 3", s("count = \"3\"")),
        ("servers of the wrong class", Acme, "class = \"vps\"\nproduct = \"V94\"", s("class = \"vps\"\nproduct = \"V8\"")),
        ("an agent pool named like the servers' pool", Acme, "[pools.rtc]", s("[pools.server]")),
        ("an agent pool name with an underscore", Acme, "[pools.rtc]", s("[pools.r_tc]")),
        ("an agent pool of the wrong class", Acme, "class = \"vds\"\nproduct = \"V8\"", s("class = \"vds\"\nproduct = \"V94\"")),
        ("an agent pool count too high", Acme, "count = 1", s("count = 100")),
        ("an agent pool with an unknown key", Acme, "count = 1\n", s("count = 1\nzone = \"a\"\n")),
        ("an agent label a kubelet may not set", Acme, "\"workload.example.com/rtc\"", s("\"kubernetes.io/role\"")),
        ("an agent taint with an unknown effect", Acme, ":NoSchedule\"", s(":Never\"")),
        ("pools not a table", Acme, "[pools.rtc]\nclass = \"vds\"\nproduct = \"V8\"\ncount = 1\nlabels = { \"workload.example.com/rtc\" = \"true\" }\ntaints = [\"workload.example.com/rtc=true:NoSchedule\"]\n", s("pools = 1\n")),
    ]
}

#[test]
fn every_single_file_rule_is_refused_by_both_validate_and_the_schema() {
    let main = validator(InventoryFile::Main);
    let customer = validator(InventoryFile::Customer);
    let mut disagreements = Vec::new();
    for (what, which, from, to) in cases() {
        let (kiwi, acme) = match which {
            Which::Main => (swap(KIWI, from, &to), ACME.to_string()),
            Which::Acme => (KIWI.to_string(), swap(ACME, from, &to)),
        };
        let by_validate = validate_errors(&kiwi, &acme);
        let by_schema = match which {
            Which::Main => schema_errors(&main, &kiwi),
            Which::Acme => schema_errors(&customer, &acme),
        };
        if by_validate.is_empty() {
            disagreements.push(format!("{what} ({which:?}): validate accepts it"));
        }
        if by_schema.is_empty() {
            disagreements.push(format!(
                "{what} ({which:?}): the schema accepts it; validate says {by_validate:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Valid spellings at the edges of each grammar: both accept them, so the
/// schema is not stricter than `validate` either.
#[test]
fn values_at_the_edges_of_each_rule_pass_both() {
    let main = validator(InventoryFile::Main);
    let customer = validator(InventoryFile::Customer);
    let s = |x: &str| x.to_string();
    let cases: Vec<(&str, Which, &str, String)> = vec![
        ("a whole price", Which::Main, "\"8.49\"", s("8")),
        ("a price of one decimal", Which::Main, "\"8.49\"", s("\"8.5\"")),
        ("a price with zeros past the cents", Which::Main, "\"8.49\"", s("\"8.490\"")),
        ("a price of seven digits", Which::Main, "\"8.49\"", s("\"9999999.99\"")),
        ("the highest whole price", Which::Main, "V94 = \"8.49\"", s("V94 = 9999999")),
        ("period 12", Which::Main, "period = 1", s("period = 12")),
        ("a release candidate", Which::Main, "\"v1.31.4+k3s1\"", s("\"v1.30.0-rc1+k3s2\"")),
        ("the shortest lease", Which::Main, "lease_seconds = 60", s("lease_seconds = 3")),
        ("the longest lease", Which::Main, "lease_seconds = 60", s("lease_seconds = 3600")),
        ("a kubeconfig context", Which::Main, "lease_seconds = 60", s("lease_seconds = 60\naccess = \"kubeconfig\"\ncontext = \"admin@prod:/x-1\"")),
        ("the local backend alone", Which::Main, "backend = \"core-cluster\"\nlease_seconds = 60", s("backend = \"local\"")),
        ("an endpoint on an address", Which::Main, "\"api.core.example:6443\"", s("\"203.0.113.10:65535\"")),
        ("an endpoint on IPv6", Which::Main, "\"api.core.example:6443\"", s("\"[2001:db8::1]:1\"")),
        ("an endpoint on embedded IPv4", Which::Main, "\"api.core.example:6443\"", s("\"[::ffff:192.0.2.1]:6443\"")),
        ("an endpoint on a capitalised host", Which::Main, "\"api.core.example:6443\"", s("\"API.Core-1.example:6443\"")),
        ("an address of full IPv6", Which::Main, "\"2001:db8::13\"", s("\"1:2:3:4:5:6:7:8\"")),
        ("an address ending in ::", Which::Main, "\"2001:db8::13\"", s("\"1:2:3:4:5:6:7::\"")),
        ("an address of ::", Which::Main, "\"2001:db8::13\"", s("\"::\"")),
        ("an address with IPv4 after six groups", Which::Main, "\"2001:db8::13\"", s("\"1:2:3:4:5:6:1.2.3.4\"")),
        ("an address with a name label starting with a digit", Which::Main, "\"cp-02.core.example\"", s("\"2nd.example\"")),
        ("a dotted control-plane name", Which::Main, "name = \"cp-01\"", s("name = \"cp-01.core.example\"")),
        ("one control-plane node", Which::Main, "  { name = \"cp-02\", address = \"cp-02.core.example\" },\n  { name = \"cp-03\", address = \"2001:db8::13\" },\n", s("")),
        ("a core pool name of 50", Which::Main, "[core.pools.general]", format!("[core.pools.{}]", "g".repeat(50))),
        ("a pool of 99", Which::Main, "count = 2", s("count = 99")),
        ("an empty pool", Which::Main, "count = 2", s("count = 0")),
        ("an allowed kubernetes.io label", Which::Main, "\"workload.example.com/general\"", s("\"topology.kubernetes.io/zone\"")),
        ("a node.kubernetes.io label", Which::Main, "\"workload.example.com/general\"", s("\"node.kubernetes.io/any\"")),
        ("a label in a kiwistack.io subdomain", Which::Main, "\"workload.example.com/general\"", s("\"workload.kiwistack.io/x\"")),
        ("a label key without prefix", Which::Main, "\"workload.example.com/general\"", s("\"Plain_Name.1\"")),
        ("an empty label value", Which::Main, "= \"true\" }", s("= \"\" }")),
        ("a taint without value", Which::Main, "general=true:", s("general:")),
        ("a taint with an empty value", Which::Main, "general=true:", s("general=:")),
        ("99 servers", Which::Acme, "count = 3", s("count = 99")),
        ("one server", Which::Acme, "count = 3", s("count = 1")),
        ("a core-tier customer", Which::Acme, ACME, s("tier = \"core\"\n")),
        ("a fleet customer", Which::Acme, "tier = \"mesh\"", s("tier = \"fleet\"")),
    ];
    let mut disagreements = Vec::new();
    for (what, which, from, to) in cases {
        let (kiwi, acme) = match which {
            Which::Main => (swap(KIWI, from, &to), ACME.to_string()),
            Which::Acme => (KIWI.to_string(), swap(ACME, from, &to)),
        };
        let by_validate = validate_errors(&kiwi, &acme);
        let by_schema = match which {
            Which::Main => schema_errors(&main, &kiwi),
            Which::Acme => schema_errors(&customer, &acme),
        };
        if !by_validate.is_empty() {
            disagreements.push(format!("{what}: validate refuses it: {by_validate:?}"));
        }
        if !by_schema.is_empty() {
            disagreements.push(format!("{what}: the schema refuses it: {by_schema:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

fn example_inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory")
}

/// The example inventory as `sandbox up` writes it: the Core control plane
/// on loopback addresses and another operator key (see `write_inventory` in
/// `src/cli/sandbox.rs`).
fn sandbox_kiwi(example: &str) -> String {
    let mut text: String = example
        .lines()
        .map(|l| {
            if l.starts_with("ssh_public_key") {
                "ssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G kiwi-sandbox\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text.replace("api.core.kiwistack.io:6443", "127.0.31.1:6443")
        .replace("203.0.113.1", "127.0.31.")
}

#[test]
fn the_example_and_the_sandbox_inventory_pass_both() {
    let main = validator(InventoryFile::Main);
    let customer = validator(InventoryFile::Customer);
    let example = std::fs::read_to_string(example_inventory().join("kiwi.toml")).unwrap();
    let mut customers = Vec::new();
    for entry in std::fs::read_dir(example_inventory().join("customers")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            schema_errors(&customer, &text),
            Vec::<String>::new(),
            "{name}"
        );
        customers.push((name, text));
    }
    assert!(customers.len() >= 4, "the example customers went missing");
    let sandbox = sandbox_kiwi(&example);
    assert!(sandbox.contains("127.0.31.1:6443") && sandbox.contains("\"127.0.31.3\""));
    for kiwi in [&example, &sandbox] {
        assert_eq!(schema_errors(&main, kiwi), Vec::<String>::new(), "{kiwi}");
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<(&str, &str)> = customers
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        write(dir.path(), kiwi, &refs);
        if let Err(d) = kiwi_infra::inventory::load(dir.path()) {
            panic!("validate refuses:\n{d}\n{kiwi}");
        }
    }
}

// --- one wrong type, one error ---

/// The only error of an inventory where `from` is replaced with `to`.
fn only_error(which: Which, from: &str, to: &str) -> String {
    let (kiwi, acme) = match which {
        Which::Main => (swap(KIWI, from, to), ACME.to_string()),
        Which::Acme => (KIWI.to_string(), swap(ACME, from, to)),
    };
    let errors = validate_errors(&kiwi, &acme);
    assert_eq!(errors.len(), 1, "{to}: {errors:#?}");
    errors[0].clone()
}

#[test]
fn a_price_written_as_a_float_is_one_error_that_keeps_the_written_digits() {
    // V94 is used by a Core pool and by acme's servers: neither reports a
    // missing price as well.
    for (written, suggested) in [
        ("8.49", "8.49"),
        ("8.490", "8.490"),
        ("8.4", "8.4"),
        ("+8.49", "8.49"),
        ("1_008.49", "1008.49"),
        ("8.0", "8.0"),
    ] {
        let error = only_error(Which::Main, "V94 = \"8.49\"", &format!("V94 = {written}"));
        assert_eq!(
            error,
            format!(
                "inventory/kiwi.toml:9:7: error: price {written} is a floating-point number; \
                 expected a string such as \"{suggested}\" so cents stay exact"
            )
        );
    }
}

#[test]
fn a_float_price_that_is_not_euros_and_cents_is_one_error_without_a_wrong_suggestion() {
    for written in ["8.495", "1e3", "inf", "nan", "-8.49"] {
        let error = only_error(Which::Main, "V94 = \"8.49\"", &format!("V94 = {written}"));
        assert!(
            error.starts_with("inventory/kiwi.toml:9:7: error: price "),
            "{error}"
        );
        assert!(!error.contains("such as \"8.49\" so"), "{error}");
        assert!(
            error.contains("expected euros as a string such as \"8.49\""),
            "{error}"
        );
    }
}

#[test]
fn a_price_of_another_type_is_one_error_naming_what_a_price_is() {
    for written in ["true", "[\"8.49\"]", "{ eur = \"8.49\" }", "1979-05-27"] {
        let error = only_error(Which::Main, "V94 = \"8.49\"", &format!("V94 = {written}"));
        assert!(
            error.starts_with("inventory/kiwi.toml:9:7: error: "),
            "{error}"
        );
        assert!(
            error.contains("expected a monthly price in euros as a string, e.g. \"8.49\""),
            "{error}"
        );
    }
}

#[test]
fn a_wrong_typed_value_is_one_error_saying_what_to_write() {
    let cases = [
        (
            Which::Main,
            "count = 2",
            "count = \"2\"",
            "inventory/kiwi.toml:32:9: error: `count` is a string (\"2\"); expected a whole number without quotes: `count = 2`",
        ),
        (
            Which::Main,
            "period = 1",
            "period = \"12\"",
            "inventory/kiwi.toml:5:10: error: `period` is a string (\"12\"); expected a whole number without quotes: `period = 12`",
        ),
        (
            Which::Main,
            "lease_seconds = 60",
            "lease_seconds = '60'",
            "inventory/kiwi.toml:17:17: error: `lease_seconds` is a string ('60'); expected a whole number without quotes: `lease_seconds = 60`",
        ),
        (
            Which::Main,
            "protected = true",
            "protected = \"true\"",
            "inventory/kiwi.toml:22:13: error: `protected` is a string (\"true\"); expected true or false without quotes: `protected = true`",
        ),
        (
            Which::Main,
            "version = \"v1.31.4+k3s1\"",
            "version = 1.31",
            "inventory/kiwi.toml:13:11: error: `version` is a floating-point number (1.31); expected a string in quotes: `version = \"1.31\"`",
        ),
        (
            Which::Acme,
            "count = 3",
            "count = \"3\"",
            "inventory/customers/acme.toml:7:9: error: `count` is a string (\"3\"); expected a whole number without quotes: `count = 3`",
        ),
        (
            Which::Acme,
            "count = 1",
            "count = 1.0",
            "inventory/customers/acme.toml:12:9: error: `count` is a floating-point number (1.0); expected a whole number without quotes",
        ),
        (
            Which::Acme,
            "taints = [\"workload.example.com/rtc=true:NoSchedule\"]",
            "taints = \"workload.example.com/rtc=true:NoSchedule\"",
            "inventory/customers/acme.toml:14:10: error: `taints` is a string (\"workload.example.com/rtc=true:NoSchedule\"); expected an array, e.g. [\"…\"]",
        ),
    ];
    for (which, from, to, expected) in cases {
        assert_eq!(only_error(which, from, to), expected);
    }
}

#[test]
fn a_broken_k3s_table_is_not_reported_missing_by_the_customers_that_need_it() {
    let error = only_error(Which::Main, "version = \"v1.31.4+k3s1\"", "version = 1");
    assert!(error.contains("`version` is a whole number (1)"), "{error}");
    let error = only_error(Which::Main, "[k3s]\n", "[k3s]\nchannel = \"stable\"\n");
    assert!(error.contains("unknown key `channel`"), "{error}");
}

#[test]
fn an_unreadable_prices_table_does_not_make_every_product_unpriced() {
    let kiwi = format!(
        "prices = 3\n{}",
        swap(KIWI, "[prices]\nV94 = \"8.49\"\nV8 = \"38.40\"\n", "")
    );
    let errors = validate_errors(&kiwi, ACME);
    assert_eq!(
        errors,
        ["inventory/kiwi.toml:1:10: error: `prices` is a whole number (3); expected a table"]
    );
    let error = only_error(Which::Main, "[provider]", "[provider");
    assert!(error.starts_with("inventory/kiwi.toml:1:"), "{error}");
}
