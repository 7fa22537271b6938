//! Removing nodes: cordon and drain, delete the node object (and stop its
//! service on the node so it cannot register again), and delete a stale
//! node object so a slot's new machine can join under its name. Each goes
//! through the first control node that lists the cluster, the node being
//! removed asked last; a cluster gone from the inventory is reached
//! through its k3s servers.

use super::{NodeConnector, NodeError, SshNodeExecutor};
use crate::cluster::is_server_of;
use crate::cluster::kubectl::Kubectl;
use crate::ids::ClusterName;
use crate::plan::NodeName;
use crate::ssh::RemoteExec;

impl<C: NodeConnector> SshNodeExecutor<C> {
    /// Deletes the node object `node`, which the plan found not Ready and
    /// whose machine is gone or being reinstalled, so that the slot's new
    /// machine can join under its name. Checked again here: a node that has
    /// become Ready since the plan is left alone.
    pub(super) async fn delete_stale_node(
        &self,
        cluster: &ClusterName,
        node: &NodeName,
    ) -> Result<String, NodeError> {
        let access = self.reads.removal_access(cluster);
        let (via, nodes) = self
            .reads
            .control_for_removal(cluster, &access, node)
            .await?;
        match nodes.iter().find(|n| &n.name == node) {
            None => Ok(format!(
                "{node} is not a node of cluster {cluster} (any more)"
            )),
            Some(n) if n.ready => Err(NodeError::Protocol {
                node: node.to_string(),
                what: "became Ready since the plan was made; its node object is not deleted"
                    .to_string(),
            }),
            Some(_) => {
                self.run(
                    &via,
                    &access.kubectl.delete_node(&node.0),
                    self.settings.command_timeout,
                    &[],
                )
                .await?;
                Ok(format!(
                    "stale node object {node} deleted (through {})",
                    via.node()
                ))
            }
        }
    }

    /// Cordons and drains `node` through a control node; a node that is
    /// not in the cluster (any more) is left as it is.
    pub(super) async fn drain_node(
        &self,
        cluster: &ClusterName,
        node: &NodeName,
    ) -> Result<String, NodeError> {
        let access = self.reads.removal_access(cluster);
        let (via, nodes) = self
            .reads
            .control_for_removal(cluster, &access, node)
            .await?;
        if !nodes.iter().any(|n| &n.name == node) {
            return Ok(format!(
                "{node} is not a node of cluster {cluster}; nothing to drain"
            ));
        }
        let timeout = self.settings.drain_timeout;
        self.run(
            &via,
            &access.kubectl.drain(&node.0, timeout),
            timeout + self.settings.command_timeout,
            &[],
        )
        .await?;
        Ok(format!(
            "{node} cordoned and drained (through {})",
            via.node()
        ))
    }

