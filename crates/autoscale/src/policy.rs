//! The autoscaling policy: from samples of a pool's load to a target instance count and
//! the reason for it. Pure: the time of each sample is passed in, so tests drive it on a
//! made-up clock; the autoscaler task ([`crate::run`]) feeds it samples as load events
//! arrive and applies its decisions.
//!
//! The recommendation of one sample is the largest of
//! - in-flight (plus held) requests / `concurrency`,
//! - backlog / `backlog` (services that consume a queue),
//! - with `latency_ms`, the ready count x mean latency / `latency_ms`.
//!
//! Recommendations are kept as a step function over time. A higher count is taken once
//! it was recommended throughout the last `up_window_ms`; a lower one once nothing higher
//! was recommended throughout the last `down_window_ms` (fast up, slow down; load that
//! comes and goes faster than the down window keeps the pool where the peaks need it).
//! Overload is taken at once: a recommendation of at least twice the current count
//! (Knative's panic threshold), a backlog past the ready pool's worth that grows (faster
//! than the pool drains it, and larger than at the last sample), or any demand for a
//! pool at zero; for an up window after an overload (at least 1 s) any higher count is
//! taken at once too, so that a first reading taken mid-step does not leave the pool
//! short. A pool with `instances.min` 0 goes to zero once idle for its idle timeout,
//! whatever the windows.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use strata_manifest::AutoscaleSpec;

/// The load of a pool at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Time of the sample, from any fixed origin.
    pub at: Duration,
    /// The instance count wanted now (what the last decision set).
    pub current: u32,
    pub ready: u32,
    /// Requests in flight on the members.
    pub inflight: u64,
    /// Requests held at the gateway waiting for an instance.
    pub held: u64,
    pub backlog: Option<Backlog>,
    /// Mean latency of the requests answered lately, if any were.
    pub latency: Option<Duration>,
    /// Time since the last request.
    pub idle_for: Duration,
}

/// The backlog of the consumer group a service drains.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    /// Messages unread or leased.
    pub messages: u64,
    /// Messages published per second lately.
    pub arriving_per_s: f64,
    /// Messages processed per second lately.
    pub draining_per_s: f64,
}

/// What drives the current target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    Concurrency,
    Backlog,
    Latency,
    /// instances.min, or one instance kept while not idle.
    Min,
    /// Idle past the idle timeout.
    Idle,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Concurrency => "concurrency",
            Signal::Backlog => "backlog",
            Signal::Latency => "latency",
            Signal::Min => "min",
            Signal::Idle => "idle",
        }
    }
}

/// The policy's answer to one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The instance count the pool should have now.
    pub target: u32,
    /// What this sample alone asks for.
    pub wanted: u32,
    pub signal: Signal,
    /// The inputs and the rule that decided, in words.
    pub reason: String,
    /// The pool is at instances.max: past `max_inflight` per instance, load is shed.
    pub at_max: bool,
}

/// One pool's autoscaling policy and the recommendations it has seen.
#[derive(Debug)]
pub struct Policy {
    spec: AutoscaleSpec,
    min: u32,
    max: u32,
    idle_timeout: Duration,
    /// The manifest setting behind `idle_timeout`, as reasons name it.
    idle_setting: &'static str,
    /// (time, recommendation), oldest first: the step function the windows look at.
    history: VecDeque<(Duration, u32)>,
    /// When the last step up and down were taken (bounded steps are paced).
    last_up: Option<Duration>,
    last_down: Option<Duration>,
    /// Set by an overload: until then, higher counts are taken at once.
    panic_until: Option<Duration>,
    /// The backlog of the last sample that had one.
    last_backlog: Option<u64>,
}

/// A bounded step up waits for the last one's instances at most this long.
const STEP_SETTLE: Duration = Duration::from_secs(10);
/// Bounded steps down are at least this far apart.
const DOWN_STEP_SPACING: Duration = Duration::from_secs(1);

impl Policy {
    /// Names the manifest setting the idle timeout came from in the reasons given
    /// (a function's is its `keep_warm_ms`).
    pub fn idle_setting(mut self, setting: &'static str) -> Policy {
        self.idle_setting = setting;
        self
    }

