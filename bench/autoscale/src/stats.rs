//! Percentiles, medians, and printing milliseconds.

use serde_json::Value;

/// Nearest-rank percentile (100: the maximum); None for no samples.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// `12.3 ms`, or `-` for a missing figure.
pub fn fmt_ms(v: &Value) -> String {
    match v.as_f64() {
        Some(ms) => fmt_f(ms),
        None => "-".to_string(),
    }
}

pub fn fmt_f(ms: f64) -> String {
    if ms.abs() >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}
