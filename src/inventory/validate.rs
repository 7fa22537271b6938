//! Checks the inventory as read against the rules the planner relies on, and
//! builds the [`Desired`] state. Every rule reports at the offending value, and
//! every rule runs even after others failed, so one run lists every mistake.

use super::diagnostics::{Collector, FileId};
use super::files::{
    CustomerFile, MainFile, NamedPool, RawCoreFirewall, RawFirewall, RawPool, RawPort, RawPrice,
    RawProvider,
};
use super::kube::{self, Taint, KIWI_LABEL_PREFIX};
use super::load::{RawInventory, MAIN_FILE};
use super::model::{
    slot_name, ClusterKind, ClusterSpec, ControlPlaneNode, Customer, Desired, Money, PoolRole,
    PoolSpec, Provider, StateAccess, StateBackend, StateSettings, Tier, CORE_CLUSTER,
    DEFAULT_LEASE_SECONDS, PRIVATE_NETWORKING_PRICE_KEY, SERVER_POOL,
};
use super::products::{self, NodeClass};
use super::values::{ApiEndpoint, Host, K3sVersion, KubernetesVersion};
use crate::firewall::{
    is_private_network, overlap, private_ranges, reserved_ports, ClusterFirewall, FlannelBackend,
    NodeRole, PortRange, PortRule, Protocol, ReservedPort, K3S_POD_NETWORK, K3S_SERVICE_NETWORK,
    SSH_PORT,
};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// Regions `POST /v1/compute/instances` accepts.
pub(crate) const REGIONS: &[&str] = &[
    "EU",
    "US-central",
    "US-east",
    "US-west",
    "SIN",
    "UK",
    "AUS",
    "JPN",
    "IND",
];

/// Contract periods (months) Contabo accepts.
pub(crate) const PERIODS: &[i64] = &[1, 3, 6, 12];

/// Longest image name accepted.
pub(crate) const MAX_IMAGE_NAME: usize = 255;

/// The OpenSSH public key types accepted for the operator's key.
pub(crate) const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Highest monthly price accepted, in whole euros (seven digits).
pub(crate) const MAX_PRICE_EUROS: i64 = 9_999_999;

/// What a price looks like, for error messages.
const PRICE_EXPECTED: &str = "euros as a string such as \"8.49\" (at most 7 digits before the \
    point and whole cents after it)";

/// Parses a price as written in `[prices]`: 1 to 7 digits of euros, then
/// optionally `.` and the cents (one or two digits, then only zeros: `"8.490"`
/// is 8.49 €, `"8.495"` is refused rather than rounded). The same grammar is
/// the schema's pattern.
pub(crate) fn price_from_text(s: &str) -> Option<Money> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "00"));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || whole.len() > 7 || !digits(frac) {
        return None;
    }
    let (cents, rest) = frac.split_at(frac.len().min(2));
    if !rest.bytes().all(|b| b == b'0') {
        return None;
    }
    let cents = format!("{cents:0<2}");
    Money::parse_euros(&format!("{whole}.{cents}"))
}

/// The error for a price written as a TOML float (`V94 = 8.490`): the
/// suggestion quotes the digits as written, not the float they parse to,
/// so `8.490` suggests `"8.490"` and no cent is lost or invented.
fn float_price_message(written: &str) -> String {
    let digits: String = written
        .trim_start_matches('+')
        .chars()
        .filter(|c| *c != '_')
        .collect();
    let shown = crate::text::escape_for_terminal(written);
    if price_from_text(&digits).is_some() {
        format!(
            "price {shown} is a floating-point number; expected a string such as \"{digits}\" \
             so cents stay exact"
        )
    } else if digits.starts_with('-') {
        format!("price {shown} is negative; expected {PRICE_EXPECTED}")
    } else {
        format!(
            "price {shown} is a floating-point number that is not euros and cents; expected \
             {PRICE_EXPECTED}"
        )
    }
}

/// Slot numbers are two digits.
pub(crate) const MAX_POOL_COUNT: i64 = 99;

/// Most control-plane nodes listed in `[core]` (etcd itself advises at
/// most 7 members; the bound keeps the rule one JSON Schema can state).
pub(crate) const MAX_CONTROL_PLANE: usize = 99;

/// A node name as it will exist, with where it came from, for duplicate checks.
struct NameSource {
    file: FileId,
    what: String,
}

struct Validator<'a> {
    dir: &'a Path,
    errors: &'a mut Collector,
    prices: Option<BTreeMap<String, Money>>,
    /// Products `[prices]` has an entry for, right or wrong; `None` when the
    /// table could not be read (already reported), so that no product is
    /// reported missing a price because of an error elsewhere.
    listed_prices: Option<BTreeSet<String>>,
    names: BTreeMap<String, NameSource>,
    /// `[prices] private_networking`, when given and valid.
    private_networking_price: Option<Money>,
    /// Where the first cluster asking for a private network said so.
    private_network_users: Vec<(FileId, Range<usize>)>,
}

