//! kubeadm: reading the join command an existing control-plane node prints,
//! and writing the `JoinConfiguration` a new node joins with. Pure text work.

use std::collections::BTreeMap;

use crate::inventory::Taint;
use crate::secret::Secret;

/// Where the join configuration is uploaded (and removed after the join).
pub const JOIN_CONFIG_PATH: &str = "/etc/kubernetes/kiwi-join.yaml";

/// `kubeadm token create --ttl 15m --print-join-command`.
pub const CREATE_TOKEN: &str = "sudo kubeadm token create --ttl 15m --print-join-command";
/// `kubeadm init phase upload-certs --upload-certs` (control-plane joins).
pub const UPLOAD_CERTS: &str = "sudo kubeadm init phase upload-certs --upload-certs";

/// What the printed join command carries.
#[derive(Debug, Clone)]
pub struct JoinCredentials {
    /// Bootstrap token `<id>.<secret>`.
    pub token: Secret,
    /// `sha256:<hex>` of the cluster CA.
    pub ca_cert_hash: String,
}

/// Parses `kubeadm join <endpoint> --token T --discovery-token-ca-cert-hash H`.
/// Errors never quote the output: it holds the token.
pub fn parse_join_command(output: &Secret) -> Result<JoinCredentials, String> {
    let line = output
        .expose()
        .lines()
        .find(|l| l.trim_start().starts_with("kubeadm join"))
        .ok_or("no `kubeadm join` line in the output of `kubeadm token create`")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let value = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    let token = value("--token").ok_or("the join command has no --token")?;
    let hash = value("--discovery-token-ca-cert-hash")
        .ok_or("the join command has no --discovery-token-ca-cert-hash")?;
    let token_ok = token.split_once('.').is_some_and(|(id, secret)| {
        id.len() == 6
            && secret.len() == 16
            && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    });
    if !token_ok {
        return Err("the join command's token is not of the form <6 chars>.<16 chars>".into());
    }
    if !hash.starts_with("sha256:") {
        return Err("the join command's CA hash is not a sha256 pin".into());
    }
    Ok(JoinCredentials {
        token: Secret::new(token),
        ca_cert_hash: hash,
    })
}

/// The certificate key: the last non-empty line of `upload-certs`, 64 hex.
pub fn parse_certificate_key(output: &Secret) -> Result<Secret, String> {
    let key = output
        .expose()
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(Secret::new(key.to_string()))
    } else {
        Err("`kubeadm init phase upload-certs` did not end with a certificate key".into())
    }
}

/// What the joining node's configuration says.
#[derive(Debug, Clone)]
pub struct JoinSpec<'a> {
    /// Node name.
    pub node_name: &'a str,
    /// The node's address.
    pub node_ip: &'a str,
    /// `host:port` of the API server.
    pub api_endpoint: &'a str,
    /// Labels the kubelet registers with.
    pub labels: &'a BTreeMap<String, String>,
    /// Taints it registers with.
    pub taints: &'a [Taint],
    /// For a control-plane join: the certificate key.
    pub certificate_key: Option<&'a Secret>,
}

/// A YAML double-quoted scalar holding exactly `s` (see [`crate::yaml`]).
fn scalar(s: &str) -> String {
    crate::yaml::quoted(s)
}

