//! A cluster's state as its API server holds it, and every rule that decides who may join and
//! what the nodes look like. Pure: the caller passes the time in; [`api`](super::api) serves
//! it over HTTP and persists it.
//!
//! The rules follow the real programs where that is cheap:
//! - k3s: a joining server must present the server token's password, an agent the agent's
//!   or the server's; a node name is bound to the node password of its first join (k3s's
//!   `node-passwd` secret); a restart re-applies `node-label` values but never taints.
//! - kubeadm: a join needs an unexpired bootstrap token; a control-plane join also needs the
//!   certificate key uploaded within the last two hours and a cluster with a
//!   `controlPlaneEndpoint`; a Ready node of the same name blocks a join.
//! - Readiness: a node is `Ready` only while its last heartbeat is under
//!   [`READY_WINDOW`] old; otherwise `Unknown` with the node controller's `unreachable` taints.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::labels::{self, Taint};
use super::objects::{Kind, Objects};

/// How often daemons heartbeat.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A node is Ready while its last heartbeat is younger than this.
pub const READY_WINDOW: chrono::Duration = chrono::Duration::seconds(5);
/// Lifetime of an uploaded certificate key (kubeadm's `kubeadm-certs` secret).
pub const CERTIFICATE_KEY_TTL: chrono::Duration = chrono::Duration::hours(2);

/// Taint keys the control plane manages itself; clients never set or keep them.
const SYSTEM_TAINTS: [&str; 3] = [
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unschedulable",
];

/// Which distribution formed the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// k3s with its tokens.
    K3s,
    /// kubeadm with bootstrap tokens and certificate keys.
    Kubeadm,
}

/// A refusal by the API server, rendered as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFailure {
    /// HTTP status.
    pub code: u16,
    /// Kubernetes reason (`NotFound`, `Unauthorized`, …).
    pub reason: String,
    /// Human text.
    pub message: String,
}

impl ApiFailure {
    fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiFailure {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// `nodes "NAME" not found`.
    pub fn node_not_found(name: &str) -> Self {
        Self::new(404, "NotFound", format!("nodes {name:?} not found"))
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// The Kubernetes `Status` object.
    pub fn status_json(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// What a node says about itself when it registers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// `InternalIP`.
    pub internal_ip: String,
    /// `ExternalIP`, when configured.
    #[serde(default)]
    pub external_ip: Option<String>,
    /// Labels, including the kubelet's own.
    pub labels: BTreeMap<String, String>,
    /// Taints to register with.
    pub taints: Vec<Taint>,
    /// Kubelet version.
    pub kubelet_version: String,
}

/// A registered node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Object uid.
    pub uid: String,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints set by registration or clients.
    pub taints: Vec<Taint>,
    /// Annotations set by clients (`kubectl annotate`); the ones the
    /// kubelet sets itself are added when the object is shown.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Cordoned.
    #[serde(default)]
    pub unschedulable: bool,
    /// `InternalIP`.
    pub internal_ip: String,
    /// `ExternalIP`.
    #[serde(default)]
    pub external_ip: Option<String>,
    /// Kubelet version.
    pub kubelet_version: String,
    /// Pod CIDR handed out at registration.
    pub pod_cidr: String,
    /// Bumped by every change of labels, taints or schedulability.
    pub resource_version: u64,
    /// Last heartbeat; not persisted, so a restarted API sees every node stale until it beats.
    #[serde(skip)]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Start of the current run of timely heartbeats.
    #[serde(skip)]
    pub ready_since: Option<DateTime<Utc>>,
}

/// Annotations the kubelet (or k3s) keeps on its node object itself.
const KUBELET_ANNOTATIONS: &[&str] = &[
    "node.alpha.kubernetes.io/ttl",
    "volumes.kubernetes.io/controller-managed-attach-detach",
    "k3s.io/internal-ip",
    "k3s.io/hostname",
];

/// k3s's join secrets (the passwords of the server and agent tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct K3sSecrets {
    /// Password of the server token.
    pub server_password: String,
    /// Password of the agent token.
    pub agent_password: String,
}

/// A kubeadm bootstrap token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapToken {
    /// The public 6-character id.
    pub id: String,
    /// The 16-character secret.
    pub secret: String,
    /// Expiry; `None` never expires (`--ttl 0`).
    pub expires: Option<DateTime<Utc>>,
}

