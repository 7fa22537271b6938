//! Reading a node's host firewall and a k3s server's flannel backend, for
//! `observe` and `status`. Both answers come from a node, so they are
//! untrusted: the listing is parsed by [`crate::firewall::parse_listing`]
//! into addresses and networks, the backend into a known name or a plain
//! word; nothing else the node said travels further.
//!
//! Reads only: writing the firewall is `crate::node::firewall`'s.

use crate::firewall::{parse_listing, FlannelBackend};
use crate::plan::{NodeFirewall, NodeName, ObservedBackend};
use crate::secret::Secret;
use crate::ssh::pool::NodeConnector;
use crate::ssh::{RemoteCommand, RemoteExec};

use super::{ClusterError, ClusterReads};

/// The command that lists a node's firewall (docs/node-contract.md).
pub const READ_FIREWALL: &str = "sudo nft -j list table inet kiwi";

/// The command that prints every place a k3s server's `flannel-backend`
/// can be set, in k3s' order: `/etc/rancher/k3s/config.yaml`, then
/// `/etc/rancher/k3s/config.yaml.d/*.yaml` in lexical order (a later file's
/// value wins), then the `k3s` unit file, whose `ExecStart` flags win over
/// every config file. Each file is preceded by [`SOURCE_START`], its path and
/// [`SOURCE_PATH_END`]. The config files hold the cluster's token, so the
/// whole answer is kept as a [`Secret`] and only the backend's value is
/// taken from it.
pub const READ_FLANNEL_BACKEND: &str = "sudo sh -c 'for f in /etc/rancher/k3s/config.yaml \
     /etc/rancher/k3s/config.yaml.d/*.yaml /etc/systemd/system/k3s.service; do \
     if [ -f \"$f\" ]; then printf \"\\036%s\\037\" \"$f\"; cat -- \"$f\"; fi; done'";

/// Starts one file in the answer to [`READ_FLANNEL_BACKEND`] (ASCII RS).
pub const SOURCE_START: char = '\u{1e}';
/// Ends a file's path in that answer (ASCII US).
pub const SOURCE_PATH_END: char = '\u{1f}';
/// The k3s server's unit file, as k3s' install script writes it.
const K3S_UNIT: &str = "/etc/systemd/system/k3s.service";

impl<C: NodeConnector> ClusterReads<C> {
    /// The node's firewall. `Err` when the node cannot be reached (its
    /// firewall was not read); an answer that is not a listing is
    /// [`NodeFirewall::Unreadable`], with kiwi-infra's own words.
    pub async fn firewall_of(&self, node: &NodeName) -> Result<NodeFirewall, ClusterError> {
        let exec = self.pool.connect(node).await?;
        let out = exec
            .run(&RemoteCommand {
                command: READ_FIREWALL.to_string(),
                stdin: None,
                timeout: self.command_timeout,
            })
            .await?;
        Ok(firewall_from_answer(out.status, &out.stdout, &out.stderr))
    }

    /// The flannel backend a k3s server's config selects; `Err` when it
    /// cannot be read (no config, node unreachable).
    pub async fn flannel_backend_of(
        &self,
        node: &NodeName,
    ) -> Result<ObservedBackend, ClusterError> {
        let exec = self.pool.connect(node).await?;
        let out = self
            .run(&exec, READ_FLANNEL_BACKEND, self.command_timeout, &[])
            .await?;
        Ok(backend_from_sources(&Secret::new(out.stdout)))
    }
}

/// Reads the answer to [`READ_FIREWALL`].
pub fn firewall_from_answer(status: Option<i32>, stdout: &str, stderr: &str) -> NodeFirewall {
    match status {
        Some(0) => match parse_listing(stdout) {
            Ok(listing) => NodeFirewall::Present {
                peers: listing.elements.get(crate::firewall::PEERS4).cloned(),
                operators: listing.operator_networks(),
                ruleset: listing.ruleset,
            },
            Err(e) => NodeFirewall::Unreadable {
                reason: e.to_string(),
            },
        },
        // nft's words for a table that does not exist.
        Some(1) if stderr.contains("No such file or directory") => NodeFirewall::Absent,
        Some(127) => NodeFirewall::Unreadable {
            reason: "nft is not installed (Debian's and Ubuntu's nftables package)".into(),
        },
        other => NodeFirewall::Unreadable {
            reason: format!(
                "`{READ_FIREWALL}` exited with status {}",
                other.map_or_else(|| "none (killed)".to_string(), |s| s.to_string())
            ),
        },
    }
}

