//! The planner: a pure function from the desired and the observed state to a
//! [`Plan`]. No I/O, no clock, no randomness: the same inputs always give the
//! same plan, which is what makes golden tests and saved plans possible.

mod firewall;

pub use firewall::{firewall_as_loaded, observed_drift};

use super::observed::{tags, ClusterObservation, Instance, InstanceId, NodeName, Observed};
use super::steps::{
    ImageRef, InstanceBrief, InstanceRef, K3sJoin, KubeadmJoin, KubeadmRole, NodeShape, Order,
    Plan, Reinstall, Step, StepId, StepKind, Summary, Unverified, UserDataTemplate, WaitCause,
    Warning, PLAN_FORMAT_VERSION,
};
use crate::firewall::FirewallShape;
use crate::inventory::{
    products, slot_name, slot_pool, ClusterKind, ClusterSpec, Desired, PoolRole, PoolSpec,
    SERVER_POOL,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

mod networks;

/// Choices the operator makes on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOptions {
    /// Take over instances that have a slot's name but no ownership tag.
    pub adopt: bool,
    /// Let `apply` carry out destructive steps. The planner plans them either
    /// way (marked destructive); renderers use this to say what is held back.
    pub allow_destroy: bool,
}

/// The name of the secret holding the operator's SSH key. It embeds a digest
/// of the key, so changing the key in the inventory creates a new secret
/// rather than silently reusing the old one.
pub fn ssh_key_secret_name(public_key: &str) -> String {
    let digest = Sha256::digest(public_key.trim().as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("kiwi-operator-ssh-{hex}")
}

/// Plans the steps that make Contabo and the clusters match the inventory.
pub fn plan(desired: &Desired, observed: &Observed, options: &PlanOptions) -> Plan {
    let mut planner = Planner::new(desired, observed, *options);
    planner.attribution_warnings();
    for cluster in &desired.clusters {
        planner.cluster(cluster);
    }
    planner.removals();
    planner.networks_kept();
    planner.firewalls();
    planner.finish()
}

/// Whether the plan for `observed` could order or reinstall a machine, so
/// that the stored secrets and the OS image must be read first (an order
/// names the SSH key secret and the image). Asked with every option that
/// can add such a step, so it never says no where a plan would say yes.
pub fn needs_order_inputs(desired: &Desired, observed: &Observed) -> bool {
    let widest = PlanOptions {
        adopt: true,
        allow_destroy: true,
    };
    plan(desired, observed, &widest).steps.iter().any(|s| {
        matches!(
            s.kind,
            StepKind::OrderInstance(_)
                | StepKind::ReinstallInstance(_)
                | StepKind::EnsureSecret { .. }
        )
    })
}

/// Where a slot's instance stands after the instance-level steps.
#[derive(Debug)]
struct SlotInstance<'a> {
    instance: InstanceRef,
    /// Running but not a node of its cluster: reinstall it before joining,
    /// if it can join at all.
    reinstall_first: Option<&'a Instance>,
    /// The order or reinstall step the node's join must wait for.
    ready: Option<StepId>,
    /// Ordered or reinstalled by this plan: certainly not a node yet.
    fresh: bool,
    /// Its status lets a join proceed.
    usable: bool,
    /// Its cluster is protected, or the machine carries `kiwi-protected`:
    /// no destructive step for it.
    protected: bool,
}

/// What the node of a slot needs.
#[derive(Debug)]
enum NodeNeed<'o> {
    Join(SlotInstance<'o>),
    Present(&'o super::observed::Node),
    Unverified,
    Nothing,
}

struct Planner<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    options: PlanOptions,
    by_name: BTreeMap<&'a str, Vec<&'a Instance>>,
    /// Who owns what, from recorded facts only (see [`Attribution`]).
    owners: Attribution<'a>,
    /// Slot names already warned about as ambiguous.
    ambiguous_warned: BTreeSet<String>,
    /// Slots whose order was held back, per cluster.
    held: BTreeMap<String, Vec<String>>,
    /// Instances matched to a desired slot (whatever their state).
    handled: BTreeSet<i64>,
    account: Vec<Step>,
    steps: Vec<Step>,
    warnings: Vec<Warning>,
    unverified: Vec<Unverified>,
    ensured_tags: BTreeSet<String>,
    secret: Option<Option<StepId>>,
    image_warned: bool,
    /// Slots whose interrupted order this plan finishes (see
    /// [`Plan::finishing_orders`]).
    finishing: BTreeSet<String>,
    /// Per slot: the wait for its instance, for the node steps of the slot
    /// to depend on.
    waits: BTreeMap<String, StepId>,
    /// Each slot's node address, as far as known (see [`node_addresses`]),
    /// and, in a cluster with a private network, its private address too
    /// (see [`super::private_network::private_addresses`]): the members a
    /// new node's firewall admits. A member's public address stays in the
    /// set while its cluster traffic may still use it (a node that is not
    /// yet a working member of the network).
    addresses: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Per slot: how the reinstall [`Planner::join`] plans wires its
    /// private NIC (clusters with a private network).
    wiring: BTreeMap<String, networks::Wiring>,
    /// Clusters whose ambiguous private network was warned about.
    networks_warned: BTreeSet<String>,
    /// A step was given a dependency on a later step: sort before finishing.
    reorder: bool,
}

impl<'a> Planner<'a> {
    fn new(desired: &'a Desired, observed: &'a Observed, options: PlanOptions) -> Self {
        let mut by_name: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for instance in &observed.instances {
            by_name
                .entry(instance.display_name.as_str())
                .or_default()
                .push(instance);
        }
        for list in by_name.values_mut() {
            list.sort_by(|a, b| (a.created_date, &a.id).cmp(&(b.created_date, &b.id)));
        }
        let owners = Attribution::of(desired, observed);
        let mut addresses: BTreeMap<String, Vec<Ipv4Addr>> =
            addresses_of(desired, observed, &owners)
                .into_iter()
                .map(|(slot, ip)| (slot, vec![ip]))
                .collect();
        for (slot, ip) in super::private_network::private_addresses(desired, observed) {
            addresses.entry(slot).or_default().push(ip);
        }
        Planner {
            desired,
            observed,
            options,
            by_name,
            owners,
            ambiguous_warned: BTreeSet::new(),
            held: BTreeMap::new(),
            handled: BTreeSet::new(),
            account: Vec::new(),
            steps: Vec::new(),
            warnings: Vec::new(),
            unverified: Vec::new(),
            ensured_tags: BTreeSet::new(),
            secret: None,
            image_warned: false,
            finishing: BTreeSet::new(),
            waits: BTreeMap::new(),
            addresses,
            wiring: BTreeMap::new(),
            networks_warned: BTreeSet::new(),
            reorder: false,
        }
    }

