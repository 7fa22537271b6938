//! k3s on simulated nodes, driven exactly as `docs/node-contract.md` says kiwi-infra drives it:
//! config.yaml, the install script through sudo and sh, the secure tokens, `k3s kubectl`,
//! journalctl. Each test uses its own 127.0.20.x addresses.

#![allow(clippy::unwrap_used)]

mod standin_support;

use standin_support::{eventually, label, node, ready_status, taints, SimNode};

const SERVER_TOKEN: &str = "kiwi-server-secret-0123456789";
const AGENT_TOKEN: &str = "kiwi-agent-secret-9876543210";

fn first_server(name: &str, ip: &str, labels: &[&str], node_taints: &[&str]) -> SimNode {
    let n = SimNode::new(name, ip);
    n.boot();
    n.write(
        "/etc/rancher/k3s/config.yaml",
        &format!(
            "node-name: {name}\nnode-ip: {ip}\nnode-external-ip: {ip}\nnode-label: {labels:?}\nnode-taint: {node_taints:?}\ncluster-init: true\ntoken: {SERVER_TOKEN}\nagent-token: {AGENT_TOKEN}\ntls-san: [{ip}]\n"
        ),
    );
    n.install_k3s("server").ok();
    n
}

fn joiner(
    name: &str,
    ip: &str,
    server_ip: &str,
    token: &str,
    labels: &[&str],
    node_taints: &[&str],
) -> SimNode {
    let n = SimNode::new(name, ip);
    n.boot();
    n.write(
        "/etc/rancher/k3s/config.yaml",
        &format!(
            "node-name: {name}\nnode-ip: {ip}\nnode-external-ip: {ip}\nnode-label: {labels:?}\nnode-taint: {node_taints:?}\nserver: https://{server_ip}:6443\ntoken: {token}\n"
        ),
    );
    n
}

fn tokens(first: &SimNode) -> (String, String) {
    (
        first
            .read("/var/lib/rancher/k3s/server/token")
            .trim()
            .to_string(),
        first
            .read("/var/lib/rancher/k3s/server/agent-token")
            .trim()
            .to_string(),
    )
}

#[test]
fn three_servers_and_an_agent_form_a_cluster_with_their_labels_and_taints() {
    let s1 = first_server(
        "mesh-s1",
        "127.0.20.11",
        &["kiwistack.io/pool=servers"],
        &[],
    );
    let (server_token, agent_token) = tokens(&s1);
    let hash = server_token
        .strip_prefix("K10")
        .unwrap()
        .split("::")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(hash.len(), 64, "token {server_token:?} carries a sha256");
    assert!(server_token.ends_with(&format!("::server:{SERVER_TOKEN}")));
    assert_eq!(agent_token, format!("K10{hash}::node:{AGENT_TOKEN}"));
    let kubeconfig = s1.read("/etc/rancher/k3s/k3s.yaml");
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:6443"),
        "{kubeconfig}"
    );

    let s2 = joiner(
        "mesh-s2",
        "127.0.20.12",
        "127.0.20.11",
        &server_token,
        &["kiwistack.io/pool=servers"],
        &[],
    );
    s2.install_k3s("server").ok();
    let s3 = joiner(
        "mesh-s3",
        "127.0.20.13",
        "127.0.20.11",
        &server_token,
        &["kiwistack.io/pool=servers"],
        &[],
    );
    s3.install_k3s("server").ok();
    let a1 = joiner(
        "mesh-a1",
        "127.0.20.14",
        "127.0.20.11",
        &agent_token,
        &["kiwistack.io/pool=edge", "node.kubernetes.io/tier=edge"],
        &["dedicated=edge:NoSchedule"],
    );
    a1.install_k3s("agent").ok();
    assert!(a1.exists("/usr/local/bin/k3s") && a1.exists("/etc/systemd/system/k3s-agent.service"));

    let list = s1.k3s_nodes();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List", "kubectl prints a List of Nodes");
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
    for name in ["mesh-s1", "mesh-s2", "mesh-s3", "mesh-a1"] {
        let n = node(&list, name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(n["kind"], "Node");
        assert_eq!(ready_status(n), "True", "{name} is Ready");
        assert_eq!(
            n["status"]["nodeInfo"]["kubeletVersion"],
            standin_support::K3S_VERSION
        );
        assert_eq!(label(n, "kubernetes.io/hostname"), Some(name));
    }
    for name in ["mesh-s1", "mesh-s2", "mesh-s3"] {
        let n = node(&list, name).unwrap();
        assert_eq!(label(n, "kiwistack.io/pool"), Some("servers"));
        assert_eq!(
            label(n, "node-role.kubernetes.io/control-plane"),
            Some("true")
        );
        assert_eq!(label(n, "node-role.kubernetes.io/etcd"), Some("true"));
        assert!(taints(n).is_empty());
    }
    let a = node(&list, "mesh-a1").unwrap();
    assert_eq!(label(a, "kiwistack.io/pool"), Some("edge"));
    assert_eq!(label(a, "node-role.kubernetes.io/control-plane"), None);
    assert_eq!(
        taints(a),
        vec![("dedicated".into(), "edge".into(), "NoSchedule".into())]
    );
    let addresses = a["status"]["addresses"].as_array().unwrap();
    assert!(addresses
        .iter()
        .any(|x| x["type"] == "InternalIP" && x["address"] == "127.0.20.14"));

    // Every server answers, not only the first; the table reads like kubectl's.
    assert_eq!(s3.k3s_nodes()["items"].as_array().unwrap().len(), 4);
    let table = s2.run("kubectl", &["get", "nodes"]).ok().stdout;
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("mesh-a1") && l.contains(" Ready ") && l.contains("<none>")),
        "{table}"
    );

    let journal = s1
        .run("journalctl", &["-u", "k3s", "-n", "50", "--no-pager"])
        .ok()
        .stdout;
    assert!(journal.contains("Starting k3s"), "{journal}");
    assert_eq!(
        s1.run("systemctl", &["is-active", "k3s"])
            .ok()
            .stdout
            .trim(),
        "active"
    );
}