/// Validates what was read and builds the desired state; returns `None` when
/// anything was wrong (the errors are in `errors`).
pub(crate) fn validate(dir: &Path, raw: RawInventory, errors: &mut Collector) -> Option<Desired> {
    let mut v = Validator {
        dir,
        errors,
        prices: None,
        listed_prices: None,
        names: BTreeMap::new(),
        private_networking_price: None,
        private_network_users: Vec::new(),
    };
    let (main_file, main) = match raw.main {
        Some((file, main)) => (Some(file), Some(main)),
        None => (None, None),
    };
    let mut provider = None;
    let mut core = None;
    // `None`: no [k3s] table; `Some(None)`: one that is wrong or unknown
    // (kiwi.toml missing or not TOML), already reported, so customers that
    // need it do not report it again.
    let mut k3s_version = Some(None);
    let mut state = None;
    let mut flannel = FlannelBackend::default();
    if let (Some(file), Some(main)) = (main_file, main) {
        state = v.state(file, &main);
        v.prices = Some(v.prices(file, &main));
        if main.parsed && main.prices_read {
            v.listed_prices = Some(
                main.prices
                    .iter()
                    .map(|(p, _)| p.get_ref().clone())
                    .collect(),
            );
        }
        provider = v.provider(file, &main);
        if main.parsed && main.k3s_span.is_none() {
            k3s_version = None;
        }
        if let Some(k) = main.k3s.as_ref() {
            k3s_version = Some(v.parsed::<K3sVersion>(file, &k.version, "[k3s] version"));
            if let Some(backend) = &k.flannel_backend {
                flannel = v
                    .parsed::<FlannelBackend>(file, backend, "[k3s] flannel_backend")
                    .unwrap_or_default();
            }
        }
        core = v.core(file, main);
    }
    let mut clusters: Vec<ClusterSpec> = core.into_iter().collect();
    let mut customers = Vec::new();
    for (file, customer) in raw.customers {
        if let Some((c, cluster)) =
            v.customer(file, customer, k3s_version.as_ref(), flannel, main_file)
        {
            customers.push(c);
            clusters.extend(cluster);
        }
    }
    v.private_networking_priced();
    if v.errors.has_errors() {
        return None;
    }
    Some(Desired {
        provider: provider?,
        private_networking_price: v.private_networking_price,
        prices: v.prices?,
        clusters,
        customers,
        state: state.unwrap_or_default(),
    })
}