    fn finish(mut self) -> Plan {
        if self.desired.provider.operators_open_to_anyone() {
            self.warnings.push(Warning::OperatorNetworksOpen);
        }
        if let Some(covered) = self.desired.provider.operators_wide() {
            self.warnings
                .push(Warning::OperatorNetworksWide { covered });
        }
        let held = std::mem::take(&mut self.held);
        for (cluster, slots) in held {
            let cluster = (!self.owners.hold_all_orders).then_some(cluster);
            self.warnings.push(Warning::OrdersHeld { cluster, slots });
        }
        let mut steps = self.account;
        steps.extend(self.steps);
        // Every node step of a slot whose instance is waited for runs after
        // the wait: a node cannot be reached before it runs. So does a join
        // through an existing node whose machine is waited for (a join
        // through a node this plan joins already runs after that join).
        let joined_here: BTreeSet<String> = steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::BootstrapK3sServer(_)
                        | StepKind::JoinK3sServer(_)
                        | StepKind::JoinK3sAgent(_)
                        | StepKind::KubeadmJoin(_)
                )
            })
            .filter_map(|s| s.kind.slot().map(str::to_string))
            .collect();
        let mut via_waits: Vec<(StepId, StepId)> = Vec::new();
        for step in &mut steps {
            if !step.kind.is_node_step() {
                continue;
            }
            let via = match &step.kind {
                StepKind::JoinK3sServer(j) | StepKind::JoinK3sAgent(j) => {
                    j.via.as_ref().map(|v| v.0.as_str())
                }
                StepKind::KubeadmJoin(j) => Some(j.via.0.as_str()),
                _ => None,
            }
            .filter(|via| !joined_here.contains(*via));
            if let Some(wait) = step.kind.slot().and_then(|slot| self.waits.get(slot)) {
                if !step.depends_on.contains(wait) {
                    step.depends_on.push(wait.clone());
                }
            }
            if let Some(wait) = via.and_then(|via| self.waits.get(via)) {
                via_waits.push((step.id.clone(), wait.clone()));
            }
        }
        let mut moved = false;
        for (id, wait) in via_waits {
            if !depends_on(&steps, &id, &wait) {
                if let Some(step) = steps.iter_mut().find(|s| s.id == id) {
                    step.depends_on.push(wait);
                    moved = true;
                }
            }
        }
        if moved || self.reorder {
            // A server's wait may sit below a join through it (its slot
            // comes later): keep every dependency before its dependents.
            steps = dependencies_first(steps);
        }
        let summary = Summary::of(&steps);
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            steps,
            finishing_orders: self.finishing,
            unverified: self.unverified,
            warnings: self.warnings,
            summary,
        }
    }

    fn push(
        &mut self,
        cluster: &str,
        id: StepId,
        kind: StepKind,
        depends_on: Vec<StepId>,
        destructive: bool,
    ) -> StepId {
        self.steps.push(Step {
            id: id.clone(),
            cluster: Some(cluster.to_string()),
            kind,
            depends_on,
            destructive,
        });
        id
    }

    /// The step creating the SSH key secret, if it does not exist yet.
    fn secret_step(&mut self) -> Option<StepId> {
        if let Some(step) = &self.secret {
            return step.clone();
        }
        let name = self.secret_name();
        let step = if self.observed.secrets.contains_key(&name) {
            None
        } else {
            let id = StepId(format!("secret:{name}"));
            self.account.push(Step {
                id: id.clone(),
                cluster: None,
                kind: StepKind::EnsureSecret { name },
                depends_on: Vec::new(),
                destructive: false,
            });
            Some(id)
        };
        self.secret = Some(step.clone());
        step
    }

    fn secret_name(&self) -> String {
        ssh_key_secret_name(&self.desired.provider.ssh_public_key)
    }

    /// The wait for the slot's instance to run, after `after` (this plan's
    /// order or reinstall of it) or, without it, for an instance an earlier
    /// run started. Node steps of the slot depend on it.
    fn wait_for(
        &mut self,
        cluster: &str,
        instance: &InstanceRef,
        cause: WaitCause,
        after: Option<StepId>,
    ) -> StepId {
        let id = self.push(
            cluster,
            StepId(format!("wait:{}", instance.name)),
            StepKind::WaitForRunning {
                instance: instance.clone(),
                cause,
            },
            after.into_iter().collect(),
            false,
        );
        self.waits.insert(instance.name.clone(), id.clone());
        id
    }

    /// The Kubernetes version a node of `cluster` installs from its user
    /// data (kubeadm clusters only).
    fn kubernetes_version(cluster: &ClusterSpec) -> Option<String> {
        match &cluster.kind {
            ClusterKind::Kubeadm {
                kubernetes_version, ..
            } => Some(kubernetes_version.to_string()),
            ClusterKind::K3s { .. } => None,
        }
    }

    /// The step creating a tag, if it does not exist yet.
    fn tag_step(&mut self, tag: &str) -> Option<StepId> {
        if self.observed.tags.contains_key(tag) {
            return None;
        }
        let id = StepId(format!("tag:{tag}"));
        if self.ensured_tags.insert(tag.to_string()) {
            self.account.push(Step {
                id: id.clone(),
                cluster: None,
                kind: StepKind::EnsureTag {
                    name: tag.to_string(),
                },
                depends_on: Vec::new(),
                destructive: false,
            });
        }
        Some(id)
    }

    fn image(&mut self) -> ImageRef {
        let name = self.desired.provider.image.clone();
        let id = self
            .observed
            .image
            .as_ref()
            .filter(|i| i.name == name)
            .map(|i| i.id.clone());
        if id.is_none() && !self.image_warned {
            self.image_warned = true;
            self.warnings.push(Warning::ImageUnresolved {
                image: name.clone(),
            });
        }
        ImageRef { name, id }
    }

    fn cluster(&mut self, cluster: &'a ClusterSpec) {
        let observation = self.observed.cluster(&cluster.name);
        if let (
            ClusterKind::Kubeadm {
                control_plane,
                api_endpoint,
                kubernetes_version,
            },
            Some(obs),
        ) = (&cluster.kind, observation)
        {
            let present = control_plane.iter().find(|n| obs.node(&n.name).is_some());
            for node in control_plane {
                if obs.node(&node.name).is_some() {
                    continue;
                }
                match present {
                    // A replacement machine for a control-plane node, never
                    // joined yet: join it as a control-plane node (uploaded
                    // certificates, certificate key).
                    Some(via) if obs.pristine.contains(&node.name) => {
                        let labels = BTreeMap::from([
                            ("kiwistack.io/cluster".to_string(), cluster.name.clone()),
                            ("kiwistack.io/tier".to_string(), cluster.tier.to_string()),
                        ]);
                        self.push(
                            &cluster.name,
                            StepId(format!("join:{}", node.name)),
                            StepKind::KubeadmJoin(KubeadmJoin {
                                node: NodeName(node.name.clone()),
                                instance: InstanceRef {
                                    name: node.name.clone(),
                                    id: None,
                                },
                                role: KubeadmRole::ControlPlane,
                                via: NodeName(via.name.clone()),
                                api_endpoint: api_endpoint.to_string(),
                                kubernetes_version: kubernetes_version.to_string(),
                                labels,
                                taints: Vec::new(),
                            }),
                            Vec::new(),
                            false,
                        );
                    }
                    _ => self.warnings.push(Warning::ControlPlaneNodeMissing {
                        cluster: cluster.name.clone(),
                        node: NodeName(node.name.clone()),
                    }),
                }
            }
        }
        // Pass 1: instances (order, tag, reinstall) and what each node needs.
        let mut needs: Vec<(&PoolSpec, String, usize, NodeNeed<'a>)> = Vec::new();
        for pool in &cluster.pools {
            for index in 1..=pool.count {
                let name = slot_name(&cluster.name, &pool.name, index);
                let steps_before = self.steps.len();
                let need = match self.slot_instance(cluster, pool, &name, observation) {
                    None => NodeNeed::Nothing,
                    Some(si) => self.node_need(si, &name, observation),
                };
                let need = self.private_network_need(cluster, pool, &name, need);
                needs.push((pool, name, steps_before, need));
            }
        }
        // Pass 2: node steps, inserted after each slot's instance steps so a
        // node reads top to bottom. Servers first, as the agents join them.
        let mut via = self.existing_server(cluster, &needs, observation);
        let mut bootstrap: Option<StepId> = None;
        let mut previous_server: Option<StepId> = None;
        let mut node_steps: Vec<(usize, Vec<Step>)> = Vec::new();
        for (pool, name, at, need) in needs {
            let before = self.steps.len();
            match need {
                NodeNeed::Nothing => {}
                NodeNeed::Unverified => self.unverified.push(Unverified {
                    cluster: cluster.name.clone(),
                    node: NodeName(name.clone()),
                    labels: pool.node_labels(cluster),
                    taints: pool.taints.clone(),
                }),
                NodeNeed::Present(node) => self.drift(cluster, pool, node),
                NodeNeed::Join(si) => {
                    let joined = self.join(
                        cluster,
                        pool,
                        &name,
                        si,
                        observation,
                        &mut via,
                        &mut bootstrap,
                        &previous_server,
                    );
                    match (&joined, observation.and_then(|o| o.node(&name))) {
                        (Some(_), _) if pool.role == PoolRole::K3sServer => {
                            previous_server = joined
                        }
                        // Cannot join, but a (stale) node of that name is
                        // there: keep its labels right meanwhile.
                        (None, Some(node)) => self.drift(cluster, pool, node),
                        _ => {}
                    }
                }
            }
            let added: Vec<Step> = self.steps.drain(before..).collect();
            node_steps.push((at, added));
        }
        // Re-insert node steps after their slot's instance steps, last first
        // so earlier offsets stay valid.
        let mut offsets: Vec<usize> = Vec::new();
        let mut next_start: Vec<usize> = node_steps.iter().map(|(at, _)| *at).collect();
        next_start.push(self.steps.len());
        for (i, _) in node_steps.iter().enumerate() {
            offsets.push(next_start[i + 1]);
        }
        for (i, (_, added)) in node_steps.into_iter().enumerate().rev() {
            let at = offsets[i];
            self.steps.splice(at..at, added);
        }
    }

    /// The first server node known to exist, which new servers and agents
    /// join through: observed as a node, or existing in an unobserved
    /// cluster. Servers left alone (awaiting adoption, needing a human) count
    /// too, so the plan never bootstraps a second cluster beside them.
    fn existing_server(
        &self,
        cluster: &ClusterSpec,
        needs: &[(&PoolSpec, String, usize, NodeNeed<'_>)],
        observation: Option<&ClusterObservation>,
    ) -> Option<NodeName> {
        if !matches!(cluster.kind, ClusterKind::K3s { .. }) {
            return None;
        }
        needs
            .iter()
            .filter(|(pool, _, _, _)| pool.role == PoolRole::K3sServer)
            .find(|(_, name, _, need)| match need {
                NodeNeed::Present(_) | NodeNeed::Unverified => true,
                NodeNeed::Join(_) => false,
                NodeNeed::Nothing => match observation {
                    Some(obs) => obs.node(name).is_some(),
                    None => self
                        .by_name
                        .get(name.as_str())
                        .is_some_and(|list| list.iter().any(|i| !i.is_cancelled())),
                },
            })
            .map(|(_, name, _, _)| NodeName(name.clone()))
    }

    /// Finds (or orders) the instance of a slot and plans its tags and any
    /// reinstall. `None` when the slot must be left alone.
    fn slot_instance(
        &mut self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        name: &str,
        observation: Option<&ClusterObservation>,
    ) -> Option<SlotInstance<'a>> {
        if let Some(clusters) = self.owners.ambiguous.get(name) {
            if self.ambiguous_warned.insert(name.to_string()) {
                self.warnings.push(Warning::AmbiguousSlot {
                    name: name.to_string(),
                    clusters: clusters.clone(),
                });
            }
            return None;
        }
        let mut all: Vec<&'a Instance> = self.by_name.get(name).cloned().unwrap_or_default();
        all.retain(|i| !self.owners.elsewhere.contains(&i.id));
        let renamed = self.owners.renamed.get(name).copied();
        all.extend(renamed);
        let mut live = Vec::new();
        for instance in all {
            self.handled.insert(instance.id.0);
            match instance.cancel_date {
                Some(cancel_date) => self.warnings.push(Warning::CancelledInstance {
                    name: name.to_string(),
                    instance: instance.id,
                    cancel_date,
                }),
                None => live.push(instance),
            }
        }
        let Some(chosen) = live.iter().find(|i| i.is_owned()).or(live.first()).copied() else {
            return self.order_if_safe(cluster, pool, name, observation);
        };
        if live.len() > 1 {
            self.warnings.push(Warning::DuplicateInstances {
                name: name.to_string(),
                instances: live.iter().map(|i| brief(i)).collect(),
                kept: chosen.id,
            });
        }
        // An order the journal recorded as placed for this slot is
        // kiwi-infra's own, even if its tags were never assigned (the run
        // that bought it was cut short): its tags are assigned now, it is
        // never offered for adoption as if someone else had bought it.
        let journaled = self.observed.journal_placed.get(name) == Some(&chosen.id);
        if !chosen.is_owned() && !self.options.adopt && !journaled {
            self.warnings.push(Warning::NeedsAdoption {
                name: name.to_string(),
                instance: brief(chosen),
            });
            return None;
        }
        if !chosen.is_owned() && journaled {
            self.finishing.insert(name.to_string());
        }
        // A name is only a claim: before an existing machine is reinstalled
        // or joined here, its cluster tag must say it is this cluster's (a
        // protected cluster's machine may carry a name this cluster wants).
        let tagged = tags::clusters_of(&chosen.tags);
        let must_check = installs_existing(chosen, observation, name)
            || !tagged.is_empty()
            || chosen.tags.contains(tags::PROTECTED);
        if chosen.is_owned()
            && chosen.display_name == name
            && must_check
            && tagged != [cluster.name.as_str()]
        {
            self.warnings.push(Warning::SignalsDisagree {
                name: name.to_string(),
                instance: chosen.id,
                what: if tagged.is_empty() {
                    format!(
                        "its name is a slot of cluster {}, but its kiwi-cluster-* tag is \
                         missing; it is neither reinstalled nor joined",
                        cluster.name
                    )
                } else {
                    format!(
                        "its name is a slot of cluster {}, but its tags say {}; it is \
                         neither reinstalled nor joined, and nothing is ordered in its place",
                        cluster.name,
                        tagged.join(", ")
                    )
                },
            });
            return None;
        }
        let instance = InstanceRef {
            name: name.to_string(),
            id: Some(chosen.id),
        };
        if chosen.display_name != name {
            self.push(
                &cluster.name,
                StepId(format!("rename:{name}")),
                StepKind::RenameInstance {
                    instance: instance.clone(),
                    current_name: chosen.display_name.clone(),
                },
                Vec::new(),
                false,
            );
        }
        self.mismatches(pool, name, chosen);
        self.assign_tags(cluster, pool, &instance, chosen, None);
        self.protection_tag(cluster, &instance, chosen);
        // Protected by the inventory, or by what apply recorded on the
        // machine (so renaming or deleting a customer's file does not lift
        // it, and unprotecting takes one apply before anything is destroyed).
        let protected = cluster.protected || chosen.tags.contains(tags::PROTECTED);
        let ready_node = observation.and_then(|o| o.node(name)).filter(|n| n.ready);
        if chosen.status.needs_reinstall() && ready_node.is_some() {
            self.warnings.push(Warning::SignalsDisagree {
                name: name.to_string(),
                instance: chosen.id,
                what: format!(
                    "Contabo reports it {}, but its node is Ready; not reinstalled",
                    chosen.status
                ),
            });
            return None;
        }
        if chosen.status.needs_reinstall() {
            // Contabo's status alone is the API's word. With the cluster
            // observed and the node not Ready, the machine is lost and the
            // reinstall loses nothing; unobserved, the node may well be up,
            // so wiping it is destructive (and never done in a protected
            // cluster).
            let unverified = observation.is_none();
            if unverified && protected {
                self.protected(
                    &cluster.name,
                    format!(
                        "reinstall {name} (Contabo reports it {}, its node could not be checked)",
                        chosen.status
                    ),
                );
                return None;
            }
            let step = self.reinstall(cluster, pool, &instance, chosen, unverified);
            let step = self.wait_for(&cluster.name, &instance, WaitCause::Reinstall, Some(step));
            return Some(SlotInstance {
                instance,
                reinstall_first: None,
                ready: Some(step),
                fresh: true,
                usable: true,
                protected,
            });
        }
        if chosen.status != super::observed::InstanceStatus::Running {
            // Started by an earlier run and not running yet: apply waits
            // for it (and reports a status that needs a human).
            self.wait_for(&cluster.name, &instance, WaitCause::Earlier, None);
        }
        if !chosen.status.is_usable() {
            self.warnings.push(Warning::NeedsAttention {
                name: name.to_string(),
                instance: chosen.id,
                status: chosen.status.clone(),
            });
            return Some(SlotInstance {
                instance,
                reinstall_first: None,
                ready: None,
                fresh: false,
                usable: false,
                protected,
            });
        }
        // A running instance that is not a node of its (observed) cluster has
        // lost its node, or never finished joining: start it over.
        let lost_node =
            observation.is_some_and(|o| o.node(name).is_none() && !o.pristine.contains(name));
        if lost_node && chosen.status == super::observed::InstanceStatus::Running {
            if protected {
                self.protected(
                    &cluster.name,
                    format!("reinstall {name} (running but not a node)"),
                );
                return Some(SlotInstance {
                    instance,
                    reinstall_first: None,
                    ready: None,
                    fresh: false,
                    usable: false,
                    protected,
                });
            }
            return Some(SlotInstance {
                instance,
                reinstall_first: Some(chosen),
                ready: None,
                fresh: true,
                usable: true,
                protected,
            });
        }
        let ready = self.waits.get(name).cloned();
        Some(SlotInstance {
            instance,
            reinstall_first: None,
            ready,
            fresh: false,
            usable: true,
            protected,
        })
    }

    fn node_need(
        &self,
        si: SlotInstance<'a>,
        name: &str,
        observation: Option<&'a ClusterObservation>,
    ) -> NodeNeed<'a> {
        if si.fresh {
            return NodeNeed::Join(si);
        }
        match observation {
            None => NodeNeed::Unverified,
            Some(obs) => match obs.node(name) {
                Some(node) => NodeNeed::Present(node),
                None if si.usable => NodeNeed::Join(si),
                None => NodeNeed::Nothing,
            },
        }
    }

    /// Orders the slot's machine unless something recorded says it may
    /// exist already: its node is in the cluster and Ready (its machine was
    /// renamed beyond recognition, say), or an owned instance that cannot be
    /// attributed may be it. A machine is never bought on a guess.
    fn order_if_safe(
        &mut self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        name: &str,
        observation: Option<&ClusterObservation>,
    ) -> Option<SlotInstance<'a>> {
        if observation
            .and_then(|o| o.node(name))
            .is_some_and(|n| n.ready)
        {
            self.warnings.push(Warning::NodeWithoutInstance {
                cluster: cluster.name.clone(),
                node: NodeName(name.to_string()),
            });
            return None;
        }
        if self.owners.holds_orders_of(&cluster.name, name) {
            self.held
                .entry(cluster.name.clone())
                .or_default()
                .push(name.to_string());
            return None;
        }
        Some(self.order(cluster, pool, name))
    }

    fn order(&mut self, cluster: &ClusterSpec, pool: &PoolSpec, name: &str) -> SlotInstance<'a> {
        let secret = self.secret_step();
        let image = self.image();
        let product_name = products::product(&pool.product)
            .map_or_else(|| pool.product.clone(), |p| p.name.to_string());
        let order = Order {
            slot: NodeName(name.to_string()),
            pool: pool.name.clone(),
            role: pool.role,
            product: pool.product.clone(),
            product_name,
            class: pool.class,
            region: self.desired.provider.region.clone(),
            image,
            period: self.desired.provider.period,
            monthly_price: self.desired.price(&pool.product).unwrap_or_default(),
            ssh_key_secret: self.secret_name(),
            user_data: UserDataTemplate::for_role(pool.role),
            kubernetes_version: Self::kubernetes_version(cluster),
            firewall: self.firewall(cluster, pool, None),
            private_networking: cluster
                .private_network
                .then(|| self.desired.private_networking_price.unwrap_or_default()),
        };
        let id = self.push(
            &cluster.name,
            StepId(format!("order:{name}")),
            StepKind::OrderInstance(order),
            secret.into_iter().collect(),
            false,
        );
        let instance = InstanceRef {
            name: name.to_string(),
            id: None,
        };
        let wait = self.wait_for(&cluster.name, &instance, WaitCause::Order, Some(id.clone()));
        self.plan_tags(cluster, pool, &instance, None, Some(id));
        SlotInstance {
            instance,
            reinstall_first: None,
            ready: Some(wait),
            fresh: true,
            usable: true,
            protected: cluster.protected,
        }
    }

    /// Tags an instance as kiwi-infra's. Only the ownership tag is observed
    /// (one list call for all instances), so it is assigned last, after the
    /// cluster and class tags: its presence means the instance is fully
    /// tagged, and an owned instance needs no tag step.
    fn assign_tags(
        &mut self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        instance: &InstanceRef,
        observed: &Instance,
        after: Option<StepId>,
    ) {
        if observed.is_owned() {
            return;
        }
        self.plan_tags(cluster, pool, instance, Some(observed), after);
    }

    fn plan_tags(
        &mut self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        instance: &InstanceRef,
        observed: Option<&Instance>,
        after: Option<StepId>,
    ) {
        let mut descriptive = Vec::new();
        for tag in descriptive_tags(cluster, pool) {
            if observed.is_some_and(|o| o.tags.contains(&tag)) {
                continue;
            }
            let ensure = self.tag_step(&tag);
            descriptive.push(self.assign(cluster, &tag, instance, ensure, after.clone()));
        }
        let ensure = self.tag_step(tags::MANAGED);
        let id = self.assign(cluster, tags::MANAGED, instance, ensure, after);
        if let Some(step) = self.steps.iter_mut().find(|s| s.id == id) {
            step.depends_on.extend(descriptive);
        }
    }

    fn assign(
        &mut self,
        cluster: &ClusterSpec,
        tag: &str,
        instance: &InstanceRef,
        ensure: Option<StepId>,
        after: Option<StepId>,
    ) -> StepId {
        let depends_on = after.into_iter().chain(ensure).collect();
        self.push(
            &cluster.name,
            StepId(format!("assign:{tag}:{}", instance.name)),
            StepKind::AssignTag {
                tag: tag.to_string(),
                instance: instance.clone(),
            },
            depends_on,
            false,
        )
    }

    fn reinstall(
        &mut self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        instance: &InstanceRef,
        observed: &Instance,
        destructive: bool,
    ) -> StepId {
        let secret = self.secret_step();
        let image = self.image();
        let reinstall = Reinstall {
            instance: instance.clone(),
            status: observed.status.clone(),
            image,
            ssh_key_secret: self.secret_name(),
            user_data: UserDataTemplate::for_role(pool.role),
            kubernetes_version: Self::kubernetes_version(cluster),
            firewall: self.firewall(cluster, pool, observed.ipv4),
            private_network: None,
        };
        let id = self.push(
            &cluster.name,
            StepId(format!("reinstall:{}", instance.name)),
            StepKind::ReinstallInstance(reinstall),
            secret.into_iter().collect(),
            destructive,
        );
        let wiring = self.wiring.remove(&instance.name);
        if let Some(step) = self.steps.last_mut() {
            networks::wire_reinstall(step, wiring);
        }
        id
    }

    /// The firewall a new or reinstalled node of `pool` is born with. Its
    /// peers are the cluster's members whose addresses are known now: the
    /// instances of its slots and, for Core, the control-plane nodes the
    /// inventory names by address; plus the node's own address once known
    /// (`own`, a reinstall). A node ordered now does not know its own
    /// address yet, and needs none: its traffic to itself arrives on `lo`.
    fn firewall(
        &self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        own: Option<Ipv4Addr>,
    ) -> FirewallShape {
        let mut peers: BTreeSet<Ipv4Addr> = cluster
            .slot_names()
            .flat_map(|slot| self.cluster_addresses(&slot))
            .collect();
        peers.extend(cluster.control_plane_ipv4());
        peers.extend(own);
        FirewallShape::for_node(
            pool.role.into(),
            // The running cluster's flannel ports, if its servers run one.
            &self.firewall_settings(cluster),
            &self.desired.provider.operator_networks,
            peers,
        )
    }

    fn mismatches(&mut self, pool: &PoolSpec, name: &str, instance: &Instance) {
        let checks = [
            ("product", &pool.product, &instance.product_id),
            ("region", &self.desired.provider.region, &instance.region),
        ];
        for (field, expected, actual) in checks {
            if expected != actual {
                self.warnings.push(Warning::Mismatch {
                    name: name.to_string(),
                    instance: instance.id,
                    field: field.to_string(),
                    expected: expected.clone(),
                    actual: actual.clone(),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        cluster: &ClusterSpec,
        pool: &PoolSpec,
        name: &str,
        si: SlotInstance<'a>,
        observation: Option<&ClusterObservation>,
        via: &mut Option<NodeName>,
        bootstrap: &mut Option<StepId>,
        previous_server: &Option<StepId>,
    ) -> Option<StepId> {
        let node = NodeName(name.to_string());
        let can_join = match &cluster.kind {
            ClusterKind::K3s { .. } => pool.role == PoolRole::K3sServer || via.is_some(),
            ClusterKind::Kubeadm { control_plane, .. } => !control_plane.is_empty(),
        };
        if !can_join {
            self.warnings.push(Warning::NoServerToJoin {
                cluster: cluster.name.clone(),
                node,
            });
            return None;
        }
        // A node object of this name is still listed: the slot's old machine
        // (cancelled, or being reinstalled) registered it. A join never
        // removes it on its own: deleting a node object is destructive, so
        // it is a step of its own, shown and gated like a drain, and only
        // for a node that is not Ready.
        let mut stale: Option<StepId> = None;
        if let Some(listed) = observation.and_then(|o| o.node(name)) {
            let instance_id = si.instance.id;
            if listed.ready {
                if let Some(instance) = instance_id {
                    self.warnings.push(Warning::SignalsDisagree {
                        name: name.to_string(),
                        instance,
                        what: "its node is Ready although its machine is new or being \
                               reinstalled; not joined"
                            .to_string(),
                    });
                } else {
                    self.warnings.push(Warning::NodeWithoutInstance {
                        cluster: cluster.name.clone(),
                        node,
                    });
                }
                return None;
            }
            if si.protected {
                self.protected(
                    &cluster.name,
                    format!("delete the stale node object {name} before its machine joins"),
                );
                return None;
            }
            stale = Some(self.push(
                &cluster.name,
                StepId(format!("delete-stale-node:{name}")),
                StepKind::DeleteStaleNode { node: node.clone() },
                Vec::new(),
                true,
            ));
        }
        let mut ready = si.ready;
        if let Some(instance) = si.reinstall_first {
            let step = self.reinstall(cluster, pool, &si.instance, instance, true);
            ready = Some(self.wait_for(
                &cluster.name,
                &si.instance,
                WaitCause::Reinstall,
                Some(step),
            ));
        }
        let labels = pool.node_labels(cluster);
        let taints = pool.taints.clone();
        let ready: Vec<StepId> = ready.into_iter().chain(stale).collect();
        match &cluster.kind {
            ClusterKind::K3s {
                version,
                flannel_backend,
            } => {
                let mut join = K3sJoin {
                    node: node.clone(),
                    instance: si.instance,
                    version: version.to_string(),
                    via: via.clone(),
                    labels,
                    taints,
                    // A server flag: agents learn the backend from the
                    // servers. A running cluster's own backend, never a mix.
                    flannel_backend: (pool.role == PoolRole::K3sServer)
                        .then(|| self.backend_for_new_servers(cluster))
                        .flatten()
                        .or((pool.role == PoolRole::K3sServer).then_some(*flannel_backend)),
                    private_network: cluster
                        .private_network
                        .then(|| super::private_network::network_name(&cluster.name)),
                };
                match pool.role {
                    PoolRole::K3sServer if via.is_none() => {
                        join.via = None;
                        let id = self.push(
                            &cluster.name,
                            StepId(format!("bootstrap:{name}")),
                            StepKind::BootstrapK3sServer(join),
                            ready,
                            false,
                        );
                        *via = Some(node);
                        *bootstrap = Some(id.clone());
                        Some(id)
                    }
                    PoolRole::K3sServer => {
                        let depends_on = ready.into_iter().chain(previous_server.clone()).collect();
                        Some(self.push(
                            &cluster.name,
                            StepId(format!("join:{name}")),
                            StepKind::JoinK3sServer(join),
                            depends_on,
                            false,
                        ))
                    }
                    _ if via.is_none() => {
                        self.warnings.push(Warning::NoServerToJoin {
                            cluster: cluster.name.clone(),
                            node,
                        });
                        None
                    }
                    _ => {
                        let depends_on = ready.into_iter().chain(bootstrap.clone()).collect();
                        Some(self.push(
                            &cluster.name,
                            StepId(format!("join:{name}")),
                            StepKind::JoinK3sAgent(join),
                            depends_on,
                            false,
                        ))
                    }
                }
            }
            ClusterKind::Kubeadm {
                api_endpoint,
                kubernetes_version,
                control_plane,
            } => {
                let Some(first) = control_plane.first() else {
                    self.warnings.push(Warning::NoServerToJoin {
                        cluster: cluster.name.clone(),
                        node,
                    });
                    return None;
                };
                let join = KubeadmJoin {
                    node,
                    instance: si.instance,
                    role: KubeadmRole::Worker,
                    via: NodeName(first.name.clone()),
                    api_endpoint: api_endpoint.to_string(),
                    kubernetes_version: kubernetes_version.to_string(),
                    labels,
                    taints,
                };
                Some(self.push(
                    &cluster.name,
                    StepId(format!("join:{name}")),
                    StepKind::KubeadmJoin(join),
                    ready,
                    false,
                ))
            }
        }
    }

    /// Label and taint steps for a node that exists. The labels kiwi-infra
    /// set are the ones its record on the node (the annotation
    /// `kiwistack.io/managed-labels`) names; on a node without a record
    /// (joined by an older release), those in kiwi-infra's namespace
    /// (`kiwistack.io/`, `*.kiwistack.io/`). Those are removed when no
    /// longer wanted, except labels of Kubernetes' and k3s' own domains,
    /// which a tampered record cannot make kiwi-infra remove. Every other label, in kiwi-infra's namespace or not,
    /// was set by other software and is left alone. After the
    /// label changes, the record is brought up to date in a step of its own.
    /// Taints outside the Kubernetes domains all come from the inventory, so
    /// unwanted ones are removed.
    fn drift(&mut self, cluster: &ClusterSpec, pool: &PoolSpec, node: &super::observed::Node) {
        let name = &node.name;
        let wanted = pool.node_labels(cluster);
        let shape = NodeShape {
            labels: wanted.clone(),
            taints: pool.taints.clone(),
        };
        let mut label_steps = Vec::new();
        for (key, value) in &wanted {
            let current = node.labels.get(key);
            if current != Some(value) {
                label_steps.push(self.push(
                    &cluster.name,
                    StepId(format!("label:{name}:{key}")),
                    StepKind::SetLabel {
                        node: name.clone(),
                        wanted: shape.clone(),
                        key: key.clone(),
                        value: value.clone(),
                        previous: current.cloned(),
                    },
                    Vec::new(),
                    false,
                ));
            }
        }
        let recorded = node.managed_labels.as_ref();
        for (key, value) in &node.labels {
            let ours = !crate::inventory::kube::in_system_domain(key)
                && match recorded {
                    Some(record) => record.contains(key),
                    None => crate::inventory::kube::in_kiwi_namespace(key),
                };
            if ours && !wanted.contains_key(key) {
                label_steps.push(self.push(
                    &cluster.name,
                    StepId(format!("unlabel:{name}:{key}")),
                    StepKind::RemoveLabel {
                        node: name.clone(),
                        wanted: shape.clone(),
                        key: key.clone(),
                        previous: value.clone(),
                    },
                    Vec::new(),
                    false,
                ));
            }
        }
        let keys: BTreeSet<String> = wanted.keys().cloned().collect();
        if recorded != Some(&keys) {
            self.push(
                &cluster.name,
                StepId(format!("record-labels:{name}")),
                StepKind::RecordLabels {
                    node: name.clone(),
                    keys,
                    previous: node.managed_labels.clone(),
                },
                label_steps,
                false,
            );
        }
        for taint in &node.taints {
            let replaced = pool
                .taints
                .iter()
                .any(|t| t.key == taint.key && t.effect == taint.effect);
            if !taint.is_system() && !replaced {
                self.push(
                    &cluster.name,
                    StepId(format!("untaint:{name}:{}:{:?}", taint.key, taint.effect)),
                    StepKind::RemoveTaint {
                        node: name.clone(),
                        wanted: shape.clone(),
                        taint: taint.clone(),
                    },
                    Vec::new(),
                    false,
                );
            }
        }
        for taint in &pool.taints {
            if !node.taints.contains(taint) {
                self.push(
                    &cluster.name,
                    StepId(format!("taint:{name}:{}:{:?}", taint.key, taint.effect)),
                    StepKind::SetTaint {
                        node: name.clone(),
                        wanted: shape.clone(),
                        taint: taint.clone(),
                    },
                    Vec::new(),
                    false,
                );
            }
        }
    }

    fn protected(&mut self, cluster: &str, what: String) {
        for warning in &mut self.warnings {
            if let Warning::Protected {
                cluster: c,
                skipped,
            } = warning
            {
                if *c == cluster {
                    skipped.push(what);
                    return;
                }
            }
        }
        self.warnings.push(Warning::Protected {
            cluster: cluster.to_string(),
            skipped: vec![what],
        });
    }

    /// Keeps `kiwi-protected` on an owned machine true to its cluster's
    /// `protected`: assigned while the inventory protects it, removed (a
    /// step of its own, before anything destructive can be planned for the
    /// machine) once it does not.
    fn protection_tag(
        &mut self,
        cluster: &ClusterSpec,
        instance: &InstanceRef,
        observed: &Instance,
    ) {
        if !observed.is_owned() {
            return;
        }
        let tagged = observed.tags.contains(tags::PROTECTED);
        if cluster.protected && !tagged {
            let ensure = self.tag_step(tags::PROTECTED);
            self.assign(cluster, tags::PROTECTED, instance, ensure, None);
        } else if !cluster.protected && tagged {
            self.push(
                &cluster.name,
                StepId(format!("untag:{}:{}", tags::PROTECTED, instance.name)),
                StepKind::UnassignTag {
                    tag: tags::PROTECTED.to_string(),
                    instance: instance.clone(),
                },
                Vec::new(),
                false,
            );
        }
    }

    /// Owned instances no slot wants any more: drain, delete the node, cancel.
    /// Highest-numbered first; agents before servers; servers one at a time.
    /// Only instances attributed to a cluster by its tag, with a name of that
    /// cluster's slot form, are removed (see [`Attribution`]).
    fn removals(&mut self) {
        for instance in &self.observed.instances {
            if self.handled.contains(&instance.id.0) || !instance.is_owned() {
                continue;
            }
            if let Some(cancel_date) = instance.cancel_date {
                self.warnings.push(Warning::CancelledInstance {
                    name: instance.display_name.clone(),
                    instance: instance.id,
                    cancel_date,
                });
            }
        }
        let by_cluster = self.owners.removable.clone();
        // Desired clusters first, in inventory order, then removed ones.
        let mut order: Vec<String> = self
            .desired
            .clusters
            .iter()
            .map(|c| c.name.clone())
            .collect();
        order.extend(
            by_cluster
                .keys()
                .filter(|k| self.desired.cluster(k).is_none())
                .cloned(),
        );
        let mut by_cluster = by_cluster;
        for cluster in order {
            let Some(mut instances) = by_cluster.remove(&cluster) else {
                continue;
            };
            instances.sort_by(|a, b| {
                let a_server = a.pool == SERVER_POOL;
                let b_server = b.pool == SERVER_POOL;
                (a_server, &b.instance.display_name, &b.instance.id).cmp(&(
                    b_server,
                    &a.instance.display_name,
                    &a.instance.id,
                ))
            });
            let spec_protected = self.desired.cluster(&cluster).is_some_and(|c| c.protected);
            let (shielded, free): (Vec<Removable<'a>>, Vec<Removable<'a>>) = instances
                .into_iter()
                .partition(|r| spec_protected || r.instance.tags.contains(tags::PROTECTED));
            for r in shielded {
                // The inventory no longer protects it: lift the mark first,
                // in a step of its own; the plan after that may remove it.
                if !spec_protected
                    && self.desired.cluster(&cluster).is_some()
                    && r.instance.tags.contains(tags::PROTECTED)
                {
                    self.push(
                        &cluster,
                        StepId(format!(
                            "untag:{}:{}",
                            tags::PROTECTED,
                            r.instance.display_name
                        )),
                        StepKind::UnassignTag {
                            tag: tags::PROTECTED.to_string(),
                            instance: InstanceRef {
                                name: r.instance.display_name.clone(),
                                id: Some(r.instance.id),
                            },
                        },
                        Vec::new(),
                        false,
                    );
                }
                self.protected(
                    &cluster,
                    format!(
                        "remove {} (instance {}{})",
                        r.instance.display_name,
                        r.instance.id,
                        if spec_protected {
                            ""
                        } else {
                            "; it carries kiwi-protected, which this plan removes since the \
                             inventory no longer protects its cluster (or, if its customer file \
                             is gone, put it back with protected = false): plan again after"
                        }
                    ),
                );
            }
            instances = free;
            if instances.is_empty() {
                continue;
            }
            if let Some(spec) = self.desired.cluster(&cluster) {
                instances = self.keep_quorum(spec, instances);
            }
            self.remove_instances(&cluster, &instances);
        }
    }

    /// Takes the k3s servers out of `instances` when removing them would
    /// leave fewer servers than the etcd quorum of the servers there are now
    /// (3 → 1, 5 → 1): such a shrink is refused with a warning, and only
    /// the agents are removed. A cluster removed from the inventory is not
    /// checked: all of it goes, its servers last and one at a time.
    fn keep_quorum(
        &mut self,
        cluster: &ClusterSpec,
        instances: Vec<Removable<'a>>,
    ) -> Vec<Removable<'a>> {
        let (servers, others): (Vec<Removable<'a>>, Vec<Removable<'a>>) =
            instances.into_iter().partition(|r| r.pool == SERVER_POOL);
        if servers.is_empty() {
            return others;
        }
        // The servers there are now: the wanted server slots that have a
        // live owned instance, and the ones being removed.
        let wanted = cluster
            .server_slots()
            .filter(|name| {
                self.by_name
                    .get(name.as_str())
                    .is_some_and(|list| list.iter().any(|i| i.is_owned() && !i.is_cancelled()))
            })
            .count();
        let present = u32::try_from(wanted + servers.len()).unwrap_or(u32::MAX);
        let removed = u32::try_from(servers.len()).unwrap_or(u32::MAX);
        let quorum = present / 2 + 1;
        let left = present.saturating_sub(removed);
        if left >= quorum {
            let mut all = others;
            all.extend(servers);
            return all;
        }
        self.warnings.push(Warning::BelowQuorum {
            cluster: cluster.name.clone(),
            servers: present,
            wanted: left,
            quorum,
            skipped: servers
                .iter()
                .map(|r| {
                    format!(
                        "remove {} (instance {})",
                        r.instance.display_name, r.instance.id
                    )
                })
                .collect(),
        });
        others
    }

    fn remove_instances(&mut self, cluster: &str, instances: &[Removable<'a>]) {
        let observation = self.observed.cluster(cluster);
        let mut agents_done: Vec<StepId> = Vec::new();
        let mut previous_server: Option<StepId> = None;
        let mut drained: BTreeSet<String> = BTreeSet::new();
        for removable in instances {
            let instance = removable.instance;
            let is_server = removable.pool == SERVER_POOL;
            let mut after: Vec<StepId> = if is_server {
                previous_server
                    .clone()
                    .map_or_else(|| agents_done.clone(), |s| vec![s])
            } else {
                Vec::new()
            };
            let name = &instance.display_name;
            // Unobserved cluster: plan the node steps; apply checks first.
            let node_exists = observation.is_none_or(|o| o.node(name).is_some());
            if node_exists && drained.insert(name.clone()) {
                let node = NodeName(name.clone());
                let drain = self.push(
                    cluster,
                    StepId(format!("drain:{name}")),
                    StepKind::DrainNode { node: node.clone() },
                    after,
                    true,
                );
                let delete = self.push(
                    cluster,
                    StepId(format!("delete-node:{name}")),
                    StepKind::DeleteNode { node },
                    vec![drain],
                    true,
                );
                after = vec![delete];
            }
            let cancel = self.push(
                cluster,
                StepId(format!("cancel:{}", instance.id)),
                StepKind::CancelInstance {
                    instance: InstanceRef {
                        name: name.clone(),
                        id: Some(instance.id),
                    },
                    product: instance.product_id.clone(),
                    monthly_price: self.desired.price(&instance.product_id),
                },
                after,
                true,
            );
            if is_server {
                previous_server = Some(cancel);
            } else {
                agents_done.push(cancel);
            }
        }
    }

    /// Warnings for what attribution found: untrusted values, owned
    /// instances that match no slot.
    fn attribution_warnings(&mut self) {
        for instance in &self.observed.instances {
            if let Some(value) = &instance.odd_ipv4 {
                self.warnings.push(Warning::OddValue {
                    name: instance.display_name.clone(),
                    instance: instance.id,
                    field: "ipConfig.v4.ip".to_string(),
                    value: value.clone(),
                });
            }
        }
        for u in &self.owners.unattributed {
            self.handled.insert(u.instance.id.0);
            self.warnings.push(Warning::Unattributed {
                name: u.instance.display_name.clone(),
                instance: u.instance.id,
                cluster: u.cluster.clone(),
                reason: u.reason.clone(),
            });
        }
        for instance in self.owners.renamed.values() {
            self.handled.insert(instance.id.0);
        }
    }
}

/// An owned instance the inventory no longer wants, attributed to its
/// cluster by its tag.
#[derive(Debug, Clone)]
struct Removable<'a> {
    instance: &'a Instance,
    /// The pool its slot name names, within its tagged cluster.
    pool: String,
}

/// An owned instance that cannot be matched to one slot.
#[derive(Debug, Clone)]
struct Unattributed<'a> {
    instance: &'a Instance,
    cluster: Option<String>,
    reason: String,
}

/// Which owned instance belongs where, decided from what kiwi-infra
/// recorded and never from parsing a name:
///
/// - an instance whose name is exactly one slot of the inventory is that
///   slot's (a name two clusters produce is ambiguous: nothing is planned
///   for it);
/// - any other owned instance belongs to the cluster its cluster tag names
///   (apply assigns it before the ownership tag). Within that cluster it is
///   a renamed slot machine when its address is the address of a node of a
///   slot that has no instance, and a slot the inventory dropped when its
///   name has that cluster's slot form (`kiwi-<cluster>-<pool>-<NN>`);
/// - anything else (no cluster tag, several, a name of neither kind) is
///   unattributed: it gets no step, and orders that could buy its slot a
///   second time are held back.
#[derive(Debug, Clone, Default)]
struct Attribution<'a> {
    /// Slot names more than one cluster (or a control-plane node) claims.
    ambiguous: BTreeMap<String, Vec<String>>,
    /// Slot name → the owned instance renamed away from it.
    renamed: BTreeMap<String, &'a Instance>,
    /// Cluster → its instances to remove.
    removable: BTreeMap<String, Vec<Removable<'a>>>,
    unattributed: Vec<Unattributed<'a>>,
    /// Clusters whose orders wait (an unattributed instance is tagged there).
    hold_orders: BTreeSet<String>,
    /// Every cluster's orders wait (an unattributed instance's cluster is
    /// unknown).
    hold_all_orders: bool,
    /// Slots whose orders wait: an unwanted instance may be their machine.
    held_slots: BTreeSet<String>,
    /// Machines carrying a slot's name that are not that slot's (see
    /// [`Attribution::settle_duplicates`]).
    elsewhere: BTreeSet<InstanceId>,
}

