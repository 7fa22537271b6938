//! `kiwi-node-standin`: one binary playing k3s (and its install script), kubeadm, the kubelet,
//! kubectl, systemctl, journalctl, cloud-init and sudo on simulated nodes. It picks the program
//! from the file name of `argv[0]` (symlinks named after each program point at it), or from
//! its first argument when called by its own name. See [`kiwi_mocks::standin`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let code = kiwi_mocks::standin::run(std::env::args_os().collect()).await;
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
