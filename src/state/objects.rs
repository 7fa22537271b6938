//! The seam to the Core cluster's objects: read one, create one atomically,
//! replace one only if nobody wrote it since it was read. That is the whole
//! protocol the lock and the journal need, and the whole of what the
//! Kubernetes API guarantees them.
//!
//! [`KubectlObjects`] runs `kubectl` on a control-plane node over SSH (the
//! way kiwi-infra already reaches the Core cluster, with pinned host keys),
//! as root with the node's admin kubeconfig. Manifests travel on stdin and
//! are never put in a command line; the commands themselves hold only
//! constant names. kubectl answers every refusal with exit status 1, so the
//! kind of refusal is read from its `Error from server (REASON)` text.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{StateError, NAMESPACE};
use crate::secret::Secret;
use crate::ssh::{RemoteCommand, RemoteExec};

/// The kinds of object kiwi-infra keeps in its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// The namespace itself.
    Namespace,
    /// The order journal.
    ConfigMap,
    /// The apply lock.
    Lease,
}

impl ObjectKind {
    /// The resource name kubectl takes.
    pub fn resource(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "namespace",
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Lease => "lease",
        }
    }

    /// `Kind namespace/name`, for messages.
    pub fn describe(self, name: &str) -> String {
        match self {
            ObjectKind::Namespace => format!("Namespace {name}"),
            ObjectKind::ConfigMap => format!("ConfigMap {NAMESPACE}/{name}"),
            ObjectKind::Lease => format!("Lease {NAMESPACE}/{name}"),
        }
    }
}

/// An object as the API last returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `metadata.resourceVersion`: what a compare-and-swap compares.
    pub resource_version: String,
    /// The whole object.
    pub value: Value,
}

impl Object {
    /// Reads an API answer: a JSON object with a non-empty
    /// `metadata.resourceVersion`.
    pub fn parse(kind: ObjectKind, name: &str, text: &str) -> Result<Object, StateError> {
        let malformed = |what: String| StateError::Malformed {
            object: kind.describe(name),
            what,
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("kubectl printed no JSON object ({e})")))?;
        let resource_version = value["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty() && rv.len() <= 64)
            .ok_or_else(|| malformed("it has no metadata.resourceVersion".into()))?
            .to_string();
        Ok(Object {
            resource_version,
            value,
        })
    }
}

/// What a write came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Written; the object as stored, with its new resource version.
    Done(Object),
    /// A create found the object there already.
    AlreadyExists,
    /// A replace carried a resource version that is no longer current:
    /// someone wrote in between.
    Conflict,
    /// A replace found no object (or a create found no namespace).
    NotFound,
}

/// Reads and writes objects in kiwi-infra's namespace of the Core cluster.
/// Implementations: kubectl over SSH, and an in-memory fake for tests.
pub trait KubeObjects: Send + Sync + 'static {
    /// The object, `None` when there is none.
    fn get(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> impl Future<Output = Result<Option<Object>, StateError>> + Send;

    /// Creates `manifest`, atomically: [`Written::AlreadyExists`] when an
    /// object of that name exists.
    fn create(
        &self,
        kind: ObjectKind,
        manifest: &Value,
    ) -> impl Future<Output = Result<Written, StateError>> + Send;

    /// Replaces the object with `manifest`, whose `metadata.resourceVersion`
    /// must be the current one ([`Written::Conflict`] otherwise).
    fn replace(
        &self,
        kind: ObjectKind,
        manifest: &Value,
    ) -> impl Future<Output = Result<Written, StateError>> + Send;

    /// Where the objects are reached, for messages (`kubectl on NODE`).
    fn location(&self) -> String;
}

