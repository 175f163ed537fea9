//! The JSON Schema (`schema/strata.schema.json`) describes the same model as the serde
//! types: the same property names, the same defaults, and (where python3 with
//! jsonschema is installed) the same verdict on example manifests.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use strata_manifest::{parse, Manifest, ManifestError};

const HELLO: &str = include_str!("fixtures/hello.json");
const FULL: &str = include_str!("fixtures/full.json");

fn hello() -> Value {
    serde_json::from_str(HELLO).expect("HELLO is JSON")
}

fn full() -> Value {
    serde_json::from_str(FULL).expect("FULL is JSON")
}

fn parse_value(v: &Value) -> Result<Manifest, ManifestError> {
    parse(&v.to_string())
}

fn schema() -> Value {
    serde_json::from_str(strata_manifest::SCHEMA).expect("schema is JSON")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// The fields of all the objects, in one object.
fn merged<'a>(objects: impl Iterator<Item = &'a Value>) -> Value {
    let mut all = serde_json::Map::new();
    for object in objects {
        all.extend(object.as_object().expect("an object").clone());
    }
    Value::Object(all)
}

/// JSON pointers to every object the schema defines (`"type": "object"` with
/// `properties`), wherever it stands: the root, `$defs`, a property, an array's items,
/// a map's values or a branch of `anyOf`/`oneOf`/`allOf`. A branch that only constrains
/// the object holding it (no `type`, like the "exactly one of" of a trigger) is not a
/// definition of its own.
fn object_definitions(schema: &Value) -> BTreeSet<String> {
    fn walk(pointer: String, node: &Value, found: &mut BTreeSet<String>) {
        let Some(node) = node.as_object() else {
            return;
        };
        if node.get("type").and_then(Value::as_str) == Some("object") && node.contains_key("properties") {
            found.insert(pointer.clone());
        }
        for (keyword, child) in node {
            match keyword.as_str() {
                "$defs" | "properties" => {
                    for (name, schema) in child.as_object().into_iter().flatten() {
                        let name = name.replace('~', "~0").replace('/', "~1");
                        walk(format!("{pointer}/{keyword}/{name}"), schema, found);
                    }
                }
                "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                    for (i, schema) in child.as_array().into_iter().flatten().enumerate() {
                        walk(format!("{pointer}/{keyword}/{i}"), schema, found);
                    }
                }
                "items" | "additionalProperties" | "propertyNames" | "not" => {
                    walk(format!("{pointer}/{keyword}"), child, found)
                }
                _ => {}
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(String::new(), schema, &mut found);
    found
}

/// The schema at `pointer` has a description, or is a branch of an `anyOf`/`oneOf` whose
/// holder has one.
fn described(schema: &Value, pointer: &str) -> bool {
    let has = |pointer: &str| schema.pointer(pointer).and_then(|d| d.get("description")).is_some();
    let mut parts = pointer.rsplitn(3, '/');
    let branch = (parts.next(), parts.next(), parts.next());
    has(pointer) || matches!(branch, (Some(_), Some("anyOf" | "oneOf"), Some(holder)) if has(holder))
}

#[test]
fn schema_is_draft_2020_12_and_closed() {
    let schema = schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let definitions = object_definitions(&schema);
    assert!(definitions.contains("/$defs/file/oneOf/0"), "{definitions:?}");
    for pointer in &definitions {
        let def = schema.pointer(pointer).expect("found by the walk");
        assert_eq!(def["additionalProperties"], false, "{pointer:?} must be closed");
        assert!(described(&schema, pointer), "{pointer:?} lacks a description");
    }
}

/// Every struct's field names are exactly the schema's property names, so adding a
/// field to one without the other fails here.
#[test]
fn schema_properties_match_the_model() {
    let schema = schema();
    // The fixture's timer has a cron; `tick` has the other field of a timer.
    let mut full = full();
    full["functions"]["tick"] = json!({"run": ["./tick"], "trigger": {"timer": {"interval_ms": 1000}}});
    let m = serde_json::to_value(parse_value(&full).expect("full")).expect("serialize");
    let cart = &m["services"]["cart"];
    // A trigger and a timer serialize only the one field that is set: their fields are
    // those of all the functions' triggers together.
    let functions = m["functions"].as_object().expect("functions");
    let triggers = merged(functions.values().map(|f| &f["trigger"]));
    let timers = merged(functions.values().filter_map(|f| f["trigger"].get("timer")));
    let pairs = [
        ("", &m),
        ("/$defs/gateway", &m["gateway"]),
        ("/$defs/service", cart),
        ("/$defs/instances", &cart["instances"]),
        ("/$defs/route/anyOf/1", &cart["routes"][2]),
        (
            "/$defs/route/anyOf/1/properties/fallback",
            &cart["routes"][2]["fallback"],
        ),
        ("/$defs/health", &cart["health"]),
        ("/$defs/resources", &cart["resources"]),
        ("/$defs/placement", &cart["placement"]),
        ("/$defs/relay", &cart["relay"]),
        ("/$defs/setup", &cart["setup"]),
        ("/$defs/file/oneOf/0", &cart["files"]["conf/cart.toml"]),
        ("/$defs/file/oneOf/1", &cart["files"]["data/seed.json"]),
        ("/$defs/consumes", &cart["consumes"]),
        ("/$defs/subscribes", &cart["subscribes"][0]),
        ("/$defs/queue", &m["queues"]["orders"]),
        ("/$defs/retention", &m["queues"]["orders"]["retention"]),
        ("/$defs/queue_limits", &m["queue_limits"]),
        ("/$defs/store", &m["store"]),
        ("/$defs/cache", &m["cache"]),
        ("/$defs/read_through", &m["caches"]["history"]),
        ("/$defs/autoscale", &cart["autoscale"]),
        ("/$defs/access", &cart["access"]),
        ("/$defs/function", &m["functions"]["thumbnail"]),
        (
            "/$defs/trigger/properties/store/anyOf/0",
            &m["functions"]["thumbnail"]["trigger"]["store"],
        ),
        (
            "/$defs/trigger/properties/queue/anyOf/0",
            &m["functions"]["fulfil"]["trigger"]["queue"],
        ),
        ("/$defs/trigger", &triggers),
        ("/$defs/trigger/properties/timer/anyOf/0", &timers),
    ];
    // Pairs for every object the schema defines, so that a definition (an anyOf or
    // oneOf branch too) cannot go unchecked.
    let paired: BTreeSet<String> = pairs.iter().map(|(pointer, _)| pointer.to_string()).collect();
    assert_eq!(
        paired,
        object_definitions(&schema),
        "schema definitions without a model value"
    );
    for (pointer, value) in pairs {
        let properties = &schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("schema lacks {pointer:?}"))["properties"];
        assert_eq!(keys(properties), keys(value), "{pointer:?}");
        for (name, property) in properties.as_object().unwrap() {
            let described = property.get("description").is_some()
                || property
                    .get("$ref")
                    .and_then(Value::as_str)
                    .is_some_and(|r| schema.pointer(&r[1..]).and_then(|d| d.get("description")).is_some());
            assert!(described, "{pointer}/{name} lacks a description");
        }
    }
    // Spelled out for ServiceSpec, the struct most likely to grow.
    for field in keys(cart) {
        assert!(
            schema["$defs"]["service"]["properties"].get(&field).is_some(),
            "{field}"
        );
    }
}