    pub fn new(spec: AutoscaleSpec, min: u32, max: u32, idle_timeout: Duration) -> Policy {
        Policy {
            spec,
            min,
            max,
            idle_timeout,
            idle_setting: "instances.idle_timeout_ms",
            history: VecDeque::new(),
            last_up: None,
            last_down: None,
            panic_until: None,
            last_backlog: None,
        }
    }

    /// The target for this sample. When it differs from `s.current`, the caller scales
    /// to it and records the decision with its reason.
    pub fn observe(&mut self, s: &Sample) -> Recommendation {
        let demand = s.inflight + s.held;
        let concurrency = u64::from(self.spec.concurrency.max(1));
        let mut wanted = demand.div_ceil(concurrency) as u32;
        let mut signal = Signal::Concurrency;
        let mut why = format!(
            "{demand} request(s) in flight{} over {} ready, target {} each: {wanted} needed",
            if s.held > 0 {
                format!(" ({} held)", s.held)
            } else {
                String::new()
            },
            s.ready,
            self.spec.concurrency
        );
        let mut backlog_overload = false;
        if let Some(b) = s.backlog {
            let need = b.messages.div_ceil(self.spec.backlog.max(1)) as u32;
            // Growing: arriving faster than it drains (rates over the last second), and
            // larger than at the last sample (the rates of one burst last a second after
            // it: that alone is not growth).
            let grew = self.last_backlog.is_none_or(|last| b.messages > last);
            self.last_backlog = Some(b.messages);
            let growing = b.arriving_per_s > b.draining_per_s && grew;
            // More than the ready pool's worth, still growing: taken at once, one more
            // instance at least per settled step (the drain cannot improve before the
            // last step's instances are ready). A burst the pool holds (one batch in
            // flight on each instance) is not an overload.
            backlog_overload = growing && need > s.current && s.current < self.max && s.ready >= s.current;
            if need > wanted || (backlog_overload && need >= wanted) {
                wanted = need;
                signal = Signal::Backlog;
                let drain = if b.draining_per_s > 0.0 {
                    format!(
                        "drained in {:.1} s at {:.0}/s",
                        b.messages as f64 / b.draining_per_s,
                        b.draining_per_s
                    )
                } else {
                    "not draining".to_string()
                };
                why = format!(
                    "backlog {} message(s), arriving {:.0}/s, {drain}, target {} each: {need} needed",
                    b.messages, b.arriving_per_s, self.spec.backlog
                );
            }
        }
        if let (Some(target_ms), Some(latency)) = (self.spec.latency_ms, s.latency) {
            let ratio = latency.as_secs_f64() * 1000.0 / target_ms as f64;
            if ratio > 1.0 && demand > 0 && s.ready > 0 {
                let need = (f64::from(s.ready) * ratio).ceil() as u32;
                if need > wanted {
                    wanted = need;
                    signal = Signal::Latency;
                    why = format!(
                        "mean latency {} ms over {} ready, target {target_ms} ms: {need} needed",
                        latency.as_millis(),
                        s.ready
                    );
                }
            }
        }
        let wanted = wanted.min(self.max);
        self.remember(s.at, wanted);

        let current = s.current;
        let overload = wanted > current && (wanted >= current.saturating_mul(2) || current == 0);
        // Within an up window of an overload (panic), any higher count is taken at once.
        let panicking = self.panic_until.is_some_and(|until| s.at < until);
        let (mut target, rule) = if backlog_overload {
            // `need > current` made `wanted` at least one more, and it is remembered as
            // any recommendation: the down window keeps it.
            (
                wanted.max(current + 1),
                "overload (backlog growing faster than it drains), taken at once".to_string(),
            )
        } else if overload {
            (
                wanted,
                "overload (at least twice the current count), taken at once".to_string(),
            )
        } else if panicking && wanted > current {
            (
                wanted,
                format!(
                    "still overloaded (within {} ms of an overload), taken at once",
                    self.spec.up_window_ms.max(1_000)
                ),
            )
        } else {
            let up = self.lowest_since(
                s.at.saturating_sub(Duration::from_millis(self.spec.up_window_ms)),
                current,
            );
            let down = self.highest_since(
                s.at.saturating_sub(Duration::from_millis(self.spec.down_window_ms)),
                current,
            );
            if up > current {
                (up, format!("needed throughout the last {} ms", self.spec.up_window_ms))
            } else if down < current {
                (
                    down,
                    format!("no more needed throughout the last {} ms", self.spec.down_window_ms),
                )
            } else {
                (current, "unchanged".to_string())
            }
        };

        // Bounded steps, paced: the next step up once the last one's instances are ready,
        // the next step down a moment later.
        if target > current && self.spec.max_step_up > 0 {
            // The last step's instances are ready, or are not coming soon (a crash loop).
            let settled = self
                .last_up
                .is_none_or(|t| s.ready >= current || s.at >= t + STEP_SETTLE);
            target = if settled {
                target.min(current + self.spec.max_step_up)
            } else {
                current
            };
        }
        if target < current && self.spec.max_step_down > 0 {
            let settled = self.last_down.is_none_or(|t| s.at >= t + DOWN_STEP_SPACING);
            target = if settled {
                target.max(current.saturating_sub(self.spec.max_step_down))
            } else {
                current
            };
        }

        // Never below min, nor below one while the pool is not idle; zero once idle.
        let idle = demand == 0 && s.backlog.is_none_or(|b| b.messages == 0) && s.idle_for >= self.idle_timeout;
        let floor = if self.min > 0 {
            self.min
        } else if idle {
            0
        } else {
            u32::from(current > 0 || wanted > 0)
        };
        let mut reason = format!("{why}; {rule}");
        // Zero is reached only once idle (the floor is one until then): say so, also
        // when the down window had come to zero on its own.
        if idle && self.min == 0 && (target > 0 || current > 0) {
            target = 0;
            signal = Signal::Idle;
            reason = format!(
                "idle for {} ms ({} {}) with nothing in flight or queued",
                s.idle_for.as_millis(),
                self.idle_setting,
                self.idle_timeout.as_millis()
            );
        } else if target < floor || (target == floor && wanted < floor && target > 0) {
            // Held at the floor (or raised to it): the floor is what decides.
            target = floor;
            signal = Signal::Min;
            reason = if self.min > 0 {
                format!("{why}; instances.min is {}", self.min)
            } else {
                format!(
                    "{why}; one instance kept until idle for {} ms",
                    self.idle_timeout.as_millis()
                )
            };
        }
        let target = target.min(self.max);
        if overload || backlog_overload {
            self.panic_until = Some(s.at + Duration::from_millis(self.spec.up_window_ms.max(1_000)));
        }
        if target > current {
            self.last_up = Some(s.at);
        } else if target < current {
            self.last_down = Some(s.at);
        }
        Recommendation {
            target,
            wanted,
            signal,
            reason,
            at_max: target >= self.max,
        }
    }

