//! The state every request handler, the lifecycle ticker and the handle share: the account
//! (persisted), the issued tokens, the fault settings with their RNG and token bucket, the
//! counters, and the broadcast of instance events. Locks are plain `std` mutexes held for short,
//! non-async sections only.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::broadcast;

use super::config::{Faults, MockConfig};
use super::model::{Instance, State};
use super::MockError;

/// A change in an instance's life, broadcast so that e.g. a simulated node can start listening
/// at the instance's IP once it is `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    /// The instance.
    pub instance_id: i64,
    /// Its display name at the time.
    pub display_name: String,
    /// Its public IPv4 address.
    pub ip: std::net::Ipv4Addr,
    /// The status it just entered.
    pub status: String,
    /// cloud-init user data of the current install.
    pub user_data: Option<String>,
    /// Public keys installed (the values of the `sshKeys` secrets at install time).
    pub ssh_keys: Vec<String>,
    /// Secret ids of those keys.
    pub ssh_key_ids: Vec<i64>,
    /// Login user of the current install.
    pub default_user: String,
    /// Its private address, once a private network's NIC works (filled in by
    /// [`Shared::mutate`] from the account, `None` otherwise).
    pub private_ip: Option<std::net::Ipv4Addr>,
}

impl InstanceEvent {
    /// The event announcing `instance`'s current status.
    pub fn of(instance: &Instance) -> Self {
        Self {
            instance_id: instance.instance_id,
            display_name: instance.display_name.clone(),
            ip: instance.ipv4,
            status: instance.status.clone(),
            user_data: instance.user_data.clone(),
            ssh_keys: instance.ssh_key_values.clone(),
            ssh_key_ids: instance.ssh_keys.clone(),
            default_user: instance.default_user.clone(),
            private_ip: None,
        }
    }
}

/// Counters of what the mock did, for tests and benchmarks (`GET /_mock/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Every request under `/v1`, whatever its fate.
    pub requests_total: u64,
    /// `METHOD /route/{template}` → count (unknown paths count as `METHOD (unmatched)`).
    pub requests_by_route: BTreeMap<String, u64>,
    /// Requests turned away with 429.
    pub rate_limited: u64,
    /// Injected 500/503 answers.
    pub injected_errors: u64,
    /// Instance orders placed whose response was dropped.
    pub dropped_create_responses: u64,
    /// Instance orders placed (including those whose response was dropped).
    pub instances_created: u64,
    /// Tokens issued by the token endpoint.
    pub tokens_issued: u64,
    /// Token requests refused.
    pub token_failures: u64,
}

/// Faults plus the mutable machinery behind them.
#[derive(Debug)]
pub struct FaultState {
    /// Current settings.
    pub faults: Faults,
    rng: StdRng,
    bucket_tokens: f64,
    bucket_refilled: Instant,
}

/// What a rate-limit check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Admit,
    /// Over the limit: come back in this many whole seconds (at least 1).
    RetryAfter(u64),
}

impl FaultState {
    fn new(faults: Faults, seed: u64) -> Self {
        let burst = f64::from(faults.rate_burst);
        Self {
            faults,
            rng: StdRng::seed_from_u64(seed),
            bucket_tokens: burst,
            bucket_refilled: Instant::now(),
        }
    }

    /// Replaces the settings; a new rate limit starts with a full bucket.
    pub fn replace(&mut self, faults: Faults) {
        if faults.rate_limit_rps != self.faults.rate_limit_rps
            || faults.rate_burst != self.faults.rate_burst
        {
            self.bucket_tokens = f64::from(faults.rate_burst);
            self.bucket_refilled = Instant::now();
        }
        self.faults = faults;
    }

