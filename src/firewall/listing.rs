//! Reads `nft -j list table inet kiwi`, a node's own account of its
//! firewall, into the model kiwi-infra writes ([`Ruleset`]): every set's
//! type, flags and elements, every chain's hook, type, priority and policy,
//! and every rule's expressions (the JSON form of nft 1.0.6, Debian 12's).
//! A rule with an expression outside the model is kept as an unrecognised
//! rule, described in kiwi-infra's words. The text comes from a node, so it
//! is untrusted: it is parsed into typed addresses, networks, ports and
//! plain words, names are escaped, a listing that names one table, set or
//! chain twice is an error (never "the last one wins"), and anything of
//! another form is an error, never a panic and never text that travels
//! further.

use super::ruleset::{
    BaseChain, Chain, CtState, Family, L4Proto, Match, Rule, Ruleset, SetSpec, SetType, Sources,
    Verdict, Word,
};
use super::{PortRange, Protocol, OPERATORS4, OPERATORS6, PEERS4, TABLE};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// The largest listing read: a table with a few thousand elements is far
/// below it; more is not a listing of ours.
const MAX_LISTING: usize = 4 << 20;

/// What a node's `table inet kiwi` holds, as `nft -j` listed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedFirewall {
    /// Every named set of the table with its elements: addresses as
    /// host networks (`/32`, `/128`), ranges as the networks that cover
    /// them exactly.
    pub elements: BTreeMap<String, BTreeSet<IpNet>>,
    /// The table's sets, chains and rules.
    pub ruleset: Ruleset,
}

impl ObservedFirewall {
    /// The members admitted by `peers4`; `None` when the set is missing.
    /// Non-host entries are not peers and are left out (compare
    /// [`Self::elements`] to see them).
    pub fn peers(&self) -> Option<BTreeSet<Ipv4Addr>> {
        self.elements.get(PEERS4).map(|set| {
            set.iter()
                .filter_map(|n| match (n.addr(), n.prefix_len() == n.max_prefix_len()) {
                    (IpAddr::V4(a), true) => Some(a),
                    _ => None,
                })
                .collect()
        })
    }

    /// The operator networks of `operators4` and `operators6`.
    pub fn operator_networks(&self) -> BTreeSet<IpNet> {
        [OPERATORS4, OPERATORS6]
            .iter()
            .filter_map(|name| self.elements.get(*name))
            .flatten()
            .copied()
            .collect()
    }
}

/// A listing that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// Not JSON, or not nft's JSON form.
    #[error("the nft listing is not nft's JSON ({reason}); expected the output of `nft -j list table inet {TABLE}`")]
    NotNftJson {
        /// What is wrong.
        reason: String,
    },
    /// The listing holds no `inet kiwi` table.
    #[error("the nft listing holds no table inet {TABLE}")]
    NoTable,
    /// The listing names one table, set or chain twice: nftables never
    /// lists such a table, and neither copy can be trusted over the other.
    #[error("the nft listing holds {kind} {name} of table inet {TABLE} twice; nft never lists that, so the listing is not trusted")]
    Duplicate {
        /// `table`, `set` or `chain`.
        kind: &'static str,
        /// The name (escaped).
        name: String,
    },
    /// A set element of an unexpected form.
    #[error("set {set} of table inet {TABLE} holds an element that is not an address, a network or a range ({element})")]
    BadElement {
        /// The set's name (escaped).
        set: String,
        /// The element, as JSON, escaped and shortened.
        element: String,
    },
}

/// A name from the listing, as kiwi-infra shows it: itself when it is a
/// plain name, else escaped and shortened.
fn name_text(raw: &str) -> String {
    let plain = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        raw.to_string()
    } else {
        let short: String = raw.chars().take(40).collect();
        format!("\"{}\"", crate::text::escape_for_terminal(&short))
    }
}

