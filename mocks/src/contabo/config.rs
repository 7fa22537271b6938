//! Settings of a mock instance: the sandbox credentials, the timing of an instance's life, the
//! address pool and the faults to inject. Kept apart from the server so that the binary's flags
//! and the tests' struct literals describe the same knobs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MockError;

/// Statuses that a product override may hold new orders in. These are the statuses in which the
/// real Contabo parks an order until a human (or a payment) moves it on.
pub const HOLD_STATUSES: [&str; 4] = [
    "product_not_available",
    "manual_provisioning",
    "verification_required",
    "pending_payment",
];

/// The credentials the token endpoint accepts. `Debug` hides the secrets so that a logged
/// config never leaks them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// OAuth2 client id (`client_id` form field).
    pub client_id: String,
    /// OAuth2 client secret (`client_secret` form field).
    pub client_secret: String,
    /// API user (`username` form field), an e-mail address at Contabo.
    pub username: String,
    /// API password (`password` form field).
    pub password: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            client_id: "kiwi-sandbox".into(),
            client_secret: "sandbox-secret".into(),
            username: "operator@kiwistack.test".into(),
            password: "sandbox-password".into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Faults injected into `/v1` traffic. Changeable at run time (`PUT /_mock/faults` or
/// [`super::MockHandle::set_faults`]); never applied to the control API, nor to the token
/// endpoint except for [`Faults::token_expires_in`].
///
/// The last group of fields makes a *hostile* Contabo: it lies with numbers (`Retry-After`,
/// `expires_in`, `_pagination`) that a client must not trust blindly. Each is sent verbatim,
/// whatever it is, so tests can send `1e300`, `-1` or `"soon"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Added to every `/v1` request before it is handled.
    pub latency_ms: u64,
    /// Fraction (0..=1) of `/v1` requests answered with an injected 500 or 503 instead of being
    /// handled. Drawn from the seeded RNG.
    pub error_rate: f64,
    /// Sustained requests per second of the shared token bucket; `None` means unlimited.
    pub rate_limit_rps: Option<f64>,
    /// Bucket size: how many requests may arrive at once before 429s start.
    pub rate_burst: u32,
    /// Fraction (0..=1) of `/v1` requests refused with 429 (`Retry-After: 1`) whatever the
    /// bucket says, as when other clients of the account share its limit. Drawn from the
    /// seeded RNG.
    #[serde(default)]
    pub throttle_rate: f64,
    /// The next N instance orders are placed but their responses are dropped (connection
    /// closed without a response).
    pub drop_create_responses: u32,
    /// Probability (0..=1) that any other instance order's response is dropped the same way.
    pub drop_create_probability: f64,
    /// Hostile mode: the next N instance orders are answered with `failCreateStatus` (429
    /// comes with `Retry-After: 1`) instead of the instance, placed or not as
    /// `failCreatePlaced` says, as a proxy or a broken gateway might.
    #[serde(default)]
    pub fail_create_responses: u32,
    /// The status of those answers (default 429).
    #[serde(default = "default_fail_create_status")]
    pub fail_create_status: u16,
    /// Whether those orders are placed before the error is answered (default true).
    #[serde(default = "default_true")]
    pub fail_create_placed: bool,
    /// The `Retry-After` header of every 429, verbatim (e.g. `"1e300"`,
    /// `"18446744073709551616"`, `"inf"`); `None` sends the whole seconds the bucket computes.
    #[serde(default)]
    pub retry_after_secs: Option<String>,
    /// The `expires_in` the token endpoint announces, verbatim (any JSON: `1e300`, `0`, `-5`,
    /// `"soon"`); the token itself stays valid for the configured TTL. `None` announces the TTL.
    #[serde(default)]
    pub token_expires_in: Option<serde_json::Value>,
    /// `_pagination.totalPages` of every list page, verbatim (any JSON), instead of the true
    /// count.
    #[serde(default)]
    pub total_pages: Option<serde_json::Value>,
    /// `_pagination.totalElements` of every list page, verbatim (any JSON), instead of the
    /// true count.
    #[serde(default)]
    pub total_elements: Option<serde_json::Value>,
    /// Serve at most this many items of each list page, while `_pagination` still describes
    /// pages of the size asked for: the items in between are silently left out.
    #[serde(default)]
    pub serve_at_most: Option<u32>,
    /// Pages after the first start this many rows later (positive: rows are skipped between
    /// pages) or earlier (negative: rows are repeated), as a list read while the account changes
    /// would without a stable order; `_pagination` stays true.
    #[serde(default)]
    pub page_shift: i64,
    /// Answer 400 to a list request whose `size` is above N, as a server validating `size` might.
    #[serde(default)]
    pub refuse_page_size_above: Option<u32>,
    /// Serve at most N items a page and say so in `_pagination` (a server whose largest page
    /// is smaller than the mock's configured one), changeable at run time.
    #[serde(default)]
    pub page_size_cap: Option<u32>,
    /// Error answers quote the request they answer: method, path, every header (the bearer
    /// token too) and the body (an order's user data too). Also makes the token endpoint's
    /// error answers quote its form (client secret and password). See [`super::echo`].
    #[serde(default)]
    pub echo_request_in_errors: bool,
    /// Instances ordered while this is non-zero stay out of instance lists (and searches by
    /// `displayName`) for this many milliseconds after the order, as Contabo's list can lag
    /// behind its orders; `GET /v1/compute/instances/{id}` finds them at once. Instances
    /// ordered while it is zero are listed at once, whatever it is set to later.
    #[serde(default)]
    pub unlisted_for_ms: u64,
}