#[test]
fn a_join_with_the_wrong_ca_hash_fails_and_the_node_never_appears() {
    let s1 = first_server("hash-s1", "127.0.20.21", &[], &[]);
    let (_, agent_token) = tokens(&s1);
    let forged = format!("K10{}::node:{AGENT_TOKEN}", "0".repeat(64));
    let a1 = joiner("hash-a1", "127.0.20.22", "127.0.20.21", &forged, &[], &[]);
    let out = a1.install_k3s("agent");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Job for k3s-agent.service failed"),
        "{}",
        out.stderr
    );
    let journal = a1
        .run("journalctl", &["-u", "k3s-agent", "-n", "50", "--no-pager"])
        .ok()
        .stdout;
    assert!(
        journal.contains("token CA hash does not match the Cluster CA certificate hash"),
        "{journal}"
    );
    assert!(
        !journal.contains(AGENT_TOKEN),
        "the token's password never reaches the log"
    );
    assert_eq!(
        a1.run("systemctl", &["is-active", "k3s-agent"])
            .stdout
            .trim(),
        "failed"
    );
    assert!(node(&s1.k3s_nodes(), "hash-a1").is_none());
    // The same node joins once it has the real token.
    a1.write(
        "/etc/rancher/k3s/config.yaml",
        &format!("node-name: hash-a1\nserver: https://127.0.20.21:6443\ntoken: {agent_token}\n"),
    );
    a1.install_k3s("agent").ok();
    assert!(node(&s1.k3s_nodes(), "hash-a1").is_some());
}

#[test]
fn a_wrong_token_password_is_refused_and_agent_tokens_do_not_make_servers() {
    let s1 = first_server("pw-s1", "127.0.20.31", &[], &[]);
    let (server_token, agent_token) = tokens(&s1);
    let hash_part = server_token.split("::").next().unwrap();
    let wrong = format!("{hash_part}::node:not-the-password");
    let a1 = joiner("pw-a1", "127.0.20.32", "127.0.20.31", &wrong, &[], &[]);
    assert_ne!(a1.install_k3s("agent").code, 0);
    let journal = a1
        .run("journalctl", &["-u", "k3s-agent", "--no-pager"])
        .ok()
        .stdout;
    assert!(journal.contains("401 Unauthorized"), "{journal}");

    let s2 = joiner(
        "pw-s2",
        "127.0.20.33",
        "127.0.20.31",
        &agent_token,
        &[],
        &[],
    );
    assert_ne!(
        s2.install_k3s("server").code,
        0,
        "the agent token must not join a server"
    );

    let list = s1.k3s_nodes();
    assert!(node(&list, "pw-a1").is_none() && node(&list, "pw-s2").is_none());
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[test]
fn a_killed_agent_becomes_not_ready_and_comes_back_when_started() {
    let s1 = first_server("rd-s1", "127.0.20.41", &[], &[]);
    let (_, agent_token) = tokens(&s1);
    let a1 = joiner(
        "rd-a1",
        "127.0.20.42",
        "127.0.20.41",
        &agent_token,
        &[],
        &[],
    );
    a1.install_k3s("agent").ok();
    assert_eq!(
        ready_status(node(&s1.k3s_nodes(), "rd-a1").unwrap()),
        "True"
    );

    a1.kill("k3s-agent");
    eventually("the killed agent turns NotReady", || {
        ready_status(node(&s1.k3s_nodes(), "rd-a1").unwrap()) != "True"
    });
    let n = s1.k3s_nodes();
    let a = node(&n, "rd-a1").unwrap();
    assert_eq!(ready_status(a), "Unknown");
    assert!(taints(a)
        .iter()
        .any(|t| t.0 == "node.kubernetes.io/unreachable"));
    assert_eq!(
        ready_status(node(&n, "rd-s1").unwrap()),
        "True",
        "the server keeps beating"
    );
    let table = s1.run("kubectl", &["get", "nodes"]).ok().stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("rd-a1") && l.contains("NotReady")),
        "{table}"
    );

    a1.run("systemctl", &["start", "k3s-agent"]).ok();
    eventually("the restarted agent is Ready again", || {
        ready_status(node(&s1.k3s_nodes(), "rd-a1").unwrap()) == "True"
    });
}