/// The schema's defaults are the ones serde fills in.
#[test]
fn schema_defaults_match_the_model() {
    let schema = schema();
    // `bare` leaves every service field out; `s` has the optional objects, each minimal.
    let minimal = json!({"strata": 1, "app": "a", "services": {
        "bare": {"run": ["x"]},
        "s": {"run": ["x"], "routes": [{"path": "/"}], "health": {"path": "/"}, "setup": {"run": ["x"]},
              "consumes": {"queue": "q", "group": "g", "path": "/"}, "autoscale": {}, "access": {},
              "subscribes": {"topic": "t", "path": "/"}}},
        "queues": {"q": {}}, "caches": {"c": {"namespace": "n"}},
        "functions": {"f": {"run": ["x"], "trigger": {"store": {"namespace": "n"}}},
                      "h": {"run": ["x"], "trigger": {"queue": {"queue": "q"}}}}});
    let m = serde_json::to_value(parse_value(&minimal).expect("minimal")).expect("serialize");
    let s = &m["services"]["s"];
    let pairs = [
        ("/$defs/gateway", &m["gateway"]),
        ("/$defs/service", &m["services"]["bare"]),
        ("/$defs/instances", &s["instances"]),
        ("/$defs/route/anyOf/1", &s["routes"][0]),
        ("/$defs/health", &s["health"]),
        ("/$defs/resources", &s["resources"]),
        ("/$defs/placement", &s["placement"]),
        ("/$defs/relay", &s["relay"]),
        ("/$defs/setup", &s["setup"]),
        ("/$defs/consumes", &s["consumes"]),
        ("/$defs/subscribes", &s["subscribes"][0]),
        ("/$defs/queue", &m["queues"]["q"]),
        ("/$defs/retention", &m["queues"]["q"]["retention"]),
        ("/$defs/queue_limits", &m["queue_limits"]),
        ("/$defs/store", &m["store"]),
        ("/$defs/cache", &m["cache"]),
        ("/$defs/read_through", &m["caches"]["c"]),
        ("/$defs/autoscale", &s["autoscale"]),
        ("/$defs/access", &s["access"]),
        ("/$defs/function", &m["functions"]["f"]),
        (
            "/$defs/trigger/properties/store/anyOf/0",
            &m["functions"]["f"]["trigger"]["store"],
        ),
        (
            "/$defs/trigger/properties/queue/anyOf/0",
            &m["functions"]["h"]["trigger"]["queue"],
        ),
    ];
    let mut checked = 0;
    for (pointer, value) in pairs {
        let def = schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("schema lacks {pointer}"));
        for (name, property) in def["properties"].as_object().unwrap() {
            if let Some(default) = property.get("default") {
                let actual = value.get(name).cloned().unwrap_or(Value::Null);
                assert_eq!(&actual, default, "{pointer}/properties/{name}");
                checked += 1;
            }
        }
        // An object's own default, filled in, is what serde builds for it.
        if let Some(default) = def.get("default") {
            let mut filled = serde_json::Map::new();
            for (name, property) in def["properties"].as_object().unwrap() {
                if let Some(d) = default.get(name).or_else(|| property.get("default")) {
                    if !d.is_null() {
                        filled.insert(name.clone(), d.clone());
                    }
                }
            }
            assert_eq!(&Value::Object(filled), value, "{pointer}/default");
        }
    }
    assert!(checked >= 25, "only {checked} defaults checked");
}

