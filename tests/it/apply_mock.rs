//! `kiwi-infra apply` end to end: the real binary against the Contabo mock,
//! with latency, injected 5xx, a tight rate limit and lost order answers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::apply_support::*;
use kiwi_mocks::contabo::{spawn, Credentials, Faults, MockConfig};

fn quick() -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(150),
        installing_delay: Duration::from_millis(150),
        ..MockConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_with_faults_orders_each_slot_once_and_leaves_an_empty_plan() {
    let mock = spawn(MockConfig {
        faults: Faults {
            latency_ms: 10,
            error_rate: 0.05,
            rate_limit_rps: Some(40.0),
            rate_burst: 5,
            drop_create_probability: 0.3,
            ..Faults::default()
        },
        seed: 11,
        ..quick()
    })
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    // An order answered with an injected error or a 429 has an unknown
    // outcome: apply stops that slot, and the operator confirms it.
    let outs = apply_as_operator(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
        &[],
    )
    .await;
    let out = outs.last().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert_each_slot_once(&mock);
    let stats = mock.stats();
    assert_eq!(stats.instances_created, 15, "{stats:?}");
    assert!(
        stats.dropped_create_responses > 0,
        "the fault was not exercised: {stats:?}"
    );
    let last = String::from_utf8_lossy(&out.stdout);
    assert!(
        last.contains("Fresh plan: nothing left to do for the Contabo side."),
        "{last}"
    );
    let stdout: String = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    for i in mock.instances() {
        assert_eq!(i.status, "running", "{}", i.display_name);
        assert!(stdout.contains(&i.display_name) && stdout.contains(&i.instance_id.to_string()));
        assert!(
            stdout.contains(&i.ipv4.to_string()),
            "IP of {} missing",
            i.display_name
        );
    }
    let plan = run(command(&mock, &inv, &["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_answer_dropped_still_gives_one_instance_per_slot() {
    let mock = spawn(MockConfig {
        faults: Faults {
            drop_create_probability: 1.0,
            ..Faults::default()
        },
        ..quick()
    })
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_each_slot_once(&mock);
    assert_eq!(mock.stats().dropped_create_responses, 15);
    assert_eq!(
        mock.stats().requests_by_route["POST /v1/compute/instances"],
        15
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_not_available_is_reported_the_others_finish_and_a_rerun_completes() {
    let mock = spawn(quick()).await.unwrap();
    mock.set_product_status("V9", Some("product_not_available"))
        .unwrap();
    let (_dir, inv) = inventory_copy();
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for slot in ["kiwi-core-realtime-01", "kiwi-core-realtime-02"] {
        assert!(
            stdout.lines().any(|l| l.contains(slot)
                && l.contains("product_not_available")
                && l.contains("Contabo cannot deliver V9 in EU")
                && l.contains("choose another product")),
            "{slot} not reported with guidance:\n{stdout}"
        );
    }
    assert_each_slot_once(&mock);
    for i in mock.instances() {
        let expected = if i.product_id == "V9" {
            "product_not_available"
        } else {
            "running"
        };
        assert_eq!(i.status, expected, "{}", i.display_name);
    }
    // The product becomes available again: a rerun finishes the two nodes.
    mock.set_product_status("V9", None).unwrap();
    let again = apply_contabo_side(&mock, &inv).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_each_slot_once(&mock);
    assert!(mock.instances().iter().all(|i| i.status == "running"));
    let plan = run(command(&mock, &inv, &["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_or_auto_approve_nothing_is_ordered() {
    let mock = spawn(quick()).await.unwrap();
    let (_dir, inv) = inventory_copy();
    let out = run(command(&mock, &inv, &["apply"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to apply without confirmation"),
        "{stderr}"
    );
    assert!(stderr.contains("--auto-approve"), "{stderr}");
    // The suggestion is the command typed, with the approval added.
    let out = run(command(
        &mock,
        &inv,
        &[
            "apply",
            "--contabo-only",
            "--reorder",
            "kiwi-core-general-01",
        ],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--contabo-only --auto-approve --reorder kiwi-core-general-01`"),
        "{stderr}"
    );
    assert!(mock.instances().is_empty());
    assert_eq!(
        mock.stats()
            .requests_by_route
            .get("POST /v1/compute/instances"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_saved_plan_is_refused_and_a_fresh_one_is_applied() {
    let mock = spawn(quick()).await.unwrap();
    let (dir, inv) = inventory_copy();
    let file = dir.path().join("plan.json");
    let file_arg = file.to_str().unwrap();
    let saved = run(command(
        &mock,
        &inv,
        &["plan", "--contabo-only", "--out", file_arg],
    ))
    .await;
    assert_eq!(saved.status.code(), Some(0), "{}", text(&saved));
    // A saved plan is applied only while it is fresh: apply it once ...
    let first = run(command(
        &mock,
        &inv,
        &["apply", file_arg, "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_each_slot_once(&mock);
    // ... and the same file again is stale: the account changed.
    let second = run(command(
        &mock,
        &inv,
        &["apply", file_arg, "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("refusing to apply"), "{stderr}");
    assert!(
        stderr.contains("changed since this plan was made"),
        "{stderr}"
    );
    assert_each_slot_once(&mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_names_the_lock_holder_and_a_dead_holder_does_not_block() {
    let mock = spawn(MockConfig {
        provisioning_delay: Duration::from_secs(30),
        ..quick()
    })
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    let lock = kiwi_infra::apply::ApplyLock::acquire(&inv).unwrap();
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "another apply (pid {} on host",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("has held the lock since"), "{stderr}");
    assert!(mock.instances().is_empty());
    drop(lock);

    // An apply killed while holding the lock (it waits 30 s for provisioning).
    let mut child = start(command(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
    ));
    let lock_file = inv.join(".kiwi/apply.lock");
    let mut held = false;
    for _ in 0..200 {
        let holder = std::fs::read_to_string(&lock_file).unwrap_or_default();
        if holder.contains(&format!("\"pid\":{}", child.id())) && !mock.instances().is_empty() {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held, "the child never took the lock and ordered");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kill may land between an order's journal line and its answer:
    // that slot then needs the operator's word, which is given once checked.
    let outs = apply_as_operator(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
        &[("KIWI_STATUS_TIMEOUT", "1s")],
    )
    .await;
    for after in &outs {
        let stderr = String::from_utf8_lossy(&after.stderr);
        assert!(!stderr.contains("another apply"), "{}", text(after));
    }
    // It got past the lock and did the work (waiting timed out on purpose).
    assert_each_slot_once(&mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_output_or_journal_even_at_trace_level() {
    let canary = Credentials {
        client_id: "kiwi-sandbox".into(),
        client_secret: "canary-client-secret-8d1f".into(),
        username: "operator@kiwistack.test".into(),
        password: "canary-password-77ab".into(),
    };
    let mock = spawn(MockConfig {
        credentials: canary.clone(),
        faults: Faults {
            drop_create_responses: 3,
            error_rate: 0.05,
            ..Faults::default()
        },
        ..quick()
    })
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    // Injected errors may leave an order's outcome unknown; the operator
    // then confirms it, and every run's output is checked.
    let outs = apply_as_operator(
        &mock,
        &inv,
        &["-vvv", "apply", "--auto-approve", "--contabo-only"],
        &[("RUST_LOG", "trace")],
    )
    .await;
    let out = outs.last().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let journal = std::fs::read_to_string(inv.join(".kiwi/orders.jsonl")).unwrap();
    let runs: String = outs.iter().map(text).collect();
    let all = format!("{runs}{journal}");
    // User data reached the mock, so the canaries below were really sent.
    let user_data = mock.instances()[0].user_data.clone().unwrap();
    assert!(user_data.contains("NOPASSWD:ALL"));
    for secret in [
        canary.client_secret.as_str(),
        canary.password.as_str(),
        "NOPASSWD:ALL",
        "ssh_authorized_keys",
        "access_token",
    ] {
        assert!(!all.contains(secret), "{secret:?} leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_left_untagged_by_a_killed_apply_is_finished_not_bought_again() {
    let mock = spawn(quick()).await.unwrap();
    let (_dir, inv) = inventory_copy();
    let slot = "kiwi-praxis-lindner-server-02";
    kiwi_infra::apply::OrderJournal::open(&inv)
        .unwrap()
        .record(
            slot,
            kiwi_infra::apply::journal::Event::Intent {
                trace_id: "killed-run".into(),
                product: "V94".into(),
            },
        )
        .unwrap();
    let earlier = order_directly(&mock, slot, "V94").await;
    // The plan calls it kiwi-infra's own (its intent claims it), not foreign.
    let plan = run(command(&mock, &inv, &["plan", "--contabo-only"])).await;
    let plan_text = text(&plan);
    assert_eq!(plan.status.code(), Some(0), "{plan_text}");
    assert!(!plan_text.contains("--adopt"), "{plan_text}");
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Also finishes 1 order(s) of an interrupted apply"),
        "{stdout}"
    );
    assert_each_slot_once(&mock);
    let kept = mock
        .instances()
        .into_iter()
        .find(|i| i.display_name == slot)
        .unwrap();
    assert_eq!(kept.instance_id, earlier, "the earlier order was replaced");
    let plan = run(command(&mock, &inv, &["plan", "--detailed-exitcode"])).await;
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_a_slot_name_but_no_journal_entry_is_not_taken_over() {
    let mock = spawn(quick()).await.unwrap();
    let (_dir, inv) = inventory_copy();
    let foreign = order_directly(&mock, "kiwi-praxis-lindner-server-02", "V94").await;
    let out = apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--adopt"), "{stdout}");
    assert_each_slot_once(&mock);
    let kept = mock
        .instances()
        .into_iter()
        .find(|i| i.display_name == "kiwi-praxis-lindner-server-02")
        .unwrap();
    assert_eq!(kept.instance_id, foreign);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_limit_below_the_clients_pace_slows_apply_down_and_it_finishes() {
    // The account allows 8 requests a second (burst 4); kiwi-infra is told
    // it may send 100. Every 429 lowers its pace; reads and tag
    // assignments keep trying; orders wait for calm.
    let mock = spawn(MockConfig {
        faults: Faults {
            rate_limit_rps: Some(8.0),
            rate_burst: 4,
            ..Faults::default()
        },
        ..quick()
    })
    .await
    .unwrap();
    let (_dir, inv) = inventory_copy();
    let out = run(command(
        &mock,
        &inv,
        &["apply", "--auto-approve", "--contabo-only"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_each_slot_once(&mock);
    let stats = mock.stats();
    assert!(stats.rate_limited > 0, "the limit was not met: {stats:?}");
    // Every machine got its tags, and the fresh plan calls none of them foreign.
    let plan = run(command(
        &mock,
        &inv,
        &["plan", "--contabo-only", "--detailed-exitcode"],
    ))
    .await;
    let plan_text = text(&plan);
    assert_eq!(plan.status.code(), Some(0), "{plan_text}");
    assert!(!plan_text.contains("adopt"), "{plan_text}");
}
