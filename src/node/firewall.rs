//! Setting a node's host firewall ([`crate::plan::SetFirewall`]): the
//! plan's ruleset, with the addresses of the peers this plan ordered, is
//! written to `/etc/nftables.conf` (what `nftables.service` loads at boot)
//! and loaded with `nft -f`, which replaces only `table inet kiwi` in one
//! transaction (see [`crate::firewall`]). Then the node's own listing is
//! read back: the step is done only when the node admits exactly the peers
//! it should.
//!
//! A pending peer's address is the one its wait found (the session pool
//! learned it); the plan states the dependency, so a missing one is an
//! error, never a guess.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::cluster::firewall::{firewall_from_answer, READ_FIREWALL};
use crate::firewall::{render, RULESET_PATH};
use crate::plan::{NodeFirewall, NodeName, SetFirewall};
use crate::secret::Secret;
use crate::ssh::pool::NodeConnector;
use crate::ssh::RemoteExec;

use super::{NodeError, SshNodeExecutor};

/// The command that loads the written ruleset (docs/node-contract.md).
pub const LOAD_FIREWALL: &str = "sudo nft -f /etc/nftables.conf";

impl<C: NodeConnector> SshNodeExecutor<C> {
    /// Carries out a [`SetFirewall`] step.
    pub(super) async fn set_firewall(&self, step: &SetFirewall) -> Result<String, NodeError> {
        let node = &step.node;
        let mut shape = step.wanted.clone();
        for slot in &step.pending_peers {
            shape.peers.insert(self.pending_address(node, slot)?);
        }
        let ruleset = render(&shape);
        let exec = self.connect(node).await?;
        exec.upload(RULESET_PATH, &Secret::new(ruleset.into_bytes()), 0o644)
            .await?;
        self.run(&exec, LOAD_FIREWALL, self.settings.command_timeout, &[])
            .await?;
        let out = self
            .run(&exec, READ_FIREWALL, self.settings.command_timeout, &[])
            .await?;
        let admitted = match firewall_from_answer(out.status, &out.stdout, &out.stderr) {
            NodeFirewall::Present {
                peers: Some(peers), ..
            } => peers,
            other => {
                return Err(NodeError::Protocol {
                    node: node.0.clone(),
                    what: format!(
                        "after `{LOAD_FIREWALL}` its firewall does not read back as loaded ({})",
                        match other {
                            NodeFirewall::Absent => "no table inet kiwi".to_string(),
                            NodeFirewall::Unreadable { reason } => reason,
                            NodeFirewall::Present { .. } => "no peer set".to_string(),
                        }
                    ),
                })
            }
        };
        let wanted: BTreeSet<ipnet::IpNet> = shape
            .peers
            .iter()
            .map(|ip| ipnet::IpNet::V4(ipnet::Ipv4Net::from(*ip)))
            .collect();
        if admitted != wanted {
            return Err(NodeError::Protocol {
                node: node.0.clone(),
                what: format!(
                    "after `{LOAD_FIREWALL}` it admits {} peers, not the {} written",
                    admitted.len(),
                    wanted.len()
                ),
            });
        }
        Ok(format!("firewall of {node} set: {}", shape.summary()))
    }

    /// The address the wait of `slot` found (the plan makes this step
    /// depend on that wait).
    fn pending_address(&self, node: &NodeName, slot: &str) -> Result<Ipv4Addr, NodeError> {
        let text = self
            .reads
            .pool()
            .address(&NodeName(slot.to_string()))
            .map_err(|_| NodeError::Refused {
                node: node.0.clone(),
                what: format!(
                    "the address of its peer {slot} is not known (did the wait for its instance \
                     succeed?); the firewall is left as it is"
                ),
            })?;
        text.parse().map_err(|_| NodeError::Refused {
            node: node.0.clone(),
            what: format!("the address known for its peer {slot} is not an IPv4 address"),
        })
    }
}
