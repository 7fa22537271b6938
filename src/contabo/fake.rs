//! A stateful fake of [`CloudApi`], beside the client it stands in for, for
//! the unit tests of observation, apply and reconcile: it keeps
//! instances, tags, assignments and secrets, moves new instances along
//! `provisioning` → `installing` → `running` one step per poll, and can lose
//! order answers (after placing the order), hide new orders from look-ups
//! for a while (eventual consistency) and hold a product's orders in a
//! status. A fake rather than call-recording mocks, so tests assert on the
//! resulting account, not on calls.
//!
//! It is compiled for unit tests only (`#[cfg(test)]`). Integration tests
//! and benches drive the real client over HTTP against the Contabo mock
//! (`kiwi-mocks`), which also checks every request against Contabo's spec;
//! giving them this fake too would make them test less, and would put a
//! test double into the library's public API behind a feature.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};

use crate::contabo::models::*;
use crate::contabo::{CloudApi, ContaboError, OrderResolution, RequestContext, UnconfirmedOrder};

#[derive(Debug, Default)]
pub struct FakeState {
    pub instances: Vec<Instance>,
    pub tags: Vec<Tag>,
    pub assignments: Vec<(TagId, InstanceId)>,
    pub secrets: Vec<StoredSecret>,
    pub user_data: BTreeMap<i64, String>,
    next_id: i64,
    /// Orders whose answer is lost after they were placed.
    pub lose_create_answers: u32,
    /// Orders answered 503 without being placed.
    pub fail_creates_unplaced: u32,
    /// New instances stay invisible to this many look-ups by name.
    pub hide_new_for_lookups: u32,
    hidden: BTreeMap<i64, u32>,
    /// Instances Contabo's lists do not show (yet), though
    /// `GET /v1/compute/instances/{id}` finds them: a lagging list.
    pub unlisted: std::collections::BTreeSet<i64>,
    /// Product id → status its new orders are held in.
    pub holds: BTreeMap<String, InstanceStatus>,
    pub create_calls: u32,
    /// Tag and secret creations answered 500 without creating anything.
    pub fail_account_creates: u32,
    /// Cancels whose answer is lost after they took effect.
    pub lose_cancel_answers: u32,
    pub cancel_calls: u32,
    /// Whole-account instance listings.
    pub account_lists: u32,
    /// Polls of some instances by id.
    pub id_polls: u32,
    /// Private networks, with their members (as Contabo: a member's status
    /// is `reinstall` until the instance is reinstalled).
    pub networks: Vec<PrivateNetwork>,
    /// Instances ordered with (or upgraded to) the private-networking add-on.
    pub private_networking: std::collections::BTreeSet<i64>,
    /// Private network creations answered 500 after creating the network
    /// (a lost answer).
    pub lose_network_create_answers: u32,
    /// Private network creations.
    pub network_create_calls: u32,
}

/// The end of the contract period the fake reports for every cancel.
pub const FAKE_CANCEL_DATE: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(2031, 1, 31) {
    Some(d) => d,
    None => chrono::NaiveDate::MIN,
};

#[derive(Debug, Default)]
pub struct FakeCloud {
    pub state: Mutex<FakeState>,
}

fn api_error(path: &str, status: u16) -> ContaboError {
    ContaboError::Api {
        retry_after: None,
        context: Box::new(RequestContext {
            method: Method::POST,
            path: path.into(),
            request_id: "req".into(),
            trace_id: "trace".into(),
            attempts: 1,
            elapsed: Duration::ZERO,
        }),
        status: StatusCode::from_u16(status).unwrap(),
        message: "fake".into(),
    }
}

impl FakeCloud {
    pub fn with(f: impl FnOnce(&mut FakeState)) -> Self {
        let fake = FakeCloud::default();
        f(&mut fake.state.lock().unwrap());
        fake
    }

    pub fn instances(&self) -> Vec<Instance> {
        self.state.lock().unwrap().instances.clone()
    }

