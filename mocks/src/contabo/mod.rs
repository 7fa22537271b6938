//! A local stand-in for Contabo's API (`contabo-mock`), so that kiwi-infra can be built and tested
//! without an account. It follows the official OpenAPI spec (`shared/contabo/openapi.yaml`) for the
//! endpoints kiwi-infra uses, and behaves like the real service where tests need it to: Keycloak
//! tokens that expire, `x-request-id` checks, strict request validation, instances that go
//! `provisioning` → `installing` → `running` in the background, and injectable faults (latency,
//! 5xx, a shared rate limit with `Retry-After`, and orders whose response is lost after they were
//! placed).
//!
//! One base URL serves everything:
//! - `POST /auth/realms/contabo/protocol/openid-connect/token`: password grant ([`auth`]).
//! - `/v1/...`: instances, images, secrets, tags and assignments, private networks; every request
//!   needs a bearer token and an `x-request-id` ([`gateway`]).
//! - `/_mock/...`: the control API for tests ([`control`] documents it).
//!
//! State lives in memory and, with [`MockConfig::state_file`], in a JSON file rewritten after
//! every change, so a restarted mock still knows its instances.
//!
//! Decisions where the real service's behaviour is not documented:
//! - Faults apply to `/v1` only; the token endpoint and the control API are never slowed,
//!   failed or rate limited. Injected 5xx happen before the handler, so they never commit.
//!   The one exception is `echoRequestInErrors` ([`echo`]), which also makes the token
//!   endpoint's error answers quote the form it was sent.
//! - Cancelling twice is 409 (see [`instances`]).
//! - A product override holds new orders of that product in its status (as Contabo would until
//!   staff act); clearing it moves held orders on to `provisioning`, which tests rely on.
//! - IPv4 addresses come from a loopback pool and are never reused (instances are never
//!   deleted: a cancelled one keeps running, as at Contabo until its cancel date).

pub mod auth;
pub mod catalog;
pub mod config;
pub mod control;
pub mod echo;
pub mod gateway;
pub mod images;
pub mod instances;
pub mod lifecycle;
pub mod model;
pub mod networks;
pub mod secrets;
pub mod server;
pub mod shared;
pub mod tags;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use config::{Credentials, Faults, IpRange, MockConfig, PrivateRange};
pub use model::Instance;
pub use shared::{InstanceEvent, Stats};

/// Why the mock could not start or refused a control request.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The listen address is taken or not local.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--state` names a file that cannot be read.
    #[error("cannot read state file {}", path.display())]
    ReadState {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--state` names a file that is not mock state.
    #[error("state file {} is not valid mock state", path.display())]
    ParseState {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The state file cannot be written.
    #[error("cannot write state file {}", path.display())]
    WriteState {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--ip-range` is malformed or not loopback.
    #[error("invalid IP range {input:?}: {reason}")]
    IpRange {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--product-status` is malformed.
    #[error("invalid product status {input:?}: {reason}")]
    ProductStatus {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A control operation was refused (unknown instance, invalid status, bad fault values).
    #[error("control request refused: {message}")]
    Control {
        /// The reason, as the control API would answer it.
        message: String,
    },
}

impl From<wire::ApiError> for MockError {
    fn from(e: wire::ApiError) -> Self {
        Self::Control { message: e.message }
    }
}

/// A running mock. Dropping it stops the server; [`MockHandle::shutdown`] also waits for that.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

use shared::Shared;

/// Starts a mock on `config.listen` (127.0.0.1 on a free port by default) and returns once it
/// accepts connections.
pub async fn spawn(config: MockConfig) -> Result<MockHandle, MockError> {
    let requested = config.listen;
    let shared = Arc::new(Shared::new(config)?);
    let listener = TcpListener::bind(requested)
        .await
        .map_err(|source| MockError::Bind {
            addr: requested,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| MockError::Bind {
        addr: requested,
        source,
    })?;
    let (stop, stopped) = watch::channel(false);
    let router = server::router(shared.clone());
    let tasks = vec![
        tokio::spawn(server::serve(listener, router, stopped.clone())),
        tokio::spawn(lifecycle::run(shared.clone(), stopped)),
    ];
    tracing::info!(%addr, "contabo mock listening");
    Ok(MockHandle {
        addr,
        shared,
        stop,
        tasks,
    })
}

impl MockHandle {
    /// `http://127.0.0.1:PORT`: the API base URL and the token server's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Full URL of the token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.base_url(), auth::TOKEN_PATH)
    }

    /// The credentials the token endpoint accepts.
    pub fn credentials(&self) -> Credentials {
        self.shared.config.credentials.clone()
    }

    /// Current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.faults(|f| f.faults.clone())
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) -> Result<(), MockError> {
        Ok(control::set_faults(&self.shared, faults)?)
    }

    /// Holds new orders of `product_id` in `status` (one of [`config::HOLD_STATUSES`]), or
    /// clears the hold with `None`, which also releases held orders.
    pub fn set_product_status(
        &self,
        product_id: &str,
        status: Option<&str>,
    ) -> Result<(), MockError> {
        Ok(control::set_product_status(
            &self.shared,
            product_id,
            status,
        )?)
    }

    /// Forces an instance into a status (e.g. `error`, `stopped`, `uninstalled`).
    pub fn set_instance_status(&self, instance_id: i64, status: &str) -> Result<(), MockError> {
        Ok(control::set_instance_status(
            &self.shared,
            instance_id,
            status,
        )?)
    }

    /// Hostile mode: serves these as the instance's `displayName` and
    /// `ipConfig.v4.ip` from now on, whatever they hold.
    pub fn tamper_instance(
        &self,
        instance_id: i64,
        display_name: Option<&str>,
        ipv4_text: Option<&str>,
    ) -> Result<(), MockError> {
        Ok(control::tamper_instance(
            &self.shared,
            instance_id,
            display_name,
            ipv4_text,
        )?)
    }

    /// Invalidates every issued token, as if they had all expired.
    pub fn revoke_tokens(&self) {
        self.shared.revoke_tokens();
    }

    /// Every access token issued so far (for tests that look for leaks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.issued_tokens()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats(|s| s.clone())
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.shared.stats(|s| *s = Stats::default());
    }

    /// Receiver of instance lifecycle events from now on.
    pub fn events(&self) -> broadcast::Receiver<InstanceEvent> {
        self.shared.subscribe()
    }

    /// The instance's private address in a private network whose NIC works (the membership
    /// survived a reinstall), if it has one.
    pub fn private_ip_of(&self, instance_id: i64) -> Option<std::net::Ipv4Addr> {
        self.shared.read(|a| a.wired_private_ip(instance_id))
    }

    /// Snapshot of every instance's full state, by ascending id.
    pub fn instances(&self) -> Vec<Instance> {
        self.shared
            .read(|a| a.instances.values().cloned().collect())
    }

    /// One instance's full state.
    pub fn instance(&self, instance_id: i64) -> Option<Instance> {
        control::instance(&self.shared, instance_id)
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