    /// Deletes the node object of `node` (for a k3s server, k3s removes its
    /// etcd member with it), then disables its service on the node itself,
    /// so that it cannot register again, not even after a reboot before its
    /// instance stops. The last server of a k3s cluster is not deleted
    /// while other nodes (agents) still point at it.
    pub(super) async fn delete_node(
        &self,
        cluster: &ClusterName,
        node: &NodeName,
    ) -> Result<String, NodeError> {
        let access = self.reads.removal_access(cluster);
        let (via, nodes) = self
            .reads
            .control_for_removal(cluster, &access, node)
            .await?;
        let is_server = is_server_of(cluster, node);
        if access.kubectl == Kubectl::K3s && is_server {
            let others: Vec<&NodeName> = nodes
                .iter()
                .map(|n| &n.name)
                .filter(|n| *n != node)
                .collect();
            if !others.is_empty() && !others.iter().any(|n| is_server_of(cluster, n)) {
                return Err(NodeError::Protocol {
                    node: node.to_string(),
                    what: format!(
                        "is the last k3s server of cluster {cluster} and {} still point at it; \
                         not deleted (remove those first)",
                        others
                            .iter()
                            .map(|n| n.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let deleted = if nodes.iter().any(|n| &n.name == node) {
            self.run(
                &via,
                &access.kubectl.delete_node(&node.0),
                self.settings.command_timeout,
                &[],
            )
            .await?;
            format!("node {node} deleted (through {})", via.node())
        } else {
            format!("{node} is not a node of cluster {cluster} (any more)")
        };
        let unit = match access.kubectl {
            Kubectl::K3s if is_server => "k3s",
            Kubectl::K3s => "k3s-agent",
            Kubectl::Kubeadm => "kubelet",
        };
        let stopped = self.disable_service(node, unit).await;
        Ok(format!("{deleted}; {stopped}"))
    }

    /// `systemctl disable --now UNIT` on the node, if it answers. Its
    /// instance is being cancelled, so failing here fails nothing: the
    /// outcome says what happened.
    async fn disable_service(&self, node: &NodeName, unit: &str) -> String {
        let command = format!("sudo systemctl disable --now {unit}");
        let result = match self.connect(node).await {
            Ok(exec) => self
                .run(&exec, &command, self.settings.command_timeout, &[])
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => format!("{unit} stopped and disabled on {node}"),
            Err(e) => {
                tracing::warn!(%node, error = %e, "could not stop the node's service");
                format!("{unit} not stopped on {node}, which does not answer ({e})")
            }
        }
    }
}

/// Drain, delete and the k3s server rules, against an in-memory cluster
/// (`crate::ssh::fake_cluster`): fast, and no root needed. The end-to-end
/// tests on simulated nodes (`tests/e2e/shrink_e2e.rs`) run the same steps
/// through the binary.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{node, run, steps_over};
    use super::super::NodeError;
    use crate::plan::StepKind;
    use crate::ssh::fake_cluster::{FakeCluster, Flavor};

    const CLUSTER: &str = "stadtwerke-nord";
    const AGENT: &str = "kiwi-stadtwerke-nord-general-01";
    const REALTIME: &str = "kiwi-stadtwerke-nord-realtime-01";

    fn server(n: u32) -> String {
        format!("kiwi-stadtwerke-nord-server-{n:02}")
    }

    /// stadtwerke-nord with `servers` servers and its two agents.
    fn k3s(servers: u32) -> FakeCluster {
        let cluster = FakeCluster::new(Flavor::K3s);
        for n in 1..=servers {
            cluster.join_server(&server(n));
        }
        cluster.join_agent(AGENT);
        cluster.join_agent(REALTIME);
        cluster
    }

    fn drain(name: &str) -> StepKind {
        StepKind::DrainNode { node: node(name) }
    }

    fn delete(name: &str) -> StepKind {
        StepKind::DeleteNode { node: node(name) }
    }

    #[tokio::test]
    async fn draining_and_deleting_an_agent_removes_its_node_object_and_stops_its_k3s_agent() {
        let cluster = k3s(3);
        let steps = steps_over(&cluster);
        let said = run(&steps, CLUSTER, drain(AGENT)).await.unwrap();
        assert!(said.contains(&format!("through {}", server(1))), "{said}");
        assert!(cluster.node(AGENT).unwrap().unschedulable, "not cordoned");
        let said = run(&steps, CLUSTER, delete(AGENT)).await.unwrap();
        assert!(said.contains("k3s-agent stopped and disabled"), "{said}");
        assert_eq!(cluster.node(AGENT), None);
        assert_eq!(cluster.disabled_units(AGENT), ["k3s-agent"]);
        assert_eq!(cluster.etcd_members().len(), 3, "an agent has no member");
        assert!(cluster.node(REALTIME).is_some());
        for n in 1..=3 {
            assert_eq!(cluster.disabled_units(&server(n)), Vec::<String>::new());
        }
        // Again (an apply interrupted after the delete): nothing to do,
        // and no failure.
        let said = run(&steps, CLUSTER, drain(AGENT)).await.unwrap();
        assert!(said.contains("nothing to drain"), "{said}");
        let said = run(&steps, CLUSTER, delete(AGENT)).await.unwrap();
        assert!(said.contains("is not a node of cluster"), "{said}");
    }

    #[tokio::test]
    async fn a_drain_a_disruption_budget_blocks_fails_the_step_and_the_node_stays() {
        let cluster = k3s(3);
        cluster.block_drain(AGENT);
        let steps = steps_over(&cluster);
        let err = run(&steps, CLUSTER, drain(AGENT)).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NodeError::Command { .. }), "{text}");
        assert!(text.contains("disruption budget"), "{text}");
        assert!(
            !text.contains("--force") && !text.contains("--disable-eviction"),
            "a drain must respect budgets: {text}"
        );
        let left = cluster.node(AGENT).unwrap();
        assert!(left.unschedulable, "kubectl cordons before it evicts");
        assert_eq!(cluster.disabled_units(AGENT), Vec::<String>::new());
    }

    #[tokio::test]
    async fn the_last_k3s_server_is_not_deleted_while_agents_still_point_at_it() {
        let cluster = k3s(1);
        let steps = steps_over(&cluster);
        let err = run(&steps, CLUSTER, delete(&server(1))).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NodeError::Protocol { .. }), "{text}");
        assert!(
            text.contains("last k3s server") && text.contains(AGENT) && text.contains(REALTIME),
            "{text}"
        );
        assert!(cluster.node(&server(1)).is_some(), "the server was deleted");
        assert_eq!(cluster.etcd_members(), [server(1)]);
        assert_eq!(
            cluster.disabled_units(&server(1)),
            Vec::<String>::new(),
            "k3s stopped on the last server"
        );
    }

    #[tokio::test]
    async fn k3s_servers_are_deleted_through_another_server_and_etcd_keeps_its_quorum() {
        let cluster = k3s(3);
        let steps = steps_over(&cluster);
        // The plan removes the highest-numbered first, one at a time.
        for n in [3, 2] {
            run(&steps, CLUSTER, drain(&server(n))).await.unwrap();
            let said = run(&steps, CLUSTER, delete(&server(n))).await.unwrap();
            assert!(said.contains(&format!("through {}", server(1))), "{said}");
            assert_eq!(cluster.disabled_units(&server(n)), ["k3s"]);
            // The member went with the node, so the servers left are a
            // quorum of the members left, and the cluster still answers.
            let nodes = steps
                .reads()
                .nodes_of(&crate::ids::ClusterName::parse(CLUSTER).unwrap())
                .await
                .unwrap();
            assert_eq!(nodes.len(), n as usize - 1 + 2);
        }
        assert_eq!(cluster.etcd_members(), [server(1)]);
    }

    #[tokio::test]
    async fn the_last_server_of_a_cluster_that_goes_entirely_is_deleted_through_itself_last() {
        // The customer's file is gone: the cluster is reached through the
        // servers the run knows, the agents go first, the server last.
        let cluster = FakeCluster::new(Flavor::K3s);
        cluster.join_server("kiwi-gone-server-01");
        cluster.join_agent("kiwi-gone-general-01");
        let steps = steps_over(&cluster);
        run(&steps, "gone", drain("kiwi-gone-general-01"))
            .await
            .unwrap();
        run(&steps, "gone", delete("kiwi-gone-general-01"))
            .await
            .unwrap();
        run(&steps, "gone", drain("kiwi-gone-server-01"))
            .await
            .unwrap();
        let said = run(&steps, "gone", delete("kiwi-gone-server-01"))
            .await
            .unwrap();
        assert!(said.contains("through kiwi-gone-server-01"), "{said}");
        assert_eq!(cluster.node_names(), Vec::<String>::new());
        assert_eq!(cluster.etcd_members(), Vec::<String>::new());
        assert_eq!(cluster.disabled_units("kiwi-gone-server-01"), ["k3s"]);
    }

    #[tokio::test]
    async fn a_stale_node_object_is_deleted_without_touching_a_machine_but_a_ready_one_stays() {
        let cluster = k3s(3);
        cluster.set_ready(AGENT, false);
        let steps = steps_over(&cluster);
        let said = run(
            &steps,
            CLUSTER,
            StepKind::DeleteStaleNode { node: node(AGENT) },
        )
        .await
        .unwrap();
        assert!(said.contains("stale node object"), "{said}");
        assert_eq!(cluster.node(AGENT), None);
        assert!(
            cluster.machine(AGENT).unwrap().history().is_empty(),
            "the machine was touched"
        );

        let err = run(
            &steps,
            CLUSTER,
            StepKind::DeleteStaleNode {
                node: node(REALTIME),
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("became Ready"), "{err}");
        assert!(cluster.node(REALTIME).is_some());
    }

    /// The fixture inventory of `tests/fixtures/plan` with acme's servers
    /// shrunk to 1 and its general pool to none, or (`gone`) without the
    /// customer acme.
    fn acme_shrunk(gone: bool, dir: &std::path::Path) -> crate::inventory::Desired {
        let src =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/inventory");
        std::fs::create_dir_all(dir.join("customers")).unwrap();
        for file in ["kiwi.toml", "customers/acme.toml", "customers/shop.toml"] {
            let mut text = std::fs::read_to_string(src.join(file)).unwrap();
            if file == "customers/acme.toml" {
                if gone {
                    continue;
                }
                for (from, to) in [
                    (
                        "product = \"V94\"\ncount = 3",
                        "product = \"V94\"\ncount = 1",
                    ),
                    (
                        "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 1",
                        "[pools.general]\nclass = \"vps\"\nproduct = \"V94\"\ncount = 0",
                    ),
                ] {
                    assert!(text.contains(from), "acme.toml has no {from:?}");
                    text = text.replacen(from, to, 1);
                }
            }
            std::fs::write(dir.join(file), text).unwrap();
        }
        crate::inventory::load(dir).unwrap()
    }

    /// Plans from the fixture observation `in_sync` against `desired` and
    /// carries out the planned drains and deletes, in the plan's order, on
    /// an acme cluster of three servers and two agents; every step must
    /// succeed.
    async fn carry_out_removals(desired: &crate::inventory::Desired) -> FakeCluster {
        let observed: crate::plan::Observed = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/plan/in_sync.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let plan = crate::plan::plan(
            desired,
            &observed,
            &crate::plan::PlanOptions {
                adopt: false,
                allow_destroy: true,
            },
        );
        let cluster = FakeCluster::new(Flavor::K3s);
        for n in 1..=3 {
            cluster.join_server(&format!("kiwi-acme-server-{n:02}"));
        }
        cluster.join_agent("kiwi-acme-general-01");
        cluster.join_agent("kiwi-acme-realtime-01");
        let addresses = cluster
            .machine_names()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, format!("127.0.0.{}", i + 2)))
            .collect();
        let steps = super::super::SshNodeExecutor::new(
            cluster.clone(),
            desired,
            addresses,
            super::super::NodeSettings::default(),
        );
        // A plan's steps come dependencies first.
        let removals: Vec<_> = plan
            .steps
            .iter()
            .filter(|s| {
                s.cluster.as_deref() == Some("acme")
                    && matches!(
                        s.kind,
                        StepKind::DrainNode { .. } | StepKind::DeleteNode { .. }
                    )
            })
            .collect();
        assert!(!removals.is_empty(), "no removal planned");
        for step in removals {
            let cluster = super::super::test_support::cluster_of(step);
            let done = super::super::NodeSteps::run(&steps, &cluster, step).await;
            assert!(done.is_ok(), "{}: {done:?}", step.id);
        }
        cluster
    }

