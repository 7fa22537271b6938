//! The plan as data: an ordered list of fully specified steps with their
//! dependencies, warnings for what needs a human, and a summary. `apply`
//! carries the steps out and makes no decisions of its own; a saved plan and
//! `--json` are this structure serialised (see `docs/plan-json.md`).

use super::observed::{ImageId, InstanceId, InstanceStatus, NodeName};
use crate::firewall::{FirewallShape, FlannelBackend};
use crate::inventory::{Money, NodeClass, PoolRole, Taint};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Version of the plan's JSON form. Bump it on any incompatible change.
pub const PLAN_FORMAT_VERSION: u32 = 3;

/// A plan: what to do, in order, to make Contabo and the clusters match the
/// inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// Steps in an order that respects their dependencies.
    pub steps: Vec<Step>,
    /// Existing nodes of clusters that could not be observed: their join,
    /// labels and taints are not verified by this plan.
    pub unverified: Vec<Unverified>,
    /// Slots whose machine an earlier, interrupted apply ordered (the order
    /// journal claims it) but did not finish tagging: this plan's tag steps
    /// for them finish those orders instead of buying again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub finishing_orders: BTreeSet<String>,
    /// Things the operator must know or decide.
    pub warnings: Vec<Warning>,
    /// Counts and cost.
    pub summary: Summary,
}

impl Plan {
    /// True when no step changes anything (warnings may remain). Waits alone
    /// change nothing: a wait for a machine that needs a human stays in
    /// every plan until the human acts, as its warning does, and apply
    /// reports it as needing the operator.
    pub fn is_empty(&self) -> bool {
        !self.steps.iter().any(|s| s.kind.changes_something())
    }

    /// True when the inventory is not realised yet: there are steps (the
    /// destructive ones `--allow-destroy` must approve included), or a
    /// change is held back (see [`Warning::leaves_work`]). The one rule
    /// behind `plan --detailed-exitcode` exiting 2 and `apply` exiting 2
    /// ("pending"), so the two never disagree.
    pub fn has_changes(&self) -> bool {
        !self.is_empty() || self.warnings.iter().any(Warning::leaves_work)
    }

    /// The waits for machines that earlier runs ordered or reinstalled
    /// ([`WaitCause::Earlier`]): what apply waits for although this plan
    /// starts nothing on them.
    pub fn earlier_waits(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| {
            matches!(
                s.kind,
                StepKind::WaitForRunning {
                    cause: WaitCause::Earlier,
                    ..
                }
            )
        })
    }

    /// The step with this id.
    pub fn step(&self, id: &StepId) -> Option<&Step> {
        self.steps.iter().find(|s| &s.id == id)
    }
}

/// A step's id, unique within a plan and stable across plans of the same
/// state, e.g. `order:kiwi-acme-server-01`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id.
    pub id: StepId,
    /// The cluster it belongs to; `None` for account-wide steps (secrets, tags).
    pub cluster: Option<String>,
    /// What to do.
    #[serde(flatten)]
    pub kind: StepKind,
    /// Steps that must have succeeded first.
    pub depends_on: Vec<StepId>,
    /// Loses data or capacity (drain, delete, cancel, reinstall of a running
    /// instance); `apply` only does it with `--allow-destroy`.
    pub destructive: bool,
}

/// Names an instance: by id when it exists, by display name when an earlier
/// step of the plan orders it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceRef {
    /// Display name (the slot name for kiwi-infra's instances).
    pub name: String,
    /// Instance id, `None` until ordered.
    pub id: Option<InstanceId>,
}

/// The OS image of an order or reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Name from the inventory.
    pub name: String,
    /// Id resolved through the API; `None` if no image has that name (a
    /// warning says so, and `apply` refuses to order).
    pub id: Option<ImageId>,
}

/// Which cloud-init template renders an instance's user data. The plan names
/// the template only; the rendered user data (with its generated host key)
/// never appears in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserDataTemplate {
    /// A k3s server node.
    K3sServer,
    /// A k3s agent node.
    K3sAgent,
    /// A kubeadm worker of the Core cluster.
    KubeadmWorker,
}

