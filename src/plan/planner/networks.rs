//! The planner's part of private networks (`private_network = true`): the
//! network step, and for each node that joins, the steps that make its
//! machine a working member of the network before it joins.
//!
//! Contabo wires a member's private NIC only on a reinstall, so a machine
//! joins in this order, every step stated in the plan:
//!
//! 1. the order books the private-networking add-on (priced in the plan);
//! 2. wait until it runs (a reinstall of a machine still provisioning is
//!    refused);
//! 3. assign it to the network (`kiwi-<cluster>`, created first if it does
//!    not exist);
//! 4. reinstall it (this plan's reinstall, if it has one anyway);
//! 5. wait until it runs again; only then does its node join, with its
//!    private address as `node-ip`.
//!
//! A node that is already in the cluster but not a working member is never
//! reinstalled for it (that rebuilds the node): a warning says what it needs.

use super::super::private_network::{network_name, MemberStatus, PrivateNetwork};
use super::{NodeNeed, Planner, SlotInstance};
use crate::inventory::ClusterSpec;
use crate::plan::observed::InstanceStatus;
use crate::plan::steps::{Reinstall, Step, StepId, StepKind, UserDataTemplate, WaitCause, Warning};

/// How a reinstall that [`Planner::join`] plans later wires the slot's
/// private NIC.
#[derive(Debug, Clone)]
pub(super) struct Wiring {
    /// The network.
    pub(super) network: String,
    /// The assignment the reinstall must follow, when this plan assigns.
    pub(super) assign: Option<StepId>,
}

/// The cluster's network as this plan sees it.
enum Network<'o> {
    /// Observed (exactly one of that name).
    Exists(&'o PrivateNetwork),
    /// Created by this step.
    Created(StepId),
    /// Several carry the name: nothing is planned on any.
    Ambiguous,
}