/// Parses the output of `nft -j list table inet kiwi`. Objects of other
/// tables or families are ignored.
pub fn parse_listing(json: &str) -> Result<ObservedFirewall, ListingError> {
    let not = |reason: &str| ListingError::NotNftJson {
        reason: reason.to_string(),
    };
    if json.len() > MAX_LISTING {
        return Err(not("longer than 4 MiB"));
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| ListingError::NotNftJson {
        reason: format!(
            "line {}, column {}: {}",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "unexpected data",
                serde_json::error::Category::Eof => "ends early",
            }
        ),
    })?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| not("no `nftables` list"))?;
    let ours = |o: &Value| {
        o.get("family").and_then(Value::as_str) == Some("inet")
            && o.get("table")
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                == Some(TABLE)
    };
    let duplicate = |kind: &'static str, name: &str| ListingError::Duplicate {
        kind,
        name: name_text(name),
    };
    let mut tables = 0usize;
    let mut observed = ObservedFirewall::default();
    // Chains by their name as listed, and the rules of each (a listing
    // could put a rule before its chain).
    let mut chain_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut rules: Vec<(String, Rule)> = Vec::new();
    let mut set_names: BTreeSet<String> = BTreeSet::new();
    // The names as shown: two names that escape alike are duplicates too.
    let mut chain_names: BTreeSet<String> = BTreeSet::new();
    for item in items {
        let Some((kind, object)) = item.as_object().and_then(|o| o.iter().next()) else {
            return Err(not("an entry that is not an object"));
        };
        if kind == "metainfo" {
            continue;
        }
        if kind == "table" {
            if ours(object) && object.get("name").and_then(Value::as_str) == Some(TABLE) {
                tables += 1;
                if tables > 1 {
                    return Err(duplicate("table", TABLE));
                }
                // kiwi-infra's table has no flags. `dormant` (which nft
                // 1.0.6 lists as `"flags": "inet"`) switches every chain of
                // the table off while sets, chains and rules stay as they
                // were; any flag is drift, and loading the ruleset again
                // (delete and re-create) clears it.
                let flags: Vec<String> = match object.get("flags") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(words)) => words
                        .iter()
                        .map(|w| {
                            w.as_str()
                                .map_or_else(|| "?".to_string(), |w| Word::new(w).to_string())
                        })
                        .collect(),
                    Some(Value::String(word)) => vec![Word::new(word).to_string()],
                    Some(_) => vec!["?".to_string()],
                };
                if !flags.is_empty() {
                    observed.ruleset.others.push(format!(
                        "table flags ({}; a `dormant` table's chains see no packet at all)",
                        flags.join(", ")
                    ));
                }
            }
            continue;
        }
        if !ours(object) {
            continue;
        }
        match kind.as_str() {
            "set" => {
                let name = object
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| not("a set without a name"))?;
                if !set_names.insert(name.to_string()) {
                    return Err(duplicate("set", name));
                }
                let elements = match object.get("elem") {
                    None => BTreeSet::new(),
                    Some(Value::Array(elems)) => elems
                        .iter()
                        .map(|e| element(name, e))
                        .collect::<Result<Vec<_>, _>>()?
                        .into_iter()
                        .flatten()
                        .collect(),
                    Some(other) => element(name, other)?.into_iter().collect(),
                };
                let shown = name_text(name);
                if observed.ruleset.sets.contains_key(&shown) {
                    return Err(duplicate("set", name));
                }
                observed.elements.insert(shown.clone(), elements);
                observed.ruleset.sets.insert(shown, set_spec(object));
            }
            "chain" => {
                let name = object
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| not("a chain without a name"))?;
                if chain_index.contains_key(name) || !chain_names.insert(name_text(name)) {
                    return Err(duplicate("chain", name));
                }
                chain_index.insert(name.to_string(), observed.ruleset.chains.len());
                observed.ruleset.chains.push(Chain {
                    name: name_text(name),
                    base: base_chain(object)?,
                    rules: Vec::new(),
                });
            }
            "rule" => {
                let chain = object
                    .get("chain")
                    .and_then(Value::as_str)
                    .ok_or_else(|| not("a rule without a chain"))?;
                let exprs = object
                    .get("expr")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                rules.push((chain.to_string(), rule(exprs)));
            }
            other => observed
                .ruleset
                .others
                .push(match Word::new(other).as_str() {
                    "?" => "an object nft lists under another name".to_string(),
                    word => format!("a {word}"),
                }),
        }
    }
    if tables == 0 {
        return Err(ListingError::NoTable);
    }
    for (chain, rule) in rules {
        let index = chain_index
            .get(&chain)
            .copied()
            .ok_or_else(|| not("a rule of a chain the listing does not hold"))?;
        if let Some(chain) = observed.ruleset.chains.get_mut(index) {
            chain.rules.push(rule);
        }
    }
    Ok(observed)
}

