//! The idle connections to one member, one list per gateway worker thread, so that a
//! request never touches a socket registered with another thread's runtime.

use std::sync::Mutex;

use http::header::HeaderValue;

use super::conn::Conn;
use crate::worker::{slot, SLOTS};

/// Most idle connections kept per member and thread.
const IDLE_MAX: usize = 256;

/// The idle connections to one member, kept in the member's transport slot.
pub struct Upstream {
    idle: [Mutex<Vec<Conn>>; SLOTS],
    /// The member's id as a header value, made once.
    pub served_by: HeaderValue,
    /// HTTP/2 connections for gRPC calls.
    pub h2: super::h2::H2Conns,
    /// The member's address as a URI authority, made once (gRPC calls' `:authority`).
    pub authority: http::uri::Authority,
}

impl Upstream {
    pub fn new(member_id: &str, addr: std::net::SocketAddr) -> Upstream {
        Upstream {
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
            served_by: HeaderValue::from_str(member_id).unwrap_or(HeaderValue::from_static("-")),
            h2: super::h2::H2Conns::default(),
            authority: addr
                .to_string()
                .parse()
                .unwrap_or_else(|_| http::uri::Authority::from_static("member")),
        }
    }

    /// An idle connection of this thread that the member has not closed, if any.
    pub fn take(&self) -> Option<Conn> {
        let mut idle = self.idle[slot()].lock().unwrap();
        while let Some(mut conn) = idle.pop() {
            if conn.is_usable() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Drops this thread's idle connections: one of them broke, so the rest, opened to
    /// the same process, are likely dead too (it was killed or closed them together).
    pub fn drop_idle(&self) {
        // Taken out, then closed once the lock is released.
        let stale = std::mem::take(&mut *self.idle[slot()].lock().unwrap());
        drop(stale);
    }

    pub fn put(&self, conn: Conn) {
        let mut idle = self.idle[slot()].lock().unwrap();
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
    }
}
