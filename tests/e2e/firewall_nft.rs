//! The host firewall checked with the real tools (issue 18): every ruleset
//! kiwi-infra renders is accepted by Debian's `nft -c`, and a rendered
//! ruleset loaded with the real `nft` into a network namespace admits and
//! drops real TCP and UDP traffic as the node contract says.
//!
//! Needs root (network namespaces). Every namespace is the test's own
//! (`kiwi-fwtest-<pid>-…`), every address lives inside them only (10.201.x.x),
//! and a guard removes them, also when an assertion fails.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ipnet::IpNet;
use kiwi_infra::firewall::{
    parse_listing, render, ClusterFirewall, FirewallShape, FlannelBackend, NodeRole, PortRange,
    PortRule, Ruleset, K3S_POD_NETWORK, K3S_SERVICE_NETWORK,
};
use kiwi_infra::inventory::{self, ClusterKind, Desired};
use kiwi_infra::plan::{self, Observed, PlanOptions, StepKind};
use proptest::prelude::*;

const NFT: &str = "/usr/sbin/nft";

/// True when `nft` can be run; under CI its absence is a failure (`.ci/run`
/// installs Debian's `nftables`), elsewhere a loud skip.
fn have_nft() -> bool {
    if Path::new(NFT).exists() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "nft is not installed, and CI must check every ruleset with it: install the \
         `nftables` package (.ci/run does)"
    );
    eprintln!("\n!!!!! SKIPPED: nft is not installed; `apt-get install nftables` !!!!!\n");
    false
}