impl UserDataTemplate {
    /// The template for a pool role.
    pub fn for_role(role: PoolRole) -> Self {
        match role {
            PoolRole::K3sServer => UserDataTemplate::K3sServer,
            PoolRole::K3sAgent => UserDataTemplate::K3sAgent,
            PoolRole::KubeadmWorker => UserDataTemplate::KubeadmWorker,
        }
    }
}

/// Why apply waits for an instance to be `running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitCause {
    /// This plan orders it (the step it depends on).
    Order,
    /// This plan reinstalls it (the step it depends on).
    Reinstall,
    /// An earlier run ordered or reinstalled it, and it is not running yet
    /// (or is in a status that needs a human, which the wait reports).
    Earlier,
}

/// An order of one instance (`POST /v1/compute/instances`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Slot name, used as `displayName` and node name. (The cluster is the
    /// step's own `cluster`.)
    pub slot: NodeName,
    /// Pool name.
    pub pool: String,
    /// Role of the node.
    pub role: PoolRole,
    /// Product id.
    pub product: String,
    /// Product name, for people.
    pub product_name: String,
    /// Node class.
    pub class: NodeClass,
    /// Region.
    pub region: String,
    /// OS image.
    pub image: ImageRef,
    /// Contract period in months.
    pub period: u8,
    /// Monthly price from the inventory, in cents.
    #[serde(rename = "monthly_price_cents")]
    pub monthly_price: Money,
    /// Name of the secret holding the operator's SSH key.
    pub ssh_key_secret: String,
    /// User-data template. Its inputs are this step's fields: the slot
    /// (hostname), the key that [`Self::ssh_key_secret`] names by digest
    /// (the operator's public key, checked against that digest before it
    /// is written), the Kubernetes version and the firewall.
    pub user_data: UserDataTemplate,
    /// The cluster's Kubernetes version (`v1.31.4`), for a kubeadm node's
    /// package repository; `None` for k3s nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The host firewall the node is born with (written by cloud-init to
    /// `/etc/nftables.conf`): part of the user data, so part of the plan.
    pub firewall: FirewallShape,
    /// Monthly price of the private-networking add-on booked with the
    /// order (`addOns.privateNetworking`), in cents, from `[prices]
    /// private_networking`; `None` when the add-on is not booked.
    #[serde(
        default,
        rename = "private_networking_monthly_price_cents",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_networking: Option<Money>,
}

impl Order {
    /// What the order adds to the monthly bill: the product and any add-on.
    pub fn monthly_total(&self) -> Money {
        Money::from_cents(self.monthly_price.cents + self.private_networking.map_or(0, |m| m.cents))
    }
}

/// A reinstall of an owned instance (`PUT /v1/compute/instances/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reinstall {
    /// The instance.
    pub instance: InstanceRef,
    /// Its status when observed, the reason for the reinstall.
    pub status: InstanceStatus,
    /// OS image.
    pub image: ImageRef,
    /// Name of the secret holding the operator's SSH key.
    pub ssh_key_secret: String,
    /// User-data template (its inputs as for [`Order::user_data`]).
    pub user_data: UserDataTemplate,
    /// The cluster's Kubernetes version, for a kubeadm node; `None` for k3s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The host firewall the node is born with (as for [`Order::firewall`]).
    pub firewall: FirewallShape,
    /// The private network whose NIC this reinstall wires (Contabo wires a
    /// member's NIC only on a reinstall); `None` when it is not for that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_network: Option<String>,
}

