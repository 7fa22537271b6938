//! The one model of what `table inet kiwi` holds: its sets' declarations,
//! its chains (hook, type, priority, policy) and every rule as typed
//! matches and a verdict. [`Ruleset::of`] builds it from a
//! [`FirewallShape`] (pure), [`super::render`] writes its text from it
//! (the `Display` of [`Chain`] and [`Rule`]), and
//! [`super::parse_listing`] reads a node's `nft -j` listing into it, so
//! what is written and what is compared can never disagree.
//!
//! Values are kept normalised (ports merged, networks aggregated, sets of
//! states and protocols sorted), so two rules that admit the same packets
//! compare equal however nftables spells them back (a one-element set is
//! listed as a plain value, adjacent networks as one prefix).
//!
//! Set elements are not part of the model: the planner compares them on
//! their own (`peers4` against the members, the operator sets against the
//! inventory), with their own lines.

use super::{FirewallShape, PortRange, Protocol, OPERATORS4, OPERATORS6, PEERS4};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// nft's number for the `filter` priority.
pub const PRIORITY_FILTER: i32 = 0;
/// nft's number for the `dstnat` priority.
pub const PRIORITY_DSTNAT: i32 = -100;

/// The declarations of the table: sets (without their elements), chains,
/// and (only in a listing) objects of other kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    /// Every named set, by name.
    pub sets: BTreeMap<String, SetSpec>,
    /// Every chain, in the order written or listed.
    pub chains: Vec<Chain>,
    /// Objects of kinds kiwi-infra never writes (a map, a counter, a
    /// flowtable…) that a listing holds, described in kiwi-infra's words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<String>,
}

/// A named set's declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    /// Its element type.
    pub kind: SetType,
    /// Its flags (`interval`), as plain words.
    pub flags: BTreeSet<String>,
}

/// A set's element type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SetType {
    /// `ipv4_addr`.
    Ipv4Addr,
    /// `ipv6_addr`.
    Ipv6Addr,
    /// Another type, in kiwi-infra's words.
    Other(String),
}

impl fmt::Display for SetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetType::Ipv4Addr => f.write_str("ipv4_addr"),
            SetType::Ipv6Addr => f.write_str("ipv6_addr"),
            SetType::Other(what) => f.write_str(what),
        }
    }
}

/// One chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// Its name (a listing's is escaped when it is not a plain name).
    pub name: String,
    /// Its hook, type, priority and policy; `None` for a regular chain,
    /// which no packet reaches unless a rule jumps to it.
    pub base: Option<BaseChain>,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// What makes a chain a base chain: where packets enter it and what
/// happens to those no rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseChain {
    /// `type filter`.
    pub kind: Word,
    /// `hook input`.
    pub hook: Word,
    /// nft's number for the priority (`filter` is 0, `dstnat - 10` is -110).
    pub priority: i32,
    /// `policy drop`.
    pub policy: Verdict,
}

/// A plain word of a listing (`filter`, `input`), or `?` when the node
/// said something that is not one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Word(String);

impl Word {
    /// `text` when it is a plain word (`[a-z0-9_-]`, at most 32), else `?`.
    pub fn new(text: &str) -> Word {
        let plain = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        Word(if plain { text.to_string() } else { "?".into() })
    }

    /// The word.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One rule: a rule of the form kiwi-infra writes, or one it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Every match holds: the verdict.
    Known {
        /// The matches, in order.
        matches: Vec<Match>,
        /// What happens to a packet that matches.
        verdict: Verdict,
    },
    /// A rule with an expression outside this model (a counter, a jump, a
    /// match on another field…), described in kiwi-infra's words.
    Unrecognised {
        /// What it is, e.g. `a rule kiwi-infra does not write (a counter statement)`.
        what: String,
    },
}

impl Rule {
    /// `matches` then `verdict`.
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Rule {
        Rule::Known { matches, verdict }
    }
}

/// A verdict (also a base chain's policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// Another policy word (a listing only).
    Other(Word),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Other(w) => w.fmt(f),
        }
    }
}

