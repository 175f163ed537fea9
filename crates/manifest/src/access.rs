//! What a service's token (`$STRATA_TOKEN`) reaches through the platform API:
//! [`AccessSpec`] (`services.NAME.access`, `functions.NAME.access`) declares it, and
//! [`Reach`] ([`Manifest::reach`]) is what a token carries, derived from the whole
//! manifest. The rules (docs/access.md):
//!
//! - calls (`/v1/any|all/SERVICE`): the services it binds to, plus `access.calls`;
//! - queues: the queue it `consumes` (fetch, ack, nack, delete, stats), the queues in
//!   `access.fetches` (the same, by pull), and the queues in `access.publishes` (publish,
//!   publish-and-wait, a reply sent to `queue:NAME`, stats). A reply to a waiting
//!   publisher's inbox needs only a token;
//! - the store: the namespaces in `access.namespaces` (and a function's store trigger's
//!   namespace), keys and blobs, read and write;
//! - read-through caches: those in `access.caches`, and those over a namespace it may
//!   read anyway;
//! - the raw cache keyspace (`/v1/cache/keys`, shared with the Redis port): only with
//!   `access.cache_keys`;
//! - topics (`POST /v1/topics/TOPIC`): a topic that some service lists in
//!   `access.topics` is claimed, and only those services may publish on it; a topic no
//!   service lists is open to every token (as PUBLISH on the Redis port is to every
//!   client with the cache's password);
//! - `"access": "app"`: all of the above, for every name of the app.
//!
//! Never through a service's token: the control API (ps, metrics, events, logs, scale,
//! down, cache stats and drills, creating or listing queues): that is the CLI's token.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Error, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{quoted, FieldPath};
use crate::{is_queue_name, Manifest, ManifestError, ServiceSpec};

/// `"app"`, or an [`AccessList`] object (the default: an empty one, so a service
/// reaches what its spec implies and nothing more).
#[derive(Debug, Clone, PartialEq)]
pub enum AccessSpec {
    /// Everything of the app: every service, queue, namespace and cache.
    App,
    /// What the service reaches beyond what its spec implies.
    Declared(AccessList),
}

impl Default for AccessSpec {
    fn default() -> Self {
        AccessSpec::Declared(AccessList::default())
    }
}

/// Names a service reaches beyond what its spec implies. Every field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessList {
    /// Services it calls (`/v1/any|all/SERVICE`) besides the ones it binds to (a call
    /// needs no start order, so two services may call each other).
    pub calls: Vec<String>,
    /// Queues it publishes to (and sends replies to as `queue:NAME`).
    pub publishes: Vec<String>,
    /// Queues it consumes by pull: fetch, ack, nack, delete (`NAME.dlq` to drain a
    /// dead-letter queue). The queue it `consumes` by push is always included.
    pub fetches: Vec<String>,
    /// Store namespaces it reads and writes (keys and blobs).
    pub namespaces: Vec<String>,
    /// Read-through caches (`caches.NAME`) it reads.
    pub caches: Vec<String>,
    /// The raw cache keyspace (`/v1/cache/keys`), shared by the whole node and its
    /// Redis port.
    pub cache_keys: bool,
    /// Topics it publishes on through the node API. Listing a topic claims it: then
    /// only the services that list it may publish on it there.
    pub topics: Vec<String>,
}

const EXPECT_ACCESS: &str =
    "\"app\" or an object with calls, publishes, fetches, namespaces, caches, cache_keys, topics";

impl Serialize for AccessSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AccessSpec::App => serializer.serialize_str("app"),
            AccessSpec::Declared(list) => list.serialize(serializer),
        }
    }
}