/// Reads the answer to [`READ_FLANNEL_BACKEND`]: the last config file that
/// sets `flannel-backend` wins, and a `--flannel-backend` flag in the unit's
/// `ExecStart` wins over them, as in k3s; none means k3s' default, `vxlan`.
/// A config file that is not a YAML mapping (k3s would not start with it)
/// makes the backend unknown ([`ObservedBackend::Other`] without a name).
/// Nothing of the files but the backend's value leaves this function.
pub fn backend_from_sources(answer: &Secret) -> ObservedBackend {
    let mut chosen: Option<String> = None;
    let mut flag: Option<String> = None;
    for source in answer.expose().split(SOURCE_START).skip(1) {
        let Some((path, text)) = source.split_once(SOURCE_PATH_END) else {
            return ObservedBackend::Other(None);
        };
        if path == K3S_UNIT {
            if let Some(value) = flag_in_unit(text) {
                flag = Some(value);
            }
            continue;
        }
        match serde_norway::from_str::<serde_norway::Value>(text) {
            Ok(serde_norway::Value::Null) => {}
            Ok(serde_norway::Value::Mapping(map)) => {
                if let Some(value) = map.get("flannel-backend") {
                    match value.as_str() {
                        Some(v) => chosen = Some(v.to_string()),
                        None => return ObservedBackend::Other(None),
                    }
                }
            }
            _ => return ObservedBackend::Other(None),
        }
    }
    match flag.or(chosen) {
        None => ObservedBackend::Known(FlannelBackend::Vxlan),
        Some(value) => match value.parse::<FlannelBackend>() {
            Ok(known) => ObservedBackend::Known(known),
            Err(_) => {
                let word = plain_word(&value);
                ObservedBackend::Other((!word.is_empty() && word == value).then_some(word))
            }
        },
    }
}

/// The value of the last `--flannel-backend` in a unit's `ExecStart`
/// lines (continuations joined; words in single or double quotes, as the
/// install script writes them).
fn flag_in_unit(unit: &str) -> Option<String> {
    let joined = unit.replace("\\\n", " ");
    let mut found = None;
    for line in joined.lines().map(str::trim) {
        let Some(command) = line.strip_prefix("ExecStart=") else {
            continue;
        };
        let words: Vec<&str> = command
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
            .collect();
        for (i, word) in words.iter().enumerate() {
            if let Some(value) = word.strip_prefix("--flannel-backend=") {
                found = Some(value.to_string());
            } else if *word == "--flannel-backend" {
                found = words.get(i + 1).map(|v| (*v).to_string());
            }
        }
    }
    found
}

