//! [`CloudApi`]: the narrow seam between kiwi-infra's logic and Contabo.
//!
//! Observation and execution depend on this trait, not on HTTP, so they can
//! be tested against a stateful fake as well as against the mock server.

use std::future::Future;

use super::client::{ContaboClient, InstanceFilter, OrderResolution};
use super::error::{ContaboError, UnconfirmedOrder};
use super::models::{
    CreateInstance, CreatedInstance, Image, Instance, InstanceId, PrivateNetwork,
    ReinstallInstance, StoredSecret, Tag, TagAssignment, TagId,
};

/// What kiwi-infra needs from a cloud provider.
pub trait CloudApi: Send + Sync {
    /// Every instance of the account.
    fn list_instances(&self) -> impl Future<Output = Result<Vec<Instance>, ContaboError>> + Send;

    /// Instances whose display name is exactly `name`.
    fn find_instances_by_display_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<Instance>, ContaboError>> + Send;

    /// The instances with these ids that exist (absent ones are left out):
    /// what a wait polls, at a cost that follows the ids, not the account.
    fn instances_by_ids(
        &self,
        ids: &[InstanceId],
    ) -> impl Future<Output = Result<Vec<Instance>, ContaboError>> + Send;

    /// One instance.
    fn get_instance(
        &self,
        id: InstanceId,
    ) -> impl Future<Output = Result<Instance, ContaboError>> + Send;

    /// Places an order; see [`ContaboClient::create_instance`] for why a lost
    /// answer comes back as [`ContaboError::OrderOutcomeUnknown`].
    fn create_instance(
        &self,
        order: CreateInstance,
    ) -> impl Future<Output = Result<CreatedInstance, ContaboError>> + Send;

    /// Looks for the instance of an order whose answer was lost.
    fn resolve_unconfirmed_order(
        &self,
        order: UnconfirmedOrder,
    ) -> impl Future<Output = Result<OrderResolution, ContaboError>> + Send;

    /// Reinstalls an instance without a new order.
    fn reinstall_instance(
        &self,
        id: InstanceId,
        request: &ReinstallInstance,
    ) -> impl Future<Output = Result<(), ContaboError>> + Send;

    /// Sets an instance's `displayName` (no new order, nothing reinstalled).
    fn rename_instance(
        &self,
        id: InstanceId,
        display_name: &str,
    ) -> impl Future<Output = Result<(), ContaboError>> + Send;

    /// Cancels an instance; returns the date it stops.
    fn cancel_instance(
        &self,
        id: InstanceId,
    ) -> impl Future<Output = Result<Option<chrono::NaiveDate>, ContaboError>> + Send;

    /// kiwi-infra's own tags: those whose name starts with `kiwi-`
    /// ([`crate::plan::tags::PREFIX`]). Other software's tags are not read.
    fn list_tags(&self) -> impl Future<Output = Result<Vec<Tag>, ContaboError>> + Send;

    /// Creates a tag.
    fn create_tag(
        &self,
        name: &str,
        color: &str,
    ) -> impl Future<Output = Result<TagId, ContaboError>> + Send;

    /// Every assignment of a tag to an instance.
    fn list_tag_assignments(
        &self,
        tag: TagId,
    ) -> impl Future<Output = Result<Vec<TagAssignment>, ContaboError>> + Send;

    /// Assigns a tag to an instance (idempotent).
    fn assign_tag(
        &self,
        tag: TagId,
        instance: InstanceId,
    ) -> impl Future<Output = Result<(), ContaboError>> + Send;

    /// Removes a tag from an instance (idempotent).
    fn unassign_tag(
        &self,
        tag: TagId,
        instance: InstanceId,
    ) -> impl Future<Output = Result<(), ContaboError>> + Send;

    /// All stored secrets, without values.
    fn list_secrets(&self) -> impl Future<Output = Result<Vec<StoredSecret>, ContaboError>> + Send;

