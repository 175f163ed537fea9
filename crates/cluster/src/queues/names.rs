//! How a queue maps onto JetStream: stream and subject names, the stream and consumer
//! configurations, the headers that carry a message's attributes, and the ack subject of
//! a delivery (read, and rebuilt for an offset this node did not hand out).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::HeaderMap;
use strata_manifest::QueueSpec;
use strata_queue::{NewMessage, DLQ_SUFFIX};

/// Metadata keys on every queue stream: what makes a stream one of ours, and the spec a
/// node that did not create the queue needs.
pub(crate) const META_PREFIX: &str = "strata.prefix";
pub(crate) const META_QUEUE: &str = "strata.queue";
pub(crate) const META_SPEC: &str = "strata.spec";

/// The headers of a message's attributes (the dedupe id is JetStream's own `Nats-Msg-Id`).
pub(crate) const REPLY_TO: &str = "Strata-Reply-To";
pub(crate) const CORRELATION_ID: &str = "Strata-Correlation-Id";
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// The publisher's W3C trace context, under the name W3C gives it.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// A dead letter's origin (`strata_queue::DeadLetter::text`), on its copy in `NAME.dlq`.
pub(crate) const DEAD_LETTER: &str = "Strata-Dead-Letter";

/// Room for headers above `max_message_bytes` in a stream's `max_msg_size` (which counts
/// headers too): the attributes at their largest (1 KiB each) and their names.
pub(crate) const HEADER_ROOM: u64 = 8 << 10;

/// The shortest dedupe window JetStream takes.
pub(crate) const MIN_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);

/// The names of one prefix's streams and subjects. The prefix is one subject token
/// (letters, digits, `-`, `_`) so that it can also start a stream name.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub prefix: String,
}

impl Names {
    /// The stream of queue `name` (`NAME` or `NAME.dlq`): `{prefix}_q_NAME`, and
    /// `{prefix}_q_NAME_DLQ` for a dead-letter queue (queue names are lowercase, so the
    /// two cannot meet).
    pub fn stream(&self, name: &str) -> String {
        match name.strip_suffix(DLQ_SUFFIX) {
            Some(main) => format!("{}_q_{main}_DLQ", self.prefix),
            None => format!("{}_q_{name}", self.prefix),
        }
    }

    /// The subject a publish to queue `name` goes to: `{prefix}.q.NAME`, or
    /// `{prefix}.q.NAME.dlq` for a dead-letter queue (whose stream also takes
    /// `{prefix}.q.NAME.dlq.GROUP`, the dead letters of one group).
    pub fn subject(&self, name: &str) -> String {
        format!("{}.q.{name}", self.prefix)
    }

    /// Where the dead letters of `group` of queue `main` go.
    pub fn dead_letter_subject(&self, main: &str, group: &str) -> String {
        format!("{}.q.{main}{DLQ_SUFFIX}.{group}", self.prefix)
    }

    /// Every subject of this prefix's queue streams, to list them.
    pub fn all_queues(&self) -> String {
        format!("{}.q.>", self.prefix)
    }

    /// A core NATS subject every node listens on: a publish to queue `name` is announced
    /// here (no payload), so that `changed()` wakes on every node.
    pub fn wake(&self, name: &str) -> String {
        format!("{}.wake.{name}", self.prefix)
    }

    /// The wake subjects of every queue, and the queue a wake subject names.
    pub fn all_wakes(&self) -> String {
        format!("{}.wake.>", self.prefix)
    }

