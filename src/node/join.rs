//! Joining nodes: bootstrapping a k3s cluster's first server, joining k3s
//! servers and agents, and joining kubeadm workers and control-plane nodes.
//! A join takes credentials (tokens, the control node's session) only
//! after the new node's first boot ended, and never replaces a node object
//! the cluster still lists.

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::{k3s, kubeadm, random_token, refused, NodeConnector, NodeError, SshNodeExecutor};
use crate::cluster::kubectl::Kubectl;
use crate::ids::ClusterName;
use crate::plan::{K3sJoin, KubeadmJoin, KubeadmRole};
use crate::secret::Secret;
use crate::ssh::{RemoteCommand, RemoteExec};

/// Tokens of one k3s cluster, read from its first server.
#[derive(Debug, Clone)]
pub(super) struct K3sTokens {
    server: Secret,
    agent: Secret,
}

impl<C: NodeConnector> SshNodeExecutor<C> {
    pub(super) async fn bootstrap_k3s(
        &self,
        cluster: &ClusterName,
        join: &K3sJoin,
    ) -> Result<String, NodeError> {
        let node = &join.node;
        let public = self.address(node)?;
        let ip = self.traffic_address(node, join.private_network.as_deref())?;
        let exec = self.connect(node).await?;
        self.wait_for_first_boot(&exec).await?;
        let configured = exec
            .run(&RemoteCommand {
                command: format!("sudo test -e {}", k3s::CONFIG_PATH),
                stdin: None,
                timeout: self.settings.command_timeout,
            })
            .await?
            .success();
        let what = if configured {
            // A rerun after a crash: never choose new tokens for a cluster
            // that may already exist; make sure k3s runs and read them back.
            self.run(
                &exec,
                "sudo systemctl start k3s",
                self.settings.command_timeout,
                &[],
            )
            .await?;
            "was already initialised; k3s is running"
        } else {
            let token = random_token();
            let agent_token = random_token();
            let config = k3s::render_config(&k3s::NodeConfig {
                node_name: &node.0,
                node_ip: &ip,
                external_ip: join.private_network.is_some().then_some(public.as_str()),
                role: k3s::Role::FirstServer {
                    token: token.clone(),
                    agent_token: agent_token.clone(),
                },
                labels: &join.labels,
                taints: &join.taints,
                flannel_backend: join.flannel_backend,
            })
            .map_err(|what| refused(&node.0, what))?;
            self.upload(&exec, k3s::CONFIG_PATH, &config).await?;
            self.install_k3s(&exec, &join.version, "server", &[&token, &agent_token])
                .await?;
            "initialised the cluster (embedded etcd)"
        };
        self.wait_ready(Kubectl::K3s, &exec, node, "k3s").await?;
        self.record_joined_labels(Kubectl::K3s, &exec, node, &join.labels)
            .await?;
        let tokens = self.read_tokens(&exec).await?;
        if let Ok(mut known) = self.tokens.lock() {
            known.insert(cluster.clone(), Arc::new(OnceCell::new_with(Some(tokens))));
        }
        Ok(format!("{node} {what}; it is Ready"))
    }

    async fn read_tokens(&self, server: &C::Exec) -> Result<K3sTokens, NodeError> {
        let server_token = self.read_secret(server, k3s::SERVER_TOKEN_PATH).await?;
        let agent = self.read_secret(server, k3s::AGENT_TOKEN_PATH).await?;
        for (token, path) in [
            (&server_token, k3s::SERVER_TOKEN_PATH),
            (&agent, k3s::AGENT_TOKEN_PATH),
        ] {
            k3s::check_secure_token(token, path).map_err(|what| NodeError::Protocol {
                node: server.node().to_string(),
                what,
            })?;
        }
        Ok(K3sTokens {
            server: server_token,
            agent,
        })
    }

    async fn tokens_of(
        &self,
        cluster: &ClusterName,
        via: &C::Exec,
    ) -> Result<K3sTokens, NodeError> {
        let cell = match self.tokens.lock() {
            Ok(mut tokens) => Arc::clone(tokens.entry(cluster.clone()).or_default()),
            Err(_) => Arc::new(OnceCell::new()),
        };
        cell.get_or_try_init(|| self.read_tokens(via))
            .await
            .cloned()
    }

