//! Bad inventories: each validation rule reports the file, line and column of
//! the mistake, and one run reports every mistake of every file.
#![allow(clippy::unwrap_used)]

use kiwi_infra::inventory::{self, Desired, Diagnostics};
use std::path::Path;

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

[core]
api_endpoint = "api.core.example:6443"
kubernetes_version = "v1.31.4"
control_plane = [
  { name = "cp-01", address = "203.0.113.11" },
  { name = "cp-02", address = "203.0.113.12" },
  { name = "cp-03", address = "203.0.113.13" },
]

[core.pools.general]
class = "vps"
product = "V94"
count = 2

[core.firewall]
cni_ports = ["udp/4789", "tcp/179"]
cluster_networks = ["10.244.0.0/16", "10.96.0.0/12"]
"#;

const ACME: &str = r#"tier = "mesh"

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

/// Writes an inventory (kiwi.toml plus customers) into a temporary folder.
fn write(kiwi: &str, customers: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kiwi.toml"), kiwi).unwrap();
    std::fs::create_dir(dir.path().join("customers")).unwrap();
    for (name, text) in customers {
        std::fs::write(
            dir.path().join("customers").join(format!("{name}.toml")),
            text,
        )
        .unwrap();
    }
    dir
}

fn load(dir: &tempfile::TempDir) -> Result<Desired, Diagnostics> {
    inventory::load(dir.path())
}

/// The errors as the operator reads them, with the temporary folder shown
/// as `inventory`.
fn errors(kiwi: &str, customers: &[(&str, &str)]) -> String {
    let dir = write(kiwi, customers);
    match load(&dir) {
        Ok(_) => panic!("inventory unexpectedly valid"),
        Err(d) => d
            .to_string()
            .replace(&dir.path().display().to_string(), "inventory"),
    }
}

#[test]
fn the_base_inventory_of_these_tests_is_valid() {
    let dir = write(KIWI, &[("acme", ACME)]);
    let desired = load(&dir).unwrap();
    assert_eq!(desired.clusters.len(), 2);
}

