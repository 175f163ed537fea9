//! The app manifest (`strata.json`): the desired state of an app.
//!
//! Layout:
//! - this file: [`Manifest`], the root of the model (version 1, unknown fields
//!   rejected); [`parse`] and [`load`], JSON text to a validated manifest (or the first
//!   problem); [`parse_all`] and [`load_all`], the same with every problem found; and
//!   [`Manifest::start_order`].
//! - `access`: [`AccessSpec`], what a service's token reaches through the platform
//!   API, and [`Reach`] ([`Manifest::reach`]), those rights derived from the manifest.
//! - `service`: [`ServiceSpec`], a pool of identical instances, and its parts: files,
//!   setup step, instance bounds, health check, resources, placement, consumed queue,
//!   and its [`Driver`] (a process, or an OCI container with its image, user,
//!   [`Network`] and [`Seccomp`] filter).
//! - `gateway`: [`GatewaySpec`], the first tier's listener and limits; [`RouteSpec`],
//!   [`CallMode`] and [`RelaySpec`], how requests reach a service.
//! - `autoscale`: [`AutoscaleSpec`], how a pool follows its load.
//! - `queue`: [`QueueSpec`], durable queues: fsync policy, segments, leases, retention;
//!   [`QueueLimitsSpec`], the node-wide bounds on queues (count, disk, API segments).
//! - `store`: [`StoreSpec`], the store's limits (the largest blob).
//! - `cache`: [`CacheSpec`], the node's Redis-protocol cache, and [`ReadThroughSpec`],
//!   caches in front of store namespaces.
//! - `function`: [`FunctionSpec`], event handlers, and [`TriggerSpec`], what fires them.
//! - `subscribes`: [`SubscribesSpec`], a service's subscriptions to topics (one object
//!   or a list).
//! - `expand`: [`Manifest::expanded`], every function written as the service that runs
//!   it.
//! - `error`: [`ManifestError`], whose messages name the field path, what was expected
//!   and what was found; serde's errors are reworded into it.
//! - `validate`: the checks serde cannot express (bounds, names, paths, routes, binding
//!   cycles), every problem or the first.
//! - `cron`: [`Cron`], the five-field schedules of timer-triggered functions (UTC).
//! - `de`: hand-written `Deserialize` impls: routes, setup steps and files (where
//!   serde's `untagged` would name no field), call modes, structs written only as
//!   objects, maps without duplicate keys.
//!
//! The `*Spec` types are re-exported here; the modules are private. A spec whose every
//! field may be left out says `#[serde(default)]` once and holds its values in its
//! `Default` impl; other specs name a default function per optional field.
//!
//! The JSON Schema in `schema/strata.schema.json` ([`SCHEMA`]) describes the same model;
//! the crate's tests keep the two in sync.
//!
//! This crate knows nothing of processes or HTTP: it only says what is wanted.

mod access;
mod autoscale;
mod cache;
mod cron;
mod de;
mod error;
mod expand;
mod function;
mod gateway;
mod queue;
mod references;
mod service;
mod store;
mod subscribes;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use access::{AccessList, AccessSpec, Reach};
pub use autoscale::AutoscaleSpec;
pub use cache::{CacheSpec, ReadThroughSpec, MIN_CACHE_PASSWORD_CHARS};
pub use cron::Cron;
pub use error::ManifestError;
pub use function::{FunctionSpec, QueueTrigger, StoreTrigger, TimerTrigger, TriggerSpec};
pub use gateway::{CallMode, FallbackSpec, GatewaySpec, RelaySpec, RouteFull, RouteSpec, MAX_GATEWAY_WORKERS};
pub use queue::{FsyncPolicy, QueueLimitsSpec, QueueSpec, RetentionSpec};
pub use service::{
    ConsumesSpec, Driver, FileSpec, HealthSpec, InstancesSpec, Network, PlacementSpec, ResourcesSpec, Seccomp,
    ServiceSpec, SetupFull, SetupSpec, DEFAULT_PIDS, HOST_IMAGE, NOBODY,
};
pub use store::StoreSpec;
pub use subscribes::SubscribesSpec;
pub use validate::is_queue_name;

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
    /// Node-wide bounds on the queues: count, disk, segments of queues made at run time.
    #[serde(default, deserialize_with = "de::object")]
    pub queue_limits: QueueLimitsSpec,
    /// The store's limits.
    #[serde(default, deserialize_with = "de::object")]
    pub store: StoreSpec,
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

