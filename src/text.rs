//! Showing text that came from outside on a terminal.
//!
//! An instance's display name, a status, a tag, Contabo's error message, a
//! node's output: anyone who can rename an instance in the Contabo panel,
//! or answer in Contabo's place, writes them. Printed raw, `\x1b[2J` clears
//! the operator's screen, `\r` overwrites a line, a newline forges a plan
//! line (`+ order …`), a bidi control (U+202E) shows text in another
//! order than it is, and an invisible character (a soft hyphen U+00AD, a
//! Hangul filler U+3164, a tag character U+E0041) makes a name look exactly
//! like a slot name it is not. So every such value is shown through
//! [`escape_for_terminal`], which spells out each of those characters
//! (`\n`, `\u{1b}`, `\u{202e}`, `\u{ad}`) and leaves every other character
//! as it is. The list of such characters ([`hidden_char`]) is also the list
//! `validate` refuses in the inventory, so the two cannot drift apart.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A character that is not shown as itself: what kind it is.
///
/// One list for the whole program: [`is_unsafe_for_terminal`] escapes these
/// in everything shown, and `validate` refuses them in every inventory
/// string (`crate::inventory::text`), so the two cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenChar {
    /// `\t`.
    Tab,
    /// `\n` or `\r`.
    LineBreak,
    /// U+0085, U+2028, U+2029: YAML (and some terminals) read them as line
    /// breaks.
    UnicodeLineBreak,
    /// DEL (U+007F).
    Delete,
    /// Any other C0 or C1 control (U+009B starts an escape sequence on some
    /// terminals).
    Control,
    /// A bidirectional control: shows text in another order than it is.
    Bidi,
    /// A default-ignorable or format character, a variation selector, a tag
    /// character or a Hangul filler: shown as nothing at all, so
    /// `kiwi-a\u{ad}-01` looks exactly like `kiwi-a-01`.
    Invisible,
    /// A space other than the ASCII space (U+00A0, U+2002, U+3000, the
    /// blank Braille pattern): looks like a space, or like nothing at the
    /// end of a name, and is not one.
    OtherSpace,
    /// A Unicode noncharacter (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF).
    Noncharacter,
}

/// What kind of hidden character `c` is, or `None` for a character that
/// is shown as itself.
pub fn hidden_char(c: char) -> Option<HiddenChar> {
    let kind = match c {
        '\t' => HiddenChar::Tab,
        '\n' | '\r' => HiddenChar::LineBreak,
        '\u{85}' | '\u{2028}' | '\u{2029}' => HiddenChar::UnicodeLineBreak,
        '\u{7f}' => HiddenChar::Delete,
        c if c.is_control() => HiddenChar::Control,
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => HiddenChar::Bidi,
        c if is_invisible(c) => HiddenChar::Invisible,
        '\u{A0}'
        | '\u{1680}'
        | '\u{2000}'..='\u{200A}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{2800}'
        | '\u{3000}' => HiddenChar::OtherSpace,
        c if is_noncharacter(c) => HiddenChar::Noncharacter,
        // Private use: no font agrees on what these look like, and many
        // show nothing; a name could hide one among its letters.
        '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}' => {
            HiddenChar::Invisible
        }
        // Enclosing marks draw over their neighbours, and U+1D159 (musical
        // null notehead) is drawn blank.
        '\u{0488}'..='\u{0489}'
        | '\u{1ABE}'
        | '\u{20DD}'..='\u{20E0}'
        | '\u{20E2}'..='\u{20E4}'
        | '\u{A670}'..='\u{A672}'
        | '\u{1D159}' => HiddenChar::Invisible,
        _ => return None,
    };
    Some(kind)
}

/// Unicode's default-ignorable code points (DerivedCoreProperties.txt,
/// reserved ones included, as Unicode recommends) and the format
/// characters (general category Cf) that are not bidi controls: all the
/// characters a terminal shows as nothing, or as a mark on its neighbour.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                     // soft hyphen
        | '\u{034F}'                   // combining grapheme joiner
        | '\u{0600}'..='\u{0605}'       // Arabic number signs (format)
        | '\u{06DD}'                   // Arabic end of ayah (format)
        | '\u{070F}'                   // Syriac abbreviation mark (format)
        | '\u{0890}'..='\u{0891}'       // Arabic pound and piastre marks (format)
        | '\u{08E2}'                   // Arabic disputed end of ayah (format)
        | '\u{115F}'..='\u{1160}'       // Hangul choseong and jungseong fillers
        | '\u{17B4}'..='\u{17B5}'       // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'       // Mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200D}'       // zero-width space, non-joiner, joiner
        | '\u{2060}'..='\u{2065}'       // word joiner, invisible operators
        | '\u{206A}'..='\u{206F}'       // deprecated format characters
        | '\u{3164}'                   // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{FEFF}'                   // zero-width no-break space (BOM)
        | '\u{FFA0}'                   // halfwidth Hangul filler
        | '\u{FFF0}'..='\u{FFFB}'       // reserved, interlinear annotation
        | '\u{110BD}'
        | '\u{110CD}'                  // Kaithi number signs (format)
        | '\u{13430}'..='\u{1343F}'     // Egyptian hieroglyph format controls
        | '\u{1BCA0}'..='\u{1BCA3}'     // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'     // musical symbol format controls
        | '\u{E0000}'..='\u{E0FFF}' // tag characters, variation selectors 17-256
    )
}

fn is_noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
}

/// True for characters that change how a terminal shows text, or that are
/// not shown as themselves: every [`HiddenChar`].
pub fn is_unsafe_for_terminal(c: char) -> bool {
    hidden_char(c).is_some()
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
/// controls, U+2028 or invisible characters. Those can only occur inside strings, where `\uXXXX`
/// means the same character, so the document stays the same JSON.
pub fn json_for_terminal(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // Structural whitespace between tokens is the encoder's own.
        if is_unsafe_for_terminal(c) && !matches!(c, '\n' | '\t' | '\r') {
            // JSON spells a character beyond U+FFFF (a tag character,
            // U+E0041) as its UTF-16 surrogate pair: `\ue0041` would read
            // as U+E004 followed by `1`.
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{:04x}", unit);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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
    fn invisible_characters_in_a_name_are_spelled_out() {
        // Each looks like nothing at all on a terminal: a Contabo name that
        // holds one would look exactly like the slot name `kiwi-a-b-01`.
        for (c, spelled) in [
            ('\u{ad}', "\\u{ad}"),
            ('\u{34f}', "\\u{34f}"),
            ('\u{115f}', "\\u{115f}"),
            ('\u{3164}', "\\u{3164}"),
            ('\u{e0041}', "\\u{e0041}"),
            ('\u{fe0f}', "\\u{fe0f}"),
            ('\u{2800}', "\\u{2800}"),
            ('\u{fdd0}', "\\u{fdd0}"),
            ('\u{10ffff}', "\\u{10ffff}"),
        ] {
            let name = format!("kiwi-a-b{c}-01");
            assert_eq!(
                escape_for_terminal(&name),
                format!("kiwi-a-b{spelled}-01"),
                "{c:?}"
            );
        }
    }

    #[test]
    fn json_spells_a_character_beyond_the_bmp_as_a_surrogate_pair() {
        let value = serde_json::json!({ "name": "kiwi-a\u{e0041}\u{ad}" });
        let json = serde_json::to_string(&value).unwrap_or_default();
        let shown = json_for_terminal(&json);
        assert_eq!(shown, r#"{"name":"kiwi-a\udb40\udc41\u00ad"}"#);
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        assert_eq!(back, value);
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
