//! The checks serde cannot express: names, bounds, paths, routes, bindings.
//!
//! [`validate_all`] reports every problem it finds, [`validate`] the first of them; the
//! checks run in a fixed order (top-level fields, then each service by name, then routes
//! across services, then binding cycles), so the same manifest always gets the same
//! errors in the same order. A check whose input another check rejected is skipped where
//! it would only repeat that problem in other words (a `min` compared with a `max` that
//! is not a number of instances, a function's `max_instances` again as its service's).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Component, Path};

mod cache;
mod driver;
mod function;
mod grpc;
mod queue;
mod routes;
mod store;
mod topics;

use cache::check_cache;
use driver::check_driver;
use function::check_function;
use grpc::check_grpc;

pub use queue::is_queue_name;
use queue::{check_consumes, check_queues};
pub(crate) use queue::{check_queue, EXPECT_QUEUE_NAME};
use routes::check_route_conflicts;

use crate::error::{quoted, FieldPath};
use crate::service::is_user;
use crate::{
    AutoscaleSpec, CallMode, Driver, FileSpec, FunctionSpec, Manifest, ManifestError, Network, QueueSpec, RouteSpec,
    Seccomp, ServiceSpec, SetupSpec, HOST_IMAGE, VERSION,
};

/// The variables of the instance contract: strata sets them, a service's `env` may not.
pub(crate) const CONTRACT_ENV: [&str; 7] = [
    "PORT",
    "STRATA_URL",
    "STRATA_TOKEN",
    "STRATA_APP",
    "STRATA_SERVICE",
    "STRATA_INSTANCE",
    "STRATA_NODE",
];

fn invalid(path: FieldPath, expected: impl Into<String>, found: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        path: path.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// When the text is an object whose `strata` is a whole number other than [`VERSION`],
/// the error that says so.
pub(crate) fn version_error(text: &str) -> Option<ManifestError> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let version = value.get("strata")?.as_u64()?;
    (version != u64::from(VERSION)).then(|| version_mismatch(version))
}

fn version_mismatch(found: u64) -> ManifestError {
    invalid(
        FieldPath::root().key("strata"),
        format!("{VERSION} (the manifest version this build reads)"),
        found.to_string(),
    )
}

/// The problems found so far, in the order the checks ran.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ManifestError>);

impl Problems {
    fn add(&mut self, problem: ManifestError) {
        self.0.push(problem);
    }