impl<'a> Attribution<'a> {
    fn of(desired: &'a Desired, observed: &'a Observed) -> Self {
        let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (cluster, name) in desired.slot_names() {
            owners.entry(name).or_default().insert(cluster.name.clone());
        }
        let mut control_plane: BTreeMap<&str, &str> = BTreeMap::new();
        for cluster in &desired.clusters {
            if let ClusterKind::Kubeadm {
                control_plane: cp, ..
            } = &cluster.kind
            {
                for node in cp {
                    control_plane.insert(&node.name, &cluster.name);
                    if let Some(set) = owners.get_mut(&node.name) {
                        set.insert(format!("{} (control plane)", cluster.name));
                    }
                }
            }
        }
        let mut a = Attribution {
            ambiguous: owners
                .iter()
                .filter(|(_, c)| c.len() > 1)
                .map(|(n, c)| (n.clone(), c.iter().cloned().collect()))
                .collect(),
            ..Attribution::default()
        };
        let named: BTreeSet<&str> = observed
            .instances
            .iter()
            .filter(|i| !i.is_cancelled())
            .map(|i| i.display_name.as_str())
            .collect();
        let owned_live = owned_live_by_name(observed);
        for instance in &observed.instances {
            if !instance.is_owned() || instance.is_cancelled() {
                continue;
            }
            let clusters = tags::clusters_of(&instance.tags);
            // A slot's name is its slot's unless the machine's own tag says
            // another cluster: then it is that cluster's machine wearing a
            // name that is not its own, attributed by the tag below.
            if let Some(claimed) = owners.get(&instance.display_name) {
                // Its tag was read (see `cluster_tags_to_check`) and is gone:
                // kiwi-managed promises it, so whose machine this is cannot
                // be known, and no order anywhere may buy it again.
                let checked = claimed.len() == 1
                    && claimed.iter().next().is_some_and(|c| {
                        let name = instance.display_name.as_str();
                        let count = owned_live.get(name).copied().unwrap_or(0);
                        tags_checked(instance, observed, c, name, count)
                    });
                if clusters.is_empty() && checked {
                    a.unattributed(
                        instance,
                        None,
                        "its kiwi-cluster-* tag is missing although it carries kiwi-managed"
                            .to_string(),
                    );
                    continue;
                }
                let agrees = clusters.is_empty() || clusters.iter().all(|c| claimed.contains(*c));
                if agrees {
                    continue;
                }
            }
            let [cluster] = clusters.as_slice() else {
                let reason = if clusters.is_empty() {
                    "it carries no kiwi-cluster-* tag".to_string()
                } else {
                    format!("its tags name several clusters: {}", clusters.join(", "))
                };
                a.unattributed(instance, None, reason);
                continue;
            };
            // The tag's text is Contabo's answer, set by anyone with account
            // access: only a name kiwi-infra could have written (a DNS label,
            // the inventory's rule) attributes a machine. Anything else would
            // give node steps for a cluster no node layer accepts, run after
            // run, with the machine never cancelled.
            if let Err(bad) = crate::ids::ClusterName::parse(cluster) {
                a.unattributed(
                    instance,
                    None,
                    format!(
                        "its kiwi-cluster-* tag is not one kiwi-infra writes ({bad}): correct or \
                         remove it in Contabo"
                    ),
                );
                continue;
            }
            let cluster = (*cluster).to_string();
            if control_plane.contains_key(instance.display_name.as_str()) {
                a.unattributed(
                    instance,
                    Some(cluster),
                    "its name is a control-plane node's".to_string(),
                );
                continue;
            }
            // Renamed: the journal placed it for a slot without instance,
            // or its address is a node's of such a slot.
            let spec = desired.cluster(&cluster);
            let free = |n: &str| {
                spec.is_some_and(|spec| {
                    owners
                        .get(n)
                        .is_some_and(|c| c.len() == 1 && c.contains(&spec.name))
                        && !named.contains(n)
                })
            };
            let journaled = observed
                .journal_placed
                .iter()
                .find(|(slot, id)| **id == instance.id && free(slot))
                .map(|(slot, _)| slot.as_str());
            let slot = journaled.or_else(|| {
                spec.zip(observed.cluster(&cluster))
                    .and_then(|(spec, obs)| {
                        let ip = instance.ipv4?;
                        obs.nodes
                            .iter()
                            .filter(|n| n.addresses.contains(&ip))
                            .map(|n| n.name.0.as_str())
                            .find(|n| {
                                owners
                                    .get(*n)
                                    .is_some_and(|c| c.len() == 1 && c.contains(&spec.name))
                                    && !named.contains(n)
                            })
                    })
            });
            if let Some(slot) = slot {
                if a.renamed.contains_key(slot) {
                    a.unattributed(
                        instance,
                        Some(cluster),
                        format!("another instance also has node {slot}'s address"),
                    );
                } else {
                    a.renamed.insert(slot.to_string(), instance);
                }
                continue;
            }
            match slot_pool(&instance.display_name, &cluster) {
                Some(pool) => a
                    .removable
                    .entry(cluster)
                    .or_default()
                    .push(Removable { instance, pool }),
                None => a.unattributed(
                    instance,
                    Some(cluster.clone()),
                    format!("its name is no slot name of cluster {cluster}"),
                ),
            }
        }
        a.settle_duplicates(desired, observed, &named);
        a.hold_product_mismatches(desired, observed, &named);
        a.hold_lookalikes(desired, observed, &named);
        a
    }

