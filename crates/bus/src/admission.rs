//! [`Admission`]: what a pool with an autoscaler decides about a request before it goes
//! to a member. The relay calls it; the autoscaler (`strata_autoscale`) implements it and
//! keeps the load signals it needs behind it. A pool without one admits every request
//! at once, at the cost of one `OnceLock` read.
//!
//! | call | when the relay makes it | blocks on | answered |
//! |---|---|---|---|
//! | [`Admission::arrived`] | once per request | nothing | at once |
//! | [`Admission::holds`] | the pool has no member | nothing | at once |
//! | [`Admission::hold`] | `holds()` said yes | a member joining | [`Held`] |
//! | [`Admission::place`] | first attempt, member chosen | nothing | [`Placement`] |
//! | [`Admission::wait_for_room`] | `place` said [`Placement::Wait`] | room, a member, 100 ms | pick again, or send |
//! | [`Admission::counted`] | the request is counted on its member | nothing | at once |
//! | [`Admission::limit`] | the first attempt is counted on its member | nothing | at once |
//!
//! The calls made for every request (`arrived`, `place`, `counted`) are loads and stores
//! of atomics: no lock, no allocation. Only a request that waits allocates its future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Member, Pool};

/// A future borrowed from the admission and the pool, boxed so that the trait is usable
/// as `dyn Admission`.
pub type Waiting<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Admission of requests to one pool: hold at zero, buffer while instances start, shed
/// at the pool's maximum, and the load signals behind those (arrivals, in flight).
pub trait Admission: Send + Sync {
    /// A request came for the pool (the idle time counts from the last one).
    fn arrived(&self);

    /// Whether a request that finds the pool empty may wait for a member (the service
    /// may run no instance and starts one on demand) instead of failing at once.
    fn holds(&self) -> bool;

    /// Holds a request for an empty pool until a member joins, at most `within`.
    fn hold<'a>(&'a self, pool: &'a Pool, within: Duration) -> Waiting<'a, Held>;

    /// Where the first attempt of a request goes, `member` being the pool's pick and
    /// `tried` the members passed over. Answered from atomics; scans the members only
    /// when `member` is full.
    fn place(&self, pool: &Pool, member: &Arc<Member>, tried: &[Arc<Member>]) -> Placement;

    /// After [`Placement::Wait`]: waits (counted as held) until a member not in `tried`
    /// may have room, a member joins or leaves, or 100 ms or `within` pass. True: waited
    /// (or room appeared meanwhile), pick again. False: too many are held already, send
    /// the request to the chosen member.
    fn wait_for_room<'a>(&'a self, pool: &'a Pool, tried: &'a [Arc<Member>], within: Duration) -> Waiting<'a, bool>;

    /// A request was counted on a member, which now has `inflight` in flight.
    fn counted(&self, inflight: usize);

    /// The most requests a member takes at once now (0: no limit): what [`place`] checks
    /// a member against, which the relay then takes atomically
    /// ([`Member::try_begin_under`]), so that requests placed at the same moment cannot
    /// all pass one check.
    ///
    /// [`place`]: Admission::place
    fn limit(&self) -> usize {
        0
    }
}

/// How holding a request for an empty pool ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A member joined: pick again.
    Ready,
    /// Too many requests are held already: answer 503 at once.
    Full,
    /// No member joined in time: answer 504.
    Expired,
    /// The service's instance failed to start (`Pool::start_failed`): answer 503 at
    /// once, with why.
    Failed,
}

/// Where the first attempt of a request goes.
#[derive(Debug)]
pub enum Placement {
    /// To the member the pool picked.
    Send,
    /// To this member instead: the one picked is full, this one has room.
    Use(Arc<Member>),
    /// Nowhere yet: wait with [`Admission::wait_for_room`], then pick again.
    Wait,
    /// Nowhere: the pool is at its maximum size and every member is at its limit (503).
    Shed,
}