/// Joining one node to a k3s cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sJoin {
    /// Node name.
    pub node: NodeName,
    /// The instance it runs on.
    pub instance: InstanceRef,
    /// k3s version.
    pub version: String,
    /// The server node to join through; `None` for the first server, which
    /// initialises the cluster.
    pub via: Option<NodeName>,
    /// Labels the node registers with.
    pub labels: BTreeMap<String, String>,
    /// Taints the node registers with.
    pub taints: Vec<Taint>,
    /// flannel's backend, written to a server's `config.yaml`
    /// (`flannel-backend`); `None` for agents, which take the servers'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel_backend: Option<FlannelBackend>,
    /// The cluster's private network, when its cluster traffic uses it:
    /// the node's `node-ip` (and the address it joins through) is then its
    /// private address in this network, learned when it was assigned or
    /// observed; `node-external-ip` stays its public address. `None`: the
    /// public address serves for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_network: Option<String>,
}

/// One node's host firewall, as a plan step sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFirewall {
    /// The node.
    pub node: NodeName,
    /// Everything its firewall admits, peers known at plan time included.
    pub wanted: FirewallShape,
    /// Members whose address is not known at plan time (a node this plan
    /// orders): slot names. The step depends on each one's wait, and the
    /// executor adds the address that wait found to `wanted`'s peers.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pending_peers: BTreeSet<String>,
    /// What differs on the node now, one line each, for people
    /// ("peer 192.0.2.9 not admitted").
    pub drift: Vec<String>,
}

/// Role of a node joining with kubeadm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubeadmRole {
    /// A worker.
    Worker,
    /// A (replacement) control-plane node.
    ControlPlane,
}

