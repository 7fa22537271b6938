//! Reading a node's host firewall and a k3s server's flannel backend, for
//! `observe` and `status`. Both answers come from a node, so they are
//! untrusted: the listing is parsed by [`crate::firewall::parse_listing`]
//! into addresses and networks, the backend into a known name or a plain
//! word; nothing else the node said travels further.
//!
//! Reads only: writing the firewall is `crate::node::firewall`'s.

use crate::firewall::{parse_listing, FlannelBackend};
use crate::plan::{NodeFirewall, NodeName, ObservedBackend};
use crate::ssh::pool::NodeConnector;
use crate::ssh::{RemoteCommand, RemoteExec};

use super::{ClusterError, ClusterReads};

/// The command that lists a node's firewall (docs/node-contract.md).
pub const READ_FIREWALL: &str = "sudo nft -j list table inet kiwi";

/// The command that prints a k3s server's `flannel-backend` setting, and
/// nothing else of its config (which holds the cluster's tokens).
pub const READ_FLANNEL_BACKEND: &str =
    "sudo sed -n 's/^flannel-backend:[[:space:]]*//p' /etc/rancher/k3s/config.yaml";

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
        Ok(backend_from_answer(&out.stdout))
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

/// Reads the answer to [`READ_FLANNEL_BACKEND`]: the last setting wins, as
/// in YAML; none means k3s' default, `vxlan`.
pub fn backend_from_answer(stdout: &str) -> ObservedBackend {
    let Some(line) = stdout.lines().map(str::trim).rfind(|l| !l.is_empty()) else {
        return ObservedBackend::Known(FlannelBackend::Vxlan);
    };
    let value = line
        .split(" #")
        .next()
        .unwrap_or_default()
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    match value.parse::<FlannelBackend>() {
        Ok(known) => ObservedBackend::Known(known),
        Err(_) => {
            let word = plain_word(value);
            ObservedBackend::Other((!word.is_empty() && word == value).then_some(word))
        }
    }
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

    #[test]
    fn a_backend_is_a_known_name_k3s_default_or_a_plain_word() {
        assert_eq!(
            backend_from_answer(""),
            ObservedBackend::Known(FlannelBackend::Vxlan)
        );
        assert_eq!(
            backend_from_answer("\"wireguard-native\"\n"),
            ObservedBackend::Known(FlannelBackend::WireguardNative)
        );
        assert_eq!(
            backend_from_answer("host-gw\n"),
            ObservedBackend::Other(Some("host-gw".into()))
        );
        assert_eq!(
            backend_from_answer("\u{1b}[31mred\n"),
            ObservedBackend::Other(None)
        );
    }
}