/// Runs python3's jsonschema over manifests and compares its verdict with `parse`, for
/// manifests whose problem the schema can express. Skipped, with the reason printed,
/// where python3 or jsonschema is not installed.
#[test]
fn schema_and_parser_agree_on_examples() {
    let mut cases: Vec<(&str, Value)> = vec![("hello", hello()), ("full", full())];
    let mut edit = |name: &'static str, f: &dyn Fn(&mut Value)| {
        let mut v = hello();
        f(&mut v);
        cases.push((name, v));
    };
    edit("version 2", &|v| v["strata"] = json!(2));
    edit("unknown root field", &|v| v["extra"] = json!(1));
    edit("unknown service field", &|v| {
        v["services"]["api"]["instancs"] = json!({})
    });
    edit("min as string", &|v| {
        v["services"]["api"]["instances"]["min"] = json!("two")
    });
    edit("max 0", &|v| {
        v["services"]["api"]["instances"] = json!({"min": 0, "max": 0})
    });
    edit("bad service name", &|v| v["services"]["Bad"] = json!({"run": ["x"]}));
    edit("bad app name", &|v| v["app"] = json!("Hello"));
    edit("no services", &|v| v["services"] = json!({}));
    edit("empty run", &|v| v["services"]["api"]["run"] = json!([]));
    edit("empty program", &|v| v["services"]["api"]["run"] = json!([""]));
    edit("route without slash", &|v| {
        v["services"]["api"]["routes"] = json!(["api"])
    });
    edit("route object typo", &|v| {
        v["services"]["api"]["routes"] = json!([{"path": "/a", "hots": "x"}])
    });
    edit("route mode", &|v| {
        v["services"]["api"]["routes"] = json!([{"path": "/a", "mode": "some"}])
    });
    edit("subscribes one", &|v| {
        v["services"]["api"]["subscribes"] = json!({"topic": "t", "path": "/t"})
    });
    edit(
        "subscribes list",
        &|v| {
            v["services"]["api"]["subscribes"] =
                json!([{"topic": "t", "path": "/t", "mode": "any"}, {"topic": "u", "path": "/u", "mode": "all"}])
        },
    );
    edit("subscribes empty topic", &|v| {
        v["services"]["api"]["subscribes"] = json!({"topic": "", "path": "/t"})
    });
    edit("subscribes control in topic", &|v| {
        v["services"]["api"]["subscribes"] = json!({"topic": "a\nb", "path": "/t"})
    });
    edit("subscribes path", &|v| {
        v["services"]["api"]["subscribes"] = json!({"topic": "t", "path": "t"})
    });
    edit("subscribes mode", &|v| {
        v["services"]["api"]["subscribes"] = json!([{"topic": "t", "path": "/t", "mode": "some"}])
    });
    edit("subscribes typo", &|v| {
        v["services"]["api"]["subscribes"] = json!({"topic": "t", "path": "/t", "mdoe": "any"})
    });
    edit("subscribes string", &|v| {
        v["services"]["api"]["subscribes"] = json!("t")
    });
    edit("subscribes without path", &|v| {
        v["services"]["api"]["subscribes"] = json!({"topic": "t"})
    });
    edit("health path", &|v| {
        v["services"]["api"]["health"]["path"] = json!("healthz")
    });
    edit("grpc service", &|v| {
        v["services"]["api"]["grpc"] = json!(["test.Echo", "Other"])
    });
    edit("grpc bad service", &|v| {
        v["services"]["api"]["grpc"] = json!(["test..Echo"])
    });
    edit("grpc service with slash", &|v| {
        v["services"]["api"]["grpc"] = json!(["test/Echo"])
    });
    edit("grpc idempotent", &|v| {
        v["services"]["api"]["relay"] = json!({"idempotent": ["test.Echo/Get", "test.Echo/*"]})
    });
    edit("grpc idempotent without method", &|v| {
        v["services"]["api"]["relay"] = json!({"idempotent": ["test.Echo"]})
    });
    edit("grpc health", &|v| v["services"]["api"]["health"] = json!({"grpc": ""}));
    edit("grpc health named", &|v| {
        v["services"]["api"]["health"] = json!({"grpc": "test.Echo"})
    });
    edit("grpc health bad name", &|v| {
        v["services"]["api"]["health"] = json!({"grpc": "a b"})
    });
    edit("health neither", &|v| {
        v["services"]["api"]["health"] = json!({"interval_ms": 100})
    });
    edit("health interval 0", &|v| {
        v["services"]["api"]["health"]["interval_ms"] = json!(0)
    });
    edit("absolute file", &|v| {
        v["services"]["api"]["files"] = json!({"/etc/x": {"content": ""}})
    });
    edit("dotdot file", &|v| {
        v["services"]["api"]["files"] = json!({"a/../../x": {"content": ""}})
    });
    edit("file both", &|v| {
        v["services"]["api"]["files"] = json!({"x": {"content": "", "source": "y"}})
    });
    edit("file neither", &|v| v["services"]["api"]["files"] = json!({"x": {}}));
    edit("absolute workdir", &|v| v["services"]["api"]["workdir"] = json!("/srv"));
    edit("env with =", &|v| v["services"]["api"]["env"] = json!({"A=B": ""}));
    edit("env number", &|v| v["services"]["api"]["env"] = json!({"A": 1}));
    edit("memory 0", &|v| {
        v["services"]["api"]["resources"]["memory_mb"] = json!(0)
    });
    edit("empty spread", &|v| {
        v["services"]["api"]["placement"]["spread"] = json!("")
    });
    edit("small header limit", &|v| v["gateway"]["max_header_bytes"] = json!(100));
    edit("relay 0", &|v| v["services"]["api"]["relay"] = json!({"timeout_ms": 0}));
    edit("duplicate binding", &|v| {
        v["services"]["api"]["bindings"] = json!(["web", "web"])
    });
    edit("setup string", &|v| v["services"]["api"]["setup"] = json!("pip"));
    edit("no run", &|v| {
        v["services"]["api"].as_object_mut().unwrap().remove("run");
    });
    edit("no run, oci host image", &|v| {
        let api = v["services"]["api"].as_object_mut().unwrap();
        api.remove("run");
        api.insert("driver".into(), json!("oci"));
        api.insert("image".into(), json!("host"));
    });
    edit("no run, oci image", &|v| {
        let api = v["services"]["api"].as_object_mut().unwrap();
        api.remove("run");
        api.insert("driver".into(), json!("oci"));
        api.insert("image".into(), json!("./busybox.tar"));
    });
    edit("setup object", &|v| {
        v["services"]["api"]["setup"] = json!({"run": ["pip"], "inputs": ["r.txt"]})
    });
    edit("struct as array", &|v| {
        v["services"]["api"]["instances"] = json!([1, 4])
    });
    edit("autoscale", &|v| {
        v["services"]["api"]["autoscale"] = json!({"concurrency": 4, "max_inflight": null})
    });
    edit("autoscale concurrency 0", &|v| {
        v["services"]["api"]["autoscale"] = json!({"concurrency": 0})
    });
    edit("autoscale typo", &|v| {
        v["services"]["api"]["autoscale"] = json!({"concurency": 4})
    });
    edit(
        "function timer",
        &|v| v["functions"] = json!({"tick": {"run": ["x"], "trigger": {"timer": {"interval_ms": 100}}}}),
    );
    edit(
        "function http",
        &|v| v["functions"] = json!({"hook": {"run": ["x"], "trigger": {"http": {"path": "/hook"}}, "concurrency": 2}}),
    );
    edit(
        "function two triggers",
        &|v| v["functions"] = json!({"f": {"run": ["x"], "trigger": {"http": "/h", "timer": {"interval_ms": 1}}}}),
    );
    edit("function no trigger", &|v| {
        v["functions"] = json!({"f": {"run": ["x"], "trigger": {}}})
    });
    edit(
        "function timer both",
        &|v| v["functions"] = json!({"f": {"run": ["x"], "trigger": {"timer": {"interval_ms": 1, "cron": "@daily"}}}}),
    );
    edit("functions only", &|v| {
        v.as_object_mut().unwrap().remove("services");
        v["functions"] = json!({"tick": {"run": ["x"], "trigger": {"timer": {"interval_ms": 100}}}})
    });
    edit("no services, empty functions", &|v| {
        v.as_object_mut().unwrap().remove("services");
        v["functions"] = json!({})
    });
    edit(
        "function trigger with nulls",
        &|v| v["functions"] = json!({"f": {"run": ["x"], "trigger": {"http": "/h", "queue": null, "timer": null}}}),
    );
    edit(
        "function timer with a null cron",
        &|v| v["functions"] = json!({"f": {"run": ["x"], "trigger": {"timer": {"interval_ms": 5, "cron": null}}}}),
    );
    edit("function only null triggers", &|v| {
        v["functions"] = json!({"f": {"run": ["x"], "trigger": {"http": null}}})
    });
    edit("function bad name", &|v| {
        v["functions"] = json!({"F": {"run": ["x"], "trigger": {"http": "/h"}}})
    });
    edit("access app", &|v| v["services"]["api"]["access"] = json!("app"));
    edit("access lists", &|v| {
        v["services"]["api"]["access"] = json!({"calls": ["web"], "namespaces": ["notes"], "cache_keys": true})
    });
    edit("access other string", &|v| {
        v["services"]["api"]["access"] = json!("all")
    });
    edit("access typo", &|v| {
        v["services"]["api"]["access"] = json!({"publish": ["q"]})
    });
    edit("access bad namespace", &|v| {
        v["services"]["api"]["access"] = json!({"namespaces": ["Notes"]})
    });
    edit("queue limits", &|v| {
        v["queue_limits"] = json!({"max_queues": 10, "max_total_bytes": 1048576, "max_segment_bytes": 65536});
        v["store"] = json!({"max_blob_bytes": 1024})
    });
    edit("queue limits null total", &|v| {
        v["queue_limits"] = json!({"max_total_bytes": null})
    });
    edit("max_queues 0", &|v| v["queue_limits"] = json!({"max_queues": 0}));
    edit("api segments too small", &|v| {
        v["queue_limits"] = json!({"max_segment_bytes": 4096})
    });
    edit("queue limits typo", &|v| v["queue_limits"] = json!({"max_queue": 5}));
    edit("blob cap 0", &|v| v["store"] = json!({"max_blob_bytes": 0}));
    edit("blob cap over 16 TiB", &|v| {
        v["store"] = json!({"max_blob_bytes": 17592186044417u64})
    });
    edit("oci host", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["image"] = json!("host");
        v["services"]["api"]["user"] = json!("1000:100");
        v["services"]["api"]["resources"] = json!({"memory_mb": 64, "cpus": 0.5, "pids": 100});
    });
    edit("oci defaults", &|v| v["services"]["api"]["driver"] = json!("oci"));
    edit("oci private network", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["network"] = json!("private");
    });
    edit("oci unconfined", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["seccomp"] = json!("unconfined");
    });
    edit("seccomp off", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["seccomp"] = json!("off");
    });
    edit("network bridge", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["network"] = json!("bridge");
    });
    edit("driver docker", &|v| v["services"]["api"]["driver"] = json!("docker"));
    edit("oci image busybox", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["image"] = json!("busybox");
    });
    edit("oci user name", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["user"] = json!("nobody");
    });
    edit("cpus too small", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["resources"]["cpus"] = json!(0.001);
    });
    edit("pids 0", &|v| {
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["resources"]["pids"] = json!(0);
    });
    edit("nulls", &|v| {
        v["services"]["api"]["workdir"] = Value::Null;
        v["services"]["api"]["health"] = Value::Null;
        v["gateway"]["max_body_bytes"] = Value::Null;
    });

    const SCRIPT: &str = r#"