/// Renders a `kubeadm.k8s.io/v1beta4` `JoinConfiguration`. Refused (with the
/// reason) when a label does not fit Kubernetes' grammar: the kubelet reads
/// `node-labels` as one comma-separated list.
pub fn render_join_configuration(
    spec: &JoinSpec<'_>,
    creds: &JoinCredentials,
) -> Result<Secret, String> {
    crate::inventory::kube::check_node_labels(spec.labels)?;
    let labels = spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut out = String::from(
        "# Written by kiwi-infra for one join; removed right after it.\n\
         apiVersion: kubeadm.k8s.io/v1beta4\n\
         kind: JoinConfiguration\n\
         discovery:\n  bootstrapToken:\n",
    );
    out.push_str(&format!(
        "    apiServerEndpoint: {}\n",
        scalar(spec.api_endpoint)
    ));
    out.push_str(&format!("    token: {}\n", scalar(creds.token.expose())));
    out.push_str(&format!(
        "    caCertHashes:\n      - {}\n",
        scalar(&creds.ca_cert_hash)
    ));
    out.push_str("nodeRegistration:\n");
    out.push_str(&format!("  name: {}\n", scalar(spec.node_name)));
    out.push_str("  kubeletExtraArgs:\n");
    out.push_str(&format!(
        "    - name: \"node-ip\"\n      value: {}\n",
        scalar(spec.node_ip)
    ));
    if !labels.is_empty() {
        out.push_str(&format!(
            "    - name: \"node-labels\"\n      value: {}\n",
            scalar(&labels)
        ));
    }
    if spec.taints.is_empty() {
        out.push_str("  taints: []\n");
    } else {
        out.push_str("  taints:\n");
        for t in spec.taints {
            out.push_str(&format!("    - key: {}\n", scalar(&t.key)));
            if let Some(v) = &t.value {
                out.push_str(&format!("      value: {}\n", scalar(v)));
            }
            out.push_str(&format!("      effect: {}\n", scalar(t.effect.as_str())));
        }
    }
    if let Some(key) = spec.certificate_key {
        out.push_str("controlPlane:\n  localAPIEndpoint:\n");
        out.push_str(&format!("    advertiseAddress: {}\n", scalar(spec.node_ip)));
        out.push_str(&format!("  certificateKey: {}\n", scalar(key.expose())));
    }
    Ok(Secret::new(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_join_command_yields_token_and_ca_pin() {
        let out = Secret::new(format!(
            "kubeadm join 127.0.30.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash {HASH} \n"
        ));
        let creds = parse_join_command(&out).unwrap();
        assert_eq!(creds.token.expose(), "abcdef.0123456789abcdef");
        assert_eq!(creds.ca_cert_hash, HASH);
    }

    #[test]
    fn a_join_command_without_a_ca_pin_is_refused_without_quoting_the_token() {
        let out = Secret::new("kubeadm join x:6443 --token abcdef.0123456789abcdef\n".into());
        let err = parse_join_command(&out).unwrap_err();
        assert!(
            err.contains("ca-cert-hash") && !err.contains("0123456789abcdef"),
            "{err}"
        );
    }

    #[test]
    fn certificate_key_is_the_last_line() {
        let key = "f".repeat(64);
        let out = Secret::new(format!("[upload-certs] Storing the certificates\n[upload-certs] Using certificate key:\n{key}\n"));
        assert_eq!(parse_certificate_key(&out).unwrap().expose(), &key);
        assert!(parse_certificate_key(&Secret::new("nope\n".into())).is_err());
    }

    #[test]
    fn the_join_configuration_carries_labels_taints_ip_and_control_plane_key() {
        let labels = BTreeMap::from([
            ("kiwistack.io/node-class".to_string(), "vds".to_string()),
            ("kiwistack.io/pool".to_string(), "realtime".to_string()),
        ]);
        let taints = [Taint::parse("workload.kiwistack.io/realtime=true:NoSchedule").unwrap()];
        let creds = JoinCredentials {
            token: Secret::new("abcdef.0123456789abcdef".into()),
            ca_cert_hash: HASH.into(),
        };
        let key = Secret::new("e".repeat(64));
        let text = render_join_configuration(
            &JoinSpec {
                node_name: "kiwi-core-realtime-01",
                node_ip: "127.0.10.7",
                api_endpoint: "127.0.30.1:6443",
                labels: &labels,
                taints: &taints,
                certificate_key: Some(&key),
            },
            &creds,
        )
        .unwrap();
        let t = text.expose();
        assert!(t.contains("kind: JoinConfiguration"));
        assert!(t.contains("apiServerEndpoint: \"127.0.30.1:6443\""));
        assert!(t.contains(&format!("      - \"{HASH}\"")));
        assert!(t.contains("value: \"kiwistack.io/node-class=vds,kiwistack.io/pool=realtime\""));
        assert!(t.contains("    - key: \"workload.kiwistack.io/realtime\"\n      value: \"true\"\n      effect: \"NoSchedule\""));
        assert!(t.contains("advertiseAddress: \"127.0.10.7\""));
        assert!(t.contains(&format!("certificateKey: \"{}\"", "e".repeat(64))));
    }
}