/// By the JSON type, as routes are (see `de`): a typo inside the object is reported at
/// its own path.
impl<'de> Deserialize<'de> for AccessSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AccessVisitor;
        impl<'de> Visitor<'de> for AccessVisitor {
            type Value = AccessSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECT_ACCESS)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<AccessSpec, E> {
                match v {
                    "app" => Ok(AccessSpec::App),
                    other => Err(E::invalid_value(Unexpected::Str(other), &EXPECT_ACCESS)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AccessSpec, A::Error> {
                AccessList::deserialize(MapAccessDeserializer::new(map)).map(AccessSpec::Declared)
            }
        }
        deserializer.deserialize_any(AccessVisitor)
    }
}

/// What one service's token reaches: the rights the node API checks per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// `"access": "app"`: every name of the app.
    pub app: bool,
    pub calls: BTreeSet<String>,
    pub publishes: BTreeSet<String>,
    pub fetches: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    pub caches: BTreeSet<String>,
    pub cache_keys: bool,
    /// The topics it lists in `access.topics`.
    pub topics: BTreeSet<String>,
    /// Every topic some service of the app lists: closed to the others.
    pub claimed: Arc<BTreeSet<String>>,
}

impl Reach {
    pub fn may_call(&self, service: &str) -> bool {
        self.app || self.calls.contains(service)
    }
    pub fn may_publish(&self, queue: &str) -> bool {
        self.app || self.publishes.contains(queue)
    }
    pub fn may_fetch(&self, queue: &str) -> bool {
        self.app || self.fetches.contains(queue)
    }
    pub fn may_use_namespace(&self, ns: &str) -> bool {
        self.app || self.namespaces.contains(ns)
    }
    pub fn may_read_cache(&self, cache: &str) -> bool {
        self.app || self.caches.contains(cache)
    }
    pub fn may_use_cache_keys(&self) -> bool {
        self.app || self.cache_keys
    }
    /// Publishing on `topic` through the node API: open, unless some service claims it.
    pub fn may_publish_topic(&self, topic: &str) -> bool {
        self.app || self.topics.contains(topic) || !self.claimed.contains(topic)
    }
}

impl Manifest {
    /// What the token of service (or function) `name` reaches; None when there is no
    /// such service.
    pub fn reach(&self, name: &str) -> Option<Reach> {
        let spec = match self.services.get(name) {
            Some(spec) => spec.clone(),
            None => self.functions.get(name)?.service(name),
        };
        Some(self.reach_of(&spec))
    }

    /// Every topic some service or function lists in `access.topics`.
    fn claimed_topics(&self) -> BTreeSet<String> {
        let functions = self.functions.iter().map(|(name, f)| f.service(name).access);
        self.services
            .values()
            .map(|s| s.access.clone())
            .chain(functions)
            .filter_map(|access| match access {
                AccessSpec::Declared(list) => Some(list.topics),
                AccessSpec::App => None,
            })
            .flatten()
            .collect()
    }

    fn reach_of(&self, spec: &ServiceSpec) -> Reach {
        let list = match &spec.access {
            AccessSpec::App => {
                return Reach {
                    app: true,
                    ..Reach::default()
                }
            }
            AccessSpec::Declared(list) => list,
        };
        let set = |items: &[String]| items.iter().cloned().collect::<BTreeSet<String>>();
        let mut reach = Reach {
            app: false,
            calls: set(&list.calls),
            publishes: set(&list.publishes),
            fetches: set(&list.fetches),
            namespaces: set(&list.namespaces),
            caches: set(&list.caches),
            cache_keys: list.cache_keys,
            topics: set(&list.topics),
            claimed: Arc::new(self.claimed_topics()),
        };
        reach.calls.extend(spec.bindings.iter().cloned());
        reach.fetches.extend(spec.consumes.iter().map(|c| c.queue.clone()));
        // A cache over a namespace it may read shows it nothing new.
        for (name, cache) in &self.caches {
            if reach.namespaces.contains(&cache.namespace) {
                reach.caches.insert(name.clone());
            }
        }
        reach
    }
}

