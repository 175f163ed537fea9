//! The app manifest (`strata.json`): the desired state of an app.
//!
//! Layout:
//! - [`Manifest`] and the `*Spec` types: the serde model of the file, version 1,
//!   unknown fields rejected.
//! - [`parse`]: JSON text to a validated manifest; every error names the field path,
//!   what was expected and what was found.
//! - `error`: [`ManifestError`], whose messages name the field path, what was expected
//!   and what was found; serde's errors are reworded into it.
//! - `validate`: the checks serde cannot express (bounds, names, paths, routes, binding
//!   cycles).
//! - `cron`: [`Cron`], the five-field schedules of timer-triggered functions (UTC).
//! - `de`: hand-written `Deserialize` impls: routes, setup steps and files (where
//!   serde's `untagged` would name no field), call modes, structs written only as
//!   objects, maps without duplicate keys.
//!
//! The JSON Schema in `schema/strata.schema.json` ([`SCHEMA`]) describes the same model;
//! the crate's tests keep the two in sync.
//!
//! This crate knows nothing of processes or HTTP: it only says what is wanted.

mod cron;
mod de;
mod error;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use cron::Cron;
pub use error::ManifestError;

/// The only manifest version this build understands.
pub const VERSION: u32 = 1;

/// The JSON Schema of the manifest, shipped with the binary.
pub const SCHEMA: &str = include_str!("../../../schema/strata.schema.json");

/// An app manifest. Build one with [`parse`] or [`load`]: deserializing it directly
/// skips the checks of `validate` and accepts a struct written as an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; must be [`VERSION`].
    pub strata: u32,
    /// App name: namespaces logs, state and the platform API.
    pub app: String,
    #[serde(default, deserialize_with = "de::object")]
    pub gateway: GatewaySpec,
    /// May be empty when the app has functions.
    #[serde(default, deserialize_with = "de::unique_objects")]
    pub services: BTreeMap<String, ServiceSpec>,
    /// Durable queues by name (see docs/queues.md).
    #[serde(
        default,
        deserialize_with = "de::unique_objects",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub queues: BTreeMap<String, QueueSpec>,
    /// The node's cache: where it speaks the Redis protocol, and its memory bound.
    #[serde(default, deserialize_with = "de::object")]
    pub cache: CacheSpec,
    /// Read-through caches in front of store namespaces, by name.
    #[serde(
        default,
        deserialize_with = "de::unique_objects",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub caches: BTreeMap<String, ReadThroughSpec>,
    /// Event handlers by name: programs started on demand when their trigger fires, kept
    /// warm for a while and scaled like services (see [`FunctionSpec`]).
    #[serde(
        default,
        deserialize_with = "de::unique_objects",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub functions: BTreeMap<String, FunctionSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Address of the Redis-protocol listener; None: no Redis port.
    #[serde(default = "default_cache_listen", skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Memory the cache may hold (keys and values) before it evicts.
    #[serde(default = "default_cache_max_memory_mb")]
    pub max_memory_mb: u64,
    /// Threads serving the Redis protocol; 0: one per core. One by default: on a machine
    /// whose cores the clients share, a second thread measured worse p99 at no gain.
    #[serde(default = "one")]
    pub threads: u32,
}

fn default_cache_listen() -> Option<String> {
    Some("127.0.0.1:6380".to_string())
}
fn default_cache_max_memory_mb() -> u64 {
    256
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            listen: default_cache_listen(),
            max_memory_mb: default_cache_max_memory_mb(),
            threads: 1,
        }
    }
}

/// A cache in front of a store namespace: a miss loads from the store (one load per key
/// however many ask), a value is fresh for `ttl_ms`, then served stale for up to
/// `stale_ms` more while it is refreshed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadThroughSpec {
    /// The store namespace (within the app) it reads.
    pub namespace: String,
    #[serde(default = "default_rt_ttl_ms")]
    pub ttl_ms: u64,
    #[serde(default)]
    pub stale_ms: u64,
}

fn default_rt_ttl_ms() -> u64 {
    60_000
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// With `fsync: interval`, the time between syncs.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Size of one preallocated log segment file.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Largest message body accepted; larger gets 413.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// How long a fetched message stays leased to its group before it is redelivered.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Deliveries after which a message moves to the queue `NAME.dlq`; 0: never.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// A publish whose dedupe id was seen this recently stores nothing.
    #[serde(default = "default_dedupe_window_ms")]
    pub dedupe_window_ms: u64,
    #[serde(default, deserialize_with = "de::object")]
    pub retention: RetentionSpec,
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: default_fsync_interval_ms(),
            segment_bytes: default_segment_bytes(),
            max_message_bytes: default_max_message_bytes(),
            lease_ms: default_lease_ms(),
            max_deliveries: default_max_deliveries(),
            dedupe_window_ms: default_dedupe_window_ms(),
            retention: RetentionSpec::default(),
        }
    }
}