#[test]
fn unknown_keys_are_reported_with_file_line_and_column_all_at_once() {
    let kiwi = KIWI.replace("period = 1", "period = 1\nregoin = \"EU\"");
    let acme = ACME
        .replace("count = 1\n", "count = 1\nlabel = {}\n")
        .replace("tier = \"mesh\"", "tier = \"mesh\"\nprotect = true");
    let out = errors(&kiwi, &[("acme", &acme)]);
    assert!(
        out.contains("inventory/kiwi.toml:6:1: error: unknown key `regoin`; expected one of"),
        "{out}"
    );
    assert!(
        out.contains("inventory/customers/acme.toml:2:1: error: unknown key `protect`"),
        "{out}"
    );
    assert!(
        out.contains("inventory/customers/acme.toml:13:1: error: unknown key `label`"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn a_vps_product_in_a_vds_pool_and_the_reverse_are_errors() {
    let kiwi = KIWI.replace(
        "class = \"vps\"\nproduct = \"V94\"\ncount = 2",
        "class = \"vds\"\nproduct = \"V94\"\ncount = 2",
    );
    let acme = ACME.replace(
        "class = \"vds\"\nproduct = \"V8\"",
        "class = \"vps\"\nproduct = \"V8\"",
    );
    let out = errors(&kiwi, &[("acme", &acme)]);
    assert!(
        out.contains("inventory/kiwi.toml:26:11: error: product `V94` (VPS 20 NVMe) is a VPS product but the pool's class is `vds`; expected a VDS product: V8, V9, V10, V11, V16"),
        "{out}"
    );
    assert!(out.contains("inventory/customers/acme.toml:10:11: error: product `V8` (VDS S) is a VDS product but the pool's class is `vps`"), "{out}");
}

#[test]
fn an_unknown_product_and_an_unknown_class_are_errors() {
    let acme = ACME
        .replace("product = \"V8\"", "product = \"V7\"")
        .replace("class = \"vps\"", "class = \"vsp\"");
    let out = errors(KIWI, &[("acme", &acme)]);
    assert!(
        out.contains("acme.toml:10:11: error: unknown product `V7`; expected a Contabo product id"),
        "{out}"
    );
    assert!(
        out.contains("acme.toml:4:9: error: unknown variant `vsp`; expected `vps` or `vds`"),
        "{out}"
    );
}

#[test]
fn an_even_or_zero_number_of_k3s_servers_is_an_error() {
    for (count, shown) in [("2", "2 k3s servers"), ("0", "0 k3s servers")] {
        let acme = ACME.replacen("count = 3", &format!("count = {count}"), 1);
        let out = errors(KIWI, &[("acme", &acme)]);
        assert!(
            out.contains(&format!("inventory/customers/acme.toml:6:9: error: {shown} cannot keep etcd quorum; expected an odd number (3 for HA)")),
            "{out}"
        );
    }
}

#[test]
fn a_mesh_customer_without_servers_is_an_error() {
    let acme = "tier = \"fleet\"\n";
    let out = errors(KIWI, &[("acme", acme)]);
    assert!(out.contains("acme.toml:1:8: error: a fleet customer has a dedicated k3s cluster; expected a [servers] table"), "{out}");
}

#[test]
fn a_core_tier_customer_adds_no_nodes() {
    let shop = "tier = \"core\"\n\n[pools.extra]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n";
    let out = errors(KIWI, &[("shop", shop)]);
    assert!(
        out.contains("customers/shop.toml:3:2: error: a core-tier customer adds no nodes"),
        "{out}"
    );
}

#[test]
fn duplicate_names_are_errors() {
    // An agent pool may not be called like the servers' pool.
    let acme = ACME.replace("[pools.rtc]", "[pools.server]");
    let out = errors(KIWI, &[("acme", &acme)]);
    assert!(
        out.contains(
            "acme.toml:8:8: error: pool name `server` duplicates the name of the k3s servers' pool"
        ),
        "{out}"
    );

    // Cluster `a-b` pool `c` and cluster `a` pool `b-c` both make kiwi-a-b-c-01.
    let a = "tier = \"mesh\"\n[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n[pools.b-c]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n";
    let a_b = "tier = \"mesh\"\n[servers]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n[pools.c]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1\n";
    let out = errors(KIWI, &[("a", a), ("a-b", a_b)]);
    assert!(
        out.contains("customers/a.toml:6:8: error: duplicate node name `kiwi-a-b-c-01`: pool `b-c` of cluster `a` and pool `c` of cluster `a-b` (inventory/customers/a-b.toml) both produce it; expected unique names"),
        "{out}"
    );

    let kiwi = KIWI.replace("name = \"cp-02\"", "name = \"cp-01\"");
    let out = errors(&kiwi, &[]);
    assert!(
        out.contains("kiwi.toml:20:12: error: duplicate node name `cp-01`"),
        "{out}"
    );

    let core = "tier = \"core\"\n";
    let out = errors(KIWI, &[("core", core)]);
    assert!(
        out.contains(
            "customers/core.toml:1:1: error: customer name `core` is taken by the Core cluster"
        ),
        "{out}"
    );
}

#[test]
fn labels_a_kubelet_may_not_set_on_itself_are_errors() {
    let acme = ACME.replace(
        "labels = { \"workload.example.com/rtc\" = \"true\" }",
        "labels = { \"node-role.kubernetes.io/rtc\" = \"\", \"kubernetes.io/role\" = \"rtc\", \"topology.kubernetes.io/zone\" = \"nue\", \"node.kubernetes.io/rtc\" = \"yes\" }",
    );
    let out = errors(KIWI, &[("acme", &acme)]);
    assert!(out.contains("acme.toml:12:12: error: label `node-role.kubernetes.io/rtc` is under kubernetes.io/k8s.io and a kubelet may not set it on its own node (NodeRestriction)"), "{out}");
    assert!(
        out.contains("error: label `kubernetes.io/role` is under kubernetes.io/k8s.io"),
        "{out}"
    );
    // The allowed ones pass.
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn pools_may_not_override_kiwistack_labels_or_use_malformed_ones() {
    let acme = ACME.replace(
        "labels = { \"workload.example.com/rtc\" = \"true\" }",
        "labels = { \"kiwistack.io/node-class\" = \"vps\", \"Bad_Prefix.com/x\" = \"y\", \"ok\" = \"not ok!\" }",
    );
    let out = errors(KIWI, &[("acme", &acme)]);
    assert!(
        out.contains(
            "acme.toml:12:12: error: label `kiwistack.io/node-class` is set by kiwi-infra itself"
        ),
        "{out}"
    );
    assert!(
        out.contains("error: label key `Bad_Prefix.com/x` has an invalid prefix"),
        "{out}"
    );
    assert!(
        out.contains("error: label value `not ok!` is malformed"),
        "{out}"
    );
}

#[test]
fn malformed_taints_are_errors() {
    let acme = ACME.replace(
        "taints = [\"workload.example.com/rtc=true:NoSchedule\"]",
        "taints = [\"rtc=true\", \"rtc=true:Sometimes\", \"=x:NoSchedule\"]",
    );
    let out = errors(KIWI, &[("acme", &acme)]);
    assert!(
        out.contains(
            "acme.toml:13:11: error: taint `rtc=true` has no effect; expected `key=value:Effect`"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "acme.toml:13:23: error: taint `rtc=true:Sometimes` has unknown effect `Sometimes`"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "acme.toml:13:45: error: taint `=x:NoSchedule`: label key `` has an invalid name"
        ),
        "{out}"
    );
}

#[test]
fn a_product_in_use_without_a_price_is_an_error() {
    let kiwi = KIWI.replace("V8 = \"38.40\"\n", "");
    let out = errors(&kiwi, &[("acme", ACME)]);
    assert_eq!(
        out,
        "inventory/customers/acme.toml:10:11: error: no price for product `V8`; expected `V8 = \"…\"` under [prices] in kiwi.toml"
    );
}

#[test]
fn prices_must_be_exact_euro_strings_for_known_products() {
    let kiwi = KIWI.replace(
        "V8 = \"38.40\"",
        "V8 = 38.40\nV1 = \"1.00\"\nV9 = \"4.999\"",
    );
    let out = errors(&kiwi, &[]);
    assert!(out.contains("kiwi.toml:10:6: error: price 38.40 is a floating-point number; expected a string such as \"38.40\" so cents stay exact"), "{out}");
    assert!(
        out.contains("kiwi.toml:11:1: error: unknown product `V1`"),
        "{out}"
    );
    assert!(
        out.contains("kiwi.toml:12:6: error: price `4.999` is not an amount in euros"),
        "{out}"
    );
}

#[test]
fn provider_values_are_checked() {
    let kiwi = KIWI
        .replace("region = \"EU\"", "region = \"Mars\"")
        .replace("period = 1", "period = 2");
    let out = errors(&kiwi, &[]);
    assert!(
        out.contains(
            "kiwi.toml:2:10: error: unknown region `Mars`; expected one of EU, US-central"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "kiwi.toml:5:10: error: contract period 2 is not offered; expected 1, 3, 6 or 12"
        ),
        "{out}"
    );
}

#[test]
fn a_private_key_is_refused_without_being_echoed() {
    let secret = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ";
    let kiwi = KIWI.replace(
        "ssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@example\"",
        &format!("ssh_public_key = \"-----BEGIN OPENSSH PRIVATE KEY-----\\n{secret}\\n\""),
    );
    let out = errors(&kiwi, &[]);
    assert!(
        out.contains(
            "kiwi.toml:4:18: error: this is a private key; expected the operator's public key"
        ),
        "{out}"
    );
    assert!(!out.contains(secret), "{out}");
}

#[test]
fn the_ssh_key_may_come_from_a_file_next_to_the_inventory() {
    let kiwi = KIWI.replace(
        "ssh_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G ops@example\"",
        "ssh_public_key_file = \"operator.pub\"",
    );
    let dir = write(&kiwi, &[]);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G file@example";
    std::fs::write(dir.path().join("operator.pub"), format!("{key}\n")).unwrap();
    assert_eq!(load(&dir).unwrap().provider.ssh_public_key, key);
}

#[test]
fn a_syntax_error_in_one_file_does_not_hide_errors_in_others() {
    let broken = "tier = \"mesh\n";
    let acme = ACME.replace("count = 3", "count = 4");
    let out = errors(KIWI, &[("broken", broken), ("acme", &acme)]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("inventory/customers/acme.toml:6:9: error: 4 k3s servers"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("inventory/customers/broken.toml:1:"),
        "{out}"
    );
}

#[test]
fn errors_of_every_rule_and_file_come_in_one_run() {
    let kiwi = KIWI
        .replace("V8 = \"38.40\"\n", "")
        .replace("period = 1", "period = 1\nfoo = 1");
    let acme = ACME.replace("count = 3", "count = 2").replace(
        "taints = [\"workload.example.com/rtc=true:NoSchedule\"]",
        "taints = [\"x:Never\"]",
    );
    let globex = ACME.replace("[pools.rtc]", "[pools.server]");
    let dir = write(&kiwi, &[("acme", &acme), ("globex", &globex)]);
    let diagnostics = load(&dir).unwrap_err();
    let kinds: Vec<String> = diagnostics
        .iter()
        .map(|d| d.message.split(';').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(diagnostics.len(), 6, "{diagnostics}");
    assert!(kinds[0].starts_with("unknown key `foo`"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k.starts_with("2 k3s servers")),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k.starts_with("taint `x:Never`")),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k.starts_with("pool name `server`")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("no price for product `V8`"))
            .count(),
        2,
        "{kinds:?}"
    );
}

#[test]
fn a_missing_inventory_is_a_clear_error() {
    let out = match inventory::load(Path::new("/nonexistent/inventory")) {
        Ok(_) => panic!("loaded a missing inventory"),
        Err(d) => d.to_string(),
    };
    assert_eq!(out, "/nonexistent/inventory: error: inventory directory not found; expected a directory holding kiwi.toml and customers/");

    let dir = tempfile::tempdir().unwrap();
    let out = inventory::load(dir.path()).unwrap_err().to_string();
    assert!(out.ends_with("kiwi.toml: error: file not found; expected the inventory's main file with [provider], [prices] and [core]"), "{out}");
}

#[test]
fn missing_sections_and_keys_are_named() {
    let out = errors("[provider]\nregion = \"EU\"\n", &[]);
    assert!(
        out.contains("kiwi.toml:1:1: error: missing key `image`"),
        "{out}"
    );
    assert!(out.contains("error: missing table `[prices]`"), "{out}");
    assert!(out.contains("error: missing table `[core]`"), "{out}");
}

#[test]
fn the_state_table_names_its_backend_and_a_wrong_one_is_an_error_with_file_and_line() {
    use kiwi_infra::inventory::{StateBackend, DEFAULT_LEASE_SECONDS};
    // No table: the local files, said out loud by apply.
    let dir = write(KIWI, &[("acme", ACME)]);
    let state = load(&dir).unwrap().state;
    assert_eq!(
        (state.backend, state.lease_seconds),
        (StateBackend::Local, DEFAULT_LEASE_SECONDS)
    );
    let shared = format!("{KIWI}\n[state]\nbackend = \"core-cluster\"\nlease_seconds = 20\n");
    let dir = write(&shared, &[("acme", ACME)]);
    let state = load(&dir).unwrap().state;
    assert_eq!(
        (state.backend, state.lease_seconds),
        (StateBackend::CoreCluster, 20)
    );

    let own = format!(
        "{KIWI}\n[state]\nbackend = \"core-cluster\"\naccess = \"kubeconfig\"\ncontext = \"admin@core\"\n"
    );
    let dir = write(&own, &[("acme", ACME)]);
    assert_eq!(
        load(&dir).unwrap().state.access,
        kiwi_infra::inventory::StateAccess::Kubeconfig {
            context: Some("admin@core".into())
        }
    );

    let line = KIWI.lines().count() + 3;
    let typo = format!("{KIWI}\n[state]\nbackend = \"core\"\n");
    let out = errors(&typo, &[("acme", ACME)]);
    assert!(
        out.contains(&format!(
            "inventory/kiwi.toml:{line}:11: error: unknown state backend `core`; expected \"core-cluster\""
        )),
        "{out}"
    );
    for (table, what) in [
        (
            "backend = \"core-cluster\"\nlease_seconds = 1",
            "lease_seconds 1 is out of range",
        ),
        (
            "backend = \"core-cluster\"\nlease_seconds = 99999",
            "lease_seconds 99999 is out of range",
        ),
        (
            "backend = \"local\"\nlease_seconds = 30",
            "lease_seconds applies to backend = \"core-cluster\" only",
        ),
        (
            "backend = \"core-cluster\"\nkubeconfig = \"x\"",
            "unknown key `kubeconfig`",
        ),
        ("lease_seconds = 30", "missing key `backend`"),
        (
            "backend = \"core-cluster\"\naccess = \"http\"",
            "unknown access `http`",
        ),
        (
            "backend = \"local\"\naccess = \"kubeconfig\"",
            "access applies to backend = \"core-cluster\" only",
        ),
        (
            "backend = \"core-cluster\"\ncontext = \"core\"",
            "context applies to access = \"kubeconfig\" only",
        ),
        (
            "backend = \"core-cluster\"\naccess = \"kubeconfig\"\ncontext = \"--kubeconfig=/x\"",
            "not a plain kubeconfig context name",
        ),
    ] {
        let out = errors(&format!("{KIWI}\n[state]\n{table}\n"), &[("acme", ACME)]);
        assert!(out.contains("inventory/kiwi.toml:"), "{out}");
        assert!(out.contains(what), "{table}: {out}");
    }
}

// ---- the host firewall's keys (issue 18) ----

#[test]
fn a_missing_operator_network_list_is_an_error_saying_what_to_write() {
    let kiwi = KIWI.replace(
        "operator_networks = [\"198.51.100.0/24\", \"2001:db8::/48\"]\n",
        "",
    );
    let out = errors(&kiwi, &[("acme", ACME)]);
    assert!(
        out.contains("inventory/kiwi.toml:1:2: error: no operator_networks; expected the networks you reach SSH and the Kubernetes API from, e.g. operator_networks = [\"198.51.100.0/24\", \"2001:db8::/48\"]"),
        "{out}"
    );
    assert!(
        out.contains("operator_networks = [] to leave SSH and the API open"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn operator_networks_with_host_bits_or_of_another_form_are_errors_naming_the_value() {
    let cases = [
        ("\"192.0.2.1/24\"", "`192.0.2.1/24` has host bits set; expected the network \"192.0.2.0/24\" (or \"192.0.2.1/32\" for the one host)"),
        ("\"2001:db8::1/48\"", "`2001:db8::1/48` has host bits set; expected the network \"2001:db8::/48\""),
        ("\"192.0.2.1\"", "`192.0.2.1` is not a network in CIDR form"),
        ("\"10.0.0.0/33\"", "`10.0.0.0/33` is not a network in CIDR form"),
        ("\"10.0.0.0/8; tcp dport 22 accept\"", "is not a network in CIDR form"),
        ("\"any\"", "`any` is not a network in CIDR form"),
    ];
    for (written, expected) in cases {
        let kiwi = KIWI.replace("\"198.51.100.0/24\", \"2001:db8::/48\"", written);
        let out = errors(&kiwi, &[("acme", ACME)]);
        assert!(
            out.contains("inventory/kiwi.toml:6:22: error: operator network ")
                && out.contains(expected),
            "{written}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}

#[test]
fn an_empty_operator_list_is_accepted_and_validate_warns_that_ssh_is_open() {
    let kiwi = KIWI.replace("\"198.51.100.0/24\", \"2001:db8::/48\"", "");
    let dir = write(&kiwi, &[("acme", ACME)]);
    assert!(load(&dir).unwrap().provider.operator_networks.is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .arg("--inventory")
        .arg(dir.path())
        .arg("validate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: operator_networks = []")
            && stderr.contains("open to the internet"),
        "{stderr}"
    );
    // With networks named, no warning.
    let dir = write(KIWI, &[("acme", ACME)]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .arg("--inventory")
        .arg(dir.path())
        .arg("validate")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

/// `0.0.0.0/0` (or `::/0`) as an operator network opens SSH and the API to
/// everyone, exactly like `[]`: it is warned about the same way, in
/// `validate` and in every plan (found by an attacker: it was silent).
#[test]
fn a_whole_address_family_as_operator_network_is_warned_about_like_an_empty_list() {
    for open in ["\"0.0.0.0/0\"", "\"198.51.100.0/24\", \"::/0\""] {
        let kiwi = KIWI.replace("\"198.51.100.0/24\", \"2001:db8::/48\"", open);
        let dir = write(&kiwi, &[("acme", ACME)]);
        assert!(
            load(&dir).unwrap().provider.operators_open_to_anyone(),
            "{open}"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
            .arg("--inventory")
            .arg(dir.path())
            .arg("validate")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "warning: {} in operator_networks",
                open.rsplit('"').nth(1).unwrap()
            )) && stderr.contains("open to the internet"),
            "{open}: {stderr}"
        );
    }
}

fn validate_stderr(kiwi: &str) -> (bool, String) {
    let dir = write(kiwi, &[("acme", ACME)]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .arg("--inventory")
        .arg(dir.path())
        .arg("validate")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Found by an attacker: halves of the IPv4 space were warned about as "a
/// /0 network", which the operator never wrote.
#[test]
fn halves_of_an_address_family_are_warned_about_as_what_they_make() {
    let halves = KIWI.replace(
        "\"198.51.100.0/24\", \"2001:db8::/48\"",
        "\"0.0.0.0/1\", \"128.0.0.0/1\"",
    );
    let (ok, stderr) = validate_stderr(&halves);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: operator_networks that together make 0.0.0.0/0 in ")
            && !stderr.contains("a /0 network"),
        "{stderr}"
    );
}

/// Found by an attacker: operator networks that cover a very large part of
/// the internet without being everyone (`0.0.0.0/1` alone, a /7) were
/// silent. Warned with how much they cover, counted over all of them.
#[test]
fn operator_networks_covering_a_very_large_part_of_the_internet_are_warned_about() {
    for (wide, says) in [
        ("\"0.0.0.0/1\"", "2147483648 IPv4 addresses (50.00% of all)"),
        ("\"64.0.0.0/7\"", "33554432 IPv4 addresses (0.78% of all)"),
        // Together: two /8s are more than a /8.
        ("\"64.0.0.0/8\", \"66.0.0.0/8\"", "33554432 IPv4 addresses"),
        ("\"198.51.100.0/24\", \"2002::/16\"", "2^112 IPv6 addresses"),
        ("\"198.51.100.0/24\", \"2000::/3\"", "2^125 IPv6 addresses"),
    ] {
        let kiwi = KIWI.replace("\"198.51.100.0/24\", \"2001:db8::/48\"", wide);
        let desired = load(&write(&kiwi, &[])).unwrap();
        assert!(!desired.provider.operators_open_to_anyone(), "{wide}");
        assert!(
            desired.provider.operators_wide().unwrap().contains(says),
            "{wide}: {:?}",
            desired.provider.operators_wide()
        );
        let (ok, stderr) = validate_stderr(&kiwi);
        assert!(ok, "{stderr}");
        assert!(
            stderr.contains("warning: operator_networks in ")
                && stderr.contains(says)
                && stderr.contains("a very large part of the internet"),
            "{wide}: {stderr}"
        );
    }
    for narrow in [
        "\"10.0.0.0/8\"",
        "\"198.51.100.0/24\", \"2001:db8::/32\"",
        "\"198.51.100.0/24\", \"2002:c633:6400::/40\"",
    ] {
        let kiwi = KIWI.replace("\"198.51.100.0/24\", \"2001:db8::/48\"", narrow);
        assert_eq!(
            load(&write(&kiwi, &[])).unwrap().provider.operators_wide(),
            None,
            "{narrow}"
        );
        let (ok, stderr) = validate_stderr(&kiwi);
        assert!(ok && !stderr.contains("warning"), "{narrow}: {stderr}");
    }
    // `[]` and a /0 are "anyone", not "wide": one warning, not two.
    let open = KIWI.replace("\"2001:db8::/48\"", "\"::/0\"");
    assert_eq!(
        load(&write(&open, &[])).unwrap().provider.operators_wide(),
        None
    );
}

/// Found by an attacker: only networks inside `::ffff:0:0/96` were
/// refused; one holding it (`::fffe:0:0/95`, `::/64`) or an IPv4-compatible
/// one (`::198.51.100.0/120`) names no source a packet from another host
/// carries, and the operator would be locked out without a word.
#[test]
fn ipv6_operator_networks_no_packet_comes_from_are_refused() {
    for (net, says) in [
        ("::fffe:0:0/95", "holds the IPv4-mapped IPv6 network ::ffff:0:0/96"),
        ("::/64", "holds the IPv4-mapped IPv6 network ::ffff:0:0/96"),
        ("::/1", "holds the IPv4-mapped IPv6 network ::ffff:0:0/96"),
        ("::ffff:0:0/96", "is an IPv4-mapped IPv6 network"),
        (
            "::198.51.100.0/120",
            "is an IPv4-compatible IPv6 network (deprecated), which no packet from another host carries as its source; expected the IPv4 network \"198.51.100.0/24\"",
        ),
        ("::/96", "is an IPv4-compatible IPv6 network"),
        ("::/127", "is an IPv4-compatible IPv6 network"),
        ("::/95", "holds the IPv4-compatible IPv6 network ::/96"),
    ] {
        let kiwi = KIWI.replace("\"2001:db8::/48\"", &format!("\"{net}\""));
        let out = errors(&kiwi, &[]);
        assert!(
            out.contains(&format!(
                "operator network {} {says}",
                net.parse::<ipnet::IpNet>().unwrap()
            )),
            "{net}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    // The node itself, 6to4 networks and `::/0` (anyone, warned) are kept.
    for kept in [
        "::1/128",
        "2002::/16",
        "2002:c633:6400::/40",
        "::/0",
        "64:ff9b::/96",
    ] {
        let kiwi = KIWI.replace("\"2001:db8::/48\"", &format!("\"{kept}\""));
        assert!(load(&write(&kiwi, &[])).is_ok(), "{kept}");
    }
}

#[test]
fn the_core_firewall_is_required_and_its_ports_and_networks_are_checked() {
    let fw = "\n[core.firewall]\ncni_ports = [\"udp/4789\", \"tcp/179\"]\ncluster_networks = [\"10.244.0.0/16\", \"10.96.0.0/12\"]\n";
    let out = errors(&KIWI.replace(fw, ""), &[("acme", ACME)]);
    assert!(
        out.contains("error: no [core.firewall]; expected the Core cluster's CNI ports"),
        "{out}"
    );
    let out = errors(
        &KIWI.replace("cni_ports = [\"udp/4789\", \"tcp/179\"]\n", ""),
        &[],
    );
    assert!(
        out.contains("error: no cni_ports in [core.firewall]"),
        "{out}"
    );
    let out = errors(
        &KIWI.replace(
            "\"udp/4789\", \"tcp/179\"",
            "\"sctp/1\", \"udp/0\", \"udp/90-80\", \"4789\"",
        ),
        &[],
    );
    for expected in [
        "CNI port unknown protocol `sctp`",
        "CNI port `0` is not a port",
        "CNI port port range 90-80 runs backwards",
        "CNI port `4789` names no protocol",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    assert_eq!(out.lines().count(), 4, "{out}");
    let out = errors(&KIWI.replace("\"10.96.0.0/12\"", "\"fd00::/8\""), &[]);
    assert!(
        out.contains("cluster network is IPv6; expected an IPv4 network"),
        "{out}"
    );
}

#[test]
fn public_ports_are_numbers_or_forward_ranges_and_default_to_ingress() {
    let dir = write(KIWI, &[("acme", ACME)]);
    let desired = load(&dir).unwrap();
    let acme = desired.cluster("acme").unwrap();
    let shown: Vec<String> = acme
        .firewall
        .public
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["tcp/80", "tcp/443"]);

    let with =
        |table: &str| ACME.replace("tier = \"mesh\"\n", &format!("tier = \"mesh\"\n{table}\n"));
    let dir = write(
        KIWI,
        &[(
            "acme",
            &with(
                "[firewall]\npublic_tcp_ports = [443, \"30000-30010\"]\npublic_udp_ports = [51830]",
            ),
        )],
    );
    let desired = load(&dir).unwrap();
    let shown: Vec<String> = desired
        .cluster("acme")
        .unwrap()
        .firewall
        .public
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["tcp/443", "tcp/30000-30010", "udp/51830"]);

    let out = errors(
        KIWI,
        &[("acme", &with("[firewall]\npublic_tcp_ports = [0, 70000, \"90-80\", -1]\npublic_udp_ports = [true]"))],
    );
    for expected in [
        "port 0 is out of range; expected 1 to 65535",
        "port 70000 is out of range",
        "port range 90-80 runs backwards",
        "port -1 is out of range",
        "this is not a port; expected a number such as 443",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    // CNI ports are Core's; a customer cluster's come from its flannel backend.
    let out = errors(
        KIWI,
        &[("acme", &with("[firewall]\ncni_ports = [\"udp/4789\"]"))],
    );
    assert!(
        out.contains("unknown field `cni_ports`") || out.contains("unknown key `cni_ports`"),
        "{out}"
    );
}

#[test]
fn the_flannel_backend_defaults_to_wireguard_and_opens_its_ports_between_members() {
    use kiwi_infra::firewall::FlannelBackend;
    use kiwi_infra::inventory::ClusterKind;
    let backend = |kiwi: &str| {
        let dir = write(kiwi, &[("acme", ACME)]);
        let desired = load(&dir).unwrap();
        let acme = desired.cluster("acme").unwrap().clone();
        let ClusterKind::K3s {
            flannel_backend, ..
        } = acme.kind
        else {
            panic!("acme is a k3s cluster")
        };
        let cni: Vec<String> = acme.firewall.cni.iter().map(ToString::to_string).collect();
        (flannel_backend, cni)
    };
    assert_eq!(
        backend(KIWI),
        (
            FlannelBackend::WireguardNative,
            vec!["udp/51820-51821".to_string()]
        )
    );
    let vxlan = KIWI.replace("[k3s]\n", "[k3s]\nflannel_backend = \"vxlan\"\n");
    assert_eq!(
        backend(&vxlan),
        (FlannelBackend::Vxlan, vec!["udp/8472".to_string()])
    );
    let out = errors(
        &KIWI.replace("[k3s]\n", "[k3s]\nflannel_backend = \"host-gw\"\n"),
        &[("acme", ACME)],
    );
    assert!(
        out.contains("error: [k3s] flannel_backend `host-gw` is not a flannel backend kiwi-infra supports; expected \"wireguard-native\""),
        "{out}"
    );
}

#[test]
fn a_private_network_needs_the_add_on_price_and_is_refused_for_core() {
    let acme = ACME.replace(
        "tier = \"mesh\"\n",
        "tier = \"mesh\"\nprivate_network = true\n",
    );
    let out = errors(KIWI, &[("acme", &acme)]);
    assert!(
        out.contains("customers/acme.toml:2:19: error: no price for the private-networking add-on; expected `private_networking = \"…\"`"),
        "{out}"
    );
    let priced = KIWI.replace(
        "V8 = \"38.40\"\n",
        "V8 = \"38.40\"\nprivate_networking = \"2.99\"\n",
    );
    let dir = write(&priced, &[("acme", &acme)]);
    let desired = load(&dir).unwrap();
    assert!(desired.cluster("acme").unwrap().private_network);
    assert!(!desired.cluster("core").unwrap().private_network);
    assert_eq!(desired.private_networking_price.map(|m| m.cents), Some(299));
    // The add-on's key is no product: it costs no product price.
    assert!(desired.price("private_networking").is_none());
    // A wrong price is reported at it, once.
    let wrong = KIWI.replace(
        "V8 = \"38.40\"\n",
        "V8 = \"38.40\"\nprivate_networking = \"2,99\"\n",
    );
    let out = errors(&wrong, &[("acme", &acme)]);
    assert!(
        out.contains("price `2,99` is not an amount in euros"),
        "{out}"
    );
    assert!(
        !out.contains("no price for the private-networking add-on"),
        "{out}"
    );
    // Core's control plane is not kiwi-infra's: the switch is refused there.
    let core = priced.replace(
        "kubernetes_version = \"v1.31.4\"\n",
        "kubernetes_version = \"v1.31.4\"\nprivate_network = true\n",
    );
    let out = errors(&core, &[]);
    assert!(
        out.contains("error: private_network is not supported for the Core cluster: its control plane is not ordered by kiwi-infra"),
        "{out}"
    );
    // A core-tier customer has no cluster of its own.
    let out = errors(
        &priced,
        &[("shop", "tier = \"core\"\nprivate_network = true\n")],
    );
    assert!(out.contains("customers/shop.toml:2:19: error: a core-tier customer adds no nodes, so it has no private network of its own"), "{out}");
}

/// Public ports may not open what the firewall keeps for the operator
/// networks and the members (found by an attacker: `public_tcp_ports =
/// [22]` or `"1-65535"` quietly opened SSH, etcd and the kubelet to
/// everyone).
#[test]
fn public_ports_that_would_open_ssh_the_api_etcd_the_kubelet_or_the_cni_are_refused() {
    let with =
        |table: &str| ACME.replace("tier = \"mesh\"\n", &format!("tier = \"mesh\"\n{table}\n"));
    let cases = [
        ("public_tcp_ports = [22]", "public port tcp/22 would open SSH (tcp/22) to anyone; the firewall keeps it for [provider] operator_networks"),
        ("public_tcp_ports = [\"1-65535\"]", "public port tcp/1-65535 would open SSH"),
        ("public_tcp_ports = [6443]", "would open the Kubernetes API (tcp/6443)"),
        ("public_tcp_ports = [\"2000-2379\"]", "would open etcd (tcp/2379-2380)"),
        ("public_tcp_ports = [10250]", "would open the kubelet (tcp/10250)"),
        ("public_udp_ports = [51820]", "would open flannel's wireguard-native backend (udp/51820-51821)"),
    ];
    for (ports, expected) in cases {
        let out = errors(KIWI, &[("acme", &with(&format!("[firewall]\n{ports}")))]);
        assert!(
            out.contains("inventory/customers/acme.toml:")
                && out.contains(expected)
                && out.contains("expected the ports your services answer on"),
            "{ports}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    // The same numbers on the other protocol, and NodePorts, are fine.
    let dir = write(
        KIWI,
        &[(
            "acme",
            &with("[firewall]\npublic_tcp_ports = [443, 8472, 30080]\npublic_udp_ports = [22, 6443, 51830]"),
        )],
    );
    load(&dir).unwrap();
    // Core: its CNI's ports and the control plane's are kept too.
    for (ports, expected) in [
        (
            "public_tcp_ports = [179]",
            "would open the CNI (cni_ports) (tcp/179)",
        ),
        (
            "public_udp_ports = [4789]",
            "would open the CNI (cni_ports) (udp/4789)",
        ),
        (
            "public_tcp_ports = [10259]",
            "would open kube-scheduler (tcp/10259)",
        ),
    ] {
        let kiwi = KIWI.replace(
            "cluster_networks = [",
            &format!("{ports}\ncluster_networks = ["),
        );
        let out = errors(&kiwi, &[]);
        assert!(
            out.contains("inventory/kiwi.toml:") && out.contains(expected),
            "{ports}: {out}"
        );
    }
    let kiwi = KIWI.replace(
        "cluster_networks = [",
        "public_tcp_ports = [80, \"30000-32767\"]\ncluster_networks = [",
    );
    load(&write(&kiwi, &[])).unwrap();
}

/// A CNI port on SSH would open SSH to every member.
#[test]
fn a_cni_port_on_ssh_is_refused() {
    let out = errors(&KIWI.replace("\"tcp/179\"", "\"tcp/20-30\""), &[]);
    assert!(
        out.contains("CNI port tcp/20-30 includes SSH (tcp/22), which the firewall opens to [provider] operator_networks only"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    load(&write(&KIWI.replace("\"tcp/179\"", "\"udp/22\""), &[])).unwrap();
}

/// Pod and service networks are admitted to the kubelet and the API (and
/// before DNAT to everything): a public one would admit strangers (found by
/// an attacker: `cluster_networks = ["0.0.0.0/0"]` was accepted).
#[test]
fn cluster_networks_must_be_private() {
    for public in ["0.0.0.0/0", "198.51.100.0/24", "10.0.0.0/7", "100.0.0.0/8"] {
        let out = errors(
            &KIWI.replace("\"10.96.0.0/12\"", &format!("\"{public}\"")),
            &[],
        );
        assert!(
            out.contains(&format!("cluster network {public} is not a private network; expected pod and service networks inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10")),
            "{public}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    for private in ["172.20.0.0/16", "192.168.0.0/16", "100.64.0.0/16"] {
        load(&write(
            &KIWI.replace("\"10.96.0.0/12\"", &format!("\"{private}\"")),
            &[],
        ))
        .unwrap();
    }
}

/// An IPv4-mapped IPv6 operator network never matches a packet: the
/// operator would be locked out of SSH with no word (found by an attacker).
#[test]
fn an_ipv4_mapped_operator_network_is_refused_with_the_ipv4_network_to_write() {
    let kiwi = KIWI.replace("\"2001:db8::/48\"", "\"::ffff:198.51.100.0/120\"");
    let out = errors(&kiwi, &[]);
    assert!(
        out.contains("operator network ::ffff:198.51.100.0/120 is an IPv4-mapped IPv6 network")
            && out.contains("expected the IPv4 network \"198.51.100.0/24\""),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    // ::/0 still means "anyone" (warned), not a mapped network.
    let open = KIWI.replace("\"2001:db8::/48\"", "\"::/0\"");
    assert!(load(&write(&open, &[]))
        .unwrap()
        .provider
        .operators_open_to_anyone());
    // Two halves of the IPv4 space are the whole of it.
    let halves = KIWI.replace(
        "\"198.51.100.0/24\", \"2001:db8::/48\"",
        "\"0.0.0.0/1\", \"128.0.0.0/1\"",
    );
    assert!(load(&write(&halves, &[]))
        .unwrap()
        .provider
        .operators_open_to_anyone());
}