    /// Adds the problem of a check that can find only one; true when it found none.
    fn check(&mut self, result: Result<(), ManifestError>) -> bool {
        match result {
            Ok(()) => true,
            Err(problem) => {
                self.0.push(problem);
                false
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn first(self) -> Result<(), ManifestError> {
        self.0.into_iter().next().map_or(Ok(()), Err)
    }
}

/// The checks serde cannot express; the first problem found, in a fixed order.
pub(crate) fn validate(m: &Manifest) -> Result<(), ManifestError> {
    let mut problems = Problems::default();
    check_manifest(m, &mut problems);
    problems.first()
}

/// The checks serde cannot express; every problem found, in a fixed order (the first is
/// the one [`validate`] reports).
pub(crate) fn validate_all(m: &Manifest) -> Vec<ManifestError> {
    let mut problems = Problems::default();
    check_manifest(m, &mut problems);
    problems.0
}

fn check_manifest(m: &Manifest, p: &mut Problems) {
    let root = FieldPath::root();
    if m.strata != VERSION {
        // Nothing else can be judged against a model this build does not know.
        return p.add(version_mismatch(u64::from(m.strata)));
    }
    if m.app.is_empty() || !m.app.chars().all(is_name_char) {
        p.add(invalid(
            root.key("app"),
            "an app name of lowercase letters, digits and -",
            quoted(&m.app),
        ));
    }
    check_gateway(m, &root.key("gateway"), p);
    let services = root.key("services");
    if m.services.is_empty() && m.functions.is_empty() {
        p.add(invalid(
            services.clone(),
            "at least one service (or a function under functions)",
            "none",
        ));
    }
    for (name, spec) in &m.services {
        check_service(m, name, spec, &services.key(name), p);
    }
    check_queues(m, &root, p);
    check_cache(m, &root, p);
    store::check_store(&m.store, &root.key("store"), p);
    for (name, spec) in &m.functions {
        check_function(m, name, spec, &root.key("functions").key(name), p);
    }
    check_route_conflicts(&m.expanded(), p);
    p.check(check_binding_cycles(m));
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn check_gateway(m: &Manifest, path: &FieldPath, p: &mut Problems) {
    let gateway = &m.gateway;
    if gateway.listen.parse::<SocketAddr>().is_err() {
        p.add(invalid(
            path.key("listen"),
            "a socket address such as 127.0.0.1:8080 or [::1]:8080",
            quoted(&gateway.listen),
        ));
    }
    if gateway.max_header_bytes < 1024 {
        p.add(invalid(
            path.key("max_header_bytes"),
            "at least 1024 bytes",
            gateway.max_header_bytes.to_string(),
        ));
    }
    p.check(within(
        path.key("max_connections"),
        gateway.max_connections as u64,
        1,
        crate::gateway::MAX_MAX_CONNECTIONS as u64,
        "connections",
    ));
    p.check(positive(
        path.key("header_read_timeout_ms"),
        gateway.header_read_timeout_ms,
        "milliseconds",
    ));
    if let Some(workers) = gateway.workers {
        p.check(within(
            path.key("workers"),
            workers as u64,
            1,
            crate::gateway::MAX_GATEWAY_WORKERS as u64,
            "threads",
        ));
    }
}

/// `value` within `min..=max`, named with its unit; the bounds keep every arithmetic on
/// configured numbers (ms to a deadline, s to ms) far from overflow.
fn within(path: FieldPath, value: u64, min: u64, max: u64, unit: &str) -> Result<(), ManifestError> {
    if !(min..=max).contains(&value) {
        return Err(invalid(
            path,
            format!("between {min} and {max} {unit}"),
            value.to_string(),
        ));
    }
    Ok(())
}

/// Most instances of one service on a node: each is a process with a port and files.
const MAX_INSTANCES: u32 = 10_000;

/// Longest duration in milliseconds any setting takes: 30 days.
const MAX_SETTING_MS: u64 = 30 * 24 * 3600 * 1000;
/// Most memory one setting names: 16 TiB.
const MAX_MEMORY_MB: u64 = 16 << 20;

/// Greater than 0, and for durations and memory within a sane bound.
fn positive(path: FieldPath, value: u64, unit: &str) -> Result<(), ManifestError> {
    if value == 0 {
        return Err(invalid(path, format!("a number of {unit} greater than 0"), "0"));
    }
    match unit {
        "milliseconds" => within(path, value, 1, MAX_SETTING_MS, unit),
        "megabytes" => within(path, value, 1, MAX_MEMORY_MB, unit),
        _ => Ok(()),
    }
}

fn check_service(m: &Manifest, name: &str, spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || !name.chars().all(is_name_char) {
        p.add(invalid(
            path.clone(),
            "a service name of lowercase letters, digits and -, starting with a letter",
            format!("the name {}", quoted(name)),
        ));
    }
    if spec.run.is_empty() {
        // Left out or empty: the image's command, where there is an image to say one.
        if !spec.may_leave_out_run() {
            p.add(invalid(
                path.key("run"),
                "a command: an array starting with the program name (only a service with \"driver\": \"oci\" and an image may leave it out, to run the image's Entrypoint and Cmd)",
                "an empty array, or no run at all",
            ));
        }
    } else {
        p.check(check_argv(&path.key("run"), &spec.run));
    }
    if let Some(workdir) = &spec.workdir {
        p.check(check_relative(path.key("workdir"), workdir));
    }
    for key in spec.env.keys() {
        if key.is_empty() || key.contains(['=', '\0']) {
            p.add(invalid(
                path.key("env").key(key),
                "an environment variable name, not empty and without = or NUL",
                quoted(key),
            ));
        } else if CONTRACT_ENV.contains(&key.as_str()) && spec.env[key] != format!("${{{key}}}") {
            // (`"PORT": "${PORT}"`, as compose files carry it, changes nothing.)
            // Replaced, the instance would listen where strata does not look (PORT), or
            // call another node or with another's token.
            p.add(invalid(
                path.key("env").key(key),
                format!(
                    "a variable that is not the instance contract's: strata sets {key} for each instance (pass it on under another name, e.g. \"APP_{key}\": \"${{{key}}}\", or in \"run\")"
                ),
                quoted(key),
            ));
        }
    }
    for (file, source) in &spec.files {
        let file_path = path.key("files").key(file);
        p.check(check_relative(file_path.clone(), file));
        if let FileSpec::Source { source } = source {
            p.check(check_relative(file_path.key("source"), source));
        }
    }
    if let Some(setup) = &spec.setup {
        let setup_path = path.key("setup");
        let (argv_path, inputs_path) = match setup {
            SetupSpec::Argv(_) => (setup_path.clone(), setup_path.key("inputs")),
            SetupSpec::Full(_) => (setup_path.key("run"), setup_path.key("inputs")),
        };
        p.check(check_argv(&argv_path, setup.argv()));
        for (i, input) in setup.inputs().iter().enumerate() {
            p.check(check_relative(inputs_path.index(i), input));
        }
    }
    check_instances(spec, &path.key("instances"), p);
    for (i, route) in spec.routes.iter().enumerate() {
        let route_path = match route {
            RouteSpec::Prefix(_) => path.key("routes").index(i),
            RouteSpec::Full(_) => path.key("routes").index(i).key("path"),
        };
        if !route.path().starts_with('/') {
            p.add(invalid(route_path, "a path starting with /", quoted(route.path())));
        }
        if let Some(host) = route.host() {
            if host.is_empty() || host.contains(['/', ':', ' ']) {
                p.add(invalid(
                    path.key("routes").index(i).key("host"),
                    "a host name without port or path, such as example.com",
                    quoted(host),
                ));
            }
        }
        if let Some(fallback) = route.fallback() {
            let at = path.key("routes").index(i).key("fallback");
            if route.mode() == CallMode::All {
                p.add(invalid(
                    at.clone(),
                    "no fallback on a route of mode all",
                    "a fallback".to_string(),
                ));
            }
            p.check(within(
                at.key("stale_if_error_s"),
                fallback.stale_if_error_s,
                0,
                crate::gateway::MAX_STALE_IF_ERROR_S,
                "seconds",
            ));
            p.check(within(
                at.key("cache_bytes"),
                fallback.cache_bytes,
                4096,
                crate::gateway::MAX_CACHE_BYTES,
                "bytes",
            ));
            if let Some(status) = fallback.status {
                p.check(within(at.key("status"), status as u64, 200, 599, "(an HTTP status)"));
            }
            if fallback.body.len() > 1 << 20 {
                p.add(invalid(
                    at.key("body"),
                    "at most 1 MiB",
                    format!("{} bytes", fallback.body.len()),
                ));
            }
            if fallback.content_type.is_empty() || fallback.content_type.chars().any(|c| c.is_control()) {
                p.add(invalid(
                    at.key("content_type"),
                    "a media type such as text/plain",
                    quoted(&fallback.content_type),
                ));
            }
        }
    }
    check_grpc(spec, path, p);
    if let Some(health) = &spec.health {
        let health_path = path.key("health");
        if !health.path.is_empty() && !health.path.starts_with('/') {
            p.add(invalid(
                health_path.key("path"),
                "a path starting with /",
                quoted(&health.path),
            ));
        }
        p.check(positive(
            health_path.key("interval_ms"),
            health.interval_ms,
            "milliseconds",
        ));
        p.check(positive(
            health_path.key("timeout_ms"),
            health.timeout_ms,
            "milliseconds",
        ));
        p.check(positive(
            health_path.key("start_timeout_ms"),
            health.start_timeout_ms,
            "milliseconds",
        ));
        if health.failure_threshold == 0 {
            p.add(invalid(health_path.key("failure_threshold"), "at least 1", "0"));
        }
    }
    check_bindings(m, name, spec, &path.key("bindings"), p);
    for problem in crate::access::check(m, &spec.access, &path.key("access")) {
        p.add(problem);
    }
    if let Some(memory_mb) = spec.resources.memory_mb {
        p.check(positive(path.key("resources").key("memory_mb"), memory_mb, "megabytes"));
    }
    check_driver(spec, path, p);
    if let Some(spread) = &spec.placement.spread {
        if spread.trim().is_empty() {
            p.add(invalid(
                path.key("placement").key("spread"),
                "a node label name such as power",
                quoted(spread),
            ));
        }
    }
    let relay = &spec.relay;
    let relay_path = path.key("relay");
    let timeout_ok = p.check(positive(relay_path.key("timeout_ms"), relay.timeout_ms, "milliseconds"));
    if let Some(attempt) = relay.attempt_timeout_ms {
        let attempt_ok = p.check(positive(relay_path.key("attempt_timeout_ms"), attempt, "milliseconds"));
        if timeout_ok && attempt_ok && attempt > relay.timeout_ms {
            p.add(invalid(
                relay_path.key("attempt_timeout_ms"),
                format!("at most relay.timeout_ms ({})", relay.timeout_ms),
                attempt.to_string(),
            ));
        }
    }
    if relay.grpc_calls_per_connection == Some(0) {
        p.add(invalid(
            relay_path.key("grpc_calls_per_connection"),
            "at least 1 call per connection (or leave it out: one connection carries every call)",
            "0",
        ));
    }
    for (key, ms) in [
        ("websocket_idle_ms", relay.websocket_idle_ms),
        ("websocket_max_ms", relay.websocket_max_ms),
    ] {
        if ms < 1_000 {
            p.add(invalid(
                relay_path.key(key),
                "at least 1000 milliseconds (the limits are checked once a second)",
                ms.to_string(),
            ));
        }
    }
    check_consumes(m, spec, path, p);
    topics::check_subscribes(spec, path, p);
    if let Some(autoscale) = &spec.autoscale {
        check_autoscale(autoscale, &path.key("autoscale"), p);
    }
}

fn check_autoscale(a: &AutoscaleSpec, path: &FieldPath, p: &mut Problems) {
    if a.concurrency == 0 {
        p.add(invalid(path.key("concurrency"), "at least 1 request per instance", "0"));
    }
    if a.backlog == 0 {
        p.add(invalid(path.key("backlog"), "at least 1 message per instance", "0"));
    }
    if let Some(ms) = a.latency_ms {
        p.check(positive(path.key("latency_ms"), ms, "milliseconds"));
    }
    p.check(positive(path.key("down_window_ms"), a.down_window_ms, "milliseconds"));
    if a.max_inflight == Some(0) {
        p.add(invalid(
            path.key("max_inflight"),
            "at least 1 request per instance",
            "0",
        ));
    }
}

fn check_argv(path: &FieldPath, argv: &[String]) -> Result<(), ManifestError> {
    match argv.first() {
        None => Err(invalid(
            path.clone(),
            "a command: an array starting with the program name",
            "an empty array",
        )),
        Some(program) if program.is_empty() => Err(invalid(path.index(0), "a program name", "an empty string")),
        Some(_) => Ok(()),
    }
}

/// A path inside the app directory: not empty, not absolute, no `..`. The app directory
/// is what a node receives, so nothing outside it can be relied on.
fn check_relative(path: FieldPath, value: &str) -> Result<(), ManifestError> {
    const EXPECTED: &str = "a relative path inside the app directory";
    if value.is_empty() {
        return Err(invalid(path, EXPECTED, "an empty string"));
    }
    let p = Path::new(value);
    if p.is_absolute() || p.has_root() {
        return Err(invalid(path, EXPECTED, format!("the absolute path {}", quoted(value))));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(path, EXPECTED, format!("{}, which uses ..", quoted(value))));
    }
    Ok(())
}

fn check_instances(spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    let instances = &spec.instances;
    let max_ok = instances.max != 0 && instances.max <= MAX_INSTANCES;
    if !max_ok {
        p.add(invalid(
            path.key("max"),
            format!("between 1 and {MAX_INSTANCES}"),
            instances.max.to_string(),
        ));
    }
    p.check(positive(
        path.key("idle_timeout_ms"),
        instances.idle_timeout_ms,
        "milliseconds",
    ));
    if !max_ok {
        return;
    }
    if instances.min > instances.max {
        p.add(invalid(
            path.key("min"),
            format!("at most instances.max ({})", instances.max),
            instances.min.to_string(),
        ));
    }
    if let Some(initial) = instances.initial {
        if initial < instances.min || initial > instances.max {
            p.add(invalid(
                path.key("initial"),
                format!(
                    "a number from instances.min ({}) to instances.max ({})",
                    instances.min, instances.max
                ),
                initial.to_string(),
            ));
        }
    }
}

fn check_bindings(m: &Manifest, name: &str, spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, binding) in spec.bindings.iter().enumerate() {
        if binding == name {
            p.add(invalid(
                path.index(i),
                "the name of another service",
                format!("{}, the service itself", quoted(binding)),
            ));
        } else if !m.services.contains_key(binding) {
            let names: Vec<String> = m.services.keys().filter(|s| *s != name).cloned().collect();
            let expected = if names.is_empty() {
                "no bindings: this is the only service".to_string()
            } else {
                format!("the name of a service in this manifest ({})", names.join(", "))
            };
            p.add(invalid(path.index(i), expected, quoted(binding)));
        } else if let Some(first) = seen.insert(binding, i) {
            p.add(invalid(
                path.index(i),
                "each service named once",
                format!("{} again (also at bindings[{first}])", quoted(binding)),
            ));
        }
    }
}

/// Depth-first search over bindings; the first cycle found, in name order.
fn check_binding_cycles(m: &Manifest) -> Result<(), ManifestError> {
    fn visit<'a>(
        m: &'a Manifest,
        name: &'a str,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), ManifestError> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(start) = stack.iter().position(|s| *s == name) {
            let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(name.to_string());
            return Err(ManifestError::BindingCycle { cycle });
        }
        stack.push(name);
        if let Some(spec) = m.services.get(name) {
            for dep in &spec.bindings {
                visit(m, dep, stack, done)?;
            }
        }
        stack.pop();
        done.insert(name);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for name in m.services.keys() {
        visit(m, name, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}
