//! Typed views of the Contabo resources kiwi-infra uses, faithful to
//! `shared/contabo/openapi.yaml`.
//!
//! Only the fields the tool reads are modelled; unknown fields are ignored so a
//! field Contabo adds tomorrow does not break today's binary. Enumerations the
//! API may extend keep an `Unknown(String)` variant for the same reason.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::ids::{InstanceId, SecretId, TagId};

/// Generates a string enum whose unknown values survive as `Unknown(String)`.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant,
            )+
            /// A value this build does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The value as Contabo writes it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $($wire => Self::$variant,)+
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Ok(Self::from(raw.as_str()))
            }
        }
    };
}

open_enum! {
    /// An instance's `status` (the spec's `instanceStatus`, 14 documented values).
    InstanceStatus {
        Provisioning => "provisioning",
        Uninstalled => "uninstalled",
        Running => "running",
        Stopped => "stopped",
        Error => "error",
        Installing => "installing",
        UnknownStatus => "unknown",
        ManualProvisioning => "manual_provisioning",
        ProductNotAvailable => "product_not_available",
        VerificationRequired => "verification_required",
        Rescue => "rescue",
        PendingPayment => "pending_payment",
        Other => "other",
        ResetPassword => "reset_password",
    }
}

open_enum! {
    /// Region of an instance (`EU` is Germany, where KiwiStack runs).
    Region {
        Eu => "EU",
        UsCentral => "US-central",
        UsEast => "US-east",
        UsWest => "US-west",
        Sin => "SIN",
        Uk => "UK",
        Aus => "AUS",
        Jpn => "JPN",
        Ind => "IND",
    }
}

open_enum! {
    /// Kind of a stored secret.
    SecretType {
        Ssh => "ssh",
        Password => "password",
    }
}

/// Accepts `""` (what the API sends for "not cancelled") as `None`.
fn empty_date_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// IPv4 part of an instance's `ipConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ipv4Config {
    /// The address.
    pub ip: String,
    /// Prefix length.
    #[serde(default)]
    pub netmask_cidr: Option<i64>,
    /// Default gateway.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// An instance's `ipConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// IPv4, the address kiwi-infra connects to.
    pub v4: Option<Ipv4Config>,
}

/// A compute instance as listed by `GET /v1/compute/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Contabo's id.
    pub instance_id: InstanceId,
    /// Contabo's own name (`vmi…`).
    #[serde(default)]
    pub name: String,
    /// The name kiwi-infra chose: the node slot's deterministic name.
    #[serde(default)]
    pub display_name: String,
    /// Lifecycle state.
    pub status: InstanceStatus,
    /// Product id, e.g. `V94`.
    pub product_id: String,
    /// Human product name.
    #[serde(default)]
    pub product_name: Option<String>,
    /// Region.
    pub region: Region,
    /// Installed image.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Addresses.
    #[serde(default)]
    pub ip_config: Option<IpConfig>,
    /// When the order was placed.
    pub created_date: DateTime<Utc>,
    /// Set once the instance is cancelled: it runs (and is billed) until then.
    #[serde(default, deserialize_with = "empty_date_as_none")]
    pub cancel_date: Option<NaiveDate>,
    /// Secret ids of the SSH keys installed at (re)install time.
    #[serde(default)]
    pub ssh_keys: Vec<SecretId>,
    /// Contabo's explanation when something went wrong.
    #[serde(default)]
    pub error_message: Option<String>,
}

impl Instance {
    /// The public IPv4 address, when Contabo has assigned one. The API's
    /// text is parsed here, at the edge: anything that is not a dotted-quad
    /// IPv4 address (a host name, an option, a second line) is no address,
    /// and [`Self::odd_ipv4`] keeps it for a warning.
    pub fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.raw_ipv4().and_then(|ip| ip.parse().ok())
    }

    /// The API's `ipConfig.v4.ip` when it is set but is not an IPv4 address.
    pub fn odd_ipv4(&self) -> Option<&str> {
        self.raw_ipv4()
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_err())
    }

    fn raw_ipv4(&self) -> Option<&str> {
        self.ip_config
            .as_ref()
            .and_then(|c| c.v4.as_ref())
            .map(|v4| v4.ip.as_str())
            .filter(|ip| !ip.is_empty())
    }
}

