//! Keeping secrets out of text that came from outside: a Contabo error body,
//! a token endpoint's answer, a node's stdout and stderr, an HTTP library's
//! error.
//!
//! Every such text passes through here before it is kept in an error,
//! logged or shown: each registered secret ([`super::registry`]) is masked,
//! and so is everything a command was fed through stdin (a failing program
//! may echo what it read: a YAML parser quoting a bad line, say), down to
//! each value after `key:` or `key=` and each long word. Then the text is
//! escaped for the terminal and cut to a few hundred characters, so that no
//! server can fill an error (or a terminal) with what it likes.
//!
//! Matching values finds the secrets kiwi-infra holds. As well, the value
//! of every field that by its name holds a secret is masked, whatever it
//! is and however short: `password=…` and `client_secret=…` in a form or a
//! query, `"access_token": "…"` in JSON (also JSON quoted inside JSON),
//! `Authorization: Bearer …` (all but the scheme) and `Cookie: …` headers
//! to the end of the line, a bare `Bearer …` token, `token: …` in a node's output. So an echo
//! shows no credential even if it is one kiwi-infra never registered.

use std::ops::Range;

use super::registry::{self, MIN_LINE};
use crate::text::escape_for_terminal;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Characters kept of a server's message (the start: that is where it says
/// what went wrong).
pub const MESSAGE_CHARS: usize = 300;
/// Lines of a command's output kept in an error (the end: that is where it
/// says what went wrong).
pub const TAIL_LINES: usize = 20;
/// Characters of a command's output kept in an error.
pub const TAIL_CHARS: usize = 600;
/// Bytes of a text looked at before anything is cut: enough to mask a
/// secret around the part that is kept, and no more work than that.
const WINDOW: usize = 64 * 1024;

/// `text` with every registered secret masked.
pub fn redact(text: &str) -> String {
    redact_with(text, &[])
}

/// `text` with every registered secret masked, and every fragment of the
/// call's own `fed` inputs (what a command read from stdin).
pub fn redact_with(text: &str, fed: &[&[u8]]) -> String {
    let mut found = Vec::new();
    registry::occurrences(text, &mut found);
    for fragment in fragments_of_fed(fed) {
        registry::find_all(text, &fragment, &mut found);
    }
    secret_fields(text, &mut found);
    mask(text, found)
}

/// Names of fields whose value is a secret (lower case; matched in any
/// case, after any character but a letter or digit, so
/// `CNTB_OAUTH2_PASS`, `x-auth-token` and `refresh_token` are found too).
const SECRET_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    // Not `secret` alone: kiwi-infra's own step ids read `secret:NAME`.
    "client_secret",
    "client-secret",
    "clientsecret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "private_key",
    "private-key",
    "userdata",
    "user_data",
];

/// Header-like fields whose whole value, to the end of the line, is a
/// secret (`Authorization: Bearer …`).
const SECRET_LINES: &[&str] = &["authorization", "cookie"];

/// The byte ranges of the values of secret fields in `text` (see the
/// module docs): the field's name, then optionally closing quotes (also
/// `\"` in JSON quoted in JSON), spaces, `=` or `:`, spaces, then the value.
fn secret_fields(text: &str, out: &mut Vec<Range<usize>>) {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    for (names, whole_line) in [(SECRET_FIELDS, false), (SECRET_LINES, true)] {
        for name in names {
            let mut at = Vec::new();
            registry::find_all(&lower, name, &mut at);
            for key in at {
                if !starts_a_name(bytes, key.start) {
                    continue;
                }
                if let Some(value) = field_value(bytes, key.end, whole_line) {
                    out.push(value);
                }
            }
        }
    }
    bearer_tokens(&lower, out);
}

/// True when a name found at `at` is not the end of a longer word: it
/// starts the text, follows a character other than a letter or digit, or
/// follows an escaped line break or tab (`\nAuthorization` in JSON).
fn starts_a_name(text: &[u8], at: usize) -> bool {
    at == 0
        || !text[at - 1].is_ascii_alphanumeric()
        || (at >= 2 && text[at - 2] == b'\\' && matches!(text[at - 1], b'n' | b'r' | b't'))
}

