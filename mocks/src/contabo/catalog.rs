//! What Contabo sells and installs, as far as the mock needs it: the product table (ids, names and
//! disk sizes from the product table in the spec's `createInstance` description; cores and RAM
//! from Contabo's public price list, approximate for the older `nC` line), the standard images and
//! the regions. Fixed data, so that the same order always produces the same machine.

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};

/// One orderable product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// `V92` and so on.
    pub id: &'static str,
    /// Marketing name, e.g. `VPS 10 SSD`.
    pub name: &'static str,
    /// `productType` of the spec: `nvme`, `ssd` or `vds`.
    pub product_type: &'static str,
    /// Virtual (VPS) or dedicated (VDS) cores.
    pub cpu_cores: u32,
    /// Memory in MiB.
    pub ram_mb: u64,
    /// Disk in MiB.
    pub disk_mb: u64,
}

const GB: u64 = 1024;

/// (id, name, cores, ram GB, disk GB, disk kind). Kind decides `productType` for VPS.
const PRODUCTS: &[(&str, &str, u32, u64, u64, &str)] = &[
    ("V91", "VPS 10 NVMe", 4, 8, 75, "nvme"),
    ("V92", "VPS 10 SSD", 4, 8, 150, "ssd"),
    ("V93", "VPS 10 Storage", 4, 8, 300, "ssd"),
    ("V94", "VPS 20 NVMe", 6, 12, 100, "nvme"),
    ("V95", "VPS 20 SSD", 6, 12, 200, "ssd"),
    ("V96", "VPS 20 Storage", 6, 12, 400, "ssd"),
    ("V97", "VPS 30 NVMe", 8, 24, 200, "nvme"),
    ("V98", "VPS 30 SSD", 8, 24, 400, "ssd"),
    ("V99", "VPS 30 Storage", 8, 24, 1000, "nvme"),
    ("V100", "VPS 40 NVMe", 12, 48, 250, "nvme"),
    ("V101", "VPS 40 SSD", 12, 48, 500, "ssd"),
    ("V102", "VPS 40 Storage", 12, 48, 1200, "nvme"),
    ("V103", "VPS 50 NVMe", 16, 64, 300, "nvme"),
    ("V104", "VPS 50 SSD", 16, 64, 600, "ssd"),
    ("V105", "VPS 50 Storage", 16, 64, 1400, "ssd"),
    ("V106", "VPS 60 NVMe", 18, 96, 350, "nvme"),
    ("V107", "VPS 60 SSD", 18, 96, 700, "ssd"),
    ("V68", "VPS 4C NVMe", 4, 8, 100, "nvme"),
    ("V69", "VPS 6C NVMe", 6, 16, 150, "nvme"),
    ("V70", "VPS 8C NVMe", 8, 30, 200, "nvme"),
    ("V71", "VPS 10C NVMe", 10, 60, 250, "nvme"),
    ("V72", "VPS 14C NVMe", 14, 90, 300, "nvme"),
    ("V73", "VPS 20C NVMe", 20, 120, 400, "nvme"),
    ("V74", "VPS 24C NVMe", 24, 180, 600, "nvme"),
    // V75, V82 and V84 fall in the documented V68–V89 range but the spec's table names no
    // product for them; they are kept orderable with neighbouring sizes.
    ("V75", "VPS 16C NVMe", 16, 96, 500, "nvme"),
    ("V76", "VPS 4C SSD", 4, 8, 200, "ssd"),
    ("V77", "VPS 6C SSD", 6, 16, 300, "ssd"),
    ("V78", "VPS 8C SSD", 8, 30, 400, "ssd"),
    ("V79", "VPS 10C SSD", 10, 60, 500, "ssd"),
    ("V80", "VPS 14C SSD", 14, 90, 600, "ssd"),
    ("V81", "VPS 20C SSD", 20, 120, 800, "ssd"),
    ("V82", "VPS 16C SSD", 16, 96, 1000, "ssd"),
    ("V83", "VPS 24C SSD", 24, 180, 1200, "ssd"),
    ("V84", "VPS 20C Storage", 20, 120, 3000, "ssd"),
    ("V85", "VPS 4C Storage", 4, 8, 600, "nvme"),
    ("V86", "VPS 6C Storage", 6, 16, 1800, "nvme"),
    ("V87", "VPS 8C Storage", 8, 30, 2400, "nvme"),
    ("V88", "VPS 10C Storage", 10, 60, 3200, "nvme"),
    ("V89", "VPS 16C Storage", 16, 96, 3600, "ssd"),
    ("V8", "VDS S", 3, 24, 180, "vds"),
    ("V9", "VDS M", 4, 32, 240, "vds"),
    ("V10", "VDS L", 6, 48, 360, "vds"),
    ("V11", "VDS XL", 8, 64, 480, "vds"),
    ("V16", "VDS XXL", 12, 96, 720, "vds"),
];

/// The product with this id, if Contabo sells it.
pub fn product(id: &str) -> Option<Product> {
    PRODUCTS
        .iter()
        .find(|p| p.0 == id)
        .map(|&(id, name, cpu_cores, ram, disk, kind)| Product {
            id,
            name,
            product_type: kind,
            cpu_cores,
            ram_mb: ram * GB,
            disk_mb: disk * GB,
        })
}

