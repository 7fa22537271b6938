//! kubeadm on simulated nodes, driven as `docs/node-contract.md` says kiwi-infra drives the
//! Core cluster: `token create --print-join-command`, `init phase upload-certs`, a
//! `JoinConfiguration` (v1beta4) and `kubeadm join --config`, then kubectl with admin.conf.

#![allow(clippy::unwrap_used)]

mod standin_support;

use standin_support::{label, node, ready_status, taints, SimNode};

const JOIN_FILE: &str = "/etc/kubernetes/kiwi-join.yaml";

struct JoinCommand {
    endpoint: String,
    token: String,
    hash: String,
}

fn init(name: &str, ip: &str) -> SimNode {
    let cp = SimNode::new(name, ip);
    let out = cp
        .run(
            "kubeadm",
            &["init", "--control-plane-endpoint", &format!("{ip}:6443")],
        )
        .ok();
    assert!(
        out.stdout
            .contains("Your Kubernetes control-plane has initialized successfully!"),
        "{}",
        out.stdout
    );
    cp
}

fn join_command(cp: &SimNode) -> JoinCommand {
    let out = cp
        .run(
            "kubeadm",
            &["token", "create", "--ttl", "15m", "--print-join-command"],
        )
        .ok();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(&words[..2], &["kubeadm", "join"], "{}", out.stdout);
    assert_eq!(words[3], "--token");
    assert_eq!(words[5], "--discovery-token-ca-cert-hash");
    JoinCommand {
        endpoint: words[2].into(),
        token: words[4].into(),
        hash: words[6].into(),
    }
}

fn join_config(
    j: &JoinCommand,
    name: &str,
    ip: &str,
    labels: &str,
    taints: &str,
    control_plane: &str,
) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: {}\n    token: {}\n    caCertHashes:\n    - {}\nnodeRegistration:\n  name: {name}\n  kubeletExtraArgs:\n  - name: node-ip\n    value: {ip}\n  - name: node-labels\n    value: {labels}\n{taints}{control_plane}",
        j.endpoint, j.token, j.hash
    )
}

fn admin_nodes(cp: &SimNode) -> serde_json::Value {
    cp.run(
        "kubectl",
        &[
            "--kubeconfig",
            "/etc/kubernetes/admin.conf",
            "get",
            "nodes",
            "-o",
            "json",
        ],
    )
    .ok()
    .json()
}

fn join(n: &SimNode, config: &str) -> standin_support::Ran {
    n.write(JOIN_FILE, config);
    n.run("kubeadm", &["join", "--config", JOIN_FILE])
}

#[test]
fn a_worker_joins_with_its_labels_and_taints_through_a_join_configuration() {
    let cp = init("core-cp1", "127.0.20.111");
    let j = join_command(&cp);
    assert_eq!(j.endpoint, "127.0.20.111:6443");
    assert!(
        j.hash.starts_with("sha256:") && j.hash.len() == 71,
        "{}",
        j.hash
    );

    let w1 = SimNode::new("core-w1", "127.0.20.112");
    let taint_yaml = "  taints:\n  - key: dedicated\n    value: db\n    effect: NoSchedule\n";
    let out = join(
        &w1,
        &join_config(
            &j,
            "core-w1",
            "127.0.20.112",
            "kiwistack.io/pool=db,node.kubernetes.io/tier=data",
            taint_yaml,
            "",
        ),
    )
    .ok();
    assert!(
        out.stdout.contains("This node has joined the cluster"),
        "{}",
        out.stdout
    );

    let list = admin_nodes(&cp);
    assert_eq!(list["kind"], "List");
    let w = node(&list, "core-w1").expect("the worker registered");
    assert_eq!(ready_status(w), "True");
    assert_eq!(label(w, "kiwistack.io/pool"), Some("db"));
    assert_eq!(label(w, "node.kubernetes.io/tier"), Some("data"));
    assert_eq!(
        taints(w),
        vec![("dedicated".into(), "db".into(), "NoSchedule".into())]
    );
    assert_eq!(w["status"]["nodeInfo"]["kubeletVersion"], "v1.31.4");
    let c = node(&list, "core-cp1").unwrap();
    assert_eq!(label(c, "node-role.kubernetes.io/control-plane"), Some(""));
    assert_eq!(
        taints(c),
        vec![(
            "node-role.kubernetes.io/control-plane".into(),
            String::new(),
            "NoSchedule".into()
        )]
    );

    // Labels and taints change through the control plane, as for k3s.
    let k = |args: &[&str]| {
        cp.run(
            "kubectl",
            &[&["--kubeconfig", "/etc/kubernetes/admin.conf"], args].concat(),
        )
    };
    k(&[
        "label",
        "node",
        "core-w1",
        "kiwistack.io/pool=fast",
        "--overwrite",
    ])
    .ok();
    k(&["taint", "node", "core-w1", "dedicated=db:NoSchedule-"]).ok();
    let w = admin_nodes(&cp);
    let w = node(&w, "core-w1").unwrap();
    assert_eq!(label(w, "kiwistack.io/pool"), Some("fast"));
    assert!(taints(w).is_empty());

    // A second join of the same node is refused by preflight.
    let again = join(
        &w1,
        &join_config(&j, "core-w1", "127.0.20.112", "a=b", "", ""),
    );
    assert_eq!(again.code, 1);
    assert!(
        again
            .stderr
            .contains("/etc/kubernetes/kubelet.conf already exists"),
        "{}",
        again.stderr
    );
}

