//! A validating HTTP proxy: forwards traffic unchanged and checks both directions against the spec.
//!
//! Put it between a client and a server (the mock, usually) and every exchange is checked by
//! [`Spec::validate_request`] and [`Spec::validate_response_bytes`]; the traffic itself is not
//! altered, so the test observes exactly what it would without the proxy.
//!
//! When the upstream fails mid-exchange (connection refused, reset, body cut short), the proxy
//! closes the client's connection without answering, rather than inventing a `502`. The client
//! thus sees a lost response, just as it would talking to the upstream directly, and its
//! "did my order go through?" handling is what gets exercised. This is why the proxy is built on
//! hyper directly: a hyper service that returns an error closes the connection without writing a
//! response, which axum does not allow.
//!
//! With [`ProxyConfig::record`] set, every exchange is also written to a file as one JSON line
//! (see [`super::Exchange`]; credentials redacted), for a validator that is not this crate's code.
//!
//! Shutting down stops accepting connections and drops the ones still open.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::record::{redact, RecordError, Recorder, Seen, SeenResponse};
use super::{RequestParts, Spec, SpecError, Violation};

/// Called with each violation as it is found (the binary prints them).
pub type ViolationSink = Arc<dyn Fn(&Violation) + Send + Sync>;

/// How to run a proxy.
#[derive(Clone)]
pub struct ProxyConfig {
    /// Where requests go, e.g. `http://127.0.0.1:8080` (a path prefix is kept).
    pub upstream_base_url: String,
    /// Address to listen on; must be a loopback address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The spec to check against.
    pub spec: Arc<Spec>,
    /// Optional callback for each violation, called as it is found.
    pub on_violation: Option<ViolationSink>,
    /// Optional file to write every forwarded exchange to, one JSON line each (created or
    /// truncated at start, owner-only permissions; credentials redacted).
    pub record: Option<PathBuf>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("upstream_base_url", &self.upstream_base_url)
            .field("listen", &self.listen)
            .field("spec", &self.spec.source())
            .field("on_violation", &self.on_violation.is_some())
            .field("record", &self.record)
            .finish()
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The spec could not be loaded.
    #[error("cannot load the spec for the validating proxy")]
    Spec(#[from] SpecError),
    /// The upstream URL is not usable.
    #[error("upstream URL {url} is not usable: {reason}")]
    Upstream {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only loopback addresses may be listened on or forwarded to.
    #[error(
        "{what} {address} is not a loopback address; the proxy only works on 127.0.0.0/8 and ::1"
    )]
    NotLoopback {
        /// `listen address` or `upstream host`.
        what: &'static str,
        /// The offending address.
        address: String,
    },
    /// Listening failed.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for the upstream could not be built.
    #[error("cannot build the HTTP client for the upstream")]
    Client(#[source] reqwest::Error),
    /// The recording file could not be created.
    #[error("cannot start recording the traffic")]
    Record(#[source] RecordError),
}

/// A running proxy. Dropping it stops the proxy too.
#[derive(Debug)]
pub struct ProxyHandle {
    base_url: String,
    local_addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The proxy's base URL, e.g. `http://127.0.0.1:41234`; point the client here.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every violation found so far, in the order found.
    pub fn violations(&self) -> Vec<Violation> {
        self.state
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests and responses have been checked.
    pub fn checked(&self) -> (u64, u64) {
        (
            self.state.requests.load(Ordering::SeqCst),
            self.state.responses.load(Ordering::SeqCst),
        )
    }

    /// How many exchanges failed because the upstream did not answer in full (the client saw its
    /// connection closed).
    pub fn upstream_failures(&self) -> u64 {
        self.state.upstream_failures.load(Ordering::SeqCst)
    }

    /// How many exchanges were written to the recording, and how many could not be (both 0
    /// without [`ProxyConfig::record`]). A failed write is also logged at warn level.
    pub fn recorded(&self) -> (u64, u64) {
        self.state
            .recorder
            .as_ref()
            .map_or((0, 0), |recorder| (recorder.written(), recorder.failed()))
    }

    /// Stops accepting connections, drops open ones, and waits for the proxy task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may already be gone; nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // A join error only says the task was aborted or panicked; either way it has ended.
            let _ = task.await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct State {
    spec: Arc<Spec>,
    /// Upstream base without a trailing slash; the request target is appended.
    upstream: String,
    client: reqwest::Client,
    violations: Mutex<Vec<Violation>>,
    requests: AtomicU64,
    responses: AtomicU64,
    upstream_failures: AtomicU64,
    on_violation: Option<ViolationSink>,
    recorder: Option<Recorder>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl State {
    fn record(&self, found: Vec<Violation>) {
        if found.is_empty() {
            return;
        }
        if let Some(sink) = &self.on_violation {
            found.iter().for_each(|violation| sink(violation));
        }
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(found);
    }
}

/// Starts a proxy on a free loopback port in front of `upstream_base_url`, checking against the
/// spec at [`Spec::default_path`].
pub async fn spawn_proxy(upstream_base_url: &str) -> Result<ProxyHandle, ProxyError> {
    let spec = Arc::new(Spec::load_default()?);
    spawn_proxy_with(ProxyConfig {
        upstream_base_url: upstream_base_url.to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        spec,
        on_violation: None,
        record: None,
    })
    .await
}

/// Starts a proxy as configured.
pub async fn spawn_proxy_with(config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
    if !config.listen.ip().is_loopback() {
        return Err(ProxyError::NotLoopback {
            what: "listen address",
            address: config.listen.to_string(),
        });
    }
    let upstream = check_upstream(&config.upstream_base_url)?;
    let client = reqwest::Client::builder()
        // Redirects are part of what is being checked, so they reach the client as sent.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ProxyError::Client)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            address: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ProxyError::Bind {
        address: config.listen,
        source,
    })?;
    let recorder = config
        .record
        .as_deref()
        .map(Recorder::create)
        .transpose()
        .map_err(ProxyError::Record)?;
    let state = Arc::new(State {
        spec: config.spec,
        upstream,
        client,
        violations: Mutex::new(Vec::new()),
        requests: AtomicU64::new(0),
        responses: AtomicU64::new(0),
        upstream_failures: AtomicU64::new(0),
        on_violation: config.on_violation,
        recorder,
    });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
    Ok(ProxyHandle {
        base_url: format!("http://{local_addr}"),
        local_addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Accepts a loopback upstream URL and returns it without a trailing slash.
fn check_upstream(url: &str) -> Result<String, ProxyError> {
    let parsed = reqwest::Url::parse(url).map_err(|error| ProxyError::Upstream {
        url: url.to_owned(),
        reason: error.to_string(),
    })?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(ProxyError::Upstream {
            url: url.to_owned(),
            reason: "only http and https are supported".to_owned(),
        });
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ProxyError::Upstream {
            url: url.to_owned(),
            reason: "a base URL takes no query or fragment".to_owned(),
        });
    }
    let host = parsed.host_str().unwrap_or_default();
    let loopback = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback {
        return Err(ProxyError::NotLoopback {
            what: "upstream host",
            address: host.to_owned(),
        });
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: oneshot::Receiver<()>) {
    // Dropping the set when the loop ends aborts the connections still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Accept errors (e.g. too many open files) are transient; keep serving.
                    continue;
                };
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        forward(Arc::clone(&state), request)
                    });
                    // A connection error is the client's or the upstream's business; the
                    // exchange was already recorded (or never complete).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Returned instead of a response when the exchange cannot be completed; hyper then closes the
/// client's connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("exchange dropped: {0}")]
struct Dropped(String);

/// Headers that describe one connection, not the message, and so are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    // Recomputed for the body as forwarded (which is the same body).
    "content-length",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

async fn forward(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| Dropped(format!("reading the client's body: {error}")))?
        .to_bytes();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let checked = RequestParts::from_http(
        parts.method.as_str(),
        &target,
        headers.clone(),
        body.to_vec(),
    );
    // Records the exchange (if asked to) however it ends.
    let record = |response: Option<SeenResponse<'_>>| {
        if let Some(recorder) = &state.recorder {
            recorder.write(&redact(&Seen {
                method: parts.method.as_str(),
                target: &target,
                request_headers: &headers,
                request_body: &body,
                response,
            }));
        }
    };
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.record(state.spec.validate_request(&checked));

    let mut upstream_request = state
        .client
        .request(parts.method.clone(), format!("{}{target}", state.upstream))
        .body(body.clone());
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
    {
        upstream_request = upstream_request.header(name, value);
    }
    let upstream_response = match upstream_request.send().await {
        Ok(response) => response,
        Err(error) => {
            record(None);
            return Err(upstream_failed(&state, &error));
        }
    };
    let status = upstream_response.status();
    let response_headers = upstream_response.headers().clone();
    let response_body = match upstream_response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            record(None);
            return Err(upstream_failed(&state, &error));
        }
    };

    let header_pairs: Vec<(String, String)> = response_headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    record(Some(SeenResponse {
        status: status.as_u16(),
        headers: &header_pairs,
        body: &response_body,
    }));
    state.responses.fetch_add(1, Ordering::SeqCst);
    state.record(state.spec.validate_response_bytes(
        parts.method.as_str(),
        &checked.path,
        status.as_u16(),
        &header_pairs,
        &response_body,
    ));

    let mut response = Response::new(Full::new(response_body));
    *response.status_mut() = status;
    for (name, value) in response_headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
    {
        response
            .headers_mut()
            .append(name.clone(), HeaderValue::clone(value));
    }
    Ok(response)
}

fn upstream_failed(state: &State, error: &reqwest::Error) -> Dropped {
    state.upstream_failures.fetch_add(1, Ordering::SeqCst);
    // reqwest's Display includes the URL, which holds no credentials (those travel in headers
    // and bodies).
    tracing::debug!(%error, "upstream failed; closing the client's connection without a response");
    Dropped(format!("upstream failed: {error}"))
}
