//! Contabo's product catalog, as far as kiwi-infra needs it: which product ids
//! are shared-core VPS and which are dedicated-core VDS, and what they are
//! called. The API has neither prices nor a product listing endpoint we could
//! rely on, so the list from the `createInstance` description in the OpenAPI
//! spec lives here, in one place.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Node class: which kind of Contabo hardware a node runs on (architecture A3).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeClass {
    /// Shared-core virtual private server: cheap, variable CPU steal.
    Vps,
    /// Virtual dedicated server: dedicated cores, bounded jitter.
    Vds,
}

impl NodeClass {
    /// The lowercase name used in labels, tags and the inventory.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeClass::Vps => "vps",
            NodeClass::Vds => "vds",
        }
    }
}

impl fmt::Display for NodeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One product of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Contabo's product id, e.g. `V94`.
    pub id: &'static str,
    /// Contabo's marketing name, e.g. `VPS 20 NVMe`.
    pub name: &'static str,
    /// VPS or VDS.
    pub class: NodeClass,
}

const fn vps(id: &'static str, name: &'static str) -> Product {
    Product {
        id,
        name,
        class: NodeClass::Vps,
    }
}

const fn vds(id: &'static str, name: &'static str) -> Product {
    Product {
        id,
        name,
        class: NodeClass::Vds,
    }
}

/// Every product the OpenAPI spec lists for `POST /v1/compute/instances`.
/// The spec summarises VPS as "V91–V107 and V68–V89" but its table skips
/// V75, V82 and V84; we only accept ids it actually describes.
pub const CATALOG: &[Product] = &[
    vps("V91", "VPS 10 NVMe"),
    vps("V92", "VPS 10 SSD"),
    vps("V93", "VPS 10 Storage"),
    vps("V94", "VPS 20 NVMe"),
    vps("V95", "VPS 20 SSD"),
    vps("V96", "VPS 20 Storage"),
    vps("V97", "VPS 30 NVMe"),
    vps("V98", "VPS 30 SSD"),
    vps("V99", "VPS 30 Storage"),
    vps("V100", "VPS 40 NVMe"),
    vps("V101", "VPS 40 SSD"),
    vps("V102", "VPS 40 Storage"),
    vps("V103", "VPS 50 NVMe"),
    vps("V104", "VPS 50 SSD"),
    vps("V105", "VPS 50 Storage"),
    vps("V106", "VPS 60 NVMe"),
    vps("V107", "VPS 60 SSD"),
    vps("V68", "VPS 4C NVMe"),
    vps("V76", "VPS 4C SSD"),
    vps("V85", "VPS 4C Storage"),
    vps("V69", "VPS 6C NVMe"),
    vps("V77", "VPS 6C SSD"),
    vps("V86", "VPS 6C Storage"),
    vps("V70", "VPS 8C NVMe"),
    vps("V78", "VPS 8C SSD"),
    vps("V87", "VPS 8C Storage"),
    vps("V71", "VPS 10C NVMe"),
    vps("V79", "VPS 10C SSD"),
    vps("V88", "VPS 10C Storage"),
    vps("V72", "VPS 14C NVMe"),
    vps("V80", "VPS 14C SSD"),
    vps("V89", "VPS 16C Storage"),
    vps("V73", "VPS 20C NVMe"),
    vps("V81", "VPS 20C SSD"),
    vps("V74", "VPS 24C NVMe"),
    vps("V83", "VPS 24C SSD"),
    vds("V8", "VDS S"),
    vds("V9", "VDS M"),
    vds("V10", "VDS L"),
    vds("V11", "VDS XL"),
    vds("V16", "VDS XXL"),
];

/// Looks a product id up in the catalog.
pub fn product(id: &str) -> Option<&'static Product> {
    CATALOG.iter().find(|p| p.id == id)
}

/// The ids of every product of one class, for error messages.
pub fn ids_of_class(class: NodeClass) -> Vec<&'static str> {
    CATALOG
        .iter()
        .filter(|p| p.class == class)
        .map(|p| p.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vds_products_are_exactly_the_five_the_spec_names() {
        assert_eq!(
            ids_of_class(NodeClass::Vds),
            ["V8", "V9", "V10", "V11", "V16"]
        );
    }

    #[test]
    fn every_vps_id_lies_in_the_ranges_the_spec_gives() {
        for id in ids_of_class(NodeClass::Vps) {
            let n: u32 = id[1..].parse().unwrap_or(0);
            assert!((91..=107).contains(&n) || (68..=89).contains(&n), "{id}");
        }
    }
}
