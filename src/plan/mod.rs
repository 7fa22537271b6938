//! Planning: compare the inventory with what Contabo and the clusters report,
//! and list the steps that would make them match. [`plan()`] is pure (no I/O,
//! no clock), so a plan can be reviewed, saved, tested against golden files,
//! and checked for staleness before it is applied.

mod observed;
mod planner;
mod private_network;
mod render;
mod saved;
mod simulate;
mod steps;

pub use observed::{
    tags, ClusterObservation, ImageId, Instance, InstanceId, InstanceStatus, Node, NodeFirewall,
    NodeName, Observed, ObservedBackend, OtherBackend, ResolvedImage, SecretId, TagId,
    MANAGED_LABELS_ANNOTATION,
};
pub use planner::{
    cluster_tags_to_check, firewall_as_loaded, needs_order_inputs, node_addresses, observed_drift,
    plan, ssh_key_secret_name, PlanOptions,
};
pub use private_network::{
    cluster_address, network_name, private_addresses, MemberStatus, NetworkMember, PrivateNetwork,
};
pub use render::{render_human, render_json, summary_line, RenderOptions, NO_CHANGES};
pub use saved::{fingerprint, SavedPlan, SavedPlanError, Stale, SAVED_PLAN_FORMAT_VERSION};
pub use simulate::simulate;
pub use steps::{
    ImageRef, InstanceBrief, InstanceRef, K3sJoin, KubeadmJoin, KubeadmRole, NodeShape, Order,
    Plan, Reinstall, SetFirewall, Step, StepId, StepKind, Summary, Unverified, UserDataTemplate,
    WaitCause, Warning, PLAN_FORMAT_VERSION,
};