/// A connection tracking state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtState {
    /// `invalid`.
    Invalid,
    /// `established`.
    Established,
    /// `related`.
    Related,
    /// `new`.
    New,
    /// `untracked`.
    Untracked,
}

impl CtState {
    pub(super) fn parse(s: &str) -> Option<CtState> {
        Some(match s {
            "invalid" => CtState::Invalid,
            "established" => CtState::Established,
            "related" => CtState::Related,
            "new" => CtState::New,
            "untracked" => CtState::Untracked,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "invalid",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::New => "new",
            CtState::Untracked => "untracked",
        }
    }
}

/// A layer 4 protocol of `meta l4proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum L4Proto {
    /// `icmp`.
    Icmp,
    /// `ipv6-icmp` (neighbour discovery).
    Ipv6Icmp,
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
}

impl L4Proto {
    pub(super) fn parse(s: &str) -> Option<L4Proto> {
        Some(match s {
            "icmp" => L4Proto::Icmp,
            "ipv6-icmp" => L4Proto::Ipv6Icmp,
            "tcp" => L4Proto::Tcp,
            "udp" => L4Proto::Udp,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            L4Proto::Icmp => "icmp",
            L4Proto::Ipv6Icmp => "ipv6-icmp",
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

/// The address family of an `ip saddr` / `ip6 saddr` match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
}

/// Where a source address must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sources {
    /// In the named set (`@peers4`).
    Set(String),
    /// In one of these networks (aggregated).
    Networks(Vec<IpNet>),
}

/// One match of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Match {
    /// `ct state established,related`.
    CtState(BTreeSet<CtState>),
    /// `iif "lo"`: the packet came in on this interface.
    Iif(Word),
    /// `meta l4proto { icmp, ipv6-icmp }`.
    L4Proto(BTreeSet<L4Proto>),
    /// `fib daddr type != local` (`negated`) or `== local`.
    FibDaddrType {
        /// `!=`.
        negated: bool,
        /// The address type (`local`).
        addr_type: Word,
    },
    /// `ip saddr @peers4`, `ip saddr { 10.42.0.0/15 }`.
    Saddr {
        /// `ip` or `ip6`.
        family: Family,
        /// The set or networks.
        from: Sources,
    },
    /// `ip daddr { 10.42.0.0/15 }`: the packet is addressed there.
    Daddr {
        /// `ip` or `ip6`.
        family: Family,
        /// The set or networks.
        to: Sources,
    },
    /// `tcp dport { 22, 6443 }`.
    Dport {
        /// `tcp` or `udp`.
        protocol: Protocol,
        /// The ports (merged).
        ports: Vec<PortRange>,
    },
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::CtState(states) => {
                let words: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
                write!(f, "ct state {}", words.join(","))
            }
            Match::Iif(name) => write!(f, "iif \"{name}\""),
            Match::L4Proto(protos) => {
                let words: Vec<&str> = protos.iter().map(|p| p.as_str()).collect();
                write!(f, "meta l4proto {{ {} }}", words.join(", "))
            }
            Match::FibDaddrType { negated, addr_type } => write!(
                f,
                "fib daddr type {}{addr_type}",
                if *negated { "!= " } else { "" }
            ),
            Match::Saddr { family, from } => address(f, *family, "saddr", from),
            Match::Daddr { family, to } => address(f, *family, "daddr", to),
            Match::Dport { protocol, ports } => {
                let ports: Vec<String> = ports.iter().map(PortRange::to_string).collect();
                write!(f, "{protocol} dport {{ {} }}", ports.join(", "))
            }
        }
    }
}

/// `ip saddr @peers4`, `ip daddr { 10.42.0.0/15 }`.
fn address(f: &mut fmt::Formatter<'_>, family: Family, field: &str, at: &Sources) -> fmt::Result {
    let family = match family {
        Family::Ip => "ip",
        Family::Ip6 => "ip6",
    };
    match at {
        Sources::Set(name) => write!(f, "{family} {field} @{name}"),
        Sources::Networks(nets) => {
            let nets: Vec<String> = nets.iter().map(|n| element(*n)).collect();
            write!(f, "{family} {field} {{ {} }}", nets.join(", "))
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Known { matches, verdict } => {
                for m in matches {
                    write!(f, "{m} ")?;
                }
                verdict.fmt(f)
            }
            Rule::Unrecognised { what } => f.write_str(what),
        }
    }
}

