//! A service (`services.NAME`): a pool of identical instances of one program, and the
//! parts of its spec that say how an instance is launched ([`FileSpec`], [`SetupSpec`]),
//! how many run ([`InstancesSpec`]), when one is healthy ([`HealthSpec`]), what it
//! reserves and where it runs ([`ResourcesSpec`], [`PlacementSpec`]), the queue it
//! is fed from ([`ConsumesSpec`]), the topics it subscribes to (`subscribes`), and what
//! runs an instance ([`Driver`]: a process, or
//! a container with an image and a user). Its routes and relay settings are in
//! `gateway`, its scaling policy in `autoscale`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{de, AccessSpec, AutoscaleSpec, RelaySpec, RouteSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// argv of the instance program; `${NAME}` expands from the instance env. Left out
    /// (empty) only with the `oci` driver and an image other than [`HOST_IMAGE`]: the
    /// image's `Entrypoint` and `Cmd` run then (checked where the image is read).
    #[serde(default)]
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
    /// gRPC services (`package.Service`) the pool serves: a call to
    /// `/package.Service/Method` at the gateway or through `$STRATA_URL` goes to one of
    /// its members.
    #[serde(default)]
    pub grpc: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub health: Option<HealthSpec>,
    /// Services that must have a ready instance before this one starts.
    #[serde(default)]
    pub bindings: Vec<String>,
    /// What its token (`$STRATA_TOKEN`) reaches through the platform API beyond what
    /// this spec implies: `"app"`, or lists of names (see [`AccessSpec`]).
    #[serde(default)]
    pub access: AccessSpec,
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
    /// Topics whose messages strata POSTs to the instances (one object or a list).
    #[serde(
        default,
        deserialize_with = "crate::subscribes::one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subscribes: Vec<crate::SubscribesSpec>,
    /// Grow and shrink the pool between instances.min and instances.max with the load.
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub autoscale: Option<AutoscaleSpec>,
    /// What runs an instance: a process of the node's (the default) or an OCI container.
    #[serde(default)]
    pub driver: Driver,
    /// With the `oci` driver, the container's image: [`HOST_IMAGE`] (also what it is
    /// when left out), a path (`./`, `../` or `/`) to an OCI image layout or an archive,
    /// or the `sha256:` digest of an imported image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// With the `oci` driver, who the program runs as: `USER` or `USER:GROUP`, each a
    /// number or a name looked up in the image when the container starts (numbers:
    /// [`ServiceSpec::user_ids`]); left out, the image's `User`, else [`NOBODY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// With the `oci` driver, the network its containers are on: the node's own
    /// ([`Network::Host`], the default) or the app's private network.
    #[serde(default)]
    pub network: Network,
    /// With the `oci` driver, the container's seccomp filter: the default profile
    /// ([`Seccomp::Default`]) or none.
    #[serde(default)]
    pub seccomp: Seccomp,
    /// Set on the services [`Manifest::expanded`](crate::Manifest::expanded) makes of
    /// functions: what triggers it.
    #[serde(skip)]
    pub function: Option<String>,
}

pub(crate) fn default_stop_grace_ms() -> u64 {
    5_000
}

/// What runs a service's instances; `Deserialize` is in `de`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A child process of the node, in its own process group.
    #[default]
    Process,
    /// A container run by an OCI runtime (runc or crun).
    Oci,
}

/// The network a service's containers are on; `Deserialize` is in `de`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The node's own network namespace: the instance listens on the node's loopback,
    /// as a process instance does.
    #[default]
    Host,
    /// A network namespace per instance on the app's own bridge: the app's private
    /// instances reach each other and the node, not other apps' instances.
    Private,
}

/// A container's seccomp filter; `Deserialize` is in `de`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// The default profile, modelled on Docker's.
    #[default]
    Default,
    /// No filter, as Docker's `--security-opt seccomp=unconfined`: the program's system
    /// calls skip the kernel's seccomp path (a cost on every call, whatever the filter).
    Unconfined,
}