/// The value after a field name ending at `from`, if a separator follows.
fn field_value(text: &[u8], from: usize, whole_line: bool) -> Option<Range<usize>> {
    let mut i = from;
    // The name's closing quote: `"`, `'`, or `\"` inside a JSON string.
    while i < text.len() && matches!(text[i], b'"' | b'\'' | b'\\') {
        i += 1;
    }
    i = skip_spaces(text, i);
    if !matches!(text.get(i), Some(b'=' | b':')) {
        return None;
    }
    i = skip_spaces(text, i + 1);
    let mut start = i;
    let end = if whole_line {
        // `Bearer …`, `Basic …`: the scheme may show, the credential not.
        let scheme = text[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if scheme > 0 && matches!(text.get(i + scheme), Some(b' ')) {
            start = skip_spaces(text, i + scheme);
        }
        line_end(text, start)
    } else {
        match text.get(i) {
            Some(b'\\') if text.get(i + 1) == Some(&b'"') => {
                // JSON quoted in JSON: the value ends at the next `\"`.
                let inner = i + 2;
                let rest = &text[inner..];
                let close = rest
                    .windows(2)
                    .position(|w| w == b"\\\"")
                    .map_or(text.len(), |p| inner + p);
                return (close > inner).then_some(inner..close);
            }
            Some(&q @ (b'"' | b'\'')) => {
                let inner = i + 1;
                let close = quoted_end(text, inner, q);
                return (close > inner).then_some(inner..close);
            }
            _ => word_end(text, start),
        }
    };
    (end > start).then_some(start..end)
}

fn skip_spaces(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && matches!(text[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// Where a quoted value that starts at `from` ends: at the next `quote`
/// not escaped by a backslash (or at the end of the text, cut short).
fn quoted_end(text: &[u8], from: usize, quote: u8) -> usize {
    let mut i = from;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            c if c == quote => return i,
            _ => i += 1,
        }
    }
    text.len()
}

/// Where an unquoted value ends: at a space, a line break, or a character
/// that ends a value in a form, JSON or a header (`&`, `,`, `;`, quotes,
/// brackets, a backslash that starts an escape such as `\n`).
fn word_end(text: &[u8], from: usize) -> usize {
    text[from..]
        .iter()
        .position(|c| {
            c.is_ascii_whitespace()
                || matches!(
                    c,
                    b'&' | b',' | b';' | b'"' | b'\'' | b'\\' | b'}' | b']' | b')' | b'<' | b'>'
                )
        })
        .map_or(text.len(), |p| from + p)
}

/// Where a header's value ends: at the line's end (a real line break, or
/// `\n`, `\r` or `\"` when the text is JSON-escaped).
fn line_end(text: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < text.len() {
        match text[i] {
            b'\n' | b'\r' | b'"' => return i,
            b'\\' if matches!(text.get(i + 1), Some(b'n' | b'r' | b'"')) => return i,
            _ => i += 1,
        }
    }
    text.len()
}

/// A bearer token anywhere: `Bearer` then spaces then a token (RFC 6750's
/// `b64token` characters).
fn bearer_tokens(lower: &str, out: &mut Vec<Range<usize>>) {
    let bytes = lower.as_bytes();
    let mut at = Vec::new();
    registry::find_all(lower, "bearer", &mut at);
    for key in at {
        if !starts_a_name(bytes, key.start) {
            continue;
        }
        let start = skip_spaces(bytes, key.end);
        if start == key.end {
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|&c| {
                !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
            })
            .map_or(bytes.len(), |p| start + p);
        let end = end + bytes[end..].iter().take_while(|&&c| c == b'=').count();
        if end > start {
            out.push(start..end);
        }
    }
}

/// A server's message, as an error may keep it: its start (at most
/// [`MESSAGE_CHARS`] characters), secrets masked, on one line with every
/// control character escaped.
pub fn excerpt(text: &str) -> String {
    let window = head(text, WINDOW);
    let shown = escape_for_terminal(redact(window).trim()).into_owned();
    cut_end(&shown, MESSAGE_CHARS)
}

/// The end of a command's output, as an error may keep it: the last
/// [`TAIL_LINES`] lines, at most [`TAIL_CHARS`] characters, with every
/// registered secret and every fragment of `fed` masked and each line's
/// control characters escaped.
pub fn tail(text: &str, fed: &[&[u8]]) -> String {
    let window = end(text, WINDOW);
    let masked = redact_with(window, fed);
    let lines: Vec<&str> = masked.trim_end().lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let kept: Vec<String> = lines[start..]
        .iter()
        .map(|l| escape_for_terminal(l).into_owned())
        .collect();
    let kept = kept.join("\n");
    let count = kept.chars().count();
    if count > TAIL_CHARS {
        let skip = count - TAIL_CHARS;
        format!("…{}", kept.chars().skip(skip).collect::<String>())
    } else {
        kept
    }
}

/// Replaces every byte range of `found` (merged where they overlap or
/// touch) by [`MASK`].
fn mask(text: &str, mut found: Vec<Range<usize>>) -> String {
    if found.is_empty() {
        return text.to_string();
    }
    found.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut current: Option<Range<usize>> = None;
    for range in found {
        match &mut current {
            Some(c) if range.start <= c.end => c.end = c.end.max(range.end),
            _ => {
                if let Some(c) = current.take() {
                    out.push_str(&text[copied..c.start]);
                    out.push_str(MASK);
                    copied = c.end;
                }
                current = Some(range);
            }
        }
    }
    if let Some(c) = current {
        out.push_str(&text[copied..c.start]);
        out.push_str(MASK);
        copied = c.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Every fragment of the inputs a command read: the whole input, each
/// line, each value after `key:` or `key=`, and each word, if long enough
/// to be told from ordinary words. Broader than the registry's fragments,
/// because it is matched only against that command's own output.
fn fragments_of_fed(fed: &[&[u8]]) -> Vec<String> {
    let mut fragments: Vec<String> = Vec::new();
    for input in fed {
        let input = String::from_utf8_lossy(input);
        fragments.push(input.trim().to_string());
        for line in input.lines() {
            let line = line.trim();
            fragments.push(line.to_string());
            if let Some((_, value)) = line.split_once([':', '=']) {
                fragments.push(trim_quotes(value).to_string());
            }
            fragments.extend(
                line.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ','))
                    .map(str::to_string),
            );
        }
    }
    fragments.retain(|f| f.chars().count() >= MIN_LINE);
    fragments.sort();
    fragments.dedup();
    fragments
}

fn trim_quotes(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '\'').trim()
}

/// At most the first `bytes` bytes of `text`, cut on a character boundary.
fn head(text: &str, bytes: usize) -> &str {
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// At most the last `bytes` bytes of `text`, cut on a character boundary.
fn end(text: &str, bytes: usize) -> &str {
    let mut cut = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

/// `text` cut to `chars` characters, with `…` when something was cut.
fn cut_end(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(chars).collect();
    kept.push('…');
    kept
}

/// An error and its causes as the operator sees them: each message with
/// every registered secret masked and escaped for the terminal, joined by
/// `separator` (e.g. `"\n  caused by: "`).
pub fn error_chain(error: &dyn std::error::Error, separator: &str) -> String {
    let mut text = shown_message(&error.to_string());
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(separator);
        text.push_str(&shown_message(&cause.to_string()));
        source = cause.source();
    }
    text
}

/// One error message, secrets masked and escaped; its own line breaks (an
/// error that quotes a node's log) are kept.
fn shown_message(message: &str) -> String {
    crate::text::escape_lines_for_terminal(&redact(message)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::register;

    #[test]
    fn values_fed_through_stdin_never_survive_in_stderr() {
        let stdin = b"node-name: kiwi-a-agent-01\ntoken: \"K10abc::server:hunter2hunter2\"\n";
        let stderr = "error: cannot parse token K10abc::server:hunter2hunter2 at line 2\n\
                      line was: token: \"K10abc::server:hunter2hunter2\"\n";
        let kept = tail(stderr, &[stdin]);
        assert!(!kept.contains("hunter2"), "{kept}");
        assert!(
            kept.contains("error: cannot parse token *** at line 2"),
            "{kept}"
        );
    }

    #[test]
    fn short_words_are_left_alone_and_long_output_is_cut() {
        let kept = tail("x: true\n", &[b"cluster-init: true\n"]);
        assert_eq!(kept, "x: true");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let kept = tail(&long, &[]);
        assert!(kept.starts_with("line 80\n"), "{kept}");
        assert!(kept.ends_with("line 99"), "{kept}");
        let wide = "x".repeat(5000);
        assert_eq!(tail(&wide, &[]).chars().count(), TAIL_CHARS + 1);
    }

    #[test]
    fn an_echoed_secret_is_masked_in_every_shape_and_where_the_echo_is_cut() {
        let secret = "cAnary/Secret+9f3e d41b7a";
        register(secret);
        let echoes = [
            format!("request body: {{\"password\":\"{secret}\"}}"),
            format!("form: password={}", "cAnary%2FSecret%2B9f3e+d41b7a"),
            format!("json: \"{}\"", "cAnary\\/Secret+9f3e d41b7a"),
            // A proxy that cut its echo short, at either end.
            "truncated: cAnary/Secret+9f3e d4".to_string(),
            "ary/Secret+9f3e d41b7a was the rest".to_string(),
        ];
        for echo in &echoes {
            let shown = excerpt(echo);
            assert!(shown.contains(MASK), "{shown}");
            assert!(!shown.contains("Secret+9f3e"), "{shown}");
            assert!(!shown.contains("Secret%2B9f3e"), "{shown}");
        }
    }

    #[test]
    fn a_document_is_masked_line_by_line_even_when_echoed_as_json() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
                   b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
                   QyNTUxOQAAACBqsBbB7Pd0k5vxBpUX+pHMuTQ9Ku1AgS/hxa5pq1nZRAAAAJi0cQZmtHEG\n\
                   -----END OPENSSH PRIVATE KEY-----\n";
        let user_data = format!(
            "#cloud-config\nhostname: kiwi-a-b-01\nssh_keys:\n  ed25519_private: |\n{}",
            key.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        );
        crate::secret::Secret::new(user_data.clone());
        let echoed = serde_json::json!({ "userData": user_data }).to_string();
        let shown = redact(&echoed);
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(
            !shown.contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE"),
            "{shown}"
        );
        assert!(!shown.contains("QyNTUxOQAAACBqsBbB7Pd0k5vxBpUX"), "{shown}");
        // Names inside the document stay readable elsewhere.
        assert_eq!(
            redact("node kiwi-a-b-01 is not Ready"),
            "node kiwi-a-b-01 is not Ready"
        );
    }

    #[test]
    fn a_server_message_is_cut_and_kept_on_one_line() {
        let shown = excerpt(&format!("bad\n+ order kiwi-x\x1b[2J{}", "y".repeat(1000)));
        assert!(
            shown.starts_with("bad\\n+ order kiwi-x\\u{1b}[2J"),
            "{shown}"
        );
        assert_eq!(shown.chars().count(), MESSAGE_CHARS + 1);
    }

    #[test]
    fn secret_fields_are_masked_whatever_their_length() {
        for (echo, shown) in [
            (
                "grant_type=password&client_id=kiwi&client_secret=s3&username=u&password=ab1%21x",
                "grant_type=password&client_id=kiwi&client_secret=***&username=u&password=***",
            ),
            (
                r#"{"password": "a\"b", "access_token":"xy", "user":"u"}"#,
                r#"{"password": "***", "access_token":"***", "user":"u"}"#,
            ),
            (
                r#"{"message":"{\"refresh_token\":\"zz\",\"n\":1}"}"#,
                r#"{"message":"{\"refresh_token\":\"***\",\"n\":1}"}"#,
            ),
            (
                "authorization: Bearer abc.def\nx-request-id: 1",
                "authorization: Bearer ***\nx-request-id: 1",
            ),
            (
                r"body\nAuthorization: Basic dTpw\nhost: x",
                r"body\nAuthorization: Basic ***\nhost: x",
            ),
            (
                "rejected Bearer eyJ0.x-y_z~+/== here",
                "rejected Bearer *** here",
            ),
            ("CNTB_OAUTH2_PASS=ab1!x", "CNTB_OAUTH2_PASS=***"),
            ("token: K10abc::server:x y", "token: *** y"),
            ("Cookie: a=1; b=2\nok", "Cookie: ***\nok"),
            (
                r##"{"userData":"#cloud-config\nx: \"y\""}"##,
                r#"{"userData":"***"}"#,
            ),
        ] {
            assert_eq!(fields_masked(echo), shown, "{echo}");
            let redacted = redact(echo);
            assert!(
                !redacted.contains("ab1") && !redacted.contains("xy"),
                "{redacted}"
            );
        }
    }

    /// `text` with only the secret fields masked: the registry is shared by
    /// every test of the process, and may hold any word.
    fn fields_masked(text: &str) -> String {
        let mut found = Vec::new();
        secret_fields(text, &mut found);
        mask(text, found)
    }

    #[test]
    fn honest_text_that_names_a_secret_field_is_left_alone() {
        for honest in [
            "grant_type=password",
            "token expired",
            "step secret:kiwi-operator-key failed",
            "obtained API token lifetime_s=300",
            "passwords must be rotated",
            "token_type=bearer",
            "the bearer",
            "missing CNTB_OAUTH2_PASS (--api-password)",
        ] {
            assert_eq!(fields_masked(honest), honest);
        }
    }

    #[test]
    fn overlapping_occurrences_are_masked_as_one() {
        let found = vec![2..6, 4..9, 12..14];
        assert_eq!(mask("0123456789abcdef", found), "01***9ab***ef");
    }
}
