//! The cluster's "API server": plain JSON over HTTP on `<node ip>:6443`, serving the
//! [`ClusterState`] of [`cluster`](super::cluster) and persisting it after every change.
//!
//! Routes, Kubernetes-shaped where a real client would look:
//! - `GET /cacerts` (k3s; anonymous): the CA certificate, as k3s serves it for token checks.
//! - `GET /api/v1/namespaces/kube-public/configmaps/cluster-info` (kubeadm; anonymous).
//! - `GET /api/v1/nodes`, `GET|PUT|DELETE /api/v1/nodes/{name}` (admin certificate).
//! - Namespaces, ConfigMaps and `coordination.k8s.io/v1` Leases at their real paths (admin
//!   certificate), with the real API's `resourceVersion` rules ([`objects`](super::objects)).
//! - `POST /kiwi-sim/v1/{k3s/join, kubeadm/bootstrap, kubelet/register, heartbeat}`: what
//!   k3s's supervisor port and the kubelet's TLS bootstrap do on a real cluster.
//! - `POST /kiwi-sim/v1/kubeadm/{tokens, certificate-key}` (admin).
//!
//! A client proves it holds an admin kubeconfig by sending its `client-certificate-data` in
//! [`CLIENT_CERT_HEADER`] (there is no TLS to carry it).
//!
//! Servers that joined through another one run [`proxy_router`] instead: every request is
//! passed on to the server they joined.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cluster::{
    ApiFailure, ClusterState, Heartbeat, K3sJoin, KubeadmBootstrap, KubeletRegister,
    NewCertificateKey, NewToken,
};
use super::objects::Kind;
use super::paths::write_host;
use super::{Result, StandinError};

/// Header carrying the kubeconfig's `client-certificate-data`.
pub const CLIENT_CERT_HEADER: &str = "x-kiwi-sim-client-certificate";

/// The cluster state and the file it is persisted to.
#[derive(Debug, Clone)]
pub struct Datastore {
    state: Arc<Mutex<ClusterState>>,
    path: PathBuf,
}

impl Datastore {
    /// Reads a persisted state, `None` when there is none yet.
    pub fn load(path: &std::path::Path) -> Result<Option<ClusterState>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StandinError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StandinError::Io {
                action: "cannot read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Holds `state`, persisted to `path` (host path).
    pub fn new(state: ClusterState, path: PathBuf) -> Result<Self> {
        let store = Datastore {
            state: Arc::new(Mutex::new(state)),
            path,
        };
        store.save()?;
        Ok(store)
    }

    /// Runs `f` on the state; persists when `persist`. The file is written
    /// under the lock: concurrent requests must neither share the temporary
    /// file nor let an older state overwrite a newer one.
    pub fn with<T>(&self, persist: bool, f: impl FnOnce(&mut ClusterState) -> T) -> Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut state);
        if persist {
            let text = serde_json::to_string_pretty(&*state).map_err(|e| StandinError::Parse {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            write_host(&self.path, &text, 0o600)?;
        }
        Ok(out)
    }

    fn save(&self) -> Result<()> {
        self.with(true, |_| ())
    }
}

fn failure(f: &ApiFailure) -> Response {
    let code = StatusCode::from_u16(f.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(f.status_json())).into_response()
}

fn internal(e: &StandinError) -> Response {
    failure(&ApiFailure {
        code: 500,
        reason: "InternalError".into(),
        message: e.render(),
    })
}

/// Runs a mutation and answers with its result (persisting when asked).
fn answer<T: serde::Serialize>(
    store: &Datastore,
    persist: bool,
    f: impl FnOnce(&mut ClusterState) -> std::result::Result<T, ApiFailure>,
) -> Response {
    match store.with(persist, f) {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(f)) => failure(&f),
        Err(e) => internal(&e),
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> std::result::Result<T, ApiFailure> {
    serde_json::from_slice(body)
        .map_err(|e| ApiFailure::bad_request(format!("invalid request body: {e}")))
}

fn admin(store: &Datastore, headers: &HeaderMap) -> std::result::Result<(), ApiFailure> {
    let cert = headers
        .get(CLIENT_CERT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match store.with(false, |s| s.is_admin(cert)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiFailure::unauthorized()),
        Err(e) => Err(ApiFailure {
            code: 500,
            reason: "InternalError".into(),
            message: e.render(),
        }),
    }
}

/// The API server's routes over `store`.
pub fn router(store: Datastore) -> Router {
    Router::new()
        .route("/cacerts", get(cacerts))
        .route("/api/v1/namespaces", post(create_namespace))
        .route("/api/v1/namespaces/{name}", get(get_namespace))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            post(|s, ns, h, b| create_object(Kind::ConfigMap, s, ns, h, b)),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(get_config_map)
                .put(|s, p, h, b| replace_object(Kind::ConfigMap, s, p, h, b))
                .delete(|s, p, h| delete_object(Kind::ConfigMap, s, p, h)),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            post(|s, ns, h, b| create_object(Kind::Lease, s, ns, h, b)),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(|s, p, h| get_object(Kind::Lease, s, p, h))
                .put(|s, p, h, b| replace_object(Kind::Lease, s, p, h, b))
                .delete(|s, p, h| delete_object(Kind::Lease, s, p, h)),
        )
        .route("/api/v1/nodes", get(list_nodes))
        .route(
            "/api/v1/nodes/{name}",
            get(get_node).put(put_node).delete(delete_node),
        )
        .route("/kiwi-sim/v1/k3s/join", post(k3s_join))
        .route("/kiwi-sim/v1/kubeadm/bootstrap", post(kubeadm_bootstrap))
        .route("/kiwi-sim/v1/kubelet/register", post(kubelet_register))
        .route("/kiwi-sim/v1/heartbeat", post(heartbeat))
        .route("/kiwi-sim/v1/kubeadm/tokens", post(add_token))
        .route(
            "/kiwi-sim/v1/kubeadm/certificate-key",
            post(certificate_key),
        )
        .with_state(store)
}

async fn cacerts(State(store): State<Datastore>) -> Response {
    match store.with(false, |s| s.ca_pem.clone()) {
        Ok(pem) => pem.into_response(),
        Err(e) => internal(&e),
    }
}

async fn get_config_map(
    State(store): State<Datastore>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // kubeadm's discovery document is public; every other ConfigMap needs the admin.
    if ns == "kube-public" && name == "cluster-info" {
        return answer(&store, false, |s| s.cluster_info(Utc::now()));
    }
    get_object(Kind::ConfigMap, State(store), Path((ns, name)), headers).await
}

async fn create_namespace(
    State(store): State<Datastore>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_object(
        Kind::Namespace,
        State(store),
        Path(String::new()),
        headers,
        body,
    )
    .await
}

async fn get_namespace(
    State(store): State<Datastore>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    answer(&store, false, |s| {
        if s.objects.namespace_exists(&name) {
            Ok(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "status": {"phase": "Active"},
            }))
        } else {
            s.objects.get(Kind::Namespace, "", &name)
        }
    })
}

