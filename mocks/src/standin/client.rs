//! Reaching a cluster's API ([`api`](super::api)) from a node: kubeconfig files as k3s and
//! kubeadm write them, and a small JSON client that turns refusals into [`ApiFailure`]s.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::api::CLIENT_CERT_HEADER;
use super::cluster::{b64, random_pem, ApiFailure};
use super::{Result, StandinError};

/// What a kubeconfig says about the current context.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    /// `https://host:port`.
    pub server: String,
    /// `client-certificate-data` (base64), when the user has one.
    pub client_cert: Option<String>,
    /// The CA certificate (decoded), when present.
    pub ca_pem: Option<String>,
}

/// Parses a kubeconfig, following `current-context` to its cluster and user.
pub fn parse_kubeconfig(text: &str, path: &Path) -> Result<Kubeconfig> {
    let err = |message: String| StandinError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| err(e.to_string()))?;
    let named = |list: &str, name: Option<&str>| -> Option<serde_norway::Value> {
        let items = doc.get(list)?.as_sequence()?;
        items
            .iter()
            .find(|i| name.is_none() || i.get("name").and_then(|n| n.as_str()) == name)
            .cloned()
    };
    let current = doc.get("current-context").and_then(|c| c.as_str());
    let context = named("contexts", current.filter(|c| !c.is_empty()));
    let ctx = |key: &str| -> Option<String> {
        context
            .as_ref()?
            .get("context")?
            .get(key)?
            .as_str()
            .map(str::to_string)
    };
    let cluster = named("clusters", ctx("cluster").as_deref())
        .ok_or_else(|| err("no cluster for the current context".into()))?;
    let server = cluster
        .get("cluster")
        .and_then(|c| c.get("server"))
        .and_then(|s| s.as_str())
        .ok_or_else(|| err("the cluster has no server".into()))?
        .to_string();
    let ca_pem = cluster
        .get("cluster")
        .and_then(|c| c.get("certificate-authority-data"))
        .and_then(|s| s.as_str())
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let client_cert = named("users", ctx("user").as_deref()).and_then(|u| {
        u.get("user")?
            .get("client-certificate-data")?
            .as_str()
            .map(str::to_string)
    });
    Ok(Kubeconfig {
        server,
        client_cert,
        ca_pem,
    })
}

/// A kubeconfig in the shape k3s (`name = "default"`) or kubeadm writes it.
pub fn render_kubeconfig(
    server: &str,
    ca_pem: &str,
    client_cert: &str,
    flavor_k3s: bool,
) -> String {
    let (cluster, user, context) = if flavor_k3s {
        ("default", "default", "default")
    } else {
        (
            "kubernetes",
            "kubernetes-admin",
            "kubernetes-admin@kubernetes",
        )
    };
    let key = b64(&random_pem("EC PRIVATE KEY"));
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\ncontexts:\n- context:\n    cluster: {cluster}\n    user: {user}\n  name: {context}\ncurrent-context: {context}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {client_cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
    )
}

/// The plain-HTTP base URL for a server URL from a kubeconfig or config file. The stand-ins
/// speak HTTP, so `https` becomes `http`; a loopback `127.0.0.1`/`localhost` (k3s.yaml's
/// default) means this node, whose servers listen on its own IP.
pub fn http_base(server: &str, node_ip: Option<Ipv4Addr>) -> String {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server)
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (rest, "6443"),
    };
    let host = match (host, node_ip) {
        ("127.0.0.1" | "localhost", Some(ip)) => ip.to_string(),
        // A DNS name cannot be resolved to a simulated node; the node itself is the best
        // guess (control-plane endpoints are usually the first control-plane node).
        (h, Some(ip)) if h.parse::<Ipv4Addr>().is_err() => ip.to_string(),
        (h, _) => h.to_string(),
    };
    format!("http://{host}:{port}")
}

/// A JSON client of one cluster API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    cert: Option<String>,
    http: reqwest::Client,
}

/// An API answer: the body, or the server's refusal.
pub type Reply = std::result::Result<Value, ApiFailure>;

impl Api {
    /// A client of `base` (`http://host:port`), presenting `cert` when given.
    pub fn new(base: String, cert: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Api { base, cert, http }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; transport failures are errors, refusals are `Ok(Err(_))`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Reply> {
        let url = format!("{}{}", self.base, path);
        let method_name = match method.as_str() {
            "GET" => "GET",
            "PUT" => "PUT",
            "POST" => "POST",
            "DELETE" => "DELETE",
            _ => "request",
        };
        let mut request = self.http.request(method, &url);
        if let Some(cert) = &self.cert {
            request = request.header(CLIENT_CERT_HEADER, cert);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let http_err = |source| StandinError::Http {
            method: method_name,
            url: url.clone(),
            source,
        };
        let resp = request.send().await.map_err(http_err)?;
        let status = resp.status();
        let text = resp.text().await.map_err(http_err)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(Ok(value));
        }
        let failure = serde_json::from_value::<Value>(value.clone())
            .ok()
            .filter(|v| v["kind"] == "Status")
            .map(|v| ApiFailure {
                code: status.as_u16(),
                reason: v["reason"].as_str().unwrap_or_default().to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            })
            .unwrap_or_else(|| ApiFailure {
                code: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("Unknown").to_string(),
                message: value.as_str().map(str::to_string).unwrap_or_default(),
            });
        Ok(Err(failure))
    }

    /// `GET path` returning text (for `/cacerts`).
    pub async fn get_text(&self, path: &str) -> Result<std::result::Result<String, ApiFailure>> {
        let url = format!("{}{}", self.base, path);
        let http_err = |source| StandinError::Http {
            method: "GET",
            url: url.clone(),
            source,
        };
        let resp = self.http.get(&url).send().await.map_err(http_err)?;
        let status = resp.status();
        let text = resp.text().await.map_err(http_err)?;
        if status.is_success() {
            Ok(Ok(text))
        } else {
            Ok(Err(ApiFailure {
                code: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("Unknown").to_string(),
                message: text,
            }))
        }
    }
}
