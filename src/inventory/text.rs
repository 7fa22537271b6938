//! Characters no inventory string may hold.
//!
//! Inventory values end up in YAML documents (cloud-init user data, k3s and
//! kubeadm configuration), command lines and terminals. Some characters are
//! invisible in an editor yet change those documents: YAML reads U+0085,
//! U+2028 and U+2029 as line breaks, so an invisible U+2028 in the
//! operator key's comment once added a `bootcmd` to every node's user data.
//! Others reorder what a reviewer sees (bidirectional controls) or hide
//! text altogether (soft hyphens, variation selectors, tag characters,
//! Hangul fillers). `validate` refuses them all, in every string and every
//! key of every file, before anything is rendered. The list is the one the
//! terminal escaping uses ([`crate::text::hidden_char`]).

/// Why `c` may not appear in an inventory string, or `None` when it may.
///
/// The characters are exactly those the terminal escaping spells out
/// ([`crate::text::hidden_char`]): one list, so what `validate` lets in is
/// always shown as itself, and nothing shown escaped can be written in the
/// inventory.
pub fn forbidden_char(c: char) -> Option<&'static str> {
    use crate::text::HiddenChar;
    let why = match crate::text::hidden_char(c)? {
        HiddenChar::Tab => "a tab",
        HiddenChar::LineBreak => "a line break",
        HiddenChar::UnicodeLineBreak => {
            "a Unicode line or paragraph separator, which YAML reads as a line break"
        }
        HiddenChar::Delete => "a delete character",
        HiddenChar::Control => "a control character",
        HiddenChar::Bidi => "a bidirectional control, which reorders the text shown",
        HiddenChar::Invisible => "an invisible formatting character",
        HiddenChar::OtherSpace => "a space other than the ASCII space, which looks like one",
        HiddenChar::Noncharacter => "a Unicode noncharacter",
    };
    Some(why)
}

/// The first forbidden character of `s`: its byte offset, the character and
/// why it is forbidden.
pub fn first_forbidden(s: &str) -> Option<(usize, char, &'static str)> {
    s.char_indices()
        .find_map(|(i, c)| forbidden_char(c).map(|why| (i, c, why)))
}

/// `U+2028` for a character, as messages name one.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// `s` with every forbidden character written as `\u{…}`, so a message that
/// quotes an inventory value cannot itself carry a line break or a terminal
/// control sequence.
pub fn escaped(s: &str) -> String {
    if first_forbidden(s).is_none() {
        return s.to_string();
    }
    s.chars()
        .map(|c| match forbidden_char(c) {
            Some(_) => format!("\\u{{{:04x}}}", u32::from(c)),
            None => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_of_every_kind_are_forbidden() {
        for c in [
            '\n', '\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{b}', '\u{c}',
        ] {
            assert!(forbidden_char(c).is_some(), "{c:?}");
        }
    }

    #[test]
    fn controls_bidi_and_invisible_characters_are_forbidden() {
        for c in [
            '\0',
            '\t',
            '\u{1b}',
            '\u{7f}',
            '\u{9b}',
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{feff}',
            '\u{fffe}',
            '\u{1fffe}',
        ] {
            assert!(forbidden_char(c).is_some(), "{c:?}");
        }
    }

    #[test]
    fn invisible_characters_that_make_a_name_look_like_another_are_forbidden() {
        for c in [
            '\u{ad}',    // soft hyphen
            '\u{34f}',   // combining grapheme joiner
            '\u{115f}',  // Hangul choseong filler
            '\u{3164}',  // Hangul filler
            '\u{ffa0}',  // halfwidth Hangul filler
            '\u{fe0f}',  // variation selector 16
            '\u{e0041}', // tag latin capital letter A
            '\u{e0100}', // variation selector 17
            '\u{2065}',  // reserved default-ignorable
            '\u{a0}',    // no-break space
            '\u{3000}',  // ideographic space
        ] {
            assert!(forbidden_char(c).is_some(), "{c:?}");
        }
    }

    #[test]
    fn validate_and_the_terminal_agree_on_every_character() {
        for c in (0..=0x10_FFFF_u32).filter_map(char::from_u32) {
            assert_eq!(
                forbidden_char(c).is_some(),
                crate::text::is_unsafe_for_terminal(c),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn printable_text_of_any_script_is_allowed() {
        for s in [
            "ops@kiwistack.io",
            "Jürgen Müller",
            "運用",
            "€ 8.49",
            "a-b_c.d/e=f:g",
        ] {
            assert_eq!(first_forbidden(s), None, "{s}");
        }
    }

    #[test]
    fn escaping_leaves_no_forbidden_character() {
        let s = "a\u{2028}b\u{1b}[2J\nc";
        let e = escaped(s);
        assert_eq!(first_forbidden(&e), None);
        assert_eq!(e, "a\\u{2028}b\\u{001b}[2J\\u{000a}c");
    }
}