    pub fn tags_of(&self, id: InstanceId) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.assignments
            .iter()
            .filter(|(_, i)| *i == id)
            .filter_map(|(t, _)| s.tags.iter().find(|tag| tag.tag_id == *t))
            .map(|t| t.name.clone())
            .collect()
    }

    pub fn add_instance(&self, name: &str, status: InstanceStatus) -> InstanceId {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = InstanceId(1000 + s.next_id);
        s.instances.push(instance(id, name, "V94", status));
        id
    }
}

pub fn instance(id: InstanceId, name: &str, product: &str, status: InstanceStatus) -> Instance {
    Instance {
        instance_id: id,
        name: format!("vmi{id}"),
        display_name: name.into(),
        status,
        product_id: product.into(),
        product_name: None,
        region: Region::Eu,
        image_id: Some("img".into()),
        ip_config: Some(IpConfig {
            v4: Some(Ipv4Config {
                ip: format!("127.0.10.{}", id.0 % 250),
                netmask_cidr: None,
                gateway: None,
            }),
        }),
        created_date: Utc::now(),
        cancel_date: None,
        ssh_keys: Vec::new(),
        error_message: None,
    }
}

impl FakeCloud {
    /// Every listed instance, each a step further in its lifecycle.
    fn advance_and_list(&self) -> Vec<Instance> {
        let mut s = self.state.lock().unwrap();
        for i in &mut s.instances {
            i.status = match i.status {
                InstanceStatus::Provisioning => InstanceStatus::Installing,
                InstanceStatus::Installing => InstanceStatus::Running,
                ref other => other.clone(),
            };
        }
        let unlisted = s.unlisted.clone();
        s.instances
            .iter()
            .filter(|i| !unlisted.contains(&i.instance_id.0))
            .cloned()
            .collect()
    }
}

impl CloudApi for FakeCloud {
    async fn list_instances(&self) -> Result<Vec<Instance>, ContaboError> {
        let listed = self.advance_and_list();
        self.state.lock().unwrap().account_lists += 1;
        Ok(listed)
    }

    async fn instances_by_ids(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ContaboError> {
        // A poll of some ids moves the account on as a whole listing does.
        let mut listed = self.advance_and_list();
        listed.retain(|i| ids.contains(&i.instance_id));
        self.state.lock().unwrap().id_polls += 1;
        Ok(listed)
    }

    async fn find_instances_by_display_name(
        &self,
        name: &str,
    ) -> Result<Vec<Instance>, ContaboError> {
        let mut s = self.state.lock().unwrap();
        let mut found = Vec::new();
        let candidates: Vec<Instance> = s
            .instances
            .iter()
            .filter(|i| i.display_name == name && !s.unlisted.contains(&i.instance_id.0))
            .cloned()
            .collect();
        for i in candidates {
            match s.hidden.get_mut(&i.instance_id.0) {
                Some(n) if *n > 0 => *n -= 1,
                _ => found.push(i),
            }
        }
        Ok(found)
    }

    async fn get_instance(&self, id: InstanceId) -> Result<Instance, ContaboError> {
        let s = self.state.lock().unwrap();
        s.instances
            .iter()
            .find(|i| i.instance_id == id)
            .cloned()
            .ok_or_else(|| api_error("/v1/compute/instances/x", 404))
    }

    async fn create_instance(
        &self,
        order: CreateInstance,
    ) -> Result<CreatedInstance, ContaboError> {
        let mut s = self.state.lock().unwrap();
        s.create_calls += 1;
        if s.fail_creates_unplaced > 0 {
            s.fail_creates_unplaced -= 1;
            return Err(api_error("/v1/compute/instances", 503));
        }
        s.next_id += 1;
        let id = InstanceId(1000 + s.next_id);
        let status = s
            .holds
            .get(&order.product_id)
            .cloned()
            .unwrap_or(InstanceStatus::Provisioning);
        let mut i = instance(id, &order.display_name, &order.product_id, status.clone());
        i.ssh_keys = order.ssh_keys.clone();
        if order
            .add_ons
            .as_ref()
            .is_some_and(|a| a.private_networking.is_some())
        {
            s.private_networking.insert(id.0);
        }
        if let Some(ud) = &order.user_data {
            s.user_data.insert(id.0, ud.expose().clone());
        }
        s.instances.push(i);
        if s.hide_new_for_lookups > 0 {
            let n = s.hide_new_for_lookups;
            s.hidden.insert(id.0, n);
        }
        if s.lose_create_answers > 0 {
            s.lose_create_answers -= 1;
            return Err(api_error("/v1/compute/instances", 504));
        }
        Ok(CreatedInstance {
            instance_id: id,
            status,
            created_date: Utc::now(),
        })
    }

    async fn resolve_unconfirmed_order(
        &self,
        _order: UnconfirmedOrder,
    ) -> Result<OrderResolution, ContaboError> {
        // The fake never returns OrderOutcomeUnknown (UnconfirmedOrder has
        // no public constructor), so this is never called.
        Err(ContaboError::Config("not used by the fake".into()))
    }

    async fn reinstall_instance(
        &self,
        id: InstanceId,
        request: &ReinstallInstance,
    ) -> Result<(), ContaboError> {
        let mut s = self.state.lock().unwrap();
        let i = s
            .instances
            .iter_mut()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| api_error("/v1/compute/instances/x", 404))?;
        i.status = InstanceStatus::Installing;
        i.ssh_keys = request.ssh_keys.clone();
        if let Some(ud) = &request.user_data {
            s.user_data.insert(id.0, ud.expose().clone());
        }
        // A reinstall is what wires a private network NIC.
        for net in &mut s.networks {
            for m in net.instances.iter_mut().filter(|m| m.instance_id == id) {
                m.status = MemberStatus::Ok;
            }
        }
        Ok(())
    }

