//! Figures of the requests relayed to a pool: replies by status class, failures with no
//! answer by reason, and a latency histogram. Kept in the pool's transport slot, found
//! with the pool each request already holds; recorded with relaxed atomic additions (no
//! lock, no allocation, no lookup by name) and read by the node API's `/v1/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use strata_bus::Pool;
use strata_os::histogram::{Histogram, HistogramSnapshot};

/// Why no member's reply head came back to a relayed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// No ready member (503).
    NoMember,
    /// Shed at `instances.max` (503).
    Shed,
    /// The request's deadline passed (504).
    Deadline,
    /// The member failed before or while handling it, and it was not reissued (502).
    Failed,
    /// The member did not answer within the attempt timeout (504).
    Timeout,
    /// The client's body broke off or ran over the limit (400, 413).
    ClientBody,
}

impl NoAnswer {
    pub const ALL: [NoAnswer; 6] = [
        NoAnswer::NoMember,
        NoAnswer::Shed,
        NoAnswer::Deadline,
        NoAnswer::Failed,
        NoAnswer::Timeout,
        NoAnswer::ClientBody,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            NoAnswer::NoMember => "no_member",
            NoAnswer::Shed => "shed",
            NoAnswer::Deadline => "deadline",
            NoAnswer::Failed => "failed",
            NoAnswer::Timeout => "timeout",
            NoAnswer::ClientBody => "client_body",
        }
    }
}

/// Status classes 1xx to 5xx, then one slot per [`NoAnswer`].
const CLASSES: usize = 5;

/// Why an attempt got no reply, when the request was sent again to another member: the
/// `reason` of `strata_reissues_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Nothing of the request reached the member (refused, or a closed idle connection).
    Unsent,
    /// The request was (perhaps partly) sent, then the connection failed.
    Broken,
    /// No reply within the attempt timeout.
    Timeout,
}

impl AttemptFailure {
    pub const ALL: [AttemptFailure; 3] = [AttemptFailure::Unsent, AttemptFailure::Broken, AttemptFailure::Timeout];

    pub fn label(self) -> &'static str {
        match self {
            AttemptFailure::Unsent => "unsent",
            AttemptFailure::Broken => "broken",
            AttemptFailure::Timeout => "timeout",
        }
    }
}

/// What a relayed request spoke: the request families' `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP requests (HTTP/1.1 or HTTP/2), the gateway's and `/v1/any`, `/v1/all`.
    Http,
    /// gRPC calls: the class is the reply head's HTTP status (a member's grpc-status in
    /// trailers is not read); strata's own failures count as no answer, by reason.
    Grpc,
    /// WebSocket (and other) protocol switches: 101 counts as 1xx; the time is the
    /// handshake's.
    WebSocket,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Http, Protocol::Grpc, Protocol::WebSocket];

    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::WebSocket => "websocket",
        }
    }
}

/// One protocol's figures of one pool, or one gateway route's figures (every protocol
/// together: what its clients saw, answers of the route's own fallback included).
#[derive(Default)]
pub struct Family {
    replies: [AtomicU64; CLASSES + NoAnswer::ALL.len()],
    latency: Histogram,
    /// Attempts sent again to another member, by why the one before got no reply.
    reissues: [AtomicU64; AttemptFailure::ALL.len()],
}

/// One pool's figures, per [`Protocol`].
#[derive(Default)]
pub struct RelayStats {
    by: [Family; Protocol::ALL.len()],
}

impl RelayStats {
    /// The figures of `pool`, made on first use.
    #[inline]
    pub fn of(pool: &Pool) -> &RelayStats {
        pool.transport(RelayStats::default)
    }

    /// Counts one relayed HTTP request: the member's status (`None`: why none came
    /// back) and the time from its arrival until the reply head was back.
    #[inline]
    pub fn record(&self, status: StatusCode, unanswered: Option<NoAnswer>, took: Duration) {
        self.record_as(Protocol::Http, status, unanswered, took);
    }

    /// [`record`](RelayStats::record) for a request of `protocol`.
    #[inline]
    pub fn record_as(&self, protocol: Protocol, status: StatusCode, unanswered: Option<NoAnswer>, took: Duration) {
        self.by[protocol as usize].record(status, unanswered, took);
    }

    /// Counts the reissues of a relayed request of `protocol`: every failed attempt that
    /// another attempt followed (`attempts` in all, `failed` in order). Nothing to do
    /// when none failed.
    #[inline]
    pub fn record_reissues(&self, protocol: Protocol, attempts: u32, failed: &[crate::relay::FailedAttempt]) {
        if failed.is_empty() {
            return;
        }
        let family = &self.by[protocol as usize];
        for f in failed.iter().take(attempts.saturating_sub(1) as usize) {
            family.reissues[f.kind as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of the HTTP figures, for reading.
    pub fn snapshot(&self) -> RelaySnapshot {
        self.snapshot_of(Protocol::Http)
    }

    /// A copy of `protocol`'s figures.
    pub fn snapshot_of(&self, protocol: Protocol) -> RelaySnapshot {
        self.by[protocol as usize].snapshot()
    }
}

impl Family {
    /// Counts one request: its status (`None`: why no member's reply came back) and its
    /// time.
    #[inline]
    pub fn record(&self, status: StatusCode, unanswered: Option<NoAnswer>, took: Duration) {
        let slot = match unanswered {
            Some(why) => CLASSES + why as usize,
            None => (status.as_u16() / 100).clamp(1, 5) as usize - 1,
        };
        self.replies[slot].fetch_add(1, Ordering::Relaxed);
        self.latency.record(took);
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> RelaySnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RelaySnapshot {
            classes: std::array::from_fn(|i| load(&self.replies[i])),
            unanswered: std::array::from_fn(|i| load(&self.replies[CLASSES + i])),
            latency: self.latency.snapshot(),
            reissues: std::array::from_fn(|i| load(&self.reissues[i])),
        }
    }
}

/// One pool's figures (of one protocol) at one moment.
#[derive(Debug, Clone)]
pub struct RelaySnapshot {
    /// Replies of status class 1xx, 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; CLASSES],
    /// Requests that got no reply, in the order of [`NoAnswer::ALL`].
    pub unanswered: [u64; NoAnswer::ALL.len()],
    pub latency: HistogramSnapshot,
    /// Attempts sent again, in the order of [`AttemptFailure::ALL`].
    pub reissues: [u64; AttemptFailure::ALL.len()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_reasons() {
        let stats = RelayStats::default();
        stats.record(StatusCode::OK, None, Duration::from_micros(300));
        stats.record(StatusCode::NOT_FOUND, None, Duration::from_micros(1_000));
        stats.record(StatusCode::BAD_GATEWAY, Some(NoAnswer::Failed), Duration::from_secs(11));
        let s = stats.snapshot();
        assert_eq!(s.classes, [0, 1, 0, 1, 0]);
        assert_eq!(s.unanswered[NoAnswer::Failed as usize], 1);
        assert_eq!(s.latency.count(), 3);
        stats.record_as(
            Protocol::WebSocket,
            StatusCode::SWITCHING_PROTOCOLS,
            None,
            Duration::from_micros(900),
        );
        assert_eq!(stats.snapshot_of(Protocol::WebSocket).classes, [1, 0, 0, 0, 0]);
        assert_eq!(stats.snapshot().latency.count(), 3, "apart from HTTP's");
    }
}
