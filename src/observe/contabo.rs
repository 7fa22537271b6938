//! What the Contabo account holds, read with as few calls as the API allows:
//! all instance pages, kiwi-infra's own tags (`kiwi-*`), and the instance
//! assignments of the ownership and protection tags — never one call per
//! instance. The stored secrets and the OS image are read only when a plan
//! would order or reinstall ([`read_order_inputs`]).
//!
//! An owned instance whose name is exactly one of the inventory's slot
//! names needs nothing more. Any other owned instance (a slot the
//! inventory no longer wants, or a machine renamed in the Contabo panel)
//! is attributed to a cluster by the cluster tag apply assigned it, never
//! by reading its name: so the assignments of cluster tags are read for
//! those instances only, the likeliest tags first.

use std::collections::{BTreeMap, BTreeSet};

use crate::contabo::models::{Image, Instance, InstanceId, StoredSecret, Tag, TagId};
use crate::contabo::{CloudApi, ContaboError};
use crate::inventory::Desired;
use crate::plan;

/// The tag that marks an instance as kiwi-infra's. Apply assigns it after the
/// cluster and class tags, so its presence means the instance is fully tagged.
pub const OWNERSHIP_TAG: &str = plan::tags::MANAGED;

/// The account as observed at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSnapshot {
    /// Every instance, cancelled ones included.
    pub instances: Vec<Instance>,
    /// Every tag.
    pub tags: Vec<Tag>,
    /// Instances carrying [`OWNERSHIP_TAG`].
    pub owned: BTreeSet<InstanceId>,
    /// Instances carrying `kiwi-protected` ([`plan::tags::PROTECTED`]).
    pub protected: BTreeSet<InstanceId>,

    /// The cluster tags (`kiwi-cluster-*`) of owned instances whose name is
    /// not a slot of the inventory; read for those only.
    pub cluster_tags: BTreeMap<InstanceId, BTreeSet<String>>,

    /// The private networks named like a cluster's of the inventory
    /// (`kiwi-<cluster>`), parsed; read only when some cluster has
    /// `private_network = true`.
    pub private_networks: BTreeMap<String, plan::PrivateNetwork>,
}

