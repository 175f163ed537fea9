//! What INFO's `commandstats`, `errorstats` and the traffic figures of its `stats`
//! section report, measured as the commands run: per worker thread, each command's (and
//! each subcommand's) calls, time, calls refused before they ran (`rejected_calls`) and
//! calls that answered an error (`failed_calls`); the error replies by their first word
//! (Redis' `errorstat_ERR`, ...); the bytes read and written; and a sampler for the
//! `instantaneous_*` rates.
//!
//! Cost per command: a clock read (the time of a command runs from the previous one's end,
//! or its batch's read, to its own end: so it includes parsing the command, which Redis'
//! `usec` does not) and a few relaxed loads and stores on counters only its worker
//! thread writes (no locked instruction, no lock, no allocation). INFO sums the workers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::table::{Spec, Subcommand, COMMANDS};

/// The error prefixes strata answers with (its own and a cluster's refusals), in the
/// order `errorstats` lists them. An error with another first word (none is expected)
/// counts only in `total_error_replies`.
pub(crate) const ERROR_PREFIXES: [&str; 8] = [
    "ERR",
    "WRONGTYPE",
    "EXECABORT",
    "NOAUTH",
    "WRONGPASS",
    "NOPROTO",
    "CROSSSLOT",
    "TRYAGAIN",
];

/// One command's (or subcommand's) counters.
#[derive(Default)]
struct Slot {
    calls: AtomicU64,
    nanos: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// One worker thread's figures; only that thread writes them.
#[repr(align(128))]
pub(crate) struct WorkerStats {
    slots: Box<[Slot]>,
    errors: [AtomicU64; ERROR_PREFIXES.len()],
    other_errors: AtomicU64,
    pub net_input: AtomicU64,
    pub net_output: AtomicU64,
}

/// Adds `n` to a counter only this thread writes (no locked instruction).
#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The slot of each command's first subcommand, after one slot per command.
fn sub_bases() -> &'static [usize] {
    static BASES: OnceLock<Vec<usize>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut next = COMMANDS.len();
        COMMANDS
            .iter()
            .map(|spec| {
                let base = next;
                next += spec.subcommands().len();
                base
            })
            .collect()
    })
}

fn slot_count() -> usize {
    COMMANDS.len() + COMMANDS.iter().map(|s| s.subcommands().len()).sum::<usize>()
}

/// The counters' slot for `spec` (and its subcommand, for a container).
#[inline]
pub(crate) fn slot_of(spec: &'static Spec, sub: Option<&'static Subcommand>) -> usize {
    let i = (spec as *const Spec as usize - COMMANDS.as_ptr() as usize) / std::mem::size_of::<Spec>();
    match sub {
        None => i,
        Some(sub) => {
            let j = (sub as *const Subcommand as usize - spec.subcommands().as_ptr() as usize)
                / std::mem::size_of::<Subcommand>();
            sub_bases()[i] + j
        }
    }
}

/// How a command ended, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// Not a known command (or subcommand): only its error is counted.
    Unknown,
    /// Refused before it ran (arity, NOAUTH, the pub/sub context).
    Rejected(usize),
    /// Queued inside MULTI: counted when EXEC runs it.
    Queued,
    /// Ran.
    Ran(usize),
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            slots: (0..slot_count()).map(|_| Slot::default()).collect(),
            errors: Default::default(),
            other_errors: AtomicU64::new(0),
            net_input: AtomicU64::new(0),
            net_output: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    /// Counts one command whose reply is `reply` (empty: none yet, a blocked command),
    /// which took from `since` to now; `since` moves to now.
    #[inline]
    pub fn record(&self, call: Call, reply: &[u8], since: &mut Instant) {
        let error = reply.first() == Some(&b'-');
        match call {
            Call::Ran(i) => {
                let now = Instant::now();
                let slot = &self.slots[i];
                bump(&slot.calls, 1);
                bump(&slot.nanos, now.saturating_duration_since(*since).as_nanos() as u64);
                *since = now;
                if error {
                    bump(&slot.failed, 1);
                }
            }
            Call::Rejected(i) => bump(&self.slots[i].rejected, 1),
            Call::Unknown | Call::Queued => {}
        }
        if error {
            self.count_error(reply);
        }
    }

    /// A command counted when it ran ([`WorkerStats::record`]) answered an error later
    /// (a blocking command refused as it started to wait).
    #[cold]
    pub fn count_failed(&self, slot: usize) {
        bump(&self.slots[slot].failed, 1);
    }

    /// Counts an error reply (`-PREFIX message`) by its first word.
    #[cold]
    pub fn count_error(&self, reply: &[u8]) {
        let word = reply[1..]
            .split(|&b| b == b' ' || b == b'\r')
            .next()
            .unwrap_or_default();
        match ERROR_PREFIXES.iter().position(|p| p.as_bytes() == word) {
            Some(i) => bump(&self.errors[i], 1),
            None => bump(&self.other_errors, 1),
        }
    }
}

/// The sum of every worker's figures.
pub(crate) struct Totals {
    /// Per slot: calls, microseconds, rejected, failed.
    pub slots: Vec<[u64; 4]>,
    pub errors: [u64; ERROR_PREFIXES.len()],
    pub error_replies: u64,
    pub net_input: u64,
    pub net_output: u64,
}

