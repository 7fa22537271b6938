//! What the Contabo account holds, read with as few calls as the API allows:
//! all instance pages, the tag list, the secret list, the image by name, and
//! the assignments of the one ownership tag — never one call per instance.

use std::collections::BTreeSet;

use crate::contabo::models::{Image, Instance, InstanceId, StoredSecret, Tag};
use crate::contabo::{CloudApi, ContaboError};
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
    /// Stored secrets (names and ids only).
    pub secrets: Vec<StoredSecret>,
    /// Images with the inventory's image name (normally exactly one).
    pub images: Vec<Image>,
}

/// Reads the account. The independent lists are fetched concurrently; the
/// ownership tag's assignments follow once its id is known.
pub async fn observe_account(
    api: &impl CloudApi,
    image_name: &str,
) -> Result<AccountSnapshot, ContaboError> {
    let (instances, tags, secrets, images) = tokio::try_join!(
        api.list_instances(),
        api.list_tags(),
        api.list_secrets(),
        api.find_images_by_name(image_name),
    )?;
    let owned = match tags.iter().find(|t| t.name == OWNERSHIP_TAG) {
        Some(tag) => api
            .list_tag_assignments(tag.tag_id)
            .await?
            .into_iter()
            .filter(|a| a.resource_type == "instance")
            .filter_map(|a| a.resource_id.parse().ok().map(InstanceId))
            .collect(),
        None => BTreeSet::new(),
    };
    Ok(AccountSnapshot {
        instances,
        tags,
        owned,
        secrets,
        images,
    })
}

impl AccountSnapshot {
    /// The snapshot as the planner's plain data. Only the ownership tag's
    /// assignments are read (see [`OWNERSHIP_TAG`]), so an instance's tag set
    /// holds that tag or nothing.
    pub fn into_observed(self, image_name: &str) -> plan::Observed {
        let owned = self.owned;
        let instances = self
            .instances
            .into_iter()
            .map(|i| plan::Instance {
                tags: if owned.contains(&i.instance_id) {
                    BTreeSet::from([OWNERSHIP_TAG.to_string()])
                } else {
                    BTreeSet::new()
                },
                ipv4: i.ipv4().map(str::to_string),
                id: plan::InstanceId(i.instance_id.0),
                display_name: i.display_name,
                product_id: i.product_id,
                region: i.region.to_string(),
                status: plan::InstanceStatus::parse(i.status.as_str()),
                created_date: i.created_date,
                cancel_date: i.cancel_date,
                image_id: i.image_id.map(plan::ImageId),
            })
            .collect();
        let image = self
            .images
            .into_iter()
            .find(|i| i.name == image_name)
            .map(|i| plan::ResolvedImage {
                name: i.name,
                id: plan::ImageId(i.image_id),
            });
        plan::Observed {
            instances,
            tags: self
                .tags
                .into_iter()
                .map(|t| (t.name, plan::TagId(t.tag_id.0)))
                .collect(),
            secrets: self
                .secrets
                .into_iter()
                .map(|s| (s.name, plan::SecretId(s.secret_id.0)))
                .collect(),
            image,
            clusters: Default::default(),
        }
    }
}