async fn create_object(
    kind: Kind,
    State(store): State<Datastore>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    match parse::<Value>(&body) {
        Ok(body) => answer(&store, true, |s| {
            s.create_object(kind, &ns, &body, Utc::now())
        }),
        Err(f) => failure(&f),
    }
}

async fn get_object(
    kind: Kind,
    State(store): State<Datastore>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    answer(&store, false, |s| s.objects.get(kind, &ns, &name))
}

async fn replace_object(
    kind: Kind,
    State(store): State<Datastore>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    match parse::<Value>(&body) {
        Ok(body) => answer(&store, true, |s| s.replace_object(kind, &ns, &name, &body)),
        Err(f) => failure(&f),
    }
}

async fn delete_object(
    kind: Kind,
    State(store): State<Datastore>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    answer(&store, true, |s| s.objects.delete(kind, &ns, &name))
}

async fn list_nodes(State(store): State<Datastore>, headers: HeaderMap) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    answer(&store, false, |s| Ok(s.node_list_json(Utc::now())))
}

async fn get_node(
    State(store): State<Datastore>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    answer(&store, false, |s| {
        let now = Utc::now();
        s.nodes
            .get(&name)
            .map(|n| s.node_json(n, now))
            .ok_or_else(|| ApiFailure::node_not_found(&name))
    })
}

async fn put_node(
    State(store): State<Datastore>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    let body: Value = match parse(&body) {
        Ok(b) => b,
        Err(f) => return failure(&f),
    };
    answer(&store, true, |s| s.update_node(&name, &body, Utc::now()))
}

async fn delete_node(
    State(store): State<Datastore>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    answer(&store, true, |s| s.delete_node(&name, Utc::now()))
}

async fn k3s_join(State(store): State<Datastore>, body: Bytes) -> Response {
    match parse::<K3sJoin>(&body) {
        Ok(join) => answer(&store, true, |s| s.k3s_join(join, Utc::now())),
        Err(f) => failure(&f),
    }
}

async fn kubeadm_bootstrap(State(store): State<Datastore>, body: Bytes) -> Response {
    match parse::<KubeadmBootstrap>(&body) {
        Ok(req) => answer(&store, true, |s| s.kubeadm_bootstrap(req, Utc::now())),
        Err(f) => failure(&f),
    }
}

async fn kubelet_register(State(store): State<Datastore>, body: Bytes) -> Response {
    match parse::<KubeletRegister>(&body) {
        Ok(req) => answer(&store, true, |s| s.kubelet_register(req, Utc::now())),
        Err(f) => failure(&f),
    }
}

async fn heartbeat(State(store): State<Datastore>, body: Bytes) -> Response {
    match parse::<Heartbeat>(&body) {
        Ok(hb) => answer(&store, false, |s| s.heartbeat(&hb, Utc::now())),
        Err(f) => failure(&f),
    }
}

async fn add_token(State(store): State<Datastore>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    match parse::<NewToken>(&body) {
        Ok(new) => answer(&store, true, |s| s.add_token(&new, Utc::now())),
        Err(f) => failure(&f),
    }
}

async fn certificate_key(
    State(store): State<Datastore>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(f) = admin(&store, &headers) {
        return failure(&f);
    }
    match parse::<NewCertificateKey>(&body) {
        Ok(new) => answer(&store, true, |s| s.set_certificate_key(&new, Utc::now())),
        Err(f) => failure(&f),
    }
}

/// Routes that pass every request on to the API at `upstream` (`http://host:port`).
pub fn proxy_router(upstream: String) -> Router {
    let http = reqwest::Client::new();
    Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let upstream = upstream.clone();
            let http = http.clone();
            async move { forward(&http, &upstream, method, uri, headers, body).await }
        },
    )
}

async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = http.request(method, format!("{upstream}{path}")).body(body);
    for name in [CLIENT_CERT_HEADER, "content-type"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v);
        }
    }
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let content_type = resp.headers().get("content-type").cloned();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            if let Some(ct) = content_type {
                out.headers_mut().insert("content-type", ct);
            }
            out
        }
        Err(_) => failure(&ApiFailure {
            code: 503,
            reason: "ServiceUnavailable".into(),
            message: "the server is currently unable to handle the request".into(),
        }),
    }
}
