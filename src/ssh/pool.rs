//! The session pool: one SSH connection per node for a whole run, opened by
//! whichever task needs the node first, replaced when the node is
//! reinstalled or moves to a new address, and closed — replaced ones
//! included — at the end, so that no SSH master outlives the command.
//!
//! Nodes are reached through a [`NodeConnector`] (OpenSSH in production,
//! fakes in unit tests). The pool knows nothing of clusters or steps: the
//! cluster reads (`crate::cluster`) and the node steps (`crate::node`) are
//! built on it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{RemoteExec, SshError};
use crate::plan::NodeName;

/// Opens a [`RemoteExec`] to a node.
pub trait NodeConnector: Send + Sync {
    /// The connection type.
    type Exec: RemoteExec;

    /// Connects to `node` at `address`, checking its pinned host key.
    fn connect(
        &self,
        node: &str,
        address: &str,
    ) -> impl Future<Output = Result<Self::Exec, SshError>> + Send;

    /// Waits until a node that was just started answers with its pinned
    /// key and has finished its first boot, retrying until `deadline`.
    fn wait_ready(
        &self,
        node: &str,
        address: &str,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<(), SshError>> + Send;
}

/// Why the pool could not hand out a session.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The node could not be reached or refused us.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// No address is known for the node.
    #[error("no IPv4 address is known for {node}; is its instance running?")]
    NoAddress {
        /// Node.
        node: NodeName,
    },
    /// A task panicked while holding the pool's table (a bug).
    #[error("{node}: the connection table is poisoned")]
    Poisoned {
        /// Node.
        node: NodeName,
    },
}

/// A value made once by whichever task needs it first; the others wait
/// for it (and a failed attempt leaves it to the next).
pub(crate) type Shared<T> = Arc<OnceCell<T>>;

/// One connection per node for the whole run.
pub struct SessionPool<C: NodeConnector> {
    connector: C,
    /// Known IPv4 addresses by node (text, as the connector takes them).
    addresses: Mutex<BTreeMap<NodeName, String>>,
    /// Each node has its own cell, so connecting to one node never waits
    /// for another's handshake (OpenSSH multiplexes every command over it).
    connections: Mutex<BTreeMap<NodeName, Shared<Arc<C::Exec>>>>,
    /// Nodes whose kept connection must not be used again (reinstalled).
    stale: Mutex<BTreeSet<NodeName>>,
    /// Connections replaced during the run (a reinstalled node, a new
    /// address): no longer used, but still closed by [`Self::close`].
    retired: Mutex<Vec<Shared<Arc<C::Exec>>>>,
}

impl<C: NodeConnector> std::fmt::Debug for SessionPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

impl<C: NodeConnector> SessionPool<C> {
    /// A pool reaching nodes through `connector`; `addresses` maps node
    /// names to the IPv4 addresses known so far.
    pub fn new(connector: C, addresses: BTreeMap<NodeName, String>) -> Self {
        Self {
            connector,
            addresses: Mutex::new(addresses),
            connections: Mutex::new(BTreeMap::new()),
            stale: Mutex::new(BTreeSet::new()),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The connector (for waits that must not keep a session).
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// The address known for `node`.
    pub fn address(&self, node: &NodeName) -> Result<String, PoolError> {
        self.addresses
            .lock()
            .ok()
            .and_then(|a| a.get(node).cloned())
            .ok_or_else(|| PoolError::NoAddress { node: node.clone() })
    }

    /// Every node with a known address.
    pub fn known_nodes(&self) -> Vec<NodeName> {
        self.addresses
            .lock()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The session to `node`, opened on first use.
    pub async fn connect(&self, node: &NodeName) -> Result<Arc<C::Exec>, PoolError> {
        let cell = {
            let mut connections = self
                .connections
                .lock()
                .map_err(|_| PoolError::Poisoned { node: node.clone() })?;
            if self.stale.lock().is_ok_and(|mut s| s.remove(node)) {
                self.retire(connections.remove(node));
            }
            Arc::clone(connections.entry(node.clone()).or_default())
        };
        let address = self.address(node)?;
        cell.get_or_try_init(|| async {
            Ok::<_, PoolError>(Arc::new(self.connector.connect(&node.0, &address).await?))
        })
        .await
        .cloned()
    }

    /// Marks `node`'s session stale (the node was reinstalled: new OS, new
    /// host key): the next [`Self::connect`] opens a new one.
    pub fn forget(&self, node: &NodeName) {
        if let Ok(mut stale) = self.stale.lock() {
            stale.insert(node.clone());
        }
    }

    /// Records `node`'s address; a session to an older address is retired.
    pub fn learn_address(&self, node: &NodeName, ip: std::net::Ipv4Addr) {
        let ip = ip.to_string();
        if let Ok(mut a) = self.addresses.lock() {
            let changed = a.insert(node.clone(), ip.clone()).as_deref() != Some(ip.as_str());
            if changed {
                // A connection to the old address is of no use any more.
                if let Ok(mut connections) = self.connections.lock() {
                    self.retire(connections.remove(node));
                }
            }
        }
    }

    /// Closes every session this pool opened (at the end of a run),
    /// replaced ones included.
    pub async fn close(&self) {
        let mut cells: Vec<Shared<Arc<C::Exec>>> = self
            .connections
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
            .into_values()
            .collect();
        if let Ok(mut retired) = self.retired.lock() {
            cells.append(&mut retired);
        }
        let open: Vec<Arc<C::Exec>> = cells
            .into_iter()
            .filter_map(|cell| cell.get().cloned())
            .collect();
        futures::future::join_all(open.iter().map(|exec| exec.close())).await;
    }

    /// Keeps a connection that is replaced, to be closed at the end.
    fn retire(&self, cell: Option<Shared<Arc<C::Exec>>>) {
        if let (Some(cell), Ok(mut retired)) = (cell, self.retired.lock()) {
            retired.push(cell);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ssh::FakeRemote;
    use std::time::Duration;

    /// Connects only when two connections are in progress at once.
    struct TwoAtOnce(tokio::sync::Barrier);

    impl NodeConnector for TwoAtOnce {
        type Exec = FakeRemote;

        async fn connect(&self, node: &str, _address: &str) -> Result<Self::Exec, SshError> {
            self.0.wait().await;
            Ok(FakeRemote::new(node))
        }

        async fn wait_ready(
            &self,
            _node: &str,
            _address: &str,
            _deadline: tokio::time::Instant,
        ) -> Result<(), SshError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn connecting_to_one_node_does_not_wait_for_another() {
        // With 180 new nodes, one slow handshake at a time would put them
        // all in a queue; each node has its own connection cell instead.
        let (node_a, node_b) = (NodeName("a".into()), NodeName("b".into()));
        let addresses = BTreeMap::from([
            (node_a.clone(), "127.0.0.2".to_string()),
            (node_b.clone(), "127.0.0.3".to_string()),
        ]);
        let nodes = SessionPool::new(TwoAtOnce(tokio::sync::Barrier::new(2)), addresses);
        let both = futures::future::join(nodes.connect(&node_a), nodes.connect(&node_b));
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("the second connection waited for the first");
        assert_eq!(a.unwrap().node(), "a");
        assert_eq!(b.unwrap().node(), "b");
        // A kept connection is reused, not opened again (the barrier would
        // block a third connect).
        let again = tokio::time::timeout(Duration::from_secs(1), nodes.connect(&node_a)).await;
        assert!(again.is_ok_and(|r| r.is_ok()));
    }
}