impl<T: KubeObjects> KubeObjects for Arc<T> {
    fn get(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> impl Future<Output = Result<Option<Object>, StateError>> + Send {
        (**self).get(kind, name)
    }
    fn create(
        &self,
        kind: ObjectKind,
        manifest: &Value,
    ) -> impl Future<Output = Result<Written, StateError>> + Send {
        (**self).create(kind, manifest)
    }
    fn replace(
        &self,
        kind: ObjectKind,
        manifest: &Value,
    ) -> impl Future<Output = Result<Written, StateError>> + Send {
        (**self).replace(kind, manifest)
    }
    fn location(&self) -> String {
        (**self).location()
    }
}

/// How kubectl runs on a Core control-plane node (kubeadm's admin
/// kubeconfig, as root).
const KUBECTL: &str = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// Time limit of one kubectl call.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);

/// How kubectl is reached: on a Core control-plane node over SSH (the
/// default), or on this machine with the operator's own kubeconfig
/// (`[state] access = "kubeconfig"`).
#[derive(Debug)]
enum Runner<E> {
    Ssh(E),
    Local(LocalKubectl),
}

/// `kubectl` on this machine, with the operator's kubeconfig (kubectl's
/// own choice: `KUBECONFIG`, else `~/.kube/config`) and, if the inventory
/// names one, its context. Arguments are passed as a vector, never
/// through a shell.
#[derive(Debug, Clone)]
pub struct LocalKubectl {
    /// `--context`; checked by the inventory (letters, digits, `.-_@:`).
    pub context: Option<String>,
}

/// [`KubeObjects`] through `kubectl`.
#[derive(Debug)]
pub struct KubectlObjects<E> {
    runner: Runner<E>,
}

/// The refusal kubectl reported, read from its stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotFound,
    AlreadyExists,
    Conflict,
}

fn refusal(stderr: &str) -> Option<Refusal> {
    // kubectl prints `Error from server (Reason): …` for an API refusal.
    let reason = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Error from server ("))
        .and_then(|rest| rest.split_once(')'))
        .map(|(reason, _)| reason)?;
    match reason {
        "NotFound" => Some(Refusal::NotFound),
        "AlreadyExists" => Some(Refusal::AlreadyExists),
        "Conflict" => Some(Refusal::Conflict),
        _ => None,
    }
}

impl<E: RemoteExec + 'static> KubectlObjects<E> {
    /// kubectl on the control node `exec` reaches.
    pub fn new(exec: E) -> Self {
        KubectlObjects {
            runner: Runner::Ssh(exec),
        }
    }

    /// kubectl on this machine, with the operator's kubeconfig.
    pub fn local(kubectl: LocalKubectl) -> Self {
        KubectlObjects {
            runner: Runner::Local(kubectl),
        }
    }

    /// The SSH connection, to close it at the end of the run.
    pub fn exec(&self) -> Option<&E> {
        match &self.runner {
            Runner::Ssh(exec) => Some(exec),
            Runner::Local(_) => None,
        }
    }

    /// Ends the SSH connection, if there is one.
    pub async fn close(&self) {
        if let Runner::Ssh(exec) = &self.runner {
            exec.close().await;
        }
    }

    fn node(&self) -> String {
        match &self.runner {
            Runner::Ssh(exec) => exec.node().to_string(),
            Runner::Local(_) => "this machine".into(),
        }
    }

    /// Runs kubectl in kiwi-infra's namespace with `args` (plain words:
    /// constant verbs and names), `stdin` fed to it.
    async fn kubectl(
        &self,
        args: &[&str],
        stdin: Option<&Value>,
    ) -> Result<(crate::ssh::Output, String), StateError> {
        let stdin = stdin.map(|v| v.to_string().into_bytes());
        match &self.runner {
            Runner::Ssh(exec) => {
                let words: Vec<String> = args.iter().map(|a| crate::ssh::shell_quote(a)).collect();
                let command = format!("{KUBECTL} --namespace {NAMESPACE} {}", words.join(" "));
                let output = exec
                    .run(&RemoteCommand {
                        command: command.clone(),
                        // A manifest holds no secret (module docs): not registered.
                        stdin: stdin.map(Secret::not_secret),
                        timeout: KUBECTL_TIMEOUT,
                    })
                    .await
                    .map_err(|source| StateError::Ssh {
                        node: exec.node().to_string(),
                        source,
                    })?;
                Ok((output, command))
            }
            Runner::Local(local) => local.run(args, stdin).await,
        }
    }

    fn failed(&self, command: String, output: &crate::ssh::Output) -> StateError {
        let stderr = crate::secret::redact::redact(output.stderr.trim());
        StateError::Kubectl {
            node: self.node(),
            command,
            status: output.status,
            stderr: stderr.chars().take(2000).collect(),
        }
    }

    async fn write(
        &self,
        verb: &str,
        kind: ObjectKind,
        manifest: &Value,
    ) -> Result<Written, StateError> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        let (output, command) = self
            .kubectl(&[verb, "-f", "-", "-o", "json"], Some(manifest))
            .await?;
        if output.success() {
            return Object::parse(kind, name, &output.stdout).map(Written::Done);
        }
        match refusal(&output.stderr) {
            Some(Refusal::AlreadyExists) => Ok(Written::AlreadyExists),
            Some(Refusal::Conflict) => Ok(Written::Conflict),
            Some(Refusal::NotFound) => Ok(Written::NotFound),
            None => Err(self.failed(command, &output)),
        }
    }
}

