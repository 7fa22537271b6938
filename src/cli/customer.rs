//! `kiwi-infra customer add NAME --tier …`: writes a new customer file from
//! the inventory's own defaults (the products its other customers run on and
//! have prices for), with comments, for the operator to review before `plan`.
//!
//! The file is only a proposal: nothing is ordered until `apply`. It is
//! checked the same way `validate` checks everything, and taken back when the
//! inventory would not load with it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::args::{CustomerAddArgs, GlobalArgs, TierChoice};
use super::CliError;
use crate::inventory::kube::is_dns_label;
use crate::inventory::products::{self, NodeClass};
use crate::inventory::{
    self, slot_name, Desired, Money, PoolRole, Tier, CORE_CLUSTER, CUSTOMERS_DIR, MAIN_FILE,
    SERVER_POOL,
};

/// k3s servers per new cluster: embedded etcd needs an odd number, 3 for HA.
const SERVERS: u32 = 3;

/// The agent pools a new Mesh/Fleet cluster starts with, one per node class
/// (architecture A3): VPS for workloads that do not notice CPU steal, VDS for
/// the latency-sensitive ones, kept to themselves by a taint.
const GENERAL_POOL: &str = "general";
const REALTIME_POOL: &str = "realtime";
const REALTIME_LABEL: &str = "workload.kiwistack.io/realtime";

/// Writes `customers/NAME.toml`, checks the inventory with it and prints
/// where it is and what to run next.
pub(super) fn add(global: &GlobalArgs, args: &CustomerAddArgs) -> Result<(), CliError> {
    let tier = match args.tier {
        TierChoice::Mesh => Tier::Mesh,
        TierChoice::Fleet => Tier::Fleet,
        TierChoice::Core => Tier::Core,
    };
    check_name(&args.name, tier)?;
    let dir = &global.inventory;
    // The defaults come from the inventory, so it has to load first; its
    // errors are the operator's to fix before adding to it.
    let desired = inventory::load(dir).map_err(CliError::Inventory)?;
    let path = dir.join(CUSTOMERS_DIR).join(format!("{}.toml", args.name));
    if !args.force && desired.customers.iter().any(|c| c.name == args.name) {
        return Err(exists(&path));
    }
    let scaffold = scaffold(&desired, &args.name, tier)?;
    let previous = write(&path, &scaffold.text, args.force)?;
    if let Err(diagnostics) = inventory::load(dir) {
        take_back(&path, previous)?;
        return Err(CliError::Inventory(diagnostics));
    }
    println!("wrote {}", path.display());
    match tier {
        Tier::Core => println!("{tier} tier: no nodes of its own"),
        _ => println!(
            "{tier} tier: {} nodes, {} a month; review the file before applying",
            scaffold.nodes, scaffold.monthly
        ),
    }
    println!("next: kiwi-infra plan");
    Ok(())
}

/// Customer names become file, cluster and node names, so they follow the
/// inventory's rules; saying so here beats a diagnostic about a file that
/// was never kept.
fn check_name(name: &str, tier: Tier) -> Result<(), CliError> {
    if !is_dns_label(name) {
        return Err(CliError::User(format!(
            "customer name `{name}` is not a DNS label; expected lowercase letters, digits and \
             `-`, at most 63 characters, not starting or ending with `-`"
        )));
    }
    if name == CORE_CLUSTER {
        return Err(CliError::User(
            "customer name `core` is taken by the Core cluster; expected another name".into(),
        ));
    }
    if tier != Tier::Core {
        let longest = [SERVER_POOL, GENERAL_POOL, REALTIME_POOL]
            .iter()
            .map(|pool| slot_name(name, pool, 99))
            .max_by_key(String::len)
            .unwrap_or_default();
        if longest.len() > 63 {
            return Err(CliError::User(format!(
                "customer name `{name}` is too long: node names like `{longest}` would be {} \
                 characters; expected at most 63",
                longest.len()
            )));
        }
    }
    Ok(())
}

fn exists(path: &Path) -> CliError {
    CliError::User(format!(
        "{} already exists; expected a new customer name, or --force to replace the file",
        path.display()
    ))
}

/// A customer file ready to write.
#[derive(Debug)]
struct Scaffold {
    text: String,
    nodes: u32,
    monthly: Money,
}

/// One pool of the new file.
#[derive(Debug)]
struct PoolChoice {
    product: &'static products::Product,
    price: Money,
    /// Why this product, for the comment above it.
    reason: &'static str,
}