    /// A machine of one product in a slot of another may be a free slot's
    /// machine renamed (a VDS renamed into a new VPS slot, say): unless the
    /// journal placed it for the slot it is in, the free slots of its
    /// product are not ordered.
    fn hold_product_mismatches(
        &mut self,
        desired: &Desired,
        observed: &'a Observed,
        named: &BTreeSet<&str>,
    ) {
        for cluster in &desired.clusters {
            for pool in &cluster.pools {
                for index in 1..=pool.count {
                    let slot = slot_name(&cluster.name, &pool.name, index);
                    for instance in observed.instances.iter().filter(|i| {
                        i.display_name == slot
                            && i.is_owned()
                            && !i.is_cancelled()
                            && i.product_id != pool.product
                            && observed.journal_placed.get(&slot) != Some(&i.id)
                    }) {
                        let free: Vec<String> = cluster
                            .pools
                            .iter()
                            .filter(|p| p.product == instance.product_id)
                            .flat_map(|p| {
                                (1..=p.count).map(|i| slot_name(&cluster.name, &p.name, i))
                            })
                            .filter(|n| {
                                !named.contains(n.as_str()) && !self.renamed.contains_key(n)
                            })
                            .collect();
                        if free.is_empty() {
                            continue;
                        }
                        self.unattributed.push(Unattributed {
                            instance,
                            cluster: Some(cluster.name.clone()),
                            reason: format!(
                                "it is a {} in slot {slot}, whose pool wants {}, while {} has no \
                                 instance: it may be that slot's machine renamed",
                                instance.product_id,
                                pool.product,
                                free.join(", ")
                            ),
                        });
                        self.held_slots.extend(free);
                    }
                }
            }
        }
    }

