//! Samples, percentiles, the `RESULT` lines each run prints, and the report over rounds.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Latency samples in nanoseconds.
#[derive(Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`th percentile (nearest rank) in microseconds.
    pub fn percentile_us(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1] as f64 / 1000.0
    }
}

/// One machine-readable line: `RESULT TARGET ROUND key=value ...`.
pub fn result_line(target: &str, round: u32, fields: &[(&str, f64)]) -> String {
    let mut line = format!("RESULT {target} {round}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v:.2}"));
    }
    line
}

type Rows = BTreeMap<(String, String), Vec<f64>>;

fn read(path: &str) -> Result<Rows> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    let mut rows = Rows::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("RESULT") {
            continue;
        }
        let (Some(target), Some(_round)) = (words.next(), words.next()) else {
            bail!("malformed line in {path}: {line}");
        };
        for kv in words {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("malformed field {kv:?} in {path}"))?;
            let v: f64 = v
                .parse()
                .with_context(|| format!("malformed number {kv:?} in {path}"))?;
            rows.entry((target.to_string(), k.to_string())).or_default().push(v);
        }
    }
    Ok(rows)
}

fn median(rows: &Rows, target: &str, key: &str) -> Option<f64> {
    let mut v = rows.get(&(target.to_string(), key.to_string()))?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn rounds(rows: &Rows, target: &str, key: &str) -> usize {
    rows.get(&(target.to_string(), key.to_string())).map_or(0, Vec::len)
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "n/a".to_string(),
    }
}

/// Medians per target and the strata/JetStream ratios.
pub fn report(path: &str) -> Result<()> {
    let rows = read(path)?;
    let n_strata = rounds(&rows, "strata", "lat_p50_us");
    let n_js = rounds(&rows, "jetstream", "lat_p50_us");
    println!();
    println!("medians of {n_strata} strata and {n_js} JetStream rounds");
    let metrics = [
        (
            "(a) 1 publisher, wait for each ack: p50 us",
            "lat_p50_us",
            "lower is better",
        ),
        (
            "(a) 1 publisher, wait for each ack: p99 us",
            "lat_p99_us",
            "lower is better",
        ),
        ("(b) 1 publisher, 256 unacked: msgs/s", "pub_rate", "higher is better"),
        (
            "(c) consume, batches of 100 + ack: msgs/s",
            "con_rate",
            "higher is better",
        ),
    ];
    println!(
        "{:<45} {:>10} {:>10} {:>16}",
        "", "strata", "JetStream", "strata/JetStream"
    );
    for (what, key, better) in metrics {
        let s = median(&rows, "strata", key);
        let j = median(&rows, "jetstream", key);
        let ratio = match (s, j) {
            (Some(s), Some(j)) if j > 0.0 => format!("{:.2}", s / j),
            _ => "n/a".to_string(),
        };
        println!("{what:<45} {:>10} {:>10} {ratio:>16}  ({better})", cell(s), cell(j));
    }
    println!();
    println!("floors for (a), same machine, same run:");
    println!(
        "  one fdatasync of a 128-byte write into a preallocated file (same filesystem): p50 {} us, p99 {} us",
        cell(median(&rows, "fsync", "p50_us")),
        cell(median(&rows, "fsync", "p99_us"))
    );
    println!(
        "  one unloaded HTTP round trip to the node (GET /v1/health):                 p50 {} us, p99 {} us",
        cell(median(&rows, "health", "p50_us")),
        cell(median(&rows, "health", "p99_us"))
    );
    if median(&rows, "health_idle", "p50_us").is_some() {
        println!(
            "  the same, each call after the client slept (threads idle, as after a publish's wait): p50 {} us, p99 {} us",
            cell(median(&rows, "health_idle", "p50_us")),
            cell(median(&rows, "health_idle", "p99_us"))
        );
    }
    if let (Some(lat), Some(sync), Some(rtt)) = (
        median(&rows, "strata", "lat_p50_us"),
        median(&rows, "fsync", "p50_us"),
        median(&rows, "health", "p50_us"),
    ) {
        println!(
            "  strata (a) p50 {lat:.0} us is {:.0} us more than one fdatasync plus one round trip",
            lat - sync - rtt
        );
    }
    if let (Some(lat), Some(js), Some(rtt)) = (
        median(&rows, "strata", "lat_p50_us"),
        median(&rows, "jetstream", "lat_p50_us"),
        median(&rows, "health", "p50_us"),
    ) {
        println!(
            "  strata (a) p50 {lat:.0} us is {:.0} us more than JetStream's p50 plus one round trip (issue 11's target: at most 50)",
            lat - js - rtt
        );
        if let Some(idle) = median(&rows, "health_idle", "p50_us") {
            println!(
                "  strata (a) p50 is {:.0} us more than JetStream's p50 plus one round trip from idle",
                lat - js - idle
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.push(Duration::from_micros(us));
        }
        assert_eq!(l.percentile_us(50.0), 50.0);
        assert_eq!(l.percentile_us(99.0), 99.0);
        assert_eq!(l.percentile_us(100.0), 100.0);
        assert!(Latencies::default().percentile_us(50.0).is_nan());
    }
}