/// Joining one node to the Core cluster with `kubeadm join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeadmJoin {
    /// Node name.
    pub node: NodeName,
    /// The instance it runs on.
    pub instance: InstanceRef,
    /// Worker or control plane.
    pub role: KubeadmRole,
    /// Control-plane node that creates the join token.
    pub via: NodeName,
    /// API endpoint, `host:port`.
    pub api_endpoint: String,
    /// Kubernetes version to install.
    pub kubernetes_version: String,
    /// Labels the node registers with.
    pub labels: BTreeMap<String, String>,
    /// Taints the node registers with.
    pub taints: Vec<Taint>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// Create the secret holding the operator's SSH public key.
    EnsureSecret {
        /// Secret name; it embeds a digest of the key, so a new key gets a
        /// new secret.
        name: String,
    },
    /// Create a tag.
    EnsureTag {
        /// Tag name.
        name: String,
    },
    /// Create a cluster's private network (`POST /v1/private-networks`),
    /// looked up by name first so that a rerun or a second operator never
    /// creates two.
    EnsurePrivateNetwork {
        /// Network name, `kiwi-<cluster>`.
        name: String,
        /// Region, as the instances'.
        region: String,
    },
    /// Add an instance to its cluster's private network (`POST
    /// /v1/private-networks/{id}/instances/{instanceId}`); it needs the
    /// private-networking add-on (booked with the order). Its private NIC
    /// works only after the reinstall that follows.
    AssignPrivateNetwork {
        /// Network name.
        network: String,
        /// The instance.
        instance: InstanceRef,
    },
    /// Order an instance.
    OrderInstance(Order),
    /// Wait until an instance is `running`, its address known and its
    /// node answering over SSH: what node steps of its slot depend on.
    /// Statuses that need a human are reported with advice and end the
    /// wait as not done.
    WaitForRunning {
        /// The instance (by id once it exists).
        instance: InstanceRef,
        /// Why it is waited for.
        cause: WaitCause,
    },
    /// Give an owned instance its slot's name back (`PATCH
    /// /v1/compute/instances/{id}`, `displayName`): it was renamed, in the
    /// Contabo panel say, and is recognised as the slot's machine by its
    /// address, which is its node's.
    RenameInstance {
        /// The instance, by id, with the slot name it gets back.
        instance: InstanceRef,
        /// The name it carries now (as the API sent it; shown escaped).
        current_name: String,
    },
    /// Assign a tag to an instance.
    AssignTag {
        /// Tag name.
        tag: String,
        /// The instance.
        instance: InstanceRef,
    },
    /// Remove a tag from an instance (`kiwi-protected`, once the inventory
    /// no longer protects its cluster).
    UnassignTag {
        /// Tag name.
        tag: String,
        /// The instance.
        instance: InstanceRef,
    },
    /// Reinstall an owned instance instead of ordering a new one.
    ReinstallInstance(Reinstall),
    /// Start the first k3s server with `--cluster-init`.
    BootstrapK3sServer(K3sJoin),
    /// Join a k3s server to the cluster.
    JoinK3sServer(K3sJoin),
    /// Join a k3s agent to the cluster.
    JoinK3sAgent(K3sJoin),
    /// Join a node with kubeadm.
    KubeadmJoin(KubeadmJoin),
    /// Set (add or change) a node label.
    SetLabel {
        /// Node.
        node: NodeName,
        /// Every label and taint the node should carry from kiwi-infra.
        wanted: NodeShape,
        /// Label key.
        key: String,
        /// New value.
        value: String,
        /// Value it has now, if any.
        previous: Option<String>,
    },
    /// Remove a node label.
    RemoveLabel {
        /// Node.
        node: NodeName,
        /// Every label and taint the node should carry from kiwi-infra.
        wanted: NodeShape,
        /// Label key.
        key: String,
        /// Value it has now.
        previous: String,
    },
    /// Record on a node which labels kiwi-infra set there (the annotation
    /// `kiwistack.io/managed-labels`), so that a label the inventory drops
    /// later is removed while labels other software set are left alone.
    /// Runs after the node's label changes of the same plan: a label whose
    /// removal failed stays recorded, and the next plan removes it again.
    RecordLabels {
        /// Node.
        node: NodeName,
        /// The label keys kiwi-infra sets on it now.
        keys: BTreeSet<String>,
        /// The record it carries now; `None` when it has none.
        previous: Option<BTreeSet<String>>,
    },
    /// Set a taint (replacing any with the same key and effect).
    SetTaint {
        /// Node.
        node: NodeName,
        /// Every label and taint the node should carry from kiwi-infra.
        wanted: NodeShape,
        /// Taint.
        taint: Taint,
    },
    /// Remove a taint.
    RemoveTaint {
        /// Node.
        node: NodeName,
        /// Every label and taint the node should carry from kiwi-infra.
        wanted: NodeShape,
        /// Taint.
        taint: Taint,
    },
    /// Cordon and drain a node.
    DrainNode {
        /// Node.
        node: NodeName,
    },
    /// Delete a node object (and, for a k3s server, its etcd membership).
    DeleteNode {
        /// Node.
        node: NodeName,
    },
    /// Delete a node object that is not `Ready` and whose machine is gone
    /// (cancelled, or being reinstalled), so that the slot's new machine
    /// can join under the same name. Nothing is done on any machine.
    DeleteStaleNode {
        /// Node.
        node: NodeName,
    },
    /// Make a node's host firewall the plan's (write `/etc/nftables.conf`
    /// and load it): its peer set follows the cluster's members, and a hand
    /// edit is undone. Not destructive: it only ever admits the cluster's
    /// members, and drops a node's address only once that node is no
    /// member (after its removal step, which is gated itself).
    SetFirewall(SetFirewall),
    /// Cancel an instance; it keeps running until its cancel date.
    CancelInstance {
        /// The instance.
        instance: InstanceRef,
        /// Its product id.
        product: String,
        /// Monthly price saved, in cents, if the inventory has a price for it.
        #[serde(rename = "monthly_price_cents")]
        monthly_price: Option<Money>,
    },
}

impl StepKind {
    /// False for waits, which change nothing themselves (a plan of waits
    /// alone has no changes, see [`Plan::has_changes`]).
    pub fn changes_something(&self) -> bool {
        !matches!(self, StepKind::WaitForRunning { .. })
    }

