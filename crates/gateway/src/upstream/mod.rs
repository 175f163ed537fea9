//! HTTP/1.1 to members: keep-alive connections, kept per member and per gateway thread,
//! driven inline by the request that uses them.
//!
//! A relayed request writes its head (and small body) to the member's socket itself and
//! reads the reply head itself, in its own task: no connection task, no channel between
//! tasks, no second header map for the reply beyond the one handed to the client side.
//! The reply body is read by the client side as it streams out ([`UpBody`]); when it
//! ends cleanly the connection goes back to the idle list of the thread it is on.
//!
//! Each gateway worker thread keeps its own idle connections to a member, so a request
//! never touches a socket registered with another thread's runtime.
//!
//! Modules, bottom-up: each uses only the ones above it (named in parentheses).
//! - `head`: parses a reply head and says how its body is framed (`BodyFraming`).
//! - `conn` (head): one connection ([`Conn`]): writes a request, reads the reply head,
//!   and hands back the reply whose body is still to come (`Pending`); or, for a
//!   request to switch protocols, the socket itself once the member agreed ([`Upgrade`]).
//! - `idle` (conn): the idle connections to one member, per thread ([`Upstream`]).
//! - `h2`: HTTP/2 (h2c) connections to a member for gRPC, one per thread, multiplexed
//!   (more when the service limits the calls per connection), each run by a driver task
//!   of its own (`H2Conns`, kept in the member's [`Upstream`]).
//! - `h2_call` (h2): one gRPC call on such a connection, sent from the relay's task: the
//!   request whole when it is complete, else pumped ([`send_h2`]); the reply body
//!   with its trailers and flow control ([`H2Reply`]).
//! - `body` (head, conn, idle): the reply body as it streams, chunked decoding included
//!   ([`UpBody`]); it gives the connection back to [`Upstream`] when it ends as framed.
//!
//! Below all of them, outside `upstream`: the crate's `worker` (the idle list's slot),
//! `digits`, `coarse` (the reply-head timeout) and `request_body`. Nothing outside
//! `upstream` uses anything inside it but the re-exports below.

mod body;
mod conn;
mod h2;
mod h2_call;
mod head;
mod idle;

pub use body::UpBody;
pub use conn::{Conn, SendError, Upgrade};
pub use h2_call::{send as send_h2, H2Reply, SendError as H2SendError};
pub use idle::Upstream;