/// `nft -c -f` on the ruleset, in a network namespace of its own so the
/// host's tables are never touched: `Err` with nft's words if refused.
fn nft_check(ruleset: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiwi.nft");
    std::fs::write(&path, ruleset).unwrap();
    let out = Command::new("unshare")
        .args(["--net", NFT, "-c", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `ruleset` loaded by the real nft in a network namespace of its own, and
/// its listing parsed.
fn listed(ruleset: &str) -> kiwi_infra::firewall::ObservedFirewall {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiwi.nft");
    std::fs::write(&path, ruleset).unwrap();
    let script = format!(
        "{NFT} -f {p} && {NFT} -j list table inet kiwi",
        p = path.display()
    );
    listing_after(&script)
}

/// Runs `script` (nft commands ending in `nft -j list table inet kiwi`) in a
/// network namespace of its own and parses the listing it prints.
fn listing_after(script: &str) -> kiwi_infra::firewall::ObservedFirewall {
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_listing(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

fn assert_nft_accepts(what: &str, shape: &FirewallShape) {
    let text = render(shape);
    if let Err(why) = nft_check(&text) {
        panic!("nft -c refuses the ruleset of {what}:\n{why}\n{text}");
    }
}

fn peers(n: u32) -> BTreeSet<Ipv4Addr> {
    (0..n).map(|i| Ipv4Addr::from(0xC633_6400 + i)).collect()
}

/// Every node role of every cluster of `desired`, with `n` peers, and the
/// firewalls the planner itself puts into the orders of an empty account.
fn check_inventory(what: &str, desired: &Desired, n: u32) {
    for cluster in &desired.clusters {
        for pool in &cluster.pools {
            let shape = FirewallShape::for_node(
                pool.role.into(),
                &cluster.firewall,
                &desired.provider.operator_networks,
                peers(n),
            );
            assert_nft_accepts(
                &format!("{what}, {} pool {}", cluster.name, pool.name),
                &shape,
            );
        }
    }
    let plan = plan::plan(desired, &Observed::default(), &PlanOptions::default());
    let mut orders = 0;
    for step in &plan.steps {
        if let StepKind::OrderInstance(order) = &step.kind {
            assert_nft_accepts(&format!("{what}, step {}", step.id), &order.firewall);
            orders += 1;
        }
    }
    assert!(orders > 0, "{what}: the plan orders nothing");
}

#[test]
fn the_example_inventory_renders_rulesets_nft_accepts() {
    if !have_nft() {
        return;
    }
    let desired = inventory::load(Path::new("inventory")).unwrap();
    // The example has Core (CNI ports, its own networks) and k3s clusters.
    assert!(desired
        .clusters
        .iter()
        .any(|c| !c.firewall.cni.is_empty() && matches!(c.kind, ClusterKind::Kubeadm { .. })));
    check_inventory("the example inventory", &desired, 3);
    check_inventory("the example inventory with 250 peers", &desired, 250);
}

#[test]
fn the_sandbox_inventory_renders_rulesets_nft_accepts() {
    if !have_nft() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("customers")).unwrap();
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFZqtyOeLGjPjiuhoCmVODskzMSRJGYucm9572VSt8G sandbox";
    for (name, text) in kiwi_infra::cli::sandbox_inventory_files(key) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let desired = inventory::load(dir.path()).unwrap();
    assert_eq!(
        desired.provider.operator_networks,
        vec!["127.0.0.0/8".parse::<IpNet>().unwrap()]
    );
    check_inventory("the sandbox inventory", &desired, 5);
}

/// A shape for each case the brief names: no operator network, IPv6
/// operators, many peers, Core with CNI ports, both flannel backends.
fn cases() -> Vec<(&'static str, FirewallShape)> {
    let k3s = |backend: FlannelBackend| ClusterFirewall {
        public: vec!["tcp/80".parse().unwrap(), "tcp/443".parse().unwrap()],
        cni: backend.ports(),
        cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
    };
    let core = ClusterFirewall {
        public: vec![
            "tcp/443".parse().unwrap(),
            "udp/30000-30010".parse().unwrap(),
        ],
        cni: vec![
            "udp/4789".parse().unwrap(),
            "tcp/179".parse().unwrap(),
            "tcp/5473".parse().unwrap(),
            "udp/51820-51821".parse().unwrap(),
        ],
        cluster_networks: vec![
            "10.244.0.0/16".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
        ],
    };
    let v4: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
    let v6: Vec<IpNet> = vec![
        "2001:db8::/48".parse().unwrap(),
        "2001:db8:1::1/128".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ];
    let both: Vec<IpNet> = v4.iter().chain(&v6).copied().collect();
    let shape = |role, fw: &ClusterFirewall, ops: &[IpNet], n| {
        FirewallShape::for_node(role, fw, ops, peers(n))
    };
    vec![
        (
            "no operator network",
            shape(
                NodeRole::K3sServer,
                &k3s(FlannelBackend::WireguardNative),
                &[],
                3,
            ),
        ),
        (
            "IPv6 operators only",
            shape(NodeRole::K3sAgent, &k3s(FlannelBackend::Vxlan), &v6, 3),
        ),
        (
            "IPv4 and IPv6 operators",
            shape(NodeRole::K3sServer, &k3s(FlannelBackend::Vxlan), &both, 3),
        ),
        (
            "no peer yet",
            shape(
                NodeRole::K3sServer,
                &k3s(FlannelBackend::WireguardNative),
                &v4,
                0,
            ),
        ),
        (
            "1000 peers",
            shape(
                NodeRole::K3sAgent,
                &k3s(FlannelBackend::WireguardNative),
                &v4,
                1000,
            ),
        ),
        (
            "a Core worker with CNI ports",
            shape(NodeRole::KubeadmWorker, &core, &both, 7),
        ),
        (
            "a Core control-plane node",
            shape(NodeRole::KubeadmControlPlane, &core, &v4, 7),
        ),
        (
            "no public port",
            shape(
                NodeRole::K3sAgent,
                &ClusterFirewall {
                    public: vec![],
                    ..k3s(FlannelBackend::Vxlan)
                },
                &v4,
                2,
            ),
        ),
    ]
}

#[test]
fn every_kind_of_shape_renders_a_ruleset_nft_accepts() {
    if !have_nft() {
        return;
    }
    for (what, shape) in cases() {
        assert_nft_accepts(what, &shape);
    }
}

/// For every kind of shape (k3s server and agent, kubeadm control plane
/// and worker, no operator network, IPv6 operators, no public port, many
/// peers): the rendered ruleset, loaded by the real nft in a namespace of
/// its own and listed back, reads as exactly the model of the shape (both
/// chains, every rule) with its peers and operators: the comparison the
/// planner makes finds no drift on a node that holds what it wrote.
#[test]
fn every_kind_of_shape_reads_back_from_real_nft_as_exactly_its_model() {
    if !have_nft() {
        return;
    }
    for (what, shape) in cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiwi.nft");
        std::fs::write(&path, render(&shape)).unwrap();
        // Loaded twice: the file replaces our table whether or not it exists.
        let script = format!(
            "{NFT} -f {p} && {NFT} -f {p} && {NFT} -j list table inet kiwi",
            p = path.display()
        );
        let out = Command::new("unshare")
            .args(["--net", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = parse_listing(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(seen.ruleset, Ruleset::of(&shape), "{what}");
        assert_eq!(seen.peers(), Some(shape.peers.clone()), "{what}");
        assert_eq!(
            seen.operator_networks(),
            shape
                .operator_networks
                .iter()
                .copied()
                .collect::<BTreeSet<_>>(),
            "{what}"
        );
        let listed = kiwi_infra::cluster::firewall::firewall_from_answer(
            Some(0),
            &String::from_utf8_lossy(&out.stdout),
            "",
        );
        assert_eq!(
            plan::observed_drift(&listed, &shape, &BTreeSet::new()),
            Vec::<String>::new(),
            "{what}"
        );
    }
}

#[test]
fn a_peer_set_update_replaces_the_members_and_nothing_else() {
    if !have_nft() {
        return;
    }
    let (_, shape) = cases().swap_remove(2);
    let dir = tempfile::tempdir().unwrap();
    let ruleset = dir.path().join("kiwi.nft");
    std::fs::write(&ruleset, render(&shape)).unwrap();
    let list = |peers: &BTreeSet<Ipv4Addr>| {
        let update = dir.path().join(format!("peers-{}.nft", peers.len()));
        std::fs::write(&update, kiwi_infra::firewall::render_peer_set(peers)).unwrap();
        let script = format!(
            "{NFT} -f {r} && {NFT} -f {u} && {NFT} -j list table inet kiwi",
            r = ruleset.display(),
            u = update.display()
        );
        listing_after(&script)
    };
    let before = list(&shape.peers);
    for wanted in [peers(0), peers(1), ips_of(&["10.9.0.1", "10.9.0.2"])] {
        let after = list(&wanted);
        assert_eq!(after.peers(), Some(wanted.clone()));
        assert_eq!(after.operator_networks(), before.operator_networks());
        assert_eq!(after.ruleset, before.ruleset);
    }
}

fn ips_of(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::new(Ipv4Addr::from(a).into(), l).unwrap().trunc()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::new(
            std::net::Ipv6Addr::from(a).into(),
            l
        )
        .unwrap()
        .trunc()),
    ]
}

fn arb_rule() -> impl Strategy<Value = PortRule> {
    (any::<bool>(), 1u16..=65535, 0u16..2000).prop_map(|(tcp, start, len)| {
        let ports = PortRange::new(start, start.saturating_add(len)).unwrap();
        if tcp {
            PortRule::tcp(ports)
        } else {
            PortRule::udp(ports)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn generated_shapes_render_rulesets_nft_accepts(
        role in prop_oneof![
            Just(NodeRole::K3sServer),
            Just(NodeRole::K3sAgent),
            Just(NodeRole::KubeadmWorker),
            Just(NodeRole::KubeadmControlPlane),
        ],
        operators in proptest::collection::vec(arb_net(), 0..8),
        peer_set in proptest::collection::btree_set(any::<u32>().prop_map(Ipv4Addr::from), 0..40),
        public in proptest::collection::vec(arb_rule(), 0..6),
        cni in proptest::collection::vec(arb_rule(), 0..6),
        nets in proptest::collection::vec((any::<u32>(), 8u8..=32), 0..4),
    ) {
        if Path::new(NFT).exists() {
            let cluster = ClusterFirewall {
                public,
                cni,
                cluster_networks: nets
                    .into_iter()
                    .map(|(a, l)| ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
                    .collect(),
            };
            let shape = FirewallShape::for_node(role, &cluster, &operators, peer_set);
            let text = render(&shape);
            prop_assert!(nft_check(&text).is_ok(), "{:?}\n{}", nft_check(&text), text);
            // And however nft lists it back (merged intervals, one-element
            // sets as plain values), it reads as exactly its model.
            prop_assert_eq!(listed(&text).ruleset, Ruleset::of(&shape), "{}", text);
        }
    }
}

// ---- the packet test ----

/// The namespaces of one test run; dropping it deletes them (and kills the
/// listener), also when an assertion panicked.
struct Lab {
    prefix: String,
    names: Vec<String>,
    listeners: Vec<Child>,
}

/// Labs built so far by this process.
static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The node, and one client namespace per role, each on its own veth
    /// link to the node: the client is 10.201.<n>.2, the node 10.201.<n>.1.
    fn build(clients: &[(&str, u8)]) -> Lab {
        let mut lab = Lab {
            // Unique per lab: tests of one process run side by side.
            prefix: format!(
                "kiwi-fwtest-{}-{}",
                std::process::id(),
                LABS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ),
            names: Vec::new(),
            listeners: Vec::new(),
        };
        let node = lab.ns("node");
        lab.ip(&["netns", "add", &node]);
        lab.names.push(node.clone());
        lab.ip(&["-n", &node, "link", "set", "lo", "up"]);
        for (role, n) in clients {
            let client = lab.ns(role);
            lab.ip(&["netns", "add", &client]);
            lab.names.push(client.clone());
            let inside = format!("to-{role}");
            lab.ip(&[
                "-n", &node, "link", "add", &inside, "type", "veth", "peer", "name", "eth0",
                "netns", &client,
            ]);
            lab.ip(&[
                "-n",
                &node,
                "addr",
                "add",
                &format!("10.201.{n}.1/24"),
                "dev",
                &inside,
            ]);
            lab.ip(&["-n", &node, "link", "set", &inside, "up"]);
            lab.ip(&[
                "-n",
                &client,
                "addr",
                "add",
                &format!("10.201.{n}.2/24"),
                "dev",
                "eth0",
            ]);
            lab.ip(&["-n", &client, "link", "set", "eth0", "up"]);
            lab.ip(&["-n", &client, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// Starts the listeners in the node namespace and waits until they
    /// are bound.
    fn listen(&mut self, tcp: &[u16], udp: &[u16]) {
        self.listen_in("node", tcp, udp);
    }

    /// Starts listeners in `role`'s namespace and waits until they are
    /// bound.
    fn listen_in(&mut self, role: &str, tcp: &[u16], udp: &[u16]) {
        let list = |p: &[u16]| {
            if p.is_empty() {
                "-".to_string()
            } else {
                p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role), "python3", PROBE, "listen"])
            .arg(list(tcp))
            .arg(list(udp))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.listeners.push(child);
        assert_eq!(line.trim(), "ready", "the listeners did not start");
    }

    /// Loads the ruleset file at `path` into the node's namespace with the
    /// real nft.
    fn load(&self, path: &Path) {
        self.ip(&[
            "netns",
            "exec",
            &self.ns("node"),
            NFT,
            "-f",
            path.to_str().unwrap(),
        ]);
    }

    /// The specs (`tcp:22`) `role`, on link `n`, reaches on the node.
    fn reached(&self, role: &str, n: u8, specs: &[&str]) -> BTreeSet<String> {
        self.probe(role, &format!("10.201.{n}.1"), specs)
            .into_iter()
            .filter_map(|(spec, ok)| ok.then_some(spec))
            .collect()
    }

    /// What `role` reaches on the node at `host`: spec (`tcp:22`) → reached.
    fn probe(&self, role: &str, host: &str, specs: &[&str]) -> BTreeMap<String, bool> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(role),
                "python3",
                PROBE,
                "probe",
                host,
            ])
            .args(specs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.listeners.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

const PROBE: &str = "tests/fixtures/firewall/probe.py";

/// A set of probe specs.
fn set(specs: &[&str]) -> BTreeSet<String> {
    specs.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_loaded_ruleset_admits_peers_operators_and_the_public_and_drops_everyone_else() {
    if !have_nft() {
        return;
    }
    let mut lab = Lab::build(&[("peer", 1), ("stranger", 2), ("operator", 3)]);
    // A k3s server: the peer is a member, the operator network is the
    // operator's link, the customer's WireGuard endpoint is public.
    let cluster = ClusterFirewall {
        public: vec![
            "tcp/80".parse().unwrap(),
            "tcp/443".parse().unwrap(),
            "udp/51830".parse().unwrap(),
        ],
        cni: FlannelBackend::WireguardNative.ports(),
        cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
    };
    let shape = FirewallShape::for_node(
        NodeRole::K3sServer,
        &cluster,
        &["10.201.3.0/24".parse().unwrap()],
        BTreeSet::from([Ipv4Addr::new(10, 201, 1, 2)]),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nftables.conf");
    std::fs::write(&path, render(&shape)).unwrap();
    lab.load(&path);

    // 9999: a port something listens on that no rule opens.
    lab.listen(
        &[22, 80, 443, 2379, 2380, 6443, 9999, 10250],
        &[51820, 51830, 8472],
    );
    let every = [
        "tcp:22",
        "tcp:80",
        "tcp:443",
        "tcp:2379",
        "tcp:2380",
        "tcp:6443",
        "tcp:9999",
        "tcp:10250",
        "udp:51820",
        "udp:51830",
        "udp:8472",
    ];
    let reached = |role: &str, n: u8| lab.reached(role, n, &every);

    // A member reaches the cluster's internal ports and the public ones,
    // not SSH (it is not the operator), not what no rule opens, and not
    // VXLAN (this cluster uses WireGuard).
    assert_eq!(
        reached("peer", 1),
        set(&[
            "tcp:80",
            "tcp:443",
            "tcp:2379",
            "tcp:2380",
            "tcp:6443",
            "tcp:10250",
            "udp:51820",
            "udp:51830"
        ]),
        "what a peer reaches"
    );
    // The operator reaches SSH and the API, and the public ports; not etcd,
    // the kubelet or WireGuard.
    assert_eq!(
        reached("operator", 3),
        set(&["tcp:22", "tcp:80", "tcp:443", "tcp:6443", "udp:51830"]),
        "what the operator network reaches"
    );
    // Anyone else reaches the public ports only.
    assert_eq!(
        reached("stranger", 2),
        set(&["tcp:80", "tcp:443", "udp:51830"]),
        "what a stranger reaches"
    );

    // Reloading the same file (what a repair does) keeps the verdicts: the
    // file replaces only our table.
    lab.load(&path);
    assert_eq!(
        reached("stranger", 2),
        set(&["tcp:80", "tcp:443", "udp:51830"])
    );
}

/// kube-proxy, k3s' service load balancer and hostPorts DNAT traffic for the
/// node's own address to a pod: it is forwarded, and the input chain never
/// sees it. The ruleset's prerouting chain must still keep strangers off a
/// NodePort while members reach it, and let anyone reach a public port that
/// is redirected to a pod. A stand-in for kube-proxy's DNAT (in a table of
/// its own, as kube-proxy's are) sends node ports to a "pod" namespace.
#[test]
fn ports_redirected_to_pods_are_reached_by_members_and_by_strangers_only_where_public() {
    if !have_nft() {
        return;
    }
    let mut lab = Lab::build(&[("peer", 1), ("stranger", 2), ("operator", 3), ("pod", 4)]);
    let node = lab.ns("node");
    lab.ip(&[
        "-n",
        &lab.ns("pod"),
        "route",
        "add",
        "default",
        "via",
        "10.201.4.1",
    ]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster = ClusterFirewall {
        public: vec!["tcp/443".parse().unwrap(), "udp/51830".parse().unwrap()],
        cni: FlannelBackend::WireguardNative.ports(),
        cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
    };
    let shape = FirewallShape::for_node(
        NodeRole::K3sAgent,
        &cluster,
        &["10.201.3.0/24".parse().unwrap()],
        BTreeSet::from([Ipv4Addr::new(10, 201, 1, 2)]),
    );
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("nftables.conf");
    std::fs::write(&ours, render(&shape)).unwrap();
    lab.load(&ours);
    // The stand-in for kube-proxy: a NodePort (30080/tcp, 30081/udp), a
    // hostPort-style public port (443/tcp) and a public UDP port
    // (51830/udp), all sent on to the pod.
    let proxy = dir.path().join("kube-proxy.nft");
    std::fs::write(
        &proxy,
        "table ip kube-proxy-standin {\n\
         \x20 chain prerouting {\n\
         \x20   type nat hook prerouting priority dstnat; policy accept;\n\
         \x20   tcp dport 30080 dnat to 10.201.4.2:8080\n\
         \x20   udp dport 30081 dnat to 10.201.4.2:8081\n\
         \x20   tcp dport 443 dnat to 10.201.4.2:8443\n\
         \x20   udp dport 51830 dnat to 10.201.4.2:8830\n\
         \x20 }\n\
         }\n",
    )
    .unwrap();
    lab.load(&proxy);
    lab.listen_in("pod", &[8080, 8443], &[8081, 8830]);
    let every = ["tcp:30080", "udp:30081", "tcp:443", "udp:51830"];
    let reached = |role: &str, n: u8| lab.reached(role, n, &every);
    // The redirect works: a member reaches the pod through every port.
    assert_eq!(reached("peer", 1), set(&every), "what a member reaches");
    // A stranger and the operator reach the public ports only, never the
    // NodePorts, although the input chain never sees that traffic.
    let public = set(&["tcp:443", "udp:51830"]);
    assert_eq!(reached("stranger", 2), public, "what a stranger reaches");
    assert_eq!(reached("operator", 3), public, "what the operator reaches");
}

/// Found by an attacker: the prerouting chain let every routed packet pass,
/// so a stranger who routes the pod network via a node (an L2 neighbour
/// can) reached any pod, LDAP included. A member still reaches a pod that
/// way (as flannel's host-gw or a private network route it), a stranger
/// does not, and a pod reaches the outside world.
#[test]
fn a_stranger_cannot_use_a_node_as_a_gateway_into_the_pod_network() {
    if !have_nft() {
        return;
    }
    let mut lab = Lab::build(&[("peer", 1), ("stranger", 2), ("pod", 4)]);
    let node = lab.ns("node");
    // The "pod" holds 10.42.0.5 (inside k3s' pod network) behind the node.
    lab.ip(&[
        "-n",
        &lab.ns("pod"),
        "addr",
        "add",
        "10.42.0.5/32",
        "dev",
        "eth0",
    ]);
    lab.ip(&[
        "-n",
        &lab.ns("pod"),
        "route",
        "add",
        "default",
        "via",
        "10.201.4.1",
        "src",
        "10.42.0.5",
    ]);
    lab.ip(&[
        "-n",
        &node,
        "route",
        "add",
        "10.42.0.5/32",
        "via",
        "10.201.4.2",
    ]);
    for (role, n) in [("peer", 1), ("stranger", 2)] {
        let gateway = format!("10.201.{n}.1");
        lab.ip(&[
            "-n",
            &lab.ns(role),
            "route",
            "add",
            "10.42.0.0/16",
            "via",
            &gateway,
        ]);
    }
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster = ClusterFirewall {
        public: vec!["tcp/443".parse().unwrap()],
        cni: FlannelBackend::WireguardNative.ports(),
        cluster_networks: vec![K3S_POD_NETWORK, K3S_SERVICE_NETWORK],
    };
    let shape = FirewallShape::for_node(
        NodeRole::K3sAgent,
        &cluster,
        &["10.201.3.0/24".parse().unwrap()],
        BTreeSet::from([Ipv4Addr::new(10, 201, 1, 2)]),
    );
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("nftables.conf");
    std::fs::write(&ours, render(&shape)).unwrap();
    lab.load(&ours);
    lab.listen_in("pod", &[389, 443], &[88]);
    lab.listen_in("stranger", &[8443], &[]);
    let every = ["tcp:389", "tcp:443", "udp:88"];
    let reached = |role: &str| -> BTreeSet<String> {
        lab.probe(role, "10.42.0.5", &every)
            .into_iter()
            .filter_map(|(spec, ok)| ok.then_some(spec))
            .collect()
    };
    assert_eq!(
        reached("peer"),
        set(&every),
        "what a member reaches in the pod network"
    );
    assert_eq!(
        reached("stranger"),
        BTreeSet::new(),
        "what a stranger reaches in the pod network"
    );
    // The pod, from its pod address, still reaches the world through the
    // node: the answers, addressed into the pod network, come back as
    // established traffic.
    let out_of_pod: BTreeSet<String> = lab
        .probe("pod", "10.201.2.2", &["tcp:8443"])
        .into_iter()
        .filter_map(|(spec, ok)| ok.then_some(spec))
        .collect();
    assert_eq!(
        out_of_pod,
        set(&["tcp:8443"]),
        "what the pod reaches outside"
    );
}