/// Parses and validates manifest text; the first problem found (the first of
/// [`parse_all`]'s).
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let manifest = deserialize(text)?;
    validate::validate(&manifest)?;
    Ok(manifest)
}

/// Most problems [`parse_all`] steps over that serde found (each costs a parse).
const MAX_MODEL_PROBLEMS: usize = 50;

/// Parses and validates manifest text, reporting every problem it can find, in the order
/// found; the first is the one [`parse`] reports.
///
/// serde stops at the first problem in the text: a key the model does not have, or a value
/// of the wrong type, is then taken out and the text read again, up to
/// [`MAX_MODEL_PROBLEMS`] times, so that one run names each typo and each wrong value. A
/// syntax error, a missing field or a manifest of another version ends the search. Once
/// the text reads, the checks of `validate` run on it, except inside an object a wrong
/// value was taken out of (its default there could make a problem that is not in the
/// text).
pub fn parse_all(text: &str) -> Result<Manifest, Vec<ManifestError>> {
    let mut problems = Vec::new();
    let mut value: Option<serde_json::Value> = None;
    let mut removed: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut current = std::borrow::Cow::Borrowed(text);
    for _ in 0..=MAX_MODEL_PROBLEMS {
        let problem = match deserialize(&current) {
            Ok(manifest) => {
                let inside = |path: &str, of: &str| {
                    path == of || path.strip_prefix(of).is_some_and(|r| r.starts_with(['.', '[']))
                };
                problems.extend(validate::validate_all(&manifest).into_iter().filter(|p| {
                    let at = p.path().unwrap_or_default();
                    !skipped.iter().any(|s| inside(&at, s))
                }));
                return if problems.is_empty() {
                    Ok(manifest)
                } else {
                    Err(problems)
                };
            }
            Err(problem) => problem,
        };
        // A field taken out for its wrong value is now missing: that is the same problem.
        if !problem.path().is_some_and(|p| removed.contains(&p)) {
            problems.push(problem.clone());
        }
        // Nothing else can be judged against a model this build does not know.
        if validate::version_error(&current).is_some() {
            break;
        }
        let value = match &mut value {
            Some(v) => v,
            None => match serde_json::from_str(text) {
                Ok(v) => value.insert(v),
                Err(_) => break,
            },
        };
        match error::step_over(&problem, value) {
            Some(stepped) => {
                removed.push(stepped.removed);
                skipped.extend(stepped.unchecked);
            }
            None => break,
        }
        current = std::borrow::Cow::Owned(value.to_string());
    }
    Err(problems)
}

/// JSON text to a manifest, no checks beyond serde's.
fn deserialize(text: &str) -> Result<Manifest, ManifestError> {
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
    Ok(manifest)
}

/// Checks a queue declared at run time (through the node API) as if it were
/// `queues.NAME` in a manifest.
pub fn check_queue(name: &str, spec: &QueueSpec) -> Result<(), ManifestError> {
    validate::check_queue(name, spec, &error::FieldPath::root().key("queues").key(name))
}