/// What `POST /v1/compute/instances` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedInstance {
    /// Id of the new instance.
    pub instance_id: InstanceId,
    /// Initial status.
    pub status: InstanceStatus,
    /// When the order was placed.
    pub created_date: DateTime<Utc>,
}

/// An OS image (`GET /v1/compute/images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// UUID of the image.
    pub image_id: String,
    /// Name, e.g. `ubuntu-24.04`.
    pub name: String,
    /// Whether Contabo provides it (as opposed to a custom upload).
    #[serde(default)]
    pub standard_image: bool,
    /// OS family.
    #[serde(default)]
    pub os_type: Option<String>,
}

/// A stored secret. Its `value` is deliberately not modelled: kiwi-infra only
/// stores public SSH keys, and never needs to read a secret back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    /// Id to pass in `sshKeys`. The spec types it as `number`.
    #[serde(deserialize_with = "number_as_i64")]
    pub secret_id: SecretId,
    /// Unique name.
    pub name: String,
    /// `ssh` or `password`.
    #[serde(rename = "type")]
    pub kind: SecretType,
}

fn number_as_i64<'de, D: Deserializer<'de>>(d: D) -> Result<SecretId, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .map(SecretId)
        .ok_or_else(|| serde::de::Error::custom(format!("secretId {n} is not an integer")))
}

/// A tag (`GET /v1/tags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// Id.
    pub tag_id: TagId,
    /// Unique name, e.g. `kiwi-managed`.
    pub name: String,
    /// Colour, `#RRGGBB`.
    #[serde(default)]
    pub color: Option<String>,
}

/// One tag assignment (`GET /v1/tags/{tagId}/assignments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagAssignment {
    /// The tag.
    pub tag_id: TagId,
    /// Its name.
    #[serde(default)]
    pub tag_name: String,
    /// `instance`, `image`, `object-storage`, …
    pub resource_type: String,
    /// The resource's id, as a string.
    pub resource_id: String,
    /// The resource's name.
    #[serde(default)]
    pub resource_name: String,
}

/// A private network (`GET /v1/private-networks`, the spec's
/// `ListPrivateNetworkResponseData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateNetwork {
    /// Id.
    pub private_network_id: i64,
    /// Name.
    pub name: String,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Address range.
    #[serde(default)]
    pub cidr: Option<String>,
    /// Members.
    #[serde(default)]
    pub instances: Vec<PrivateNetworkMember>,
}

open_enum! {
    /// A member's state in its private network (the spec's `Instances.status`).
    /// Only `ok` means the member's private NIC works.
    MemberStatus {
        Ok => "ok",
        Restart => "restart",
        Reinstall => "reinstall",
        ReinstallationFailed => "reinstallation failed",
        Installing => "installing",
    }
}

/// One address of a member's `privateIpConfig.v4` (the spec's
/// `PrivateIpConfig` items), as the API sent it: parsed by
/// [`PrivateNetworkMember::private_ipv4`], never trusted as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateIpv4 {
    /// The address.
    pub ip: String,
    /// Prefix length.
    #[serde(default)]
    pub netmask_cidr: Option<i64>,
}

/// A member's `privateIpConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateIpConfig {
    /// IPv4 addresses in the private network (Contabo gives one).
    #[serde(default)]
    pub v4: Vec<PrivateIpv4>,
}

/// An instance inside a private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateNetworkMember {
    /// Id of the instance.
    pub instance_id: InstanceId,
    /// Its display name.
    #[serde(default)]
    pub display_name: String,
    /// Its address(es) in the network.
    #[serde(default)]
    pub private_ip_config: PrivateIpConfig,
    /// Whether its private NIC works yet (`reinstall` until the instance
    /// is reinstalled).
    pub status: MemberStatus,
}