/// An uploaded certificate key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateKey {
    /// 64 hex characters.
    pub key: String,
    /// Expiry.
    pub expires: DateTime<Utc>,
}

/// kubeadm's cluster-wide settings and secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeadmState {
    /// `host:port` nodes use to reach the API.
    pub endpoint: String,
    /// `--control-plane-endpoint`, required for control-plane joins.
    pub control_plane_endpoint: Option<String>,
    /// Kubernetes version of the cluster (kubelets report it).
    pub version: String,
    /// Bootstrap tokens.
    pub tokens: Vec<BootstrapToken>,
    /// The last uploaded certificate key.
    pub certificate_key: Option<CertificateKey>,
}

/// Everything the cluster's datastore holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// k3s or kubeadm.
    pub flavor: Flavor,
    /// The cluster CA certificate (PEM-shaped); joins check its sha256.
    pub ca_pem: String,
    /// Client certificates (base64, as in a kubeconfig) with admin rights.
    pub admin_certs: Vec<String>,
    /// k3s secrets.
    pub k3s: Option<K3sSecrets>,
    /// kubeadm settings.
    pub kubeadm: Option<KubeadmState>,
    /// Registered nodes by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Node passwords (k3s) or kubelet credentials (kubeadm) by node name.
    pub node_passwords: BTreeMap<String, String>,
    /// Last resource version handed out.
    pub resource_version: u64,
    /// Pod subnets handed out so far.
    pub pod_subnets: u32,
    /// Namespaces, ConfigMaps and Leases ([`objects`](super::objects)).
    #[serde(default)]
    pub objects: Objects,
}

/// A k3s join as the joining daemon presents it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct K3sJoin {
    /// `server` or `agent`.
    pub role: K3sRole,
    /// The password part of the token.
    pub password: String,
    /// The node's password (`/etc/rancher/node/password`).
    pub node_password: String,
    /// The node.
    pub node: NodeSpec,
}

/// Role of a joining k3s node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum K3sRole {
    /// Server (embedded etcd member).
    Server,
    /// Agent.
    Agent,
}

/// What a joined k3s server receives to write its own token files and kubeconfig.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct K3sJoined {
    /// Admin client certificate (servers only).
    pub admin_cert: Option<String>,
    /// Agent token password (servers only).
    pub agent_password: Option<String>,
}

/// A kubeadm join's TLS bootstrap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeadmBootstrap {
    /// `id.secret`.
    pub token: String,
    /// Control-plane join.
    pub control_plane: bool,
    /// Certificate key (control-plane joins).
    pub certificate_key: Option<String>,
    /// Node name.
    pub name: String,
    /// The kubelet credential the node will use from now on.
    pub node_password: String,
}

/// What a bootstrapped kubeadm node receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeadmBootstrapped {
    /// Admin client certificate (control-plane joins only).
    pub admin_cert: Option<String>,
    /// Kubernetes version of the cluster.
    pub version: String,
}

/// A kubelet (re-)registering with its credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeletRegister {
    /// The credential from the bootstrap.
    pub node_password: String,
    /// The node.
    pub node: NodeSpec,
}

/// A heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Node name.
    pub name: String,
    /// The node's password or kubelet credential.
    pub node_password: String,
}

/// A new bootstrap token (`kubeadm token create`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    /// `id.secret`.
    pub token: String,
    /// Lifetime in seconds; `None` or 0 never expires.
    pub ttl_seconds: Option<i64>,
}

/// A new certificate key (`kubeadm init phase upload-certs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCertificateKey {
    /// 64 hex characters.
    pub key: String,
}

/// RFC 3339 in whole seconds, as Kubernetes prints times.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `n` random characters from `alphabet`.
pub fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// `n` random hex characters.
pub fn random_hex(n: usize) -> String {
    random_from(b"0123456789abcdef", n)
}

/// A random PEM-shaped blob of the given type; it stands for a certificate or key whose
/// contents nothing reads, only hashes.
pub fn random_pem(kind: &str) -> String {
    let mut bytes = [0u8; 384];
    rand::rng().fill(&mut bytes[..]);
    let body = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut pem = format!("-----BEGIN {kind}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {kind}-----\n"));
    pem
}