/// A set's type and flags.
fn set_spec(set: &Value) -> SetSpec {
    let kind = match set.get("type") {
        Some(Value::String(t)) if t == "ipv4_addr" => SetType::Ipv4Addr,
        Some(Value::String(t)) if t == "ipv6_addr" => SetType::Ipv6Addr,
        Some(Value::String(t)) => SetType::Other(Word::new(t).to_string()),
        Some(Value::Array(_)) => SetType::Other("a concatenation".into()),
        _ => SetType::Other("?".into()),
    };
    let flags = match set.get("flags") {
        Some(Value::Array(flags)) => flags
            .iter()
            .map(|f| Word::new(f.as_str().unwrap_or_default()).to_string())
            .collect(),
        Some(Value::String(flag)) => BTreeSet::from([Word::new(flag).to_string()]),
        _ => BTreeSet::new(),
    };
    SetSpec { kind, flags }
}

/// A chain's hook, type, priority and policy; `None` without a hook.
fn base_chain(chain: &Value) -> Result<Option<BaseChain>, ListingError> {
    let Some(hook) = chain.get("hook") else {
        return Ok(None);
    };
    let word = |v: Option<&Value>| Word::new(v.and_then(Value::as_str).unwrap_or_default());
    let priority = chain
        .get("prio")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| ListingError::NotNftJson {
            reason: "a base chain whose priority is not a number".into(),
        })?;
    let policy = match chain.get("policy").and_then(Value::as_str) {
        // nft's default policy.
        None | Some("accept") => Verdict::Accept,
        Some("drop") => Verdict::Drop,
        Some(other) => Verdict::Other(Word::new(other)),
    };
    Ok(Some(BaseChain {
        kind: word(chain.get("type")),
        hook: word(Some(hook)),
        priority,
        policy,
    }))
}

/// One rule's expressions: matches, then a verdict, each of the forms the
/// model knows; anything else is an unrecognised rule.
fn rule(exprs: &[Value]) -> Rule {
    let known = || -> Result<Rule, String> {
        let (last, matches) = exprs.split_last().ok_or("an empty rule")?;
        let verdict = match (last.get("accept"), last.get("drop")) {
            (Some(Value::Null), None) => Verdict::Accept,
            (None, Some(Value::Null)) => Verdict::Drop,
            _ if last.get("match").is_some() => return Err("a rule without a verdict".into()),
            _ => return Err(statement(last)),
        };
        let matches = matches
            .iter()
            .map(parse_match)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule::new(matches, verdict))
    };
    known().unwrap_or_else(|why| Rule::Unrecognised {
        what: format!("a rule kiwi-infra does not write ({why})"),
    })
}

/// A statement that is no match, in kiwi-infra's words.
fn statement(e: &Value) -> String {
    let key = e
        .as_object()
        .and_then(|o| o.keys().next())
        .map(|k| Word::new(k).to_string())
        .unwrap_or_else(|| "?".into());
    match key.as_str() {
        "?" => "a statement nft lists under another name".into(),
        "accept" | "drop" => format!("{key} before its last statement"),
        _ => format!("a {key} statement"),
    }
}