impl<E: RemoteExec + 'static> KubeObjects for KubectlObjects<E> {
    async fn get(&self, kind: ObjectKind, name: &str) -> Result<Option<Object>, StateError> {
        let (output, command) = self
            .kubectl(&["get", kind.resource(), name, "-o", "json"], None)
            .await?;
        if output.success() {
            return Object::parse(kind, name, &output.stdout).map(Some);
        }
        match refusal(&output.stderr) {
            Some(Refusal::NotFound) => Ok(None),
            _ => Err(self.failed(command, &output)),
        }
    }

    async fn create(&self, kind: ObjectKind, manifest: &Value) -> Result<Written, StateError> {
        self.write("create", kind, manifest).await
    }

    async fn replace(&self, kind: ObjectKind, manifest: &Value) -> Result<Written, StateError> {
        self.write("replace", kind, manifest).await
    }

    fn location(&self) -> String {
        match &self.runner {
            Runner::Ssh(exec) => format!("kubectl on {}", exec.node()),
            Runner::Local(_) => "kubectl with the operator's kubeconfig".into(),
        }
    }
}

impl LocalKubectl {
    /// Runs `kubectl [--context C] --namespace kiwi-infra ARGS`, feeding
    /// `stdin`, killed after the time limit.
    async fn run(
        &self,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<(crate::ssh::Output, String), StateError> {
        use tokio::io::AsyncWriteExt;
        let mut words: Vec<&str> = Vec::new();
        if let Some(context) = &self.context {
            words.extend(["--context", context.as_str()]);
        }
        words.extend(["--namespace", NAMESPACE]);
        words.extend(args);
        let command = format!("kubectl {}", words.join(" "));
        let failed = |source: std::io::Error| StateError::LocalKubectl {
            command: command.clone(),
            source,
        };
        let mut child = tokio::process::Command::new("kubectl")
            .args(&words)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(failed)?;
        let mut pipe = child.stdin.take();
        let feed = async {
            if let (Some(pipe), Some(bytes)) = (pipe.as_mut(), stdin.as_ref()) {
                pipe.write_all(bytes).await?;
            }
            drop(pipe.take());
            Ok::<(), std::io::Error>(())
        };
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, async {
            feed.await?;
            child.wait_with_output().await
        })
        .await
        .map_err(|_| {
            failed(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}s", KUBECTL_TIMEOUT.as_secs()),
            ))
        })?
        .map_err(failed)?;
        Ok((
            crate::ssh::Output {
                status: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            command,
        ))
    }
}

/// Creates kiwi-infra's namespace unless it exists.
pub async fn ensure_namespace<S: KubeObjects>(store: &S) -> Result<(), StateError> {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "kiwi-infra"},
        },
    });
    match store.create(ObjectKind::Namespace, &manifest).await? {
        Written::Done(_) | Written::AlreadyExists => Ok(()),
        Written::Conflict | Written::NotFound => Err(StateError::Malformed {
            object: ObjectKind::Namespace.describe(NAMESPACE),
            what: "creating it was refused; expected it to be created or to exist".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_refusals_are_read_from_its_error_text() {
        assert_eq!(
            refusal(
                "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot \
                 be fulfilled on leases.coordination.k8s.io \"kiwi-infra-apply\": the object has \
                 been modified; please apply your changes to the latest version and try again"
            ),
            Some(Refusal::Conflict)
        );
        assert_eq!(
            refusal(
                "Error from server (AlreadyExists): error when creating \"STDIN\": \
                 leases.coordination.k8s.io \"kiwi-infra-apply\" already exists"
            ),
            Some(Refusal::AlreadyExists)
        );
        assert_eq!(
            refusal("Error from server (NotFound): configmaps \"kiwi-infra-orders\" not found"),
            Some(Refusal::NotFound)
        );
        assert_eq!(
            refusal("Error from server (Forbidden): leases is forbidden"),
            None
        );
        assert_eq!(
            refusal("The connection to the server localhost:8080 was refused"),
            None
        );
    }

    #[test]
    fn an_answer_without_a_resource_version_is_refused() {
        assert!(Object::parse(ObjectKind::Lease, "x", "{\"metadata\":{}}").is_err());
        assert!(Object::parse(ObjectKind::Lease, "x", "not json").is_err());
        let o = Object::parse(
            ObjectKind::Lease,
            "x",
            "{\"metadata\":{\"resourceVersion\":\"7\"}}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.resource_version, "7");
    }
}
