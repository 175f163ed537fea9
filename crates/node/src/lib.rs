//! A running strata node: everything one machine runs for one app, assembled from the
//! manifest. `crates/strata` (the CLI) and the integration tests start a node the same
//! way: [`Node::start`] with a [`NodeConfig`], then [`Node::wait`] or [`Node::stop`].
//!
//! Layout:
//! - `node`: [`NodeConfig`], [`Node`]: start (one small constructor per subsystem),
//!   stop and wait.
//! - `backends`: [`Backends`], the queue and store implementations a node runs on
//!   (embedded by default; a test or a cluster node passes its own).
//! - `stateful`: the cache and its read-through caches over the store.
//! - `push`: delivers queue batches to the pools of services that `consumes` a queue.
//! - `triggers`: the store and timer triggers of functions (a function runs as a
//!   service with `instances.min` 0; its queue and HTTP triggers are push delivery and
//!   routes), and [`FiringClaims`], how a cluster fires each timer firing on one node.
//! - [`cluster`]: a cluster node (`strata node --nats`): heartbeat, the scheduler when it
//!   holds the lease, and its share of every deployed app, each app a [`Node`].
//! - `cluster_scale`: the scheduler's autoscalers, sizing autoscaled services from the
//!   load in every node's heartbeat with `strata-autoscale`'s policy.
//! - `nodefile`: `.strata/node.json`, how CLI commands find a running node.
//!
//! Invariant: no HTTP here. The node API is `strata-api`, the first tier
//! `strata-gateway`; this crate wires them to the domain crates and owns the tasks
//! that are neither (push delivery, triggers), and starts each autoscaled service's
//! autoscaler from `strata-autoscale`.

mod backends;
pub mod cluster;
mod cluster_scale;
mod node;
pub mod nodefile;
mod push;
mod stateful;
mod triggers;

pub use backends::Backends;
pub use node::{Node, NodeConfig};
pub use triggers::FiringClaims;
