//! The cluster: several strata nodes that share one NATS cluster with JetStream. strata
//! writes no consensus, election or replication of its own: agreement is a
//! compare-and-set on a JetStream KV revision, durability is JetStream's.
//!
//! Layout:
//! - [`Nats`]: the connection and the buckets every node shares (`nats`).
//! - [`membership`]: each node's record (capacity, labels, load, gateways) with a
//!   heartbeat, and who is alive as seen from here (silent for [`DEAD_AFTER`]: dead).
//! - [`lease`]: the scheduler's lease (one holder at a time, renewed, taken over when it
//!   lapses).
//! - [`placement`]: the scheduler's pure decision: which node runs how many instances
//!   of each service (fit, spread, least loaded, stable).
//! - [`schedule`]: one round of the scheduler (read the apps, count, place, write what
//!   changed), shared by `strata-node`'s scheduler and the simulation in `bench/`.
//! - [`bundle`]: an app's files, stored by content digest in the object store, fetched
//!   and verified once per digest per node.
//! - [`members`]: the bus across nodes: each node publishes its ready members (behind a
//!   TCP forwarder on its cluster address, since instances listen on loopback) and joins
//!   every other node's into its own pools.
//! - [`firings`]: timer firings claimed in a KV bucket, so that each fires on one node.
//! - [`queues`]: the queues on JetStream ([`JetStreamQueues`], a
//!   `strata_queue::QueueBackend`): a stream per queue and per dead-letter queue, a
//!   durable pull consumer per group.
//! - [`settle`]: JetStream calls that make or look up a stream, each attempt bounded
//!   and retried (nats-server leaves them unanswered while a leader is being elected).
//! - [`state`]: the store ([`strata_store::StoreBackend`]) in JetStream KV and object
//!   store buckets ([`JetStreamStore`]), so that it survives losing a machine.
//!
//! Invariant: nothing here runs an app; `strata-node`'s cluster agent does, reading the
//! placement and reconciling its own share.

pub mod bundle;
pub mod firings;
pub mod lease;
pub mod members;
pub mod membership;
mod nats;
pub mod placement;
pub mod queues;
pub mod schedule;
pub mod settle;
pub mod state;

pub use membership::{CacheRecord, Membership, NodeRecord, DEAD_AFTER};
pub use nats::{keys, AppRecord, Nats, BUCKET_CONSUMERS, NODES, PLACEMENT};
pub use queues::JetStreamQueues;
pub use state::{JetStreamStore, JetStreamStoreConfig};

/// Milliseconds since the Unix epoch (wall clock: for records other nodes read).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `name` can be a node, app, service or instance name inside a KV key: letters,
/// digits, `-` and `_` (a `.` separates key segments, and `/` marks a remote member).
pub fn is_key_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The newest revision in `bucket` (its stream's last sequence; a delete counts): one
/// request, however many keys. A watch that has delivered it is up to date, so a node
/// reads a bucket whole only when its watch is behind this.
pub async fn last_revision(bucket: &async_nats::jetstream::kv::Store) -> anyhow::Result<u64> {
    let mut stream = bucket.stream.clone();
    let info = stream.info().await?;
    Ok(info.state.last_sequence)
}
