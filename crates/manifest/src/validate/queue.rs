//! The checks of queue declarations and of services that consume a queue.

use super::*;

/// Longest lease, fsync interval: 12 hours.
const MAX_QUEUE_MS: u64 = 12 * 3600 * 1000;
/// Longest dedupe window: 7 days.
const MAX_DEDUPE_MS: u64 = 7 * 24 * 3600 * 1000;
/// Longest retention: 100 years.
const MAX_RETENTION_S: u64 = 100 * 365 * 24 * 3600;
/// Largest retention by size: 1 PiB.
const MAX_RETENTION_BYTES: u64 = 1 << 50;
/// Most deliveries before dead-lettering (0: never).
const MAX_DELIVERIES: u32 = 1_000_000;
/// Most queues a node may be allowed.
const MAX_QUEUES: u64 = 100_000;
/// Smallest and largest segment file.
const MIN_SEGMENT: u64 = 64 << 10;
const MAX_SEGMENT: u64 = 1 << 30;

/// A queue or consumer group name: it names a directory, so a restricted alphabet.
pub fn is_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(crate) const EXPECT_QUEUE_NAME: &str =
    "a name of at most 64 lowercase letters, digits, - and _, starting with a letter or digit";

/// The checks of one queue declaration; the node API uses them for queues created at run
/// time. The first problem found.
pub(crate) fn check_queue(name: &str, spec: &QueueSpec, path: &FieldPath) -> Result<(), ManifestError> {
    let mut problems = Problems::default();
    check_queue_into(name, spec, path, &mut problems);
    problems.first()
}

pub(super) fn check_queue_into(name: &str, spec: &QueueSpec, path: &FieldPath, p: &mut Problems) {
    if !is_queue_name(name) {
        p.add(invalid(
            path.clone(),
            EXPECT_QUEUE_NAME,
            format!("the name {}", quoted(name)),
        ));
    }
    p.check(within(
        path.key("fsync_interval_ms"),
        spec.fsync_interval_ms,
        1,
        MAX_QUEUE_MS,
        "milliseconds",
    ));
    p.check(within(
        path.key("lease_ms"),
        spec.lease_ms,
        1,
        MAX_QUEUE_MS,
        "milliseconds",
    ));
    p.check(within(
        path.key("dedupe_window_ms"),
        spec.dedupe_window_ms,
        0,
        MAX_DEDUPE_MS,
        "milliseconds",
    ));
    p.check(within(
        path.key("max_deliveries"),
        u64::from(spec.max_deliveries),
        0,
        u64::from(MAX_DELIVERIES),
        "deliveries",
    ));
    if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&spec.segment_bytes) {
        p.add(invalid(
            path.key("segment_bytes"),
            "between 65536 and 1073741824 bytes",
            spec.segment_bytes.to_string(),
        ));
    } else {
        // Bounded by a segment's size, so only once that size is one.
        let most = spec.segment_bytes - 4096;
        if spec.max_message_bytes == 0 || spec.max_message_bytes > most {
            p.add(invalid(
                path.key("max_message_bytes"),
                format!("between 1 and segment_bytes - 4096 ({most}) bytes"),
                spec.max_message_bytes.to_string(),
            ));
        }
    }
    let retention = path.key("retention");
    if let Some(bytes) = spec.retention.max_bytes {
        p.check(within(
            retention.key("max_bytes"),
            bytes,
            1,
            MAX_RETENTION_BYTES,
            "bytes",
        ));
    }
    if let Some(age) = spec.retention.max_age_s {
        p.check(within(retention.key("max_age_s"), age, 1, MAX_RETENTION_S, "seconds"));
    }
}

/// Every declared queue, and the node-wide bounds (`queue_limits`) with what the
/// declared queues need of them.
pub(super) fn check_queues(m: &Manifest, root: &FieldPath, p: &mut Problems) {
    for (name, spec) in &m.queues {
        check_queue_into(name, spec, &root.key("queues").key(name), p);
    }
    let limits = &m.queue_limits;
    let path = root.key("queue_limits");
    let count_ok = p.check(within(
        path.key("max_queues"),
        u64::from(limits.max_queues),
        1,
        MAX_QUEUES,
        "queues",
    ));
    if count_ok && m.queues.len() as u64 > u64::from(limits.max_queues) {
        p.add(invalid(
            root.key("queues"),
            format!("at most queue_limits.max_queues ({}) queues", limits.max_queues),
            format!("{} queues", m.queues.len()),
        ));
    }
    if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&limits.max_segment_bytes) {
        p.add(invalid(
            path.key("max_segment_bytes"),
            format!("between {MIN_SEGMENT} and {MAX_SEGMENT} bytes"),
            limits.max_segment_bytes.to_string(),
        ));
    }
    if let Some(total) = limits.max_total_bytes {
        // Each queue and its dead-letter queue hold one preallocated segment at least.
        let declared: u64 = m.queues.values().map(|q| q.segment_bytes.saturating_mul(2)).sum();
        let least = declared.max(2 * MIN_SEGMENT);
        if !(least..=MAX_RETENTION_BYTES).contains(&total) {
            p.add(invalid(
                path.key("max_total_bytes"),
                format!(
                    "between {least} and {MAX_RETENTION_BYTES} bytes (at least two segments, the queue's and its \
                     dead-letter queue's, for each declared queue)"
                ),
                total.to_string(),
            ));
        }
    }
}

pub(super) fn check_consumes(m: &Manifest, spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    let Some(consumes) = &spec.consumes else {
        return;
    };
    let path = path.key("consumes");
    if !m.queues.contains_key(&consumes.queue) {
        let declared: Vec<&str> = m.queues.keys().map(String::as_str).collect();
        let expected = if declared.is_empty() {
            "a queue declared under queues (none is)".to_string()
        } else {
            format!("a queue declared under queues ({})", declared.join(", "))
        };
        p.add(invalid(path.key("queue"), expected, quoted(&consumes.queue)));
    }
    if !is_queue_name(&consumes.group) {
        p.add(invalid(path.key("group"), EXPECT_QUEUE_NAME, quoted(&consumes.group)));
    }
    if !(1..=10_000).contains(&consumes.batch) {
        p.add(invalid(
            path.key("batch"),
            "between 1 and 10000 messages",
            consumes.batch.to_string(),
        ));
    }
    if !consumes.path.starts_with('/') {
        p.add(invalid(
            path.key("path"),
            "a path starting with /",
            quoted(&consumes.path),
        ));
    }
}