impl PrivateNetworkMember {
    /// The member's private IPv4 address, parsed at the edge. `Ok(None)`
    /// when the API lists none; an error naming the field and the value
    /// (escaped by whoever shows it) when it lists one that is not a
    /// dotted-quad IPv4 address, or several that differ.
    pub fn private_ipv4(&self) -> Result<Option<std::net::Ipv4Addr>, String> {
        let mut found: Option<std::net::Ipv4Addr> = None;
        for (i, entry) in self.private_ip_config.v4.iter().enumerate() {
            let ip: std::net::Ipv4Addr = entry.ip.parse().map_err(|_| {
                format!(
                    "privateIpConfig.v4[{i}].ip of instance {} is {:?}, not an IPv4 address",
                    self.instance_id,
                    crate::text::escape_for_terminal(&entry.ip)
                )
            })?;
            match found {
                Some(other) if other != ip => {
                    return Err(format!(
                        "privateIpConfig.v4 of instance {} lists two addresses ({other} and \
                         {ip}); expected one",
                        self.instance_id
                    ))
                }
                _ => found = Some(ip),
            }
        }
        Ok(found)
    }
}

/// `addOns` of an order (the spec's `CreateInstanceAddons`): only the
/// private-networking add-on is ever booked by kiwi-infra.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInstanceAddOns {
    /// `privateNetworking: {}` books the add-on; absent, it is not booked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_networking: Option<serde_json::Map<String, serde_json::Value>>,
}

impl CreateInstanceAddOns {
    /// The add-ons of an order that joins a private network.
    pub fn private_networking() -> Self {
        CreateInstanceAddOns {
            private_networking: Some(serde_json::Map::new()),
        }
    }
}

/// Contract period of an order, in months: the only values the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Period {
    /// One month.
    OneMonth,
    /// Three months.
    ThreeMonths,
    /// Six months.
    SixMonths,
    /// Twelve months.
    TwelveMonths,
}

impl Period {
    /// Months in the contract.
    pub fn months(self) -> u8 {
        match self {
            Self::OneMonth => 1,
            Self::ThreeMonths => 3,
            Self::SixMonths => 6,
            Self::TwelveMonths => 12,
        }
    }
}

impl TryFrom<u8> for Period {
    type Error = String;

    fn try_from(months: u8) -> Result<Self, Self::Error> {
        match months {
            1 => Ok(Self::OneMonth),
            3 => Ok(Self::ThreeMonths),
            6 => Ok(Self::SixMonths),
            12 => Ok(Self::TwelveMonths),
            other => Err(format!(
                "contract period {other} is not offered by Contabo; expected 1, 3, 6 or 12 months"
            )),
        }
    }
}

impl From<Period> for u8 {
    fn from(p: Period) -> u8 {
        p.months()
    }
}

/// Body of `POST /v1/compute/instances`. `display_name` is mandatory here
/// (optional in the API) because it is how kiwi-infra finds an order again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInstance {
    /// Product id.
    pub product_id: String,
    /// Region.
    pub region: Region,
    /// Image UUID.
    pub image_id: String,
    /// Contract period.
    pub period: Period,
    /// The slot name; ≤ 255 characters.
    pub display_name: String,
    /// Secret ids of SSH keys to install.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<SecretId>,
    /// cloud-init user data. It may carry a host private key, so it is
    /// skipped by `Debug` through [`crate::secret::Secret`].
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    pub user_data: Option<crate::secret::Secret<String>>,
    /// Login user cloud-init creates for the SSH keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
    /// Paid add-ons booked with the order (`None`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_ons: Option<CreateInstanceAddOns>,
}

/// Body of `PUT /v1/compute/instances/{id}` (reinstall without a new order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReinstallInstance {
    /// Image UUID.
    pub image_id: String,
    /// Secret ids of SSH keys to install.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<SecretId>,
    /// cloud-init user data (may carry a host private key).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    pub user_data: Option<crate::secret::Secret<String>>,
    /// Login user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
}

fn expose_secret<S: Serializer>(
    value: &Option<crate::secret::Secret<String>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => serializer.serialize_str(secret.expose()),
        None => serializer.serialize_none(),
    }
}

/// `_pagination` of a list response.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Page size.
    pub size: f64,
    /// Elements in all pages.
    pub total_elements: f64,
    /// Number of pages.
    pub total_pages: f64,
    /// This page (1-based).
    pub page: f64,
}

/// A list response: `data` plus `_pagination` and `_links`.
#[derive(Debug, Clone, Deserialize)]
pub struct ListPage<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// Where this page stands.
    #[serde(rename = "_pagination")]
    pub pagination: Pagination,
    /// Links to other pages; `next` is there when a page follows this one
    /// ("Link to next page, if applicable").
    #[serde(rename = "_links", default)]
    pub links: PageLinks,
}

