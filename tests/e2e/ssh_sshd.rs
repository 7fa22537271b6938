//! The SSH transport against a real OpenSSH server: Debian's `sshd`, started
//! by the test on 127.0.0.1 with a host key kiwi-infra generated, as a node
//! would run it. Proves the client, host-key pinning by node name, the
//! mismatch and unknown-key errors (and that nothing runs then), uploads
//! with a mode, stdin, time limits and the first-boot wait.

#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kiwi_infra::secret::Secret;
use kiwi_infra::ssh::{
    HostKey, KnownHosts, OpenSshExec, RemoteCommand, RemoteExec, SshError, SshSettings,
};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const NODE: &str = "kiwi-test-server-01";
const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd and what a client needs to reach it.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    host_key: HostKey,
    _child: Child,
}

impl Server {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Settings of a client that logs in with the test's key and checks host
    /// keys against `known_hosts` in the test directory.
    fn settings(&self) -> SshSettings {
        SshSettings {
            user: current_user(),
            port: Some(self.port),
            identity_file: Some(self.path("client_ed25519")),
            control_dir: Some(self.path("ctl")),
            // Stands in for the operator's ~/.ssh/config (empty unless a
            // test writes it).
            include_configs: vec![self.path("user_config").display().to_string()],
            connect_timeout: Duration::from_secs(10),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            upload_timeout: Duration::from_secs(20),
            ..SshSettings::production(self.path("known_hosts"))
        }
    }

    fn known_hosts(&self) -> KnownHosts {
        KnownHosts::new(self.path("known_hosts"))
    }

    fn exec(&self) -> OpenSshExec {
        OpenSshExec::new(NODE, "127.0.0.1", self.settings()).unwrap()
    }
}