/// Base64 as kubeconfigs carry certificates.
pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// The stand-in for a bootstrap token's JWS signature over `cluster-info`: it proves the
/// server knows the token's secret, which is what kubeadm's discovery checks.
pub fn jws_signature(token_id: &str, secret: &str, kubeconfig: &str) -> String {
    sha256_hex(format!("{token_id}.{secret}\n{kubeconfig}").as_bytes())
}

/// The kubeconfig kubeadm publishes in `cluster-info`.
pub fn cluster_info_kubeconfig(ca_pem: &str, endpoint: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://{endpoint}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        b64(ca_pem)
    )
}

/// True for a well-formed bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn is_bootstrap_token(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(token.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

impl ClusterState {
    fn new(flavor: Flavor) -> Self {
        ClusterState {
            flavor,
            ca_pem: random_pem("CERTIFICATE"),
            admin_certs: vec![b64(&random_pem("CERTIFICATE"))],
            k3s: None,
            kubeadm: None,
            nodes: BTreeMap::new(),
            node_passwords: BTreeMap::new(),
            resource_version: 0,
            pod_subnets: 0,
            objects: Objects::default(),
        }
    }

    /// A new k3s cluster with a fresh CA.
    pub fn new_k3s(server_password: String, agent_password: String) -> Self {
        let mut state = Self::new(Flavor::K3s);
        state.k3s = Some(K3sSecrets {
            server_password,
            agent_password,
        });
        state
    }

    /// A new kubeadm cluster with a fresh CA.
    pub fn new_kubeadm(
        endpoint: String,
        control_plane_endpoint: Option<String>,
        version: String,
    ) -> Self {
        let mut state = Self::new(Flavor::Kubeadm);
        state.kubeadm = Some(KubeadmState {
            endpoint,
            control_plane_endpoint,
            version,
            tokens: Vec::new(),
            certificate_key: None,
        });
        state
    }

    /// sha256 of the CA certificate, as tokens and `caCertHashes` carry it.
    pub fn ca_hash(&self) -> String {
        sha256_hex(self.ca_pem.as_bytes())
    }

    /// True when `cert` (base64, from a kubeconfig) is an admin certificate.
    pub fn is_admin(&self, cert: &str) -> bool {
        self.admin_certs.iter().any(|c| c == cert)
    }