/// One `{"match": …}` of the forms the model knows.
fn parse_match(e: &Value) -> Result<Match, String> {
    let Some(m) = e.get("match") else {
        return Err(statement(e));
    };
    let op = m.get("op").and_then(Value::as_str).unwrap_or_default();
    let (left, right) = (
        m.get("left").unwrap_or(&Value::Null),
        m.get("right").unwrap_or(&Value::Null),
    );
    let on = describe(left);
    let wrong_op = || {
        let op = match op {
            "==" | "!=" | "<" | ">" | "<=" | ">=" | "in" => op,
            _ => "?",
        };
        format!("{on} with operator {op}")
    };
    let odd_value = || format!("{on} against a value of another form");
    let key = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(ct) = left.get("ct") {
        if key(ct, "key").as_deref() != Some("state") || ct.get("dir").is_some() {
            return Err(on);
        }
        if op != "in" && op != "==" {
            return Err(wrong_op());
        }
        let states = strings(right)
            .ok_or_else(odd_value)?
            .iter()
            .map(|s| CtState::parse(s).ok_or_else(odd_value))
            .collect::<Result<BTreeSet<_>, _>>()?;
        return Ok(Match::CtState(states));
    }
    if let Some(meta) = left.get("meta") {
        return match key(meta, "key").as_deref() {
            Some("iif") if op == "==" => {
                Ok(Match::Iif(Word::new(right.as_str().ok_or_else(odd_value)?)))
            }
            Some("l4proto") if op == "==" => {
                let protos = strings(right)
                    .ok_or_else(odd_value)?
                    .iter()
                    .map(|s| L4Proto::parse(s).ok_or_else(odd_value))
                    .collect::<Result<BTreeSet<_>, _>>()?;
                Ok(Match::L4Proto(protos))
            }
            Some("iif" | "l4proto") => Err(wrong_op()),
            _ => Err(on),
        };
    }
    if let Some(fib) = left.get("fib") {
        let daddr = fib
            .get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| f.len() == 1 && f.first().and_then(Value::as_str) == Some("daddr"));
        if key(fib, "result").as_deref() != Some("type") || !daddr {
            return Err(on);
        }
        let negated = match op {
            "!=" => true,
            "==" => false,
            _ => return Err(wrong_op()),
        };
        let addr_type = Word::new(right.as_str().ok_or_else(odd_value)?);
        return Ok(Match::FibDaddrType { negated, addr_type });
    }
    if let Some(payload) = left.get("payload") {
        let protocol = key(payload, "protocol");
        let field = key(payload, "field");
        if payload.get("base").is_some() {
            return Err(on);
        }
        match (protocol.as_deref(), field.as_deref()) {
            (Some(family @ ("ip" | "ip6")), Some(field @ ("saddr" | "daddr"))) => {
                if op != "==" {
                    return Err(wrong_op());
                }
                let family = if family == "ip" {
                    Family::Ip
                } else {
                    Family::Ip6
                };
                let make = |from: Sources| {
                    if field == "saddr" {
                        Match::Saddr { family, from }
                    } else {
                        Match::Daddr { family, to: from }
                    }
                };
                if let Some(set) = right.as_str().and_then(|r| r.strip_prefix('@')) {
                    return Ok(make(Sources::Set(name_text(set))));
                }
                let values = match right.get("set") {
                    Some(Value::Array(values)) => values.iter().collect(),
                    Some(_) => return Err(odd_value()),
                    None => vec![right],
                };
                let mut nets = Vec::new();
                for value in values {
                    nets.extend(element("", value).map_err(|_| odd_value())?);
                }
                let fits = nets.iter().all(|n| match family {
                    Family::Ip => matches!(n, IpNet::V4(_)),
                    Family::Ip6 => matches!(n, IpNet::V6(_)),
                });
                if !fits || nets.is_empty() {
                    return Err(odd_value());
                }
                return Ok(make(Sources::Networks(IpNet::aggregate(&nets))));
            }
            (Some(proto @ ("tcp" | "udp")), Some("dport")) => {
                if op != "==" {
                    return Err(wrong_op());
                }
                let protocol = if proto == "tcp" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                let values = match right.get("set") {
                    Some(Value::Array(values)) => values.iter().collect(),
                    Some(_) => return Err(odd_value()),
                    None => vec![right],
                };
                let ports = values
                    .into_iter()
                    .map(|v| ports(v).ok_or_else(odd_value))
                    .collect::<Result<Vec<_>, _>>()?;
                if ports.is_empty() {
                    return Err(odd_value());
                }
                return Ok(Match::Dport {
                    protocol,
                    ports: PortRange::merged(ports),
                });
            }
            _ => return Err(on),
        }
    }
    Err(on)
}

