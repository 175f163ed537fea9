//! [`NodeRing`]: a cluster's cache ring over its nodes, as this node sees it. A key
//! belongs to one node, chosen by the consistent-hash [`Ring`] over the live nodes that
//! run the cache (each at [`DEFAULT_VNODES`] points, by its name); on that node, the
//! local ring of [`crate::Cache`] chooses the shard. The node that runs a cluster
//! follows its membership and calls [`NodeRing::set`]; the Redis port reads
//! [`NodeRing::view`] and forwards a command whose key another node owns
//! (`resp::forward`).
//!
//! The amnesia rule: at every change of the ring, this node keeps only the keys it
//! owned before the change and still owns after it. Keys of the ranges it gains are
//! dropped (it may hold them from an earlier time it owned them, older than what their
//! owner since wrote, or than the store), and so are keys of ranges it loses (no node
//! forwards to it for them any more). A node that does not see itself among the live
//! nodes (starting, or cut off from the cluster) is *outside* the ring: it serves every
//! key itself, as a single node would, and forgets everything both when it leaves the
//! ring and when it comes back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::cache::Cache;
use crate::ring::{Ring, DEFAULT_VNODES};

/// The cache ring over a cluster's nodes, updated as nodes come and go.
pub struct NodeRing {
    me: Arc<str>,
    view: RwLock<Arc<RingView>>,
    /// Bumped at every change, so a reader can tell its view is old without a lock.
    epoch: AtomicU64,
    /// The password of the peers' Redis ports: this node's own (set by its Redis
    /// server; every node of a cluster runs the app with the same one).
    password: OnceLock<Option<String>>,
}

impl std::fmt::Debug for NodeRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRing")
            .field("me", &self.me)
            .field("view", &self.view())
            .finish()
    }
}

/// The ring at one moment.
#[derive(Debug)]
pub struct RingView {
    ring: Ring<Arc<str>>,
    /// Each ring node's Redis port, by its index in the ring.
    addrs: Vec<SocketAddr>,
    /// This node's index in the ring; None: outside it (it serves every key itself).
    me: Option<usize>,
    epoch: u64,
}

/// Who serves a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This node.
    Here,
    /// The ring node of this index ([`RingView::node`]).
    Peer(usize),
}

/// One node of the ring, for stats.
#[derive(Debug, Clone, PartialEq)]
pub struct RingNode {
    pub name: String,
    pub addr: SocketAddr,
    /// Its share of the key space, 0 to 1.
    pub share: f64,
}

impl RingView {
    fn outside() -> RingView {
        RingView {
            ring: Ring::new(DEFAULT_VNODES),
            addrs: Vec::new(),
            me: None,
            epoch: 0,
        }
    }

    /// Who serves `key`.
    pub fn owner(&self, key: &[u8]) -> Owner {
        let Some(me) = self.me else {
            return Owner::Here;
        };
        if self.ring.len() == 1 {
            return Owner::Here;
        }
        match self.ring.owner_index(key) {
            Some(i) if i != me => Owner::Peer(i),
            _ => Owner::Here,
        }
    }

    /// Whether every key is served here (outside the ring, or alone on it): then
    /// nothing is forwarded and no key's owner need be computed.
    pub fn is_solo(&self) -> bool {
        self.me.is_none() || self.ring.len() <= 1
    }

    /// Whether this node is on the ring (it sees itself among the live nodes).
    pub fn is_member(&self) -> bool {
        self.me.is_some()
    }

    /// The name and Redis port of ring node `i`.
    pub fn node(&self, i: usize) -> (&Arc<str>, SocketAddr) {
        (&self.ring.nodes()[i], self.addrs[i])
    }