fn default_fsync_interval_ms() -> u64 {
    100
}
fn default_segment_bytes() -> u64 {
    16 << 20
}
fn default_max_message_bytes() -> u64 {
    1 << 20
}
fn default_lease_ms() -> u64 {
    30_000
}
fn default_max_deliveries() -> u32 {
    5
}
fn default_dedupe_window_ms() -> u64 {
    120_000
}

/// Limits past which the oldest segments are dropped even if unconsumed. None: no limit
/// (a segment is dropped once every group has deleted all of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
}

/// A service fed by push from a queue's consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumesSpec {
    pub queue: String,
    pub group: String,
    /// Most messages in one delivered batch.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Path the batches are POSTed to.
    pub path: String,
}

fn default_batch() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Address the first tier listens on, `host:port`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request header block accepted; larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest request body accepted; larger gets 413. None: unlimited (streamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// A client that has not sent its whole header block by then gets 408 and a close.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            listen: default_listen(),
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: None,
            header_read_timeout_ms: default_header_read_timeout_ms(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// argv of the instance program; `${NAME}` expands from the instance env.
    pub run: Vec<String>,
    /// Working directory, relative to the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, deserialize_with = "de::unique_keys")]
    pub env: BTreeMap<String, String>,
    /// Files placed into each instance's scratch dir: relative path -> content or source.
    #[serde(default, deserialize_with = "de::unique_keys")]
    pub files: BTreeMap<String, FileSpec>,
    /// Install step run before the first launch, skipped while its inputs are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupSpec>,
    #[serde(default, deserialize_with = "de::object")]
    pub instances: InstancesSpec,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub health: Option<HealthSpec>,
    /// Services that must have a ready instance before this one starts.
    #[serde(default)]
    pub bindings: Vec<String>,
    #[serde(default, deserialize_with = "de::object")]
    pub resources: ResourcesSpec,
    #[serde(default, deserialize_with = "de::object")]
    pub placement: PlacementSpec,
    #[serde(default, deserialize_with = "de::object")]
    pub relay: RelaySpec,
    /// Time between SIGTERM and SIGKILL when an instance is stopped.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// A queue whose messages strata delivers to the instances by push.
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub consumes: Option<ConsumesSpec>,
    /// Grow and shrink the pool between instances.min and instances.max with the load.
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub autoscale: Option<AutoscaleSpec>,
    /// Set on the services [`Manifest::expanded`] makes of functions: what triggers it.
    #[serde(skip)]
    pub function: Option<String>,
}

/// How a pool follows its load. The autoscaler is driven by events (a member reaching
/// its concurrency target, a request held at zero, a publish to a consumed queue) and
/// samples every 100 ms while a pool has work. Its recommendation is the largest of
/// in-flight / `concurrency`, backlog / `backlog` and (with `latency_ms`) the pool
/// scaled by mean latency / `latency_ms`. A higher count is taken once recommended for
/// the whole `up_window_ms`, a lower one once nothing higher was recommended for
/// `down_window_ms`; a recommendation of at least twice the current count, or a backlog
/// growing faster than the pool drains it, is overload and is taken at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleSpec {
    /// Requests in flight per instance the pool is sized for.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// For a service that consumes a queue: unprocessed messages per instance.
    #[serde(default = "default_backlog")]
    pub backlog: u64,
    /// Mean request latency above which the pool grows; None: latency is not a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default = "default_up_window_ms")]
    pub up_window_ms: u64,
    #[serde(default = "default_down_window_ms")]
    pub down_window_ms: u64,
    /// Most instances one decision adds; 0: no bound.
    #[serde(default)]
    pub max_step_up: u32,
    /// Most instances one decision removes; 0: no bound.
    #[serde(default)]
    pub max_step_down: u32,
    /// Once the pool is at instances.max, requests in flight per instance past which more
    /// are shed (503 with Retry-After). None: 4 x concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inflight: Option<u32>,
}

fn default_concurrency() -> u32 {
    10
}
fn default_backlog() -> u64 {
    100
}
fn default_up_window_ms() -> u64 {
    1_000
}
fn default_down_window_ms() -> u64 {
    30_000
}

impl Default for AutoscaleSpec {
    fn default() -> Self {
        AutoscaleSpec {
            concurrency: default_concurrency(),
            backlog: default_backlog(),
            latency_ms: None,
            up_window_ms: default_up_window_ms(),
            down_window_ms: default_down_window_ms(),
            max_step_up: 0,
            max_step_down: 0,
            max_inflight: None,
        }
    }
}

