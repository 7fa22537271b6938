//! k3s: the configuration file kiwi-infra writes on each node, and the
//! secure tokens it reads back from the first server.
//!
//! Everything here is pure text work; the SSH side is in [`super`].

use std::collections::BTreeMap;

use crate::firewall::FlannelBackend;
use crate::inventory::Taint;
use crate::secret::Secret;

/// Where k3s reads its configuration (mode 0600: it holds the token).
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
/// The install script cloud-init put on every k3s node.
pub const INSTALL_SCRIPT: &str = "/usr/local/bin/k3s-install.sh";
/// The first server's full (CA-pinned) server token.
pub const SERVER_TOKEN_PATH: &str = "/var/lib/rancher/k3s/server/token";
/// The first server's full (CA-pinned) agent token.
pub const AGENT_TOKEN_PATH: &str = "/var/lib/rancher/k3s/server/agent-token";

/// How a node takes part in its cluster.
#[derive(Debug, Clone)]
pub enum Role {
    /// The first server: initialises embedded etcd and chooses the tokens.
    FirstServer {
        /// Server token (random, chosen by kiwi-infra).
        token: Secret,
        /// Agent token (random, chosen by kiwi-infra).
        agent_token: Secret,
    },
    /// A further server joining through `server_url`.
    Server {
        /// `https://<ip>:6443` of an existing server.
        server_url: String,
        /// The secure server token (`K10<ca hash>::server:…`).
        token: Secret,
    },
    /// An agent joining through `server_url`.
    Agent {
        /// `https://<ip>:6443` of an existing server.
        server_url: String,
        /// The secure agent token (`K10<ca hash>::node:…`).
        token: Secret,
    },
}

impl Role {
    /// `server` or `agent`, for `INSTALL_K3S_EXEC`.
    pub fn exec(&self) -> &'static str {
        match self {
            Self::FirstServer { .. } | Self::Server { .. } => "server",
            Self::Agent { .. } => "agent",
        }
    }
}

/// Everything `config.yaml` says about one node.
#[derive(Debug, Clone)]
pub struct NodeConfig<'a> {
    /// Node name (the slot name).
    pub node_name: &'a str,
    /// The node's cluster-traffic address: node-ip and a tls-san.
    pub node_ip: &'a str,
    /// Its public address when that differs (a node in a private network):
    /// node-external-ip and a second tls-san. `None`: `node_ip` is public
    /// and serves for both.
    pub external_ip: Option<&'a str>,
    /// How it joins.
    pub role: Role,
    /// Labels it registers with.
    pub labels: &'a BTreeMap<String, String>,
    /// Taints it registers with.
    pub taints: &'a [Taint],
    /// flannel's backend (`flannel-backend`, a server flag: every server
    /// of a cluster must name the same); written for servers only.
    pub flannel_backend: Option<FlannelBackend>,
}

/// A YAML double-quoted scalar holding exactly `s` (see [`crate::yaml`]).
fn scalar(s: &str) -> String {
    crate::yaml::quoted(s)
}

/// Renders `config.yaml`. The result holds a token, hence the [`Secret`].
/// Refused (with the reason) when a label does not fit Kubernetes' grammar.
pub fn render_config(c: &NodeConfig<'_>) -> Result<Secret, String> {
    let mut out = String::from(
        "# Written by kiwi-infra when the node joined. The labels and taints below are those it\n\
         # registered with; later changes are made through the Kubernetes API and recorded in the\n\
         # node's kiwistack.io/managed-labels annotation, not here.\n",
    );
    out.push_str(&format!("node-name: {}\n", scalar(c.node_name)));
    out.push_str(&format!("node-ip: {}\n", scalar(c.node_ip)));
    let external = c.external_ip.unwrap_or(c.node_ip);
    out.push_str(&format!("node-external-ip: {}\n", scalar(external)));
    match &c.role {
        Role::FirstServer { token, agent_token } => {
            out.push_str("cluster-init: true\n");
            out.push_str(&format!("token: {}\n", scalar(token.expose())));
            out.push_str(&format!("agent-token: {}\n", scalar(agent_token.expose())));
        }
        Role::Server { server_url, token } | Role::Agent { server_url, token } => {
            out.push_str(&format!("server: {}\n", scalar(server_url)));
            out.push_str(&format!("token: {}\n", scalar(token.expose())));
        }
    }
    if !matches!(c.role, Role::Agent { .. }) {
        out.push_str(&format!("tls-san:\n  - {}\n", scalar(c.node_ip)));
        if let Some(external) = c.external_ip.filter(|e| *e != c.node_ip) {
            out.push_str(&format!("  - {}\n", scalar(external)));
        }
        if let Some(backend) = c.flannel_backend {
            out.push_str(&format!("flannel-backend: {}\n", scalar(backend.as_str())));
        }
    }
    out.push_str(&labels_and_taints(c.labels, c.taints)?);
    Ok(Secret::new(out))
}

