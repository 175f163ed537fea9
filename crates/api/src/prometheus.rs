//! Pieces of the Prometheus text format (version 0.0.4) for `/v1/metrics`: label values
//! escaped, and the families of relayed requests (a counter by status class and a
//! latency histogram) written from the gateway's per-pool figures, and topic deliveries.

use std::fmt::Write;

use strata_gateway::metrics::RelaySnapshot;
use strata_gateway::NoAnswer;
use strata_os::histogram::{HistogramSnapshot, BOUNDS};

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub(crate) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.into()
}

/// `strata_requests_total` and `strata_request_duration_seconds` for each service.
pub(crate) fn relay_families(out: &mut String, app: &str, services: &[(String, RelaySnapshot)]) {
    let app = escape(app);
    let _ = writeln!(
        out,
        "# HELP strata_requests_total Requests relayed to the service by the gateway and by the node API's /v1/any and /v1/all, by the status class of the member's reply; code=\"none\" when no member replied, by reason.\n# TYPE strata_requests_total counter"
    );
    for (service, s) in services {
        let service = escape(service);
        for (i, n) in s.classes.iter().enumerate() {
            // 1xx only once there is one (a switch of protocols is relayed elsewhere).
            if i == 0 && *n == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "strata_requests_total{{app=\"{app}\",service=\"{service}\",code=\"{}xx\"}} {n}",
                i + 1
            );
        }
        for (why, n) in NoAnswer::ALL.iter().zip(s.unanswered) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "strata_requests_total{{app=\"{app}\",service=\"{service}\",code=\"none\",reason=\"{}\"}} {n}",
                    why.label()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP strata_request_duration_seconds Time from a request's arrival at the relay (gateway or /v1/any, /v1/all) until the member's reply head was back, or until the relay answered itself.\n# TYPE strata_request_duration_seconds histogram"
    );
    for (service, s) in services {
        let labels = format!("app=\"{app}\",service=\"{}\"", escape(service));
        histogram(out, "strata_request_duration_seconds", &labels, &s.latency);
    }
}

/// `strata_queue_fsync_duration_seconds` for each queue with a file of its own.
pub(crate) fn fsync_family(out: &mut String, app: &str, queues: &[(String, HistogramSnapshot)]) {
    if queues.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP strata_queue_fsync_duration_seconds Time to make one committed batch of a queue durable (fdatasync of its files), with fsync \"always\" or at each interval.\n# TYPE strata_queue_fsync_duration_seconds histogram"
    );
    let app = escape(app);
    for (queue, h) in queues {
        let labels = format!("app=\"{app}\",queue=\"{}\"", escape(queue));
        histogram(out, "strata_queue_fsync_duration_seconds", &labels, h);
    }
}

/// `strata_topic_messages_total`: each service subscription's messages, by outcome
/// (delivered: a 2xx; failed: no 2xx or no instance, dropped; dropped: its mailbox
/// was full). In `all` mode, one per instance reached.
pub(crate) fn topic_family(out: &mut String, app: &str, subscribers: &[strata_cache::TopicStats]) {
    if subscribers.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP strata_topic_messages_total Messages of a topic for a subscribing service, by outcome: delivered (a 2xx), failed (no 2xx, or no instance: dropped, never retried), dropped (the subscription already held 1024 messages or 8 MiB).\n# TYPE strata_topic_messages_total counter"
    );
    let app = escape(app);
    for s in subscribers {
        let labels = format!(
            "app=\"{app}\",service=\"{}\",topic=\"{}\"",
            escape(&s.subscriber),
            escape(&s.topic)
        );
        for (outcome, n) in [("delivered", s.delivered), ("failed", s.failed), ("dropped", s.dropped)] {
            let _ = writeln!(out, "strata_topic_messages_total{{{labels},outcome=\"{outcome}\"}} {n}");
        }
    }
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram.
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (le, n) in BOUNDS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
        h.count(),
        h.sum_seconds(),
        h.count()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("web"), "web");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
