//! The Redis protocol (RESP2, and RESP3 after `HELLO 3`) in front of a [`crate::Cache`].
//!
//! - `parse`: the incremental request parser ([`Parser`], [`Limits`], [`ProtocolError`]).
//! - `reply`: reply encoding for RESP2 and RESP3.
//! - `commands`: the command table and the keyspace commands.
//! - `admin`: HELLO, AUTH, CLIENT, INFO, COMMAND, CONFIG.
//! - `connection`: one client's protocol state, without the socket ([`Connection`]).
//! - `server`: [`spawn_resp`] (worker threads, one `SO_REUSEPORT` listener each) and the
//!   connection loop.

mod admin;
mod commands;
mod connection;
mod parse;
mod reply;
mod server;

pub use admin::REDIS_VERSION;
pub use connection::{Connection, Progress};
pub use parse::{Args, Limits, Parser, ProtocolError};
pub use server::{spawn_resp, spawn_resp_with, RespConfig, RespWorkers};