/// The part of `_links` paging looks at.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageLinks {
    /// The next page, if there is one.
    #[serde(default)]
    pub next: Option<String>,
}

/// A single-resource response: `data` is always an array.
#[derive(Debug, Clone, Deserialize)]
pub struct DataResponse<T> {
    /// The payload.
    pub data: Vec<T>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_status_survives_and_round_trips() {
        let s: InstanceStatus = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(s, InstanceStatus::Unknown("hibernating".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hibernating\"");
        let known: InstanceStatus = serde_json::from_str("\"pending_payment\"").unwrap();
        assert_eq!(known, InstanceStatus::PendingPayment);
    }

    #[test]
    fn empty_cancel_date_means_not_cancelled() {
        let body = serde_json::json!({
            "instanceId": 7, "displayName": "kiwi-core-vps-01", "status": "running",
            "productId": "V94", "region": "EU", "createdDate": "2026-11-01T10:00:00Z",
            "cancelDate": "", "someFieldFromTheFuture": {"x": 1}
        });
        let i: Instance = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(i.cancel_date, None);
        let mut cancelled = body;
        cancelled["cancelDate"] = "2026-12-31".into();
        let i: Instance = serde_json::from_value(cancelled).unwrap();
        assert_eq!(i.cancel_date, NaiveDate::from_ymd_opt(2026, 12, 31));
    }

    #[test]
    fn create_body_carries_user_data_but_debug_hides_it() {
        let req = CreateInstance {
            product_id: "V94".into(),
            region: Region::Eu,
            image_id: "img".into(),
            period: Period::OneMonth,
            display_name: "kiwi-core-vps-01".into(),
            ssh_keys: vec![SecretId(3)],
            user_data: Some(crate::secret::Secret::new("PRIVATE KEY canary".into())),
            default_user: None,
            add_ons: None,
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["period"], 1);
        assert_eq!(json["userData"], "PRIVATE KEY canary");
        assert_eq!(json["sshKeys"], serde_json::json!([3]));
        assert!(!format!("{req:?}").contains("canary"));
    }

    fn member(ips: &[&str]) -> PrivateNetworkMember {
        PrivateNetworkMember {
            instance_id: InstanceId(7),
            display_name: String::new(),
            private_ip_config: PrivateIpConfig {
                v4: ips
                    .iter()
                    .map(|ip| PrivateIpv4 {
                        ip: (*ip).to_string(),
                        netmask_cidr: Some(22),
                    })
                    .collect(),
            },
            status: MemberStatus::Ok,
        }
    }

    #[test]
    fn a_private_address_is_one_dotted_quad_or_an_error_naming_the_field() {
        assert_eq!(
            member(&["10.0.4.2"]).private_ipv4(),
            Ok(Some("10.0.4.2".parse().unwrap()))
        );
        assert_eq!(member(&[]).private_ipv4(), Ok(None));
        let e = member(&["10.0.4.2\nnode-ip: 1.2.3.4"])
            .private_ipv4()
            .unwrap_err();
        assert!(e.contains("privateIpConfig.v4[0].ip of instance 7"), "{e}");
        assert!(!e.contains('\n'), "the value is escaped: {e}");
        assert!(member(&["10.0.4.2", "10.0.4.3"]).private_ipv4().is_err());
        let s: MemberStatus = serde_json::from_str("\"reinstallation failed\"").unwrap();
        assert_eq!(s, MemberStatus::ReinstallationFailed);
    }

    proptest::proptest! {
        #[test]
        fn any_private_address_text_parses_to_the_address_it_spells_or_is_refused(ip in ".{0,40}") {
            let parsed = member(&[&ip]).private_ipv4();
            match ip.parse::<std::net::Ipv4Addr>() {
                Ok(addr) => proptest::prop_assert_eq!(parsed, Ok(Some(addr))),
                Err(_) => proptest::prop_assert!(parsed.is_err()),
            }
        }
    }

    #[test]
    fn periods_outside_the_offer_are_rejected() {
        assert!(Period::try_from(2).is_err());
        assert_eq!(Period::try_from(12).unwrap().months(), 12);
    }
}