impl Validator<'_> {
    /// Parses a value into its type, reporting the type's error at it.
    /// `None` when it does not parse (the error is recorded).
    fn parsed<T: std::str::FromStr<Err = String>>(
        &mut self,
        file: FileId,
        value: &Spanned<String>,
        what: &str,
    ) -> Option<T> {
        match value.get_ref().parse::<T>() {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                self.errors.at(file, value.span(), format!("{what} {why}"));
                None
            }
        }
    }

    /// `[state]`: the backend by name, and a lease duration only where a
    /// lease exists. `None` without the table (local).
    fn state(&mut self, file: FileId, main: &MainFile) -> Option<StateSettings> {
        let raw = main.state.as_ref()?;
        let backend = match raw.backend.get_ref().as_str() {
            "core-cluster" => StateBackend::CoreCluster,
            "local" => StateBackend::Local,
            other => {
                self.errors.at(
                    file,
                    raw.backend.span(),
                    format!(
                        "unknown state backend `{}`; expected \"core-cluster\" (a Lease and a \
                         ConfigMap in the Core cluster, shared by every operator) or \"local\" \
                         (<inventory>/.kiwi/, one machine only)",
                        crate::text::escape_for_terminal(other)
                    ),
                );
                return None;
            }
        };
        let mut settings = StateSettings {
            backend,
            ..StateSettings::default()
        };
        if let Some(secs) = &raw.lease_seconds {
            if backend == StateBackend::Local {
                self.errors.at(
                    file,
                    secs.span(),
                    "lease_seconds applies to backend = \"core-cluster\" only; expected no \
                     lease_seconds with the local backend (its lock is released by the OS)",
                );
                return None;
            }
            match u32::try_from(*secs.get_ref()) {
                Ok(s) if (3..=3600).contains(&s) => settings.lease_seconds = s,
                _ => {
                    self.errors.at(
                        file,
                        secs.span(),
                        format!(
                            "lease_seconds {} is out of range; expected whole seconds from 3 to \
                             3600 (default {DEFAULT_LEASE_SECONDS})",
                            secs.get_ref()
                        ),
                    );
                    return None;
                }
            }
        }
        if let Some(access) = &raw.access {
            if backend == StateBackend::Local {
                self.errors.at(
                    file,
                    access.span(),
                    "access applies to backend = \"core-cluster\" only; expected no access with \
                     the local backend",
                );
                return None;
            }
            settings.access = match access.get_ref().as_str() {
                "ssh" => StateAccess::Ssh,
                "kubeconfig" => StateAccess::Kubeconfig { context: None },
                other => {
                    self.errors.at(
                        file,
                        access.span(),
                        format!(
                            "unknown access `{}`; expected \"ssh\" (kubectl on a Core \
                             control-plane node, host keys pinned) or \"kubeconfig\" (kubectl \
                             here, with your own kubeconfig)",
                            crate::text::escape_for_terminal(other)
                        ),
                    );
                    return None;
                }
            };
        }
        if let Some(context) = &raw.context {
            let StateAccess::Kubeconfig { context: slot } = &mut settings.access else {
                self.errors.at(
                    file,
                    context.span(),
                    "context applies to access = \"kubeconfig\" only; expected no context \
                     when kubectl runs on a control-plane node",
                );
                return None;
            };
            let name = context.get_ref();
            let plain = !name.is_empty()
                && name.len() <= 253
                && !name.starts_with('-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._@:/-".contains(c));
            if !plain {
                self.errors.at(
                    file,
                    context.span(),
                    "context is not a plain kubeconfig context name; expected letters, digits \
                     and `._@:/-` (at most 253, not starting with `-`)",
                );
                return None;
            }
            *slot = Some(name.clone());
        }
        Some(settings)
    }

    fn prices(&mut self, file: FileId, main: &MainFile) -> BTreeMap<String, Money> {
        let mut prices = BTreeMap::new();
        for (product, price) in &main.prices {
            let add_on = product.get_ref() == PRIVATE_NETWORKING_PRICE_KEY;
            if !add_on && products::product(product.get_ref()).is_none() {
                self.errors.at(
                    file,
                    product.span(),
                    format!(
                        "unknown product `{}`; expected {}",
                        product.get_ref(),
                        catalog_hint()
                    ),
                );
            }
            let written = self
                .errors
                .text(file)
                .get(price.span())
                .unwrap_or("")
                .trim();
            let money = match price.get_ref() {
                RawPrice::Text(s) => price_from_text(s).ok_or_else(|| {
                    format!(
                        "price `{}` is not an amount in euros; expected {PRICE_EXPECTED}",
                        crate::text::escape_for_terminal(s)
                    )
                }),
                RawPrice::Integer(n) if (0..=MAX_PRICE_EUROS).contains(n) => {
                    Ok(Money::from_cents(n * 100))
                }
                RawPrice::Integer(n) => Err(format!(
                    "price {n} is out of range; expected {PRICE_EXPECTED}"
                )),
                RawPrice::Float => Err(float_price_message(written)),
            };
            match money {
                Ok(m) if add_on => self.private_networking_price = Some(m),
                Ok(m) => {
                    prices.insert(product.get_ref().clone(), m);
                }
                Err(message) => self.errors.at(file, price.span(), message),
            }
        }
        prices
    }

    fn provider(&mut self, file: FileId, main: &MainFile) -> Option<Provider> {
        let p = main.provider.as_ref()?;
        let mut ok = true;
        if !REGIONS.contains(&p.region.get_ref().as_str()) {
            self.errors.at(
                file,
                p.region.span(),
                format!(
                    "unknown region `{}`; expected one of {}",
                    p.region.get_ref(),
                    REGIONS.join(", ")
                ),
            );
            ok = false;
        }
        ok &= self.image_name(file, &p.image);
        if !PERIODS.contains(p.period.get_ref()) {
            self.errors.at(
                file,
                p.period.span(),
                format!(
                    "contract period {} is not offered; expected 1, 3, 6 or 12 (months)",
                    p.period.get_ref()
                ),
            );
            ok = false;
        }
        let key = match (&p.ssh_public_key, &p.ssh_public_key_file) {
            (Some(key), None) => self.public_key(file, key.span(), key.get_ref()),
            (None, Some(path)) => self.public_key_file(file, path),
            (Some(_), Some(path)) => {
                self.errors.at(
                    file,
                    path.span(),
                    "both ssh_public_key and ssh_public_key_file are set; expected only one",
                );
                None
            }
            (None, None) => {
                let span = main.provider_span.clone().unwrap_or(0..0);
                self.errors.at(file, span, "no operator SSH key; expected ssh_public_key = \"ssh-ed25519 …\" or ssh_public_key_file = \"operator.pub\"");
                None
            }
        };
        // A list with a mistake is never taken for `[]` (open to anyone).
        let operator_networks = self.operator_networks(file, main, p)?;
        (ok && key.is_some()).then(|| Provider {
            region: p.region.get_ref().clone(),
            image: p.image.get_ref().clone(),
            ssh_public_key: key.unwrap_or_default(),
            period: u8::try_from(*p.period.get_ref()).unwrap_or(1),
            operator_networks,
        })
    }

    /// `[provider] operator_networks`: required, each a network in CIDR
    /// form without host bits (`192.0.2.1/24` is refused: did the operator
    /// mean the host or the network?). `[]` is allowed: the explicit choice
    /// to leave SSH and the API open, warned about by `validate` and `plan`.
    fn operator_networks(
        &mut self,
        file: FileId,
        main: &MainFile,
        p: &RawProvider,
    ) -> Option<Vec<IpNet>> {
        let Some(list) = &p.operator_networks else {
            let span = main.provider_span.clone().unwrap_or(0..0);
            self.errors.at(
                file,
                span,
                "no operator_networks; expected the networks you reach SSH and the Kubernetes \
                 API from, e.g. operator_networks = [\"198.51.100.0/24\", \"2001:db8::/48\"] \
                 (every other source is dropped by each node's firewall), or \
                 operator_networks = [] to leave SSH and the API open to the internet",
            );
            return None;
        };
        let mut nets = Vec::new();
        for item in list.get_ref() {
            match parse_network(item.get_ref()).and_then(not_ipv4_mapped) {
                Ok(net) => nets.push(net),
                Err(why) => self
                    .errors
                    .at(file, item.span(), format!("operator network {why}")),
            }
        }
        (nets.len() == list.get_ref().len()).then_some(nets)
    }

    /// An image name: what the API is asked for by name. Letters, digits,
    /// `.`, `_` and `-`, as Contabo's image names are (`ubuntu-24.04`).
    fn image_name(&mut self, file: FileId, image: &Spanned<String>) -> bool {
        let name = image.get_ref();
        let ok = !name.is_empty()
            && name.len() <= MAX_IMAGE_NAME
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.errors.at(
                file,
                image.span(),
                format!(
                    "image name `{name}` is not an image name; expected an OS image name such \
                     as \"ubuntu-24.04\" (1 to {MAX_IMAGE_NAME} letters, digits, `.`, `_` and \
                     `-`, starting with a letter or digit)"
                ),
            );
        }
        ok
    }

    fn public_key_file(&mut self, file: FileId, path: &Spanned<String>) -> Option<String> {
        let full = self.dir.join(path.get_ref());
        match crate::localfs::read_text_file(&full, crate::localfs::INVENTORY_FILE_LIMIT) {
            Ok(text) => self.public_key(file, path.span(), text.trim()),
            Err(e) => {
                let message = if e.is_not_found() {
                    format!(
                        "SSH public key file {} not found; expected a path relative to the \
                         inventory directory",
                        full.display()
                    )
                } else {
                    format!(
                        "cannot use SSH public key file {}: {}",
                        full.display(),
                        e.reason()
                    )
                };
                self.errors.at(file, path.span(), message);
                None
            }
        }
    }

    /// Accepts an OpenSSH public key line, parsed (the key data must decode
    /// and match its type), with a comment free of control characters and
    /// line separators, and returns it as OpenSSH writes it. A private key
    /// is refused without echoing any of it.
    fn public_key(&mut self, file: FileId, span: Range<usize>, key: &str) -> Option<String> {
        const TYPES: &[&str] = SSH_KEY_TYPES;
        if key.contains("PRIVATE KEY") {
            self.errors.at(
                file,
                span,
                "this is a private key; expected the operator's public key (the .pub file)",
            );
            return None;
        }
        // Checked before parsing: the key's text reaches every node's user
        // data, and a comment is free text.
        if let Some((_, c, why)) = super::text::first_forbidden(key) {
            self.errors.at(
                file,
                span,
                format!(
                    "the SSH public key contains {} ({why}); expected one line like \
                     \"ssh-ed25519 AAAA… comment\" with a printable comment",
                    super::text::code_point(c)
                ),
            );
            return None;
        }
        let kind = key.split(' ').next().unwrap_or("");
        let parsed = ssh_key::PublicKey::from_openssh(key)
            .ok()
            .filter(|_| TYPES.contains(&kind));
        let Some(parsed) = parsed else {
            self.errors.at(
                file,
                span,
                format!(
                    "not an OpenSSH public key (the key type must be one of {} and the \
                     base64 data must decode to a key of that type); expected one line like \
                     \"ssh-ed25519 AAAA… comment\"",
                    TYPES.join(", ")
                ),
            );
            return None;
        };
        match parsed.to_openssh() {
            Ok(canonical) => Some(canonical),
            Err(_) => {
                self.errors.at(
                    file,
                    span,
                    "the SSH public key cannot be written back in OpenSSH form; expected one \
                     line like \"ssh-ed25519 AAAA… comment\"",
                );
                None
            }
        }
    }

    /// A cluster with `private_network = true` needs the add-on's price:
    /// the plan shows what the add-on adds to the monthly bill.
    fn private_networking_priced(&mut self) {
        if self.private_networking_price.is_some() || self.listed_prices.is_none() {
            return;
        }
        if let Some((file, span)) = self.private_network_users.first().cloned() {
            let listed = self
                .listed_prices
                .as_ref()
                .is_some_and(|l| l.contains(PRIVATE_NETWORKING_PRICE_KEY));
            if listed {
                // Its entry is there but wrong: already reported at it.
                return;
            }
            self.errors.at(
                file,
                span,
                format!(
                    "no price for the private-networking add-on; expected \
                     `{PRIVATE_NETWORKING_PRICE_KEY} = \"…\"` (monthly euros per instance) \
                     under [prices] in {MAIN_FILE}"
                ),
            );
        }
    }

    fn core(&mut self, file: FileId, main: MainFile) -> Option<ClusterSpec> {
        let core_span = main.core_span.clone();
        let raw = main.core?;
        let mut ok = true;
        let endpoint = self.parsed::<ApiEndpoint>(file, &raw.api_endpoint, "api_endpoint");
        let version =
            self.parsed::<KubernetesVersion>(file, &raw.kubernetes_version, "kubernetes_version");
        let nodes = raw.control_plane.get_ref();
        if nodes.is_empty() || nodes.len() % 2 == 0 {
            self.errors.at(file, raw.control_plane.span(), format!("{} control-plane nodes cannot keep etcd quorum; expected an odd number (3 for HA)", nodes.len()));
            ok = false;
        } else if nodes.len() > MAX_CONTROL_PLANE {
            self.errors.at(file, raw.control_plane.span(), format!("{} control-plane nodes are more than etcd can keep in step; expected an odd number up to {MAX_CONTROL_PLANE} (3 for HA)", nodes.len()));
            ok = false;
        }
        let mut control_plane = Vec::new();
        for node in nodes {
            let name = node.name.get_ref();
            if !is_node_name(name) {
                self.errors.at(file, node.name.span(), format!("control-plane node name `{name}` is not a valid node name; expected lowercase letters, digits, `-` and `.`"));
                ok = false;
            }
            self.claim_name(
                file,
                node.name.span(),
                name,
                format!("control-plane node `{name}`"),
            );
            let address = self.parsed::<Host>(file, &node.address, "control-plane address");
            if let Some(address) = address {
                control_plane.push(ControlPlaneNode {
                    name: name.clone(),
                    address,
                });
            } else {
                ok = false;
            }
        }
        if let Some(private) = raw.private_network.as_ref().filter(|p| *p.get_ref()) {
            self.errors.at(
                file,
                private.span(),
                "private_network is not supported for the Core cluster: its control plane is \
                 not ordered by kiwi-infra and is not in a Contabo private network, and workers \
                 cannot send cluster traffic over a network the control plane is not in; \
                 expected private_network = false or no such key under [core]",
            );
            ok = false;
        }
        let pools = self.pools(
            file,
            CORE_CLUSTER,
            &main.core_pools,
            PoolRole::KubeadmWorker,
            &BTreeSet::new(),
        );
        let firewall = self.core_firewall(file, core_span, &raw);
        let (Some(api_endpoint), Some(kubernetes_version), true, Some(pools), Some(firewall)) =
            (endpoint, version, ok, pools, firewall)
        else {
            return None;
        };
        Some(ClusterSpec {
            name: CORE_CLUSTER.to_string(),
            tier: Tier::Core,
            kind: ClusterKind::Kubeadm {
                api_endpoint,
                kubernetes_version,
                control_plane,
            },
            protected: raw.protected,
            private_network: false,
            pools,
            firewall,
        })
    }

    /// `[core.firewall]`: required, because only the operator knows the
    /// Core cluster's CNI and networks, and a guess would drop its pod
    /// traffic on every new worker.
    fn core_firewall(
        &mut self,
        file: FileId,
        core_span: Option<Range<usize>>,
        raw: &super::files::RawCore,
    ) -> Option<ClusterFirewall> {
        let Some(fw) = &raw.firewall else {
            self.errors.at(
                file,
                core_span.unwrap_or(0..0),
                "no [core.firewall]; expected the Core cluster's CNI ports and pod and service \
                 networks, which each new worker's firewall needs, e.g. [core.firewall] \
                 cni_ports = [\"udp/4789\", \"tcp/179\"] and cluster_networks = \
                 [\"10.244.0.0/16\", \"10.96.0.0/12\"]",
            );
            return None;
        };
        let span = fw.span();
        let fw: &RawCoreFirewall = fw.get_ref();
        let cni = match &fw.cni_ports {
            None => {
                self.errors.at(file, span.clone(), "no cni_ports in [core.firewall]; expected the ports the Core cluster's CNI uses between nodes, e.g. cni_ports = [\"udp/4789\", \"tcp/179\"] (Calico VXLAN and BGP), or [] for a CNI that needs none");
                None
            }
            Some(list) => {
                let mut rules = Vec::new();
                for item in list.get_ref() {
                    match item.get_ref().parse::<PortRule>() {
                        // SSH is the operator networks' only: a CNI port
                        // there would open it to every member.
                        Ok(rule)
                            if rule.protocol == Protocol::Tcp
                                && rule.ports.start() <= SSH_PORT
                                && SSH_PORT <= rule.ports.end() =>
                        {
                            self.errors.at(
                                file,
                                item.span(),
                                format!(
                                    "CNI port {rule} includes SSH (tcp/{SSH_PORT}), which the \
                                     firewall opens to [provider] operator_networks only; \
                                     expected the CNI's own ports, e.g. \"udp/4789\" or \
                                     \"tcp/179\""
                                ),
                            );
                        }
                        Ok(rule) => rules.push(rule),
                        Err(why) => self.errors.at(file, item.span(), format!("CNI port {why}")),
                    }
                }
                (rules.len() == list.get_ref().len()).then_some(rules)
            }
        };
        let reserved = reserved_ports(
            &[NodeRole::KubeadmControlPlane, NodeRole::KubeadmWorker],
            cni.as_deref().unwrap_or_default(),
            "the CNI (cni_ports)",
        );
        let public = self.public_ports(file, &fw.public_tcp_ports, &fw.public_udp_ports, &reserved);
        let networks = match &fw.cluster_networks {
            None => {
                self.errors.at(file, span, "no cluster_networks in [core.firewall]; expected the Core cluster's pod and service networks, e.g. cluster_networks = [\"10.244.0.0/16\", \"10.96.0.0/12\"]");
                None
            }
            Some(list) => {
                let mut nets = Vec::new();
                for item in list.get_ref() {
                    match parse_network(item.get_ref()) {
                        Ok(IpNet::V4(net)) if !is_private_network(net) => self.errors.at(
                            file,
                            item.span(),
                            format!(
                                "cluster network {net} is not a private network; expected pod \
                                 and service networks inside {} (the firewall admits these \
                                 networks to the kubelet and the API, so a public one would \
                                 admit strangers)",
                                private_ranges()
                            ),
                        ),
                        Ok(IpNet::V4(net)) => nets.push(net),
                        Ok(IpNet::V6(_)) => self.errors.at(file, item.span(), "cluster network is IPv6; expected an IPv4 network (the firewall admits IPv4 pod and service networks)"),
                        Err(why) => self.errors.at(file, item.span(), format!("cluster network {why}")),
                    }
                }
                (nets.len() == list.get_ref().len()).then_some(nets)
            }
        };
        Some(ClusterFirewall {
            public: public?,
            cni: cni?,
            cluster_networks: networks?,
        })
    }

    /// Public TCP and UDP ports: numbers 1..=65535, or ranges written as
    /// strings (`"30000-32767"`), none of them `reserved` (the ports the
    /// firewall keeps for the operator networks and the members).
    fn public_ports(
        &mut self,
        file: FileId,
        tcp: &[Spanned<RawPort>],
        udp: &[Spanned<RawPort>],
        reserved: &[ReservedPort],
    ) -> Option<Vec<PortRule>> {
        let mut ok = true;
        let mut rules = Vec::new();
        for (ports, make) in [
            (tcp, PortRule::tcp as fn(PortRange) -> PortRule),
            (udp, PortRule::udp as fn(PortRange) -> PortRule),
        ] {
            for port in ports {
                let parsed = match port.get_ref() {
                    RawPort::Number(n) => u16::try_from(*n)
                        .ok()
                        .filter(|n| *n >= 1)
                        .map(PortRange::single)
                        .ok_or_else(|| format!("port {n} is out of range; expected 1 to 65535")),
                    RawPort::Text(t) => t.parse::<PortRange>(),
                    RawPort::Other => Err("this is not a port; expected a number such as 443 or a range as a string such as \"30000-32767\"".to_string()),
                };
                match parsed.map(make) {
                    Ok(rule) => match overlap(&rule, reserved) {
                        Some(kept) => {
                            self.errors.at(
                                file,
                                port.span(),
                                format!(
                                    "public port {rule} would open {} ({}) to anyone; the \
                                     firewall keeps it for {}; expected the ports your \
                                     services answer on, e.g. 80 and 443",
                                    kept.what,
                                    kept.rule,
                                    if kept.rule.ports.start() <= SSH_PORT
                                        && SSH_PORT <= kept.rule.ports.end()
                                        && kept.rule.protocol == Protocol::Tcp
                                    {
                                        "[provider] operator_networks"
                                    } else {
                                        "the operator networks and the cluster's own members"
                                    }
                                ),
                            );
                            ok = false;
                        }
                        None => rules.push(rule),
                    },
                    Err(why) => {
                        self.errors.at(file, port.span(), why);
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(rules)
    }

    fn customer(
        &mut self,
        file: FileId,
        raw: CustomerFile,
        k3s_version: Option<&Option<K3sVersion>>,
        flannel: FlannelBackend,
        main_file: Option<FileId>,
    ) -> Option<(Customer, Option<ClusterSpec>)> {
        let name = raw.name.clone();
        let mut ok = true;
        if !kube::is_dns_label(&name) {
            self.errors.at(file, 0..0, format!("customer name `{name}` (from the file name) is not a DNS label; expected lowercase letters, digits and `-`"));
            ok = false;
        } else if name == CORE_CLUSTER {
            self.errors.at(
                file,
                0..0,
                "customer name `core` is taken by the Core cluster; expected another file name",
            );
            ok = false;
        }
        let reserved: BTreeSet<&str> = [SERVER_POOL].into_iter().collect();
        let Some(head) = raw.head else {
            // Still check the pools, so their errors show in this run too.
            self.pools(file, &name, &raw.pools, PoolRole::K3sAgent, &reserved);
            if let Some((_, Some(servers))) = &raw.servers {
                self.pool(
                    file,
                    &name,
                    &Spanned::new(0..0, SERVER_POOL.to_string()),
                    servers,
                    PoolRole::K3sServer,
                    true,
                );
            }
            return None;
        };
        let tier = *head.tier.get_ref();
        let private_network = head.private_network.as_ref().filter(|p| *p.get_ref());
        if let Some(p) = private_network {
            if tier == Tier::Core {
                self.errors.at(file, p.span(), "a core-tier customer adds no nodes, so it has no private network of its own; expected no private_network (its services run in the Core cluster)");
                ok = false;
            } else {
                self.private_network_users.push((file, p.span()));
            }
        }
        let private_network = private_network.is_some();
        if tier == Tier::Core {
            if let Some((span, _)) = &raw.servers {
                self.errors.at(file, span.clone(), "a core-tier customer adds no nodes; expected no [servers] (its services run in the Core cluster)");
                ok = false;
            }
            if let Some(span) = &raw.pools_span {
                self.errors.at(file, span.clone(), "a core-tier customer adds no nodes; expected no [pools] (its services run in the Core cluster)");
                ok = false;
            }
            return ok.then_some((Customer { name, tier }, None));
        }
        if k3s_version.is_none() {
            let at = main_file.map_or(file, |f| f);
            if at == file {
                self.errors.at(
                    file,
                    head.tier.span(),
                    "no k3s version; expected [k3s] version = \"v1.31.4+k3s1\" in kiwi.toml",
                );
            } else {
                self.errors.at(at, 0..0, format!("missing table `[k3s]`; expected version = \"v1.31.4+k3s1\", needed by {tier} customer `{name}`"));
            }
            ok = false;
        }
        let mut pools = Vec::new();
        match &raw.servers {
            None => {
                self.errors.at(file, head.tier.span(), format!("a {tier} customer has a dedicated k3s cluster; expected a [servers] table (class, product, count = 3)"));
                ok = false;
            }
            Some((span, servers)) => match servers {
                Some(servers) => {
                    let label = Spanned::new(span.clone(), SERVER_POOL.to_string());
                    match self.pool(file, &name, &label, servers, PoolRole::K3sServer, true) {
                        Some(p) => pools.push(p),
                        None => ok = false,
                    }
                }
                None => ok = false,
            },
        }
        match self.pools(file, &name, &raw.pools, PoolRole::K3sAgent, &reserved) {
            Some(agents) => pools.extend(agents),
            None => ok = false,
        }
        let default_firewall = RawFirewall::default_ports();
        let raw_firewall = head.firewall.as_ref().unwrap_or(&default_firewall);
        let reserved = reserved_ports(
            &[NodeRole::K3sServer, NodeRole::K3sAgent],
            &flannel.ports(),
            &format!("flannel's {flannel} backend"),
        );
        let public = self.public_ports(
            file,
            &raw_firewall.public_tcp_ports,
            &raw_firewall.public_udp_ports,
            &reserved,
        );
        // A version that did not parse is reported at [k3s]; the customer
        // is then not built either.
        let Some(Some(version)) = k3s_version.cloned() else {
            return None;
        };
        let cluster = ClusterSpec {
            name: name.clone(),
            tier,
            kind: ClusterKind::K3s {
                version,
                flannel_backend: flannel,
            },
            protected: head.protected,
            private_network,
            pools,
            firewall: ClusterFirewall {
                public: public?,
                cni: flannel.ports(),
                cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
            },
        };
        ok.then_some((Customer { name, tier }, Some(cluster)))
    }

    /// Validates named pools; `None` if any was wrong.
    fn pools(
        &mut self,
        file: FileId,
        cluster: &str,
        pools: &[NamedPool],
        role: PoolRole,
        reserved: &BTreeSet<&str>,
    ) -> Option<Vec<PoolSpec>> {
        let mut ok = true;
        let mut specs = Vec::new();
        for named in pools {
            let name = named.name.get_ref();
            let clash = reserved.contains(name.as_str());
            if clash {
                self.errors.at(file, named.name.span(), format!("pool name `{name}` duplicates the name of the k3s servers' pool; expected another name"));
                ok = false;
            }
            match &named.pool {
                // A clashing pool's node names clash too; say it once.
                Some(raw) => match self.pool(file, cluster, &named.name, raw, role, !clash) {
                    Some(spec) => specs.push(spec),
                    None => ok = false,
                },
                None => ok = false,
            }
        }
        ok.then_some(specs)
    }

    fn pool(
        &mut self,
        file: FileId,
        cluster: &str,
        name: &Spanned<String>,
        raw: &RawPool,
        role: PoolRole,
        claim_names: bool,
    ) -> Option<PoolSpec> {
        let errors_before = self.error_count_marker();
        let pool_name = name.get_ref();
        if !kube::is_dns_label(pool_name) {
            self.errors.at(file, name.span(), format!("pool name `{pool_name}` is not a DNS label; expected lowercase letters, digits and `-`"));
        }
        let longest = slot_name(cluster, pool_name, 99);
        if longest.len() > 63 {
            self.errors.at(file, name.span(), format!("node names like `{longest}` would be {} characters; expected at most 63 (shorten the customer or pool name)", longest.len()));
        }
        let class = *raw.class.get_ref();
        self.product(file, raw, class);
        let count = *raw.count.get_ref();
        if role == PoolRole::K3sServer {
            if count <= 0 || count % 2 == 0 {
                self.errors.at(file, raw.count.span(), format!("{count} k3s servers cannot keep etcd quorum; expected an odd number (3 for HA)"));
            }
        } else if !(0..=MAX_POOL_COUNT).contains(&count) {
            self.errors.at(
                file,
                raw.count.span(),
                format!("count {count} is out of range; expected 0 to {MAX_POOL_COUNT}"),
            );
        }
        if role == PoolRole::K3sServer && count > MAX_POOL_COUNT {
            self.errors.at(
                file,
                raw.count.span(),
                format!("count {count} is out of range; expected at most {MAX_POOL_COUNT}"),
            );
        }
        let labels = self.labels(file, raw);
        let taints = self.taints(file, raw);
        let count = u32::try_from(count.clamp(0, MAX_POOL_COUNT)).unwrap_or(0);
        for index in (1..=count).filter(|_| claim_names) {
            let slot = slot_name(cluster, pool_name, index);
            self.claim_name(
                file,
                name.span(),
                &slot,
                format!("pool `{pool_name}` of cluster `{cluster}`"),
            );
        }
        if self.error_count_marker() != errors_before {
            return None;
        }
        Some(PoolSpec {
            name: pool_name.clone(),
            role,
            class,
            product: raw.product.get_ref().clone(),
            count,
            labels,
            taints,
        })
    }

    /// Errors recorded so far (to tell whether a pool added any).
    fn error_count_marker(&self) -> usize {
        self.errors.count()
    }

    fn product(&mut self, file: FileId, raw: &RawPool, class: NodeClass) {
        let id = raw.product.get_ref();
        match products::product(id) {
            None => self.errors.at(
                file,
                raw.product.span(),
                format!("unknown product `{id}`; expected {}", catalog_hint()),
            ),
            Some(p) if p.class != class => {
                let wanted = products::ids_of_class(class).join(", ");
                self.errors.at(
                    file,
                    raw.product.span(),
                    format!(
                        "product `{id}` ({}) is a {} product but the pool's class is `{class}`; expected a {} product: {wanted}",
                        p.name,
                        p.class.as_str().to_uppercase(),
                        class.as_str().to_uppercase(),
                    ),
                );
            }
            Some(_) => {}
        }
        if let Some(listed) = &self.listed_prices {
            if !listed.contains(id) && products::product(id).is_some() {
                self.errors.at(file, raw.product.span(), format!("no price for product `{id}`; expected `{id} = \"…\"` under [prices] in {MAIN_FILE}"));
            }
        }
    }

    fn labels(&mut self, file: FileId, raw: &RawPool) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for (key, value) in &raw.labels {
            let k = key.get_ref();
            if k.starts_with(KIWI_LABEL_PREFIX) {
                self.errors.at(file, key.span(), format!("label `{k}` is set by kiwi-infra itself; expected a key outside `{KIWI_LABEL_PREFIX}` (e.g. `workload.kiwistack.io/…`)"));
            } else if let Err(why) = kube::check_label_key(k) {
                self.errors.at(file, key.span(), format!("{why}; expected [prefix/]name with a DNS-subdomain prefix and a name of at most 63 characters"));
            } else if !kube::kubelet_may_set(k) {
                self.errors.at(file, key.span(), format!("label `{k}` is under kubernetes.io/k8s.io and a kubelet may not set it on its own node (NodeRestriction); expected another domain, or one of the allowed keys such as node.kubernetes.io/…"));
            }
            if let Err(why) = kube::check_label_value(value.get_ref()) {
                self.errors.at(
                    file,
                    value.span(),
                    format!("{why}; expected at most 63 characters"),
                );
            }
            labels.insert(k.clone(), value.get_ref().clone());
        }
        labels
    }

    fn taints(&mut self, file: FileId, raw: &RawPool) -> Vec<Taint> {
        let mut taints: Vec<Taint> = Vec::new();
        for text in &raw.taints {
            match Taint::parse(text.get_ref()) {
                Ok(t) => {
                    if taints
                        .iter()
                        .any(|o| o.key == t.key && o.effect == t.effect)
                    {
                        self.errors.at(file, text.span(), format!("taint `{t}` repeats a key and effect of this pool; expected each key:effect once"));
                    } else {
                        taints.push(t);
                    }
                }
                Err(why) => self.errors.at(file, text.span(), why),
            }
        }
        taints
    }

    /// Records a node name, reporting it when another part of the inventory
    /// already produces it.
    fn claim_name(&mut self, file: FileId, span: Range<usize>, name: &str, what: String) {
        if let Some(first) = self.names.get(name) {
            let first_path = self.errors.path(first.file).display().to_string();
            let message = format!(
                "duplicate node name `{name}`: {what} and {} ({first_path}) both produce it; expected unique names",
                first.what
            );
            self.errors.at(file, span, message);
            return;
        }
        self.names
            .insert(name.to_string(), NameSource { file, what });
    }
}

/// Kubernetes node names are DNS subdomains.
fn is_node_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(kube::is_dns_label)
}

fn catalog_hint() -> String {
    format!(
        "a Contabo product id (VPS: {}; VDS: {})",
        "V91–V107, V68–V89",
        products::ids_of_class(NodeClass::Vds).join(", ")
    )
}

/// A network in CIDR form (`198.51.100.0/24`, `2001:db8::/48`, a single
/// host as `/32` or `/128`), without host bits set.
/// Refuses an IPv6 network no packet from another host carries as its
/// source, which the firewall's IPv6 set would silently admit nobody from
/// (the operator locked out without a word):
/// - one that overlaps the IPv4-mapped range `::ffff:0:0/96`, inside it
///   (`::ffff:198.51.100.0/120`: IPv4 packets are matched by IPv4
///   networks) or holding it (`::/64`, `::fffe:0:0/95`, `::/1`);
/// - one that overlaps the deprecated IPv4-compatible range `::/96`
///   (`::198.51.100.0/120`, `::/95`), except `::1/128`, the node itself.
///
/// `::/0` stays "anyone" (warned about); a 6to4 network (`2002::/16`) is a
/// real IPv6 source and is kept.
fn not_ipv4_mapped(net: IpNet) -> Result<IpNet, String> {
    let IpNet::V6(v6) = net else { return Ok(net) };
    if v6.prefix_len() == 0 || v6 == ipnet::Ipv6Net::from(std::net::Ipv6Addr::LOCALHOST) {
        return Ok(net);
    }
    let overlaps = |range: ipnet::Ipv6Net| range.contains(&v6) || v6.contains(&range);
    let v4_hint = |to_v4: fn(&std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr>| match (
        to_v4(&v6.addr()),
        v6.prefix_len().checked_sub(96),
    ) {
        (Some(v4), Some(len)) => format!("; expected the IPv4 network \"{v4}/{len}\""),
        _ => "; expected the IPv4 or IPv6 networks it was meant to name".to_string(),
    };
    let mapped = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
    if mapped.is_ok_and(overlaps) {
        let what = if v6.prefix_len() >= 96 {
            "is an IPv4-mapped IPv6 network"
        } else {
            "holds the IPv4-mapped IPv6 network ::ffff:0:0/96"
        };
        return Err(format!(
            "{v6} {what}, which no packet's source ever is (IPv4 traffic is matched by IPv4 \
             networks){}",
            v4_hint(std::net::Ipv6Addr::to_ipv4_mapped)
        ));
    }
    let compatible = ipnet::Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, 96);
    if compatible.is_ok_and(overlaps) {
        let what = if v6.prefix_len() >= 96 {
            "is an IPv4-compatible IPv6 network"
        } else {
            "holds the IPv4-compatible IPv6 network ::/96"
        };
        let hint = if v6.prefix_len() >= 96 {
            v4_hint(|addr| {
                let &[a, b, c, d] = &addr.octets()[12..] else {
                    return None;
                };
                Some(std::net::Ipv4Addr::new(a, b, c, d))
            })
        } else {
            v4_hint(|_| None)
        };
        return Err(format!(
            "{v6} {what} (deprecated), which no packet from another host carries as its \
             source{hint}"
        ));
    }
    Ok(net)
}

pub(crate) fn parse_network(s: &str) -> Result<IpNet, String> {
    let shown = crate::text::escape_for_terminal(s);
    let net: IpNet = s.parse().map_err(|_| {
        format!(
            "`{shown}` is not a network in CIDR form; expected an address, `/` and a prefix \
             length, e.g. \"198.51.100.0/24\" or \"2001:db8::/48\""
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "`{shown}` has host bits set; expected the network \"{}\" (or \"{}/{}\" for the one \
             host)",
            net.trunc(),
            net.addr(),
            net.max_prefix_len()
        ));
    }
    Ok(net)
}