    pub fn woken<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(&self.prefix)?.strip_prefix(".wake.")
    }

    /// The core NATS subject of a reply inbox (`inbox:ID` in a message's reply-to).
    pub fn inbox(&self, id: &str) -> String {
        format!("{}.inbox.{id}", self.prefix)
    }

    /// The stream of `name` with `spec`, replicated `replicas` times.
    pub fn stream_config(&self, name: &str, spec: &QueueSpec, replicas: usize) -> stream::Config {
        let subject = self.subject(name);
        let subjects = if name.ends_with(DLQ_SUFFIX) {
            vec![subject.clone(), format!("{subject}.*")]
        } else {
            vec![subject]
        };
        let max_age = spec.retention.max_age_s.map_or(Duration::ZERO, Duration::from_secs);
        let duplicate_window = dedupe_window(spec);
        let metadata = HashMap::from([
            (META_PREFIX.to_string(), self.prefix.clone()),
            (META_QUEUE.to_string(), name.to_string()),
            (
                META_SPEC.to_string(),
                serde_json::to_string(spec).expect("a spec serializes"),
            ),
        ]);
        stream::Config {
            name: self.stream(name),
            description: Some(format!("strata queue {name}")),
            subjects,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: replicas,
            max_message_size: i32::try_from(spec.max_message_bytes.saturating_add(HEADER_ROOM)).unwrap_or(i32::MAX),
            max_bytes: spec
                .retention
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            max_messages: -1,
            max_age,
            duplicate_window,
            metadata,
            ..Default::default()
        }
    }
}

/// The stream's dedupe window for `spec`: JetStream's least is 100 ms (0 is its default,
/// 2 minutes: a queue that does not dedupe sends no ids, see `headers`), and none longer
/// than the retention's age.
pub(crate) fn dedupe_window(spec: &QueueSpec) -> Duration {
    let mut window = Duration::from_millis(spec.dedupe_window_ms);
    if !window.is_zero() {
        window = window.max(MIN_DUPLICATE_WINDOW);
    }
    match spec.retention.max_age_s {
        Some(age) if age > 0 => window.min(Duration::from_secs(age)),
        _ => window,
    }
}

/// The durable pull consumer of `group`: explicit acks, the queue's lease as `ack_wait`,
/// no `max_deliver` (dead letters are moved by the fetch that sees one delivery too
/// many, see `handle`), no bound on what may be leased at once.
pub(crate) fn consumer_config(group: &str, spec: &QueueSpec) -> pull::Config {
    pull::Config {
        durable_name: Some(group.to_string()),
        description: Some(format!("strata consumer group {group}")),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_millis(spec.lease_ms),
        max_deliver: -1,
        max_ack_pending: -1,
        ..Default::default()
    }
}

/// The spec a dead-letter queue gets: its queue's, never dead-lettering, kept whole.
pub(crate) fn dlq_spec(spec: &QueueSpec) -> QueueSpec {
    QueueSpec {
        max_deliveries: 0,
        retention: Default::default(),
        ..spec.clone()
    }
}

/// The headers of `message` (None when it has no attribute; the dedupe id only when the
/// queue dedupes) and the bytes they take on the wire.
pub(crate) fn headers(message: &NewMessage, dedupe: bool) -> (Option<HeaderMap>, usize) {
    let dedupe_id = message.dedupe_id.as_ref().filter(|_| dedupe);
    let attrs = [
        (MSG_ID, dedupe_id),
        (REPLY_TO, message.reply_to.as_ref()),
        (CORRELATION_ID, message.correlation_id.as_ref()),
        (TRACEPARENT, message.traceparent.as_ref()),
    ];
    let mut headers = HeaderMap::new();
    // "NATS/1.0\r\n", each "Name: value\r\n", the closing "\r\n".
    let mut len = 12;
    for (name, value) in attrs {
        if let Some(value) = value {
            let value = encode_value(value);
            len += name.len() + 4 + value.len();
            headers.insert(name, value.as_str());
        }
    }
    if headers.is_empty() {
        (None, 0)
    } else {
        (Some(headers), len)
    }
}

/// A header's value as text (as [`encode_value`] wrote it).
pub(crate) fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers?.get(name).map(|v| decode_value(v.as_str()))
}