/// The same checks for a queue a request makes (`PUT /v1/queues/NAME`): its name, then
/// its settings, each problem named as the request has it (the name in the URL, a
/// setting by its key in the body), not by a manifest path.
pub fn check_queue_request(name: &str, spec: &QueueSpec) -> Result<(), String> {
    if !is_queue_name(name) {
        return Err(format!(
            "{name:?} is not a queue name: expected {}",
            validate::EXPECT_QUEUE_NAME
        ));
    }
    // The settings alone: their problems' paths start at the body's keys.
    validate::check_queue(name, spec, &error::FieldPath::root()).map_err(|e| e.to_string())
}

/// Reads, parses and validates a manifest file.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    parse(&read(path)?)
}

/// Reads, parses and validates a manifest file, reporting every problem found
/// ([`parse_all`]).
pub fn load_all(path: &Path) -> Result<Manifest, Vec<ManifestError>> {
    parse_all(&read(path).map_err(|e| vec![e])?)
}

/// [`load_all`], and that every `workdir` the manifest names is a folder (relative to
/// the file's own folder): a program, or its setup, cannot start anywhere else. For
/// what runs the app here (`strata validate`, `strata up`); a manifest read for
/// anything else (its queues, a bundle for another machine) need not be.
pub fn load_to_run(path: &Path) -> Result<Manifest, Vec<ManifestError>> {
    let manifest = load_all(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let workdirs = manifest
        .services
        .iter()
        .map(|(name, s)| ("services", name, &s.workdir))
        .chain(
            manifest
                .functions
                .iter()
                .map(|(name, f)| ("functions", name, &f.workdir)),
        );
    let mut problems = Vec::new();
    // An image given as a path is there (a digest is looked up in the image store by
    // `strata validate` and `up`, which know where it is).
    for (name, spec) in &manifest.services {
        let Some(image) = spec.image.as_deref() else { continue };
        if !(image.starts_with("./") || image.starts_with("../") || image.starts_with('/')) {
            continue;
        }
        let at = dir.join(image);
        if !at.exists() {
            problems.push(ManifestError::Invalid {
                path: error::FieldPath::root().key("services").key(name).key("image").into(),
                expected: "an OCI image layout folder or an image archive, relative to the manifest's folder".into(),
                found: match dir == Path::new(".") || dir == Path::new("") {
                    true => format!("nothing at {image}"),
                    false => format!("nothing at {}", at.display()),
                },
            });
        }
    }
    // A file copied in from the app is there, and a file (the instance would not start),
    // unless a setup step runs first (it may make it: a build's output).
    let files = manifest
        .services
        .iter()
        .filter(|(_, s)| s.setup.is_none())
        .map(|(name, s)| ("services", name, &s.files))
        .chain(
            manifest
                .functions
                .iter()
                .filter(|(_, f)| f.setup.is_none())
                .map(|(name, f)| ("functions", name, &f.files)),
        );
    for (kind, name, files) in files {
        for (rel, file) in files {
            let FileSpec::Source { source } = file else { continue };
            let at = dir.join(source);
            if !at.is_file() {
                let found = match at.exists() {
                    true => format!("{} (not a file)", at.display()),
                    false => format!("nothing at {}", at.display()),
                };
                problems.push(ManifestError::Invalid {
                    path: error::FieldPath::root()
                        .key(kind)
                        .key(name)
                        .key("files")
                        .key(rel)
                        .key("source")
                        .into(),
                    expected: "a file, relative to the manifest's folder".into(),
                    found,
                });
            }
        }
    }
    for (kind, name, workdir) in workdirs {
        let Some(workdir) = workdir else { continue };
        let at = dir.join(workdir);
        if !at.is_dir() {
            let found = match at.exists() {
                true => format!("{} (not a folder)", at.display()),
                false => format!("nothing at {}", at.display()),
            };
            problems.push(ManifestError::Invalid {
                path: error::FieldPath::root().key(kind).key(name).key("workdir").into(),
                expected: "a folder, relative to the manifest's folder".into(),
                found,
            });
        }
    }
    match problems.is_empty() {
        true => Ok(manifest),
        false => Err(problems),
    }
}

fn read(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|e| ManifestError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Manifest {
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
