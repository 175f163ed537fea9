//! `parse_all`: one run names every problem it can find, in a fixed order, and its first
//! is the one `parse` reports.

use serde_json::{json, Value};
use strata_manifest::{parse, parse_all, ManifestError};

const HELLO: &str = include_str!("fixtures/hello.json");

fn hello() -> Value {
    serde_json::from_str(HELLO).expect("HELLO is JSON")
}

/// Every problem of `text`, as "path: message" lines; and `parse`'s error is the first.
#[track_caller]
fn problems(text: &str) -> Vec<String> {
    let all = parse_all(text).expect_err("a manifest with problems");
    let first = parse(text).expect_err("parse rejects it too");
    assert_eq!(all[0], first, "parse reports the first of parse_all's problems");
    all.iter().map(ToString::to_string).collect()
}

#[track_caller]
fn assert_lines(found: &[String], want: &[&str]) {
    assert_eq!(found.len(), want.len(), "{found:#?}");
    for (line, start) in found.iter().zip(want) {
        assert!(
            line.starts_with(start),
            "{line:?} does not start with {start:?}: {found:#?}"
        );
    }
}

#[test]
fn a_valid_manifest_has_no_problem() {
    let m = parse_all(HELLO).expect("hello is valid");
    assert_eq!(m, parse(HELLO).unwrap());
}

#[test]
fn every_check_that_fails_is_reported_once() {
    let mut v = hello();
    v["services"]["web"]["instances"] = json!({"min": 5, "max": 2});
    v["services"]["web"]["routes"] = json!(["web"]);
    v["services"]["api"]["bindings"] = json!(["nope"]);
    v["services"]["api"]["relay"] = json!({"timeout_ms": 0});
    let found = problems(&v.to_string());
    // Services in name order (api, web), each one's checks in the order they run.
    assert_lines(
        &found,
        &[
            "services.api.bindings[0]: expected the name of a service in this manifest (web), found \"nope\"",
            "services.api.relay.timeout_ms: expected a number of milliseconds greater than 0",
            "services.web.instances.min: expected at most instances.max (2), found 5",
            "services.web.routes[0]: expected a path starting with /, found \"web\"",
        ],
    );
}

#[test]
fn typos_and_wrong_types_are_stepped_over_to_find_the_rest() {
    let mut v = hello();
    v["services"]["web"]["helth"] = json!({"path": "/"});
    v["services"]["api"]["instances"]["max"] = json!("eight");
    v["services"]["web"]["instances"] = json!({"min": 5, "max": 2});
    v["gateway"]["listen"] = json!("localhost");
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &[
            // serde's problems first, in the text's order (api comes first here)...
            "services.api.instances.max: expected a whole number, found a string \"eight\"",
            "services.web.helth: unknown field",
            // ...then the checks, none of them about api.instances, whose max is now
            // a default the text never said.
            "gateway.listen: expected a socket address",
            "services.web.instances.min: expected at most instances.max (2), found 5",
        ],
    );
}

#[test]
fn a_wrong_item_takes_its_array_out_without_renumbering_the_others() {
    let mut v = hello();
    v["services"]["web"]["routes"] = json!(["/", 7]);
    v["services"]["web"]["bindings"] = json!(["api", 3]);
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &[
            "services.web.bindings[1]: expected a string",
            "services.web.routes[1]: expected",
        ],
    );
}

#[test]
fn what_cannot_be_stepped_over_ends_the_search() {
    // A syntax error: nothing after it can be read.
    let found = problems("{\"strata\": 1, \"app\": \"x\",, }");
    assert_eq!(found.len(), 1, "{found:?}");
    // Another version: nothing else is judged.
    let mut v = hello();
    v["strata"] = json!(2);
    v["services"]["web"]["helth"] = json!({});
    assert_lines(&problems(&v.to_string()), &["strata: expected 1"]);
    // A required field of the wrong type is then missing: one problem, not two.
    let mut v = hello();
    v["services"]["web"]["run"] = json!("python3 app.py");
    v["services"]["api"]["helth"] = json!({});
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &["services.api.helth: unknown field", "services.web.run: expected"],
    );
}