    fn remember(&mut self, at: Duration, wanted: u32) {
        if self.history.back().is_none_or(|&(_, w)| w != wanted) {
            self.history.push_back((at, wanted));
        }
        // Keep what the longer window needs, plus the value in effect at its start.
        let keep = Duration::from_millis(self.spec.up_window_ms.max(self.spec.down_window_ms));
        let start = at.saturating_sub(keep);
        while self.history.len() > 1 && self.history[1].0 <= start {
            self.history.pop_front();
        }
    }

    /// The values of the step function over [since, now]; None when the history does not
    /// reach back to `since` (too young to judge the window).
    fn values_since(&self, since: Duration) -> Option<impl Iterator<Item = u32> + '_> {
        let first = self.history.front()?;
        if first.0 > since {
            return None;
        }
        // The value in effect at `since`, and every later one.
        let start = self.history.iter().rposition(|&(t, _)| t <= since).unwrap_or(0);
        Some(self.history.iter().skip(start).map(|&(_, w)| w))
    }

    fn lowest_since(&self, since: Duration, otherwise: u32) -> u32 {
        match self.values_since(since) {
            Some(values) => values.min().unwrap_or(otherwise),
            None => otherwise,
        }
    }

    fn highest_since(&self, since: Duration, otherwise: u32) -> u32 {
        match self.values_since(since) {
            Some(values) => values.max().unwrap_or(otherwise),
            None => otherwise,
        }
    }
}

#[cfg(test)]
mod tests;
