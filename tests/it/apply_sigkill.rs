//! No double orders, provably: `kiwi-infra apply` killed with SIGKILL at
//! many moments (seeded, so a failure can be replayed), rerun each time, and
//! the account never holds more instances than the inventory has slots,
//! each name once. The mock runs in this process and survives the kills.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::apply_support::*;
use kiwi_mocks::contabo::{spawn, Faults, MockConfig};
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x5EED_2026;
const KILLS: usize = 20;
/// Upper bound of rounds when kills keep missing the ordering phase (a slow
/// machine): the test goes on until kills have interrupted ordering.
const MAX_ROUNDS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_apply_at_random_moments_never_buys_a_slot_twice() {
    let mock = spawn(MockConfig {
        provisioning_delay: Duration::from_millis(100),
        installing_delay: Duration::from_millis(100),
        faults: Faults {
            latency_ms: 40,
            drop_create_probability: 0.2,
            ..Faults::default()
        },
        seed: SEED,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    let slots = slot_names();
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let apply = || command(&mock, &inv, &["apply", "--auto-approve", "--contabo-only"]);

    // How many instances existed after each kill: proves kills landed while
    // orders were being placed, not only before or after.
    let mut counts = Vec::new();
    let mut round = 0;
    loop {
        let partial = counts.iter().filter(|c| (1..15).contains(*c)).count();
        if (round >= KILLS && partial >= 2) || round >= MAX_ROUNDS {
            break;
        }
        round += 1;
        let delay = Duration::from_millis(rng.random_range(30..900));
        // Few orders at once stretch the ordering phase, so kills land in it.
        let mut cmd = apply();
        cmd.env("KIWI_CONCURRENCY", "1");
        let mut child = start(cmd);
        tokio::time::sleep(delay).await;
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let names = live_names(&mock);
        let unique: BTreeSet<String> = names.iter().cloned().collect();
        assert_eq!(
            names.len(),
            unique.len(),
            "round {round} (killed after {delay:?}): a slot was ordered twice: {names:?}"
        );
        assert!(
            unique.is_subset(&slots),
            "round {round}: unknown instance names {names:?}"
        );
        counts.push(names.len());
    }
    eprintln!("instances after each kill: {counts:?}");
    let partial = counts.iter().filter(|c| (1..15).contains(*c)).count();
    assert!(
        partial >= 2,
        "in {MAX_ROUNDS} rounds, kills never interrupted ordering, so nothing was tested: {counts:?}"
    );

    // Reruns finish the job. A kill between an order's journal line and its
    // answer leaves that order's outcome unknown: the rerun stops the slot,
    // the operator checks Contabo (the helper asserts it has no instance of
    // that name) and confirms with --reorder.
    let outs = apply_as_operator(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
        &[],
    )
    .await;
    let last = outs.last().unwrap();
    assert_eq!(last.status.code(), Some(0), "{}", text(last));
    assert_each_slot_once(&mock);
    assert_eq!(mock.stats().instances_created, 15, "{:?}", mock.stats());
    let plan = run(command(&mock, &inv, &["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}