/// The checks of one `access` (at `path`): every name must be one the app can have.
pub(crate) fn check(m: &Manifest, access: &AccessSpec, path: &FieldPath) -> Vec<ManifestError> {
    let AccessSpec::Declared(list) = access else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut each = |field: &str, items: &[String], ok: &dyn Fn(&str) -> bool, expected: &dyn Fn() -> String| {
        for (i, item) in items.iter().enumerate() {
            if !ok(item) {
                problems.push(ManifestError::Invalid {
                    path: path.key(field).index(i).into(),
                    expected: expected(),
                    found: quoted(item),
                });
            }
        }
    };
    let services: Vec<&str> = m
        .services
        .keys()
        .chain(m.functions.keys())
        .map(String::as_str)
        .collect();
    each("calls", &list.calls, &|s| services.contains(&s), &|| {
        format!(
            "the name of a service or function of this app ({})",
            services.join(", ")
        )
    });
    let queue_name = || "a queue name (at most 64 lowercase letters, digits, - and _)".to_string();
    each("publishes", &list.publishes, &|q| is_queue_name(q), &queue_name);
    each(
        "fetches",
        &list.fetches,
        &|q| is_queue_name(q) || q.strip_suffix(".dlq").is_some_and(is_queue_name),
        &|| "a queue name, or NAME.dlq for its dead-letter queue".to_string(),
    );
    each("namespaces", &list.namespaces, &|n| is_queue_name(n), &|| {
        "a store namespace name (at most 64 lowercase letters, digits, - and _)".to_string()
    });
    each("topics", &list.topics, &|t| !t.is_empty(), &|| {
        "a topic name (a Redis channel name, not empty)".to_string()
    });
    let caches: Vec<&str> = m.caches.keys().map(String::as_str).collect();
    each("caches", &list.caches, &|c| caches.contains(&c), &|| {
        if caches.is_empty() {
            "a cache declared under caches (none is)".to_string()
        } else {
            format!("a cache declared under caches ({})", caches.join(", "))
        }
    });
    problems
}

#[cfg(test)]
mod tests {
    use crate::parse;

