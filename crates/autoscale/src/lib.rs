//! Autoscaling of one node's services: the policy that decides a pool's size, the task
//! that feeds it and applies its decisions, and the admission that holds, buffers and
//! sheds requests on the request path. One home for the concern; the rest of strata
//! sees two narrow seams.
//!
//! Layout:
//! - [`policy`]: [`Policy`], pure: samples that carry their own time in, a
//!   [`Recommendation`] (target, signal, reason) out; tested on a made-up clock.
//! - `admission`: [`Admission`], per service: holding at zero ([`MAX_HELD`]), the demand
//!   signal that wakes the task, saturation, buffering while instances start, shedding
//!   at `instances.max`, the last request's time. Implements [`strata_bus::Admission`].
//! - `task`: [`Scaled`] (which services are autoscaled, with what) and [`run`], the task
//!   per service: samples, decisions, events, status, cold starts.
//!
//! The contract:
//!
//! | who | calls | what for |
//! |---|---|---|
//! | the relay (gateway), per request | [`strata_bus::Admission`] on the pool: `arrived`, `holds`/`hold`, `place`/`wait_for_room`, `counted` | admit, hold, buffer or shed; leave the load signals |
//! | the task, per sample | the pool's members (in flight), `served_total`, `watch_ready`; the admission's `held`, `idle_for`, `shed_count`, demand wake-up; the queue's `stats`/`changed` | a [`Sample`] |
//! | the task, per decision | `AppService::scale(.., ScaleBy::Autoscaler)`, `record`, `set_autoscale`; the admission's buffering and shed limit | apply and show |
//!
//! The node makes an [`Admission`] per autoscaled service, installs it with
//! [`strata_bus::Pool::set_admission`] and spawns [`run`].
//! A cluster node, whose counts the cluster's scheduler decides, installs
//! [`Admission::holding`] instead on a service that may be at zero on every node, and
//! reports what it holds (`held`, woken by `demanded`).
//!
//! Invariant: no HTTP. The gateway knows only the bus trait, never this crate.

mod admission;
pub mod policy;
mod task;

pub use admission::{Admission, MAX_HELD};
pub use policy::{Policy, Recommendation, Sample};
pub use task::{run, Scaled};
