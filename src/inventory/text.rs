//! Characters no inventory string may hold.
//!
//! Inventory values end up in YAML documents (cloud-init user data, k3s and
//! kubeadm configuration), command lines and terminals. Some characters are
//! invisible in an editor yet change those documents: YAML reads U+0085,
//! U+2028 and U+2029 as line breaks, so an invisible U+2028 in the
//! operator key's comment once added a `bootcmd` to every node's user data.
//! Others reorder what a reviewer sees (bidirectional controls) or hide
//! text altogether. `validate` refuses them all, in every string and every
//! key of every file, before anything is rendered.

/// Why `c` may not appear in an inventory string, or `None` when it may.
pub fn forbidden_char(c: char) -> Option<&'static str> {
    let why = match c {
        '\t' => "a tab",
        '\n' | '\r' => "a line break",
        '\u{85}' | '\u{2028}' | '\u{2029}' => {
            "a Unicode line or paragraph separator, which YAML reads as a line break"
        }
        '\u{7f}' => "a delete character",
        c if c.is_control() => "a control character",
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            "a bidirectional control, which reorders the text shown"
        }
        '\u{ad}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200d}'
        | '\u{2060}'..='\u{2064}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}' => "an invisible formatting character",
        c if is_noncharacter(c) => "a Unicode noncharacter",
        _ => return None,
    };
    Some(why)
}

fn is_noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
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
