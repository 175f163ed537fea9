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
//! - `topics`: delivers the messages of topics to the pools of services that
//!   `subscribes` to them (ANY or ALL members, at most once, bounded).
//! - `triggers`: the store and timer triggers of functions (a function runs as a
//!   service with `instances.min` 0; its queue and HTTP triggers are push delivery and
//!   routes), and [`FiringClaims`], how a cluster fires each timer firing on one node.
//! - [`cluster`]: a cluster node (`strata node --nats`): heartbeat, the scheduler when it
//!   holds the lease (`cluster::schedule`, with `cluster::scale`: the autoscalers that
//!   size autoscaled services from the load in every node's heartbeat), and its share of
//!   every deployed app, each app a [`Node`], rolled over to a new version without a
//!   refused request.
//! - `nodefile`: `.strata/node.json`, how CLI commands find a running node.
//!
//! Invariant: no HTTP here. The node API is `strata-api`, the first tier
//! `strata-gateway`; this crate wires them to the domain crates and owns the tasks
//! that are neither (push delivery, topic delivery, triggers), and starts each
//! autoscaled service's autoscaler from `strata-autoscale` (a topic message's POST is
//! made by `strata_api::topics::deliver`).

mod backends;
pub mod cluster;
mod dead_letters;
mod node;
pub mod nodefile;
mod push;
mod secrets;
mod stateful;
mod topics;
mod triggers;

pub use backends::Backends;
pub use node::{Node, NodeConfig};
/// The OTLP exporter of spans (`--otlp`), for the CLI.
pub use strata_gateway::otlp;
pub use triggers::FiringClaims;