    /// Several owned machines carrying one slot's name: a double order, or
    /// another slot's machine renamed to it. The one the journal placed
    /// for that slot (else the oldest) keeps it; each other one is another
    /// slot's machine where the journal or its node's address says so, and
    /// otherwise holds its cluster's orders, so that the slot it came from
    /// is not bought a second time.
    fn settle_duplicates(
        &mut self,
        desired: &Desired,
        observed: &'a Observed,
        named: &BTreeSet<&str>,
    ) {
        let mut by_name: BTreeMap<&str, Vec<&'a Instance>> = BTreeMap::new();
        for i in &observed.instances {
            if i.is_owned() && !i.is_cancelled() {
                by_name.entry(i.display_name.as_str()).or_default().push(i);
            }
        }
        for (cluster, slot) in desired.slot_names() {
            let Some(list) = by_name.get(slot.as_str()).filter(|l| l.len() > 1) else {
                continue;
            };
            let mut list = list.clone();
            list.sort_by(|a, b| (a.created_date, &a.id).cmp(&(b.created_date, &b.id)));
            let keeper = list
                .iter()
                .find(|i| observed.journal_placed.get(&slot) == Some(&i.id))
                .or(list.first())
                .map(|i| i.id);
            for instance in list.into_iter().filter(|i| Some(&i.id) != keeper.as_ref()) {
                if !tags::clusters_of(&instance.tags)
                    .iter()
                    .all(|c| *c == cluster.name)
                {
                    continue; // another cluster's machine: attributed by its tag
                }
                let free = |n: &str| {
                    n != slot
                        && !named.contains(n)
                        && !self.renamed.contains_key(n)
                        && desired
                            .slot_names()
                            .any(|(c, s)| c.name == cluster.name && s == n)
                };
                let by_journal = observed
                    .journal_placed
                    .iter()
                    .find(|(s, id)| **id == instance.id && free(s))
                    .map(|(s, _)| s.clone());
                let by_address = || {
                    let ip = instance.ipv4?;
                    observed.cluster(&cluster.name)?.nodes.iter().find_map(|n| {
                        (n.addresses.contains(&ip) && free(&n.name.0)).then(|| n.name.0.clone())
                    })
                };
                if let Some(other) = by_journal.or_else(by_address) {
                    self.renamed.insert(other, instance);
                    self.elsewhere.insert(instance.id);
                    continue;
                }
                // No evidence. With no slot of its product free, it is a
                // plain double order (reported as such); otherwise it may be
                // a free slot's machine renamed: those slots are not ordered.
                let free_same_product: Vec<String> = cluster
                    .pools
                    .iter()
                    .filter(|p| p.product == instance.product_id)
                    .flat_map(|p| (1..=p.count).map(|i| slot_name(&cluster.name, &p.name, i)))
                    .filter(|n| free(n))
                    .collect();
                if free_same_product.is_empty() {
                    continue;
                }
                self.unattributed.push(Unattributed {
                    instance,
                    cluster: Some(cluster.name.clone()),
                    reason: format!(
                        "it shares slot {slot}'s name with another of its machines while {} has \
                         no instance, and nothing kiwi-infra recorded says which slot it is",
                        free_same_product.join(", ")
                    ),
                });
                self.held_slots.extend(free_same_product);
            }
        }
    }

