//! strata-client: a thin async client for the queues of a strata node's API
//! (`docs/queues.md`), for instances (through `$STRATA_URL`), tools and benchmarks.
//!
//! Layout:
//! - `client`: [`Client`], the node API's address, its token (`$STRATA_TOKEN`, sent as
//!   `Authorization: Bearer`) and its kept-alive connections.
//! - `publish`: [`Client::publish`] (one JSON message), [`Client::publish_batch`]
//!   (compact), [`Client::publish_json_batch`], [`Client::request`]
//!   (publish-and-wait for a reply), [`Client::reply`].
//! - `consume`: [`Client::fetch`] ([`Message`]s), [`Client::fetch_compact`],
//!   [`Client::ack`], [`Client::nack`], [`Client::delete`].
//! - `stats`: [`Client::create_queue`], [`Client::stats`], [`Client::list_queues`].
//! - `producer`: [`Producer`], many messages unacknowledged at once, batched on the wire.
//! - `trace`: [`TraceContext`] and [`Client::traced`], a client whose calls join a W3C
//!   trace (`docs/traces.md`): publishes, fetches, acks and replies become spans of it,
//!   and a fetched [`Message`] and a [`Reply`] carry their `traceparent` on.
//! - [`compact`]: the `application/x-strata-batch` encoding, both directions.
//! - `body`: message bytes inside JSON (`body` or `body_base64`).
//! - `conn`: HTTP/1.1 connections (hyper), reused while kept alive.
//! - `error`: [`Error`], which keeps the node's `error` message and HTTP status.
//!
//! Every call needs a tokio runtime. Nothing here retries a publish: a call that failed
//! after the request may have reached the node reports the error, and only the caller
//! knows whether sending again (with a `dedupe_id`) is right.

mod client;
/// The compact form of `docs/queues.md` (from `strata-wire`).
pub use strata_wire::compact;
mod conn;
mod consume;
mod error;
mod producer;
mod publish;
mod stats;
mod trace;

pub use client::Client;
pub use compact::CompactMessage;
pub use consume::{DeadLetter, FetchMax, FetchOptions, Message, Settled};
pub use error::Error;
pub use producer::{Producer, ProducerConfig, Receipt};
pub use publish::{OutgoingMessage, Published, PublishedBatch, Reply, ReplyOutcome};
pub use stats::{GroupStats, QueueStats};
pub use trace::TraceContext;

impl Client {
    /// A [`Producer`] to `queue` over this client's connections.
    pub fn producer(&self, queue: &str, config: ProducerConfig) -> Result<Producer, Error> {
        Producer::new(self.clone(), queue, config)
    }
}