/// A short word of `[a-z0-9-]` from untrusted text (empty when it is not one).
fn plain_word(text: &str) -> String {
    let ok = !text.is_empty()
        && text.len() <= 32
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        text.to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_table_a_missing_nft_and_garbage_are_told_apart() {
        assert_eq!(
            firewall_from_answer(
                Some(1),
                "",
                "Error: No such file or directory\nlist table inet kiwi\n"
            ),
            NodeFirewall::Absent
        );
        assert!(matches!(
            firewall_from_answer(Some(127), "", "bash: nft: command not found"),
            NodeFirewall::Unreadable { reason } if reason.contains("not installed")
        ));
        let NodeFirewall::Unreadable { reason } =
            firewall_from_answer(Some(0), "\u{1b}]0;owned\u{7}{not json", "")
        else {
            panic!("garbage is unreadable");
        };
        assert!(
            !reason.contains('\u{1b}') && !reason.contains("owned"),
            "{reason}"
        );
        let NodeFirewall::Unreadable { reason } =
            firewall_from_answer(Some(2), "", "\u{1b}[2Jsecret")
        else {
            panic!();
        };
        assert!(!reason.contains("secret"));
    }

    #[test]
    fn the_captured_listing_reads_as_present_with_its_peers() {
        let json = include_str!("../../tests/fixtures/firewall/nft-list-table-inet-kiwi.json");
        let NodeFirewall::Present { peers, ruleset, .. } = firewall_from_answer(Some(0), json, "")
        else {
            panic!("present");
        };
        assert!(!peers.unwrap().is_empty());
        let input = ruleset.chain("input").unwrap();
        assert_eq!(
            input.base.as_ref().map(|b| &b.policy),
            Some(&crate::firewall::Verdict::Drop)
        );
    }

    fn sources(files: &[(&str, &str)]) -> Secret {
        Secret::new(
            files
                .iter()
                .map(|(path, text)| format!("{SOURCE_START}{path}{SOURCE_PATH_END}{text}"))
                .collect::<String>(),
        )
    }

    const CONFIG: &str = "/etc/rancher/k3s/config.yaml";

    #[test]
    fn a_backend_is_a_known_name_k3s_default_or_a_plain_word() {
        let one = |text: &str| backend_from_sources(&sources(&[(CONFIG, text)]));
        assert_eq!(
            backend_from_sources(&Secret::new(String::new())),
            ObservedBackend::Known(FlannelBackend::Vxlan)
        );
        assert_eq!(
            one("token: \"s3cret\"\nflannel-backend: \"wireguard-native\"\n"),
            ObservedBackend::Known(FlannelBackend::WireguardNative)
        );
        assert_eq!(
            one("flannel-backend: host-gw\n"),
            ObservedBackend::Other(Some("host-gw".into()))
        );
        assert_eq!(
            one("flannel-backend: \"\\e[31mred\"\n"),
            ObservedBackend::Other(None)
        );
        assert_eq!(
            one("token: x\n"),
            ObservedBackend::Known(FlannelBackend::Vxlan)
        );
    }

    /// Found by an attacker: only `^flannel-backend:` lines of config.yaml
    /// were read, so a quoted key, a flow mapping, a drop-in file or a unit
    /// flag that selects another backend went unseen (and the firewall
    /// opened the wrong backend's ports).
    #[test]
    fn every_place_k3s_reads_the_backend_from_is_read_in_k3s_order() {
        let wg = ObservedBackend::Known(FlannelBackend::WireguardNative);
        let vx = ObservedBackend::Known(FlannelBackend::Vxlan);
        for written in [
            "\"flannel-backend\": vxlan\n",
            "{token: s3cret, flannel-backend: vxlan}\n",
            "flannel-backend: wireguard-native\nflannel-backend: vxlan\n",
        ] {
            let seen = backend_from_sources(&sources(&[(CONFIG, written)]));
            // A duplicate key is not YAML: unknown, never a guess.
            assert!(
                seen == vx || seen == ObservedBackend::Other(None),
                "{written}: {seen:?}"
            );
        }
        assert_eq!(
            backend_from_sources(&sources(&[(
                CONFIG,
                "{token: s3cret, flannel-backend: vxlan}"
            )])),
            vx
        );
        // A drop-in file wins over config.yaml, the later one over the earlier.
        assert_eq!(
            backend_from_sources(&sources(&[
                (CONFIG, "flannel-backend: wireguard-native\n"),
                (
                    "/etc/rancher/k3s/config.yaml.d/10-a.yaml",
                    "flannel-backend: host-gw\n"
                ),
                (
                    "/etc/rancher/k3s/config.yaml.d/20-b.yaml",
                    "flannel-backend: vxlan\n"
                ),
                (
                    "/etc/rancher/k3s/config.yaml.d/30-c.yaml",
                    "node-label: [a=b]\n"
                ),
            ])),
            vx
        );
        // A unit flag wins over every file, in either spelling.
        for unit in [
            "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n    '--flannel-backend=wireguard-native' \\\n",
            "[Service]\nExecStart=/usr/local/bin/k3s server --flannel-backend wireguard-native\n",
        ] {
            assert_eq!(
                backend_from_sources(&sources(&[
                    (CONFIG, "flannel-backend: vxlan\n"),
                    (K3S_UNIT, unit),
                ])),
                wg,
                "{unit}"
            );
        }
        assert_eq!(
            backend_from_sources(&sources(&[
                (CONFIG, "flannel-backend: wireguard-native\n"),
                (K3S_UNIT, "[Service]\nExecStart=/usr/local/bin/k3s server\n"),
            ])),
            wg
        );
        // A config k3s could not read leaves the backend unknown.
        assert_eq!(
            backend_from_sources(&sources(&[(CONFIG, "- a list\n")])),
            ObservedBackend::Other(None)
        );
        assert_eq!(
            backend_from_sources(&sources(&[(CONFIG, "flannel-backend: [vxlan]\n")])),
            ObservedBackend::Other(None)
        );
    }
}
