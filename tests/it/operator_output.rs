//! What an operator reads, through the real binary against the Contabo
//! mock (issue 15, "Progress ends true" and "Messages point somewhere
//! true"):
//!
//! - `plan --detailed-exitcode` and `apply` agree on whether changes held
//!   back (an order Contabo holds) count as changes: both say 2.
//! - Without a terminal no progress line is printed twice, the summary
//!   lists what happened to each node, and "Ordered" is sorted by cluster
//!   and node.
//! - An apply with nothing new to change does not claim the inventory
//!   matches Contabo while an order is held.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::apply_support::{apply_contabo_side, command, inventory_copy, run, text};
use kiwi_mocks::contabo::{spawn, MockConfig};

fn quick() -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(150),
        installing_delay: Duration::from_millis(150),
        ..MockConfig::default()
    }
}

/// Slot name → cluster name, from the example inventory.
fn clusters(inventory: &Path) -> BTreeMap<String, String> {
    let desired = kiwi_infra::inventory::load(inventory).unwrap();
    desired
        .slot_names()
        .map(|(c, slot)| (slot, c.name.clone()))
        .collect()
}

/// The slot names of the summary section `heading`, in order.
fn section_slots(stdout: &str, heading: &str) -> Vec<String> {
    stdout
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading} section:\n{stdout}"))
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_agree_that_an_order_contabo_holds_is_a_change() {
    let mock = spawn(quick()).await.unwrap();
    mock.set_product_status("V9", Some("product_not_available"))
        .unwrap();
    let (_dir, inv) = inventory_copy();
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Without a terminal: timestamped lines, none of them twice.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut seen = BTreeSet::new();
    for line in stderr.lines() {
        let (_time, rest) = line.split_once(' ').unwrap_or(("", line));
        assert!(seen.insert(rest), "printed twice: {rest}\n{stderr}");
    }

    // Ordered and Nodes: by cluster, then node.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cluster_of = clusters(&inv);
    for heading in ["Ordered:", "Nodes:"] {
        let slots = section_slots(&stdout, heading);
        assert_eq!(slots.len(), 15, "{heading}\n{stdout}");
        let keys: Vec<_> = slots.iter().map(|s| (&cluster_of[s], s)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{heading} is not sorted\n{stdout}");
    }
    for slot in ["kiwi-core-realtime-01", "kiwi-core-realtime-02"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("  {slot} ")) && l.contains("held: ")),
            "{slot} does not end held\n{stdout}"
        );
    }

    // Nothing to order, but two orders Contabo holds: both commands say 2.
    let plan = run(command(
        &mock,
        &inv,
        &["plan", "--contabo-only", "--detailed-exitcode"],
    ))
    .await;
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let again = apply_contabo_side(&mock, &inv).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        !said.contains("The inventory matches Contabo"),
        "{}",
        text(&again)
    );

    // Released: the plan is empty and both say 0.
    mock.set_product_status("V9", None).unwrap();
    let done = apply_contabo_side(&mock, &inv).await;
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    let plan = run(command(
        &mock,
        &inv,
        &["plan", "--contabo-only", "--detailed-exitcode"],
    ))
    .await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}