/// The file for `name`: for Mesh and Fleet, servers and one agent pool per
/// node class on products the inventory already uses (or, failing that, the
/// cheapest one with a price).
fn scaffold(desired: &Desired, name: &str, tier: Tier) -> Result<Scaffold, CliError> {
    let mut text = header(name, tier);
    if tier == Tier::Core {
        text.push_str(&format!(
            "# core: no nodes of its own; mesh or fleet: a dedicated k3s cluster (then\n\
             # run `kiwi-infra customer add {name} --tier mesh --force` for its pools).\n\
             tier = \"{tier}\"\n"
        ));
        return Ok(Scaffold {
            text,
            nodes: 0,
            monthly: Money::default(),
        });
    }
    let servers = choose(desired, PoolRole::K3sServer, NodeClass::Vps).ok_or_else(no_price)?;
    let general = choose(desired, PoolRole::K3sAgent, NodeClass::Vps).ok_or_else(no_price)?;
    let realtime = choose(desired, PoolRole::K3sAgent, NodeClass::Vds);
    text.push_str(&format!(
        "# mesh: a dedicated k3s cluster; fleet: the same plus device management;\n\
         # core: no nodes of its own (then remove every table below).\n\
         tier = \"{tier}\"\n\
         # Uncomment to forbid any destructive step (drain, delete, cancel) here.\n\
         # protected = true\n"
    ));
    text.push_str(&format!(
        "\n# The k3s servers: embedded etcd, so an odd count (3 for HA). The first one\n\
         # initialises the cluster, the others join it one after the other.\n\
         # Node names: {} to -{SERVERS:02}.\n\
         [servers]\n\
         {}# Number of servers: odd, so etcd keeps quorum when one is lost.\n\
         count = {SERVERS}\n",
        slot_name(name, SERVER_POOL, 1),
        pool_keys(&servers)
    ));
    text.push_str(&format!(
        "\n# Agents for the VPS workloads (mail, files, wikis): they do not notice CPU\n\
         # steal (architecture A3). Node names: {}.\n\
         [pools.{GENERAL_POOL}]\n\
         {}# Number of agents (0 to 99); raise it as the customer grows.\n\
         count = 1\n",
        slot_name(name, GENERAL_POOL, 1),
        pool_keys(&general)
    ));
    let mut nodes = SERVERS + 1;
    let mut monthly = servers.price.cents * i64::from(SERVERS) + general.price.cents;
    match &realtime {
        Some(realtime) => {
            text.push_str(&format!(
                "\n# Agents for the latency-sensitive workloads (chat, voice/video) on\n\
                 # dedicated cores (A3). The taint keeps every other workload off them;\n\
                 # the label is what those workloads select.\n\
                 [pools.{REALTIME_POOL}]\n\
                 {}# Number of agents (0 to 99).\n\
                 count = 1\n\
                 labels = {{ \"{REALTIME_LABEL}\" = \"true\" }}\n\
                 taints = [\"{REALTIME_LABEL}=true:NoSchedule\"]\n",
                pool_keys(realtime)
            ));
            nodes += 1;
            monthly += realtime.price.cents;
        }
        None => text.push_str(&format!(
            "\n# No VDS product has a price in {MAIN_FILE}, so there is no pool on\n\
             # dedicated cores: add a price, then a [pools.{REALTIME_POOL}] with class = \"vds\".\n"
        )),
    }
    Ok(Scaffold {
        text,
        nodes,
        monthly: Money::from_cents(monthly),
    })
}

fn header(name: &str, tier: Tier) -> String {
    let what = match tier {
        Tier::Core => {
            "A Core-tier customer: namespaces in the shared Core cluster, no nodes\n\
             # of its own. Its file exists so that the customer list is complete."
        }
        Tier::Mesh => {
            "A Mesh-tier customer: a dedicated k3s cluster on its own Contabo nodes\n\
             # (architecture A1, \"Mesh & Fleet tiers\")."
        }
        Tier::Fleet => {
            "A Fleet-tier customer: like Mesh, a dedicated k3s cluster, plus device\n\
             # management, Wi-Fi/VPN certificates and longer observability retention."
        }
    };
    format!(
        "# {name}. {what}\n\
         #\n\
         # Written by `kiwi-infra customer add` from the inventory's defaults: review\n\
         # before applying. `kiwi-infra plan` shows what it would order and cost;\n\
         # nothing is bought before `kiwi-infra apply`.\n\n"
    )
}

/// `class` and `product` of a pool, each with the comment that explains it.
fn pool_keys(choice: &PoolChoice) -> String {
    format!(
        "# vps: shared cores, cheap; vds: dedicated cores, steady latency.\n\
         class = \"{}\"\n\
         # {} ({}, {} a month), {}.\n\
         product = \"{}\"\n",
        choice.product.class,
        choice.product.id,
        choice.product.name,
        choice.price,
        choice.reason,
        choice.product.id,
    )
}

fn no_price() -> CliError {
    CliError::User(format!(
        "no VPS product has a price in {MAIN_FILE}; expected one under [prices], e.g. \
         V94 = \"8.49\""
    ))
}

