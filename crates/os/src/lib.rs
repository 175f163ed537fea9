//! What strata asks of the operating system, in one place so that every crate asks the
//! same way.
//!
//! Layout:
//! - [`listen`]: per-core servers: N worker threads, each a current-thread tokio runtime
//!   with its own `SO_REUSEPORT` socket on one address, a shared shutdown token, one
//!   handle to join them; and the accept loop the workers run. Used by the gateway and
//!   the cache's Redis protocol server.
//! - [`cap`]: a cap on a listener's open connections (shared by its workers) with a
//!   bounded number of refusals under way, and the lingering close. Used by the gateway
//!   and the node API.
//! - [`claim`]: an address for one server alone: a lock file per address and a probe
//!   bind without `SO_REUSEPORT`, so a second server on a busy address is refused with
//!   its holder named. [`listen::spawn`] claims before its workers bind.
//! - [`contain`]: keeping a child and every process it starts together so that none
//!   outlives it: a cgroup v2 per child (`cgroup.kill`) where the machine allows, else a
//!   subreaper shim with a parent-death signal. Used by the App Service's process driver.
//! - [`bare`]: a tokio `TcpStream` read and written by `syscall(2)`, past glibc's
//!   cancellation-point wrappers (their switching on and off costs in a threaded
//!   process). Used by every gateway socket and by the Redis port.
//! - [`pump`]: two sockets joined into a tunnel whose bytes one epoll set per thread
//!   moves, with no copying task or timer per tunnel (as nginx relays a WebSocket). Used by the gateway's
//!   and the node API's WebSocket tunnels.
//! - [`sockets`]: who listens where, from `/proc`: the holders of an address, the
//!   addresses a process group listens on.
//! - [`disk`]: the files the queue and the store write, behind a trait: `OsDisk` (std's
//!   files, no indirection) and, for tests, a fault-injecting disk (power cuts that drop
//!   unsynced writes, failed fsyncs, short reads, flipped bits).
//! - [`fs`]: making renames durable ([`fs::sync_dir`]). Used by the queue and the store.
//! - [`limits`]: raising the soft limit of open files to the hard one.
//! - [`clock`]: the wall clock in milliseconds ([`clock::now_ms`]), the time stored in
//!   queue records and store writes.
//! - [`histogram`]: durations counted in fixed buckets of relaxed atomics (the gateway's
//!   request latency, the queue's fsyncs), read cumulative for `/v1/metrics`.
//!
//! Invariant: this crate depends on no other strata crate and knows nothing of HTTP.

pub mod bare;
pub mod cap;
pub mod claim;
pub mod clock;
pub mod contain;
pub mod disk;
pub mod fs;
pub mod histogram;
pub mod limits;
pub mod listen;
pub mod pump;
pub mod sockets;

/// A connected pair of loopback sockets for tests: (the connecting end, the accepted end).
#[cfg(test)]
pub(crate) async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    (a.unwrap(), b.unwrap().0)
}
