//! The user data each kind of node receives: valid for cloud-init (checked
//! with Debian's `cloud-init schema`), saying what docs/node-contract.md
//! promises, and reviewed as snapshots.

#![allow(clippy::unwrap_used)]

use kiwi_infra::firewall::{
    ClusterFirewall, FirewallShape, FlannelBackend, NodeRole, K3S_POD_NETWORK, K3S_SERVICE_NETWORK,
};
use std::path::Path;
use std::process::Command;

use kiwi_infra::cloudinit::{render, UserDataVars};
use kiwi_infra::plan::UserDataTemplate;
use kiwi_infra::ssh::HostKey;
use serde_norway::Value;

const OPERATOR_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPERATORKEYFORTESTS ops@kiwistack.io";

const KINDS: [(UserDataTemplate, &str); 3] = [
    (UserDataTemplate::K3sServer, "kiwi-acme-server-01"),
    (UserDataTemplate::K3sAgent, "kiwi-acme-agent-01"),
    (UserDataTemplate::KubeadmWorker, "kiwi-core-general-01"),
];

/// A fixed key per node, so snapshots are stable.
fn test_key(node: &str) -> HostKey {
    HostKey::from_seed([node.len() as u8; 32], node).unwrap()
}

/// The firewall of a node of `template`'s kind, as the planner makes it
/// from the example inventory's settings: two operator networks (one IPv6),
/// three members.
fn firewall(template: UserDataTemplate) -> FirewallShape {
    let role = match template {
        UserDataTemplate::K3sServer => NodeRole::K3sServer,
        UserDataTemplate::K3sAgent => NodeRole::K3sAgent,
        UserDataTemplate::KubeadmWorker => NodeRole::KubeadmWorker,
    };
    let cluster = ClusterFirewall {
        public: vec!["tcp/80".parse().unwrap(), "tcp/443".parse().unwrap()],
        cni: match template {
            UserDataTemplate::KubeadmWorker => {
                vec!["udp/4789".parse().unwrap(), "tcp/179".parse().unwrap()]
            }
            _ => FlannelBackend::WireguardNative.ports(),
        },
        cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
    };
    FirewallShape::for_node(
        role,
        &cluster,
        &[
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/48".parse().unwrap(),
        ],
        (1..=3)
            .map(|i| std::net::Ipv4Addr::new(192, 0, 2, i))
            .collect(),
    )
}

fn rendered(template: UserDataTemplate, node: &str) -> (String, HostKey) {
    let key = test_key(node);
    let text = render(
        template,
        &UserDataVars {
            hostname: node.to_string(),
            ssh_public_key: OPERATOR_KEY.to_string(),
            host_private_key: key.private_openssh().clone(),
            host_public_key: key.public_openssh().to_string(),
            kubernetes_version: Some("v1.31.4".into()),
            firewall: firewall(template),
        },
    )
    .unwrap();
    (text.expose().clone(), key)
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|item| match item {
            Value::String(s) => s.clone(),
            Value::Sequence(words) => words
                .iter()
                .map(|w| w.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            other => panic!("unexpected item {other:?}"),
        })
        .collect()
}

fn file<'a>(doc: &'a Value, path: &str) -> &'a Value {
    doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("no write_files entry for {path}"))
}

