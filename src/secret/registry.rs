//! The process-wide registry of the secrets kiwi-infra holds, and finding
//! them in text.
//!
//! A secret is registered when it comes into existence ([`super::Secret::new`]
//! does it for every wrapped value; [`register`] is for values that are read
//! and dropped without being kept). What is registered are *fragments*, the
//! pieces an echo would show:
//! - a one-line value (credential, token, key): the value itself;
//! - a document (user data, a k3s or kubeadm configuration, a kubeconfig):
//!   each line, and each long random-looking value or word in it (a base64
//!   key, a certificate). Not every word: a document also holds node names
//!   and YAML keys, and masking those everywhere would garble honest
//!   messages. Its short secrets (tokens) are registered on their own;
//! - each fragment also as it appears inside a JSON string (with and without
//!   `\/`) and inside a URL-encoded form, the shapes a request is echoed in.
//!
//! - a *credential* (the API password and client secret, an access or
//!   refresh token) of any length, [`register_credential`]: one of six
//!   characters or more like any value; a shorter one (`ab1!x`) too, but
//!   only where it stands as a word of its own (not inside a longer word),
//!   so that a two-letter password does not mask those letters in every
//!   word. Echoes quote a credential between `=` and `&`, in quotes or
//!   after `: `, which all count as word boundaries.
//!
//! Matching uses an Aho–Corasick automaton over all fragments, rebuilt when
//! enough new ones have arrived (each rebuild waits for the set to grow by
//! an eighth, so the total work stays linear); the fragments added since
//! the last build are searched one by one. A text that ends in the start of
//! a fragment, or starts with its end, is an echo cut short, and that part
//! is found too.

use std::collections::BTreeSet;
use std::ops::{Bound, Range};
use std::sync::{LazyLock, PoisonError, RwLock};

use aho_corasick::AhoCorasick;

/// Shortest one-line value registered: shorter ones (`true`, a port) would
/// mask harmless words everywhere, and every credential and token is longer.
const MIN_WHOLE: usize = 6;
/// Shortest line of a document registered.
pub(super) const MIN_LINE: usize = 8;
/// Shortest value or word of a document registered on its own.
const MIN_LONG: usize = 32;
/// Shortest cut-off piece of a fragment found at the start or end of a text.
const MIN_EDGE: usize = 16;
/// Fragments searched one by one before the automaton is rebuilt.
const REBUILD_AFTER: usize = 32;