impl<'a> Planner<'a> {
    /// What a slot's node needs once its cluster uses a private network.
    pub(super) fn private_network_need(
        &mut self,
        cluster: &ClusterSpec,
        pool: &crate::inventory::PoolSpec,
        name: &str,
        need: NodeNeed<'a>,
    ) -> NodeNeed<'a> {
        if !cluster.private_network {
            return need;
        }
        match need {
            NodeNeed::Join(si) => self.wire(cluster, pool, name, si),
            NodeNeed::Present(node) => {
                self.check_member(cluster, name);
                NodeNeed::Present(node)
            }
            other => other,
        }
    }

    /// The cluster's network, with the step creating it when it does not
    /// exist (one step per cluster).
    fn network(&mut self, cluster: &ClusterSpec) -> Network<'a> {
        let name = network_name(&cluster.name);
        match self.observed.private_networks.get(&name) {
            Some(n) if n.same_name > 1 => {
                if self.networks_warned.insert(cluster.name.clone()) {
                    self.warnings.push(Warning::AmbiguousPrivateNetwork {
                        cluster: cluster.name.clone(),
                        network: name,
                        count: n.same_name,
                    });
                }
                Network::Ambiguous
            }
            Some(n) => Network::Exists(n),
            None => {
                let id = StepId(format!("private-network:{name}"));
                if !self.steps.iter().any(|s| s.id == id) {
                    self.push(
                        &cluster.name,
                        id.clone(),
                        StepKind::EnsurePrivateNetwork {
                            name,
                            region: self.desired.provider.region.clone(),
                        },
                        Vec::new(),
                        false,
                    );
                }
                Network::Created(id)
            }
        }
    }

    /// Makes the slot's machine a working member before its node joins.
    fn wire(
        &mut self,
        cluster: &ClusterSpec,
        pool: &crate::inventory::PoolSpec,
        name: &str,
        mut si: SlotInstance<'a>,
    ) -> NodeNeed<'a> {
        let network = network_name(&cluster.name);
        let (observed, ensure) = match self.network(cluster) {
            Network::Ambiguous => return NodeNeed::Nothing,
            Network::Exists(n) => (Some(n), None),
            Network::Created(step) => (None, Some(step)),
        };
        let member = si
            .instance
            .id
            .and_then(|id| observed.and_then(|n| n.member(id)));
        if member.is_some_and(|m| m.wired_ipv4().is_some()) {
            return NodeNeed::Join(si);
        }
        let reinstall_id = StepId(format!("reinstall:{name}"));
        let planned_reinstall = self.steps.iter().any(|s| s.id == reinstall_id);
        // The wait the assignment follows: the machine must exist (an
        // order's wait) and, for the reinstall after it, run. A reinstall
        // this plan already has comes after the assignment instead.
        let before_assign = if planned_reinstall {
            None
        } else {
            self.waits.get(name).cloned()
        };
        let assign = member.is_none().then(|| {
            let depends_on = ensure.into_iter().chain(before_assign.clone()).collect();
            self.push(
                &cluster.name,
                StepId(format!("private-network-assign:{name}")),
                StepKind::AssignPrivateNetwork {
                    network: network.clone(),
                    instance: si.instance.clone(),
                },
                depends_on,
                false,
            )
        });
        if planned_reinstall {
            // Reinstalled anyway (Contabo reported it broken): that
            // reinstall wires the NIC, after the assignment.
            if let Some(step) = self.steps.iter_mut().find(|s| s.id == reinstall_id) {
                step.depends_on.extend(assign);
                if let StepKind::ReinstallInstance(r) = &mut step.kind {
                    r.private_network = Some(network);
                }
            }
            self.reorder = true;
            return NodeNeed::Join(si);
        }
        if si.reinstall_first.is_some() {
            // [`Planner::join`] reinstalls it (running but not a node).
            self.wiring
                .insert(name.to_string(), Wiring { network, assign });
            return NodeNeed::Join(si);
        }
        // Freshly ordered, or running and never joined: one reinstall for
        // the NIC. It loses nothing: the machine is no node.
        let secret = self.secret_step();
        let image = self.image();
        let status = si
            .instance
            .id
            .and_then(|id| self.observed.instances.iter().find(|i| i.id == id))
            .map_or(InstanceStatus::Running, |i| i.status.clone());
        // The machine's own addresses, as far as known (a fresh order's are
        // not: its traffic to itself arrives on `lo`).
        let own_address = si
            .instance
            .id
            .and_then(|id| self.observed.instances.iter().find(|i| i.id == id))
            .and_then(|i| i.ipv4);
        let depends_on = assign
            .into_iter()
            .chain(before_assign)
            .chain(secret)
            .collect();
        let reinstall = self.push(
            &cluster.name,
            reinstall_id,
            StepKind::ReinstallInstance(Reinstall {
                instance: si.instance.clone(),
                status,
                image,
                ssh_key_secret: self.secret_name(),
                user_data: UserDataTemplate::for_role(pool.role),
                kubernetes_version: Self::kubernetes_version(cluster),
                firewall: self.firewall(cluster, pool, own_address),
                private_network: Some(network),
            }),
            depends_on,
            false,
        );
        let wait = self.push(
            &cluster.name,
            StepId(format!("wait:{name}:private-network")),
            StepKind::WaitForRunning {
                instance: si.instance.clone(),
                cause: WaitCause::Reinstall,
            },
            vec![reinstall],
            false,
        );
        self.waits.insert(name.to_string(), wait.clone());
        si.ready = Some(wait);
        si.fresh = true;
        NodeNeed::Join(si)
    }

    /// A node already in the cluster: a warning when it is not a working
    /// member of the network (kiwi-infra does not rebuild it for that).
    fn check_member(&mut self, cluster: &ClusterSpec, name: &str) {
        let network = network_name(&cluster.name);
        let observed = match self.network_if_observed(cluster) {
            Err(()) => return,
            Ok(n) => n,
        };
        let live: Vec<_> = self
            .by_name
            .get(name)
            .map(|l| l.iter().filter(|i| !i.is_cancelled()).collect())
            .unwrap_or_default();
        if live.is_empty() {
            return;
        }
        let state = match observed {
            None => format!("the private network {network} does not exist yet"),
            Some(n) => match live.iter().find_map(|i| n.member(i.id)) {
                None => format!("its machine is not a member of {network}"),
                Some(m) if m.wired_ipv4().is_some() => return,
                Some(m) => match &m.status {
                    MemberStatus::Reinstall => format!(
                        "its machine is a member of {network} whose private NIC works only \
                         after a reinstall"
                    ),
                    MemberStatus::Ok => {
                        format!("its machine is a member of {network} without a private address")
                    }
                    MemberStatus::Pending(s) => {
                        format!("its machine is a member of {network} with status {s:?}")
                    }
                },
            },
        };
        self.warnings.push(Warning::OutsidePrivateNetwork {
            cluster: cluster.name.clone(),
            node: crate::plan::observed::NodeName(name.to_string()),
            state,
        });
    }

    /// The observed network of `cluster`; `Err` when several carry its name
    /// (warned once).
    fn network_if_observed(
        &mut self,
        cluster: &ClusterSpec,
    ) -> Result<Option<&'a PrivateNetwork>, ()> {
        let name = network_name(&cluster.name);
        match self.observed.private_networks.get(&name) {
            Some(n) if n.same_name > 1 => {
                if self.networks_warned.insert(cluster.name.clone()) {
                    self.warnings.push(Warning::AmbiguousPrivateNetwork {
                        cluster: cluster.name.clone(),
                        network: name,
                        count: n.same_name,
                    });
                }
                Err(())
            }
            other => Ok(other),
        }
    }

    /// Networks of clusters that no longer ask for one: left as they are,
    /// and said so.
    pub(super) fn networks_kept(&mut self) {
        for cluster in &self.desired.clusters {
            if cluster.private_network {
                continue;
            }
            if let Some(n) = self
                .observed
                .private_networks
                .get(&network_name(&cluster.name))
            {
                self.warnings.push(Warning::PrivateNetworkKept {
                    cluster: cluster.name.clone(),
                    network: n.name.clone(),
                    members: u32::try_from(n.members.len()).unwrap_or(u32::MAX),
                });
            }
        }
    }
}

/// The reinstall [`Planner::join`] plans for a slot, wired as [`Wiring`] says.
pub(super) fn wire_reinstall(step: &mut Step, wiring: Option<Wiring>) {
    let Some(wiring) = wiring else { return };
    step.depends_on.extend(wiring.assign);
    if let StepKind::ReinstallInstance(r) = &mut step.kind {
        r.private_network = Some(wiring.network);
    }
}