/// An attribute as a header value: a message's attributes are any text, a header value
/// is one line of visible ASCII (trimmed by the parser), so `%`, spaces, control
/// characters and every byte past ASCII are written `%XX`.
pub(crate) fn encode_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text [`encode_value`] wrote.
pub(crate) fn decode_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the ack subject of a delivery says (`$JS.ACK.<stream>.<consumer>.<delivered>.
/// <stream seq>.<consumer seq>.<timestamp>.<pending>`, or the 11-token form with domain
/// and account hash in front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub deliveries: u64,
    pub stream_seq: u64,
    pub timestamp_ns: u64,
}

pub(crate) fn parse_ack_subject(subject: &str) -> Option<Delivery> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    // The 9-token form has the stream at 2; the 11-or-more-token form at 4.
    let at = if tokens.len() == 9 { 2 } else { 4 };
    if tokens.len() < at + 7 {
        return None;
    }
    Some(Delivery {
        deliveries: tokens[at + 2].parse().ok()?,
        stream_seq: tokens[at + 3].parse().ok()?,
        timestamp_ns: tokens[at + 5].parse().ok()?,
    })
}

/// An ack subject for stream sequence `stream_seq` of `consumer`, for an offset this node
/// did not hand out. nats-server (`consumer.go`, `processAckMsg`) finds an explicit ack's
/// message by its stream sequence among those pending; a nak (`processNak`) also wants
/// the consumer sequence within what it delivered and has not seen acked, so the caller
/// gives the consumer's last delivered one. Delivery count, timestamp and pending are
/// only reported, not checked.
pub(crate) fn rebuilt_ack_subject(stream: &str, consumer: &str, stream_seq: u64, consumer_seq: u64) -> String {
    format!("$JS.ACK.{stream}.{consumer}.1.{stream_seq}.{consumer_seq}.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_of_both_forms_are_read() {
        let v1 = parse_ack_subject("$JS.ACK.s_q_a.g.3.100.7.1790230470084404000.42").unwrap();
        assert_eq!(
            v1,
            Delivery {
                deliveries: 3,
                stream_seq: 100,
                timestamp_ns: 1790230470084404000
            }
        );
        let v2 = parse_ack_subject("$JS.ACK._.szMpdrwD.s_q_a.g.2.50.9.1790230470084404000.0.rand").unwrap();
        assert_eq!((v2.deliveries, v2.stream_seq), (2, 50));
        assert_eq!(parse_ack_subject("_INBOX.x.y"), None);
        let rebuilt = rebuilt_ack_subject("s_q_a", "g", 12, 40);
        assert_eq!(parse_ack_subject(&rebuilt).unwrap().stream_seq, 12);
    }

    #[test]
    fn any_attribute_survives_a_header() {
        for value in ["c-1", "with space", "line\r\nInjected: yes", "100%", "ünïcode ✓", " x "] {
            let encoded = encode_value(value);
            assert!(encoded.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{encoded}");
            assert_eq!(decode_value(&encoded), value);
        }
        assert_eq!(encode_value("order-17"), "order-17");
    }

    #[test]
    fn a_queue_and_its_dead_letter_queue_have_distinct_streams_and_subjects() {
        let names = Names {
            prefix: "strata".into(),
        };
        assert_eq!(names.stream("orders"), "strata_q_orders");
        assert_eq!(names.stream("orders.dlq"), "strata_q_orders_DLQ");
        assert_eq!(names.subject("orders.dlq"), "strata.q.orders.dlq");
        assert_eq!(
            names.dead_letter_subject("orders", "billing"),
            "strata.q.orders.dlq.billing"
        );
        let dlq = names.stream_config("orders.dlq", &QueueSpec::default(), 3);
        assert_eq!(dlq.subjects, ["strata.q.orders.dlq", "strata.q.orders.dlq.*"]);
        assert_eq!(names.woken("strata.wake.orders.dlq"), Some("orders.dlq"));
    }
}