    /// As Contabo: the instance keeps running until the end of its
    /// contract period; a second cancel is a 409.
    async fn rename_instance(
        &self,
        id: InstanceId,
        display_name: &str,
    ) -> Result<(), ContaboError> {
        let mut s = self.state.lock().unwrap();
        let i = s
            .instances
            .iter_mut()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| api_error("/v1/compute/instances/x", 404))?;
        i.display_name = display_name.to_string();
        Ok(())
    }

    async fn cancel_instance(
        &self,
        id: InstanceId,
    ) -> Result<Option<chrono::NaiveDate>, ContaboError> {
        let mut s = self.state.lock().unwrap();
        s.cancel_calls += 1;
        let lose = s.lose_cancel_answers > 0;
        if lose {
            s.lose_cancel_answers -= 1;
        }
        let i = s
            .instances
            .iter_mut()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| api_error("/v1/compute/instances/x/cancel", 404))?;
        if i.cancel_date.is_some() {
            return Err(api_error("/v1/compute/instances/x/cancel", 409));
        }
        i.cancel_date = Some(FAKE_CANCEL_DATE);
        if lose {
            return Err(api_error("/v1/compute/instances/x/cancel", 504));
        }
        Ok(Some(FAKE_CANCEL_DATE))
    }

    async fn list_tags(&self) -> Result<Vec<Tag>, ContaboError> {
        let mut tags = self.state.lock().unwrap().tags.clone();
        tags.retain(|t| t.name.starts_with(crate::plan::tags::PREFIX));
        Ok(tags)
    }

    async fn create_tag(&self, name: &str, color: &str) -> Result<TagId, ContaboError> {
        let mut s = self.state.lock().unwrap();
        if s.fail_account_creates > 0 {
            s.fail_account_creates -= 1;
            return Err(api_error("/v1/tags", 500));
        }
        if s.tags.iter().any(|t| t.name == name) {
            return Err(api_error("/v1/tags", 409));
        }
        s.next_id += 1;
        let id = TagId(s.next_id);
        s.tags.push(Tag {
            tag_id: id,
            name: name.into(),
            color: Some(color.into()),
        });
        Ok(id)
    }

    async fn list_tag_assignments(&self, tag: TagId) -> Result<Vec<TagAssignment>, ContaboError> {
        let s = self.state.lock().unwrap();
        Ok(s.assignments
            .iter()
            .filter(|(t, _)| *t == tag)
            .map(|(t, i)| TagAssignment {
                tag_id: *t,
                tag_name: String::new(),
                resource_type: "instance".into(),
                resource_id: i.to_string(),
                resource_name: String::new(),
            })
            .collect())
    }

    async fn assign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        let mut s = self.state.lock().unwrap();
        if !s.assignments.contains(&(tag, instance)) {
            s.assignments.push((tag, instance));
        }
        Ok(())
    }

    async fn unassign_tag(&self, tag: TagId, instance: InstanceId) -> Result<(), ContaboError> {
        self.state
            .lock()
            .unwrap()
            .assignments
            .retain(|a| *a != (tag, instance));
        Ok(())
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, ContaboError> {
        Ok(self.state.lock().unwrap().secrets.clone())
    }

    async fn create_ssh_key(
        &self,
        name: &str,
        _public_key: &str,
    ) -> Result<StoredSecret, ContaboError> {
        let mut s = self.state.lock().unwrap();
        if s.fail_account_creates > 0 {
            s.fail_account_creates -= 1;
            return Err(api_error("/v1/secrets", 500));
        }
        s.next_id += 1;
        let secret = StoredSecret {
            secret_id: SecretId(s.next_id),
            name: name.into(),
            kind: SecretType::Ssh,
        };
        s.secrets.push(secret.clone());
        Ok(secret)
    }

    async fn find_images_by_name(&self, name: &str) -> Result<Vec<Image>, ContaboError> {
        Ok(vec![Image {
            image_id: "img".into(),
            name: name.into(),
            standard_image: true,
            os_type: None,
        }])
    }

    async fn list_private_networks(&self) -> Result<Vec<PrivateNetwork>, ContaboError> {
        Ok(self.state.lock().unwrap().networks.clone())
    }

    async fn find_private_networks_by_name(
        &self,
        name: &str,
    ) -> Result<Vec<PrivateNetwork>, ContaboError> {
        let s = self.state.lock().unwrap();
        Ok(s.networks
            .iter()
            .filter(|n| n.name == name)
            .cloned()
            .collect())
    }

    async fn create_private_network(
        &self,
        name: &str,
        region: &str,
        _description: &str,
    ) -> Result<PrivateNetwork, ContaboError> {
        let mut s = self.state.lock().unwrap();
        s.network_create_calls += 1;
        s.next_id += 1;
        let n = s.next_id;
        let net = PrivateNetwork {
            private_network_id: 9000 + n,
            name: name.into(),
            region: Some(region.into()),
            cidr: Some(format!("10.{}.0.0/22", n % 250)),
            instances: Vec::new(),
        };
        s.networks.push(net.clone());
        if s.lose_network_create_answers > 0 {
            s.lose_network_create_answers -= 1;
            return Err(api_error("/v1/private-networks", 500));
        }
        Ok(net)
    }

    async fn assign_private_network(
        &self,
        network: i64,
        instance: InstanceId,
    ) -> Result<(), ContaboError> {
        let mut s = self.state.lock().unwrap();
        if !s.instances.iter().any(|i| i.instance_id == instance) {
            return Err(api_error("/v1/private-networks/x/instances/y", 404));
        }
        if !s.private_networking.contains(&instance.0) {
            return Err(api_error("/v1/private-networks/x/instances/y", 402));
        }
        let net = s
            .networks
            .iter_mut()
            .find(|n| n.private_network_id == network)
            .ok_or_else(|| api_error("/v1/private-networks/x/instances/y", 404))?;
        if net.instances.iter().any(|m| m.instance_id == instance) {
            return Ok(());
        }
        let host = net.instances.len() + 2;
        let base = net.cidr.clone().unwrap_or_default();
        let prefix = base.split(".0.0/").next().unwrap_or("10.0").to_string();
        net.instances.push(PrivateNetworkMember {
            instance_id: instance,
            display_name: String::new(),
            private_ip_config: PrivateIpConfig {
                v4: vec![PrivateIpv4 {
                    ip: format!("{prefix}.0.{host}"),
                    netmask_cidr: Some(22),
                }],
            },
            status: MemberStatus::Reinstall,
        });
        Ok(())
    }
}
