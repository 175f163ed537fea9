//! The consistent-hash ring that maps a key to the shard that owns it.
//!
//! Each node (a shard, named by [`ShardId`]: node name and shard number) is placed on a
//! 64-bit ring at `vnodes` points (virtual nodes); a key belongs to the first point at or
//! after its hash, wrapping around. Adding or removing a node moves only the keys between
//! its points and their predecessors, about `1/n` of them, which is what lets shards on
//! other nodes join later without reshuffling everything.
//!
//! The hash ([`key_hash`]) is fixed and platform-independent (little-endian, no random
//! seed), so every node computes the same owner for the same key.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Default number of virtual nodes per node.
pub const DEFAULT_VNODES: u32 = 256;

/// A shard: the node that holds it and its number on that node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    pub node: Arc<str>,
    pub shard: u32,
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.shard)
    }
}

/// A consistent-hash ring over nodes of type `N`.
#[derive(Debug, Clone)]
pub struct Ring<N> {
    vnodes: u32,
    nodes: Vec<N>,
    /// (point on the ring, index into `nodes`), sorted by point.
    points: Vec<(u64, u32)>,
}

impl<N: Hash + Eq + Clone> Ring<N> {
    /// An empty ring placing each node at `vnodes` points (at least 1).
    pub fn new(vnodes: u32) -> Ring<N> {
        Ring {
            vnodes: vnodes.max(1),
            nodes: Vec::new(),
            points: Vec::new(),
        }
    }

    /// Adds `node`; false if it is already on the ring.
    pub fn add(&mut self, node: N) -> bool {
        if self.nodes.contains(&node) {
            return false;
        }
        self.nodes.push(node);
        self.rebuild();
        true
    }

    /// Removes `node`; false if it was not on the ring.
    pub fn remove(&mut self, node: &N) -> bool {
        let Some(i) = self.nodes.iter().position(|n| n == node) else {
            return false;
        };
        self.nodes.remove(i);
        self.rebuild();
        true
    }

    /// The node that owns `key`, or `None` on an empty ring.
    pub fn owner(&self, key: &[u8]) -> Option<&N> {
        self.owner_index(key).map(|i| &self.nodes[i])
    }

    /// The index into [`Ring::nodes`] of the node that owns `key`.
    pub fn owner_index(&self, key: &[u8]) -> Option<usize> {
        self.owner_of_hash(key_hash(key))
    }

    /// The index of the node owning the ring position `hash`.
    pub fn owner_of_hash(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|&(p, _)| p < hash);
        let (_, node) = self.points[if at == self.points.len() { 0 } else { at }];
        Some(node as usize)
    }

    /// The nodes in the order they were added (minus removed ones).
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// Each node's share of the ring (of the key space), in the order of
    /// [`Ring::nodes`]; they sum to 1 (all zero on an empty ring).
    pub fn shares(&self) -> Vec<f64> {
        let mut owned = vec![0u128; self.nodes.len()];
        let n = self.points.len();
        for (i, &(p, node)) in self.points.iter().enumerate() {
            // A point owns the hashes after its predecessor, up to and including itself.
            let prev = self.points[(i + n - 1) % n].0;
            let span = if n == 1 {
                1u128 << 64
            } else {
                p.wrapping_sub(prev) as u128
            };
            owned[node as usize] += span;
        }
        owned.into_iter().map(|o| o as f64 / (1u128 << 64) as f64).collect()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    fn rebuild(&mut self) {
        self.points.clear();
        self.points.reserve(self.nodes.len() * self.vnodes as usize);
        for (i, node) in self.nodes.iter().enumerate() {
            for v in 0..self.vnodes {
                let mut h = StableHasher::new();
                node.hash(&mut h);
                h.write_u32(v);
                self.points.push((h.finish(), i as u32));
            }
        }
        // Ties (vanishingly rare) go to the node whose point sorts first by node hash so
        // the result does not depend on the order nodes were added.
        let node_hashes: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| {
                let mut h = StableHasher::new();
                n.hash(&mut h);
                h.finish()
            })
            .collect();
        self.points.sort_unstable_by_key(|&(p, i)| (p, node_hashes[i as usize]));
    }
}

