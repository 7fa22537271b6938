//! Reads `nft -j list table inet kiwi`, a node's own account of its
//! firewall: which sets hold which addresses, and whether the input chain
//! still drops by default. The text comes from a node, so it is untrusted:
//! it is parsed into typed addresses and networks, and anything of another
//! form is an error naming the set and the element, never a panic and never
//! text that travels further.

use super::{OPERATORS4, OPERATORS6, PEERS4, TABLE};
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
    pub sets: BTreeMap<String, BTreeSet<IpNet>>,
    /// The `input` chain's policy (`drop`, `accept`), `None` without the
    /// chain.
    pub input_policy: Option<String>,
    /// Rules in the `input` chain.
    pub input_rules: usize,
}

impl ObservedFirewall {
    /// The members admitted by `peers4`; `None` when the set is missing.
    /// Non-host entries are not peers and are left out (compare
    /// [`Self::sets`] to see them).
    pub fn peers(&self) -> Option<BTreeSet<Ipv4Addr>> {
        self.sets.get(PEERS4).map(|set| {
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
            .filter_map(|name| self.sets.get(*name))
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
    /// A set element of an unexpected form.
    #[error("set {set} of table inet {TABLE} holds an element that is not an address, a network or a range ({element})")]
    BadElement {
        /// The set's name (escaped).
        set: String,
        /// The element, as JSON, escaped and shortened.
        element: String,
    },
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
    let mut seen_table = false;
    let mut observed = ObservedFirewall::default();
    for item in items {
        if let Some(table) = item.get("table") {
            seen_table |= ours(table) && table.get("name").and_then(Value::as_str) == Some(TABLE);
        } else if let Some(set) = item.get("set").filter(|s| ours(s)) {
            let name = set
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| not("a set without a name"))?;
            let elements = match set.get("elem") {
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
            observed.sets.insert(name.to_string(), elements);
        } else if let Some(chain) = item.get("chain").filter(|c| ours(c)) {
            if chain.get("name").and_then(Value::as_str) == Some("input") {
                observed.input_policy = Some(
                    chain
                        .get("policy")
                        .and_then(Value::as_str)
                        .unwrap_or("accept")
                        .to_string(),
                );
            }
        } else if let Some(rule) = item.get("rule").filter(|r| ours(r)) {
            if rule.get("chain").and_then(Value::as_str) == Some("input") {
                observed.input_rules += 1;
            }
        }
    }
    if !seen_table {
        return Err(ListingError::NoTable);
    }
    Ok(observed)
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
    use proptest::prelude::*;

    /// Captured from nft 1.0.6 (Debian 12) in a network namespace after
    /// loading `tests/fixtures/firewall/captured-ruleset.nft` twice.
    const CAPTURED: &str =
        include_str!("../../tests/fixtures/firewall/nft-list-table-inet-kiwi.json");

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_real_listing_gives_the_peers_operators_and_a_dropping_input_chain() {
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
        assert_eq!(seen.sets.get("empty4"), Some(&BTreeSet::new()));
        assert_eq!(seen.input_policy.as_deref(), Some("drop"));
        assert_eq!(seen.input_rules, 10);
    }

    #[test]
    fn ranges_and_wrapped_elements_are_read() {
        let json = r#"{"nftables":[{"table":{"family":"inet","name":"kiwi","handle":1}},
            {"set":{"family":"inet","name":"operators4","table":"kiwi","type":"ipv4_addr",
              "elem":[{"range":["10.1.0.0","10.1.0.5"]},{"elem":{"val":"10.2.0.1","timeout":60}}]}}]}"#;
        let seen = parse_listing(json).unwrap();
        assert_eq!(
            seen.sets["operators4"],
            BTreeSet::from([net("10.1.0.0/30"), net("10.1.0.4/31"), net("10.2.0.1/32")])
        );
        assert_eq!(seen.peers(), None);
        assert_eq!(seen.input_policy, None);
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
                proptest::prop_assert!(seen.sets.contains_key("peers4"));
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
