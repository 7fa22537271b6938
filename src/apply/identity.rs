//! Identity: what an ordered or reinstalled machine is born with. Each gets
//! a new host key, whose public half is recorded in the inventory's
//! `known_hosts` before the request is sent (so a crash right after cannot
//! leave a node whose key kiwi-infra does not know), and user data rendered
//! from the plan step's template with the operator's SSH key — the key the
//! step names by digest, checked to be the inventory's.
//!
//! It exists apart from the order protocol and the instance steps because
//! it is where secrets are made: the host key's private half exists only in
//! the returned user data, which is a [`Secret`].

use std::path::Path;

use crate::cloudinit::{self, UserDataVars};
use crate::contabo::models::{
    CreateInstance, CreateInstanceAddOns, Period, Region, ReinstallInstance,
};
use crate::contabo::CloudApi;
use crate::firewall::FirewallShape;
use crate::plan::{self, Order, Reinstall, Step, UserDataTemplate};
use crate::secret::Secret;
use crate::ssh::{HostKey, KnownHosts};

use super::account::Account;
use super::error::ApplyError;

/// The operator's key and where host keys are recorded.
pub(super) struct Identity<'a> {
    /// The operator's OpenSSH public key (`ApplySettings::ssh_public_key`).
    ssh_public_key: &'a str,
    /// Where host keys are recorded (`ApplySettings::known_hosts`).
    known_hosts: Option<KnownHosts>,
}

/// What an order's or a reinstall's step says its user data is made of.
#[derive(Debug, Clone, Copy)]
struct UserDataInputs<'a> {
    template: UserDataTemplate,
    ssh_public_key: &'a str,
    kubernetes_version: Option<&'a str>,
    firewall: &'a FirewallShape,
}

impl<'a> Identity<'a> {
    /// `known_hosts`: `None` only in tests, where keys are generated but
    /// not recorded (such nodes cannot be reached over SSH).
    pub(super) fn new(ssh_public_key: &'a str, known_hosts: Option<&Path>) -> Self {
        Identity {
            ssh_public_key,
            known_hosts: known_hosts.map(KnownHosts::new),
        }
    }

    /// The operator's public key, checked to be the one the step names by
    /// digest (`secret`, the name of the secret that holds it): a plan made
    /// for another key is refused, never carried out with this one.
    pub(super) fn operator_key(&self, step: &Step, secret: &str) -> Result<&'a str, ApplyError> {
        let key = self.ssh_public_key;
        if plan::ssh_key_secret_name(key) == secret {
            Ok(key)
        } else {
            Err(ApplyError::InvalidOrder {
                step: step.id.clone(),
                reason: format!(
                    "the plan names the SSH key of secret {secret}, but the inventory's key is \
                     {}'s; plan again",
                    plan::ssh_key_secret_name(key)
                ),
            })
        }
    }

    /// The order request for `order`, with a new identity (see
    /// [`Self::user_data`]); the secret's id comes from `account`.
    pub(super) async fn create_request<A: CloudApi>(
        &self,
        step: &Step,
        order: &Order,
        account: &Account<'_, A>,
    ) -> Result<CreateInstance, ApplyError> {
        let slot = order.slot.0.as_str();
        let image_id = order
            .image
            .id
            .as_ref()
            .ok_or_else(|| ApplyError::ImageUnresolved {
                step: step.id.clone(),
                image: order.image.name.clone(),
            })?
            .0
            .clone();
        let period = Period::try_from(order.period).map_err(|reason| ApplyError::InvalidOrder {
            step: step.id.clone(),
            reason,
        })?;
        let secret = account.secret_id(step, &order.ssh_key_secret).await?;
        Ok(CreateInstance {
            product_id: order.product.clone(),
            region: Region::from(order.region.as_str()),
            image_id,
            period,
            display_name: slot.to_string(),
            ssh_keys: vec![secret],
            user_data: Some(self.user_data(
                step,
                slot,
                UserDataInputs {
                    template: order.user_data,
                    ssh_public_key: self.operator_key(step, &order.ssh_key_secret)?,
                    kubernetes_version: order.kubernetes_version.as_deref(),
                    firewall: &order.firewall,
                },
            )?),
            default_user: None,
            add_ons: order
                .private_networking
                .is_some()
                .then(CreateInstanceAddOns::private_networking),
        })
    }

    /// The reinstall request for `r`, with a new identity (see
    /// [`Self::user_data`]); the secret's id comes from `account`.
    pub(super) async fn reinstall_request<A: CloudApi>(
        &self,
        step: &Step,
        r: &Reinstall,
        account: &Account<'_, A>,
    ) -> Result<ReinstallInstance, ApplyError> {
        let slot = r.instance.name.as_str();
        let image_id = r
            .image
            .id
            .as_ref()
            .ok_or_else(|| ApplyError::ImageUnresolved {
                step: step.id.clone(),
                image: r.image.name.clone(),
            })?
            .0
            .clone();
        let secret = account.secret_id(step, &r.ssh_key_secret).await?;
        Ok(ReinstallInstance {
            image_id,
            ssh_keys: vec![secret],
            user_data: Some(self.user_data(
                step,
                slot,
                UserDataInputs {
                    template: r.user_data,
                    ssh_public_key: self.operator_key(step, &r.ssh_key_secret)?,
                    kubernetes_version: r.kubernetes_version.as_deref(),
                    firewall: &r.firewall,
                },
            )?),
            default_user: None,
        })
    }

    /// Renders a node's user data with a new host key, whose public half
    /// is recorded in the known-hosts file first: before the order or
    /// reinstall is sent, so a crash right after cannot leave a node whose
    /// key kiwi-infra does not know. Recording replaces the node's earlier
    /// key (a reinstall, or a retried order). The private half exists only
    /// in the returned user data.
    fn user_data(
        &self,
        step: &Step,
        slot: &str,
        inputs: UserDataInputs<'_>,
    ) -> Result<Secret<String>, ApplyError> {
        let host_key = HostKey::generate(slot).map_err(|source| ApplyError::HostKey {
            step: step.id.clone(),
            slot: slot.to_string(),
            source,
        })?;
        let user_data = cloudinit::render(
            inputs.template,
            &UserDataVars {
                hostname: slot.to_string(),
                ssh_public_key: inputs.ssh_public_key.to_string(),
                host_private_key: host_key.private_openssh().clone(),
                host_public_key: host_key.public_openssh().to_string(),
                kubernetes_version: inputs.kubernetes_version.map(str::to_string),
                firewall: inputs.firewall.clone(),
            },
        )
        .map_err(|source| ApplyError::UserData {
            step: step.id.clone(),
            slot: slot.to_string(),
            source,
        })?;
        match &self.known_hosts {
            Some(known_hosts) => known_hosts
                .record(slot, host_key.public_openssh())
                .map_err(|source| ApplyError::KnownHosts {
                    step: step.id.clone(),
                    slot: slot.to_string(),
                    source,
                })?,
            None => tracing::debug!(
                slot,
                "no known-hosts file configured; host key not recorded"
            ),
        }
        Ok(user_data)
    }
}
