//! Showing text that came from outside on a terminal.
//!
//! An instance's display name, a status, a tag, Contabo's error message, a
//! node's output: anyone who can rename an instance in the Contabo panel,
//! or answer in Contabo's place, writes them. Printed raw, `\x1b[2J` clears
//! the operator's screen, `\r` overwrites a line, a newline forges a plan
//! line (`+ order …`), and a bidi control (U+202E) shows text in another
//! order than it is. So every such value is shown through
//! [`escape_for_terminal`], which spells out each of those characters
//! (`\n`, `\u{1b}`, `\u{202e}`) and leaves every other character as it is.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters that change how a terminal shows text instead of
/// being shown: control characters (C0, DEL, C1), bidi controls, line and
/// paragraph separators, and invisible format characters.
pub fn is_unsafe_for_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'              // Arabic letter mark (bidi)
            | '\u{180E}'            // Mongolian vowel separator (invisible)
            | '\u{200B}'..='\u{200F}' // zero-width characters, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}' // word joiner, bidi isolates, invisible operators
            | '\u{FEFF}'            // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        )
}

/// `text` with every character of [`is_unsafe_for_terminal`] spelled out:
/// `\n`, `\r`, `\t`, else `\u{…}` in hex. Everything else is unchanged, so
/// ordinary text reads as before. The result is one line.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`escape_for_terminal`], but keeps line breaks: for text whose
/// lines are meant (an error chain, a node's log). Only for text whose
/// outside parts were escaped where they entered, so that every line break
/// left is kiwi-infra's own.
pub fn escape_lines_for_terminal(text: &str) -> Cow<'_, str> {
    escape_all_but(text, &['\n'])
}

/// Log lines: line breaks are kept, and so is ESC, which the log formatter
/// uses for its own colours (and escapes in the values it logs).
pub(crate) fn escape_log_lines(text: &str) -> Cow<'_, str> {
    escape_all_but(text, &['\n', '\x1b'])
}

fn escape_all_but<'t>(text: &'t str, kept: &[char]) -> Cow<'t, str> {
    if !text
        .chars()
        .any(|c| !kept.contains(&c) && is_unsafe_for_terminal(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if kept.contains(&c) {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe_for_terminal(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// JSON for a terminal: serde escapes C0 controls in strings, but not DEL,
/// C1 controls (U+009B starts an escape sequence on some terminals), bidi
/// controls or U+2028. Those can only occur inside strings, where `\uXXXX`
/// means the same character, so the document stays the same JSON.
pub fn json_for_terminal(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // Structural whitespace between tokens is the encoder's own.
        if is_unsafe_for_terminal(c) && !matches!(c, '\n' | '\t' | '\r') {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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
    escape_lines_for_terminal(&crate::secret::redact::redact(message)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_line_breaks_and_bidi_controls_are_spelled_out() {
        assert_eq!(
            escape_for_terminal("kiwi-a\x1b[31m\n+ order kiwi-x\r"),
            "kiwi-a\\u{1b}[31m\\n+ order kiwi-x\\r"
        );
        assert_eq!(
            escape_for_terminal("a\u{202e}b\u{2028}c"),
            "a\\u{202e}b\\u{2028}c"
        );
        assert_eq!(escape_for_terminal("\u{9b}2J"), "\\u{9b}2J");
        assert!(matches!(
            escape_for_terminal("kiwi-acme-eu-01 ✓ ü"),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape_lines_for_terminal("a\nb\x1b"), "a\nb\\u{1b}");
    }

    #[test]
    fn json_stays_the_same_document() {
        let value = serde_json::json!({ "name": "a\u{9b}b\u{202e}c\u{7f}\n" });
        let json = serde_json::to_string_pretty(&value).unwrap_or_default();
        let shown = json_for_terminal(&json);
        assert!(
            !shown
                .chars()
                .any(|c| c != '\n' && is_unsafe_for_terminal(c)),
            "{shown}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        assert_eq!(back, value);
    }
}