/// nftables' name for a priority number, as `render` writes it:
/// `filter`, `dstnat - 10`.
pub fn priority_text(priority: i32) -> String {
    const NAMED: [(&str, i32); 6] = [
        ("raw", -300),
        ("mangle", -150),
        ("dstnat", PRIORITY_DSTNAT),
        ("filter", PRIORITY_FILTER),
        ("security", 50),
        ("srcnat", 100),
    ];
    let Some((name, base)) = NAMED
        .iter()
        .min_by_key(|(_, base)| (i64::from(priority) - i64::from(*base)).abs())
    else {
        return priority.to_string();
    };
    let offset = i64::from(priority) - i64::from(*base);
    match offset {
        0 => (*name).to_string(),
        o if o < 0 => format!("{name} - {}", -o),
        o => format!("{name} + {o}"),
    }
}

/// The chain as nftables text, indented as `render` writes it.
impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  chain {} {{", self.name)?;
        if let Some(base) = &self.base {
            writeln!(
                f,
                "    type {} hook {} priority {}; policy {};",
                base.kind,
                base.hook,
                priority_text(base.priority),
                base.policy
            )?;
        }
        for rule in &self.rules {
            writeln!(f, "    {rule}")?;
        }
        writeln!(f, "  }}")
    }
}

/// A network as a set element: a host network as its address, as nftables
/// lists it back.
pub(super) fn element(net: IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.trunc().to_string()
    }
}