fn default_fail_create_status() -> u16 {
    429
}

fn default_true() -> bool {
    true
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_rps: None,
            rate_burst: 10,
            throttle_rate: 0.0,
            drop_create_responses: 0,
            drop_create_probability: 0.0,
            fail_create_responses: 0,
            fail_create_status: default_fail_create_status(),
            fail_create_placed: true,
            retry_after_secs: None,
            token_expires_in: None,
            total_pages: None,
            total_elements: None,
            serve_at_most: None,
            page_shift: 0,
            refuse_page_size_above: None,
            page_size_cap: None,
            echo_request_in_errors: false,
            unlisted_for_ms: 0,
        }
    }
}

impl Faults {
    /// Rejects values that cannot mean anything (a rate above 1, a negative RPS), naming the field.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "errorRate must be within 0..=1, got {}",
                self.error_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.throttle_rate) {
            return Err(format!(
                "throttleRate must be within 0..=1, got {}",
                self.throttle_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.drop_create_probability) {
            return Err(format!(
                "dropCreateProbability must be within 0..=1, got {}",
                self.drop_create_probability
            ));
        }
        if let Some(rps) = self.rate_limit_rps {
            if !(rps.is_finite() && rps > 0.0) {
                return Err(format!("rateLimitRps must be a positive number, got {rps}"));
            }
        }
        if self.rate_burst == 0 {
            return Err("rateBurst must be at least 1".into());
        }
        if let Some(value) = &self.retry_after_secs {
            // Anything an HTTP header can carry; the point is to send nonsense.
            if axum::http::HeaderValue::from_str(value).is_err() {
                return Err(format!(
                    "retryAfterSecs must be text an HTTP header can carry, got {value:?}"
                ));
            }
        }
        Ok(())
    }
}

/// A pool of loopback IPv4 addresses handed to new instances, with the network they pretend to
/// sit in. Only loopback is allowed: tests and the sandbox connect to these addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// First address handed out.
    pub first: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub last: Ipv4Addr,
    /// Prefix length reported as `netmaskCidr`.
    pub prefix: u8,
    /// Reported as the instances' gateway; never handed out.
    pub gateway: Ipv4Addr,
}

impl Default for IpRange {
    fn default() -> Self {
        Self {
            first: Ipv4Addr::new(127, 0, 10, 2),
            last: Ipv4Addr::new(127, 0, 10, 254),
            prefix: 24,
            gateway: Ipv4Addr::new(127, 0, 10, 1),
        }
    }
}

impl IpRange {
    /// Every address of the pool, in order, skipping the gateway.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (u32::from(self.first)..=u32::from(self.last))
            .map(Ipv4Addr::from)
            .filter(move |ip| *ip != self.gateway)
    }
}