/// Reads the account. The independent lists are fetched concurrently; the
/// ownership tag's assignments follow once its id is known, then the
/// cluster tags of owned instances that are not the inventory's slots.
pub async fn observe_account(
    api: &impl CloudApi,
    desired: &Desired,
) -> Result<AccountSnapshot, ContaboError> {
    let networks = async {
        if desired.clusters.iter().any(|c| c.private_network) {
            api.list_private_networks().await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (instances, tags, networks) =
        tokio::try_join!(api.list_instances(), api.list_tags(), networks)?;
    let private_networks = match networks {
        Some(list) => private_networks_of(desired, list)?,
        None => BTreeMap::new(),
    };
    let tagged = |name: &'static str| {
        let tag = tags.iter().find(|t| t.name == name).map(|t| t.tag_id);
        async move {
            match tag {
                Some(id) => instances_tagged(api, id).await,
                None => Ok(BTreeSet::new()),
            }
        }
    };
    let (owned, protected) =
        tokio::try_join!(tagged(OWNERSHIP_TAG), tagged(plan::tags::PROTECTED))?;
    let slots: BTreeSet<String> = desired.slot_names().map(|(_, name)| name).collect();
    let unmatched: Vec<&Instance> = instances
        .iter()
        .filter(|i| owned.contains(&i.instance_id) && !slots.contains(&i.display_name))
        .collect();
    let cluster_tags = cluster_tags_of(api, &tags, &unmatched).await?;
    Ok(AccountSnapshot {
        instances,
        tags,
        owned,
        protected,
        cluster_tags,
        private_networks,
    })
}

/// The networks named like a cluster's of `desired`, parsed at the edge: a
/// member's private address that is not an IPv4 address is an error naming
/// the field, never a value to use.
pub fn private_networks_of(
    desired: &Desired,
    list: Vec<crate::contabo::models::PrivateNetwork>,
) -> Result<BTreeMap<String, plan::PrivateNetwork>, ContaboError> {
    let names: BTreeSet<String> = desired
        .clusters
        .iter()
        .map(|c| plan::network_name(&c.name))
        .collect();
    let mut out: BTreeMap<String, plan::PrivateNetwork> = BTreeMap::new();
    for net in list.into_iter().filter(|n| names.contains(&n.name)) {
        let mut members = Vec::new();
        for m in &net.instances {
            let private_ipv4 = m.private_ipv4().map_err(|what| ContaboError::Untrusted {
                path: format!("/v1/private-networks ({})", net.name),
                what,
            })?;
            members.push(plan::NetworkMember {
                instance: m.instance_id,
                private_ipv4,
                status: plan::MemberStatus::parse(m.status.as_str()),
            });
        }
        match out.get_mut(&net.name) {
            Some(seen) => seen.same_name += 1,
            None => {
                out.insert(
                    net.name.clone(),
                    plan::PrivateNetwork {
                        id: net.private_network_id,
                        name: net.name,
                        same_name: 1,
                        members,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The Contabo reads that depend on what the clusters showed: the cluster
/// tags of machines the plan would reinstall or join
/// ([`check_cluster_tags`]), then, if a plan would order or reinstall, the
/// secrets and the image ([`read_order_inputs`]).
pub async fn complete_observation(
    api: &impl CloudApi,
    desired: &Desired,
    observed: &mut plan::Observed,
) -> Result<(), ContaboError> {
    check_cluster_tags(api, desired, observed).await?;
    if observed.order_inputs_unread && plan::needs_order_inputs(desired, observed) {
        read_order_inputs(api, desired, observed).await?;
    }
    Ok(())
}

/// Reads what an order or a reinstall names: the stored secrets (to find
/// the operator's SSH key) and the inventory's OS image, into `observed`.
/// Called when [`plan::needs_order_inputs`] says a plan would need them.
pub async fn read_order_inputs(
    api: &impl CloudApi,
    desired: &Desired,
    observed: &mut plan::Observed,
) -> Result<(), ContaboError> {
    let image_name = &desired.provider.image;
    let (secrets, images) =
        tokio::try_join!(api.list_secrets(), api.find_images_by_name(image_name),)?;
    observed.secrets = secrets_by_name(secrets);
    observed.image = resolved_image(images, image_name);
    observed.order_inputs_unread = false;
    Ok(())
}

fn secrets_by_name(secrets: Vec<StoredSecret>) -> BTreeMap<String, plan::SecretId> {
    secrets
        .into_iter()
        .map(|s| (s.name, plan::SecretId(s.secret_id.0)))
        .collect()
}

fn resolved_image(images: Vec<Image>, image_name: &str) -> Option<plan::ResolvedImage> {
    images
        .into_iter()
        .find(|i| i.name == image_name)
        .map(|i| plan::ResolvedImage {
            name: i.name,
            id: plan::ImageId(i.image_id),
        })
}

/// The instances a tag is assigned to.
async fn instances_tagged(
    api: &impl CloudApi,
    tag: TagId,
) -> Result<BTreeSet<InstanceId>, ContaboError> {
    Ok(api
        .list_tag_assignments(tag)
        .await?
        .into_iter()
        .filter(|a| a.resource_type == "instance")
        .filter_map(|a| a.resource_id.parse().ok().map(InstanceId))
        .collect())
}

/// The cluster tags of `instances`. The tags of clusters whose slot prefix
/// (`kiwi-<cluster>-`) the instance's name starts with are read first: for
/// a slot the inventory dropped, that is one or two look-ups. Only if some
/// instance is still without a cluster tag (renamed in the panel) are the
/// other cluster tags read. The name only decides which evidence to read
/// first; the attribution itself is the tag.
async fn cluster_tags_of(
    api: &impl CloudApi,
    tags: &[Tag],
    instances: &[&Instance],
) -> Result<BTreeMap<InstanceId, BTreeSet<String>>, ContaboError> {
    let mut found: BTreeMap<InstanceId, BTreeSet<String>> = BTreeMap::new();
    if instances.is_empty() {
        return Ok(found);
    }
    let cluster_tags: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.name.starts_with(plan::tags::CLUSTER_PREFIX))
        .collect();
    let likely: BTreeSet<&str> = cluster_tags
        .iter()
        .filter(|t| {
            let cluster = &t.name[plan::tags::CLUSTER_PREFIX.len()..];
            let prefix = format!("kiwi-{cluster}-");
            instances
                .iter()
                .any(|i| i.display_name.starts_with(&prefix))
        })
        .map(|t| t.name.as_str())
        .collect();
    let wanted: BTreeSet<InstanceId> = instances.iter().map(|i| i.instance_id).collect();
    let read = |found: &mut BTreeMap<InstanceId, BTreeSet<String>>,
                tag: &Tag,
                members: BTreeSet<InstanceId>| {
        for id in members.intersection(&wanted) {
            found.entry(*id).or_default().insert(tag.name.clone());
        }
    };
    for tag in cluster_tags
        .iter()
        .filter(|t| likely.contains(t.name.as_str()))
    {
        read(&mut found, tag, instances_tagged(api, tag.tag_id).await?);
    }
    if wanted.iter().any(|id| !found.contains_key(id)) {
        for tag in cluster_tags
            .iter()
            .filter(|t| !likely.contains(t.name.as_str()))
        {
            read(&mut found, tag, instances_tagged(api, tag.tag_id).await?);
        }
    }
    Ok(found)
}

impl AccountSnapshot {
    /// The snapshot as the planner's plain data. Only the ownership tag's
    /// assignments are read for every instance (see [`OWNERSHIP_TAG`]), so an
    /// instance's tag set holds that tag or nothing, plus its cluster tags
    /// when it is owned but not one of the inventory's slots.
    pub fn into_observed(self) -> plan::Observed {
        let owned = self.owned;
        let protected = self.protected;
        let mut cluster_tags = self.cluster_tags;
        let instances = self
            .instances
            .into_iter()
            .map(|i| plan::Instance {
                tags: if owned.contains(&i.instance_id) {
                    let mut tags = cluster_tags.remove(&i.instance_id).unwrap_or_default();
                    tags.insert(OWNERSHIP_TAG.to_string());
                    if protected.contains(&i.instance_id) {
                        tags.insert(plan::tags::PROTECTED.to_string());
                    }
                    tags
                } else {
                    BTreeSet::new()
                },
                ipv4: i.ipv4(),
                odd_ipv4: i.odd_ipv4().map(str::to_string),
                id: i.instance_id,
                display_name: i.display_name,
                product_id: i.product_id,
                region: i.region.to_string(),
                status: plan::InstanceStatus::parse(i.status.as_str()),
                created_date: i.created_date,
                cancel_date: i.cancel_date,
                image_id: i.image_id.map(plan::ImageId),
            })
            .collect();
        plan::Observed {
            instances,
            tags: self
                .tags
                .into_iter()
                .map(|t| (t.name, plan::TagId(t.tag_id.0)))
                .collect(),
            secrets: BTreeMap::new(),
            image: None,
            clusters: Default::default(),
            journal_placed: Default::default(),
            order_inputs_unread: true,
            private_networks: self.private_networks,
        }
    }
}

/// Reads the cluster tags of the owned instances the plan would reinstall
/// or join ([`plan::cluster_tags_to_check`]) into their tag sets: a
/// machine's name only claims a cluster, its tag says which it is. The
/// claimed cluster's tag is read first (one look-up per cluster); only an
/// instance not found there has the other cluster tags read, so that the
/// plan can say whose it is.
pub async fn check_cluster_tags(
    api: &impl CloudApi,
    desired: &Desired,
    observed: &mut plan::Observed,
) -> Result<(), ContaboError> {
    let wanted = plan::cluster_tags_to_check(desired, observed);
    if wanted.is_empty() {
        return Ok(());
    }
    let cluster_tags: BTreeMap<String, plan::TagId> = observed
        .tags
        .iter()
        .filter(|(name, _)| name.starts_with(plan::tags::CLUSTER_PREFIX))
        .map(|(name, id)| (name.clone(), *id))
        .collect();
    let mut found: BTreeMap<plan::InstanceId, BTreeSet<String>> = BTreeMap::new();
    let mut read: BTreeSet<String> = BTreeSet::new();
    let claimed: BTreeSet<String> = wanted
        .iter()
        .map(|(_, cluster)| plan::tags::cluster(cluster))
        .collect();
    let read_tag = |found: &mut BTreeMap<plan::InstanceId, BTreeSet<String>>,
                    name: &String,
                    members: BTreeSet<InstanceId>| {
        for (id, _) in &wanted {
            if members.contains(id) {
                found.entry(*id).or_default().insert(name.clone());
            }
        }
    };
    for name in &claimed {
        if let Some(id) = cluster_tags.get(name) {
            read.insert(name.clone());
            read_tag(&mut found, name, instances_tagged(api, *id).await?);
        }
    }
    let unexplained = wanted.iter().any(|(id, cluster)| {
        !found
            .get(id)
            .is_some_and(|t| t.contains(&plan::tags::cluster(cluster)))
    });
    if unexplained {
        for (name, id) in cluster_tags.iter().filter(|(n, _)| !read.contains(*n)) {
            read_tag(&mut found, name, instances_tagged(api, *id).await?);
        }
    }
    for instance in &mut observed.instances {
        if let Some(tags) = found.remove(&instance.id) {
            instance.tags.extend(tags);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::contabo::models::{
        MemberStatus, PrivateIpConfig, PrivateIpv4, PrivateNetwork, PrivateNetworkMember,
    };

    fn network(id: i64, name: &str, ip: &str) -> PrivateNetwork {
        PrivateNetwork {
            private_network_id: id,
            name: name.into(),
            region: None,
            cidr: None,
            instances: vec![PrivateNetworkMember {
                instance_id: InstanceId(5),
                display_name: String::new(),
                private_ip_config: PrivateIpConfig {
                    v4: vec![PrivateIpv4 {
                        ip: ip.into(),
                        netmask_cidr: Some(22),
                    }],
                },
                status: MemberStatus::Reinstall,
            }],
        }
    }

    #[test]
    fn only_cluster_networks_are_kept_and_a_name_worn_twice_is_counted() {
        let desired = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        )
        .unwrap();
        let found = private_networks_of(
            &desired,
            vec![
                network(1, "kiwi-stadtwerke-nord", "10.0.0.2"),
                network(2, "kiwi-stadtwerke-nord", "10.0.4.2"),
                network(3, "someone-elses", "10.0.8.2"),
            ],
        )
        .unwrap();
        assert_eq!(found.len(), 1);
        let net = &found["kiwi-stadtwerke-nord"];
        assert_eq!(net.same_name, 2);
        assert_eq!(net.members[0].status, plan::MemberStatus::Reinstall);
        assert_eq!(
            net.members[0].private_ipv4,
            Some(std::net::Ipv4Addr::new(10, 0, 0, 2))
        );
        // An address that does not parse is an error naming the field,
        // never an address to use.
        let e = private_networks_of(
            &desired,
            vec![network(
                1,
                "kiwi-stadtwerke-nord",
                "10.0.0.2 -o ProxyCommand=x",
            )],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("privateIpConfig.v4[0].ip of instance 5"),
            "{e}"
        );
    }
}