/// The ring's hash of a key: stable across processes, platforms and versions.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h = StableHasher::new();
    h.write(key);
    h.finish()
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A small, fixed, endian-independent 64-bit hasher (word-at-a-time multiply-rotate with
/// a murmur3 finaliser). Not keyed: do not use it where an attacker picks the inputs and
/// collisions would hurt (the shards' own maps use std's keyed SipHash).
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl StableHasher {
    pub fn new() -> StableHasher {
        StableHasher {
            state: 0x243F_6A88_85A3_08D3,
        }
    }

    fn word(&mut self, w: u64) {
        self.state = (self.state ^ w).wrapping_mul(K).rotate_left(29);
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher::new()
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        // The length goes into the last word so that "a" and "a\0" differ.
        self.word(u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, i: u8) {
        self.word(i as u64);
    }
    fn write_u16(&mut self, i: u16) {
        self.word(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.word(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(node: &str, shard: u32) -> ShardId {
        ShardId {
            node: node.into(),
            shard,
        }
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let ring: Ring<ShardId> = Ring::new(16);
        assert!(ring.owner(b"k").is_none());
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: a change here moves every key of a multi-node cache. The empty key is
        // one word (an empty tail and length 0); the other is two whole words and a tail.
        for (key, pinned) in [
            (&b""[..], 0x969c_56ef_d660_4ca3),
            (b"key:000000000001", 0x94cb_a1e8_eba5_5dde),
        ] {
            let hash = key_hash(key);
            assert_eq!(
                hash,
                pinned,
                "key_hash({:?}) is {hash:#x}",
                String::from_utf8_lossy(key)
            );
        }
        assert_ne!(key_hash(b"a"), key_hash(b"a\0"));
    }

    #[test]
    fn keys_spread_evenly_over_shards() {
        let mut ring = Ring::new(DEFAULT_VNODES);
        for s in 0..4 {
            ring.add(shard("local", s));
        }
        let mut counts = [0usize; 4];
        for i in 0..100_000 {
            counts[ring.owner_index(format!("key:{i}").as_bytes()).unwrap()] += 1;
        }
        for c in counts {
            assert!((18_000..32_000).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn adding_a_node_moves_only_its_share() {
        let mut ring = Ring::new(DEFAULT_VNODES);
        for s in 0..3 {
            ring.add(shard("a", s));
        }
        let keys: Vec<String> = (0..30_000).map(|i| format!("user:{i}")).collect();
        let before: Vec<ShardId> = keys.iter().map(|k| ring.owner(k.as_bytes()).unwrap().clone()).collect();
        assert!(ring.add(shard("b", 0)));
        assert!(!ring.add(shard("b", 0)));
        let mut moved = 0;
        for (k, old) in keys.iter().zip(&before) {
            let new = ring.owner(k.as_bytes()).unwrap();
            if new != old {
                assert_eq!(new, &shard("b", 0), "a key moved between old shards");
                moved += 1;
            }
        }
        // About a quarter should move to the new node.
        assert!((5_000..10_000).contains(&moved), "moved {moved}");
        assert!(ring.remove(&shard("b", 0)));
        let after: Vec<ShardId> = keys.iter().map(|k| ring.owner(k.as_bytes()).unwrap().clone()).collect();
        assert_eq!(before, after, "removing the node restores the old owners");
    }

    #[test]
    fn shares_sum_to_one_and_match_the_keys_owned() {
        let mut ring = Ring::new(DEFAULT_VNODES);
        for n in ["a", "b", "c"] {
            ring.add(n.to_string());
        }
        let shares = ring.shares();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{shares:?}");
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            counts[ring.owner_index(format!("k{i}").as_bytes()).unwrap()] += 1;
        }
        for (c, s) in counts.iter().zip(&shares) {
            assert!((*c as f64 / 30_000.0 - s).abs() < 0.02, "{counts:?} {shares:?}");
        }
        let mut one = Ring::new(4);
        one.add("x".to_string());
        assert_eq!(one.shares(), [1.0]);
    }

    #[test]
    fn owner_does_not_depend_on_insertion_order() {
        let mut a = Ring::new(32);
        let mut b = Ring::new(32);
        for s in 0..5 {
            a.add(shard("n", s));
            b.add(shard("n", 4 - s));
        }
        for i in 0..1000 {
            let k = format!("{i}");
            assert_eq!(a.owner(k.as_bytes()), b.owner(k.as_bytes()));
        }
    }
}