    fn bump(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// Binds `name` to `password` on first use; refuses another password later.
    fn check_node_password(&mut self, name: &str, password: &str) -> Result<(), ApiFailure> {
        match self.node_passwords.get(name) {
            Some(known) if known != password => Err(ApiFailure::forbidden(
                "Node password rejected, duplicate hostname or contents of \
                 '/etc/rancher/node/password' may not match server node-passwd entry, try \
                 enabling a unique node name with the --with-node-id flag",
            )),
            Some(_) => Ok(()),
            None => {
                self.node_passwords
                    .insert(name.to_string(), password.to_string());
                Ok(())
            }
        }
    }

    /// Creates the node, or updates a known one: addresses and version always, and labels
    /// too when `relabel` (k3s re-applies `node-label` on every start; a kubelet does not).
    pub fn register(&mut self, spec: NodeSpec, relabel: bool, now: DateTime<Utc>) {
        let rv = self.bump();
        let name = spec.name.clone();
        if let Some(node) = self.nodes.get_mut(&name) {
            node.internal_ip = spec.internal_ip;
            node.external_ip = spec.external_ip;
            node.kubelet_version = spec.kubelet_version;
            if relabel {
                node.labels.extend(spec.labels);
            }
            node.resource_version = rv;
        } else {
            let subnet = self.pod_subnets;
            self.pod_subnets += 1;
            let base = match self.flavor {
                Flavor::K3s => "10.42",
                Flavor::Kubeadm => "10.244",
            };
            self.nodes.insert(
                spec.name.clone(),
                NodeRecord {
                    uid: uuid::Uuid::new_v4().to_string(),
                    name: spec.name,
                    created: now,
                    labels: spec.labels,
                    taints: spec.taints,
                    annotations: BTreeMap::new(),
                    unschedulable: false,
                    internal_ip: spec.internal_ip,
                    external_ip: spec.external_ip,
                    kubelet_version: spec.kubelet_version,
                    pod_cidr: format!("{base}.{subnet}.0/24"),
                    resource_version: rv,
                    last_heartbeat: None,
                    ready_since: None,
                },
            );
        }
        self.beat(&name, now);
    }

    fn beat(&mut self, name: &str, now: DateTime<Utc>) {
        if let Some(node) = self.nodes.get_mut(name) {
            let timely = node.last_heartbeat.is_some_and(|h| now - h < READY_WINDOW);
            if !timely {
                node.ready_since = Some(now);
            }
            node.last_heartbeat = Some(now);
        }
    }

    /// A k3s node joins (or rejoins after a restart) with its token.
    pub fn k3s_join(&mut self, join: K3sJoin, now: DateTime<Utc>) -> Result<K3sJoined, ApiFailure> {
        let secrets = self
            .k3s
            .clone()
            .ok_or_else(|| ApiFailure::bad_request("not a k3s cluster"))?;
        let accepted = match join.role {
            K3sRole::Server => join.password == secrets.server_password,
            K3sRole::Agent => {
                join.password == secrets.agent_password || join.password == secrets.server_password
            }
        };
        if !accepted {
            return Err(ApiFailure::unauthorized());
        }
        self.check_node_password(&join.node.name, &join.node_password)?;
        self.register(join.node, true, now);
        Ok(match join.role {
            K3sRole::Server => K3sJoined {
                admin_cert: self.admin_certs.first().cloned(),
                agent_password: Some(secrets.agent_password),
            },
            K3sRole::Agent => K3sJoined {
                admin_cert: None,
                agent_password: None,
            },
        })
    }

    /// Registers the first server itself (no token: it holds the datastore).
    pub fn register_self(
        &mut self,
        node: NodeSpec,
        node_password: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiFailure> {
        self.check_node_password(&node.name, node_password)?;
        let relabel = self.flavor == Flavor::K3s;
        self.register(node, relabel, now);
        Ok(())
    }

    /// kubeadm's discovery and TLS bootstrap for a joining node.
    pub fn kubeadm_bootstrap(
        &mut self,
        req: KubeadmBootstrap,
        now: DateTime<Utc>,
    ) -> Result<KubeadmBootstrapped, ApiFailure> {
        let kubeadm = self
            .kubeadm
            .clone()
            .ok_or_else(|| ApiFailure::bad_request("not a kubeadm cluster"))?;
        let valid = req.token.split_once('.').is_some_and(|(id, secret)| {
            kubeadm
                .tokens
                .iter()
                .any(|t| t.id == id && t.secret == secret && t.expires.is_none_or(|e| e > now))
        });
        if !valid {
            return Err(ApiFailure::unauthorized());
        }
        if req.control_plane {
            if kubeadm.control_plane_endpoint.is_none() {
                return Err(ApiFailure::bad_request(
                    "unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address",
                ));
            }
            let stored = kubeadm
                .certificate_key
                .as_ref()
                .filter(|k| k.expires > now)
                .ok_or_else(|| {
                    ApiFailure::new(
                        404,
                        "NotFound",
                        "Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one",
                    )
                })?;
            if req.certificate_key.as_deref() != Some(stored.key.as_str()) {
                return Err(ApiFailure::forbidden(
                    "error decoding certificate key: cipher: message authentication failed",
                ));
            }
        }
        if self
            .nodes
            .get(&req.name)
            .is_some_and(|n| n.last_heartbeat.is_some_and(|h| now - h < READY_WINDOW))
        {
            return Err(ApiFailure::new(
                409,
                "AlreadyExists",
                format!(
                    "a Node with name {:?} and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node",
                    req.name
                ),
            ));
        }
        self.node_passwords
            .insert(req.name.clone(), req.node_password.clone());
        Ok(KubeadmBootstrapped {
            admin_cert: if req.control_plane {
                self.admin_certs.first().cloned()
            } else {
                None
            },
            version: kubeadm.version,
        })
    }

    /// A bootstrapped kubelet registers its node (on every start).
    pub fn kubelet_register(
        &mut self,
        req: KubeletRegister,
        now: DateTime<Utc>,
    ) -> Result<(), ApiFailure> {
        if self.node_passwords.get(&req.node.name) != Some(&req.node_password) {
            return Err(ApiFailure::unauthorized());
        }
        self.register(req.node, false, now);
        Ok(())
    }

    /// A node's daemon is alive.
    pub fn heartbeat(&mut self, hb: &Heartbeat, now: DateTime<Utc>) -> Result<(), ApiFailure> {
        if self.node_passwords.get(&hb.name) != Some(&hb.node_password) {
            return Err(ApiFailure::unauthorized());
        }
        if !self.nodes.contains_key(&hb.name) {
            return Err(ApiFailure::node_not_found(&hb.name));
        }
        self.beat(&hb.name, now);
        Ok(())
    }

    /// Records a bootstrap token.
    pub fn add_token(&mut self, new: &NewToken, now: DateTime<Utc>) -> Result<(), ApiFailure> {
        let kubeadm = self
            .kubeadm
            .as_mut()
            .ok_or_else(|| ApiFailure::bad_request("not a kubeadm cluster"))?;
        let Some((id, secret)) = new
            .token
            .split_once('.')
            .filter(|_| is_bootstrap_token(&new.token))
        else {
            return Err(ApiFailure::bad_request("invalid bootstrap token"));
        };
        if kubeadm.tokens.iter().any(|t| t.id == id) {
            return Err(ApiFailure::new(
                409,
                "AlreadyExists",
                format!("secrets \"bootstrap-token-{id}\" already exists"),
            ));
        }
        kubeadm.tokens.retain(|t| t.expires.is_none_or(|e| e > now));
        kubeadm.tokens.push(BootstrapToken {
            id: id.to_string(),
            secret: secret.to_string(),
            expires: new
                .ttl_seconds
                .filter(|s| *s > 0)
                .map(|s| now + chrono::Duration::seconds(s)),
        });
        Ok(())
    }

    /// Records an uploaded certificate key, valid for [`CERTIFICATE_KEY_TTL`].
    pub fn set_certificate_key(
        &mut self,
        new: &NewCertificateKey,
        now: DateTime<Utc>,
    ) -> Result<(), ApiFailure> {
        let kubeadm = self
            .kubeadm
            .as_mut()
            .ok_or_else(|| ApiFailure::bad_request("not a kubeadm cluster"))?;
        kubeadm.certificate_key = Some(CertificateKey {
            key: new.key.clone(),
            expires: now + CERTIFICATE_KEY_TTL,
        });
        Ok(())
    }

    /// kubeadm's `kube-public/cluster-info` ConfigMap, signed by every live token.
    pub fn cluster_info(&self, now: DateTime<Utc>) -> Result<Value, ApiFailure> {
        let kubeadm = self.kubeadm.as_ref().ok_or_else(|| {
            ApiFailure::new(404, "NotFound", "configmaps \"cluster-info\" not found")
        })?;
        let kubeconfig = cluster_info_kubeconfig(&self.ca_pem, &kubeadm.endpoint);
        let mut data = serde_json::Map::new();
        for token in kubeadm
            .tokens
            .iter()
            .filter(|t| t.expires.is_none_or(|e| e > now))
        {
            data.insert(
                format!("jws-kubeconfig-{}", token.id),
                Value::String(jws_signature(&token.id, &token.secret, &kubeconfig)),
            );
        }
        data.insert("kubeconfig".into(), Value::String(kubeconfig));
        Ok(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": data,
        }))
    }