    /// Whether `addr` is the Redis port of a node on the ring.
    pub fn has_addr(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&addr)
    }

    /// Every node of the ring with its share of the keys, by name.
    pub fn nodes(&self) -> Vec<RingNode> {
        let shares = self.ring.shares();
        let mut nodes: Vec<RingNode> = self
            .ring
            .nodes()
            .iter()
            .zip(&self.addrs)
            .zip(shares)
            .map(|((name, addr), share)| RingNode {
                name: name.to_string(),
                addr: *addr,
                share,
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }

    /// Changes with every new view.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether this view owns `key` here as a ring member (outside the ring owns nothing).
    fn member_owns(&self, key: &[u8]) -> bool {
        self.me.is_some() && self.owner(key) == Owner::Here
    }
}

impl NodeRing {
    /// The ring of node `me`, which starts outside it (serving every key itself) until
    /// [`NodeRing::set`] names it among the nodes.
    pub fn new(me: &str) -> Arc<NodeRing> {
        Arc::new(NodeRing {
            me: me.into(),
            view: RwLock::new(Arc::new(RingView::outside())),
            epoch: AtomicU64::new(0),
            password: OnceLock::new(),
        })
    }

    /// Sets the peers' password (the first call wins: one Redis server per ring).
    pub(crate) fn set_password(&self, password: Option<&str>) {
        let _ = self.password.set(password.map(str::to_string));
    }

    /// What opens a connection to a peer's Redis port (HELLO, the password, the name
    /// that marks it a peer's), in RESP3 or RESP2.
    pub(crate) fn hello(&self, resp3: bool) -> Vec<u8> {
        let password = self.password.get().cloned().flatten();
        crate::resp::hello_command(resp3, password.as_deref().map(str::as_bytes), &self.me)
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The ring as it is now.
    pub fn view(&self) -> Arc<RingView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bumped at every change (a cheap check before taking [`NodeRing::view`] again).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Sets the live nodes that run this cache (name -> Redis port), as seen here, and
    /// applies the amnesia rule to `cache`. Returns `None` when nothing changed, else
    /// how many keys were dropped.
    pub fn set(&self, nodes: &BTreeMap<String, SocketAddr>, cache: &Cache) -> Option<usize> {
        let old = self.view();
        let same = old.ring.len() == nodes.len()
            && nodes.iter().all(|(name, addr)| {
                old.ring
                    .nodes()
                    .iter()
                    .position(|n| **n == **name)
                    .is_some_and(|i| old.addrs[i] == *addr)
            });
        if same {
            return None;
        }
        let mut ring = Ring::new(DEFAULT_VNODES);
        let mut addrs = Vec::with_capacity(nodes.len());
        for (name, addr) in nodes {
            ring.add(Arc::<str>::from(name.as_str()));
            addrs.push(*addr);
        }
        let me = ring.nodes().iter().position(|n| **n == *self.me);
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        let new = Arc::new(RingView { ring, addrs, me, epoch });
        // Requests routed by the new view from now on; the keys it does not keep go.
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        self.epoch.store(epoch, Ordering::Release);
        let dropped = cache.retain(|key| old.member_owns(key) && new.member_owns(key));
        let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
        tracing::info!(
            node = %self.me,
            ring = ?names,
            member = new.is_member(),
            dropped,
            "cache ring changed"
        );
        Some(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheConfig, Expiry};
    use bytes::Bytes;

    fn nodes(names: &[&str]) -> BTreeMap<String, SocketAddr> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))))
            .collect()
    }

    fn cache() -> Cache {
        Cache::new(CacheConfig {
            shards: 2,
            ..CacheConfig::default()
        })
    }

    #[test]
    fn outside_the_ring_every_key_is_served_here() {
        let ring = NodeRing::new("a");
        let view = ring.view();
        assert!(view.is_solo() && !view.is_member());
        assert_eq!(view.owner(b"k"), Owner::Here);
    }

    #[test]
    fn keys_spread_over_the_nodes_and_each_node_sees_the_same_owner() {
        let c = cache();
        let (a, b) = (NodeRing::new("a"), NodeRing::new("b"));
        a.set(&nodes(&["a", "b", "c"]), &c);
        b.set(&nodes(&["a", "b", "c"]), &c);
        let (va, vb) = (a.view(), b.view());
        let mut here = [0; 2];
        for i in 0..3000 {
            let k = format!("k{i}");
            let name = |v: &RingView, me: &str| match v.owner(k.as_bytes()) {
                Owner::Here => me.to_string(),
                Owner::Peer(i) => v.node(i).0.to_string(),
            };
            assert_eq!(name(&va, "a"), name(&vb, "b"));
            here[0] += (va.owner(k.as_bytes()) == Owner::Here) as usize;
            here[1] += (vb.owner(k.as_bytes()) == Owner::Here) as usize;
        }
        assert!(here.iter().all(|n| (700..1300).contains(n)), "{here:?}");
        let shares: f64 = va.nodes().iter().map(|n| n.share).sum();
        assert!((shares - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_ring_change_keeps_only_keys_owned_before_and_after() {
        let c = cache();
        let ring = NodeRing::new("a");
        assert!(ring.set(&nodes(&["a"]), &c).is_some());
        assert!(ring.set(&nodes(&["a"]), &c).is_none(), "no change, nothing done");
        for i in 0..1000 {
            c.set(format!("k{i}").as_bytes(), Bytes::from_static(b"v"), Expiry::Never);
        }
        // b joins: a keeps what it still owns, drops what b took.
        ring.set(&nodes(&["a", "b"]), &c);
        let kept = c.len();
        assert!((300..700).contains(&kept), "{kept}");
        let view = ring.view();
        for i in 0..1000 {
            let k = format!("k{i}");
            assert_eq!(c.exists(k.as_bytes()), view.owner(k.as_bytes()) == Owner::Here);
        }
        // b dies: a gains b's range, whose keys it does not hold; keeps its own.
        ring.set(&nodes(&["a"]), &c);
        assert_eq!(c.len(), kept);
        // Written while alone, b's range is dropped when b returns (a would serve
        // nothing of it again, and must not later if it regains it).
        for i in 0..1000 {
            c.set(format!("k{i}").as_bytes(), Bytes::from_static(b"w"), Expiry::Never);
        }
        ring.set(&nodes(&["a", "b"]), &c);
        assert_eq!(c.len(), kept);
        // Cut off (a no longer sees itself): outside the ring, forgetting everything;
        // back in: forgetting again what it served alone.
        ring.set(&nodes(&["b"]), &c);
        assert_eq!(c.len(), 0);
        assert!(ring.view().is_solo());
        c.set(b"k1", Bytes::from_static(b"alone"), Expiry::Never);
        ring.set(&nodes(&["a", "b"]), &c);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_new_address_of_a_node_is_a_change_that_moves_no_key() {
        let c = cache();
        let ring = NodeRing::new("a");
        ring.set(&nodes(&["a", "b"]), &c);
        let view = ring.view();
        for i in 0..100 {
            let k = format!("k{i}");
            if view.owner(k.as_bytes()) == Owner::Here {
                c.set(k.as_bytes(), Bytes::from_static(b"v"), Expiry::Never);
            }
        }
        let before = c.len();
        assert!(before > 20, "{before}");
        let mut moved = nodes(&["a", "b"]);
        moved.insert("b".into(), SocketAddr::from(([127, 0, 0, 1], 9999)));
        let epoch = ring.epoch();
        assert_eq!(ring.set(&moved, &c), Some(0));
        assert!(ring.epoch() > epoch);
        assert_eq!(c.len(), before);
    }
}
