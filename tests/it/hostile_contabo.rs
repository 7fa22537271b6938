//! A hostile Contabo: answers that lie, names that carry commands,
//! addresses that are not addresses, orders answered with errors after
//! they were placed. Each test drives the real binary against the mock and
//! is named after what broke before.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::apply_support::*;
use kiwi_mocks::contabo::{spawn, Faults, MockConfig, MockHandle};

fn quick() -> MockConfig {
    MockConfig {
        provisioning_delay: Duration::from_millis(100),
        installing_delay: Duration::from_millis(100),
        ..MockConfig::default()
    }
}

/// Every slot ordered, tagged and running, Contabo side only.
async fn built(mock: &MockHandle, inv: &Path) {
    let out = apply_contabo_side(mock, inv).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_each_slot_once(mock);
}

fn id_of(mock: &MockHandle, name: &str) -> i64 {
    mock.instances()
        .into_iter()
        .find(|i| i.display_name == name)
        .unwrap()
        .instance_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_name_or_address_from_the_api_never_runs_a_command_on_the_operators_machine() {
    let mock = spawn(quick()).await.unwrap();
    let (dir, inv) = inventory_copy();
    built(&mock, &inv).await;
    let marker = |n: u32| dir.path().join(format!("pwned-{n}"));
    let proxy = |n: u32| format!("ProxyCommand sh -c 'touch {}'", marker(n).display());
    // A renamed owned instance whose name carries an ssh directive, one
    // whose name is an ssh option, and addresses that are not addresses.
    let general = id_of(&mock, "kiwi-stadtwerke-nord-general-01");
    mock.tamper_instance(
        general,
        Some(&format!("kiwi-stadtwerke-nord-x\n  {}", proxy(1))),
        None,
    )
    .unwrap();
    let realtime = id_of(&mock, "kiwi-stadtwerke-nord-realtime-01");
    mock.tamper_instance(
        realtime,
        Some(&format!("-o{}", proxy(2).replace(' ', "="))),
        None,
    )
    .unwrap();
    let server = id_of(&mock, "kiwi-stadtwerke-nord-server-01");
    mock.tamper_instance(server, None, Some(&format!("127.0.10.9\n  {}", proxy(3))))
        .unwrap();
    let agent = id_of(&mock, "kiwi-praxis-lindner-general-01");
    mock.tamper_instance(agent, None, Some(&format!("-o{}", proxy(4))))
        .unwrap();

    // Read-only commands that reach nodes over SSH.
    for args in [
        &["plan"][..],
        &["status"][..],
        &["plan", "--json"][..],
        &["apply", "--auto-approve"][..],
    ] {
        let mut cmd = command(&mock, &inv, args);
        // Node steps would wait for SSH to loopback addresses where nothing
        // listens: keep that short.
        cmd.env("KIWI_NODE_READY_TIMEOUT", "2s");
        let out = run(cmd).await;
        let shown = text(&out);
        assert!(
            out.status.code().is_some_and(|c| c <= 3),
            "{args:?} ended without an exit code (a panic or a signal): {shown}"
        );
        assert!(!shown.contains("panicked"), "{args:?}: {shown}");
        for n in 1..=4 {
            assert!(
                !marker(n).exists(),
                "{args:?}: a command from the API ran on this machine ({n}): {shown}"
            );
        }
        // No forged line: what the API sent is shown escaped, on one line.
        assert!(
            !shown
                .lines()
                .any(|l| l.trim_start().starts_with("ProxyCommand")),
            "{args:?}: {shown}"
        );
    }
    // Nothing was bought for the renamed slots: the order journal says
    // whose machines they are, and apply gave them their names back.
    assert_eq!(mock.stats().instances_created, 15);
    for (id, name) in [
        (general, "kiwi-stadtwerke-nord-general-01"),
        (realtime, "kiwi-stadtwerke-nord-realtime-01"),
    ] {
        assert_eq!(mock.instance(id).unwrap().display_name, name);
    }
    let plan = run(command(&mock, &inv, &["plan"])).await;
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(stdout.contains("not of the expected form"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owned_instance_renamed_in_the_panel_is_never_bought_a_second_time() {
    let mock = spawn(quick()).await.unwrap();
    let (_dir, inv) = inventory_copy();
    built(&mock, &inv).await;
    // A colleague's checkout of the same inventory: no order journal.
    let (_other_dir, other) = inventory_copy();
    for (name, renamed) in [
        ("kiwi-praxis-lindner-general-01", "praxis web (prod)"),
        // Another name of the same slot form: it looks like a dropped slot.
        (
            "kiwi-stadtwerke-nord-general-01",
            "kiwi-stadtwerke-nord-general-07",
        ),
    ] {
        let id = id_of(&mock, name);
        mock.tamper_instance(id, Some(renamed), None).unwrap();
        // Without the journal and with the cluster unobserved, nothing says
        // whose it is: nothing is bought, nothing removed, and it says why.
        for args in [
            &["apply", "--auto-approve", "--contabo-only"][..],
            &[
                "apply",
                "--auto-approve",
                "--contabo-only",
                "--allow-destroy",
            ][..],
        ] {
            let out = run(command(&mock, &other, args)).await;
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(2), "held back, not done: {shown}");
            assert_eq!(mock.stats().instances_created, 15, "{shown}");
            assert!(mock.instance(id).unwrap().cancel_date.is_none(), "{shown}");
            assert!(shown.contains(&format!("instance {id}")), "{shown}");
            assert!(shown.contains(name), "the held slot is named: {shown}");
        }
        // Where the order journal is, it names the machine's slot, and
        // apply gives it its name back.
        let out = apply_contabo_side(&mock, &inv).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(mock.instance(id).unwrap().display_name, name);
        assert_eq!(mock.stats().instances_created, 15);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_answered_with_an_error_after_they_were_placed_are_bought_once() {
    // 429 (with Retry-After), 503 and even 400, each after the order went
    // through: the old client retried them and bought 21 servers per slot.
    for status in [429u16, 503, 400] {
        let mock = spawn(quick()).await.unwrap();
        mock.set_faults(Faults {
            fail_create_responses: 15,
            fail_create_status: status,
            fail_create_placed: true,
            ..Faults::default()
        })
        .unwrap();
        let (_dir, inv) = inventory_copy();
        let out = apply_contabo_side(&mock, &inv).await;
        assert_eq!(out.status.code(), Some(0), "{status}: {}", text(&out));
        assert_each_slot_once(&mock);
        let stats = mock.stats();
        assert_eq!(stats.instances_created, 15, "{status}: {stats:?}");
        assert_eq!(
            stats.requests_by_route["POST /v1/compute/instances"], 15,
            "{status}: each order was sent exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_outcome_stays_unknown_waits_for_the_operators_word() {
    let mock = spawn(quick()).await.unwrap();
    // One order answered 503 without being placed: nothing proves that.
    mock.set_faults(Faults {
        fail_create_responses: 1,
        fail_create_status: 503,
        fail_create_placed: false,
        ..Faults::default()
    })
    .unwrap();
    let (_dir, inv) = inventory_copy();
    let first = apply_contabo_side(&mock, &inv).await;
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let stopped = confirmed_unresolved(&mock, &first);
    assert_eq!(stopped.len(), 1, "{}", text(&first));
    let slot = stopped.iter().next().unwrap().clone();
    let posts = || mock.stats().requests_by_route["POST /v1/compute/instances"];
    assert_eq!(posts(), 15);

    // A plain rerun, later, still does not order it.
    let again = apply_contabo_side(&mock, &inv).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert_eq!(posts(), 15, "no second order without the operator");
    assert!(String::from_utf8_lossy(&again.stdout).contains(&format!("--reorder {slot}")));

    // The operator confirms: it is ordered once more, and that is all.
    let out = run(command(
        &mock,
        &inv,
        &[
            "apply",
            "--auto-approve",
            "--contabo-only",
            "--reorder",
            &slot,
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_each_slot_once(&mock);
    assert_eq!(posts(), 16);
}
