//! `nft` on simulated nodes: the stand-in keeps each node's ruleset as what the real nft
//! accepted, answers listings with the real nft's own output, and never loads anything into
//! the host's network namespace (which every simulated node shares).

#![allow(clippy::unwrap_used)]

mod standin_support;

use standin_support::SimNode;

const RULESET: &str = "table inet kiwi\ndelete table inet kiwi\ntable inet kiwi {\n  set peers4 {\n    type ipv4_addr\n    elements = { 127.0.21.1, 127.0.21.2 }\n  }\n  chain input {\n    type filter hook input priority filter; policy drop;\n    ip saddr @peers4 tcp dport { 6443 } accept\n  }\n}\n";

fn host_tables() -> String {
    let out = std::process::Command::new("/usr/sbin/nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn peers(node: &SimNode) -> serde_json::Value {
    let listed = node
        .run_with(
            "nft",
            &["-j", "list", "set", "inet", "kiwi", "peers4"],
            &[],
            None,
        )
        .ok()
        .json();
    listed["nftables"][1]["set"]["elem"].clone()
}

#[test]
fn a_node_keeps_the_ruleset_the_real_nft_accepted_and_the_host_keeps_none() {
    let before = host_tables();
    let node = SimNode::new("nft-1", "127.0.21.1");
    let absent = node.run_with("nft", &["-j", "list", "table", "inet", "kiwi"], &[], None);
    assert_eq!(absent.code, 1, "{}", absent.stdout);
    assert!(
        absent.stderr.contains("No such file or directory"),
        "{}",
        absent.stderr
    );

    // cloud-init's `systemctl enable --now nftables` loads /etc/nftables.conf.
    node.write("/etc/nftables.conf", RULESET);
    node.run_with("systemctl", &["enable", "--now", "nftables"], &[], None)
        .ok();
    assert_eq!(
        node.run_with("systemctl", &["is-active", "nftables"], &[], None)
            .ok()
            .stdout,
        "active\n"
    );
    assert_eq!(
        peers(&node),
        serde_json::json!(["127.0.21.1", "127.0.21.2"])
    );

    // A hand edit, as an operator would type it.
    node.run_with(
        "nft",
        &["add", "element", "inet", "kiwi", "peers4", "{ 127.9.9.9 }"],
        &[],
        None,
    )
    .ok();
    assert_eq!(
        peers(&node),
        serde_json::json!(["127.0.21.1", "127.0.21.2", "127.9.9.9"])
    );

    // Loading the whole file again (from stdin) replaces the table: the edit is gone.
    node.run_with("nft", &["-f", "-"], &[], Some(RULESET)).ok();
    assert_eq!(
        peers(&node),
        serde_json::json!(["127.0.21.1", "127.0.21.2"])
    );

    // The host's namespace never saw any of it.
    assert_eq!(host_tables(), before);
    assert!(!host_tables().contains("kiwi"));
}

/// Regression: Debian's own `nftables.service` (ExecStart=/usr/sbin/nft -f …) is visible to
/// a simulated node through the host's lower layer; starting it ran the real nft in the
/// host's network namespace and loaded a node's ruleset into the host.
#[test]
fn the_hosts_nftables_unit_file_never_runs_the_real_nft_on_a_node() {
    let before = host_tables();
    let node = SimNode::new("nft-4", "127.0.21.4");
    node.write(
        "/lib/systemd/system/nftables.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/nft -f /etc/nftables.conf\n",
    );
    node.write("/etc/nftables.conf", RULESET);
    node.run_with("systemctl", &["enable", "--now", "nftables"], &[], None)
        .ok();
    node.run_with("systemctl", &["restart", "nftables"], &[], None)
        .ok();
    assert_eq!(
        peers(&node),
        serde_json::json!(["127.0.21.1", "127.0.21.2"])
    );
    assert_eq!(host_tables(), before);
    assert!(!host_tables().contains("kiwi"));
    // Any other unit that runs nft directly is refused, not run.
    node.write(
        "/etc/systemd/system/evil.service",
        "[Service]\nExecStart=/usr/sbin/nft -f /etc/nftables.conf\n",
    );
    let evil = node.run_with("systemctl", &["start", "evil"], &[], None);
    assert_ne!(evil.code, 0);
    assert!(!host_tables().contains("kiwi"));
}

#[test]
fn input_the_real_nft_refuses_is_refused_and_not_recorded() {
    let node = SimNode::new("nft-2", "127.0.21.2");
    node.write("/etc/nftables.conf", RULESET);
    node.run_with("nft", &["-f", "/etc/nftables.conf"], &[], None)
        .ok();
    let bad = node.run_with(
        "nft",
        &["-f", "-"],
        &[],
        Some("table inet kiwi {\n  bogus\n}\n"),
    );
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("Error: syntax error"), "{}", bad.stderr);
    let missing_set = node.run_with(
        "nft",
        &["add", "element", "inet", "kiwi", "nosuch", "{ 192.0.2.1 }"],
        &[],
        None,
    );
    assert_ne!(missing_set.code, 0);
    // `-c` checks without loading.
    node.run_with(
        "nft",
        &[
            "-c",
            "add",
            "element",
            "inet",
            "kiwi",
            "peers4",
            "{ 192.0.2.9 }",
        ],
        &[],
        None,
    )
    .ok();
    assert_eq!(
        peers(&node),
        serde_json::json!(["127.0.21.1", "127.0.21.2"])
    );
    // Commands kiwi-infra never sends are refused, not passed to the real nft.
    let other = node.run_with("nft", &["flush", "table", "inet", "kiwi"], &[], None);
    assert_ne!(other.code, 0);
    assert!(other.stderr.contains("not simulated"), "{}", other.stderr);
}

#[test]
fn a_reboot_forgets_the_ruleset_until_the_nftables_unit_loads_the_file_again() {
    let node = SimNode::new("nft-3", "127.0.21.3");
    node.write("/etc/nftables.conf", RULESET);
    node.run_with("systemctl", &["enable", "--now", "nftables"], &[], None)
        .ok();
    // A reboot empties /run.
    std::fs::remove_dir_all(node.path("/run")).unwrap();
    let gone = node.run_with("nft", &["list", "ruleset"], &[], None).ok();
    assert!(!gone.stdout.contains("kiwi"), "{}", gone.stdout);
    // systemd starts enabled units at boot.
    node.run_with("kiwi-node-standin", &["boot"], &[], None)
        .ok();
    assert_eq!(
        peers(&node),
        serde_json::json!(["127.0.21.1", "127.0.21.2"])
    );
}