/// What a match is on, in kiwi-infra's words: `a match on tcp sport`.
fn describe(left: &Value) -> String {
    let word = |v: &Value, k: &str| Word::new(v.get(k).and_then(Value::as_str).unwrap_or("?"));
    let what = if let Some(ct) = left.get("ct") {
        format!("ct {}", word(ct, "key"))
    } else if let Some(meta) = left.get("meta") {
        format!("meta {}", word(meta, "key"))
    } else if let Some(payload) = left.get("payload") {
        format!("{} {}", word(payload, "protocol"), word(payload, "field"))
    } else if left.get("fib").is_some() {
        "fib".to_string()
    } else {
        "another expression".to_string()
    };
    format!("a match on {what}")
}

/// A string, or a list or set of strings.
fn strings(v: &Value) -> Option<Vec<String>> {
    let list = match v {
        Value::String(s) => return Some(vec![s.clone()]),
        Value::Array(list) => list,
        other => other.get("set")?.as_array()?,
    };
    list.iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// A port or `{"range": [a, b]}`.
fn ports(v: &Value) -> Option<PortRange> {
    let port = |v: &Value| v.as_u64().and_then(|p| u16::try_from(p).ok());
    if let Some(p) = port(v) {
        return PortRange::new(p, p);
    }
    match v.get("range")?.as_array()?.as_slice() {
        [a, b] => PortRange::new(port(a)?, port(b)?),
        _ => None,
    }
}

/// One set element: `"10.0.0.1"`, `{"prefix": {"addr", "len"}}`,
/// `{"range": [a, b]}`, or any of them wrapped in `{"elem": {"val": …}}`
/// (an element with a timeout or a comment). A range becomes the networks
/// that cover it exactly.
fn element(set: &str, e: &Value) -> Result<Vec<IpNet>, ListingError> {
    let bad = || ListingError::BadElement {
        set: crate::text::escape_for_terminal(set).into_owned(),
        element: {
            let text = e.to_string();
            let short: String = text.chars().take(80).collect();
            crate::text::escape_for_terminal(&short).into_owned()
        },
    };
    let addr = |v: &Value| v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
    if let Some(ip) = addr(e) {
        return Ok(vec![IpNet::from(ip)]);
    }
    if let Some(inner) = e.get("elem").and_then(|w| w.get("val")) {
        return element(set, inner);
    }
    if let Some(prefix) = e.get("prefix") {
        let ip = prefix.get("addr").and_then(addr).ok_or_else(bad)?;
        let len = prefix
            .get("len")
            .and_then(Value::as_u64)
            .and_then(|l| u8::try_from(l).ok())
            .ok_or_else(bad)?;
        return IpNet::new(ip, len).map(|n| vec![n]).map_err(|_| bad());
    }
    if let Some([first, last]) = e.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        let (first, last) = (addr(first).ok_or_else(bad)?, addr(last).ok_or_else(bad)?);
        let nets: Vec<IpNet> = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
                ipnet::Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect()
            }
            (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
                ipnet::Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect()
            }
            _ => return Err(bad()),
        };
        return Ok(nets);
    }
    Err(bad())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::firewall::test_support::captured_shape;
    use proptest::prelude::*;

    /// Captured from nft 1.0.6 (Debian 12) in a network namespace after
    /// loading `tests/fixtures/firewall/captured-ruleset.nft` (the
    /// `captured_shape` rendered) twice.
    const CAPTURED: &str =
        include_str!("../../tests/fixtures/firewall/nft-list-table-inet-kiwi.json");
    const CAPTURED_RULESET: &str =
        include_str!("../../tests/fixtures/firewall/captured-ruleset.nft");
    /// The same table made dormant by hand (see the fixtures' README).
    const DORMANT: &str = include_str!("../../tests/fixtures/firewall/nft-list-dormant.json");

    /// Found by an attacker: `flags dormant` switches the whole firewall off
    /// while every set, chain and rule stays, and was not drift.
    #[test]
    fn a_dormant_table_differs_from_the_ruleset() {
        let wanted = Ruleset::of(&captured_shape());
        let normal = parse_listing(CAPTURED).unwrap();
        assert!(super::super::differences(&normal.ruleset, &wanted).is_empty());
        let dormant = parse_listing(DORMANT).unwrap();
        let drift = super::super::differences(&dormant.ruleset, &wanted);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].contains("table flags") && drift[0].contains("dormant"),
            "{drift:?}"
        );
        for flags in [
            r#"["dormant"]"#,
            r#""dormant""#,
            r#"["owner", "persist"]"#,
            "7",
        ] {
            let json = format!(
                r#"{{"nftables":[{{"table":{{"family":"inet","name":"kiwi","flags":{flags}}}}}]}}"#
            );
            assert!(
                !parse_listing(&json).unwrap().ruleset.others.is_empty(),
                "{flags}"
            );
        }
        let none = r#"{"nftables":[{"table":{"family":"inet","name":"kiwi","flags":[]}}]}"#;
        assert!(parse_listing(none).unwrap().ruleset.others.is_empty());
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The fixture's ruleset is what `render` writes for its shape today
    /// (regenerate both with `KIWI_WRITE_FIXTURE=1` and real nft in
    /// `unshare -n`, see tests/fixtures/firewall/README.md).
    #[test]
    fn the_captured_ruleset_is_what_render_writes_for_its_shape() {
        let text = crate::firewall::render(&captured_shape());
        if std::env::var_os("KIWI_WRITE_FIXTURE").is_some() {
            std::fs::write("tests/fixtures/firewall/captured-ruleset.nft", &text).unwrap();
        }
        assert_eq!(CAPTURED_RULESET, text);
    }

    #[test]
    fn a_real_listing_reads_back_as_exactly_the_model_of_its_shape() {
        let seen = parse_listing(CAPTURED).unwrap();
        assert_eq!(
            seen.peers(),
            Some(BTreeSet::from([
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2)
            ]))
        );
        assert_eq!(
            seen.operator_networks(),
            BTreeSet::from([
                net("192.0.2.7/32"),
                net("198.51.100.0/24"),
                net("203.0.113.0/25"),
                net("2001:db8::/48")
            ])
        );
        // Both chains, their hooks, priorities, policies and every rule:
        // exactly the model of the shape that rendered it.
        assert_eq!(seen.ruleset, Ruleset::of(&captured_shape()));
    }

    #[test]
    fn ranges_and_wrapped_elements_are_read() {
        let json = r#"{"nftables":[{"table":{"family":"inet","name":"kiwi","handle":1}},
            {"set":{"family":"inet","name":"operators4","table":"kiwi","type":"ipv4_addr",
              "elem":[{"range":["10.1.0.0","10.1.0.5"]},{"elem":{"val":"10.2.0.1","timeout":60}}]}}]}"#;
        let seen = parse_listing(json).unwrap();
        assert_eq!(
            seen.elements["operators4"],
            BTreeSet::from([net("10.1.0.0/30"), net("10.1.0.4/31"), net("10.2.0.1/32")])
        );
        assert_eq!(seen.peers(), None);
        assert!(seen.ruleset.chains.is_empty());
    }

    proptest::proptest! {
        /// A node's answer is untrusted: whatever it prints, reading it
        /// ends in a listing or an error, never a panic.
        #[test]
        fn any_text_a_node_prints_is_read_or_refused_without_panicking(text in ".{0,400}") {
            let _ = parse_listing(&text);
        }

        #[test]
        fn any_element_in_a_well_formed_listing_is_read_or_refused(
            elems in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9a-f.:]{0,20}".prop_map(serde_json::Value::from),
                    (any::<u32>(), any::<u64>()).prop_map(|(a, l)| serde_json::json!(
                        {"prefix": {"addr": std::net::Ipv4Addr::from(a).to_string(), "len": l}}
                    )),
                    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| serde_json::json!(
                        {"range": [std::net::Ipv4Addr::from(a).to_string(), std::net::Ipv4Addr::from(b).to_string()]}
                    )),
                    any::<i64>().prop_map(serde_json::Value::from),
                ],
                0..6,
            )
        ) {
            let json = serde_json::json!({"nftables": [
                {"table": {"family": "inet", "name": "kiwi"}},
                {"set": {"family": "inet", "table": "kiwi", "name": "peers4", "elem": elems}},
            ]});
            if let Ok(seen) = parse_listing(&json.to_string()) {
                proptest::prop_assert!(seen.elements.contains_key("peers4"));
            }
        }
    }

    /// Any JSON value, a few levels deep, with the words nft uses.
    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u16>().prop_map(Value::from),
            proptest::sample::select(vec![
                "accept",
                "drop",
                "==",
                "!=",
                "in",
                "state",
                "established",
                "invalid",
                "lo",
                "l4proto",
                "iif",
                "tcp",
                "udp",
                "ip",
                "ip6",
                "saddr",
                "dport",
                "daddr",
                "type",
                "local",
                "@peers4",
                "10.0.0.1",
                "::1",
                "icmp",
                "\u{1b}[2J",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    proptest::sample::select(vec![
                        "match", "op", "left", "right", "payload", "protocol", "field", "meta",
                        "key", "ct", "fib", "result", "flags", "set", "range", "prefix", "addr",
                        "len", "accept", "drop", "jump", "counter",
                    ])
                    .prop_map(str::to_string),
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The captured listing with rules, chains and sets of any form
        /// added: read (each rule known or unrecognised) or refused,
        /// never a panic, and nothing unescaped in what it says.
        #[test]
        fn any_rule_chain_or_set_in_a_real_listing_is_read_or_refused(
            exprs in proptest::collection::vec(proptest::collection::vec(arb_json(), 0..4), 0..4),
            chain in arb_json(),
            set in arb_json(),
        ) {
            let mut doc: serde_json::Value = serde_json::from_str(CAPTURED).unwrap();
            let items = doc["nftables"].as_array_mut().unwrap();
            for expr in exprs {
                items.push(serde_json::json!({"rule": {"family": "inet", "table": "kiwi",
                    "chain": "input", "expr": expr}}));
            }
            if let serde_json::Value::Object(mut c) = chain {
                c.insert("family".into(), "inet".into());
                c.insert("table".into(), "kiwi".into());
                items.push(serde_json::json!({ "chain": c }));
            }
            if let serde_json::Value::Object(mut c) = set {
                c.insert("family".into(), "inet".into());
                c.insert("table".into(), "kiwi".into());
                items.push(serde_json::json!({ "set": c }));
            }
            match parse_listing(&doc.to_string()) {
                Ok(seen) => {
                    let said = crate::firewall::differences(
                        &seen.ruleset,
                        &Ruleset::of(&captured_shape()),
                    );
                    for line in said {
                        proptest::prop_assert!(!line.contains('\u{1b}'), "{}", line);
                    }
                }
                Err(e) => proptest::prop_assert!(!e.to_string().contains('\u{1b}'), "{}", e),
            }
        }
    }

    #[test]
    fn listings_of_another_form_are_errors_not_panics() {
        assert!(matches!(
            parse_listing("nope"),
            Err(ListingError::NotNftJson { .. })
        ));
        assert!(matches!(
            parse_listing("{}"),
            Err(ListingError::NotNftJson { .. })
        ));
        assert_eq!(
            parse_listing(r#"{"nftables":[{"table":{"family":"ip","name":"kiwi"}}]}"#),
            Err(ListingError::NoTable)
        );
        let bad = r#"{"nftables":[{"table":{"family":"inet","name":"kiwi"}},
            {"set":{"family":"inet","name":"peers4","table":"kiwi","elem":["10.0.0.1; drop","\u001b[2J"]}}]}"#;
        let err = parse_listing(bad).unwrap_err();
        assert!(matches!(err, ListingError::BadElement { ref set, .. } if set == "peers4"));
        assert!(!err.to_string().contains('\u{1b}'));
        for reversed in [r#"["10.0.0.9","10.0.0.1"]"#, r#"["10.0.0.1","::1"]"#] {
            let json = format!(
                r#"{{"nftables":[{{"table":{{"family":"inet","name":"kiwi"}}}},
                {{"set":{{"family":"inet","name":"peers4","table":"kiwi","elem":[{{"range":{reversed}}}]}}}}]}}"#
            );
            assert!(parse_listing(&json).is_err(), "{json}");
        }
    }
}
