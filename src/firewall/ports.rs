//! Ports and protocols as the inventory and the plan carry them: a port
//! range is two `u16` with `start <= end`, checked wherever one is made
//! (parsed from the inventory, read from a saved plan), so a range nftables
//! would refuse never reaches a ruleset.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A transport protocol a port rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// An inclusive range of port numbers, `start <= end`, 1..=65535. Written
/// `443` or `30000-32767`, in the inventory, the plan's JSON and nftables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// embedded etcd / etcd: client and peer ports.
    pub const ETCD: PortRange = PortRange {
        start: 2379,
        end: 2380,
    };
    /// Kubernetes' default NodePort range.
    pub const NODE_PORTS: PortRange = PortRange {
        start: 30000,
        end: 32767,
    };

    /// The range `start..=end`; `None` when `start > end` or either is 0.
    pub fn new(start: u16, end: u16) -> Option<PortRange> {
        (start >= 1 && start <= end).then_some(PortRange { start, end })
    }

    /// One port. Port 0 is not a port; it is raised to 1 rather than
    /// panicking, and no caller passes it (the inventory refuses it).
    pub const fn single(port: u16) -> PortRange {
        let port = if port == 0 { 1 } else { port };
        PortRange {
            start: port,
            end: port,
        }
    }

    /// First port.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// Last port.
    pub fn end(&self) -> u16 {
        self.end
    }

    /// Sorted, with overlapping and adjacent ranges merged: nftables
    /// refuses overlapping intervals in a set.
    pub fn merged(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
        ranges.sort();
        let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match out.last_mut() {
                Some(last) if u32::from(r.start) <= u32::from(last.end) + 1 => {
                    last.end = last.end.max(r.end);
                }
                _ => out.push(r),
            }
        }
        out
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |p: &str| -> Result<u16, String> {
            let ok = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if ok && n >= 1 => Ok(n),
                _ => Err(format!(
                    "`{}` is not a port; expected a number from 1 to 65535",
                    crate::text::escape_for_terminal(p)
                )),
            }
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        PortRange::new(start, end).ok_or_else(|| {
            format!("port range {start}-{end} runs backwards; expected start <= end")
        })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

/// A protocol and a port range: `udp/4789`, `tcp/30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRule {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The ports.
    pub ports: PortRange,
}

impl PortRule {
    /// TCP ports.
    pub fn tcp(ports: PortRange) -> PortRule {
        PortRule {
            protocol: Protocol::Tcp,
            ports,
        }
    }

    /// UDP ports.
    pub fn udp(ports: PortRange) -> PortRule {
        PortRule {
            protocol: Protocol::Udp,
            ports,
        }
    }
}

impl fmt::Display for PortRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.ports)
    }
}

impl FromStr for PortRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected protocol/port or protocol/first-last, e.g. \"udp/4789\" or \
                        \"tcp/30000-32767\"";
        let Some((proto, ports)) = s.split_once('/') else {
            return Err(format!(
                "`{}` names no protocol; {expected}",
                crate::text::escape_for_terminal(s)
            ));
        };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(format!(
                    "unknown protocol `{}`; {expected}",
                    crate::text::escape_for_terminal(other)
                ))
            }
        };
        Ok(PortRule {
            protocol,
            ports: ports.parse()?,
        })
    }
}

impl TryFrom<String> for PortRule {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PortRule> for String {
    fn from(r: PortRule) -> String {
        r.to_string()
    }
}

/// flannel's backend in a k3s cluster (`[k3s] flannel_backend`, the k3s
/// server flag `flannel-backend`): how pod traffic crosses between nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlannelBackend {
    /// VXLAN, unencrypted: pod traffic crosses the provider's network in
    /// the clear.
    Vxlan,
    /// WireGuard in the kernel: pod traffic between nodes is encrypted.
    #[default]
    WireguardNative,
}

