//! cloud-init user data for the instances `apply` orders or reinstalls.
//!
//! The templates are plain files in `cloud-init/` at the repository root, so
//! a reviewer reads exactly what a server receives; they are embedded with
//! `include_str!` so the binary needs nothing beside it. Substitution is
//! deliberately tiny (`{{ variable }}`, nothing else): user data is security
//! relevant and must stay readable. A variable the caller did not provide is
//! an error naming the template and the variable, never an empty string.
//!
//! A later issue adds host keys and k3s/kubeadm parts; they will be further
//! templates chosen per [`UserDataTemplate`].

use std::collections::BTreeMap;

use crate::plan::UserDataTemplate;
use crate::secret::Secret;

/// The base template every node gets.
const BASE: (&str, &str) = (
    "cloud-init/base.yaml",
    include_str!("../../cloud-init/base.yaml"),
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
}

impl UserDataVars {
    fn as_map(&self) -> BTreeMap<&'static str, &str> {
        BTreeMap::from([
            ("hostname", self.hostname.as_str()),
            ("ssh_public_key", self.ssh_public_key.trim()),
            ("admin_user", ADMIN_USER),
        ])
    }
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
}

/// Renders the user data of a node. The result is wrapped in [`Secret`]
/// because later templates carry host private keys.
pub fn render(
    template: UserDataTemplate,
    vars: &UserDataVars,
) -> Result<Secret<String>, CloudInitError> {
    // Every role uses the base template today; role-specific parts come later.
    let (name, text) = match template {
        UserDataTemplate::K3sServer
        | UserDataTemplate::K3sAgent
        | UserDataTemplate::KubeadmWorker => BASE,
    };
    substitute(name, text, &vars.as_map()).map(Secret::new)
}

/// Replaces each `{{ variable }}` in `text` by its value.
pub fn substitute(
    template: &str,
    text: &str,
    vars: &BTreeMap<&str, &str>,
) -> Result<String, CloudInitError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let line = line_of(text, text.len() - rest.len() + start);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(CloudInitError::Unclosed {
                template: template.to_string(),
                line,
            });
        };
        let variable = after[..end].trim();
        let value = vars
            .get(variable)
            .ok_or_else(|| CloudInitError::MissingVariable {
                template: template.to_string(),
                line,
                variable: variable.to_string(),
            })?;
        if value.contains('\n') || value.contains('\r') {
            return Err(CloudInitError::MultilineValue {
                template: template.to_string(),
                variable: variable.to_string(),
            });
        }
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> UserDataVars {
        UserDataVars {
            hostname: "kiwi-core-general-01".into(),
            ssh_public_key: "ssh-ed25519 AAAATEST ops@kiwistack.io\n".into(),
        }
    }

    #[test]
    fn base_template_sets_hostname_admin_key_and_locks_root_and_passwords() {
        let text = render(UserDataTemplate::KubeadmWorker, &vars()).unwrap();
        let text = text.expose();
        assert!(text.starts_with("#cloud-config\n"));
        assert!(text.contains("hostname: kiwi-core-general-01\n"));
        assert!(text.contains("- name: kiwi\n"));
        assert!(text.contains("      - ssh-ed25519 AAAATEST ops@kiwistack.io\n"));
        assert!(text.contains("NOPASSWD:ALL"));
        assert!(text.contains("disable_root: true"));
        assert!(text.contains("ssh_pwauth: false"));
        assert!(!text.contains("{{"), "unrendered variable left in:\n{text}");
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
}