/// The `node-label` and `node-taint` lists. k3s splits each item at commas
/// (and labels at `=`), so every label is checked against Kubernetes'
/// grammar first; taints are checked whenever one is made.
fn labels_and_taints(
    labels: &BTreeMap<String, String>,
    taints: &[Taint],
) -> Result<String, String> {
    crate::inventory::kube::check_node_labels(labels)?;
    let mut out = String::new();
    if !labels.is_empty() {
        out.push_str("node-label:\n");
        for (k, v) in labels {
            out.push_str(&format!("  - {}\n", scalar(&format!("{k}={v}"))));
        }
    }
    if !taints.is_empty() {
        out.push_str("node-taint:\n");
        for t in taints {
            out.push_str(&format!("  - {}\n", scalar(&t.to_string())));
        }
    }
    Ok(out)
}

/// Replaces the `node-label` and `node-taint` lists of a config kiwi-infra
/// wrote, keeping every other line (the token among them) as it is.
pub fn with_labels_and_taints(
    config: &Secret,
    labels: &BTreeMap<String, String>,
    taints: &[Taint],
) -> Result<Secret, String> {
    let mut kept = String::new();
    let mut skipping = false;
    for line in config.expose().lines() {
        let top_level = !line.starts_with(' ') && !line.starts_with('-');
        if top_level {
            skipping = line.starts_with("node-label:") || line.starts_with("node-taint:");
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.push_str(&labels_and_taints(labels, taints)?);
    Ok(Secret::new(kept))
}

/// Checks that a token read from a server has the secure `K10<hash>::` form,
/// so joining nodes verify the cluster's CA.
pub fn check_secure_token(token: &Secret, path: &str) -> Result<(), String> {
    let t = token.expose().trim();
    let hash = t
        .strip_prefix("K10")
        .and_then(|rest| rest.split("::").next())
        .unwrap_or("");
    if hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()) && t.contains("::") {
        Ok(())
    } else {
        Err(format!(
            "{path} does not hold a secure token (K10<CA hash>::…); joining nodes could not \
             verify the cluster"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("kiwistack.io/node-class".to_string(), "vds".to_string()),
            ("kiwistack.io/pool".to_string(), "realtime".to_string()),
        ])
    }

    #[test]
    fn the_first_server_initialises_the_cluster_with_both_tokens() {
        let taints = [Taint::parse("workload.kiwistack.io/realtime=true:NoSchedule").unwrap()];
        let labels = labels();
        let text = render_config(&NodeConfig {
            node_name: "kiwi-acme-server-01",
            node_ip: "127.0.10.5",
            external_ip: None,
            role: Role::FirstServer {
                token: Secret::new("tok-canary".into()),
                agent_token: Secret::new("agent-canary".into()),
            },
            labels: &labels,
            taints: &taints,
            flannel_backend: Some(FlannelBackend::WireguardNative),
        })
        .unwrap();
        let t = text.expose();
        assert!(t.contains("cluster-init: true\n"));
        assert!(t.contains("flannel-backend: \"wireguard-native\"\n"), "{t}");
        assert!(t.contains("token: \"tok-canary\"\n"));
        assert!(t.contains("agent-token: \"agent-canary\"\n"));
        assert!(t.contains("tls-san:\n  - \"127.0.10.5\"\n"));
        assert!(t.contains("node-label:\n  - \"kiwistack.io/node-class=vds\"\n"));
        assert!(t.contains("node-taint:\n  - \"workload.kiwistack.io/realtime=true:NoSchedule\"\n"));
        assert!(!t.contains("server:"));
        assert_eq!(format!("{text:?}"), "***", "the config is a secret");
    }

    #[test]
    fn a_node_in_a_private_network_uses_its_private_address_as_node_ip() {
        let labels = labels();
        let text = render_config(&NodeConfig {
            node_name: "kiwi-acme-server-02",
            node_ip: "10.0.4.3",
            external_ip: Some("203.0.113.9"),
            role: Role::Server {
                server_url: "https://10.0.4.2:6443".into(),
                token: Secret::new("K10x::server:y".into()),
            },
            labels: &labels,
            taints: &[],
            flannel_backend: Some(FlannelBackend::WireguardNative),
        })
        .unwrap();
        let t = text.expose();
        assert!(t.contains("node-ip: \"10.0.4.3\"\n"), "{t}");
        assert!(t.contains("node-external-ip: \"203.0.113.9\"\n"), "{t}");
        assert!(t.contains("server: \"https://10.0.4.2:6443\"\n"), "{t}");
        assert!(
            t.contains("tls-san:\n  - \"10.0.4.3\"\n  - \"203.0.113.9\"\n"),
            "{t}"
        );
    }

    #[test]
    fn agents_point_at_a_server_and_carry_no_tls_san() {
        let labels = labels();
        let text = render_config(&NodeConfig {
            node_name: "kiwi-acme-realtime-01",
            node_ip: "127.0.10.9",
            external_ip: None,
            role: Role::Agent {
                server_url: "https://127.0.10.5:6443".into(),
                token: Secret::new("K10abc::node:x".into()),
            },
            labels: &labels,
            taints: &[],
            // Even when a caller passes one: it is a server flag.
            flannel_backend: Some(FlannelBackend::Vxlan),
        })
        .unwrap();
        let t = text.expose();
        assert!(t.contains("server: \"https://127.0.10.5:6443\"\n"));
        assert!(!t.contains("cluster-init") && !t.contains("tls-san") && !t.contains("node-taint"));
        assert!(!t.contains("flannel-backend"), "{t}");
    }

    #[test]
    fn relabelling_keeps_the_token_and_replaces_only_labels_and_taints() {
        let labels = labels();
        let before = render_config(&NodeConfig {
            node_name: "n",
            node_ip: "127.0.10.5",
            external_ip: None,
            role: Role::Server {
                server_url: "https://127.0.10.4:6443".into(),
                token: Secret::new("K10x::server:y".into()),
            },
            labels: &labels,
            taints: &[Taint::parse("a=b:NoSchedule").unwrap()],
            flannel_backend: None,
        })
        .unwrap();
        let mut new_labels = labels.clone();
        new_labels.insert("team".into(), "rtc".into());
        let after = with_labels_and_taints(&before, &new_labels, &[]).unwrap();
        let t = after.expose();
        assert!(t.contains("token: \"K10x::server:y\"\n"));
        assert!(t.contains("  - \"team=rtc\"\n"));
        assert!(!t.contains("node-taint"), "{t}");
        assert_eq!(t.matches("node-label:").count(), 1, "{t}");
        assert!(
            t.contains("tls-san:\n  - \"127.0.10.5\"\n"),
            "other lists stay: {t}"
        );
    }

    #[test]
    fn only_ca_pinned_tokens_are_accepted() {
        let good = format!("K10{}::server:secret\n", "ab".repeat(32));
        assert!(check_secure_token(&Secret::new(good), SERVER_TOKEN_PATH).is_ok());
        assert!(check_secure_token(&Secret::new("secret".into()), SERVER_TOKEN_PATH).is_err());
        assert!(
            check_secure_token(&Secret::new("K10zz::server:x".into()), SERVER_TOKEN_PATH).is_err()
        );
    }
}
