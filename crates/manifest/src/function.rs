//! Functions (`functions.NAME`): event handlers started on demand, and what fires them
//! ([`TriggerSpec`]: a queue, store writes, a timer or a gateway route). How a function
//! runs as a service is in `expand`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{de, AccessSpec, FileSpec, HealthSpec, RelaySpec, RouteSpec, SetupSpec};

/// An event handler: a program serving HTTP on `$PORT` like any instance, started when
/// its trigger fires (held while it starts), kept warm for `keep_warm_ms`, scaled up to
/// `max_instances` with `concurrency` events per instance at a time. Each event is POSTed
/// to `path` (an HTTP trigger routes requests as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub run: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, deserialize_with = "de::unique_keys")]
    pub env: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de::unique_keys")]
    pub files: BTreeMap<String, FileSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupSpec>,
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub health: Option<HealthSpec>,
    #[serde(deserialize_with = "de::object")]
    pub trigger: TriggerSpec,
    /// Where events are POSTed.
    #[serde(default = "default_path")]
    pub path: String,
    /// Events one instance handles at a time; more wait or go to another instance.
    #[serde(default = "one")]
    pub concurrency: u32,
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// How long an instance stays up after its last event.
    #[serde(default = "default_keep_warm_ms")]
    pub keep_warm_ms: u64,
    /// Deadline of one invocation; past it the event counts as failed. By default a
    /// relayed request's.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// What its token (`$STRATA_TOKEN`) reaches through the platform API, as a
    /// service's; a store trigger's namespace is always included.
    #[serde(default)]
    pub access: AccessSpec,
}

fn default_path() -> String {
    "/".to_string()
}
fn one() -> u32 {
    1
}
fn default_max_instances() -> u32 {
    4
}
fn default_keep_warm_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    RelaySpec::default().timeout_ms
}

/// What fires a function: exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TriggerSpec {
    /// Messages of a queue, in batches, through a consumer group: a failed batch is
    /// redelivered, then dead-lettered after the queue's max_deliveries.
    #[serde(deserialize_with = "de::optional_object", skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueTrigger>,
    /// Writes and deletes of store keys under a prefix of a namespace.
    #[serde(deserialize_with = "de::optional_object", skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreTrigger>,
    /// A clock: every interval_ms, or on a cron schedule (UTC).
    #[serde(deserialize_with = "de::optional_object", skip_serializing_if = "Option::is_none")]
    pub timer: Option<TimerTrigger>,
    /// Requests to a gateway route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<RouteSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    pub queue: String,
    /// Consumer group; None: the function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default = "default_batch")]
    pub batch: u32,
}

fn default_batch() -> u32 {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTrigger {
    /// The store namespace (within the app) watched.
    pub namespace: String,
    /// Only keys starting with this fire.
    #[serde(default)]
    pub prefix: String,
}

/// Exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerTrigger {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Five fields (minute hour day-of-month month day-of-week) or @hourly and the like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

impl TriggerSpec {
    /// The trigger in a few words, for `strata ps`.
    pub fn describe(&self) -> String {
        if let Some(q) = &self.queue {
            format!("queue {}", q.queue)
        } else if let Some(s) = &self.store {
            format!("store {}/{}*", s.namespace, s.prefix)
        } else if let Some(t) = &self.timer {
            match (&t.interval_ms, &t.cron) {
                (Some(ms), _) => format!("timer every {ms} ms"),
                (None, Some(cron)) => format!("timer cron {cron}"),
                (None, None) => "timer".to_string(),
            }
        } else if let Some(h) = &self.http {
            format!("http {}", h.path())
        } else {
            "nothing".to_string()
        }
    }
}