#[test]
fn a_key_given_twice_and_a_check_are_both_reported() {
    let text = r#"{"strata": 1, "app": "Shop", "app": "shop!",
        "services": {"web": {"run": ["x"], "instances": {"max": 0}}}}"#;
    let found = problems(text);
    assert_lines(
        &found,
        &[
            "app: appears more than once",
            "app: expected an app name",
            "services.web.instances.max: expected between 1 and 10000, found 0",
        ],
    );
}

#[test]
fn a_queue_with_a_bad_segment_size_is_not_also_blamed_for_its_message_size() {
    let mut v = hello();
    v["queues"] = json!({"jobs": {"segment_bytes": 10, "lease_ms": 0}});
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &[
            "queues.jobs.lease_ms: expected between 1 and",
            "queues.jobs.segment_bytes: expected between 65536 and 1073741824 bytes, found 10",
        ],
    );
}

#[test]
fn a_function_s_limits_are_reported_once() {
    let mut v = hello();
    v["functions"] = json!({"f": {"run": [], "trigger": {"http": "/f"}, "max_instances": 0, "timeout_ms": 0}});
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &[
            "functions.f.max_instances: expected between 1 and",
            "functions.f.timeout_ms: expected a number of milliseconds",
            "functions.f.run: expected a command",
        ],
    );
    // The shape of the errors a program branches on is kept.
    let all = parse_all(&v.to_string()).unwrap_err();
    assert!(matches!(&all[0], ManifestError::Invalid { path, .. } if path == "functions.f.max_instances"));
}

#[test]
fn a_services_subscriptions_are_checked_each_by_its_path() {
    let mut v = hello();
    v["services"]["web"]["subscribes"] = json!([
        {"topic": "", "path": "/a"},
        {"topic": "t", "path": "no-slash"},
        {"topic": "t", "path": "/t", "mode": "any"},
        {"topic": "t", "path": "/t"},
    ]);
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &[
            "services.web.subscribes[0].topic: expected a topic name of 1 to 256 bytes without control characters, found an empty string",
            "services.web.subscribes[1].path: expected a path starting with /, found \"no-slash\"",
            "services.web.subscribes[3]: expected a subscription not already made by subscribes[2]",
        ],
    );
    // One object is a list of one; serde's errors name the service and the field.
    v["services"]["web"]["subscribes"] = json!({"topic": "t", "path": "/t"});
    let m = parse(&v.to_string()).expect("one subscription");
    assert_eq!(m.services["web"].subscribes.len(), 1);
    assert_eq!(m.services["web"].subscribes[0].mode, strata_manifest::CallMode::All);
    for (bad, want) in [
        (
            json!({"topic": "t", "path": "/t", "mode": "some"}),
            "services.web.subscribes.mode",
        ),
        (
            json!([{"topic": "t", "path": "/t", "mode": "both"}]),
            "services.web.subscribes[0].mode",
        ),
        (
            json!({"topic": "t", "path": "/t", "mdoe": "any"}),
            "services.web.subscribes",
        ),
        (json!({"path": "/t"}), "services.web.subscribes"),
        (json!("t"), "services.web.subscribes"),
        (json!([["t", "/t"]]), "services.web.subscribes[0]"),
    ] {
        v["services"]["web"]["subscribes"] = bad.clone();
        let e = parse(&v.to_string()).expect_err("refused").to_string();
        assert!(e.starts_with(want), "{bad}: {e}");
    }
}

#[test]
fn an_env_may_not_replace_the_instance_contract() {
    let mut v = hello();
    v["services"]["web"]["env"] = json!({"PORT": "8080", "STRATA_URL": "http://elsewhere", "STRATA_TOKEN": "${STRATA_TOKEN}", "APP_PORT": "${PORT}", "PATH": "/opt/bin"});
    let found = problems(&v.to_string());
    assert_lines(
        &found,
        &[
            "services.web.env.PORT: expected a variable that is not the instance contract's: strata sets PORT for each instance (pass it on under another name, e.g. \"APP_PORT\": \"${PORT}\"",
            "services.web.env.STRATA_URL: expected a variable that is not the instance contract's",
        ],
    );
}