pub(crate) fn totals(workers: &[WorkerStats]) -> Totals {
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut t = Totals {
        slots: vec![[0; 4]; slot_count()],
        errors: [0; ERROR_PREFIXES.len()],
        error_replies: 0,
        net_input: 0,
        net_output: 0,
    };
    for w in workers {
        for (sum, s) in t.slots.iter_mut().zip(w.slots.iter()) {
            sum[0] += n(&s.calls);
            sum[1] += n(&s.nanos);
            sum[2] += n(&s.rejected);
            sum[3] += n(&s.failed);
        }
        for (sum, e) in t.errors.iter_mut().zip(&w.errors) {
            *sum += n(e);
        }
        t.error_replies += n(&w.other_errors);
        t.net_input += n(&w.net_input);
        t.net_output += n(&w.net_output);
    }
    for s in &mut t.slots {
        s[1] /= 1000;
    }
    t.error_replies += t.errors.iter().sum::<u64>();
    t
}

/// What INFO's counters were at the last CONFIG RESETSTAT: INFO reports what came
/// since (the counters themselves never go back, for the node's metrics and for the
/// workers that alone write them).
#[derive(Default)]
pub(crate) struct Baseline {
    at_reset: Mutex<Option<(Totals, Vec<u64>)>>,
}

impl Baseline {
    /// CONFIG RESETSTAT: INFO counts from these figures on.
    pub fn reset(&self, totals: Totals, counters: &[u64]) {
        *self.at_reset.lock().unwrap_or_else(|e| e.into_inner()) = Some((totals, counters.to_vec()));
    }

    /// Takes the figures at the last reset off `totals` and `counters`.
    pub fn since(&self, totals: &mut Totals, counters: &mut [u64]) {
        let at = self.at_reset.lock().unwrap_or_else(|e| e.into_inner());
        let Some((base, base_counters)) = &*at else {
            return;
        };
        for (now, then) in totals.slots.iter_mut().zip(&base.slots) {
            for (n, b) in now.iter_mut().zip(then) {
                *n = n.saturating_sub(*b);
            }
        }
        for (n, b) in totals.errors.iter_mut().zip(&base.errors) {
            *n = n.saturating_sub(*b);
        }
        totals.error_replies = totals.error_replies.saturating_sub(base.error_replies);
        totals.net_input = totals.net_input.saturating_sub(base.net_input);
        totals.net_output = totals.net_output.saturating_sub(base.net_output);
        for (n, b) in counters.iter_mut().zip(base_counters) {
            *n = n.saturating_sub(*b);
        }
    }
}

/// Each slot's name as INFO lists it (`get`, `client|list`).
pub(crate) fn slot_names() -> Vec<String> {
    let mut names: Vec<String> = COMMANDS.iter().map(|s| s.name.to_string()).collect();
    for spec in COMMANDS {
        names.extend(spec.subcommands().iter().map(|s| format!("{}|{}", spec.name, s.name)));
    }
    names
}

/// The `instantaneous_*` rates: Redis' method, samples of the running totals taken
/// every 100 ms (by a task of the server) and the rate over the last 16 of them.
#[derive(Default)]
pub(crate) struct Rates {
    samples: Mutex<Vec<(Instant, [u64; 3])>>,
}

/// How many samples the rates average over, and how often one is taken.
const SAMPLES: usize = 16;
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl Rates {
    /// Takes a sample of (commands, bytes in, bytes out).
    pub fn sample(&self, totals: [u64; 3]) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() == SAMPLES + 1 {
            s.remove(0);
        }
        s.push((Instant::now(), totals));
    }

    /// Commands per second, and KiB per second in and out, over the samples held (0
    /// before there are two).
    pub fn per_second(&self) -> (u64, f64, f64) {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            return (0, 0.0, 0.0);
        };
        let secs = last.0.saturating_duration_since(first.0).as_secs_f64();
        if secs <= 0.0 {
            return (0, 0.0, 0.0);
        }
        let rate = |i: usize| last.1[i].saturating_sub(first.1[i]) as f64 / secs;
        (rate(0).round() as u64, rate(1) / 1024.0, rate(2) / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::table::lookup;

    #[test]
    fn every_command_and_subcommand_has_its_own_slot() {
        let names = slot_names();
        assert_eq!(names.len(), slot_count());
        let get = lookup(b"get").unwrap();
        assert_eq!(names[slot_of(get, None)], "get");
        let client = lookup(b"client").unwrap();
        for sub in client.subcommands() {
            assert_eq!(names[slot_of(client, Some(sub))], format!("client|{}", sub.name));
        }
    }

    #[test]
    fn errors_count_by_their_first_word() {
        let w = WorkerStats::default();
        let mut t = Instant::now();
        w.record(Call::Unknown, b"-ERR unknown command\r\n", &mut t);
        w.record(Call::Ran(0), b"-WRONGTYPE Operation\r\n", &mut t);
        w.record(Call::Rejected(0), b"-NOAUTH Authentication required.\r\n", &mut t);
        w.record(Call::Ran(0), b"+OK\r\n", &mut t);
        let t = totals(std::slice::from_ref(&w));
        assert_eq!(t.errors[..4], [1, 1, 0, 1]);
        assert_eq!(t.error_replies, 3);
        assert_eq!(t.slots[0][0], 2, "calls");
        assert_eq!(t.slots[0][2], 1, "rejected");
        assert_eq!(t.slots[0][3], 1, "failed");
    }
}
