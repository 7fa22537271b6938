//! What came from outside reaches the terminal escaped: an instance renamed
//! in the Contabo panel to an escape sequence and a forged plan line shows
//! as text in `plan`, `instances` and `status`, never as a colour change, a
//! cleared screen or a line of its own. And the escaping itself, for any
//! string: nothing unsafe survives, and plain text is left as it is.

#![allow(clippy::unwrap_used)]

use crate::apply_support::{
    apply_contabo_side, command, inventory_copy, order_directly, run, text, token,
};
use kiwi_infra::secret::{redact, register};
use kiwi_infra::text::{
    escape_for_terminal, escape_lines_for_terminal, is_unsafe_for_terminal, json_for_terminal,
};
use kiwi_mocks::contabo::{spawn, MockConfig, MockHandle};
use proptest::prelude::*;

/// Renames an instance through `PATCH /v1/compute/instances/{id}`.
async fn rename(mock: &MockHandle, id: i64, name: &str) {
    let response = reqwest::Client::new()
        .patch(format!("{}/v1/compute/instances/{id}", mock.base_url()))
        .bearer_auth(token(mock).await)
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({ "displayName": name }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

const HOSTILE: &str =
    "kiwi-acme-x\x1b[31m\x1b[2J\r\n+ order kiwi-evil-pool-01\u{202e}10.0\u{2028}\x07\u{9b}0m";

/// Output a terminal would act on: any control character but the line
/// breaks the tool writes, any bidi control, any line separator.
fn assert_shown_as_text(what: &str, out: &std::process::Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let shown = String::from_utf8_lossy(bytes);
        if let Some(c) = shown
            .chars()
            .find(|&c| c != '\n' && is_unsafe_for_terminal(c))
        {
            panic!(
                "{what} wrote {c:?} to {stream}:\n{}",
                escape_lines_for_terminal(&shown)
            );
        }
        for line in shown.lines() {
            assert!(
                !line.trim_start().starts_with("+ order kiwi-evil"),
                "{what} printed a forged plan line on {stream}: {line:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_renamed_to_escape_sequences_and_plan_lines_is_shown_as_text() {
    let mock = spawn(MockConfig {
        provisioning_delay: std::time::Duration::from_millis(20),
        installing_delay: std::time::Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inventory) = inventory_copy();
    let out = apply_contabo_side(&mock, &inventory).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // One of kiwi-infra's own instances renamed in the panel, and one a
    // colleague ordered by hand under a hostile name.
    let owned = mock
        .instances()
        .into_iter()
        .find(|i| i.display_name.starts_with("kiwi-"))
        .unwrap();
    rename(&mock, owned.instance_id, HOSTILE).await;
    order_directly(&mock, &format!("{HOSTILE}-foreign"), "V92").await;

    let mut seen_escaped = false;
    for args in [
        vec!["plan", "--contabo-only"],
        vec!["-v", "instances"],
        vec!["status", "--contabo-only"],
        vec!["plan", "--contabo-only", "--json"],
    ] {
        let out = run(command(&mock, &inventory, &args)).await;
        assert!(out.status.code().is_some(), "{}", text(&out));
        assert_shown_as_text(&format!("kiwi-infra {}", args.join(" ")), &out);
        let shown = String::from_utf8_lossy(&out.stdout);
        seen_escaped |= shown.contains("kiwi-acme-x\\u{1b}[31m\\u{1b}[2J\\r\\n+ order kiwi-evil");
    }
    // The name was shown, escaped (so the checks above saw it).
    assert!(seen_escaped, "no command showed the renamed instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_name_with_invisible_characters_never_looks_like_a_slot_name() {
    // U+00AD, U+034F, U+115F, U+3164 and U+E0041 passed raw into
    // `instances`, `plan` and `--json`: a Contabo name looked identical to
    // the slot name it is not.
    let mock = spawn(MockConfig {
        provisioning_delay: std::time::Duration::from_millis(20),
        installing_delay: std::time::Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inventory) = inventory_copy();
    let out = apply_contabo_side(&mock, &inventory).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let owned = mock
        .instances()
        .into_iter()
        .find(|i| i.display_name.starts_with("kiwi-"))
        .unwrap();
    let slot = owned.display_name.clone();
    let invisible = [
        '\u{ad}',
        '\u{34f}',
        '\u{115f}',
        '\u{3164}',
        '\u{e0041}',
        '\u{fe0f}',
        '\u{200b}',
        '\u{2800}',
        '\u{a0}',
    ];
    // The owned instance renamed to its slot name with an invisible
    // character, and a colleague's instances under look-alike names.
    rename(&mock, owned.instance_id, &format!("{slot}\u{ad}")).await;
    for c in invisible {
        let (head, tail) = slot.split_at(5);
        order_directly(&mock, &format!("{head}{c}{tail}"), "V92").await;
    }
    for args in [
        vec!["instances"],
        vec!["instances", "--json"],
        vec!["plan", "--contabo-only"],
        vec!["plan", "--contabo-only", "--json"],
        vec!["status", "--contabo-only"],
    ] {
        let out = run(command(&mock, &inventory, &args)).await;
        assert!(out.status.code().is_some(), "{}", text(&out));
        let what = format!("kiwi-infra {}", args.join(" "));
        assert_shown_as_text(&what, &out);
        let shown = String::from_utf8_lossy(&out.stdout);
        for c in invisible {
            assert!(!shown.contains(c), "{what} printed {c:?} raw:\n{shown}");
        }
        if args.contains(&"instances") {
            let (head, tail) = slot.split_at(5);
            let escaped = if args.contains(&"--json") {
                format!("{head}\\udb40\\udc41{tail}")
            } else {
                format!("{head}\\u{{e0041}}{tail}")
            };
            assert!(
                shown.contains(&escaped),
                "{what} did not spell out U+E0041:\n{shown}"
            );
        }
        if args.contains(&"--json") {
            let _: serde_json::Value = serde_json::from_str(&shown)
                .unwrap_or_else(|e| panic!("{what} is not JSON: {e}\n{shown}"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn escaped_text_holds_nothing_a_terminal_acts_on(s in any::<String>()) {
        let shown = escape_for_terminal(&s);
        prop_assert!(!shown.chars().any(is_unsafe_for_terminal), "{:?}", shown);
        let lines = escape_lines_for_terminal(&s);
        prop_assert!(!lines.chars().any(|c| c != '\n' && is_unsafe_for_terminal(c)));
        prop_assert_eq!(lines.lines().count(), s.lines().count());
    }

    #[test]
    fn printable_text_is_left_as_it_is(s in any::<String>()) {
        let printable: String = s.chars().filter(|&c| !is_unsafe_for_terminal(c)).collect();
        prop_assert_eq!(escape_for_terminal(&printable), printable.as_str());
    }

    #[test]
    fn escaping_is_idempotent(s in any::<String>()) {
        let once = escape_for_terminal(&s).into_owned();
        prop_assert_eq!(escape_for_terminal(&once), once.as_str());
    }

    #[test]
    fn json_for_a_terminal_is_the_same_document(s in any::<String>()) {
        let value = serde_json::json!({ "name": s, "list": [s.clone()] });
        let json = serde_json::to_string_pretty(&value).unwrap();
        let shown = json_for_terminal(&json);
        prop_assert!(!shown.chars().any(|c| c != '\n' && is_unsafe_for_terminal(c)));
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        prop_assert_eq!(back, value);
    }

    #[test]
    fn a_registered_secret_never_survives_redaction(
        secret in "[A-Za-z0-9+/=_.-]{6,80}",
        before in any::<String>(),
        after in any::<String>(),
    ) {
        register(&secret);
        let text = format!("{before}{secret}{after}");
        prop_assert!(!redact::redact(&text).contains(&secret));
        let excerpt = redact::excerpt(&text);
        prop_assert!(!excerpt.contains(&secret), "{}", excerpt);
        prop_assert!(excerpt.chars().count() <= redact::MESSAGE_CHARS + 1);
        let tail = redact::tail(&text, &[]);
        prop_assert!(!tail.contains(&secret), "{}", tail);
        prop_assert!(!tail.chars().any(|c| c != '\n' && is_unsafe_for_terminal(c)));
    }
}
