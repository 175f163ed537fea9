//! Durable queues (`queues.NAME`, see docs/queues.md): how their writes reach the disk,
//! their segments, leases, dead letters and retention.

use serde::{Deserialize, Serialize};

use crate::de;

/// When a queue's writes reach the disk; `Deserialize` is in `de`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fdatasync before a write is acknowledged (group commit shares one sync).
    #[default]
    Always,
    /// Acknowledged once written to the OS; synced every `fsync_interval_ms`.
    Interval,
    /// Acknowledged once written to the OS; the OS decides when it reaches the disk.
    None,
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::None => "none",
        }
    }
}

/// Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSpec {
    pub fsync: FsyncPolicy,
    /// With `fsync: interval`, the time between syncs.
    pub fsync_interval_ms: u64,
    /// Size of one preallocated log segment file.
    pub segment_bytes: u64,
    /// Largest message body accepted; larger gets 413.
    pub max_message_bytes: u64,
    /// How long a fetched message stays leased to its group before it is redelivered.
    pub lease_ms: u64,
    /// Deliveries after which a message moves to the queue `NAME.dlq`; 0: never.
    pub max_deliveries: u32,
    /// A publish whose dedupe id was seen this recently stores nothing.
    pub dedupe_window_ms: u64,
    #[serde(deserialize_with = "de::object")]
    pub retention: RetentionSpec,
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 100,
            segment_bytes: 16 << 20,
            max_message_bytes: 1 << 20,
            lease_ms: 30_000,
            max_deliveries: 5,
            dedupe_window_ms: 120_000,
            retention: RetentionSpec::default(),
        }
    }
}

/// Limits past which the oldest segments are dropped even if unconsumed. None: no limit
/// (a segment is dropped once every group has deleted all of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
}

/// Node-wide bounds on the queues (`queue_limits`): how many there may be, how much disk
/// their segments may take, and how large a segment a queue created through the node API
/// may have. Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueLimitsSpec {
    /// Most queues on the node, declared or created through the node API (dead-letter
    /// queues not counted). A create past it is refused; queues already stored stay.
    pub max_queues: u32,
    /// Most bytes the queues' segment files may take on disk together, each counted at
    /// its preallocated size (dead-letter queues included). None: no bound. A publish
    /// that needs a new segment past it is refused (503) and nothing stored is dropped to
    /// make room; consumers deleting messages free whole segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<u64>,
    /// Largest `segment_bytes` of a queue created through the node API (a create asks
    /// for two such files: the queue's and its dead-letter queue's). Declared queues are
    /// bounded by the manifest's own checks (1 GiB).
    pub max_segment_bytes: u64,
}

impl Default for QueueLimitsSpec {
    fn default() -> Self {
        QueueLimitsSpec {
            max_queues: 1000,
            max_total_bytes: None,
            max_segment_bytes: 16 << 20,
        }
    }
}