impl FromStr for IpRange {
    type Err = MockError;

    /// Accepts `127.0.10.1-127.0.10.254` (a /24 around the first address is assumed, with
    /// `.1` as gateway) or a CIDR such as `127.0.20.0/24` (gateway = first host, pool = the
    /// other hosts).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| MockError::IpRange {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let parse_ip = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid("not an IPv4 address"))
        };
        let range = if let Some((net, prefix)) = input.split_once('/') {
            let net = u32::from(parse_ip(net)?);
            let prefix: u8 = prefix
                .trim()
                .parse()
                .map_err(|_| invalid("prefix is not a number"))?;
            if !(8..=30).contains(&prefix) {
                return Err(invalid("prefix must be within /8../30"));
            }
            let mask = u32::MAX << (32 - prefix);
            let network = net & mask;
            let broadcast = network | !mask;
            Self {
                first: Ipv4Addr::from(network + 2),
                last: Ipv4Addr::from(broadcast - 1),
                prefix,
                gateway: Ipv4Addr::from(network + 1),
            }
        } else if let Some((first, last)) = input.split_once('-') {
            let first = parse_ip(first)?;
            let last = parse_ip(last)?;
            if u32::from(first) > u32::from(last) {
                return Err(invalid("first address is after the last one"));
            }
            let gateway = Ipv4Addr::from(u32::from(first) & 0xffff_ff00 | 1);
            Self {
                first,
                last,
                prefix: 24,
                gateway,
            }
        } else {
            return Err(invalid("expected FIRST-LAST or NETWORK/PREFIX"));
        };
        if !(range.first.is_loopback() && range.last.is_loopback()) {
            return Err(invalid(
                "only loopback addresses (127.0.0.0/8) may be handed out",
            ));
        }
        if range.addresses().next().is_none() {
            return Err(invalid("the range holds no usable address"));
        }
        Ok(range)
    }
}

/// Where the private networks' address ranges come from: each network gets its own /22
/// inside it, as at Contabo (`10.0.0.0/8` by default). The sandbox and the end-to-end tests
/// set a loopback range (`127.77.0.0/16`), so that simulated nodes can bind their private
/// addresses on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateRange {
    /// Network address (aligned to the prefix).
    pub network: Ipv4Addr,
    /// Prefix length, 8 to 22.
    pub prefix: u8,
}

impl Default for PrivateRange {
    fn default() -> Self {
        Self {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 8,
        }
    }
}

impl PrivateRange {
    /// Prefix length of every private network, as at Contabo.
    pub const NETWORK_PREFIX: u8 = 22;

    /// The network address of the `n`-th private network (wrapping around the range).
    pub fn network_for(&self, n: i64) -> Ipv4Addr {
        let slots = 1u64 << (Self::NETWORK_PREFIX - self.prefix);
        let slot = u32::try_from(n.unsigned_abs() % slots).unwrap_or(0);
        Ipv4Addr::from(u32::from(self.network) | (slot << (32 - Self::NETWORK_PREFIX)))
    }
}

impl FromStr for PrivateRange {
    type Err = MockError;

    /// Accepts `NETWORK/PREFIX` with a prefix from /8 to /22, e.g. `127.77.0.0/16`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| MockError::IpRange {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (net, prefix) = input
            .split_once('/')
            .ok_or_else(|| invalid("expected NETWORK/PREFIX"))?;
        let network: Ipv4Addr = net
            .trim()
            .parse()
            .map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .map_err(|_| invalid("prefix is not a number"))?;
        if !(8..=Self::NETWORK_PREFIX).contains(&prefix) {
            return Err(invalid("prefix must be within /8../22"));
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(network) & !mask != 0 {
            return Err(invalid("host bits are set; expected the network address"));
        }
        Ok(Self { network, prefix })
    }
}

