//! Writing values into the YAML documents kiwi-infra renders as text:
//! cloud-init user data (`src/cloudinit/`), k3s `config.yaml` and kubeadm's
//! `JoinConfiguration` (`src/bootstrap/`).
//!
//! Those documents are templates a reviewer can read, so values are put
//! into them as text. A value written as is could end the line it is on
//! (YAML also breaks lines at U+0085, U+2028 and U+2029), start a comment,
//! or open a flow collection, and so add keys the template never had. So a
//! value is only ever written as a double-quoted scalar holding exactly that
//! value, in printable ASCII: everything else is an escape sequence, which
//! every YAML parser (PyYAML for cloud-init, go-yaml for k3s and kubeadm)
//! reads back to the same text.

use std::fmt::Write;

/// `s` as a YAML double-quoted scalar: `"` and `\` escaped, every character
/// outside printable ASCII written `\uXXXX` or `\UXXXXXXXX`. It parses back
/// to exactly `s`, and holds no line break of any kind.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => {
                let n = u32::from(c);
                // Writing to a String cannot fail.
                let _ = if n <= 0xffff {
                    write!(out, "\\u{n:04X}")
                } else {
                    write!(out, "\\U{n:08X}")
                };
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_only_wrapped_in_quotes() {
        assert_eq!(quoted("kiwi-acme-server-01"), "\"kiwi-acme-server-01\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn quotes_backslashes_and_every_kind_of_line_break_are_escaped() {
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            quoted("x\ny\u{2028}z\u{85}w\u{1b}"),
            r#""x\u000Ay\u2028z\u0085w\u001B""#
        );
        assert_eq!(quoted("ü😀"), r#""\u00FC\U0001F600""#);
    }

    #[test]
    fn what_is_written_reads_back_unchanged() {
        for s in [
            "ssh-ed25519 AAAA ops@x\u{2028}bootcmd: [x]",
            "a: b\n- c",
            "# not a comment",
            "{ flow: map }",
            "'single'",
            "  leading and trailing  ",
            "\u{feff}\u{fffe}\u{10ffff}\0",
        ] {
            let text = format!("k: {}\n", quoted(s));
            let back: std::collections::BTreeMap<String, String> =
                serde_norway::from_str(&text).unwrap();
            assert_eq!(back.len(), 1, "{text}");
            assert_eq!(back["k"], s, "{text}");
        }
    }
}
