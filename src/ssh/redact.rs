//! Keeping secrets out of remote error messages.
//!
//! Secrets reach a node through stdin (uploads, `kubeadm` configuration),
//! never through a command line, so the command in an error is safe to
//! show. A failing program may still echo what it read to stderr (a YAML
//! parser quoting a bad line, say), and that stderr goes into the error. So
//! before stderr is kept, everything fed through stdin is masked: the whole
//! input, each line, each value after `key:` or `key=`, and each long word.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Lines of stderr kept in an error.
const TAIL_LINES: usize = 20;
/// Characters of stderr kept in an error.
const TAIL_CHARS: usize = 2000;

/// Shortest fragment that is masked on its own: shorter ones (`true`, `1`)
/// would mask harmless words everywhere, and secrets are long.
const MIN_FRAGMENT: usize = 8;

/// The end of `text` (the last lines, at most a few thousand characters),
/// with every fragment of `secrets` masked.
pub fn tail(text: &str, secrets: &[&[u8]]) -> String {
    let masked = redact(text, secrets);
    let lines: Vec<&str> = masked.trim_end().lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    let mut kept = lines[start..].join("\n");
    if kept.chars().count() > TAIL_CHARS {
        let skip = kept.chars().count() - TAIL_CHARS;
        kept = format!("…{}", kept.chars().skip(skip).collect::<String>());
    }
    kept
}

/// `text` with every fragment of each secret masked.
pub fn redact(text: &str, secrets: &[&[u8]]) -> String {
    let mut fragments: Vec<String> = Vec::new();
    for secret in secrets {
        let secret = String::from_utf8_lossy(secret);
        fragments.push(secret.trim().to_string());
        for line in secret.lines() {
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
    fragments.retain(|f| f.chars().count() >= MIN_FRAGMENT);
    // Longest first, so a line is masked whole before its words are.
    fragments.sort_by_key(|f| std::cmp::Reverse(f.len()));
    fragments.dedup();
    let mut out = text.to_string();
    for fragment in &fragments {
        if out.contains(fragment.as_str()) {
            out = out.replace(fragment.as_str(), MASK);
        }
    }
    out
}

fn trim_quotes(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '\'').trim()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