    /// True for steps that act on a node or a cluster over SSH rather than
    /// on Contabo.
    pub fn is_node_step(&self) -> bool {
        matches!(
            self,
            StepKind::BootstrapK3sServer(_)
                | StepKind::JoinK3sServer(_)
                | StepKind::JoinK3sAgent(_)
                | StepKind::KubeadmJoin(_)
                | StepKind::SetLabel { .. }
                | StepKind::RemoveLabel { .. }
                | StepKind::RecordLabels { .. }
                | StepKind::SetTaint { .. }
                | StepKind::RemoveTaint { .. }
                | StepKind::DrainNode { .. }
                | StepKind::DeleteNode { .. }
                | StepKind::DeleteStaleNode { .. }
                | StepKind::SetFirewall(_)
        )
    }

    /// The slot (node or instance name) the step acts on; `None` for
    /// account-wide steps (secrets, tags).
    pub fn slot(&self) -> Option<&str> {
        match self {
            StepKind::OrderInstance(o) => Some(&o.slot.0),
            StepKind::ReinstallInstance(r) => Some(&r.instance.name),
            StepKind::WaitForRunning { instance, .. }
            | StepKind::AssignPrivateNetwork { instance, .. }
            | StepKind::AssignTag { instance, .. }
            | StepKind::UnassignTag { instance, .. }
            | StepKind::CancelInstance { instance, .. }
            | StepKind::RenameInstance { instance, .. } => Some(&instance.name),
            StepKind::BootstrapK3sServer(j)
            | StepKind::JoinK3sServer(j)
            | StepKind::JoinK3sAgent(j) => Some(&j.node.0),
            StepKind::KubeadmJoin(j) => Some(&j.node.0),
            StepKind::SetFirewall(f) => Some(&f.node.0),
            StepKind::SetLabel { node, .. }
            | StepKind::RemoveLabel { node, .. }
            | StepKind::RecordLabels { node, .. }
            | StepKind::SetTaint { node, .. }
            | StepKind::RemoveTaint { node, .. }
            | StepKind::DrainNode { node }
            | StepKind::DeleteNode { node }
            | StepKind::DeleteStaleNode { node } => Some(&node.0),
            StepKind::EnsureSecret { .. }
            | StepKind::EnsureTag { .. }
            | StepKind::EnsurePrivateNetwork { .. } => None,
        }
    }
}

/// The labels and taints a node should carry from kiwi-infra (its pool's,
/// as it registers them when it joins). Each label and taint step carries
/// the whole set, so what it writes on the node (a k3s node's
/// `config.yaml`) is the same whichever of a node's steps runs last: two
/// steps of one node never undo each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShape {
    /// Labels, by key.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
}

/// An existing node of an unobserved cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unverified {
    /// Cluster.
    pub cluster: String,
    /// Node (slot) name.
    pub node: NodeName,
    /// Labels it should carry.
    pub labels: BTreeMap<String, String>,
    /// Taints it should carry.
    pub taints: Vec<Taint>,
}

/// One instance in a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceBrief {
    /// Instance id.
    pub id: InstanceId,
    /// Creation date.
    pub created_date: DateTime<Utc>,
    /// Status.
    pub status: InstanceStatus,
    /// Whether it carries the ownership tag.
    pub owned: bool,
}