/// The product the inventory's k3s clusters use most for pools of this role
/// and class (ties go to the cheaper one), or else the cheapest product of
/// the class with a price.
fn choose(desired: &Desired, role: PoolRole, class: NodeClass) -> Option<PoolChoice> {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for pool in desired
        .clusters
        .iter()
        .flat_map(|c| &c.pools)
        .filter(|p| p.role == role && p.class == class)
    {
        *uses.entry(pool.product.as_str()).or_default() += 1;
    }
    let priced = |id: &str| {
        let product = products::product(id).filter(|p| p.class == class)?;
        Some((product, desired.price(id)?))
    };
    let most_used = uses
        .iter()
        .filter_map(|(id, n)| priced(id).map(|(p, price)| (*n, price, p)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.id.cmp(a.2.id)));
    if let Some((_, price, product)) = most_used {
        let reason = match role {
            PoolRole::K3sServer => "as the inventory's other k3s servers",
            _ => "as the inventory's other pools of this class",
        };
        return Some(PoolChoice {
            product,
            price,
            reason,
        });
    }
    desired
        .prices
        .keys()
        .filter_map(|id| priced(id))
        .min_by(|a, b| a.1.cmp(&b.1).then(a.0.id.cmp(b.0.id)))
        .map(|(product, price)| PoolChoice {
            product,
            price,
            reason: "the cheapest of its class with a price",
        })
}

/// Writes the file; without `force` only when no file of that name exists.
/// Returns what was there before, to put back if the inventory rejects it.
fn write(path: &Path, text: &str, force: bool) -> Result<Option<String>, CliError> {
    let fail = |e: std::io::Error| CliError::User(format!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let previous = match crate::localfs::read_text_file_if_exists(
        path,
        crate::localfs::INVENTORY_FILE_LIMIT,
    ) {
        Ok(Some(old)) if force => Some(old),
        Ok(Some(_)) => return Err(exists(path)),
        Ok(None) => None,
        Err(e) => return Err(CliError::User(e.to_string())),
    };
    if previous.is_some() {
        // Replaced, never written through: a symbolic link or a device at
        // the path is refused (`crate::localfs::replace_file`).
        crate::localfs::replace_file(path, text.as_bytes(), 0o644)
            .map_err(|e| CliError::User(e.to_string()))?;
    } else {
        // create_new: a file that appeared meanwhile is never overwritten.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => exists(path),
                _ => fail(e),
            })?;
        file.write_all(text.as_bytes()).map_err(fail)?;
    }
    Ok(previous)
}

/// Restores the file that was there before, or removes the new one.
fn take_back(path: &Path, previous: Option<String>) -> Result<(), CliError> {
    let result = match previous {
        Some(old) => crate::localfs::replace_file(path, old.as_bytes(), 0o644)
            .map_err(|e| std::io::Error::other(e.to_string())),
        None => std::fs::remove_file(path),
    };
    result.map_err(|e| {
        CliError::User(format!(
            "the inventory does not validate with {0}, and it cannot be taken back: {e}; \
             remove or fix {0} by hand",
            path.display()
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn example() -> Desired {
        inventory::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory")).unwrap()
    }

    #[test]
    fn servers_use_the_product_the_other_customers_servers_use() {
        let file = scaffold(&example(), "muster", Tier::Mesh).unwrap();
        let servers = file.text.split("[servers]").nth(1).unwrap();
        assert!(servers.contains("product = \"V94\""), "{}", file.text);
        assert_eq!(file.nodes, 5);
        // 3 × V94 (8.49) + V97 (15.49) + V8 (38.40)
        assert_eq!(file.monthly, Money::from_cents(3 * 849 + 1549 + 3840));
    }

    #[test]
    fn without_other_customers_the_cheapest_priced_product_is_chosen() {
        let mut desired = example();
        desired.clusters.retain(|c| c.name == CORE_CLUSTER);
        let file = scaffold(&desired, "muster", Tier::Fleet).unwrap();
        let servers = file.text.split("[servers]").nth(1).unwrap();
        assert!(servers.contains("product = \"V94\""), "{}", file.text);
        let realtime = file.text.split("[pools.realtime]").nth(1).unwrap();
        assert!(realtime.contains("product = \"V8\""), "{}", file.text);
    }

    #[test]
    fn no_priced_vds_leaves_out_the_realtime_pool_and_says_why() {
        let mut desired = example();
        desired.clusters.retain(|c| c.name == CORE_CLUSTER);
        desired.prices.retain(|id, _| id.starts_with("V9"));
        desired.prices.remove("V9");
        let file = scaffold(&desired, "muster", Tier::Mesh).unwrap();
        assert!(
            !file.text.lines().any(|l| l.starts_with("[pools.realtime]")),
            "{}",
            file.text
        );
        assert!(file.text.contains("No VDS product has a price"));
        assert_eq!(file.nodes, 4);
    }

    #[test]
    fn names_that_would_make_too_long_node_names_are_refused() {
        let name = "a".repeat(50);
        assert!(check_name(&name, Tier::Mesh).is_err());
        assert!(check_name(&name, Tier::Core).is_ok());
        assert!(check_name("Muster", Tier::Core).is_err());
        assert!(check_name("core", Tier::Core).is_err());
    }
}