    /// True while the node's last heartbeat is recent.
    pub fn is_ready(node: &NodeRecord, now: DateTime<Utc>) -> bool {
        node.last_heartbeat.is_some_and(|h| now - h < READY_WINDOW)
    }

    /// The node as a Kubernetes `v1` `Node`.
    pub fn node_json(&self, node: &NodeRecord, now: DateTime<Utc>) -> Value {
        let ready = Self::is_ready(node, now);
        let heartbeat = node.last_heartbeat.unwrap_or(node.created);
        let (status, reason, message, since) = if ready {
            (
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                node.ready_since.unwrap_or(heartbeat),
            )
        } else {
            (
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
                heartbeat + READY_WINDOW,
            )
        };
        let pressure = |kind: &str, ok_reason: &str, ok_message: &str| {
            if ready {
                json!({"type": kind, "status": "False", "reason": ok_reason, "message": ok_message,
                       "lastHeartbeatTime": timestamp(heartbeat), "lastTransitionTime": timestamp(node.created)})
            } else {
                json!({"type": kind, "status": "Unknown", "reason": "NodeStatusUnknown",
                       "message": "Kubelet stopped posting node status.",
                       "lastHeartbeatTime": timestamp(heartbeat), "lastTransitionTime": timestamp(since)})
            }
        };
        let mut taints: Vec<Value> = node
            .taints
            .iter()
            .map(|t| {
                let mut v = json!({"key": t.key, "effect": t.effect});
                if let Some(value) = t.value.as_ref().filter(|v| !v.is_empty()) {
                    v["value"] = Value::String(value.clone());
                }
                v
            })
            .collect();
        if node.unschedulable {
            taints.push(
                json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                               "timeAdded": timestamp(now)}),
            );
        }
        if !ready {
            taints.push(
                json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
                               "timeAdded": timestamp(since)}),
            );
            taints.push(
                json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                               "timeAdded": timestamp(since)}),
            );
        }
        let mut addresses = vec![json!({"type": "InternalIP", "address": node.internal_ip})];
        if let Some(ext) = &node.external_ip {
            addresses.push(json!({"type": "ExternalIP", "address": ext}));
        }
        addresses.push(json!({"type": "Hostname", "address": node.name}));
        let mut spec = json!({"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]});
        if self.flavor == Flavor::K3s {
            spec["providerID"] = Value::String(format!("k3s://{}", node.name));
        }
        if !taints.is_empty() {
            spec["taints"] = Value::Array(taints);
        }
        if node.unschedulable {
            spec["unschedulable"] = Value::Bool(true);
        }
        let runtime = match self.flavor {
            Flavor::K3s => "containerd://1.7.23-k3s2",
            Flavor::Kubeadm => "containerd://1.7.24",
        };
        let mut annotations = json!({
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        });
        if self.flavor == Flavor::K3s {
            annotations["k3s.io/internal-ip"] = Value::String(node.internal_ip.clone());
            annotations["k3s.io/hostname"] = Value::String(node.name.clone());
        }
        for (k, v) in &node.annotations {
            annotations[k.as_str()] = Value::String(v.clone());
        }
        let resources = json!({"cpu": "4", "ephemeral-storage": "101430960Ki",
                               "memory": "8131068Ki", "pods": "110"});
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "uid": node.uid,
                "resourceVersion": node.resource_version.to_string(),
                "creationTimestamp": timestamp(node.created),
                "labels": node.labels,
                "annotations": annotations,
            },
            "spec": spec,
            "status": {
                "addresses": addresses,
                "allocatable": resources,
                "capacity": resources,
                "conditions": [
                    pressure("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    {"type": "Ready", "status": status, "reason": reason, "message": message,
                     "lastHeartbeatTime": timestamp(heartbeat), "lastTransitionTime": timestamp(since)},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": node.uid,
                    "containerRuntimeVersion": runtime,
                    "kernelVersion": "6.8.0-51-generic",
                    "kubeProxyVersion": node.kubelet_version,
                    "kubeletVersion": node.kubelet_version,
                    "machineID": node.uid.replace('-', ""),
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 24.04.1 LTS",
                    "systemUUID": node.uid,
                },
            },
        })
    }

    /// All nodes as the API's `NodeList`.
    pub fn node_list_json(&self, now: DateTime<Utc>) -> Value {
        let items: Vec<Value> = self
            .nodes
            .values()
            .map(|n| self.node_json(n, now))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "NodeList",
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": items,
        })
    }

    /// Replaces a node's labels, taints and schedulability from a client's `Node` object;
    /// a stale `metadata.resourceVersion` is a conflict, as with the real API.
    pub fn update_node(
        &mut self,
        name: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiFailure> {
        let current = self
            .nodes
            .get(name)
            .ok_or_else(|| ApiFailure::node_not_found(name))?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
            if rv != current.resource_version.to_string() {
                return Err(ApiFailure::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on nodes {name:?}: the object has been modified; please apply your changes to the latest version and try again"),
                ));
            }
        }
        let invalid =
            |m: String| ApiFailure::new(422, "Invalid", format!("Node {name:?} is invalid: {m}"));
        let mut new_labels = BTreeMap::new();
        if let Some(map) = body["metadata"]["labels"].as_object() {
            for (k, v) in map {
                let v = v.as_str().unwrap_or_default();
                labels::check_key(k)
                    .map_err(|e| invalid(format!("metadata.labels: Invalid value: {k:?}: {e}")))?;
                labels::check_value(v)
                    .map_err(|e| invalid(format!("metadata.labels: Invalid value: {v:?}: {e}")))?;
                new_labels.insert(k.clone(), v.to_string());
            }
        }
        let mut new_annotations = BTreeMap::new();
        if let Some(map) = body["metadata"]["annotations"].as_object() {
            for (k, v) in map {
                labels::check_key(k).map_err(|e| {
                    invalid(format!("metadata.annotations: Invalid value: {k:?}: {e}"))
                })?;
                if KUBELET_ANNOTATIONS.contains(&k.as_str()) {
                    continue;
                }
                new_annotations.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        let mut new_taints = Vec::new();
        for t in body["spec"]["taints"].as_array().into_iter().flatten() {
            let taint: Taint = serde_json::from_value(t.clone())
                .map_err(|e| invalid(format!("spec.taints: {e}")))?;
            if SYSTEM_TAINTS.contains(&taint.key.as_str()) {
                continue;
            }
            if !labels::EFFECTS.contains(&taint.effect.as_str()) {
                return Err(invalid(format!(
                    "spec.taints[].effect: Unsupported value: {:?}",
                    taint.effect
                )));
            }
            new_taints.push(taint);
        }
        let unschedulable = body["spec"]["unschedulable"].as_bool().unwrap_or(false);
        let rv = self.bump();
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| ApiFailure::node_not_found(name))?;
        node.labels = new_labels;
        node.taints = new_taints;
        node.annotations = new_annotations;
        node.unschedulable = unschedulable;
        node.resource_version = rv;
        let node = node.clone();
        Ok(self.node_json(&node, now))
    }

    /// Creates a namespace, ConfigMap or Lease; each write takes the next resource version.
    pub fn create_object(
        &mut self,
        kind: Kind,
        namespace: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiFailure> {
        let rv = self.resource_version + 1;
        let out = self.objects.create(kind, namespace, body, rv, now)?;
        self.bump();
        Ok(out)
    }

    /// Replaces a namespace, ConfigMap or Lease; a stale resource version is a conflict.
    pub fn replace_object(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ApiFailure> {
        let rv = self.resource_version + 1;
        let out = self.objects.replace(kind, namespace, name, body, rv)?;
        self.bump();
        Ok(out)
    }

    /// Deletes a node object and forgets its password, so the node may register afresh.
    pub fn delete_node(&mut self, name: &str, now: DateTime<Utc>) -> Result<Value, ApiFailure> {
        let node = self
            .nodes
            .remove(name)
            .ok_or_else(|| ApiFailure::node_not_found(name))?;
        if self.flavor == Flavor::K3s {
            self.node_passwords.remove(name);
        }
        self.bump();
        Ok(self.node_json(&node, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            internal_ip: "127.0.20.1".into(),
            external_ip: None,
            labels: BTreeMap::from([("pool".to_string(), "a".to_string())]),
            taints: vec![],
            kubelet_version: "v1.31.4+k3s1".into(),
        }
    }

    #[test]
    fn readiness_follows_heartbeats() {
        let mut state = ClusterState::new_k3s("s".into(), "a".into());
        let t0 = Utc::now();
        let joined = state.k3s_join(
            K3sJoin {
                role: K3sRole::Agent,
                password: "a".into(),
                node_password: "p".into(),
                node: spec("n1"),
            },
            t0,
        );
        assert!(joined.is_ok());
        let node = state.nodes["n1"].clone();
        assert!(ClusterState::is_ready(
            &node,
            t0 + chrono::Duration::seconds(4)
        ));
        assert!(!ClusterState::is_ready(
            &node,
            t0 + chrono::Duration::seconds(6)
        ));
        let json = state.node_json(&node, t0 + chrono::Duration::seconds(6));
        assert_eq!(json["status"]["conditions"][3]["status"], "Unknown");
    }

    #[test]
    fn agent_token_does_not_join_a_server() {
        let mut state = ClusterState::new_k3s("s".into(), "a".into());
        let r = state.k3s_join(
            K3sJoin {
                role: K3sRole::Server,
                password: "a".into(),
                node_password: "p".into(),
                node: spec("n1"),
            },
            Utc::now(),
        );
        assert_eq!(r.err().map(|e| e.code), Some(401));
        assert!(state.nodes.is_empty());
    }
}