/// Parses `V9=product_not_available` (the `--product-status` flag).
pub fn parse_product_status(input: &str) -> Result<(String, String), MockError> {
    let invalid = |reason: String| MockError::ProductStatus {
        input: input.to_owned(),
        reason,
    };
    let (product, status) = input
        .split_once('=')
        .ok_or_else(|| invalid("expected PRODUCT=STATUS".into()))?;
    let (product, status) = (product.trim(), status.trim());
    if super::catalog::product(product).is_none() {
        return Err(invalid(format!("{product} is not a known product id")));
    }
    if !HOLD_STATUSES.contains(&status) {
        return Err(invalid(format!(
            "status must be one of {}",
            HOLD_STATUSES.join(", ")
        )));
    }
    Ok((product.to_owned(), status.to_owned()))
}

/// Everything a mock needs to start. `MockConfig::default()` is the sandbox: default
/// credentials, 300 ms per install phase, no faults, in-memory state, 127.0.0.1 on a free port.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Where to listen. Port 0 picks a free port; [`super::MockHandle::base_url`] tells which.
    pub listen: SocketAddr,
    /// The one account the token endpoint knows.
    pub credentials: Credentials,
    /// Lifetime of issued access tokens.
    pub token_ttl: Duration,
    /// Time an order spends in `provisioning`.
    pub provisioning_delay: Duration,
    /// Time an install (first or re-) spends in `installing`.
    pub installing_delay: Duration,
    /// How often the background ticker advances instance statuses.
    pub tick: Duration,
    /// Addresses handed to new instances.
    pub ip_range: IpRange,
    /// Where private networks' addresses come from.
    pub private_range: PrivateRange,
    /// Page size when a list request names none.
    pub default_page_size: u32,
    /// Largest page size served; bigger requests are cut down to it.
    pub max_page_size: u32,
    /// Faults in force at start.
    pub faults: Faults,
    /// Product id → hold status for new orders (see [`HOLD_STATUSES`]).
    pub product_statuses: BTreeMap<String, String>,
    /// Seed of the RNG behind injected errors and dropped responses.
    pub seed: u64,
    /// If set, state is loaded from and saved to this JSON file.
    pub state_file: Option<PathBuf>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: Credentials::default(),
            token_ttl: Duration::from_secs(300),
            provisioning_delay: Duration::from_millis(300),
            installing_delay: Duration::from_millis(300),
            tick: Duration::from_millis(25),
            ip_range: IpRange::default(),
            private_range: PrivateRange::default(),
            default_page_size: 10,
            max_page_size: 100,
            faults: Faults::default(),
            product_statuses: BTreeMap::new(),
            seed: 0,
            state_file: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn private_networks_get_a_slash_22_each_inside_the_configured_range() {
        let r: PrivateRange = "127.77.0.0/16".parse().unwrap();
        assert_eq!(r.network_for(0), Ipv4Addr::new(127, 77, 0, 0));
        assert_eq!(r.network_for(1), Ipv4Addr::new(127, 77, 4, 0));
        // 64 /22 networks fit in a /16; the 65th wraps around.
        assert_eq!(r.network_for(64), Ipv4Addr::new(127, 77, 0, 0));
        assert_eq!(
            PrivateRange::default().network_for(9001),
            Ipv4Addr::new(10, 140, 164, 0)
        );
        for bad in ["127.77.0.1/16", "127.77.0.0/23", "127.77.0.0", "x/16"] {
            assert!(bad.parse::<PrivateRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_reserves_gateway_and_broadcast() {
        let r: IpRange = "127.0.20.0/29".parse().unwrap();
        let all: Vec<_> = r.addresses().map(|a| a.to_string()).collect();
        assert_eq!(r.gateway, Ipv4Addr::new(127, 0, 20, 1));
        assert_eq!(
            all,
            [
                "127.0.20.2",
                "127.0.20.3",
                "127.0.20.4",
                "127.0.20.5",
                "127.0.20.6"
            ]
        );
    }

    #[test]
    fn non_loopback_ranges_are_refused() {
        assert!("10.0.0.1-10.0.0.9".parse::<IpRange>().is_err());
        assert!("192.168.1.0/24".parse::<IpRange>().is_err());
    }

    #[test]
    fn product_status_flag_names_known_products_only() {
        assert_eq!(
            parse_product_status("V9=product_not_available").unwrap(),
            ("V9".to_owned(), "product_not_available".to_owned())
        );
        assert!(parse_product_status("V1=product_not_available").is_err());
        assert!(parse_product_status("V9=running").is_err());
    }
}