#[derive(Default)]
struct Registry {
    /// Every fragment.
    fragments: BTreeSet<String>,
    /// Every fragment, its characters reversed (for echoes cut at the start).
    reversed: BTreeSet<String>,
    /// Length in bytes of the longest fragment.
    longest: usize,
    /// Automaton over the fragments known at its build.
    automaton: Option<AhoCorasick>,
    /// Fragments added since.
    pending: Vec<String>,
    /// Fragments of credentials shorter than [`MIN_WHOLE`], found only
    /// where they stand as words of their own.
    short: BTreeSet<String>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

/// Registers a secret value (a credential, a token, a document holding
/// one) so that [`super::redact`] masks it wherever it shows up.
pub fn register(value: &str) {
    let fragments = fragments_of(value);
    if fragments.is_empty() {
        return;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    for fragment in fragments {
        if registry.fragments.contains(&fragment) {
            continue;
        }
        registry.longest = registry.longest.max(fragment.len());
        registry.reversed.insert(fragment.chars().rev().collect());
        registry.fragments.insert(fragment.clone());
        registry.pending.push(fragment);
    }
    let pending = registry.pending.len();
    if pending >= REBUILD_AFTER && pending * 8 >= registry.fragments.len() {
        let built = AhoCorasick::new(&registry.fragments);
        if let Ok(automaton) = built {
            registry.automaton = Some(automaton);
            registry.pending.clear();
        }
        // Too large for an automaton: the fragments stay in `pending`,
        // searched one by one, slower but just as complete. (Not logged:
        // the log writer redacts, and would wait for this lock.)
    }
}

/// Registers a credential (API password, client secret, a token) so that
/// it is masked whatever its length: unlike [`register`], a value shorter
/// than six characters is registered too, found wherever it stands as a
/// word of its own (see the module docs).
pub fn register_credential(value: &str) {
    if value.trim().chars().count() >= MIN_WHOLE || value.contains(['\n', '\r']) {
        register(value);
        return;
    }
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    let mut shapes = echoed_shapes(value);
    shapes.push(value.to_string());
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    registry
        .short
        .extend(shapes.into_iter().filter(|f| !f.is_empty()));
}

/// [`register`] for bytes (stdin fed to a node, a file uploaded).
pub(super) fn register_bytes(value: &[u8]) {
    if !value.is_empty() {
        register(&String::from_utf8_lossy(value));
    }
}

/// The byte ranges of `text` that hold a registered fragment (overlapping,
/// unsorted).
pub(super) fn occurrences(text: &str, out: &mut Vec<Range<usize>>) {
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(automaton) = &registry.automaton {
        out.extend(
            automaton
                .find_overlapping_iter(text)
                .map(|m| m.start()..m.end()),
        );
    }
    for fragment in &registry.pending {
        find_all(text, fragment, out);
    }
    for fragment in &registry.short {
        find_words(text, fragment, out);
    }
    let window = registry.longest;
    if let Some(start) = cut_off_end(text, &registry.fragments, window) {
        out.push(start..text.len());
    }
    let head = prefix_chars(text, window);
    let reversed: String = head.chars().rev().collect();
    if let Some(start) = cut_off_end(&reversed, &registry.reversed, window) {
        out.push(0..reversed.len() - start);
    }
}

/// Every occurrence of `pattern` in `text`, overlapping ones included.
pub(super) fn find_all(text: &str, pattern: &str, out: &mut Vec<Range<usize>>) {
    if pattern.is_empty() {
        return;
    }
    let mut from = 0;
    while let Some(found) = text[from..].find(pattern) {
        let start = from + found;
        out.push(start..start + pattern.len());
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
}

/// Every occurrence of `pattern` in `text` that stands as a word of its
/// own: where the pattern begins (ends) with a letter, a digit or `_`, the
/// character before (after) it is none of those.
fn find_words(text: &str, pattern: &str, out: &mut Vec<Range<usize>>) {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let starts_word = word(pattern.chars().next());
    let ends_word = word(pattern.chars().next_back());
    let mut found = Vec::new();
    find_all(text, pattern, &mut found);
    out.extend(found.into_iter().filter(|r| {
        let joined_before = starts_word && word(text[..r.start].chars().next_back());
        let joined_after = ends_word && word(text[r.end..].chars().next());
        !joined_before && !joined_after
    }));
}

/// Where the longest suffix of `text` (at least [`MIN_EDGE`] bytes, within
/// its last `window` bytes) begins that is the start of a fragment in `set`.
fn cut_off_end(text: &str, set: &BTreeSet<String>, window: usize) -> Option<usize> {
    let first = text.len().saturating_sub(window);
    text.char_indices()
        .map(|(i, _)| i)
        .filter(|&i| i >= first && text.len() - i >= MIN_EDGE)
        .find(|&i| {
            let tail = &text[i..];
            set.range::<str, _>((Bound::Included(tail), Bound::Unbounded))
                .next()
                .is_some_and(|f| f.starts_with(tail))
        })
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a
/// character boundary.
fn prefix_chars(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The fragments of one secret value, each in every shape an echo shows.
fn fragments_of(value: &str) -> BTreeSet<String> {
    let value = value.trim();
    let mut plain: Vec<&str> = Vec::new();
    if !value.contains(['\n', '\r']) {
        if value.chars().count() >= MIN_WHOLE {
            plain.push(value);
        }
    } else {
        for line in value.lines().map(str::trim) {
            if line.chars().count() >= MIN_LINE {
                plain.push(line);
            }
            if let Some((_, rest)) = line.split_once([':', '=']) {
                plain.push(trim_quotes(rest));
            }
            plain.extend(line.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',')));
        }
        plain.retain(|f| f.chars().count() >= MIN_LINE);
        let lines: BTreeSet<&str> = value.lines().map(str::trim).collect();
        // Values and words must be long and random-looking (base64 has
        // capitals; node names and YAML keys do not), or be whole lines.
        plain.retain(|f| lines.contains(f) || looks_random(f));
    }
    let mut out = BTreeSet::new();
    for fragment in plain {
        out.insert(fragment.to_string());
        out.extend(echoed_shapes(fragment));
    }
    out.retain(|f| !f.is_empty());
    out
}

/// Long, with capitals: a base64 key or certificate rather than a name.
fn looks_random(s: &str) -> bool {
    s.chars().count() >= MIN_LONG && s.chars().any(|c| c.is_ascii_uppercase())
}

fn trim_quotes(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '\'').trim()
}

/// `fragment` as it appears in a JSON string (`/` escaped or not) and in a
/// URL-encoded form (`+` or `%20` for spaces, either case of hex digits).
fn echoed_shapes(fragment: &str) -> Vec<String> {
    let json = serde_json::to_string(fragment).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(fragment)
        .to_string();
    let json_slashes = json.replace('/', "\\/");
    let form = percent_encode(fragment, true);
    let url = percent_encode(fragment, false);
    vec![
        json,
        json_slashes,
        lowercase_hex(&form),
        form,
        lowercase_hex(&url),
        url,
    ]
}

/// Percent-encodes `s` as a form does (`application/x-www-form-urlencoded`:
/// `A-Za-z0-9*-._` kept, a space as `+`) or as a URL does (RFC 3986:
/// `A-Za-z0-9-._~` kept, a space as `%20`).
fn percent_encode(s: &str, form: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b'*' if form => out.push('*'),
            b'~' if !form => out.push('~'),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The same percent-encoding with lower-case hex digits (`%2f`).
fn lowercase_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[i + escape.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_registers_lines_and_random_values_but_not_names() {
        let doc = "hostname: kiwi-acme-eu-west-01\nkey: AAAAC3NzaC1lZDI1NTE5AAAAIGk0bXlrZXlrZXlrZXk\nruncmd:\n";
        let f = fragments_of(doc);
        assert!(f.contains("hostname: kiwi-acme-eu-west-01"), "{f:?}");
        assert!(
            f.contains("AAAAC3NzaC1lZDI1NTE5AAAAIGk0bXlrZXlrZXlrZXk"),
            "{f:?}"
        );
        assert!(!f.contains("kiwi-acme-eu-west-01"), "{f:?}");
        assert!(!f.contains("runcmd:"), "{f:?}");
    }

    #[test]
    fn secrets_are_found_before_and_after_the_matcher_is_rebuilt() {
        let secrets: Vec<String> = (0..200)
            .map(|i| format!("rebuild-canary-{i:03}-x"))
            .collect();
        for (i, secret) in secrets.iter().enumerate() {
            register(secret);
            // Each one is found at once, whether it is in the automaton yet
            // or still among the pending fragments.
            let text = format!("a {secret} b {}", secrets[i / 2]);
            let mut found = Vec::new();
            occurrences(&text, &mut found);
            assert!(
                found.contains(&(2..2 + secret.len())),
                "{secret}: {found:?}"
            );
            assert!(found.len() >= 2, "{text}: {found:?}");
        }
        let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
        assert!(registry.automaton.is_some(), "the matcher was built");
    }

    #[test]
    fn a_five_character_password_is_masked_in_a_form_but_not_inside_words() {
        register_credential("ab1!x");
        let mut found = Vec::new();
        let form = "grant_type=password&username=u&password=ab1%21x";
        occurrences(form, &mut found);
        assert!(found.contains(&(form.len() - 7..form.len())), "{found:?}");
        for echoed in ["\"ab1!x\"", "pass ab1!x.", "ab1!x"] {
            found.clear();
            occurrences(echoed, &mut found);
            assert!(!found.is_empty(), "{echoed}");
        }
        found.clear();
        occurrences("grab1!xyz", &mut found);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_value_is_registered_in_the_shapes_a_request_is_echoed_in() {
        let f = fragments_of("p@ss w/rd\"x");
        assert!(f.contains("p@ss w/rd\"x"), "{f:?}");
        assert!(f.contains("p@ss w/rd\\\"x"), "{f:?}");
        assert!(f.contains("p@ss w\\/rd\\\"x"), "{f:?}");
        assert!(f.contains("p%40ss+w%2Frd%22x"), "{f:?}");
        assert!(f.contains("p%40ss+w%2frd%22x"), "{f:?}");
        assert!(f.contains("p%40ss%20w%2Frd%22x"), "{f:?}");
        assert!(fragments_of("short").is_empty());
    }
}