    /// Takes one token from the shared bucket, or says how long until one is back.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let throttle = self.faults.throttle_rate;
        if throttle > 0.0 && self.rng.random_bool(throttle.clamp(0.0, 1.0)) {
            return Admission::RetryAfter(1);
        }
        let Some(rps) = self.faults.rate_limit_rps else {
            return Admission::Admit;
        };
        let burst = f64::from(self.faults.rate_burst);
        let elapsed = now.saturating_duration_since(self.bucket_refilled);
        self.bucket_tokens = (self.bucket_tokens + elapsed.as_secs_f64() * rps).min(burst);
        self.bucket_refilled = now;
        if self.bucket_tokens >= 1.0 {
            self.bucket_tokens -= 1.0;
            Admission::Admit
        } else {
            let wait = (1.0 - self.bucket_tokens) / rps;
            // Retry-After carries whole seconds; round up so a client that obeys it succeeds.
            Admission::RetryAfter((wait.ceil() as u64).max(1))
        }
    }

    /// Draws whether this request gets an injected error, and which one.
    pub fn injected_error(&mut self) -> Option<u16> {
        let rate = self.faults.error_rate;
        if rate > 0.0 && self.rng.random_bool(rate.clamp(0.0, 1.0)) {
            Some(if self.rng.random_bool(0.5) { 500 } else { 503 })
        } else {
            None
        }
    }

    /// The error status this order is answered with instead of the instance, and whether it is
    /// placed first, consuming one of the counted failures.
    pub fn fail_this_create(&mut self) -> Option<(u16, bool)> {
        if self.faults.fail_create_responses == 0 {
            return None;
        }
        self.faults.fail_create_responses -= 1;
        Some((
            self.faults.fail_create_status,
            self.faults.fail_create_placed,
        ))
    }

    /// Decides whether this order's response is dropped, consuming one of the counted drops.
    pub fn drop_this_create(&mut self) -> bool {
        if self.faults.drop_create_responses > 0 {
            self.faults.drop_create_responses -= 1;
            return true;
        }
        let p = self.faults.drop_create_probability;
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }
}

