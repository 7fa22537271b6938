//! A server that echoes what it was sent cannot make kiwi-infra show a
//! secret. The mock's `echoRequestInErrors` fault makes every error answer
//! quote the request (every header, the bearer token too, and the body: an
//! order's user data with the node's host private key) and the token
//! endpoint quote its form (client secret and password). kiwi-infra, at its
//! most verbose, must show those answers with every secret masked, and
//! write none to the plan file, the journal or the inventory.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::apply_support::{command, inventory_copy, run, text};
use kiwi_mocks::contabo::{spawn, Credentials, Faults, IpRange, MockConfig};

const CLIENT_SECRET: &str = "echo-canary-client-secret/4b1f+e2";
const PASSWORD: &str = "echo canary pässword/9c0d+a7";

/// Every file below `dir`, as text.
fn files_below(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_below(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push((path.display().to_string(), text));
        }
    }
    out
}

/// `s` as a form encodes it.
fn form_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fails if any place holds a secret, in any shape an echo shows it.
fn assert_no_secret(places: &[(String, String)], secrets: &[String]) {
    for (place, content) in places {
        for marker in ["PRIVATE KEY", "OPENSSH"] {
            assert!(
                !content.contains(marker),
                "private key material ({marker}) is in {place}"
            );
        }
        for secret in secrets {
            for shape in [
                secret.clone(),
                form_encoded(secret),
                secret.replace('/', "\\/"),
            ] {
                assert!(
                    !content.contains(&shape),
                    "a secret ({:.12}…) is in {place}",
                    shape
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_echoes_requests_never_makes_kiwi_infra_print_a_secret() {
    let mock = spawn(MockConfig {
        credentials: Credentials {
            client_secret: CLIENT_SECRET.into(),
            password: PASSWORD.into(),
            ..Credentials::default()
        },
        provisioning_delay: Duration::from_millis(20),
        installing_delay: Duration::from_millis(20),
        // Four addresses for fifteen slots: every later order is answered
        // 503 after its body was read, and the answer quotes that body.
        ip_range: "127.0.10.2-127.0.10.5".parse::<IpRange>().unwrap(),
        faults: Faults {
            error_rate: 0.1,
            echo_request_in_errors: true,
            ..Faults::default()
        },
        seed: 13,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (dir, inventory) = inventory_copy();
    let plan_file = dir.path().join("plan.json");

    let mut outputs = Vec::new();
    for args in [
        vec![
            "-vvv",
            "plan",
            "--contabo-only",
            "--out",
            plan_file.to_str().unwrap(),
        ],
        vec!["-vvv", "apply", "--auto-approve", "--contabo-only"],
        vec!["-vvv", "instances"],
        vec!["-vvv", "status", "--contabo-only"],
    ] {
        let mut cmd = command(&mock, &inventory, &args);
        cmd.env("RUST_LOG", "trace");
        let out = run(cmd).await;
        assert!(
            out.status.code().is_some(),
            "kiwi-infra {args:?} died from a signal: {}",
            text(&out)
        );
        outputs.push(text(&out));
    }
    let printed = outputs.join("\n");

    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), PASSWORD.into()];
    let tokens = mock.issued_tokens();
    assert!(!tokens.is_empty(), "the runs authenticated");
    secrets.extend(tokens);
    for instance in mock.instances() {
        let user_data = instance.user_data.unwrap_or_default();
        let key: Vec<String> = user_data
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.contains("BEGIN OPENSSH PRIVATE KEY"))
            .skip(1)
            .take_while(|l| !l.contains("END OPENSSH PRIVATE KEY"))
            .filter(|l| l.len() >= 16)
            .map(str::to_string)
            .collect();
        assert!(!key.is_empty(), "{} has a host key", instance.display_name);
        secrets.extend(key);
    }

    let mut places: Vec<(String, String)> = vec![("output".into(), printed)];
    places.extend(files_below(&inventory));
    places.push((
        plan_file.display().to_string(),
        std::fs::read_to_string(&plan_file).unwrap(),
    ));
    assert_no_secret(&places, &secrets);

    // The echoes did reach kiwi-infra's output, so the checks above could
    // fail: quoted requests (orders too), with the bearer token masked.
    let printed = &places[0].1;
    assert!(
        printed.contains("the request was: POST /v1/compute/instances"),
        "no echoed order was shown; the test proves nothing:\n{printed:.4000}"
    );
    assert!(
        printed.contains("authorization: Bearer ***"),
        "no echoed token was shown; the test proves nothing:\n{printed:.4000}"
    );
    // And each was shown on the line of the message that quoted it: the
    // echo's own line breaks and control characters are spelled out, in
    // progress lines, the summary, errors and logs alike.
    if let Some(c) = printed
        .chars()
        .find(|&c| c != '\n' && kiwi_infra::text::is_unsafe_for_terminal(c))
    {
        panic!("{c:?} reached the output");
    }
    for line in printed.lines() {
        assert!(
            !line.starts_with("authorization:") && !line.starts_with("x-request-id:"),
            "an echoed header got a line of its own: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_quotes_its_form_never_makes_kiwi_infra_print_the_credentials() {
    let mock = spawn(MockConfig {
        faults: Faults {
            echo_request_in_errors: true,
            ..Faults::default()
        },
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inventory) = inventory_copy();
    let mut cmd = command(&mock, &inventory, &["-vvv", "instances"]);
    // Credentials the mock does not know: the answer is a refusal that
    // quotes the whole form.
    cmd.env("CNTB_OAUTH2_CLIENT_SECRET", CLIENT_SECRET)
        .env("CNTB_OAUTH2_PASS", PASSWORD)
        .env("RUST_LOG", "trace");
    let out = run(cmd).await;
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("the request was: POST"),
        "the quoted form was not shown; the test proves nothing:\n{printed}"
    );
    // Where the quote reaches the client secret, it is masked.
    for (i, _) in printed.match_indices("client_secret=") {
        let after = &printed[i + "client_secret=".len()..];
        assert!(after.starts_with("***"), "{printed}");
    }
    assert_no_secret(
        &[("output".into(), printed)],
        &[CLIENT_SECRET.into(), PASSWORD.into()],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_shorter_than_six_characters_are_never_shown_in_an_echo() {
    // `CNTB_OAUTH2_PASS='ab1!x'` printed `…&password=ab1%21x`: values under
    // six characters were never registered as secrets.
    let mock = spawn(MockConfig {
        faults: Faults {
            echo_request_in_errors: true,
            ..Faults::default()
        },
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (_dir, inventory) = inventory_copy();
    for (secret, password) in [
        ("c9", "ab1!x"),
        ("s", "p w"),
        ("k&=x", "'\"&="),
        ("Zq7", "9"),
    ] {
        for args in [&["-vvv", "instances"][..], &["plan", "--contabo-only"]] {
            let mut cmd = command(&mock, &inventory, args);
            cmd.env("CNTB_OAUTH2_CLIENT_SECRET", secret)
                .env("CNTB_OAUTH2_PASS", password)
                .env("RUST_LOG", "trace");
            let out = run(cmd).await;
            let printed = text(&out);
            assert_eq!(out.status.code(), Some(1), "{printed}");
            assert!(
                printed.contains("the request was: POST"),
                "the quoted form was not shown; the test proves nothing:\n{printed}"
            );
            for (field, value) in [("client_secret", secret), ("password", password)] {
                for shape in [form_encoded(value), value.to_string()] {
                    let quoted = format!("{field}={shape}");
                    assert!(!printed.contains(&quoted), "{quoted} shown:\n{printed}");
                }
                if value.len() >= 3 {
                    assert!(!printed.contains(value), "{value:?} shown:\n{printed}");
                    let encoded = form_encoded(value);
                    assert!(!printed.contains(&encoded), "{encoded} shown:\n{printed}");
                }
            }
            assert!(printed.contains("password=***"), "{printed}");
        }
    }
}