impl AutoscaleSpec {
    /// In-flight requests per instance past which a pool at its max sheds.
    pub fn shed_at(&self) -> u32 {
        self.max_inflight.unwrap_or(self.concurrency.saturating_mul(4))
    }
}

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
    #[serde(default = "default_function_path")]
    pub path: String,
    /// Events one instance handles at a time; more wait or go to another instance.
    #[serde(default = "one")]
    pub concurrency: u32,
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// How long an instance stays up after its last event.
    #[serde(default = "default_keep_warm_ms")]
    pub keep_warm_ms: u64,
    /// Deadline of one invocation; past it the event counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_function_path() -> String {
    "/".to_string()
}
fn default_max_instances() -> u32 {
    4
}
fn default_keep_warm_ms() -> u64 {
    60_000
}

/// What fires a function: exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// Messages of a queue, in batches, through a consumer group: a failed batch is
    /// redelivered, then dead-lettered after the queue's max_deliveries.
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue: Option<QueueTrigger>,
    /// Writes and deletes of store keys under a prefix of a namespace.
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub store: Option<StoreTrigger>,
    /// A clock: every interval_ms, or on a cron schedule (UTC).
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub timer: Option<TimerTrigger>,
    /// Requests to a gateway route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<RouteSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    pub queue: String,
    /// Consumer group; None: the function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default = "default_function_batch")]
    pub batch: u32,
}

fn default_function_batch() -> u32 {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Five fields (minute hour day-of-month month day-of-week) or @hourly and the like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

impl FunctionSpec {
    /// The service that runs this function (see [`Manifest::expanded`]).
    pub fn service(&self, name: &str) -> ServiceSpec {
        ServiceSpec {
            run: self.run.clone(),
            workdir: self.workdir.clone(),
            env: self.env.clone(),
            files: self.files.clone(),
            setup: self.setup.clone(),
            instances: InstancesSpec {
                min: 0,
                max: self.max_instances,
                initial: None,
                idle_timeout_ms: self.keep_warm_ms,
            },
            routes: self.trigger.http.iter().cloned().collect(),
            health: self.health.clone(),
            bindings: Vec::new(),
            resources: ResourcesSpec::default(),
            placement: PlacementSpec::default(),
            relay: RelaySpec {
                timeout_ms: self.timeout_ms,
                attempt_timeout_ms: self.timeout_ms,
                retries: 0,
            },
            stop_grace_ms: default_stop_grace_ms(),
            consumes: self.trigger.queue.as_ref().map(|q| ConsumesSpec {
                queue: q.queue.clone(),
                group: q.group.clone().unwrap_or_else(|| name.to_string()),
                batch: q.batch,
                path: self.path.clone(),
            }),
            autoscale: Some(AutoscaleSpec {
                concurrency: self.concurrency,
                // A batch is one event: a pool is sized for `concurrency` batches each.
                backlog: u64::from(self.concurrency) * u64::from(self.trigger.queue.as_ref().map_or(1, |q| q.batch)),
                up_window_ms: 0,
                max_inflight: Some(self.concurrency),
                ..AutoscaleSpec::default()
            }),
            function: Some(self.trigger.describe()),
        }
    }
}

fn default_stop_grace_ms() -> u64 {
    5_000
}

/// Exactly one of `content` or `source` (see `de` for why `Deserialize` is hand-written).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FileSpec {
    /// Literal content; `${NAME}` expands from the instance env.
    Content { content: String },
    /// A file copied from the app, relative to the manifest's directory.
    Source { source: String },
}

/// An argv array or a [`SetupFull`] object (see `de` for the hand-written `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SetupSpec {
    /// Just the argv; the inputs are the argv, env and workdir.
    Argv(Vec<String>),
    /// argv plus files whose content also counts as input (for example requirements.txt).
    Full(SetupFull),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupFull {
    pub run: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<String>,
}