import json, sys
try:
    import jsonschema
except ImportError as e:
    print("SKIP jsonschema is not installed for python3 (" + str(e) + ")")
    sys.exit(0)
data = json.load(sys.stdin)
jsonschema.Draft202012Validator.check_schema(data["schema"])
validator = jsonschema.Draft202012Validator(data["schema"])
for case in data["cases"]:
    errors = list(validator.iter_errors(case))
    print("valid" if not errors else "invalid " + errors[0].message.replace("\n", " ")[:160])
"#;
    let input = json!({
        "schema": schema(),
        "cases": cases.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    });
    let child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            strata_testkit::needs("schema_and_parser_agree_on_examples", Err(format!("python3 ({err})")));
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("python3 output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3 failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(reason) = stdout.strip_prefix("SKIP ") {
        strata_testkit::needs("schema_and_parser_agree_on_examples", Err(reason.trim().to_string()));
        return;
    }
    let verdicts: Vec<&str> = stdout.lines().collect();
    assert_eq!(verdicts.len(), cases.len(), "{stdout}");
    for ((name, v), verdict) in cases.iter().zip(verdicts) {
        let parsed = parse_value(v);
        assert_eq!(
            parsed.is_ok(),
            verdict == "valid",
            "{name}: parse says {:?}, schema says {verdict}",
            parsed.map(|_| ()).map_err(|e| e.to_string()),
        );
    }
}