    /// A machine renamed to another name of its cluster's slot form looks
    /// exactly like a slot the inventory dropped. When a cluster has both
    /// an instance it no longer wants (with nothing recorded for its own
    /// name: no journal entry, no node of that name at its address) and a
    /// slot of the same product without an instance, the one may be the
    /// other's machine: neither is removed nor ordered, and the plan says
    /// why.
    fn hold_lookalikes(&mut self, desired: &Desired, observed: &Observed, named: &BTreeSet<&str>) {
        let mut removable = std::mem::take(&mut self.removable);
        for (cluster, candidates) in &mut removable {
            let Some(spec) = desired.cluster(cluster) else {
                continue;
            };
            let observation = observed.cluster(cluster);
            let missing: Vec<(String, &str)> = spec
                .pools
                .iter()
                .flat_map(|p| {
                    (1..=p.count)
                        .map(move |i| (slot_name(&spec.name, &p.name, i), p.product.as_str()))
                })
                .filter(|(name, _)| {
                    !named.contains(name.as_str()) && !self.renamed.contains_key(name)
                })
                .collect();
            let proven = |r: &Removable<'_>| {
                let name = r.instance.display_name.as_str();
                observed.journal_placed.get(name) == Some(&r.instance.id)
                    || observation
                        .and_then(|o| o.node(name))
                        .zip(r.instance.ipv4)
                        .is_some_and(|(n, ip)| n.addresses.contains(&ip))
            };
            let (suspects, kept): (Vec<Removable<'a>>, Vec<Removable<'a>>) =
                std::mem::take(candidates).into_iter().partition(|r| {
                    !proven(r)
                        && missing
                            .iter()
                            .any(|(_, product)| *product == r.instance.product_id)
                });
            *candidates = kept;
            for r in suspects {
                let slots: Vec<&str> = missing
                    .iter()
                    .filter(|(_, product)| *product == r.instance.product_id)
                    .map(|(name, _)| name.as_str())
                    .collect();
                self.held_slots
                    .extend(slots.iter().map(|s| (*s).to_string()));
                self.unattributed.push(Unattributed {
                    instance: r.instance,
                    cluster: Some(cluster.clone()),
                    reason: format!(
                        "the inventory no longer wants it while {} has no instance, and nothing \
                         kiwi-infra recorded says it is not that slot's machine renamed; it is not \
                         removed",
                        slots.join(", ")
                    ),
                });
            }
        }
        removable.retain(|_, c| !c.is_empty());
        self.removable = removable;
    }

    fn unattributed(&mut self, instance: &'a Instance, cluster: Option<String>, reason: String) {
        match &cluster {
            Some(c) => {
                self.hold_orders.insert(c.clone());
            }
            None => self.hold_all_orders = true,
        }
        self.unattributed.push(Unattributed {
            instance,
            cluster,
            reason,
        });
    }

    /// True when no machine may be ordered for `cluster` now.
    fn holds_orders_of(&self, cluster: &str, slot: &str) -> bool {
        self.hold_all_orders || self.hold_orders.contains(cluster) || self.held_slots.contains(slot)
    }
}