impl SetupSpec {
    pub fn argv(&self) -> &[String] {
        match self {
            SetupSpec::Argv(argv) => argv,
            SetupSpec::Full(full) => &full.run,
        }
    }
    pub fn inputs(&self) -> &[String] {
        match self {
            SetupSpec::Argv(_) => &[],
            SetupSpec::Full(full) => &full.inputs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancesSpec {
    #[serde(default = "one")]
    pub min: u32,
    #[serde(default = "one")]
    pub max: u32,
    /// Instances launched at start; defaults to `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<u32>,
    /// With `min: 0`, how long without a request before the last instance is stopped. A
    /// request to a service with no instance is held at the gateway while one starts.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

fn default_idle_timeout_ms() -> u64 {
    300_000
}

fn one() -> u32 {
    1
}

impl Default for InstancesSpec {
    fn default() -> Self {
        InstancesSpec {
            min: 1,
            max: 1,
            initial: None,
            idle_timeout_ms: default_idle_timeout_ms(),
        }
    }
}

impl InstancesSpec {
    pub fn initial(&self) -> u32 {
        self.initial.unwrap_or(self.min)
    }
}

/// A path string or a [`RouteFull`] object (see `de` for the hand-written `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RouteSpec {
    /// A path prefix.
    Prefix(String),
    Full(RouteFull),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFull {
    /// Path prefix, starting with `/`.
    pub path: String,
    /// Only requests whose Host (without port) equals this match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `any` (one load-aware member, the default) or `all` (broadcast, replies gathered).
    #[serde(default)]
    pub mode: CallMode,
}

impl RouteSpec {
    pub fn path(&self) -> &str {
        match self {
            RouteSpec::Prefix(p) => p,
            RouteSpec::Full(f) => &f.path,
        }
    }
    pub fn host(&self) -> Option<&str> {
        match self {
            RouteSpec::Prefix(_) => None,
            RouteSpec::Full(f) => f.host.as_deref(),
        }
    }
    pub fn mode(&self) -> CallMode {
        match self {
            RouteSpec::Prefix(_) => CallMode::Any,
            RouteSpec::Full(f) => f.mode,
        }
    }
}

/// How a routed request is relayed; `Deserialize` is in `de`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    #[default]
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Path answered with 2xx when the instance is ready and alive.
    pub path: String,
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failed liveness checks before the instance is restarted.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long a starting instance may take to become ready before it is restarted.
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u64,
}

fn default_health_interval_ms() -> u64 {
    1_000
}
fn default_health_timeout_ms() -> u64 {
    1_000
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_start_timeout_ms() -> u64 {
    60_000
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// Memory reserved per instance; an instance that does not fit is not launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Accelerators (GPUs) reserved per instance.
    #[serde(default)]
    pub accelerators: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    /// Node label whose values the instances are spread over (for example `power`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySpec {
    /// Deadline of a relayed request, all attempts included; past it the client gets 504.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// One attempt that has not answered by then is abandoned (and reissued when safe).
    #[serde(default = "default_attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
    /// Reissues allowed per request, beyond the first attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

impl Default for RelaySpec {
    fn default() -> Self {
        RelaySpec {
            timeout_ms: default_timeout_ms(),
            attempt_timeout_ms: default_attempt_timeout_ms(),
            retries: default_retries(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_attempt_timeout_ms() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    2
}

/// Parses and validates manifest text.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let manifest: Manifest = match serde_path_to_error::deserialize(&mut de) {
        Ok(de::Object(manifest)) => manifest,
        Err(err) => {
            // A manifest of another version is reported as such, not as a field this
            // version happens not to know.
            return Err(validate::version_error(text).unwrap_or_else(|| ManifestError::from_serde(err)));
        }
    };
    // Text after the closing brace is a syntax error too.
    de.end().map_err(ManifestError::from_json)?;
    validate::validate(&manifest)?;
    Ok(manifest)
}

pub use validate::is_queue_name;

/// Checks a queue declared at run time (through the node API) as if it were
/// `queues.NAME` in a manifest.
pub fn check_queue(name: &str, spec: &QueueSpec) -> Result<(), ManifestError> {
    validate::check_queue(name, spec, &error::FieldPath::root().key("queues").key(name))
}

/// Reads, parses and validates a manifest file.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&text)
}

impl Manifest {
    /// The manifest with every function also written as the service that runs it:
    /// instances.min 0 (started on demand, stopped after keep_warm_ms), autoscaled on
    /// its concurrency, with a route for an HTTP trigger and consumes for a queue one.
    pub fn expanded(&self) -> Manifest {
        let mut m = self.clone();
        for (name, f) in &self.functions {
            m.services.insert(name.clone(), f.service(name));
        }
        m
    }

    /// Services in an order where every service comes after the ones it binds to.
    ///
    /// Deterministic (ties broken by name). On a manifest that did not pass validation,
    /// unknown bindings are skipped and a cycle is cut where it closes.
    pub fn start_order(&self) -> Vec<String> {
        fn visit<'a>(m: &'a Manifest, name: &'a str, seen: &mut BTreeSet<&'a str>, order: &mut Vec<String>) {
            let Some(spec) = m.services.get(name) else {
                return;
            };
            if !seen.insert(name) {
                return;
            }
            for dep in &spec.bindings {
                visit(m, dep, seen, order);
            }
            order.push(name.to_string());
        }
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in self.services.keys() {
            visit(self, name, &mut seen, &mut order);
        }
        order
    }
}