/// Something the operator must know or decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Several live instances share a slot name: a past double order.
    DuplicateInstances {
        /// Slot name.
        name: String,
        /// All of them, oldest first.
        instances: Vec<InstanceBrief>,
        /// The one the plan uses; the others are left alone.
        kept: InstanceId,
    },
    /// An instance has a slot's name but not the ownership tag.
    NeedsAdoption {
        /// Slot name.
        name: String,
        /// The instance.
        instance: InstanceBrief,
    },
    /// An instance is in a state only a human (or Contabo) can resolve.
    NeedsAttention {
        /// Display name.
        name: String,
        /// Instance id.
        instance: InstanceId,
        /// Its status.
        status: InstanceStatus,
    },
    /// A cancelled instance is still present; it is not counted as capacity.
    CancelledInstance {
        /// Display name.
        name: String,
        /// Instance id.
        instance: InstanceId,
        /// Date it stops.
        cancel_date: NaiveDate,
    },
    /// The inventory's OS image was not found.
    ImageUnresolved {
        /// Image name.
        image: String,
    },
    /// An owned instance differs from its pool in a way the plan does not fix.
    Mismatch {
        /// Slot name.
        name: String,
        /// Instance id.
        instance: InstanceId,
        /// `product` or `region`.
        field: String,
        /// What the inventory says.
        expected: String,
        /// What the instance has.
        actual: String,
    },
    /// Destructive steps not planned because the cluster is protected.
    Protected {
        /// Cluster.
        cluster: String,
        /// What was not planned, one entry per node.
        skipped: Vec<String>,
    },
    /// Removing k3s servers was refused: fewer would be left than the etcd
    /// quorum of the servers there are now. Nothing of it is planned.
    BelowQuorum {
        /// Cluster.
        cluster: String,
        /// Servers there are now.
        servers: u32,
        /// Servers the inventory asks for.
        wanted: u32,
        /// The etcd quorum of `servers`.
        quorum: u32,
        /// What was not planned, one entry per server.
        skipped: Vec<String>,
    },
    /// A node cannot join because its cluster has no server to join.
    NoServerToJoin {
        /// Cluster.
        cluster: String,
        /// Node.
        node: NodeName,
    },
    /// A control-plane node listed in the inventory is not in the cluster.
    ControlPlaneNodeMissing {
        /// Cluster.
        cluster: String,
        /// Node.
        node: NodeName,
    },
    /// A slot name that two clusters of the inventory (or a cluster and a
    /// control-plane node) both produce: nothing is planned for it.
    AmbiguousSlot {
        /// The name.
        name: String,
        /// The clusters it could belong to.
        clusters: Vec<String>,
    },
    /// An owned instance kiwi-infra cannot match to one slot from what it
    /// recorded (tags, the node's address): nothing is planned for it.
    Unattributed {
        /// Its display name, as the API sent it (shown escaped).
        name: String,
        /// Instance id.
        instance: InstanceId,
        /// The cluster its tag names, when exactly one does.
        cluster: Option<String>,
        /// Why it is not attributed.
        reason: String,
    },
    /// Orders not planned, so that a machine that may be one of these
    /// slots' (see the `unattributed` warnings) is not bought twice.
    OrdersHeld {
        /// The cluster, or `None` for every cluster.
        cluster: Option<String>,
        /// The slots left without an order.
        slots: Vec<String>,
    },
    /// A slot's node is in its cluster and `Ready`, but no instance
    /// carries the slot's name or can be matched to it: nothing is ordered
    /// or joined for it.
    NodeWithoutInstance {
        /// Cluster.
        cluster: String,
        /// Node.
        node: NodeName,
    },
    /// What kiwi-infra observed about an instance contradicts itself:
    /// nothing destructive is planned for it.
    SignalsDisagree {
        /// Slot or display name.
        name: String,
        /// Instance id.
        instance: InstanceId,
        /// What disagrees.
        what: String,
    },
    /// The servers of a running k3s cluster use another flannel backend
    /// than the inventory wants. The plan never changes a running
    /// cluster's backend; new servers join with the running one, and the
    /// warning gives the migration.
    FlannelBackendDiffers {
        /// Cluster.
        cluster: String,
        /// The backend its servers run (a known name or a plain word;
        /// `None`: not a plain word).
        running: Option<String>,
        /// The inventory's.
        wanted: FlannelBackend,
    },
    /// The servers of a k3s cluster name different flannel backends (a
    /// mix k3s does not support): no firewall change is planned for the
    /// cluster until they agree.
    FlannelBackendsMixed {
        /// Cluster.
        cluster: String,
        /// Per server: its backend (`?` when not a plain word).
        servers: BTreeMap<String, String>,
    },
    /// A running k3s cluster whose servers' flannel backend could not be
    /// read: the ports its firewalls must open are unknown, so they are
    /// unverified and not changed.
    FlannelBackendUnread {
        /// Cluster.
        cluster: String,
    },
    /// A cluster's public ports open what its nodes keep for operators or
    /// members (SSH, the API, etcd, the kubelet, the CNI its servers run):
    /// the inventory was checked against the backend it names, the running
    /// cluster uses another. The port is left out of every firewall the plan
    /// sets or a new node is born with.
    PublicPortReserved {
        /// Cluster.
        cluster: String,
        /// The public port, as the inventory names it (`udp/8472`).
        port: String,
        /// What the firewall keeps it for (`flannel's vxlan backend`).
        what: String,
    },
    /// A node's firewall could not be read: it is unverified, and the plan
    /// changes nothing on it.
    FirewallUnreadable {
        /// Node.
        node: NodeName,
        /// Why (kiwi-infra's words).
        reason: String,
    },
    /// `[provider] operator_networks = []`, or networks that make up a whole
    /// address family: every node's firewall leaves SSH and the Kubernetes
    /// API open to anyone, as the inventory chose.
    OperatorNetworksOpen,
    /// `[provider] operator_networks` cover a very large part of the
    /// internet without being everyone
    /// ([`crate::firewall::wide_operator_networks`]).
    OperatorNetworksWide {
        /// How much, in kiwi-infra's words.
        covered: String,
    },
    /// A node of a cluster with `private_network = true` that is not a
    /// working member of the cluster's private network: joining it needs
    /// the add-on and a reinstall, which rebuilds the node, so kiwi-infra
    /// does not do it to a running node.
    OutsidePrivateNetwork {
        /// Cluster.
        cluster: String,
        /// Node.
        node: NodeName,
        /// Where it stands (not a member; member with status `reinstall`).
        state: String,
    },
    /// Several private networks carry the cluster's network name: which is
    /// the cluster's is not known, so nothing is assigned or joined there.
    AmbiguousPrivateNetwork {
        /// Cluster.
        cluster: String,
        /// The name.
        network: String,
        /// How many carry it.
        count: u32,
    },
    /// A cluster without `private_network = true` has a private network of
    /// its name: kiwi-infra neither unassigns its members nor deletes it,
    /// and its nodes keep the addresses they joined with.
    PrivateNetworkKept {
        /// Cluster.
        cluster: String,
        /// The network.
        network: String,
        /// Its members.
        members: u32,
    },
    /// A value from the API that kiwi-infra does not use, because it is
    /// not of the expected form.
    OddValue {
        /// Display name of the instance.
        name: String,
        /// Instance id.
        instance: InstanceId,
        /// The field, e.g. `ipConfig.v4.ip`.
        field: String,
        /// The value, as sent (shown escaped).
        value: String,
    },
}