/// True when the plan would reinstall or join `instance`, an existing
/// machine named as slot `name`: Contabo reports it broken, or its cluster
/// is observed and has no node of that name.
/// The steps reordered so that each comes after every step it depends on,
/// otherwise keeping their order (a stable topological sort). A step on a
/// dependency cycle (a planner bug) keeps its place at the end.
fn dependencies_first(steps: Vec<Step>) -> Vec<Step> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let index: BTreeMap<StepId, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let mut waiting: Vec<usize> = vec![0; steps.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        for dep in &step.depends_on {
            if let Some(&d) = index.get(dep) {
                waiting[i] += 1;
                dependents[d].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..steps.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &next in &dependents[i] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    let placed: BTreeSet<usize> = order.iter().copied().collect();
    order.extend((0..steps.len()).filter(|i| !placed.contains(i)));
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// True when the step `id` depends on `on`, directly or through other
/// steps of `steps`.
fn depends_on(steps: &[Step], id: &StepId, on: &StepId) -> bool {
    let by_id: BTreeMap<&StepId, &Step> = steps.iter().map(|s| (&s.id, s)).collect();
    let mut seen: BTreeSet<&StepId> = BTreeSet::new();
    let mut todo = vec![id];
    while let Some(current) = todo.pop() {
        for dep in by_id
            .get(current)
            .map(|s| s.depends_on.as_slice())
            .unwrap_or(&[])
        {
            if dep == on {
                return true;
            }
            if seen.insert(dep) {
                todo.push(dep);
            }
        }
    }
    false
}

fn installs_existing(
    instance: &Instance,
    observation: Option<&ClusterObservation>,
    name: &str,
) -> bool {
    instance.status.needs_reinstall() || observation.is_some_and(|o| o.node(name).is_none())
}

/// True when the cluster tag of `instance`, named as slot `name` of
/// `cluster`, is read by the observation ([`cluster_tags_to_check`]).
/// `owned_live` counts the owned, live instances carrying `name`.
fn tags_checked(
    instance: &Instance,
    observed: &Observed,
    cluster: &str,
    name: &str,
    owned_live: usize,
) -> bool {
    installs_existing(instance, observed.cluster(cluster), name)
        || instance.tags.contains(tags::PROTECTED)
        || owned_live > 1
}

/// Owned, live instances per display name: counted once, not per instance.
fn owned_live_by_name(observed: &Observed) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for i in observed
        .instances
        .iter()
        .filter(|i| i.is_owned() && !i.is_cancelled())
    {
        *counts.entry(i.display_name.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Owned instances whose cluster tag must be read before planning, each
/// with the cluster whose slot name it carries: those the plan would
/// reinstall or join (see [`installs_existing`]), those marked
/// `kiwi-protected` (whose mark only their own cluster may lift), and
/// those sharing a slot's name with another owned instance. In a settled
/// account that is one look-up per protected cluster.
pub fn cluster_tags_to_check(desired: &Desired, observed: &Observed) -> Vec<(InstanceId, String)> {
    let mut by_name: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for instance in &observed.instances {
        by_name
            .entry(instance.display_name.as_str())
            .or_default()
            .push(instance);
    }
    let owned_live = owned_live_by_name(observed);
    let mut wanted = Vec::new();
    for (cluster, name) in desired.slot_names() {
        for instance in by_name.get(name.as_str()).into_iter().flatten() {
            if instance.is_owned()
                && !instance.is_cancelled()
                && tags::clusters_of(&instance.tags).is_empty()
                && tags_checked(
                    instance,
                    observed,
                    &cluster.name,
                    &name,
                    owned_live.get(name.as_str()).copied().unwrap_or(0),
                )
            {
                wanted.push((instance.id, cluster.name.clone()));
            }
        }
    }
    wanted
}

/// The addresses of the nodes kiwi-infra may reach, by node name: each
/// slot's owned instance (by its exact name, or renamed and recognised by
/// its node's address), and each owned instance being removed. Nothing else
/// an API answer names becomes an SSH target.
pub fn node_addresses(desired: &Desired, observed: &Observed) -> BTreeMap<String, Ipv4Addr> {
    addresses_of(desired, observed, &Attribution::of(desired, observed))
}

/// [`node_addresses`], with the attribution the planner made already.
fn addresses_of(
    desired: &Desired,
    observed: &Observed,
    owners: &Attribution<'_>,
) -> BTreeMap<String, Ipv4Addr> {
    let mut addresses = BTreeMap::new();
    let mut live: Vec<&Instance> = observed
        .instances
        .iter()
        .filter(|i| observed.is_ours(i) && !i.is_cancelled())
        .collect();
    live.sort_by(|a, b| (b.created_date, &b.id).cmp(&(a.created_date, &a.id)));
    let slots: BTreeSet<String> = desired.slot_names().map(|(_, name)| name).collect();
    for instance in live {
        // Oldest last, so the oldest of a double order wins, as in the plan.
        if slots.contains(&instance.display_name)
            && !owners.ambiguous.contains_key(&instance.display_name)
        {
            if let Some(ip) = instance.ipv4 {
                addresses.insert(instance.display_name.clone(), ip);
            }
        }
    }
    for (slot, instance) in &owners.renamed {
        if let Some(ip) = instance.ipv4 {
            addresses.insert(slot.clone(), ip);
        }
    }
    for r in owners.removable.values().flatten() {
        if let Some(ip) = r.instance.ipv4 {
            addresses.insert(r.instance.display_name.clone(), ip);
        }
    }
    addresses
}

/// The tags that say which cluster and class an owned instance belongs to;
/// [`tags::MANAGED`] follows them.
fn descriptive_tags(cluster: &ClusterSpec, pool: &PoolSpec) -> Vec<String> {
    let mut t = vec![tags::cluster(&cluster.name), tags::class(pool.class)];
    if cluster.protected {
        t.push(tags::PROTECTED.to_string());
    }
    t
}

fn brief(instance: &Instance) -> InstanceBrief {
    InstanceBrief {
        id: instance.id,
        created_date: instance.created_date,
        status: instance.status.clone(),
        owned: instance.is_owned(),
    }
}
