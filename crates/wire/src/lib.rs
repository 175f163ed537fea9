//! Wire formats that both ends of the node API share: the node (`strata-api`, push
//! delivery in `strata-node`) writes and reads them, the clients (`strata-client`) read
//! and write them. Formats only: no sockets, no HTTP.
//!
//! Layout:
//! - `compact`: `application/x-strata-batch`, the compact publish batch and fetch answer.
//! - `json`: message bodies inside JSON (`body` or `body_base64`) and the JSON form of
//!   fetched messages.
//! - `error`: the error body (`error`, `status`, `code`) of every HTTP answer.
//! - `base64`: standard padded base64 (RFC 4648), strict on input.
//!
//! Decoding never panics: malformed input is a [`WireError`] naming what was wrong and
//! where.

pub mod base64;
pub mod compact;
pub mod error;
pub mod json;

pub use compact::CompactMessage;
pub use error::{ErrorBody, ErrorCode};
pub use json::{messages_json, DeadLetterOut, JsonBody, MessageOut};

/// Malformed input, with what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);
