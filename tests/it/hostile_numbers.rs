//! A hostile Contabo that lies with numbers, and flags and variables with
//! absurd values, against the real binary: no value panics, hangs or pages
//! without end. Issue 13, "Numbers from servers and flags".

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiwi_mocks::contabo::{spawn, Faults, MockConfig, MockHandle};
use serde_json::json;

/// `kiwi-infra ARGS` against `mock`, as an operator would run it.
fn kiwi(mock: &MockHandle, args: &[&str]) -> Command {
    apply_support::kiwi_command(mock, args)
}

fn assert_no_panic(text: &str) {
    assert!(
        !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
        "kiwi-infra panicked:\n{text}"
    );
}

/// A started `kiwi-infra` whose stderr goes to a file, so a test can read
/// it while the process runs.
struct Running {
    child: Child,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let file = std::fs::File::create(&stderr).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            child,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until stderr contains `needle` or the process ends.
    async fn wait_for(
        &mut self,
        needle: &str,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if self.stderr().contains(needle) {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only the process this test started, by its id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_never_panics() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let nines = "9".repeat(400);
    for (asked, expected_delay) in [
        ("1e300", Some("delay_ms=120000")),
        ("18446744073709551616", Some("delay_ms=120000")),
        ("1e19", Some("delay_ms=120000")),
        (nines.as_str(), Some("delay_ms=120000")),
        ("inf", None),
        ("NaN", None),
        ("-1", None),
        ("1e-400", None),
        ("soon", None),
    ] {
        mock.set_faults(Faults {
            throttle_rate: 1.0,
            retry_after_secs: Some(asked.to_string()),
            ..Faults::default()
        })
        .unwrap();
        let mut run = Running::start(kiwi(&mock, &["-vv", "instances"]));
        let ended = run
            .wait_for("retrying Contabo request", Duration::from_secs(20))
            .await;
        let text = run.stderr();
        assert_no_panic(&text);
        assert_eq!(
            ended, None,
            "Retry-After {asked}: kiwi-infra ended:\n{text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains("retrying Contabo request"))
            .unwrap();
        if let Some(delay) = expected_delay {
            // Capped at the policy's longest wait: obeyed, not overflowed.
            assert!(line.contains(delay), "Retry-After {asked}: {line}");
        } else {
            // Ignored: the back-off's own short delay applies.
            assert!(
                !line.contains("delay_ms=120000"),
                "Retry-After {asked}: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_in_1e300_seconds_never_panics() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    apply_support::order_directly(&mock, "kiwi-acme-rtc-01", "V8").await;
    for claim in [
        json!(1e300),
        json!(u64::MAX),
        json!(18_446_744_073_709_551_615_u64),
        json!(f64::MAX),
        json!(0),
        json!(-5),
        json!(-1e300),
        json!(1e-300),
        json!("soon"),
        json!({"seconds": 300}),
    ] {
        mock.set_faults(Faults {
            token_expires_in: Some(claim.clone()),
            ..Faults::default()
        })
        .unwrap();
        let out = apply_support::run(kiwi(&mock, &["instances"])).await;
        let text = apply_support::text(&out);
        assert_no_panic(&text);
        assert_eq!(out.status.code(), Some(0), "expires_in {claim}: {text}");
        assert!(
            text.contains("kiwi-acme-rtc-01"),
            "expires_in {claim}: {text}"
        );
    }
}

/// Requests the mock saw for the instance list.
fn list_requests(mock: &MockHandle) -> u64 {
    mock.stats()
        .requests_by_route
        .get("GET /v1/compute/instances")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_total_pages_ends_within_the_time_limit() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    for name in ["kiwi-acme-rtc-01", "kiwi-acme-rtc-02", "kiwi-acme-rtc-03"] {
        apply_support::order_directly(&mock, name, "V8").await;
    }
    // Pages of 2: page 1 is full, page 2 holds the last instance.
    for (total_pages, total_elements) in [
        (json!(1e300), None),
        (json!(18_446_744_073_709_551_615_u64), None),
        (json!(1e300), Some(json!(1e300))),
        (json!(-1), Some(json!(-1))),
        (json!(0.5), Some(json!(2.5))),
        (json!(-0.0), Some(json!(-1e300))),
        (json!(1), Some(json!(1))),
    ] {
        mock.set_faults(Faults {
            total_pages: Some(total_pages.clone()),
            total_elements: total_elements.clone(),
            ..Faults::default()
        })
        .unwrap();
        mock.reset_stats();
        let started = Instant::now();
        let out =
            apply_support::run(kiwi(&mock, &["--page-size", "2", "instances", "--json"])).await;
        let text = apply_support::text(&out);
        let lie = format!("totalPages {total_pages}, totalElements {total_elements:?}");
        assert_no_panic(&text);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{lie}: took {:?}",
            started.elapsed()
        );
        assert!(
            list_requests(&mock) <= 6,
            "{lie}: {} list requests",
            list_requests(&mock)
        );
        match out.status.code() {
            Some(0) => {
                let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(
                    listed.as_array().unwrap().len(),
                    3,
                    "{lie}: a partial list: {text}"
                );
            }
            Some(3) => assert!(text.contains("paging"), "{lie}: {text}"),
            other => panic!("{lie}: exit {other:?}: {text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_numbers_that_are_not_numbers_are_refused_with_a_clear_error() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    apply_support::order_directly(&mock, "kiwi-acme-rtc-01", "V8").await;
    mock.set_faults(Faults {
        total_pages: Some(json!("NaN")),
        ..Faults::default()
    })
    .unwrap();
    let out = apply_support::run(kiwi(&mock, &["instances"])).await;
    let text = apply_support::text(&out);
    assert_no_panic(&text);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("does not match the Contabo API spec"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_with_fewer_items_than_announced_are_an_error_not_a_partial_list() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    for name in ["kiwi-acme-rtc-01", "kiwi-acme-rtc-02", "kiwi-acme-rtc-03"] {
        apply_support::order_directly(&mock, name, "V8").await;
    }
    mock.set_faults(Faults {
        serve_at_most: Some(1),
        ..Faults::default()
    })
    .unwrap();
    let out = apply_support::run(kiwi(&mock, &["--page-size", "2", "instances"])).await;
    let text = apply_support::text(&out);
    assert_no_panic(&text);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("paging"), "{text}");
    assert!(text.contains("announced 3 element(s)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_items_than_announced_are_an_error_not_a_list_that_may_lack_pages() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    for name in ["kiwi-acme-rtc-01", "kiwi-acme-rtc-02", "kiwi-acme-rtc-03"] {
        apply_support::order_directly(&mock, name, "V8").await;
    }
    // One item in one page announced, three served: the announcement cannot
    // be trusted to have named every page either.
    mock.set_faults(Faults {
        total_elements: Some(json!(1)),
        total_pages: Some(json!(1)),
        ..Faults::default()
    })
    .unwrap();
    let out = apply_support::run(kiwi(&mock, &["instances"])).await;
    let text = apply_support::text(&out);
    assert_no_panic(&text);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("paging"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_numbers_that_are_not_counts_never_pass_a_cut_list_for_a_whole_one() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    for name in ["kiwi-acme-rtc-01", "kiwi-acme-rtc-02", "kiwi-acme-rtc-03"] {
        apply_support::order_directly(&mock, name, "V8").await;
    }
    for (elements, pages) in [
        (json!(-1), json!(1)),
        (json!(1e300), json!(1)),
        (json!(3), json!(-1)),
        (json!(3), json!(1e300)),
    ] {
        // Two of the three served, with numbers that cannot say so.
        mock.set_faults(Faults {
            serve_at_most: Some(2),
            total_elements: Some(elements.clone()),
            total_pages: Some(pages.clone()),
            ..Faults::default()
        })
        .unwrap();
        let out = apply_support::run(kiwi(&mock, &["instances"])).await;
        let text = apply_support::text(&out);
        assert_no_panic(&text);
        assert_eq!(out.status.code(), Some(3), "{elements} / {pages}: {text}");
        assert!(text.contains("paging"), "{text}");
    }
}

#[test]
fn an_absurd_rate_limit_or_page_size_is_a_usage_error_not_a_panic() {
    for (flag, value) in [
        ("--rate-limit", "0"),
        ("--rate-limit", "1e-300"),
        ("--rate-limit", "1e300"),
        ("--rate-limit", "NaN"),
        ("--rate-limit", "-1"),
        ("--rate-limit", "inf"),
        ("--page-size", "0"),
        ("--page-size", "-1"),
        ("--page-size", "18446744073709551616"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
            .args(["instances", flag, value, "--api-url", "http://127.0.0.1:9"])
            .env("CNTB_OAUTH2_CLIENT_ID", "x")
            .env("CNTB_OAUTH2_CLIENT_SECRET", "x")
            .env("CNTB_OAUTH2_USER", "x")
            .env("CNTB_OAUTH2_PASS", "x")
            .env_remove("KIWI_RATE_LIMIT")
            .env_remove("KIWI_PAGE_SIZE")
            .output()
            .unwrap();
        let text = apply_support::text(&out);
        assert_no_panic(&text);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {text}");
        assert!(
            text.contains(flag) || text.contains(&format!("'{value}'")),
            "{flag} {value}: the message names the flag or the value: {text}"
        );
    }
    // The same through the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(["instances", "--api-url", "http://127.0.0.1:9"])
        .env("KIWI_RATE_LIMIT", "1e-300")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", apply_support::text(&out));
}

#[test]
fn a_tuning_variable_that_is_not_a_number_is_named_and_a_huge_one_is_clamped() {
    let (_dir, inventory) = apply_support::inventory_copy();
    let validate = |name: &str, value: &str| {
        Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
            .arg("validate")
            .arg("--inventory")
            .arg(&inventory)
            .env(name, value)
            .output()
            .unwrap()
    };
    for name in [
        "KIWI_INTERNAL_POLL_MS",
        "KIWI_NODE_READY_TIMEOUT",
        "KIWI_CONCURRENCY",
    ] {
        let out = validate(name, "soon");
        let text = apply_support::text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(text.contains(name), "{name}: {text}");
    }
    let out = validate("KIWI_STATUS_TIMEOUT", "18446744073709551615");
    assert_eq!(out.status.code(), Some(0), "{}", apply_support::text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_waits_from_the_environment_never_overflow_a_clock() {
    let mock = spawn(MockConfig {
        provisioning_delay: Duration::from_millis(50),
        installing_delay: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inventory) = apply_support::inventory_copy();
    let max = u64::MAX.to_string();
    let mut cmd = apply_support::command(
        &mock,
        &inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    );
    for name in [
        "KIWI_STATUS_TIMEOUT",
        "KIWI_UNLISTED_ORDER_WAIT",
        "KIWI_INTERNAL_START_GRACE_MS",
        "KIWI_NODE_READY_TIMEOUT",
        "KIWI_CONCURRENCY",
        "KIWI_NODE_CONCURRENCY",
    ] {
        cmd.env(name, &max);
    }
    let out = apply_support::run(cmd).await;
    let text = apply_support::text(&out);
    assert_no_panic(&text);
    assert_eq!(out.status.code(), Some(0), "{text}");
    apply_support::assert_each_slot_once(&mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_skip_repeat_or_cut_rows_never_get_a_slot_that_exists_ordered() {
    let mock = spawn(MockConfig {
        provisioning_delay: Duration::from_millis(10),
        installing_delay: Duration::from_millis(10),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inv) = apply_support::inventory_copy();
    let out = apply_support::apply_contabo_side(&mock, &inv).await;
    assert_eq!(out.status.code(), Some(0), "{}", apply_support::text(&out));
    let bought = mock.stats().instances_created;
    for faults in [
        Faults {
            page_shift: 1,
            ..Faults::default()
        },
        Faults {
            page_shift: -1,
            ..Faults::default()
        },
        Faults {
            serve_at_most: Some(3),
            ..Faults::default()
        },
        Faults {
            total_pages: Some(json!(1e300)),
            page_shift: 2,
            ..Faults::default()
        },
    ] {
        mock.set_faults(faults.clone()).unwrap();
        for args in [
            &["plan", "--contabo-only"][..],
            &["apply", "--auto-approve", "--contabo-only"][..],
        ] {
            let mut cmd = apply_support::command(&mock, &inv, args);
            cmd.args(["--page-size", "4"]);
            let started = Instant::now();
            let out = apply_support::run(cmd).await;
            let text = apply_support::text(&out);
            assert_no_panic(&text);
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{faults:?} {args:?}"
            );
            assert_eq!(out.status.code(), Some(3), "{faults:?} {args:?}: {text}");
            assert!(text.contains("paging"), "{faults:?} {args:?}: {text}");
            assert!(!text.contains("+ order"), "{faults:?} {args:?}: {text}");
            assert_eq!(mock.stats().instances_created, bought, "{faults:?}: {text}");
        }
    }
}