/// A standard image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Fixed UUID, stable across runs.
    pub id: &'static str,
    /// Contabo-style name, e.g. `ubuntu-24.04`.
    pub name: &'static str,
    /// Human description.
    pub description: &'static str,
    /// `osType`.
    pub os_type: &'static str,
    /// OS version.
    pub version: &'static str,
    /// Image size in MiB.
    pub size_mb: u64,
}

/// The standard images. `ubuntu-22.04` carries the id the spec gives as `imageId` default, so
/// an order without `imageId` installs it, as at Contabo.
pub const IMAGES: &[Image] = &[
    Image {
        id: "d64d5c6c-9dda-4e38-8174-0ee282474d8a",
        name: "ubuntu-24.04",
        description: "Ubuntu 24.04 LTS (Noble Numbat)",
        os_type: "Linux",
        version: "24.04",
        size_mb: 2_252,
    },
    Image {
        id: "afecbb85-e2fc-46f0-9684-b46b1faf00bb",
        name: "ubuntu-22.04",
        description: "Ubuntu 22.04 LTS (Jammy Jellyfish)",
        os_type: "Linux",
        version: "22.04",
        size_mb: 2_150,
    },
    Image {
        id: "66abf39a-ba6b-4b0c-8b83-5b5e2e3bb7d8",
        name: "debian-12",
        description: "Debian 12 (Bookworm)",
        os_type: "Linux",
        version: "12",
        size_mb: 1_900,
    },
    Image {
        id: "4efbc0ba-2313-4fe1-842a-516f8652e729",
        name: "debian-13",
        description: "Debian 13 (Trixie)",
        os_type: "Linux",
        version: "13",
        size_mb: 1_950,
    },
    Image {
        id: "3e1dcbad-0a4b-4c64-9e5f-1e2d49b7a2c1",
        name: "rockylinux-9",
        description: "Rocky Linux 9",
        os_type: "Linux",
        version: "9",
        size_mb: 2_048,
    },
];

/// The image with this id.
pub fn image(id: &str) -> Option<&'static Image> {
    IMAGES.iter().find(|i| i.id == id)
}

/// When the standard images were "uploaded"; fixed so responses do not change between runs.
pub static IMAGES_CREATED: LazyLock<DateTime<Utc>> = LazyLock::new(|| {
    Utc.with_ymd_and_hms(2024, 5, 2, 8, 0, 0)
        .single()
        .unwrap_or_default()
});

/// The region codes of the spec's `CreateInstanceRequest.region` enum, with the name and data
/// centre the API reports for each.
pub const REGIONS: &[(&str, &str, &str)] = &[
    ("EU", "European Union", "European Union 1"),
    (
        "US-central",
        "United States (Central)",
        "United States Central 1",
    ),
    ("US-east", "United States (East)", "United States East 1"),
    ("US-west", "United States (West)", "United States West 1"),
    ("SIN", "Asia (Singapore)", "Asia (Singapore) 1"),
    ("UK", "United Kingdom", "United Kingdom 1"),
    ("AUS", "Australia (Sydney)", "Australia (Sydney) 1"),
    ("JPN", "Asia (Japan)", "Asia (Japan) 1"),
    ("IND", "Asia (India)", "Asia (India) 1"),
];

/// (region name, data centre) of a region code from [`REGIONS`].
pub fn region(code: &str) -> Option<(&'static str, &'static str)> {
    REGIONS
        .iter()
        .find(|r| r.0 == code)
        .map(|&(_, name, dc)| (name, dc))
}

/// All instance statuses the spec documents (`instanceStatus`).
pub const INSTANCE_STATUSES: [&str; 14] = [
    "provisioning",
    "uninstalled",
    "running",
    "stopped",
    "error",
    "installing",
    "unknown",
    "manual_provisioning",
    "product_not_available",
    "verification_required",
    "rescue",
    "pending_payment",
    "other",
    "reset_password",
];

/// `addOns` id the mock gives the private-networking add-on (Contabo's ids are not in the spec).
pub const ADDON_PRIVATE_NETWORKING: i64 = 1477;
/// `addOns` id of additional IPs.
pub const ADDON_ADDITIONAL_IPS: i64 = 1475;
/// `addOns` id of backups.
pub const ADDON_BACKUP: i64 = 1476;
/// `addOns` id of a custom-image slot.
pub const ADDON_CUSTOM_IMAGE: i64 = 1478;
/// `addOns` id of extra storage.
pub const ADDON_EXTRA_STORAGE: i64 = 1479;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_product_ranges_are_all_orderable() {
        let vps = (91..=107).chain(68..=89);
        for n in vps {
            let p = product(&format!("V{n}"));
            assert!(p.is_some_and(|p| p.product_type != "vds"), "V{n}");
        }
        for id in ["V8", "V9", "V10", "V11", "V16"] {
            assert_eq!(product(id).map(|p| p.product_type), Some("vds"), "{id}");
        }
        assert!(product("V1").is_none());
        assert!(product("V90").is_none());
    }
}
