//! Simulated nodes as the tool meets them: an instance ordered from the Contabo mock becomes a
//! node at its loopback IP, reachable with the system `ssh` client, presenting the host key
//! preset in its user data, letting in only the users it names, with a filesystem of its own.
//!
//! These tests need root (mount namespaces, port 22); they fail with the preflight message
//! otherwise. Each test uses its own address range so they can run in parallel.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kiwi_mocks::contabo::{self, IpRange, MockConfig, MockHandle};
use kiwi_mocks::nodes::{
    self, HostFacts, NodeInfo, NodeSimulator, NodesConfig, NodesError, StaticNode,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("kiwi-nodes-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An ed25519 key pair made by `ssh-keygen`: (private key file, public key line).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_owned())
}

/// `ssh-ed25519 AAAA…` without the comment.
fn key_only(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stand-in binary placeholder that says which program it was called as.
fn placeholder_standin(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("standin.sh");
    std::fs::write(&path, "#!/bin/sh\necho \"standin $(basename \"$0\") $*\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn require_privileges(standin: &Path) {
    let facts = HostFacts::detect(standin);
    if let Err(e) = nodes::preflight::check(&facts, 22, standin) {
        panic!("simulated node tests must run as root: {e}");
    }
}

struct Env {
    scratch: Scratch,
    mock: MockHandle,
    sim: NodeSimulator,
    api: Api,
    client_key: PathBuf,
    client_pub: String,
}

async fn env(range: &str) -> Env {
    let scratch = Scratch::new();
    let standin = placeholder_standin(&scratch.0);
    require_privileges(&standin);
    let mock = contabo::spawn(MockConfig {
        provisioning_delay: Duration::from_millis(5),
        installing_delay: Duration::from_millis(5),
        tick: Duration::from_millis(5),
        ip_range: range.parse::<IpRange>().unwrap(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let mut sim = NodeSimulator::start(NodesConfig::new(scratch.0.join("nodes"), &standin))
        .await
        .unwrap();
    sim.attach(&mock);
    let api = Api::login(&mock).await;
    let (client_key, client_pub) = keygen(&scratch.0, "operator");
    Env {
        scratch,
        mock,
        sim,
        api,
        client_key,
        client_pub,
    }
}

impl Env {
    /// Cloud-config as kiwi-infra renders it: hostname, the admin user `kiwi` with the
    /// operator's key, a preset host key, a file, and commands a simulated node does not run.
    fn user_data(&self, hostname: &str, host_key: &Path) -> String {
        let private = std::fs::read_to_string(host_key).unwrap();
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let indented: String = private.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "#cloud-config\nhostname: {hostname}\nusers:\n  - name: kiwi\n    \
             ssh_authorized_keys:\n      - {}\ndisable_root: true\nssh_keys:\n  \
             ed25519_private: |\n{indented}  ed25519_public: {}\nwrite_files:\n  - path: \
             /etc/kiwi-test/greeting\n    permissions: \"0640\"\n    content: hello from \
             {hostname}\nruncmd:\n  - [touch, /etc/runcmd-ran]\n",
            self.client_pub,
            public.trim()
        )
    }

    async fn order(&self, name: &str, user_data: &str) -> i64 {
        let (status, secret) = self
            .api
            .call(
                Method::POST,
                "/v1/secrets",
                json!({"name": format!("op-{name}"), "type": "ssh", "value": self.client_pub}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{secret}");
        let secret_id = secret["data"][0]["secretId"].as_i64().unwrap();
        let (status, resp) = self
            .api
            .call(
                Method::POST,
                "/v1/compute/instances",
                json!({"period": 1, "productId": "V94", "region": "EU", "displayName": name,
                       "sshKeys": [secret_id], "userData": user_data, "defaultUser": "root"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
        resp["data"][0]["instanceId"].as_i64().unwrap()
    }

    /// The node of `instance_id` once it runs and `pred` holds. Bounded.
    async fn node(&self, instance_id: i64, pred: impl Fn(&NodeInfo) -> bool) -> NodeInfo {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let nodes = self.sim.nodes().await;
                if let Some(n) = nodes
                    .into_iter()
                    .find(|n| n.instance_id == Some(instance_id) && n.running && pred(n))
                {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the node did not come up within 20 s")
    }

    fn known_hosts(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.scratch.0.join(format!("known_hosts-{name}"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    async fn ssh(
        &self,
        known_hosts: &Path,
        target: &str,
        command: &str,
        stdin: Option<&[u8]>,
        extra: &[String],
    ) -> Output {
        ssh_with(known_hosts, &self.client_key, target, command, stdin, extra).await
    }

    async fn finish(self) {
        self.sim.shutdown().await;
        self.mock.shutdown().await;
    }
}

async fn ssh_with(
    known_hosts: &Path,
    key: &Path,
    target: &str,
    command: &str,
    stdin: Option<&[u8]>,
    extra: &[String],
) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .arg("-i")
        .arg(key)
        .args(extra)
        .arg(target)
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ssh did not finish within 30 s")
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Api {
    base: String,
    http: Client,
    token: String,
}

impl Api {
    async fn login(mock: &MockHandle) -> Self {
        let http = Client::new();
        let c = mock.credentials();
        let resp = http
            .post(mock.token_url())
            .form(&[
                ("grant_type", "password"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
                ("username", c.username.as_str()),
                ("password", c.password.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        Self {
            base: mock.base_url(),
            http,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-request-id", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_instance_is_a_node_with_its_preset_host_key_users_and_files() {
    let env = env("127.0.11.2-127.0.11.9").await;
    let (host_key, host_pub) = keygen(&env.scratch.0, "host-mesh-1");
    let id = env
        .order("mesh-1", &env.user_data("mesh-1", &host_key))
        .await;
    let node = env.node(id, |_| true).await;
    assert_eq!(node.name, "mesh-1");
    assert_eq!(node.host_public_key, key_only(&host_pub));
    let ip = node.ip;
    let known = env.known_hosts("mesh-1", &[format!("{ip} {}", key_only(&host_pub))]);
    let marker = format!("/tmp/kiwi-sim-test-{}", uuid::Uuid::new_v4());

    let out = env
        .ssh(
            &known,
            &format!("kiwi@{ip}"),
            &format!(
                "hostname; echo \"$HOSTNAME $USER $HOME $(pwd)\"; echo hi > {marker}; cat {marker}; \
                 cat /etc/kiwi-sim/node.json; cat /etc/kiwi-test/greeting; echo; \
                 stat -c %a /etc/kiwi-test/greeting; test -e /etc/runcmd-ran || echo no-runcmd"
            ),
            None,
            &[],
        )
        .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("mesh-1"));
    assert_eq!(lines.next(), Some("mesh-1 kiwi /home/kiwi /home/kiwi"));
    assert_eq!(lines.next(), Some("hi"));
    let json_end = stdout.find("}\n").unwrap() + 1;
    let json_start = stdout.find('{').unwrap();
    let node_json: Value = serde_json::from_str(&stdout[json_start..json_end]).unwrap();
    assert_eq!(
        node_json,
        json!({"name": "mesh-1", "ip": ip.to_string(), "instance_id": id, "role_hint": null})
    );
    let rest: Vec<&str> = stdout[json_end..]
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(rest, vec!["hello from mesh-1", "640", "no-runcmd"]);
    assert!(
        !Path::new(&marker).exists(),
        "a node's /tmp write reached the host"
    );

    // Uploads go through stdin (`install -m 0600 /dev/stdin PATH`); exit codes and stderr
    // come back as they are.
    let config = b"node-name: mesh-1\nnode-ip: 127.0.11.2\n";
    let out = env
        .ssh(
            &known,
            &format!("kiwi@{ip}"),
            "sudo true; install -D -m 0600 /dev/stdin /etc/rancher/k3s/config.yaml && \
             stat -c %a /etc/rancher/k3s/config.yaml && cat /etc/rancher/k3s/config.yaml && \
             echo oops >&2 && exit 7",
            Some(config),
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("standin sudo true\n600\n{}", text(config))
    );
    assert!(text(&out.stderr).contains("oops"));

    // The stand-ins answer to the contract's names, the install script through `sh`.
    let out = env
        .ssh(
            &known,
            &format!("kiwi@{ip}"),
            "kubectl version; kubeadm init; systemctl is-active k3s; journalctl -u k3s; \
             cloud-init status --wait; env INSTALL_K3S_EXEC=server sh /usr/local/bin/k3s-install.sh",
            None,
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "standin kubectl version\nstandin kubeadm init\nstandin systemctl is-active k3s\n\
         standin journalctl -u k3s\nstandin cloud-init status --wait\nstandin k3s-install.sh \n"
    );

    // Only the users the user data names, by their keys: not root (disabled), not another key.
    let out = env
        .ssh(&known, &format!("root@{ip}"), "true", None, &[])
        .await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let (stranger, _) = keygen(&env.scratch.0, "stranger");
    let out = ssh_with(&known, &stranger, &format!("kiwi@{ip}"), "true", None, &[]).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_multiplexed_over_one_control_master_connection_all_complete() {
    let env = env("127.0.12.2-127.0.12.9").await;
    let (host_key, host_pub) = keygen(&env.scratch.0, "host-mux");
    let id = env.order("mux-1", &env.user_data("mux-1", &host_key)).await;
    let ip = env.node(id, |_| true).await.ip;
    let known = env.known_hosts("mux", &[format!("{ip} {}", key_only(&host_pub))]);
    let control = env.scratch.0.join("cm");
    let mux = vec![
        "-o".to_owned(),
        "ControlMaster=auto".to_owned(),
        "-o".to_owned(),
        format!("ControlPath={}", control.display()),
        "-o".to_owned(),
        "ControlPersist=60".to_owned(),
        "-o".to_owned(),
        "SendEnv=LANG".to_owned(),
    ];
    let target = format!("kiwi@{ip}");
    let first = env.ssh(&known, &target, "echo first", None, &mux).await;
    assert_eq!(text(&first.stdout), "first\n", "{}", text(&first.stderr));
    assert!(control.exists(), "no control master socket");
    let runs = (0..6).map(|i| {
        let cmd = format!("sleep 0.{i}; cat; echo done-{i}");
        let input = format!("input-{i}\n");
        let (known, target, mux) = (known.clone(), target.clone(), mux.clone());
        let key = env.client_key.clone();
        async move { ssh_with(&known, &key, &target, &cmd, Some(input.as_bytes()), &mux).await }
    });
    let outs = futures_join_all(runs).await;
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("input-{i}\ndone-{i}\n"));
    }
    let mut stop = vec!["-O".to_owned(), "exit".to_owned()];
    stop.extend(mux.iter().cloned());
    let out = env.ssh(&known, &target, "", None, &stop).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    env.finish().await;
}

/// `futures::future::join_all` without the dependency: each future on its own task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<Output>
where
    F: std::future::Future<Output = Output> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await.unwrap());
    }
    outs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_makes_ssh_refuse_and_nothing_runs() {
    let env = env("127.0.13.2-127.0.13.9").await;
    let (host_key, _) = keygen(&env.scratch.0, "host-real");
    let (_, impostor_pub) = keygen(&env.scratch.0, "host-impostor");
    let id = env
        .order("fleet-1", &env.user_data("fleet-1", &host_key))
        .await;
    let ip = env.node(id, |_| true).await.ip;
    let known = env.known_hosts("wrong", &[format!("{ip} {}", key_only(&impostor_pub))]);
    let out = env
        .ssh(
            &known,
            &format!("kiwi@{ip}"),
            "touch /etc/should-not-exist",
            None,
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr.contains("Host key verification failed"),
        "{stderr}"
    );
    let check = env
        .sim
        .exec(
            "fleet-1",
            "test -e /etc/should-not-exist && echo ran || echo not-run",
        )
        .await
        .unwrap();
    assert_eq!(check.stdout, "not-run\n");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_writing_the_same_path_each_see_their_own_and_the_host_sees_neither() {
    let env = env("127.0.14.2-127.0.14.9").await;
    let host_before = std::fs::read("/etc/rancher/k3s/config.yaml").ok();
    let mut targets = Vec::new();
    for name in ["pair-a", "pair-b"] {
        let (host_key, host_pub) = keygen(&env.scratch.0, &format!("host-{name}"));
        let id = env.order(name, &env.user_data(name, &host_key)).await;
        let ip = env.node(id, |_| true).await.ip;
        let known = env.known_hosts(name, &[format!("{ip} {}", key_only(&host_pub))]);
        targets.push((name, ip, known));
    }
    for (name, ip, known) in &targets {
        let out = env
            .ssh(
                known,
                &format!("kiwi@{ip}"),
                "mkdir -p /etc/rancher/k3s && cat > /etc/rancher/k3s/config.yaml",
                Some(format!("node-name: {name}\n").as_bytes()),
                &[],
            )
            .await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for (name, ip, known) in &targets {
        let out = env
            .ssh(
                known,
                &format!("kiwi@{ip}"),
                "cat /etc/rancher/k3s/config.yaml",
                None,
                &[],
            )
            .await;
        assert_eq!(text(&out.stdout), format!("node-name: {name}\n"));
    }
    assert_eq!(
        std::fs::read("/etc/rancher/k3s/config.yaml").ok(),
        host_before,
        "a node's write reached the host's /etc"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinstall_with_a_new_host_key_presents_it_on_a_fresh_disk() {
    let env = env("127.0.15.2-127.0.15.9").await;
    let (old_key, old_pub) = keygen(&env.scratch.0, "host-old");
    let id = env
        .order("core-w-1", &env.user_data("core-w-1", &old_key))
        .await;
    let ip = env.node(id, |_| true).await.ip;
    let old_known = env.known_hosts("old", &[format!("{ip} {}", key_only(&old_pub))]);
    let out = env
        .ssh(
            &old_known,
            &format!("kiwi@{ip}"),
            "echo before > /root/left-behind",
            None,
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (new_key, new_pub) = keygen(&env.scratch.0, "host-new");
    let (status, resp) = env
        .api
        .call(
            Method::PUT,
            &format!("/v1/compute/instances/{id}"),
            json!({"imageId": "d64d5c6c-9dda-4e38-8174-0ee282474d8a", "defaultUser": "root",
                   "userData": env.user_data("core-w-1", &new_key)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let new_line = key_only(&new_pub);
    env.node(id, |n| n.host_public_key == new_line).await;

    let out = env
        .ssh(&old_known, &format!("kiwi@{ip}"), "true", None, &[])
        .await;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&out.stderr)
    );
    let new_known = env.known_hosts("new", &[format!("{ip} {new_line}")]);
    let out = env
        .ssh(
            &new_known,
            &format!("kiwi@{ip}"),
            "test -e /root/left-behind && echo kept || echo wiped",
            None,
            &[],
        )
        .await;
    assert_eq!(text(&out.stdout), "wiped\n", "{}", text(&out.stderr));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_node_runs_daemons_that_can_be_killed_and_stops_cleanly() {
    let scratch = Scratch::new();
    let standin = placeholder_standin(&scratch.0);
    require_privileges(&standin);
    let sim = NodeSimulator::start(NodesConfig::new(scratch.0.join("nodes"), &standin))
        .await
        .unwrap();
    let (client_key, client_pub) = keygen(&scratch.0, "operator");
    let ip = Ipv4Addr::new(127, 0, 16, 2);
    let host_pub = sim
        .add_static_node(StaticNode {
            name: "core-cp-1".into(),
            ip,
            user: "kiwi".into(),
            authorized_keys: vec![client_pub],
            host_key: None,
        })
        .await
        .unwrap();
    assert!(host_pub.starts_with("ssh-ed25519 AAAA"), "{host_pub}");
    let known = scratch.0.join("known_hosts");
    std::fs::write(&known, format!("{ip} {host_pub}\n")).unwrap();
    let out = ssh_with(
        &known,
        &client_key,
        &format!("kiwi@{ip}"),
        "hostname; setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > /run/kiwi-sim/pids/k3s.pid; echo started",
        None,
        &[],
    )
    .await;
    assert_eq!(
        text(&out.stdout),
        "core-cp-1\nstarted\n",
        "{}",
        text(&out.stderr)
    );

    let err = sim
        .kill_process("core-cp-1", "kubelet")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, NodesError::NoSuchDaemon { known, .. } if known == &vec!["k3s".to_owned()]),
        "{err}"
    );
    let pid = sim.kill_process("core-cp-1", "k3s").await.unwrap();
    assert!(!nodes::fs::alive(pid), "the killed daemon is still alive");

    // A daemon left running when the node stops dies with it.
    let daemon = sim
        .exec(
            "core-cp-1",
            "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
        )
        .await
        .unwrap();
    let daemon_pid: u32 = daemon.stdout.trim().parse().unwrap();
    assert!(nodes::fs::alive(daemon_pid), "test daemon not started");
    sim.stop_node("core-cp-1").await.unwrap();
    let nodes = sim.nodes().await;
    assert_eq!(nodes.len(), 1);
    assert!(!nodes[0].running);
    assert!(!nodes::fs::alive(daemon_pid), "a daemon outlived its node");
    let out = ssh_with(
        &known,
        &client_key,
        &format!("kiwi@{ip}"),
        "true",
        None,
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(255),
        "a stopped node still answers SSH"
    );
    assert!(matches!(
        sim.exec("core-cp-1", "true").await,
        Err(NodesError::NotRunning { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_requirement_is_named_with_how_to_get_it() {
    let scratch = Scratch::new();
    let standin = placeholder_standin(&scratch.0);
    let mut config = NodesConfig::new(scratch.0.join("nodes"), &standin);
    config.host_facts = Some(HostFacts {
        euid: 1000,
        cap_sys_admin: false,
        cap_net_bind_service: false,
        missing_programs: vec!["nsenter".into()],
        overlayfs: true,
        standin_present: true,
    });
    let err = NodeSimulator::start(config).await.err().unwrap();
    assert!(matches!(err, NodesError::Preflight(_)));
    let msg = err.to_string();
    assert!(msg.contains("run it as root"), "{msg}");
    assert!(msg.contains("port 22"), "{msg}");
    assert!(
        msg.contains("`nsenter`") && msg.contains("apt-get install util-linux"),
        "{msg}"
    );
    assert!(
        !msg.contains("overlay filesystem"),
        "overlayfs is there: {msg}"
    );
    assert!(
        !scratch.0.join("nodes").exists(),
        "preflight failed but state was created"
    );
}