    /// Stores a public SSH key.
    fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
    ) -> impl Future<Output = Result<StoredSecret, ContaboError>> + Send;

    /// Images named exactly `name`.
    fn find_images_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<Image>, ContaboError>> + Send;

    /// Every private network of the account, with its members.
    fn list_private_networks(
        &self,
    ) -> impl Future<Output = Result<Vec<PrivateNetwork>, ContaboError>> + Send;

    /// Private networks named exactly `name`.
    fn find_private_networks_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<PrivateNetwork>, ContaboError>> + Send;

    /// Creates a private network in `region`; never retried blindly (see
    /// [`ContaboClient::create_private_network`]).
    fn create_private_network(
        &self,
        name: &str,
        region: &str,
        description: &str,
    ) -> impl Future<Output = Result<PrivateNetwork, ContaboError>> + Send;

    /// Adds an instance to a private network (idempotent; 402 without the
    /// private-networking add-on).
    fn assign_private_network(
        &self,
        network: i64,
        instance: InstanceId,
    ) -> impl Future<Output = Result<(), ContaboError>> + Send;
}

impl CloudApi for ContaboClient {
    async fn list_instances(&self) -> Result<Vec<Instance>, ContaboError> {
        ContaboClient::list_instances(self, &InstanceFilter::default()).await
    }

    async fn find_instances_by_display_name(
        &self,
        name: &str,
    ) -> Result<Vec<Instance>, ContaboError> {
        ContaboClient::find_instances_by_display_name(self, name).await
    }

    async fn instances_by_ids(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ContaboError> {
        ContaboClient::instances_by_ids(self, ids).await
    }

    async fn get_instance(&self, id: InstanceId) -> Result<Instance, ContaboError> {
        ContaboClient::get_instance(self, id).await
    }

    async fn create_instance(
        &self,
        order: CreateInstance,
    ) -> Result<CreatedInstance, ContaboError> {
        ContaboClient::create_instance(self, order).await
    }

    async fn resolve_unconfirmed_order(
        &self,
        order: UnconfirmedOrder,
    ) -> Result<OrderResolution, ContaboError> {
        ContaboClient::resolve_unconfirmed_order(self, order).await
    }

    async fn reinstall_instance(
        &self,
        id: InstanceId,
        request: &ReinstallInstance,
    ) -> Result<(), ContaboError> {
        ContaboClient::reinstall_instance(self, id, request).await
    }

    async fn rename_instance(
        &self,
        id: InstanceId,
        display_name: &str,
    ) -> Result<(), ContaboError> {
        ContaboClient::rename_instance(self, id, display_name).await
    }

    async fn cancel_instance(
        &self,
        id: InstanceId,
    ) -> Result<Option<chrono::NaiveDate>, ContaboError> {
        ContaboClient::cancel_instance(self, id).await
    }

    async fn list_tags(&self) -> Result<Vec<Tag>, ContaboError> {
        ContaboClient::list_tags_with_prefix(self, crate::plan::tags::PREFIX).await
    }

    async fn create_tag(&self, name: &str, color: &str) -> Result<TagId, ContaboError> {
        ContaboClient::create_tag(self, name, color).await
    }

    async fn list_tag_assignments(&self, tag: TagId) -> Result<Vec<TagAssignment>, ContaboError> {
        ContaboClient::list_tag_assignments(self, tag).await
    }

    async fn assign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        ContaboClient::assign_tag(self, tag, instance).await
    }

    async fn unassign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        ContaboClient::unassign_tag(self, tag, instance).await
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, ContaboError> {
        ContaboClient::list_secrets(self).await
    }

    async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<StoredSecret, ContaboError> {
        ContaboClient::create_ssh_key(self, name, public_key).await
    }

    async fn find_images_by_name(&self, name: &str) -> Result<Vec<Image>, ContaboError> {
        ContaboClient::find_images_by_name(self, name).await
    }

    async fn list_private_networks(&self) -> Result<Vec<PrivateNetwork>, ContaboError> {
        ContaboClient::list_private_networks(self).await
    }

    async fn find_private_networks_by_name(
        &self,
        name: &str,
    ) -> Result<Vec<PrivateNetwork>, ContaboError> {
        ContaboClient::find_private_networks_by_name(self, name).await
    }

    async fn create_private_network(
        &self,
        name: &str,
        region: &str,
        description: &str,
    ) -> Result<PrivateNetwork, ContaboError> {
        ContaboClient::create_private_network(self, name, region, description).await
    }

    async fn assign_private_network(
        &self,
        network: i64,
        instance: InstanceId,
    ) -> Result<(), ContaboError> {
        ContaboClient::assign_private_network(self, network, instance).await
    }
}