#[test]
fn every_kind_passes_cloud_init_schema() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let binary = ["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(binary) = binary else {
        assert!(
            !ci,
            "cloud-init is not installed, and CI must validate user data: install the \
             `cloud-init` package (.ci/run does)"
        );
        eprintln!(
            "\n!!!!! SKIPPED: cloud-init is not installed, so rendered user data was NOT \
             validated with `cloud-init schema`. `apt-get install cloud-init` to run this test. \
             !!!!!\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (template, node) in KINDS {
        let (text, _) = rendered(template, node);
        let path = dir.path().join(format!("{node}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let out = Command::new(binary)
            .args(["schema", "--config-file"])
            .arg(&path)
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.contains("Valid cloud-config"),
            "user data of {node} ({template:?}) is not valid cloud-config:\n{report}\n{text}"
        );
    }
}

#[test]
fn base_part_locks_the_node_down_and_pins_the_generated_host_key() {
    for (template, node) in KINDS {
        let (text, key) = rendered(template, node);
        let doc = yaml(&text);
        assert_eq!(doc["hostname"].as_str(), Some(node));
        let users = doc["users"].as_sequence().unwrap();
        assert_eq!(users.len(), 1, "only the admin user");
        assert_eq!(users[0]["name"].as_str(), Some("kiwi"));
        assert_eq!(users[0]["sudo"].as_str(), Some("ALL=(ALL) NOPASSWD:ALL"));
        assert_eq!(users[0]["lock_passwd"].as_bool(), Some(true));
        assert_eq!(
            strings(&users[0]["ssh_authorized_keys"]),
            vec![OPERATOR_KEY]
        );
        assert_eq!(doc["disable_root"].as_bool(), Some(true));
        assert_eq!(doc["ssh_pwauth"].as_bool(), Some(false));
        let sshd = file(&doc, "/etc/ssh/sshd_config.d/10-kiwi.conf")["content"]
            .as_str()
            .unwrap();
        assert!(sshd.contains("PermitRootLogin no") && sshd.contains("PasswordAuthentication no"));
        // The host key arrives whole: cloud-init writes exactly this file.
        assert_eq!(
            doc["ssh_keys"]["ed25519_private"].as_str(),
            Some(key.private_openssh().expose().as_str())
        );
        assert_eq!(
            doc["ssh_keys"]["ed25519_public"].as_str(),
            Some(key.public_openssh())
        );
        assert_eq!(doc["ssh_deletekeys"].as_bool(), Some(true));
        assert_eq!(doc["ntp"]["enabled"].as_bool(), Some(true));
        assert!(strings(&doc["packages"]).contains(&"unattended-upgrades".to_string()));
        let auto = file(&doc, "/etc/apt/apt.conf.d/20auto-upgrades")["content"]
            .as_str()
            .unwrap();
        assert!(auto.contains("APT::Periodic::Unattended-Upgrade \"1\";"));
    }
}

#[test]
fn k3s_nodes_get_the_install_script_and_nothing_starts_k3s() {
    for template in [UserDataTemplate::K3sServer, UserDataTemplate::K3sAgent] {
        let (text, _) = rendered(template, "kiwi-acme-server-01");
        let doc = yaml(&text);
        let runcmd = strings(&doc["runcmd"]);
        assert!(runcmd
            .iter()
            .any(|c| c.contains("-o /usr/local/bin/k3s-install.sh https://get.k3s.io")));
        assert!(runcmd.contains(&"chmod 0755 /usr/local/bin/k3s-install.sh".to_string()));
        assert!(
            !runcmd
                .iter()
                .any(|c| c.contains("sh /usr/local/bin/k3s-install.sh")),
            "k3s is started over SSH by kiwi-infra, not by cloud-init: {runcmd:?}"
        );
        assert!(!text.contains("kubelet"));
    }
}

#[test]
fn kubeadm_nodes_get_what_kubeadm_join_expects() {
    let (text, _) = rendered(UserDataTemplate::KubeadmWorker, "kiwi-core-general-01");
    let doc = yaml(&text);
    let containerd = file(&doc, "/etc/containerd/config.toml")["content"]
        .as_str()
        .unwrap();
    assert!(containerd.contains("SystemdCgroup = true"));
    let modules = file(&doc, "/etc/modules-load.d/kubernetes.conf")["content"]
        .as_str()
        .unwrap();
    assert_eq!(
        modules.split_whitespace().collect::<Vec<_>>(),
        ["overlay", "br_netfilter"]
    );
    let sysctl = file(&doc, "/etc/sysctl.d/90-kubernetes.conf")["content"]
        .as_str()
        .unwrap();
    for setting in [
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.bridge.bridge-nf-call-ip6tables = 1",
        "net.ipv4.ip_forward = 1",
    ] {
        assert!(sysctl.contains(setting), "{setting} missing:\n{sysctl}");
    }
    let source = file(&doc, "/etc/apt/sources.list.d/kubernetes.list")["content"]
        .as_str()
        .unwrap();
    assert!(
        source.contains("https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /"),
        "{source}"
    );
    let runcmd = strings(&doc["runcmd"]);
    let position = |needle: &str| {
        runcmd
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no runcmd with {needle:?}: {runcmd:#?}"))
    };
    assert!(position("swapoff -a") < position("apt-get install -y kubelet kubeadm kubectl"));
    position("/etc/fstab");
    position("modprobe br_netfilter");
    position("sysctl --system");
    assert!(
        position("apt-get install -y kubelet kubeadm kubectl")
            < position("apt-mark hold kubelet kubeadm kubectl")
    );
    assert!(strings(&doc["packages"]).contains(&"containerd".to_string()));
}

#[test]
fn rendered_user_data_snapshots() {
    for (template, node) in KINDS {
        let (text, key) = rendered(template, node);
        // Keep key material out of the repository even though it is a test key.
        let indented: String = key
            .private_openssh()
            .expose()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        assert!(text.contains(&indented));
        let shown = text.replace(&indented, "    <ed25519 private key of the test seed>\n");
        insta::assert_snapshot!(format!("{template:?}"), shown);
    }
}

#[test]
fn every_node_gets_the_firewall_of_its_step_and_the_nftables_service() {
    for (template, node) in KINDS {
        let (text, _) = rendered(template, node);
        let doc = yaml(&text);
        let conf = file(&doc, "/etc/nftables.conf");
        // Exactly the ruleset of the shape the step carries, written after
        // the package (whose example file flushes every table).
        assert_eq!(
            conf["content"].as_str(),
            Some(kiwi_infra::firewall::render(&firewall(template)).as_str()),
            "{node}"
        );
        assert_eq!(conf["defer"].as_bool(), Some(true), "{node}");
        assert!(strings(&doc["packages"]).contains(&"nftables".to_string()));
        assert!(strings(&doc["runcmd"]).contains(&"systemctl enable --now nftables".to_string()));
        assert!(
            !text.contains("flush ruleset"),
            "{node}: only our table is replaced"
        );
        // Found by an attacker: the unit's own ExecStop empties the whole
        // ruleset, k3s', kube-proxy's and flannel's tables with ours, on
        // `systemctl stop|restart nftables`. A drop-in stops with deleting
        // only our table, and systemd reads it before the unit starts.
        let drop_in = file(&doc, "/etc/systemd/system/nftables.service.d/kiwi.conf");
        let content = drop_in["content"].as_str().unwrap();
        let lines: Vec<&str> = content
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(
            lines,
            [
                "[Service]",
                "ExecStop=",
                "ExecStop=-/usr/sbin/nft delete table inet kiwi"
            ],
            "{node}"
        );
        assert_eq!(drop_in["permissions"].as_str(), Some("0644"), "{node}");
        let runcmd = strings(&doc["runcmd"]);
        let position = |c: &str| runcmd.iter().position(|r| r == c).unwrap();
        assert!(
            position("systemctl daemon-reload") < position("systemctl enable --now nftables"),
            "{node}"
        );
    }
}
