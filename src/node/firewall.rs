//! Setting a node's host firewall ([`crate::plan::SetFirewall`]): the
//! plan's ruleset, with the addresses of the peers this plan ordered, is
//! written to `/etc/nftables.conf` (what `nftables.service` loads at boot)
//! and loaded with `nft -f`, which replaces only `table inet kiwi` in one
//! transaction (see [`crate::firewall`]). Then the node's own listing is
//! read back: the step is done only when it is exactly the model of what
//! was written (peers, operator networks, sets, both chains and every
//! rule), by the planner's own comparison.
//!
//! A pending peer's address is the one its wait found (the session pool
//! learned it), and in a private network also the private address its
//! assignment gave it; the plan states the dependencies, so a missing public
//! address is an error, never a guess.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::cluster::firewall::{firewall_from_answer, READ_FIREWALL};
use crate::firewall::{render, RULESET_PATH};
use crate::plan::{observed_drift, NodeFirewall, NodeName, SetFirewall};
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
            // In a private network the peer's cluster traffic comes from its
            // private address, learned when this plan assigned it (the plan
            // makes this step depend on that assignment too).
            if let Some(private) = self.private_address(&NodeName(slot.clone())) {
                shape.peers.insert(private);
            }
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
        let listed = firewall_from_answer(out.status, &out.stdout, &out.stderr);
        if let NodeFirewall::Absent | NodeFirewall::Unreadable { .. } = listed {
            return Err(NodeError::Protocol {
                node: node.0.clone(),
                what: format!(
                    "after `{LOAD_FIREWALL}` its firewall does not read back as loaded ({})",
                    match listed {
                        NodeFirewall::Unreadable { reason } => reason,
                        _ => "no table inet kiwi".to_string(),
                    }
                ),
            });
        }
        // The listing must be exactly the model of what was written: the
        // same comparison the planner makes, with nothing pending.
        let drift = observed_drift(&listed, &shape, &BTreeSet::new());
        if !drift.is_empty() {
            let shown = drift.len().min(3);
            return Err(NodeError::Protocol {
                node: node.0.clone(),
                what: format!(
                    "after `{LOAD_FIREWALL}` its firewall is not what was written: {}{}",
                    drift[..shown].join("; "),
                    match drift.len() - shown {
                        0 => String::new(),
                        more => format!("; and {more} more"),
                    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use crate::firewall::{ClusterFirewall, FirewallShape, NodeRole};
    use crate::node::{test_support, NodeSteps};
    use crate::plan::{NodeName, SetFirewall, Step, StepKind};
    use crate::ssh::fake_cluster::{FakeCluster, Flavor};

    const NODE: &str = "kiwi-acme-server-01";
    const NEW: &str = "kiwi-acme-general-02";

    fn step(pending: &[&str]) -> Step {
        let shape = FirewallShape::for_node(
            NodeRole::K3sServer,
            &ClusterFirewall {
                public: vec![],
                cni: crate::firewall::FlannelBackend::WireguardNative.ports(),
                cluster_networks: vec![],
            },
            &["198.51.100.0/24".parse().unwrap()],
            BTreeSet::from(["127.0.0.2".parse().unwrap()]),
        );
        test_support::step(
            "acme",
            StepKind::SetFirewall(SetFirewall {
                node: NodeName(NODE.into()),
                wanted: shape,
                pending_peers: pending.iter().map(|p| p.to_string()).collect(),
                drift: vec![],
            }),
        )
    }

    fn acme() -> crate::ids::ClusterName {
        crate::ids::ClusterName::parse("acme").unwrap()
    }

    /// The node executor over one fake machine, `NODE` (at 127.0.0.2).
    fn executor() -> (FakeCluster, super::SshNodeExecutor<FakeCluster>) {
        let cluster = FakeCluster::new(Flavor::K3s);
        cluster.add_machine(NODE);
        let nodes = test_support::steps_over(&cluster);
        (cluster, nodes)
    }

    #[tokio::test]
    async fn a_peer_ordered_by_the_plan_is_admitted_with_the_address_its_wait_found() {
        let (cluster, nodes) = executor();
        nodes.learn_address(&NodeName(NEW.into()), "127.0.0.9".parse().unwrap());
        let done = NodeSteps::run(&nodes, &acme(), &step(&[NEW]))
            .await
            .unwrap();
        assert!(
            matches!(done, crate::node::NodeStepDone::Done(_)),
            "{done:?}"
        );
        let machine = cluster.machine(NODE).unwrap();
        let file = machine.file("/etc/nftables.conf").unwrap();
        assert_eq!(file.mode, 0o644);
        let text = String::from_utf8(file.contents.expose().clone()).unwrap();
        assert!(
            text.contains("elements = { 127.0.0.2, 127.0.0.9 }"),
            "{text}"
        );
        let history = machine.history();
        let load = history.iter().position(|c| c == super::LOAD_FIREWALL);
        let read = history
            .iter()
            .rposition(|c| c == crate::cluster::firewall::READ_FIREWALL);
        assert!(load.is_some() && read > load, "{history:?}");
    }

    #[tokio::test]
    async fn a_pending_peer_without_a_known_address_leaves_the_firewall_untouched() {
        let (cluster, nodes) = executor();
        let err = NodeSteps::run(&nodes, &acme(), &step(&[NEW]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(NEW), "{err}");
        let machine = cluster.machine(NODE).unwrap();
        assert!(machine.file("/etc/nftables.conf").is_none());
        assert!(!machine.history().iter().any(|c| c.contains("nft")));
    }

    /// In a private network a new peer's cluster traffic comes from the
    /// private address its assignment gave it: the member admits that
    /// address too, in the same apply (not only after the next plan).
    #[tokio::test]
    async fn a_pending_peer_in_a_private_network_is_admitted_at_its_private_address_too() {
        let (cluster, nodes) = executor();
        let new = NodeName(NEW.into());
        nodes.learn_address(&new, "127.0.0.9".parse().unwrap());
        nodes.learn_private_address(&new, "127.77.0.9".parse().unwrap());
        NodeSteps::run(&nodes, &acme(), &step(&[NEW]))
            .await
            .unwrap();
        let machine = cluster.machine(NODE).unwrap();
        let file = machine.file("/etc/nftables.conf").unwrap();
        let text = String::from_utf8(file.contents.expose().clone()).unwrap();
        assert!(
            text.contains("elements = { 127.0.0.2, 127.0.0.9, 127.77.0.9 }"),
            "{text}"
        );
    }

    /// The read-back compares the whole table with what was written, not
    /// only the peers: a node whose loaded table differs (here SSH opened
    /// to anyone in place of the operator networks) fails the step, naming
    /// the difference.
    #[tokio::test]
    async fn a_table_that_reads_back_other_than_written_fails_the_step() {
        let (cluster, nodes) = executor();
        cluster.machine(NODE).unwrap().put_file(
            crate::ssh::fake_nft::REWRITE,
            b"    ip saddr @operators4 tcp dport { 22, 6443 } accept\n    tcp dport { 22 } accept\n",
            0o600,
        );
        let err = NodeSteps::run(&nodes, &acme(), &step(&[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not what was written"), "{err}");
        assert!(
            err.contains("`tcp dport { 22 } accept` where the ruleset has `ip saddr @operators4"),
            "{err}"
        );
    }
}