#[test]
fn labels_and_taints_persist_across_a_restart_of_the_first_server() {
    let s1 = first_server("lt-s1", "127.0.20.51", &["kiwistack.io/pool=servers"], &[]);
    let (_, agent_token) = tokens(&s1);
    let a1 = joiner(
        "lt-a1",
        "127.0.20.52",
        "127.0.20.51",
        &agent_token,
        &["kiwistack.io/pool=old"],
        &["gone=soon:NoSchedule"],
    );
    a1.install_k3s("agent").ok();

    let k = |args: &[&str]| s1.run("k3s", &[&["kubectl"], args].concat());
    let refused = k(&["label", "node", "lt-a1", "kiwistack.io/pool=new"]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr.trim(),
        "error: 'kiwistack.io/pool' already has a value (old), and --overwrite is false"
    );
    assert_eq!(
        k(&[
            "label",
            "node",
            "lt-a1",
            "kiwistack.io/pool=new",
            "--overwrite"
        ])
        .ok()
        .stdout
        .trim(),
        "node/lt-a1 labeled"
    );
    assert_eq!(
        k(&["label", "node", "lt-a1", "kiwistack.io/extra=1"])
            .ok()
            .stdout
            .trim(),
        "node/lt-a1 labeled"
    );
    assert_eq!(
        k(&["label", "node", "lt-a1", "kiwistack.io/extra-"])
            .ok()
            .stdout
            .trim(),
        "node/lt-a1 unlabeled"
    );
    assert_eq!(
        k(&[
            "taint",
            "node",
            "lt-a1",
            "dedicated=edge:NoSchedule",
            "--overwrite"
        ])
        .ok()
        .stdout
        .trim(),
        "node/lt-a1 tainted"
    );
    let dup = k(&["taint", "node", "lt-a1", "dedicated=other:NoSchedule"]);
    assert_eq!(dup.code, 1);
    assert!(
        dup.stderr.contains(
            "already has dedicated taint(s) with same effect(s) and --overwrite is false"
        ),
        "{}",
        dup.stderr
    );
    assert_eq!(
        k(&["taint", "node", "lt-a1", "gone=soon:NoSchedule-"])
            .ok()
            .stdout
            .trim(),
        "node/lt-a1 untainted"
    );
    let missing = k(&["taint", "node", "lt-a1", "gone=soon:NoSchedule-"]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "error: taint \"gone=soon:NoSchedule\" not found"
    );
    let ghost = k(&["label", "node", "nobody", "a=b"]);
    assert_eq!(
        ghost.stderr.trim(),
        "Error from server (NotFound): nodes \"nobody\" not found"
    );
    // On the first server, remove a label its own config.yaml still sets: k3s re-applies
    // config labels on start, which is why kiwi-infra rewrites config.yaml too.
    k(&["label", "node", "lt-s1", "kiwistack.io/pool-"]).ok();
    k(&["label", "node", "lt-s1", "kiwistack.io/by-hand=yes"]).ok();

    s1.run("systemctl", &["restart", "k3s"]).ok();
    eventually("both nodes are Ready after the restart", || {
        let list = s1.k3s_nodes();
        ["lt-s1", "lt-a1"]
            .iter()
            .all(|n| ready_status(node(&list, n).unwrap()) == "True")
    });
    let list = s1.k3s_nodes();
    let a = node(&list, "lt-a1").unwrap();
    assert_eq!(label(a, "kiwistack.io/pool"), Some("new"));
    assert_eq!(label(a, "kiwistack.io/extra"), None);
    assert_eq!(
        taints(a),
        vec![("dedicated".into(), "edge".into(), "NoSchedule".into())]
    );
    let s = node(&list, "lt-s1").unwrap();
    assert_eq!(label(s, "kiwistack.io/by-hand"), Some("yes"));
    assert_eq!(
        label(s, "kiwistack.io/pool"),
        Some("servers"),
        "config.yaml's label came back"
    );
}