#[test]
fn joins_with_a_bad_token_or_ca_hash_are_refused_and_register_nothing() {
    let cp = init("tok-cp1", "127.0.20.121");
    let good = join_command(&cp);

    let w = SimNode::new("tok-w1", "127.0.20.122");
    let unknown = JoinCommand {
        token: "zzzzzz.0123456789abcdef".into(),
        ..clone(&good)
    };
    let out = join(
        &w,
        &join_config(&unknown, "tok-w1", "127.0.20.122", "a=b", "", ""),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "could not find a JWS signature in the cluster-info ConfigMap for token ID \"zzzzzz\""
        ),
        "{}",
        out.stderr
    );

    let id = good.token.split('.').next().unwrap();
    let wrong_secret = JoinCommand {
        token: format!("{id}.0000000000000000"),
        ..clone(&good)
    };
    let out = join(
        &w,
        &join_config(&wrong_secret, "tok-w1", "127.0.20.122", "a=b", "", ""),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("failed to verify JWS signature"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("0000000000000000"),
        "the secret is not echoed"
    );

    let wrong_hash = JoinCommand {
        hash: format!("sha256:{}", "1".repeat(64)),
        ..clone(&good)
    };
    let out = join(
        &w,
        &join_config(&wrong_hash, "tok-w1", "127.0.20.122", "a=b", "", ""),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("none of the public keys"),
        "{}",
        out.stderr
    );

    let map_args = join_config(&good, "tok-w1", "127.0.20.122", "a=b", "", "")
        .replace("  kubeletExtraArgs:\n  - name: node-ip\n    value: 127.0.20.122\n  - name: node-labels\n    value: a=b\n", "  kubeletExtraArgs:\n    node-labels: a=b\n");
    let out = join(&w, &map_args);
    assert_eq!(out.code, 1, "v1beta4 wants kubeletExtraArgs as a list");
    assert!(out.stderr.contains("[]v1beta4.Arg"), "{}", out.stderr);

    let role_label = join(
        &w,
        &join_config(
            &good,
            "tok-w1",
            "127.0.20.122",
            "node-role.kubernetes.io/worker=",
            "",
            "",
        ),
    );
    assert_eq!(role_label.code, 1, "the kubelet refuses node-role labels");
    let journal = w
        .run("journalctl", &["-u", "kubelet", "-n", "20", "--no-pager"])
        .ok()
        .stdout;
    assert!(
        journal.contains("unknown 'kubernetes.io' or 'k8s.io' labels"),
        "{journal}"
    );
    let _ = w.run("kubeadm", &["reset", "-f"]).ok();

    assert!(node(&admin_nodes(&cp), "tok-w1").is_none());
}

fn clone(j: &JoinCommand) -> JoinCommand {
    JoinCommand {
        endpoint: j.endpoint.clone(),
        token: j.token.clone(),
        hash: j.hash.clone(),
    }
}

#[test]
fn a_control_plane_join_needs_the_uploaded_certificate_key() {
    let cp = init("cpk-cp1", "127.0.20.131");
    let j = join_command(&cp);
    let cp2 = SimNode::new("cpk-cp2", "127.0.20.132");
    let no_key = join(
        &cp2,
        &join_config(
            &j,
            "cpk-cp2",
            "127.0.20.132",
            "",
            "",
            "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: 127.0.20.132\n",
        ),
    );
    assert_eq!(no_key.code, 1);
    assert!(
        no_key.stderr.contains(
            "One or more conditions for hosting a new control plane instance is not satisfied"
        ),
        "{}",
        no_key.stderr
    );

    let invented = "ab".repeat(32);
    let wrong_key = join(&cp2, &join_config(&j, "cpk-cp2", "127.0.20.132", "", "", &format!("controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: 127.0.20.132\n  certificateKey: {invented}\n")));
    assert_eq!(wrong_key.code, 1);
    assert!(
        wrong_key.stderr.contains("error downloading certs"),
        "{}",
        wrong_key.stderr
    );
    assert!(node(&admin_nodes(&cp), "cpk-cp2").is_none());

    let upload = cp
        .run(
            "kubeadm",
            &["init", "phase", "upload-certs", "--upload-certs"],
        )
        .ok();
    let key = upload.stdout.lines().last().unwrap().trim().to_string();
    assert_eq!(key.len(), 64, "{}", upload.stdout);
    let ok = join(&cp2, &join_config(&j, "cpk-cp2", "127.0.20.132", "", "", &format!("controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: 127.0.20.132\n  certificateKey: {key}\n"))).ok();
    assert!(
        ok.stdout
            .contains("a new control plane instance was created"),
        "{}",
        ok.stdout
    );

    // The new control-plane node answers kubectl with its own admin.conf.
    let list = admin_nodes(&cp2);
    let n = node(&list, "cpk-cp2").unwrap();
    assert_eq!(ready_status(n), "True");
    assert_eq!(label(n, "node-role.kubernetes.io/control-plane"), Some(""));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}