impl Warning {
    /// True for a change the inventory asks for that is refused on purpose
    /// (a protected cluster, etcd quorum): not planned, and not done.
    pub fn holds_back(&self) -> bool {
        matches!(
            self,
            Warning::Protected { .. } | Warning::BelowQuorum { .. } | Warning::OrdersHeld { .. }
        )
    }

    /// True for a change the inventory asks for that is not planned: held
    /// back on purpose ([`Warning::holds_back`]), or waiting for the
    /// operator or Contabo (an order Contabo holds, such as
    /// `product_not_available`; an instance to adopt; an unknown image).
    /// Such a plan counts as having changes.
    pub fn leaves_work(&self) -> bool {
        self.holds_back()
            || matches!(
                self,
                Warning::NeedsAttention { .. }
                    | Warning::NeedsAdoption { .. }
                    | Warning::ImageUnresolved { .. }
                    | Warning::OutsidePrivateNetwork { .. }
                    | Warning::AmbiguousPrivateNetwork { .. }
            )
    }
}

/// Counts and monthly cost of a plan. Money is in cents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Instances to order.
    pub to_order: u32,
    /// Monthly cost of the orders, in cents.
    #[serde(rename = "monthly_cost_added_cents")]
    pub monthly_cost_added: Money,
    /// Instances to reinstall.
    pub to_reinstall: u32,
    /// Nodes to bootstrap or join.
    pub to_bootstrap: u32,
    /// Label changes (set or remove).
    pub labels_to_change: u32,
    /// Taint changes (set or remove).
    pub taints_to_change: u32,
    /// Nodes whose record of kiwi-infra's labels is written or updated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_records: u32,
    /// Private networks to create.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub private_networks_to_create: u32,
    /// Instances to add to a private network.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub private_network_members_to_add: u32,
    /// Monthly cost of the private-networking add-ons booked with the
    /// orders, in cents (also counted in `monthly_cost_added_cents`).
    #[serde(
        default,
        rename = "private_networking_monthly_cost_cents",
        skip_serializing_if = "is_zero_money"
    )]
    pub private_networking_cost: Money,
    /// Tag assignments.
    pub tags_to_assign: u32,
    /// Existing instances getting tags (adopted, or tags lost).
    pub instances_to_tag: u32,
    /// Nodes whose host firewall is set (drift, peers joining or leaving).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub firewalls_to_set: u32,
    /// Nodes to drain or delete.
    pub nodes_to_remove: u32,
    /// Instances to cancel.
    pub to_cancel: u32,
    /// Monthly cost saved by the cancellations (known prices only), in cents.
    #[serde(rename = "monthly_cost_removed_cents")]
    pub monthly_cost_removed: Money,
    /// Steps marked destructive.
    pub destructive: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_money(m: &Money) -> bool {
    m.cents == 0
}