    pub(super) async fn join_k3s(
        &self,
        cluster: &ClusterName,
        join: &K3sJoin,
        as_server: bool,
    ) -> Result<String, NodeError> {
        let node = &join.node;
        let via_name = join.via.clone().ok_or_else(|| NodeError::Protocol {
            node: node.to_string(),
            what: "a join needs a server to join through".into(),
        })?;
        // The new node first: its first boot may take long, and nothing
        // that can expire (the server's session, idle for minutes) is held
        // across it.
        let network = join.private_network.as_deref();
        let public = self.address(node)?;
        let ip = self.traffic_address(node, network)?;
        let exec = self.connect(node).await?;
        self.wait_for_first_boot(&exec).await?;
        let via_ip = self.traffic_address(&via_name, network)?;
        let via = self.connect(&via_name).await?;
        let tokens = self.tokens_of(cluster, &via).await?;
        let server_url = format!("https://{via_ip}:6443");
        let (role, token, unit) = if as_server {
            let t = tokens.server.clone();
            (
                k3s::Role::Server {
                    server_url,
                    token: t.clone(),
                },
                t,
                "k3s",
            )
        } else {
            let t = tokens.agent.clone();
            (
                k3s::Role::Agent {
                    server_url,
                    token: t.clone(),
                },
                t,
                "k3s-agent",
            )
        };
        let exec_kind = role.exec();
        let config = k3s::render_config(&k3s::NodeConfig {
            node_name: &node.0,
            node_ip: &ip,
            external_ip: network.is_some().then_some(public.as_str()),
            role,
            labels: &join.labels,
            taints: &join.taints,
            flannel_backend: join.flannel_backend,
        })
        .map_err(|what| refused(&node.0, what))?;
        self.refuse_listed_node(Kubectl::K3s, &via, node).await?;
        self.upload(&exec, k3s::CONFIG_PATH, &config).await?;
        self.install_k3s(&exec, &join.version, exec_kind, &[&token])
            .await?;
        self.wait_ready(Kubectl::K3s, &via, node, unit).await?;
        self.record_joined_labels(Kubectl::K3s, &via, node, &join.labels)
            .await?;
        Ok(format!(
            "{node} joined as k3s {exec_kind} through {via_name}; it is Ready"
        ))
    }

    async fn install_k3s(
        &self,
        exec: &C::Exec,
        version: &str,
        role: &str,
        secrets: &[&Secret],
    ) -> Result<(), NodeError> {
        // The install script puts the version into download URLs: only a
        // release name of the grammar `validate` holds the inventory to.
        let version: crate::inventory::K3sVersion =
            version.parse().map_err(|what| refused(exec.node(), what))?;
        let command = format!(
            "sudo env INSTALL_K3S_VERSION={} INSTALL_K3S_EXEC={role} sh {}",
            crate::ssh::shell_quote(version.as_str()),
            k3s::INSTALL_SCRIPT
        );
        self.run(exec, &command, self.settings.install_timeout, secrets)
            .await
            .map(drop)
    }

    pub(super) async fn kubeadm_join(&self, join: &KubeadmJoin) -> Result<String, NodeError> {
        let node = &join.node;
        let via_name = &join.via;
        // The new node first: a first boot installs packages and may take
        // longer than the token's 15 minutes or the control node's idle
        // session; both are taken only once it is done.
        let ip = self.address(node)?;
        let exec = self.connect(node).await?;
        self.wait_for_first_boot(&exec).await?;
        let via = self.connect(via_name).await?;
        let printed = self
            .run(
                &via,
                kubeadm::CREATE_TOKEN,
                self.settings.command_timeout,
                &[],
            )
            .await?;
        let creds = kubeadm::parse_join_command(&Secret::new(printed.stdout)).map_err(|what| {
            NodeError::Protocol {
                node: via_name.to_string(),
                what,
            }
        })?;
        let certificate_key = match join.role {
            KubeadmRole::Worker => None,
            KubeadmRole::ControlPlane => {
                let out = self
                    .run(
                        &via,
                        kubeadm::UPLOAD_CERTS,
                        self.settings.command_timeout,
                        &[],
                    )
                    .await?;
                Some(
                    kubeadm::parse_certificate_key(&Secret::new(out.stdout)).map_err(|what| {
                        NodeError::Protocol {
                            node: via_name.to_string(),
                            what,
                        }
                    })?,
                )
            }
        };
        let config = kubeadm::render_join_configuration(
            &kubeadm::JoinSpec {
                node_name: &node.0,
                node_ip: &ip,
                api_endpoint: &join.api_endpoint,
                labels: &join.labels,
                taints: &join.taints,
                certificate_key: certificate_key.as_ref(),
            },
            &creds,
        )
        .map_err(|what| refused(&node.0, what))?;
        self.refuse_listed_node(Kubectl::Kubeadm, &via, node)
            .await?;
        self.upload(&exec, kubeadm::JOIN_CONFIG_PATH, &config)
            .await?;
        let mut secrets = vec![&creds.token];
        if let Some(key) = &certificate_key {
            secrets.push(key);
        }
        let joined = self
            .run(
                &exec,
                &format!("sudo kubeadm join --config {}", kubeadm::JOIN_CONFIG_PATH),
                self.settings.install_timeout,
                &secrets,
            )
            .await;
        // The file holds the token: remove it whatever the join did.
        let cleanup = self
            .run(
                &exec,
                &format!("sudo rm -f {}", kubeadm::JOIN_CONFIG_PATH),
                self.settings.command_timeout,
                &[],
            )
            .await;
        joined?;
        cleanup?;
        self.wait_ready(Kubectl::Kubeadm, &via, node, "kubelet")
            .await?;
        self.record_joined_labels(Kubectl::Kubeadm, &via, node, &join.labels)
            .await?;
        let role = match join.role {
            KubeadmRole::Worker => "worker",
            KubeadmRole::ControlPlane => "control-plane node",
        };
        Ok(format!(
            "{node} joined the cluster as {role} through {via_name}; it is Ready"
        ))
    }
}