#[test]
fn a_node_role_label_or_a_missing_token_fails_the_unit_like_k3s() {
    let n = SimNode::new("bad-s1", "127.0.20.61");
    n.boot();
    n.write(
        "/etc/rancher/k3s/config.yaml",
        "cluster-init: true\ntoken: t\nnode-label: [\"node-role.kubernetes.io/worker=true\"]\n",
    );
    let out = n.install_k3s("server");
    assert_ne!(out.code, 0);
    let journal = n
        .run("journalctl", &["-u", "k3s", "-n", "20", "--no-pager"])
        .ok()
        .stdout;
    assert!(
        journal.contains("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels"),
        "{journal}"
    );

    let agent = SimNode::new("bad-a1", "127.0.20.62");
    agent.boot();
    agent.write(
        "/etc/rancher/k3s/config.yaml",
        "server: https://127.0.20.61:6443\n",
    );
    assert_ne!(agent.install_k3s("agent").code, 0);
    let journal = agent
        .run("journalctl", &["-u", "k3s-agent", "--no-pager"])
        .ok()
        .stdout;
    assert!(journal.contains("--token is required"), "{journal}");
}

#[test]
fn a_hanging_first_boot_keeps_cloud_init_waiting_until_it_ends() {
    let n = std::sync::Arc::new(SimNode::new("hangs", "127.0.20.72"));
    n.boot();
    n.write("/etc/kiwi-sim/cloud-init-hangs", "");
    let now = n.run("cloud-init", &["status"]);
    assert_eq!((now.code, now.stdout.trim()), (0, "status: running"));

    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::sync::Arc::clone(&n);
    std::thread::spawn(move || {
        let _ = tx.send(waiter.run("cloud-init", &["status", "--wait"]));
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(3)).is_err(),
        "--wait returned while the first boot still runs"
    );
    std::fs::remove_file(n.path("/etc/kiwi-sim/cloud-init-hangs")).unwrap();
    let done = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("--wait ends once the boot does");
    assert_eq!(done.code, 0);
    assert!(
        done.stdout.trim().ends_with("status: done"),
        "{}",
        done.stdout
    );
}

#[test]
fn small_tools_answer_like_the_real_ones() {
    let n = SimNode::new("tools", "127.0.20.71");
    n.write("/etc/kiwi-sim/cloud-init-failed", "");
    let failed = n.run("cloud-init", &["status", "--wait"]);
    assert_eq!((failed.code, failed.stdout.trim()), (1, "status: error"));
    assert_ne!(n.run("cloud-init", &["frobnicate"]).code, 0);
    let echoed = n
        .run_with(
            "sudo",
            &["env", "A=B", "sh", "-c", "echo $A $KIWI_SIM_ROOT"],
            &[],
            None,
        )
        .ok();
    assert_eq!(echoed.stdout.trim(), format!("B {}", n.root.display()));
    let leaked = n
        .run_with(
            "sudo",
            &["sh", "-c", "echo \"[$INSTALL_K3S_VERSION]\""],
            &[("INSTALL_K3S_VERSION", "v1")],
            None,
        )
        .ok();
    assert_eq!(leaked.stdout.trim(), "[]", "sudo resets the environment");
    assert_eq!(
        n.run("journalctl", &["-u", "k3s", "-n", "5", "--no-pager"])
            .ok()
            .stdout
            .trim(),
        "-- No entries --"
    );
    assert_eq!(n.run("systemctl", &["start", "nope"]).code, 5);
    assert_eq!(n.run("systemctl", &["is-active", "k3s"]).code, 3);
    let bad_version = n.run_with(
        "k3s-install.sh",
        &[],
        &[("INSTALL_K3S_VERSION", "1.31.4")],
        None,
    );
    assert_ne!(bad_version.code, 0);
    assert!(bad_version.stderr.contains("Download failed"));
}

#[test]
fn booting_a_stopped_node_starts_its_enabled_units_again() {
    let s1 = first_server("boot-s1", "127.0.20.81", &[], &[]);
    let (_, agent_token) = tokens(&s1);
    let a1 = joiner(
        "boot-a1",
        "127.0.20.82",
        "127.0.20.81",
        &agent_token,
        &[],
        &[],
    );
    a1.install_k3s("agent").ok();
    s1.kill_daemons();
    a1.kill_daemons();
    assert_eq!(s1.run("systemctl", &["is-active", "k3s"]).code, 3);

    s1.run("kiwi-node-standin", &["boot"]).ok();
    a1.run("kiwi-node-standin", &["boot"]).ok();
    eventually("both nodes are Ready after booting", || {
        let list = s1.k3s_nodes();
        ["boot-s1", "boot-a1"]
            .iter()
            .all(|n| ready_status(node(&list, n).unwrap()) == "True")
    });
}
