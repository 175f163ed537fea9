//! Pieces of the Prometheus text format (version 0.0.4) for `/v1/metrics`: label values
//! escaped, and the families of relayed requests (a counter by status class and a
//! latency histogram) written from the gateway's per-pool figures.

use std::fmt::Write;

use strata_gateway::metrics::{RelaySnapshot, BUCKETS};
use strata_gateway::NoAnswer;

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
        let service = escape(service);
        for (le, n) in BUCKETS.iter().zip(&s.cumulative) {
            let _ = writeln!(
                out,
                "strata_request_duration_seconds_bucket{{app=\"{app}\",service=\"{service}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "strata_request_duration_seconds_bucket{{app=\"{app}\",service=\"{service}\",le=\"+Inf\"}} {}\nstrata_request_duration_seconds_sum{{app=\"{app}\",service=\"{service}\"}} {}\nstrata_request_duration_seconds_count{{app=\"{app}\",service=\"{service}\"}} {}",
            s.count(),
            s.sum_seconds,
            s.count()
        );
    }
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
