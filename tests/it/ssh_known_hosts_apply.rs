//! `kiwi-infra apply` against the Contabo mock records the host key it
//! generated for each node in `<inventory>/known_hosts`, once per node,
//! matching the key in the node's user data; a reinstall replaces it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::apply_support::*;
use kiwi_infra::ssh::KnownHosts;
use kiwi_mocks::contabo::{spawn, Faults, MockConfig, MockHandle};
use serde_norway::Value;

fn quick(faults: Faults) -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(150),
        installing_delay: Duration::from_millis(150),
        faults,
        seed: 5,
        ..MockConfig::default()
    }
}

/// Each live instance's user data, by display name.
fn user_data(mock: &MockHandle) -> Vec<(String, i64, Value)> {
    mock.instances()
        .into_iter()
        .filter(|i| i.cancel_date.is_none())
        .map(|i| {
            let text = i.user_data.clone().expect("an instance without user data");
            (
                i.display_name.clone(),
                i.instance_id,
                serde_norway::from_str(&text).unwrap(),
            )
        })
        .collect()
}

/// The public key that belongs to the private key in `doc`'s `ssh_keys`.
fn public_of_private(doc: &Value) -> String {
    let private = doc["ssh_keys"]["ed25519_private"].as_str().unwrap();
    let key = ssh_key::PrivateKey::from_openssh(private).unwrap();
    let mut public = key.public_key().clone();
    public.set_comment("");
    public.to_openssh().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_is_listed_once_with_the_key_its_user_data_carries() {
    // Lost order answers make the tool retry orders: still one line each.
    let mock = spawn(quick(Faults {
        drop_create_probability: 0.3,
        ..Faults::default()
    }))
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stats = mock.stats();
    assert!(
        stats.dropped_create_responses > 0,
        "fault not exercised: {stats:?}"
    );

    let known_hosts = KnownHosts::new(KnownHosts::path_in(&inv));
    let entries = known_hosts.entries().unwrap();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let unique: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        names.len(),
        unique.len(),
        "a node is listed twice: {names:?}"
    );
    assert_eq!(unique, slot_names());

    for (name, _, doc) in user_data(&mock) {
        let recorded = known_hosts.lookup(&name).unwrap().unwrap();
        assert!(recorded.starts_with("ssh-ed25519 "), "{recorded}");
        assert_eq!(
            doc["ssh_keys"]["ed25519_public"].as_str(),
            Some(recorded.as_str())
        );
        assert_eq!(
            public_of_private(&doc),
            recorded,
            "{name}: key pair mismatch"
        );
        assert_eq!(doc["hostname"].as_str(), Some(name.as_str()));
    }
    let file = std::fs::read_to_string(known_hosts.path()).unwrap();
    assert!(!file.contains("PRIVATE"), "{file}");
    // Every key is different.
    let keys: BTreeSet<&str> = entries.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys.len(), entries.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinstall_replaces_the_nodes_key() {
    let mock = spawn(quick(Faults::default())).await.unwrap();
    let (_dir, inv) = inventory_copy();
    let args = ["apply", "--auto-approve", "--contabo-only"];
    let out = run(command(&mock, &inv, &args)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let known_hosts = KnownHosts::new(KnownHosts::path_in(&inv));
    let before = known_hosts.entries().unwrap();

    // A machine of an unprotected cluster. Its node cannot be checked
    // (--contabo-only), so Contabo's `error` alone makes the reinstall a
    // destructive step: it runs with --allow-destroy.
    let (name, id, _) = user_data(&mock)
        .into_iter()
        .find(|(n, _, _)| n.starts_with("kiwi-stadtwerke-nord-"))
        .unwrap();
    mock.set_instance_status(id, "error").unwrap();
    let destroy = [
        "apply",
        "--auto-approve",
        "--contabo-only",
        "--allow-destroy",
    ];
    let out = run(command(&mock, &inv, &destroy)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reinstall"),
        "{}",
        text(&out)
    );

    let after = known_hosts.entries().unwrap();
    assert_eq!(after.len(), before.len(), "{after:?}");
    let old = before.iter().find(|(n, _)| *n == name).unwrap();
    let new = after.iter().find(|(n, _)| *n == name).unwrap();
    assert_ne!(old.1, new.1, "the reinstall kept the old key");
    let (_, _, doc) = user_data(&mock)
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap();
    assert_eq!(public_of_private(&doc), new.1);
    // The other nodes keep theirs.
    for (n, k) in &before {
        if *n != name {
            assert!(after.contains(&(n.clone(), k.clone())), "{n} changed");
        }
    }
}