/// Shared by everything inside one running mock.
#[derive(Debug)]
pub struct Shared {
    /// Settings fixed at start (faults and product statuses here are the initial values only).
    pub config: MockConfig,
    state: Mutex<State>,
    /// Product id → hold status for new orders.
    product_statuses: Mutex<BTreeMap<String, String>>,
    tokens: Mutex<HashMap<String, Instant>>,
    /// Every token ever issued, so tests can look for them in the tool's output.
    issued: Mutex<Vec<String>>,
    faults: Mutex<FaultState>,
    stats: Mutex<Stats>,
    events: broadcast::Sender<InstanceEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the mock; the data is still consistent enough for tests.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Builds the shared state, loading `config.state_file` if it exists.
    pub fn new(config: MockConfig) -> Result<Self, MockError> {
        let state = match &config.state_file {
            Some(path) if path.exists() => load_state(path)?,
            _ => State::default(),
        };
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            state: Mutex::new(state),
            product_statuses: Mutex::new(config.product_statuses.clone()),
            tokens: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            faults: Mutex::new(FaultState::new(config.faults.clone(), config.seed)),
            stats: Mutex::new(Stats::default()),
            events,
            config,
        })
    }

    /// Reads the account.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.state))
    }

    /// Changes the account, then persists it (if `--state`) and broadcasts the events `f`
    /// returns alongside its result.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> (R, Vec<InstanceEvent>)) -> R {
        let (result, events) = {
            let mut state = lock(&self.state);
            let (result, mut events) = f(&mut state);
            for event in &mut events {
                event.private_ip = state.wired_private_ip(event.instance_id);
            }
            self.persist(&state);
            (result, events)
        };
        for event in events {
            // No receiver is fine: nobody is listening yet.
            let _ = self.events.send(event);
        }
        result
    }

    fn persist(&self, state: &State) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        if let Err(e) = save_state(path, state) {
            tracing::error!(error = %e, path = %path.display(), "cannot persist mock state");
        }
    }

    /// New receiver of instance events.
    pub fn subscribe(&self) -> broadcast::Receiver<InstanceEvent> {
        self.events.subscribe()
    }

    /// Issues a token valid for the configured TTL.
    pub fn issue_token(&self, token: String) {
        let mut tokens = lock(&self.tokens);
        let now = Instant::now();
        tokens.retain(|_, exp| *exp > now);
        tokens.insert(token.clone(), now + self.config.token_ttl);
        lock(&self.issued).push(token);
    }

    /// Every token issued so far, expired and revoked ones included.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.issued).clone()
    }

    /// True if the token was issued, is not expired and was not revoked.
    pub fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens)
            .get(token)
            .is_some_and(|exp| *exp > Instant::now())
    }

    /// Forgets all tokens: every client must log in again.
    pub fn revoke_tokens(&self) {
        lock(&self.tokens).clear();
    }

    /// Runs `f` on the fault machinery.
    pub fn faults<R>(&self, f: impl FnOnce(&mut FaultState) -> R) -> R {
        f(&mut lock(&self.faults))
    }

    /// Runs `f` on the counters.
    pub fn stats<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        f(&mut lock(&self.stats))
    }

    /// Current product overrides.
    pub fn product_statuses(&self) -> BTreeMap<String, String> {
        lock(&self.product_statuses).clone()
    }

    /// The hold status for new orders of `product_id`, if any.
    pub fn product_status(&self, product_id: &str) -> Option<String> {
        lock(&self.product_statuses).get(product_id).cloned()
    }

    /// Sets or clears (`None`) a product override. Held orders follow on the next tick.
    pub fn set_product_status(&self, product_id: &str, status: Option<String>) {
        let mut map = lock(&self.product_statuses);
        match status {
            Some(s) => map.insert(product_id.to_owned(), s),
            None => map.remove(product_id),
        };
    }

    /// Page size for a list request that asked for `requested`.
    pub fn page_size(&self, requested: Option<u32>) -> u32 {
        let cap = self
            .faults(|f| f.faults.page_size_cap)
            .unwrap_or(u32::MAX)
            .min(self.config.max_page_size);
        requested
            .unwrap_or(self.config.default_page_size)
            .min(cap)
            .max(1)
    }

    /// How long to sleep between lifecycle ticks.
    pub fn tick(&self) -> Duration {
        self.config.tick.max(Duration::from_millis(1))
    }
}

fn load_state(path: &Path) -> Result<State, MockError> {
    let text = std::fs::read_to_string(path).map_err(|source| MockError::ReadState {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| MockError::ParseState {
        path: path.to_owned(),
        source,
    })
}

fn save_state(path: &Path, state: &State) -> Result<(), MockError> {
    let write_err = |source| MockError::WriteState {
        path: path.to_owned(),
        source,
    };
    let json = serde_json::to_vec_pretty(state).map_err(|e| write_err(std::io::Error::other(e)))?;
    // Write beside the target and rename, so a crash never leaves half a file behind.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_burst_then_asks_to_wait() {
        let faults = Faults {
            rate_limit_rps: Some(0.5),
            rate_burst: 2,
            ..Faults::default()
        };
        let mut f = FaultState::new(faults, 1);
        let now = Instant::now();
        assert_eq!(f.admit(now), Admission::Admit);
        assert_eq!(f.admit(now), Admission::Admit);
        // One token per two seconds.
        assert_eq!(f.admit(now), Admission::RetryAfter(2));
        assert_eq!(f.admit(now + Duration::from_secs(2)), Admission::Admit);
    }

    #[test]
    fn counted_drops_are_consumed() {
        let faults = Faults {
            drop_create_responses: 2,
            ..Faults::default()
        };
        let mut f = FaultState::new(faults, 1);
        assert!(f.drop_this_create());
        assert!(f.drop_this_create());
        assert!(!f.drop_this_create());
    }
}