fn current_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Starts sshd, or says why it cannot (`None`: skip, never in CI).
async fn start_sshd() -> Option<Server> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let missing = [SSHD, "/usr/bin/ssh"]
        .into_iter()
        .find(|p| !Path::new(p).exists());
    if let Some(missing) = missing {
        assert!(
            !ci,
            "{missing} is missing; CI must test the SSH transport against a real sshd \
             (.ci/run installs openssh-server and openssh-client)"
        );
        eprintln!(
            "\n!!!!! SKIPPED: {missing} is not installed, so the SSH transport was NOT tested \
             against a real sshd. `apt-get install openssh-server openssh-client sudo`. !!!!!\n"
        );
        return None;
    }
    // sshd refuses to start as root without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = tempfile::Builder::new()
        .prefix("kiwi-sshd-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::create_dir(dir.path().join("ctl")).unwrap();
    let host_key = HostKey::generate(NODE).unwrap();
    write_private(
        &dir.path().join("host_ed25519"),
        host_key.private_openssh().expose(),
    );
    let client = HostKey::generate("client").unwrap();
    write_private(
        &dir.path().join("client_ed25519"),
        client.private_openssh().expose(),
    );
    std::fs::write(
        dir.path().join("authorized_keys"),
        format!("{}\n", client.public_openssh()),
    )
    .unwrap();
    // Stand-ins for the node's programs, found first on the session's PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, script) in [
        (
            "cloud-init",
            "#!/bin/sh\n[ \"$*\" = \"status --wait\" ] || exit 2\necho .\necho 'status: done'\n",
        ),
        ("hostname", &format!("#!/bin/sh\necho {NODE}\n") as &str),
    ] {
        std::fs::write(bin.join(name), script).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let d = dir.path().display();
    let config = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host_ed25519\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         PidFile none\n\
         SetEnv PATH={d}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    std::fs::write(dir.path().join("sshd_config"), config).unwrap();
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.path().join("sshd_config"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for it to listen (a readiness loop, not a timing assertion).
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Server {
                dir,
                port,
                host_key,
                _child: child,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sshd did not start listening on 127.0.0.1:{port}");
}

fn command(text: &str) -> RemoteCommand {
    RemoteCommand {
        command: text.to_string(),
        stdin: None,
        timeout: Duration::from_secs(20),
    }
}

#[tokio::test]
async fn pinned_key_runs_commands_uploads_and_waits_for_first_boot() {
    let Some(server) = start_sshd().await else {
        return;
    };
    server
        .known_hosts()
        .record(NODE, server.host_key.public_openssh())
        .unwrap();
    let exec = server.exec();

    // Status, stdout and stderr come back separately.
    let out = exec
        .run(&command("echo hello; echo oops >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "oops\n");

    // stdin reaches the command, not its command line.
    let out = exec
        .run(&RemoteCommand {
            command: "cat".into(),
            stdin: Some(Secret::new(b"line one\nline two\n".to_vec())),
            timeout: Duration::from_secs(20),
        })
        .await
        .unwrap();
    assert_eq!(out.stdout, "line one\nline two\n");

    // Uploads create parent directories and set the mode.
    let target = server.path("uploads/etc/kiwi/join.yaml");
    exec.upload(
        target.to_str().unwrap(),
        &Secret::new(b"token: not-in-argv\n".to_vec()),
        0o600,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"token: not-in-argv\n");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");

    // A command over its time limit is reported as such.
    let err = exec
        .run(&RemoteCommand {
            command: "sleep 30".into(),
            stdin: None,
            timeout: Duration::from_millis(500),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SshError::Timeout { command, .. } if command == "sleep 30"),
        "{err}"
    );

    // A failing command keeps command, status and (redacted) stderr.
    let err = exec
        .run_checked(&RemoteCommand {
            command: "cat >&2; exit 4".into(),
            stdin: Some(Secret::new(b"token: K10secretsecret::server:pw\n".to_vec())),
            timeout: Duration::from_secs(20),
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`cat >&2; exit 4` on kiwi-test-server-01 failed with status Some(4)"));
    assert!(!text.contains("K10secretsecret"), "{text}");

    // The first-boot wait: cloud-init done and the right hostname.
    exec.wait_ready(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    exec.close().await;
}

#[tokio::test]
async fn a_different_recorded_key_is_refused_and_nothing_runs() {
    let Some(server) = start_sshd().await else {
        return;
    };
    let other = HostKey::generate(NODE).unwrap();
    server
        .known_hosts()
        .record(NODE, other.public_openssh())
        .unwrap();
    let marker = server.path("marker");
    let exec = server.exec();
    let err = exec
        .run(&command(&format!("touch {}", marker.display())))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(NODE), "{text}");
    assert!(text.contains("known_hosts"), "{text}");
    assert!(text.contains("no command was run"), "{text}");
    assert!(
        !marker.exists(),
        "a command ran on a node with the wrong key"
    );

    // Waiting does not retry past it either.
    let err = exec
        .wait_ready(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn a_node_without_a_recorded_key_is_never_trusted_on_first_use() {
    let Some(server) = start_sshd().await else {
        return;
    };
    // Another node's key is recorded, not this one's.
    server
        .known_hosts()
        .record("kiwi-test-server-02", server.host_key.public_openssh())
        .unwrap();
    let marker = server.path("marker");
    let err = server
        .exec()
        .run(&command(&format!("touch {}", marker.display())))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::UnknownHostKey { .. }), "{err:?}");
    assert!(!marker.exists());
    // And the file was not extended behind our back.
    assert_eq!(server.known_hosts().entries().unwrap().len(), 1);
}

#[tokio::test]
async fn a_node_that_never_answers_ends_the_wait_with_the_last_error() {
    let Some(server) = start_sshd().await else {
        return;
    };
    server
        .known_hosts()
        .record(NODE, server.host_key.public_openssh())
        .unwrap();
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = SshSettings {
        port: Some(closed_port),
        ..server.settings()
    };
    let exec = OpenSshExec::new(NODE, "127.0.0.1", settings).unwrap();
    let err = exec
        .wait_ready(Instant::now() + Duration::from_secs(1))
        .await
        .unwrap_err();
    match &err {
        SshError::NotReady {
            attempts, source, ..
        } => {
            assert!(*attempts >= 1);
            assert!(matches!(**source, SshError::Connect { .. }), "{source:?}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

#[tokio::test]
async fn the_operators_ssh_config_applies_but_cannot_weaken_the_checks() {
    let Some(server) = start_sshd().await else {
        return;
    };
    // The operator's config supplies the login key (kiwi-infra is given
    // none) and tries its worst on host keys.
    std::fs::write(
        server.path("user_config"),
        format!(
            "Host 127.0.0.1\n\
             \x20   IdentityFile {}\n\
             Host *\n\
             \x20   StrictHostKeyChecking no\n\
             \x20   UserKnownHostsFile /dev/null\n\
             \x20   HostKeyAlias someone-else\n",
            server.path("client_ed25519").display()
        ),
    )
    .unwrap();
    let settings = SshSettings {
        identity_file: None,
        ..server.settings()
    };
    // The recorded key is honoured, and the operator's key logs in.
    server
        .known_hosts()
        .record(NODE, server.host_key.public_openssh())
        .unwrap();
    let exec = OpenSshExec::new(NODE, "127.0.0.1", settings.clone()).unwrap();
    let out = exec
        .run(&command("echo via-operator-config"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "via-operator-config\n");
    exec.close().await;

    // A different recorded key is still refused.
    server
        .known_hosts()
        .record(NODE, HostKey::generate(NODE).unwrap().public_openssh())
        .unwrap();
    let marker = server.path("marker");
    let err = OpenSshExec::new(NODE, "127.0.0.1", settings)
        .unwrap()
        .run(&command(&format!("touch {}", marker.display())))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
    assert!(!marker.exists());
}