impl Summary {
    /// Counts the steps of a plan.
    pub fn of(steps: &[Step]) -> Summary {
        let mut s = Summary::default();
        let mut tagged = std::collections::BTreeSet::new();
        for step in steps {
            if step.destructive {
                s.destructive += 1;
            }
            match &step.kind {
                StepKind::OrderInstance(o) => {
                    s.to_order += 1;
                    s.monthly_cost_added.cents += o.monthly_total().cents;
                    s.private_networking_cost.cents += o.private_networking.map_or(0, |m| m.cents);
                }
                StepKind::EnsurePrivateNetwork { .. } => s.private_networks_to_create += 1,
                StepKind::AssignPrivateNetwork { .. } => s.private_network_members_to_add += 1,
                StepKind::ReinstallInstance(_) => s.to_reinstall += 1,
                StepKind::BootstrapK3sServer(_)
                | StepKind::JoinK3sServer(_)
                | StepKind::JoinK3sAgent(_)
                | StepKind::KubeadmJoin(_) => s.to_bootstrap += 1,
                StepKind::SetLabel { .. } | StepKind::RemoveLabel { .. } => s.labels_to_change += 1,
                StepKind::SetTaint { .. } | StepKind::RemoveTaint { .. } => s.taints_to_change += 1,
                StepKind::RecordLabels { .. } => s.label_records += 1,
                StepKind::SetFirewall(_) => s.firewalls_to_set += 1,
                StepKind::AssignTag { instance, .. } => {
                    s.tags_to_assign += 1;
                    if let Some(id) = &instance.id {
                        tagged.insert(*id);
                    }
                }
                StepKind::DeleteNode { .. } | StepKind::DeleteStaleNode { .. } => {
                    s.nodes_to_remove += 1
                }
                StepKind::CancelInstance { monthly_price, .. } => {
                    s.to_cancel += 1;
                    s.monthly_cost_removed.cents += monthly_price.map_or(0, |m| m.cents);
                }
                StepKind::EnsureSecret { .. }
                | StepKind::EnsureTag { .. }
                | StepKind::WaitForRunning { .. }
                | StepKind::UnassignTag { .. }
                | StepKind::RenameInstance { .. }
                | StepKind::DrainNode { .. } => {}
            }
        }
        s.instances_to_tag = u32::try_from(tagged.len()).unwrap_or(u32::MAX);
        s
    }
}
