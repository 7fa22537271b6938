//! The end-to-end tests that need root, in one test binary: clusters built
//! on simulated nodes (mount namespaces, port 22 on loopback addresses, the
//! `kiwi-node-standin` binary), the runbooks run against a sandbox, and the
//! SSH transport against a real sshd. Each module is one former
//! `tests/NAME.rs`, its test names unchanged; run one with
//! `sudo -E cargo test --test e2e NAME::`.
//!
//! Tests run in parallel, so each picks loopback octets no other test in
//! this binary uses (see `cluster_support::world`); the runbooks' sandbox
//! uses fixed ones (127.0.10.x, 127.0.31.x) that no other test takes. No
//! test sets an environment variable of this process.

#[path = "../apply_support/mod.rs"]
mod apply_support;
#[path = "../cluster_support/mod.rs"]
mod cluster_support;

mod apply_follow_up;
mod cluster_e2e;
mod firewall_nft;
mod firewall_peers;
mod private_network_e2e;
mod runbooks;
mod shrink_e2e;
mod ssh_sshd;
mod state_core_cluster;
