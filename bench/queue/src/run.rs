//! What one run of one target measures, and how it is printed.

use std::time::Duration;

use crate::measure::{result_line, Latencies};

/// The settings of one run, the same for both targets.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Length of the timed part of phases (a) and (b).
    pub secs: f64,
    /// Message size in bytes.
    pub size: usize,
    /// Messages unacknowledged at once in phase (b).
    pub unacked: usize,
    /// strata's Producer: batch requests in flight at once in phase (b).
    pub in_flight: usize,
    /// strata's Producer: messages in one batch in phase (b) (its `max_batch_messages`).
    pub publish_batch: usize,
    /// Messages per fetch in phase (c).
    pub batch: usize,
    /// Messages consumed in the timed part of phase (c) (topped up, untimed, when (a) and
    /// (b) published fewer).
    pub consume: u64,
    /// Which phases run.
    pub phases: Phases,
}

/// The phases one run measures: all three, or one alone (then what it published is
/// drained, untimed, and the others print 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    All,
    A,
    B,
}

/// What one run measured.
#[derive(Default)]
pub struct RunResult {
    /// (a): publish one, wait for its acknowledgement.
    pub latencies: Latencies,
    /// (b): messages acknowledged and the time from first send to last acknowledgement.
    pub published: u64,
    pub publish_time: Duration,
    /// (c): messages fetched and acknowledged, and the time it took.
    pub consumed: u64,
    pub consume_time: Duration,
}

impl RunResult {
    pub fn line(&mut self, target: &str, round: u32) -> String {
        let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let fields = [
            ("lat_p50_us", self.latencies.percentile_us(50.0)),
            ("lat_p99_us", self.latencies.percentile_us(99.0)),
            ("lat_n", self.latencies.len() as f64),
            ("pub_rate", rate(self.published, self.publish_time)),
            ("pub_n", self.published as f64),
            ("con_rate", rate(self.consumed, self.consume_time)),
            ("con_n", self.consumed as f64),
        ];
        result_line(target, round, &fields)
    }

    pub fn summary(&mut self, target: &str) -> String {
        format!(
            "{target}: (a) p50 {:.0} us p99 {:.0} us over {} publishes; (b) {} msgs in {:.2} s; (c) {} msgs in {:.2} s",
            self.latencies.percentile_us(50.0),
            self.latencies.percentile_us(99.0),
            self.latencies.len(),
            self.published,
            self.publish_time.as_secs_f64(),
            self.consumed,
            self.consume_time.as_secs_f64()
        )
    }
}

/// When a pipelined publish loop stops sending.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    Count(u64),
}

impl Until {
    pub fn done(&self, sent: u64, elapsed: Duration) -> bool {
        match *self {
            Until::Elapsed(d) => elapsed >= d,
            Until::Count(n) => sent >= n,
        }
    }
}