impl Ruleset {
    /// The table [`super::render`] writes for `shape`: the three sets and
    /// the `prerouting` and `input` chains.
    pub fn of(shape: &FirewallShape) -> Ruleset {
        let addr_set = |kind: SetType, interval: bool| SetSpec {
            kind,
            flags: if interval {
                BTreeSet::from(["interval".to_string()])
            } else {
                BTreeSet::new()
            },
        };
        let sets = BTreeMap::from([
            (OPERATORS4.to_string(), addr_set(SetType::Ipv4Addr, true)),
            (OPERATORS6.to_string(), addr_set(SetType::Ipv6Addr, true)),
            (PEERS4.to_string(), addr_set(SetType::Ipv4Addr, false)),
        ]);
        let cluster_networks: Vec<IpNet> = ipnet::Ipv4Net::aggregate(&shape.cluster_networks)
            .into_iter()
            .map(IpNet::V4)
            .collect();
        let operators_open = IpNet::aggregate(&shape.operator_networks).is_empty();
        let accept = |matches: Vec<Match>| Rule::new(matches, Verdict::Accept);
        let from_set = |family, name: &str| Match::Saddr {
            family,
            from: Sources::Set(name.to_string()),
        };
        let from_networks = || Match::Saddr {
            family: Family::Ip,
            from: Sources::Networks(cluster_networks.clone()),
        };
        let established =
            || Match::CtState(BTreeSet::from([CtState::Established, CtState::Related]));
        let loopback = || Match::Iif(Word::new("lo"));

        // Traffic to the node that kube-proxy, k3s' service load balancer
        // or a hostPort redirects to a pod is forwarded, never delivered to
        // the host, so the input chain never sees it. This chain runs
        // before any DNAT (priority dstnat - 10): members and the cluster's
        // own networks pass (NodePorts and pod traffic are theirs); a
        // stranger's packet addressed to the pod or service networks (the
        // node used as a gateway into the cluster) is dropped; other routed
        // traffic (not to a local address) passes untouched; to the node's
        // own addresses strangers reach the operator ports (from the
        // operator networks) and the public ports only.
        let mut prerouting = vec![
            accept(vec![loopback()]),
            accept(vec![established()]),
            accept(vec![from_set(Family::Ip, PEERS4)]),
        ];
        if !cluster_networks.is_empty() {
            prerouting.push(accept(vec![from_networks()]));
            prerouting.push(Rule::new(
                vec![Match::Daddr {
                    family: Family::Ip,
                    to: Sources::Networks(cluster_networks.clone()),
                }],
                Verdict::Drop,
            ));
        }
        prerouting.push(accept(vec![Match::FibDaddrType {
            negated: true,
            addr_type: Word::new("local"),
        }]));
        prerouting.extend(strangers(shape, operators_open));
        prerouting.push(Rule::new(vec![], Verdict::Drop));

        let mut input = vec![
            accept(vec![established()]),
            Rule::new(
                vec![Match::CtState(BTreeSet::from([CtState::Invalid]))],
                Verdict::Drop,
            ),
            accept(vec![loopback()]),
        ];
        for (protocol, ports) in [
            (Protocol::Tcp, &shape.peer_tcp),
            (Protocol::Udp, &shape.peer_udp),
        ] {
            if !ports.is_empty() {
                input.push(accept(vec![
                    from_set(Family::Ip, PEERS4),
                    dport(protocol, ports),
                ]));
            }
        }
        if !cluster_networks.is_empty() && !shape.cluster_tcp.is_empty() {
            input.push(accept(vec![
                from_networks(),
                dport(Protocol::Tcp, &shape.cluster_tcp),
            ]));
        }
        input.extend(strangers(shape, operators_open));

        Ruleset {
            sets,
            chains: vec![
                Chain {
                    name: "prerouting".into(),
                    base: Some(BaseChain {
                        kind: Word::new("filter"),
                        hook: Word::new("prerouting"),
                        priority: PRIORITY_DSTNAT - 10,
                        policy: Verdict::Accept,
                    }),
                    rules: prerouting,
                },
                Chain {
                    name: "input".into(),
                    base: Some(BaseChain {
                        kind: Word::new("filter"),
                        hook: Word::new("input"),
                        priority: PRIORITY_FILTER,
                        policy: Verdict::Drop,
                    }),
                    rules: input,
                },
            ],
            others: Vec::new(),
        }
    }

    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

fn dport(protocol: Protocol, ports: &[PortRange]) -> Match {
    Match::Dport {
        protocol,
        ports: PortRange::merged(ports.to_vec()),
    }
}

/// The rules that admit anyone, member or not: ICMP, the operator ports
/// from the operator networks (from anywhere when the inventory chose
/// `operator_networks = []`), and the public ports. Both chains use them.
fn strangers(shape: &FirewallShape, operators_open: bool) -> Vec<Rule> {
    // ICMPv6 carries neighbour discovery: without it IPv6 stops working.
    let mut out = vec![Rule::new(
        vec![Match::L4Proto(BTreeSet::from([
            L4Proto::Icmp,
            L4Proto::Ipv6Icmp,
        ]))],
        Verdict::Accept,
    )];
    if !shape.operator_tcp.is_empty() {
        let ports = dport(Protocol::Tcp, &shape.operator_tcp);
        if operators_open {
            // The inventory's explicit choice (`operator_networks = []`).
            out.push(Rule::new(vec![ports], Verdict::Accept));
        } else {
            for (family, set) in [(Family::Ip, OPERATORS4), (Family::Ip6, OPERATORS6)] {
                out.push(Rule::new(
                    vec![
                        Match::Saddr {
                            family,
                            from: Sources::Set(set.to_string()),
                        },
                        ports.clone(),
                    ],
                    Verdict::Accept,
                ));
            }
        }
    }
    for (protocol, ports) in [
        (Protocol::Tcp, &shape.public_tcp),
        (Protocol::Udp, &shape.public_udp),
    ] {
        if !ports.is_empty() {
            out.push(Rule::new(vec![dport(protocol, ports)], Verdict::Accept));
        }
    }
    out
}

/// The most lines one chain's rules give; the rest are counted.
const MAX_RULE_LINES: usize = 8;

/// What differs between a listed table's declarations and `wanted`'s, one
/// short line each (empty when they are the same). Set elements are not
/// compared here (see the module comment).
pub fn differences(listed: &Ruleset, wanted: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    for (name, spec) in &wanted.sets {
        match listed.sets.get(name) {
            None => out.push(format!("its set {name} is missing")),
            Some(seen) => {
                if seen.kind != spec.kind {
                    out.push(format!(
                        "its set {name} holds {}, not {}",
                        seen.kind, spec.kind
                    ));
                }
                if seen.flags != spec.flags {
                    out.push(format!(
                        "its set {name} has flags [{}], not [{}]",
                        words(&seen.flags),
                        words(&spec.flags)
                    ));
                }
            }
        }
    }
    for name in listed.sets.keys().filter(|n| !wanted.sets.contains_key(*n)) {
        out.push(format!(
            "an extra set {name} that the ruleset does not have"
        ));
    }
    for chain in &wanted.chains {
        match listed.chain(&chain.name) {
            None => out.push(format!("its {} chain is missing", chain.name)),
            Some(seen) => chain_differences(seen, chain, &mut out),
        }
    }
    for chain in listed
        .chains
        .iter()
        .filter(|c| wanted.chain(&c.name).is_none())
    {
        out.push(format!(
            "an extra chain {} that the ruleset does not have",
            chain.name
        ));
    }
    for other in &listed.others {
        out.push(format!(
            "its table holds {other}, which the ruleset does not have"
        ));
    }
    out
}

fn words(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn chain_differences(seen: &Chain, wanted: &Chain, out: &mut Vec<String>) {
    let name = &wanted.name;
    match (&seen.base, &wanted.base) {
        (Some(s), Some(w)) => {
            if s.hook != w.hook {
                out.push(format!(
                    "its {name} chain is hooked at {}, not {}",
                    s.hook, w.hook
                ));
            }
            if s.kind != w.kind {
                out.push(format!(
                    "its {name} chain is of type {}, not {}",
                    s.kind, w.kind
                ));
            }
            if s.priority != w.priority {
                out.push(format!(
                    "its {name} chain has priority {}, not {}",
                    priority_text(s.priority),
                    priority_text(w.priority)
                ));
            }
            if s.policy != w.policy {
                out.push(format!(
                    "its {name} policy is {}, not {}",
                    s.policy, w.policy
                ));
            }
        }
        (None, Some(_)) => out.push(format!(
            "its {name} chain has no hook (a regular chain: no packet passes through it)"
        )),
        (Some(s), None) => out.push(format!(
            "its {name} chain is hooked at {}, the ruleset's is a regular chain",
            s.hook
        )),
        (None, None) => {}
    }
    let mut lines = rule_differences(name, &seen.rules, &wanted.rules);
    if lines.len() > MAX_RULE_LINES {
        let more = lines.len() - (MAX_RULE_LINES - 1);
        lines.truncate(MAX_RULE_LINES - 1);
        lines.push(format!("and {more} more differences in its {name} chain"));
    }
    out.extend(lines);
}

/// A rule for a drift line: nft's text in backticks (every value is typed,
/// so it is safe to show), or what kiwi-infra makes of an unrecognised one.
fn shown(rule: &Rule) -> String {
    match rule {
        Rule::Known { .. } => format!("`{rule}`"),
        Rule::Unrecognised { what } => what.clone(),
    }
}

/// The rules of `seen` against `wanted`: position by position when the
/// counts agree (a rule edited in place), else along their longest common
/// subsequence (rules added, deleted or moved).
fn rule_differences(chain: &str, seen: &[Rule], wanted: &[Rule]) -> Vec<String> {
    if seen.len() == wanted.len() {
        return seen
            .iter()
            .zip(wanted)
            .enumerate()
            .filter(|(_, (s, w))| s != w)
            .map(|(i, (s, w))| {
                format!(
                    "{chain} rule {} differs: {} where the ruleset has {}",
                    i + 1,
                    shown(s),
                    shown(w)
                )
            })
            .collect();
    }
    // lcs[i][j]: the longest common subsequence of seen[i..] and wanted[j..].
    let (n, m) = (seen.len(), wanted.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if seen[i] == wanted[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && seen[i] == wanted[j] {
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!(
                "{chain} rule {} is not the ruleset's: {}",
                i + 1,
                shown(&seen[i])
            ));
            i += 1;
        } else {
            out.push(format!(
                "its {chain} chain lacks the ruleset's rule {}: {}",
                j + 1,
                shown(&wanted[j])
            ));
            j += 1;
        }
    }
    out
}
