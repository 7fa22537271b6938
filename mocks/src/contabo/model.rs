//! The mock's account: instances, secrets, tags, tag assignments and private networks, plus the id
//! counters. This is what `--state FILE` persists, and how each resource looks on the wire (the
//! JSON renderings follow the spec's response schemas field by field).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::catalog;

/// Contabo's tenant for German accounts.
pub const TENANT_ID: &str = "DE";
/// The mock account's customer id.
pub const CUSTOMER_ID: &str = "54321";

/// One add-on as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOn {
    /// Add-on id.
    pub id: i64,
    /// How many.
    pub quantity: i64,
}

/// An ordered server, with everything the mock remembers about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Contabo's numeric id.
    pub instance_id: i64,
    /// Contabo's own name, `vmi<id>`.
    pub name: String,
    /// The customer's name for it; empty if none was given.
    pub display_name: String,
    /// Product id, e.g. `V92`.
    pub product_id: String,
    /// Region code, e.g. `EU`.
    pub region: String,
    /// Installed image.
    pub image_id: String,
    /// Public IPv4 address (from the mock's loopback pool).
    pub ipv4: Ipv4Addr,
    /// Public IPv6 address (documentation prefix; never a target).
    pub ipv6: String,
    /// MAC address of the public NIC.
    pub mac_address: String,
    /// Secret ids of the SSH keys installed.
    pub ssh_keys: Vec<i64>,
    /// The public keys those secrets held at install time (a later secret change does not
    /// reach an installed server).
    pub ssh_key_values: Vec<String>,
    /// cloud-init user data of the last install.
    pub user_data: Option<String>,
    /// `root`, `admin` or `administrator`.
    pub default_user: String,
    /// Secret id of the root password, if one was given.
    pub root_password: Option<i64>,
    /// Contract period in months.
    pub period: u32,
    /// When the order was placed.
    pub created_date: DateTime<Utc>,
    /// Set once cancelled: the last day the server runs.
    pub cancel_date: Option<NaiveDate>,
    /// One of the spec's `instanceStatus` values.
    pub status: String,
    /// When the current status began; the ticker measures phases from it.
    pub status_since: DateTime<Utc>,
    /// Left out of lists until then (fault `unlistedForMs`).
    #[serde(default)]
    pub unlisted_until: Option<DateTime<Utc>>,
    /// True while a product override holds the order (not a status forced by the control API).
    pub held_by_product: bool,
    /// Booked add-ons.
    pub add_ons: Vec<AddOn>,
    /// How many times it was reinstalled.
    pub reinstalls: u32,
    /// Hostile mode: the text served as `ipConfig.v4.ip` instead of `ipv4`
    /// (anything, not only an address), as a broken API or a proxy might.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_text: Option<String>,
}

impl Instance {
    /// True if the private-networking add-on was booked.
    pub fn has_private_networking(&self) -> bool {
        self.add_ons
            .iter()
            .any(|a| a.id == catalog::ADDON_PRIVATE_NETWORKING)
    }

    /// The name shown for it in tag assignments and private networks.
    pub fn label(&self) -> &str {
        if self.display_name.is_empty() {
            &self.name
        } else {
            &self.display_name
        }
    }

    /// The spec's `ipConfig` (v4 and v6 both required).
    pub fn ip_config(&self, prefix: u8, gateway: Ipv4Addr) -> Value {
        json!({
            "v4": {
                "ip": self.ipv4_text.clone().unwrap_or_else(|| self.ipv4.to_string()),
                "netmaskCidr": prefix,
                "gateway": gateway.to_string()
            },
            "v6": {"ip": self.ipv6, "netmaskCidr": 64, "gateway": "fe80::1"},
        })
    }

    /// `ListInstancesResponseData` / `InstanceResponse`.
    pub fn to_api(&self, prefix: u8, gateway: Ipv4Addr) -> Value {
        let product = catalog::product(&self.product_id);
        let (region_name, data_center) = catalog::region(&self.region).unwrap_or(("", ""));
        let os_type = catalog::image(&self.image_id).map_or("Linux", |i| i.os_type);
        // Spread instances over a few made-up hosts so vHost fields look plausible.
        let host = 1000 + self.instance_id % 97;
        json!({
            "tenantId": TENANT_ID,
            "customerId": CUSTOMER_ID,
            "additionalIps": [],
            "name": self.name,
            "displayName": self.display_name,
            "instanceId": self.instance_id,
            "dataCenter": data_center,
            "region": self.region,
            "regionName": region_name,
            "productId": self.product_id,
            "imageId": self.image_id,
            "ipConfig": self.ip_config(prefix, gateway),
            "macAddress": self.mac_address,
            "ramMb": product.as_ref().map_or(0, |p| p.ram_mb),
            "cpuCores": product.as_ref().map_or(0, |p| p.cpu_cores),
            "osType": os_type,
            "diskMb": product.as_ref().map_or(0, |p| p.disk_mb),
            "sshKeys": self.ssh_keys,
            "createdDate": timestamp(&self.created_date),
            "cancelDate": self.cancel_date.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default(),
            "status": self.status,
            "vHostId": 70_000 + host,
            "vHostNumber": host,
            "vHostName": format!("m{host}"),
            "addOns": self.add_ons,
            "productType": product.as_ref().map_or("ssd", |p| p.product_type),
            "productName": product.as_ref().map_or("", |p| p.name),
            "defaultUser": self.default_user,
        })
    }
}