    #[tokio::test]
    async fn a_server_shrink_below_quorum_is_not_planned_and_only_the_agent_leaves_the_cluster() {
        // The planner's rule (`keep_quorum`) and the node steps together:
        // 3 → 1 servers would leave one etcd member of three, so no server
        // step is planned; the agent the inventory drops still goes.
        let dir = tempfile::tempdir().unwrap();
        let cluster = carry_out_removals(&acme_shrunk(false, dir.path())).await;
        assert_eq!(
            cluster.etcd_members(),
            [
                "kiwi-acme-server-01",
                "kiwi-acme-server-02",
                "kiwi-acme-server-03"
            ]
        );
        assert_eq!(cluster.node("kiwi-acme-general-01"), None);
        assert_eq!(
            cluster.disabled_units("kiwi-acme-general-01"),
            ["k3s-agent"]
        );
        assert_eq!(cluster.node_names().len(), 4);
    }

    #[tokio::test]
    async fn a_customer_that_goes_loses_its_agents_first_then_its_servers_one_at_a_time() {
        // Not checked for quorum: all of it goes, the servers last and one
        // at a time, each member removed with its node, so the servers
        // left always answer, and the last one is deleted through itself.
        let dir = tempfile::tempdir().unwrap();
        let cluster = carry_out_removals(&acme_shrunk(true, dir.path())).await;
        assert_eq!(cluster.node_names(), Vec::<String>::new());
        assert_eq!(cluster.etcd_members(), Vec::<String>::new());
        for n in 1..=3 {
            assert_eq!(
                cluster.disabled_units(&format!("kiwi-acme-server-{n:02}")),
                ["k3s"]
            );
        }
        assert_eq!(
            cluster.disabled_units("kiwi-acme-realtime-01"),
            ["k3s-agent"]
        );
    }

    #[tokio::test]
    async fn deleting_a_kubeadm_worker_goes_through_the_control_plane_and_stops_its_kubelet() {
        let cluster = FakeCluster::new(Flavor::Kubeadm);
        let first = cluster.join_server("kiwi-core-cp-01");
        cluster.join_server("kiwi-core-cp-02");
        cluster.join_agent("kiwi-core-general-01");
        // The first control-plane node does not answer: the next one does.
        first.refuse(Some(crate::ssh::fake::Refusal::Unreachable));
        let steps = steps_over(&cluster);
        run(&steps, "core", drain("kiwi-core-general-01"))
            .await
            .unwrap();
        let said = run(&steps, "core", delete("kiwi-core-general-01"))
            .await
            .unwrap();
        assert!(said.contains("through kiwi-core-cp-02"), "{said}");
        assert_eq!(cluster.node("kiwi-core-general-01"), None);
        assert_eq!(cluster.disabled_units("kiwi-core-general-01"), ["kubelet"]);
        assert_eq!(cluster.etcd_members(), Vec::<String>::new());
    }
}
