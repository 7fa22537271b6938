//! Simulated nodes without namespaces, for the stand-in tests: each node is a directory used as
//! `KIWI_SIM_ROOT`, with its own `node.json` and a loopback IP in 127.0.20.0/24. Commands run
//! the built `kiwi-node-standin` with `argv[0]` set to the program's name, as the simulator's
//! symlinks do. Dropping a node kills its daemons and removes its directory.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kiwi-node-standin");
pub const K3S_VERSION: &str = "v1.31.4+k3s1";

pub struct SimNode {
    pub root: PathBuf,
    pub name: String,
    pub ip: String,
}

/// What a command printed and how it ended.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the command succeeded.
    pub fn ok(self) -> Ran {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl SimNode {
    pub fn new(name: &str, ip: &str) -> SimNode {
        let root = std::env::temp_dir().join(format!(
            "kiwi-standin-{}-{name}-{}",
            std::process::id(),
            ip.replace('.', "_")
        ));
        let _ = std::fs::remove_dir_all(&root);
        let node = SimNode {
            root,
            name: name.into(),
            ip: ip.into(),
        };
        node.write(
            "/etc/kiwi-sim/node.json",
            &format!(
                r#"{{"name": "{name}", "ip": "{ip}", "instance_id": null, "role_hint": null}}"#
            ),
        );
        node
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn write(&self, abs: &str, text: &str) {
        let p = self.path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }

    pub fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs))
            .unwrap_or_else(|e| panic!("{abs} on {}: {e}", self.name))
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// Runs `program args…` on the node, with extra environment and stdin.
    pub fn run_with(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Ran {
        let mut cmd = Command::new(BIN);
        cmd.arg0(program)
            .args(args)
            .env("KIWI_SIM_ROOT", &self.root)
            .env_remove("KUBECONFIG")
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        Ran::from(child.wait_with_output().unwrap())
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Ran {
        self.run_with(program, args, &[], None)
    }

    /// First boot as the simulator sets it up: the install script path is a symlink to the
    /// stand-in, and `cloud-init status --wait` turns it into the script, as cloud-init does.
    pub fn boot(&self) {
        let link = self.path("/usr/local/bin/k3s-install.sh");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        let out = self.run("cloud-init", &["status", "--wait"]).ok();
        assert_eq!(out.stdout.trim(), "status: done");
    }

    /// What kiwi-infra runs to install k3s, through sudo and sh as on a real node.
    pub fn install_k3s(&self, exec: &str) -> Ran {
        let script = self.path("/usr/local/bin/k3s-install.sh");
        let version = format!("INSTALL_K3S_VERSION={K3S_VERSION}");
        let exec = format!("INSTALL_K3S_EXEC={exec}");
        self.run(
            "sudo",
            &["env", &version, &exec, "sh", script.to_str().unwrap()],
        )
    }

    /// `k3s kubectl get nodes -o json` on this server.
    pub fn k3s_nodes(&self) -> Value {
        self.run("k3s", &["kubectl", "get", "nodes", "-o", "json"])
            .ok()
            .json()
    }

    pub fn pid(&self, unit: &str) -> Option<u32> {
        std::fs::read_to_string(self.path(&format!("/run/kiwi-sim/pids/{unit}.pid")))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    pub fn kill(&self, unit: &str) {
        if let Some(pid) = self.pid(unit) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let _ = std::fs::remove_file(self.path(&format!("/run/kiwi-sim/pids/{unit}.pid")));
        }
    }

    pub fn kill_daemons(&self) {
        for unit in ["k3s", "k3s-agent", "kubelet"] {
            self.kill(unit);
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.kill_daemons();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Polls `cond` until it holds; panics after a generous deadline (a hang guard, not a
/// timing assertion).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node of that name in a `kubectl get nodes -o json` answer.
pub fn node<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["metadata"]["name"] == name)
}

/// The status of the node's `Ready` condition.
pub fn ready_status(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap()
}

/// `(key, value, effect)` of the node's taints.
pub fn taints(node: &Value) -> Vec<(String, String, String)> {
    node["spec"]["taints"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap().to_string(),
                        t["value"].as_str().unwrap_or("").to_string(),
                        t["effect"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node["metadata"]["labels"][key].as_str()
}