/// A stored secret (SSH public key or password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Numeric id.
    pub secret_id: i64,
    /// Name, 1..=255 chars.
    pub name: String,
    /// `ssh` or `password`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key or password. The real API returns it in every read, so the mock does too.
    pub value: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl Secret {
    /// `SecretResponse`.
    pub fn to_api(&self) -> Value {
        json!({
            "tenantId": TENANT_ID,
            "customerId": CUSTOMER_ID,
            "secretId": self.secret_id,
            "name": self.name,
            "type": self.kind,
            "value": self.value,
            "createdAt": timestamp(&self.created_at),
            "updatedAt": timestamp(&self.created_at),
        })
    }
}

/// A tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// Numeric id.
    pub tag_id: i64,
    /// Unique name.
    pub name: String,
    /// `#RRGGBB`-style colour.
    pub color: String,
}

impl Tag {
    /// `TagResponse`.
    pub fn to_api(&self) -> Value {
        json!({
            "tenantId": TENANT_ID,
            "customerId": CUSTOMER_ID,
            "tagId": self.tag_id,
            "name": self.name,
            "color": self.color,
        })
    }
}

/// A tag on a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// The tag.
    pub tag_id: i64,
    /// `instance` or `image`.
    pub resource_type: String,
    /// The resource's id as text.
    pub resource_id: String,
}

/// An instance's membership in a private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The instance.
    pub instance_id: i64,
    /// Its address in the network.
    pub private_ip: Ipv4Addr,
    /// True until the instance is reinstalled: Contabo only wires the NIC on reinstall.
    pub needs_reinstall: bool,
}

/// A private network (VPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateNetwork {
    /// Numeric id.
    pub private_network_id: i64,
    /// Name.
    pub name: String,
    /// Description (may be empty).
    pub description: String,
    /// Region code.
    pub region: String,
    /// Network of the members' private addresses, a /22.
    pub network: Ipv4Addr,
    /// Creation time.
    pub created_date: DateTime<Utc>,
    /// Members in joining order.
    pub members: Vec<Member>,
}

impl PrivateNetwork {
    /// Prefix length of every private network, as at Contabo.
    pub const PREFIX: u8 = 22;

    /// `cidr` field.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, Self::PREFIX)
    }

    /// Next free private address (first host is the gateway).
    pub fn next_ip(&self) -> Option<Ipv4Addr> {
        let base = u32::from(self.network);
        let hosts = (1u32 << (32 - Self::PREFIX)) - 2;
        (2..=hosts)
            .map(|n| Ipv4Addr::from(base + n))
            .find(|ip| self.members.iter().all(|m| m.private_ip != *ip))
    }

    /// `PrivateNetworkResponse` / `ListPrivateNetworkResponseData`.
    pub fn to_api(
        &self,
        instances: &BTreeMap<i64, Instance>,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Value {
        let (region_name, data_center) = catalog::region(&self.region).unwrap_or(("", ""));
        let gateway_private = Ipv4Addr::from(u32::from(self.network) + 1).to_string();
        let members: Vec<Value> = self
            .members
            .iter()
            .filter_map(|m| {
                let i = instances.get(&m.instance_id)?;
                Some(json!({
                    "instanceId": i.instance_id,
                    "displayName": i.display_name,
                    "name": i.name,
                    "productId": i.product_id,
                    "privateIpConfig": {"v4": [{
                        "ip": m.private_ip.to_string(),
                        "netmaskCidr": Self::PREFIX,
                        "gateway": gateway_private,
                    }]},
                    "ipConfig": i.ip_config(prefix, gateway),
                    "status": if m.needs_reinstall { "reinstall" } else { "ok" },
                }))
            })
            .collect();
        let hosts = (1i64 << (32 - Self::PREFIX)) - 2;
        json!({
            "tenantId": TENANT_ID,
            "customerId": CUSTOMER_ID,
            "privateNetworkId": self.private_network_id,
            "dataCenter": data_center,
            "region": self.region,
            "regionName": region_name,
            "name": self.name,
            "description": self.description,
            "cidr": self.cidr(),
            "availableIps": hosts - 1 - members.len() as i64,
            "createdDate": timestamp(&self.created_date),
            "instances": members,
        })
    }
}

/// Everything that survives a restart with `--state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// By id; iteration order is the list order (ascending id).
    pub instances: BTreeMap<i64, Instance>,
    /// By id.
    pub secrets: BTreeMap<i64, Secret>,
    /// By id.
    pub tags: BTreeMap<i64, Tag>,
    /// Sorted by (tag, type, resource).
    pub assignments: Vec<Assignment>,
    /// By id.
    pub private_networks: BTreeMap<i64, PrivateNetwork>,
    /// Next instance id.
    pub next_instance_id: i64,
    /// Next secret id.
    pub next_secret_id: i64,
    /// Next tag id.
    pub next_tag_id: i64,
    /// Next private network id.
    pub next_private_network_id: i64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            instances: BTreeMap::new(),
            secrets: BTreeMap::new(),
            tags: BTreeMap::new(),
            assignments: Vec::new(),
            private_networks: BTreeMap::new(),
            // Contabo ids are large numbers; start in the same order of magnitude.
            next_instance_id: 202_100_001,
            next_secret_id: 180_001,
            next_tag_id: 41_001,
            next_private_network_id: 9_001,
        }
    }
}

impl State {
    /// The private address of `instance` in the first network where its membership is active
    /// (it was reinstalled since it was assigned).
    pub fn wired_private_ip(&self, instance: i64) -> Option<Ipv4Addr> {
        self.private_networks
            .values()
            .flat_map(|n| n.members.iter())
            .find(|m| m.instance_id == instance && !m.needs_reinstall)
            .map(|m| m.private_ip)
    }
}

/// RFC 3339 with a `Z` suffix and milliseconds, as Contabo writes `createdDate`.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