impl FlannelBackend {
    /// The name k3s and the inventory use.
    pub fn as_str(self) -> &'static str {
        match self {
            FlannelBackend::Vxlan => "vxlan",
            FlannelBackend::WireguardNative => "wireguard-native",
        }
    }

    /// The UDP ports the backend needs between nodes (k3s' "Inbound Rules
    /// for K3s Nodes": VXLAN 8472; WireGuard 51820, and 51821 for IPv6).
    pub fn ports(self) -> Vec<PortRule> {
        match self {
            FlannelBackend::Vxlan => vec![PortRule::udp(PortRange::single(8472))],
            FlannelBackend::WireguardNative => vec![PortRule::udp(PortRange {
                start: 51820,
                end: 51821,
            })],
        }
    }
}

impl fmt::Display for FlannelBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlannelBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vxlan" => Ok(FlannelBackend::Vxlan),
            "wireguard-native" => Ok(FlannelBackend::WireguardNative),
            other => Err(format!(
                "`{}` is not a flannel backend kiwi-infra supports; expected \"wireguard-native\" \
                 (encrypted, the default) or \"vxlan\"",
                crate::text::escape_for_terminal(other)
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_refuse_what_nft_would_refuse() {
        assert_eq!("443".parse::<PortRange>().unwrap(), PortRange::single(443));
        assert_eq!(
            "30000-32767".parse::<PortRange>().unwrap(),
            PortRange::NODE_PORTS
        );
        for bad in [
            "0",
            "65536",
            "",
            "-1",
            "2-1",
            "80 ",
            "+80",
            "1-",
            "8_0",
            "80-90-100",
            "٣",
        ] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<PortRange>("\"90-80\"").is_err());
    }

    #[test]
    fn port_rules_need_a_known_protocol() {
        assert_eq!(
            "udp/4789".parse::<PortRule>().unwrap(),
            PortRule::udp(PortRange::single(4789))
        );
        assert_eq!(
            "tcp/179".parse::<PortRule>().unwrap().to_string(),
            "tcp/179"
        );
        for bad in ["4789", "sctp/1", "udp/", "UDP/4789", "udp/1;drop"] {
            assert!(bad.parse::<PortRule>().is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever a saved plan or an inventory holds: parsed, it prints
        /// back as it reads, and it is a range nftables accepts.
        #[test]
        fn any_text_parses_to_a_forward_range_that_reads_back_or_is_refused(text in ".{0,16}") {
            if let Ok(range) = text.parse::<PortRange>() {
                proptest::prop_assert!(1 <= range.start() && range.start() <= range.end());
                proptest::prop_assert_eq!(range.to_string().parse::<PortRange>(), Ok(range));
            }
            if let Ok(rule) = text.parse::<PortRule>() {
                proptest::prop_assert_eq!(rule.to_string().parse::<PortRule>(), Ok(rule));
            }
        }

        #[test]
        fn merged_ranges_are_sorted_disjoint_and_cover_the_same_ports(
            ranges in proptest::collection::vec((1u16..=65535, 0u16..300), 0..12)
        ) {
            let ranges: Vec<PortRange> = ranges
                .into_iter()
                .filter_map(|(s, l)| PortRange::new(s, s.saturating_add(l)))
                .collect();
            let merged = PortRange::merged(ranges.clone());
            for pair in merged.windows(2) {
                proptest::prop_assert!(u32::from(pair[0].end()) + 1 < u32::from(pair[1].start()));
            }
            let covers = |set: &[PortRange], p: u16| set.iter().any(|r| r.start() <= p && p <= r.end());
            for r in &ranges {
                for p in [r.start(), r.end()] {
                    proptest::prop_assert!(covers(&merged, p));
                }
            }
            for m in &merged {
                for p in [m.start(), m.end()] {
                    proptest::prop_assert!(covers(&ranges, p));
                }
            }
        }
    }

    #[test]
    fn merging_joins_overlapping_and_adjacent_ranges() {
        let r = |a, b| PortRange::new(a, b).unwrap();
        assert_eq!(
            PortRange::merged(vec![r(10, 20), r(5, 6), r(21, 22), r(7, 7), r(30, 30)]),
            vec![r(5, 7), r(10, 22), r(30, 30)]
        );
        assert_eq!(
            PortRange::merged(vec![r(1, 65535), r(65535, 65535)]),
            vec![r(1, 65535)]
        );
    }
}