/// The image that is a read-only view of the host's own system directories.
pub const HOST_IMAGE: &str = "host";
/// The user and group a container's program runs as unless the service names one
/// (`nobody` and `nogroup` on Debian).
pub const NOBODY: (u32, u32) = (65534, 65534);
/// The most processes a container holds unless `resources.pids` says otherwise.
pub const DEFAULT_PIDS: u64 = 1024;

impl ServiceSpec {
    /// The manifest setting `instances.idle_timeout_ms` was written as: a function's is
    /// its `keep_warm_ms`.
    pub fn idle_setting(&self) -> &'static str {
        match self.function {
            Some(_) => "keep_warm_ms",
            None => "instances.idle_timeout_ms",
        }
    }

    /// The user and group ids of a numeric `user`, else [`NOBODY`] (a `user` with names
    /// is resolved in the image when the container starts; one validation refused
    /// reads as [`NOBODY`] too).
    pub fn user_ids(&self) -> (u32, u32) {
        self.user.as_deref().and_then(parse_user).unwrap_or(NOBODY)
    }

    /// The container's image: `image`, or [`HOST_IMAGE`].
    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or(HOST_IMAGE)
    }

    /// Whether `run` may be left out: a container of an image other than the host's,
    /// whose config may say what to run (checked where the image is read).
    pub(crate) fn may_leave_out_run(&self) -> bool {
        self.driver == Driver::Oci && self.image() != HOST_IMAGE
    }
}

/// Whether `text` is a `user` the manifest takes: `USER` or `USER:GROUP`, each a number
/// below 2^32 - 1 or a name as `useradd` takes it (a letter or `_` first, then letters,
/// digits, `_`, `-` or `.`, at most 32, an optional `$` last).
pub(crate) fn is_user(text: &str) -> bool {
    let part = |s: &str| -> bool {
        let name = s.strip_suffix('$').unwrap_or(s);
        let numeric = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let named = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'));
        named || (numeric && s.parse::<u32>().is_ok_and(|n| n != u32::MAX))
    };
    match text.split_once(':') {
        Some((user, group)) => part(user) && part(group),
        None => part(text),
    }
}

/// `UID` or `UID:GID` (a lone `UID` is its own group, as Docker's `--user` takes it),
/// each below 2^32 - 1 (which means "no id" to the kernel).
pub(crate) fn parse_user(text: &str) -> Option<(u32, u32)> {
    let id = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|&n| n != u32::MAX)
    };
    match text.split_once(':') {
        Some((uid, gid)) => Some((id(uid)?, id(gid)?)),
        None => id(text).map(|uid| (uid, uid)),
    }
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

/// Bounds of the pool. Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstancesSpec {
    pub min: u32,
    pub max: u32,
    /// Instances launched at start; defaults to `min`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial: Option<u32>,
    /// With `min: 0`, how long without a request before the last instance is stopped. A
    /// request to a service with no instance is held at the gateway while one starts.
    pub idle_timeout_ms: u64,
}

impl Default for InstancesSpec {
    fn default() -> Self {
        InstancesSpec {
            min: 1,
            max: 1,
            initial: None,
            idle_timeout_ms: 300_000,
        }
    }
}

impl InstancesSpec {
    pub fn initial(&self) -> u32 {
        self.initial.unwrap_or(self.min)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Path answered with 2xx when the instance is ready and alive; empty when the
    /// check is gRPC's, or the port's (neither `path` nor `grpc`: the block then only
    /// sets the timings of the port check, such as a longer `start_timeout_ms`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Check with the gRPC health protocol instead (`grpc.health.v1.Health/Check`):
    /// the service name asked about, `""` for the server as a whole.
    #[serde(default)]
    pub grpc: Option<String>,
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
#[serde(default, deny_unknown_fields)]
pub struct ResourcesSpec {
    /// Memory reserved per instance; an instance that does not fit is not launched.
    /// With the `oci` driver it is also the container's hard memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Accelerators (GPUs) reserved per instance.
    pub accelerators: u32,
    /// With the `oci` driver, the CPU time a container may use, in CPUs (1.5: one and
    /// a half CPUs' worth per period); left out, no quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// With the `oci` driver, the most processes and threads a container holds; left
    /// out, [`DEFAULT_PIDS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementSpec {
    /// Node label whose values the instances are spread over (for example `power`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
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
