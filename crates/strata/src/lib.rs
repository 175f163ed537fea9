//! strata: a cloud in one binary. This crate is the command line and nothing else: a
//! node is `strata-node`, its HTTP API `strata-api`.
//!
//! Layout:
//! - `cli`: the commands and their output; `strata up` starts a
//!   [`strata_node::Node`].
//! - `client`: the CLI's side of the node's control API (`ps`, `scale`, `logs`, `down`).

pub mod cli;
pub mod client;