    fn manifest(services: &str) -> String {
        format!(
            r#"{{"strata": 1, "app": "a", "queues": {{"orders": {{}}, "audit": {{}}}},
                "caches": {{"hist": {{"namespace": "history"}}, "other": {{"namespace": "x"}}}},
                "services": {services}}}"#
        )
    }

    #[test]
    fn a_topic_listed_by_a_service_is_claimed_and_the_others_stay_open() {
        let m = parse(&manifest(
            r#"{"web": {"run": ["w"], "access": {"topics": ["prices"]}},
                "feed": {"run": ["f"], "access": {"topics": ["prices", "news"]}},
                "api": {"run": ["a"]},
                "ops": {"run": ["o"], "access": "app"}}"#,
        ))
        .unwrap();
        let (web, feed, api, ops) = (
            m.reach("web").unwrap(),
            m.reach("feed").unwrap(),
            m.reach("api").unwrap(),
            m.reach("ops").unwrap(),
        );
        assert!(web.may_publish_topic("prices") && feed.may_publish_topic("prices"));
        assert!(!web.may_publish_topic("news"), "claimed by feed alone");
        assert!(!api.may_publish_topic("prices") && !api.may_publish_topic("news"));
        assert!(ops.may_publish_topic("news"), "\"access\": \"app\" reaches every topic");
        // A topic nobody lists is open to every token.
        for reach in [&web, &feed, &api, &ops] {
            assert!(reach.may_publish_topic("chat"));
        }
        let err = parse(&manifest(r#"{"web": {"run": ["w"], "access": {"topics": [""]}}}"#)).unwrap_err();
        assert!(err.to_string().contains("services.web.access.topics[0]"), "{err}");
    }

    #[test]
    fn reach_follows_bindings_consumes_and_declarations() {
        let m = parse(&manifest(
            r#"{"web": {"run": ["w"], "bindings": ["api"],
                        "access": {"calls": ["worker"], "publishes": ["orders"], "namespaces": ["history"]}},
                "api": {"run": ["a"]},
                "worker": {"run": ["k"], "consumes": {"queue": "orders", "group": "g", "path": "/"},
                           "access": {"fetches": ["orders.dlq"]}},
                "ops": {"run": ["o"], "access": "app"}}"#,
        ))
        .unwrap();
        let web = m.reach("web").unwrap();
        assert!(web.may_call("api") && web.may_call("worker") && !web.may_call("ops"));
        assert!(web.may_publish("orders") && !web.may_publish("audit") && !web.may_fetch("orders"));
        assert!(web.may_use_namespace("history") && !web.may_use_namespace("x"));
        assert!(web.may_read_cache("hist"), "a cache over a namespace it reads");
        assert!(!web.may_read_cache("other") && !web.may_use_cache_keys());
        let worker = m.reach("worker").unwrap();
        assert!(worker.may_fetch("orders") && worker.may_fetch("orders.dlq"));
        assert!(!worker.may_publish("orders") && !worker.may_call("web"));
        let api = m.reach("api").unwrap();
        assert!(!api.may_call("web") && !api.may_use_namespace("history"));
        let ops = m.reach("ops").unwrap();
        assert!(ops.may_call("web") && ops.may_publish("audit") && ops.may_use_cache_keys());
        assert!(m.reach("nope").is_none());
    }

    #[test]
    fn a_functions_store_trigger_namespace_is_its_own() {
        let m = parse(
            r#"{"strata": 1, "app": "a", "functions": {"f": {"run": ["x"],
                "trigger": {"store": {"namespace": "docs"}}, "access": {"namespaces": ["out"]}}}}"#,
        )
        .unwrap();
        let f = m.reach("f").unwrap();
        assert!(f.may_use_namespace("docs") && f.may_use_namespace("out") && !f.may_use_namespace("x"));
        let expanded = m.expanded();
        assert_eq!(expanded.reach("f"), Some(f));
    }

    #[test]
    fn names_are_checked_where_they_are_written() {
        let err = |services: &str| parse(&manifest(services)).unwrap_err().to_string();
        let e = err(r#"{"web": {"run": ["w"], "access": {"calls": ["nope"]}}}"#);
        assert!(
            e.contains("services.web.access.calls[0]") && e.contains("\"nope\""),
            "{e}"
        );
        let e = err(r#"{"web": {"run": ["w"], "access": {"caches": ["hist", "gone"]}}}"#);
        assert!(
            e.contains("services.web.access.caches[1]") && e.contains("hist, other"),
            "{e}"
        );
        let e = err(r#"{"web": {"run": ["w"], "access": {"publishes": ["orders.dlq"]}}}"#);
        assert!(e.contains("services.web.access.publishes[0]"), "{e}");
        let e = err(r#"{"web": {"run": ["w"], "access": {"namespaces": ["A B"]}}}"#);
        assert!(e.contains("services.web.access.namespaces[0]"), "{e}");
        let e = err(r#"{"web": {"run": ["w"], "access": "everything"}}"#);
        assert!(e.contains("services.web.access") && e.contains("\"app\""), "{e}");
        let e = err(r#"{"web": {"run": ["w"], "access": {"publish": ["orders"]}}}"#);
        assert!(e.contains("services.web.access.publish"), "{e}");
    }

    #[test]
    fn access_serializes_as_written() {
        let m = parse(&manifest(
            r#"{"web": {"run": ["w"], "access": "app"}, "api": {"run": ["a"], "access": {"calls": ["web"]}}}"#,
        ))
        .unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["services"]["web"]["access"], "app");
        assert_eq!(v["services"]["api"]["access"]["calls"][0], "web");
        assert_eq!(parse(&v.to_string()).unwrap(), m);
    }
}
