//! What the Contabo account holds, read with as few calls as the API allows:
//! all instance pages, the tag list, the secret list, the image by name, and
//! the assignments of the one ownership tag — never one call per instance.

use std::collections::BTreeSet;

use crate::contabo::models::{Image, Instance, InstanceId, StoredSecret, Tag};
use crate::contabo::{CloudApi, ContaboError};

/// The tag that marks an instance as kiwi-infra's. Apply assigns it after the
/// cluster and class tags, so its presence means the instance is fully tagged.
pub const OWNERSHIP_TAG: &str = "kiwi-managed";

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
