//! Pool membership follows the life of instances: readiness, liveness, restarts with
//! back-off, bindings order, capacity.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::*;
use http::StatusCode;
use serde_json::{json, Value};
use strata_appservice::{Event, EventKind, InstanceState, NodeResources};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_follows_readiness_and_a_killed_member_is_replaced() {
    let app = App::new();
    let unhealthy = app.path().join("unhealthy");
    std::fs::write(&unhealthy, "").unwrap();
    let spec = app.member(json!({
        "instances": { "min": 2, "max": 2 },
        "routes": ["/"],
        "env": { "UNHEALTHY": unhealthy.display().to_string() },
        "health": { "path": "/healthz", "interval_ms": 100 },
    }));
    let node = app
        .start(app.config(app.manifest(json!({ "web": spec }), Value::Null)))
        .await;

    // Running and probed, but not ready: not members, nothing relayed to them.
    wait_until("both instances probed 3 times", READY_TIMEOUT, || {
        let mut probes: BTreeMap<String, usize> = BTreeMap::new();
        for r in app.records().iter().filter(|r| r["path"] == "/healthz") {
            *probes.entry(r["instance"].as_str().unwrap().to_string()).or_default() += 1;
        }
        probes.len() == 2 && probes.values().all(|&n| n >= 3)
    })
    .await;
    let ps = service(&node, "web");
    assert_eq!(ps.ready, 0);
    assert!(
        ps.instances
            .iter()
            .all(|i| i.state == InstanceState::Starting && i.pid.is_some()),
        "{ps:?}"
    );
    assert!(node.bus.pool("web").members().is_empty());
    let reply = get(node.gateway_addr, "/too-early").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    assert_eq!(
        app.requests(),
        Vec::<Value>::new(),
        "nothing relayed before the health check passed"
    );

    // Healthy: members, shown ready, relayed to.
    std::fs::remove_file(&unhealthy).unwrap();
    let ready = wait_ready(&node, "web", 2).await;
    assert!(ready.iter().all(|i| i.restarts == 0));
    let reply = get(node.gateway_addr, "/now").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.requests().len(), 1);

    // Killed: it leaves the pool at once, gets no request, and is launched again.
    let victim = ready.iter().find(|i| i.id == "web-1").unwrap().clone();
    let member = node
        .bus
        .pool("web")
        .members()
        .iter()
        .find(|m| m.id == "web-1")
        .unwrap()
        .clone();
    signal(victim.pid.unwrap() as i32, libc::SIGKILL);
    wait_until("web-1 left the pool", READY_TIMEOUT, || {
        !node
            .bus
            .pool("web")
            .members()
            .iter()
            .any(|m| std::sync::Arc::ptr_eq(m, &member))
    })
    .await;
    assert!(member.is_gone());
    let served_before = member.served();
    for i in 0..20 {
        let reply = get(node.gateway_addr, &format!("/after-kill/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_ne!(reply.json()["pid"], victim.pid.unwrap(), "the killed process answered");
    }
    assert_eq!(
        member.served(),
        served_before,
        "a request was relayed to the member that left"
    );
    let back = wait_for("web-1 relaunched and ready", READY_TIMEOUT, || {
        let i = service(&node, "web").instances.into_iter().find(|i| i.id == "web-1")?;
        (i.state == InstanceState::Ready).then_some(i)
    })
    .await;
    assert_eq!(back.restarts, 1);
    assert_ne!(back.pid, victim.pid, "a new process");
    assert!(
        back.last_exit.as_deref().unwrap_or("").contains("SIGKILL"),
        "{:?}",
        back.last_exit
    );
    wait_ready(&node, "web", 2).await;
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_check_restarts_the_instance() {
    let app = App::new();
    let flag = app.path().join("unhealthy");
    let spec = app.member(json!({
        "routes": ["/"],
        "env": { "UNHEALTHY": flag.display().to_string() },
        "health": { "path": "/healthz", "interval_ms": 100, "failure_threshold": 2 },
    }));
    let node = app
        .start(app.config(app.manifest(json!({ "web": spec }), Value::Null)))
        .await;
    let first = wait_ready(&node, "web", 1).await.remove(0);
    std::fs::write(&flag, "").unwrap();
    let sick = wait_for("the instance restarted for failing its checks", READY_TIMEOUT, || {
        let i = service(&node, "web").instances.remove(0);
        (i.restarts == 1).then_some(i)
    })
    .await;
    assert!(
        sick.last_exit
            .as_deref()
            .unwrap_or("")
            .contains("failed 2 health checks in a row (GET /healthz; the last: answered 503)"),
        "{:?}",
        sick.last_exit
    );
    assert!(node.app.recent_events().iter().any(|e| e.kind == EventKind::Unhealthy));
    assert!(!alive(first.pid.unwrap() as i32), "the unhealthy process was killed");
    std::fs::remove_file(&flag).unwrap();
    let again = wait_ready(&node, "web", 1).await.remove(0);
    assert_ne!(again.pid, first.pid);
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_starts_only_after_its_bindings_are_ready() {
    let app = App::new();
    let db_unready = app.path().join("db-unready");
    std::fs::write(&db_unready, "").unwrap();
    let services = json!({
        "db": app.member(json!({
            "env": { "UNHEALTHY": db_unready.display().to_string() },
            "health": { "path": "/healthz", "interval_ms": 100 },
        })),
        "web": app.member(json!({ "routes": ["/"], "bindings": ["db"] })),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_until("db launched and probed 3 times", READY_TIMEOUT, || {
        app.records()
            .iter()
            .filter(|r| r["instance"] == "db-1" && r["path"] == "/healthz")
            .count()
            >= 3
    })
    .await;
    // A program that answers its check, not 2xx yet, is checked at doubling spacing up
    // to its interval (100 ms), not every 1-20 ms: each check is a request it serves.
    let checks = || {
        app.records()
            .iter()
            .filter(|r| r["instance"] == "db-1" && r["path"] == "/healthz")
            .count()
    };
    let before = checks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let in_a_second = checks() - before;
    assert!(
        in_a_second <= 15,
        "{in_a_second} readiness checks in a second against an interval of 100 ms"
    );
    let web = service(&node, "web");
    assert!(web.instances.is_empty(), "web launched before db was ready: {web:?}");
    assert_eq!(web.state, "waiting for bindings: db");
    // A request for web meanwhile is told why there is no instance.
    let reply = get(node.gateway_addr, "/").await;
    assert_eq!(reply.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.json()["error"] == "no ready instance of service \"web\" (waiting for bindings: db)",
        "{}",
        reply.text()
    );
    assert!(
        app.starts().iter().all(|s| s["instance"] == "db-1"),
        "{:?}",
        app.starts()
    );

    std::fs::remove_file(&db_unready).unwrap();
    wait_ready(&node, "web", 1).await;
    let events = node.app.recent_events();
    let position = |service: &str, kind: EventKind| {
        events
            .iter()
            .position(|e| e.service == service && e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} event of {service}: {events:?}"))
    };
    let db_ready = position("db", EventKind::Ready);
    let web_launched = position("web", EventKind::Launched);
    assert!(
        db_ready < web_launched,
        "db ready (event {db_ready}) before web launched (event {web_launched})"
    );
    assert!(events[db_ready].at <= events[web_launched].at);
    // The members' own clocks agree: web started after db answered its check.
    let starts = app.starts();
    let start_of = |id: &str| {
        starts.iter().find(|s| s["instance"] == id).unwrap()["t"]
            .as_f64()
            .unwrap()
    };
    let db_ready_at = unix_seconds(events[db_ready].at);
    assert!(
        start_of("web-1") >= db_ready_at,
        "web started at {} before db was ready at {db_ready_at}",
        start_of("web-1")
    );
    assert!(start_of("db-1") < db_ready_at);
    stop(node).await;
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_exits_at_once_is_a_crash_loop_with_growing_backoff() {
    let app = App::new();
    let spec = json!({
        "run": ["python3", "-c", "import sys; print('boom', flush=True); sys.exit(3)"],
        "routes": ["/"],
    });
    let node = app
        .start(app.config(app.manifest(json!({ "flaky": spec }), Value::Null)))
        .await;
    let launches = |events: &[Event]| -> Vec<SystemTime> {
        events
            .iter()
            .filter(|e| e.service == "flaky" && e.kind == EventKind::Launched)
            .map(|e| e.at)
            .collect()
    };
    wait_until("5 launches", Duration::from_secs(30), || {
        launches(&node.app.recent_events()).len() >= 5
    })
    .await;
    let i = wait_for("crash-loop state", READY_TIMEOUT, || {
        let i = service(&node, "flaky").instances.remove(0);
        (i.state == InstanceState::CrashLoop).then_some(i)
    })
    .await;
    assert!(i.restarts >= 3, "{i:?}");
    assert_eq!(i.last_exit.as_deref(), Some("exited with status 3"));
    assert!(
        i.detail.as_deref().unwrap_or("").contains("next launch in"),
        "{:?}",
        i.detail
    );

    let events = node.app.recent_events();
    // The delays strata announced double: 0.1 s, 0.2 s, 0.4 s, ...
    let announced: Vec<f64> = events
        .iter()
        .filter(|e| e.service == "flaky" && matches!(e.kind, EventKind::Exited | EventKind::CrashLoop))
        .map(|e| {
            let (_, delay) = e.message.rsplit_once("launching again in ").expect("the delay is said");
            delay.trim_end_matches('s').parse::<f64>().unwrap()
        })
        .collect();
    assert!(announced.len() >= 4, "{announced:?}");
    assert!(
        announced.windows(2).all(|w| w[1] > w[0]),
        "back-off grows: {announced:?}"
    );
    assert_eq!(&announced[..3], [0.1, 0.2, 0.4]);
    // ... and the launches keep to them.
    let at = launches(&events);
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1].duration_since(w[0]).unwrap()).collect();
    for (gap, delay) in gaps.iter().zip(&announced) {
        assert!(
            gap.as_secs_f64() >= *delay,
            "relaunched after {gap:?}, before the announced {delay}s"
        );
    }
    // (The gaps themselves are not compared with each other: each also holds the
    // program's own start-up, which on a loaded machine varies by more than 0.7 s.)
    let reply = get(node.gateway_addr, "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_larger_than_the_node_is_unschedulable_and_never_launched() {
    let app = App::new();
    let services = json!({
        "big": app.member(json!({ "routes": ["/big"], "resources": { "memory_mb": 512 } })),
        "web": app.member(json!({ "routes": ["/"], "resources": { "memory_mb": 64 } })),
    });
    let mut config = app.config(app.manifest(services, Value::Null));
    config.node = NodeResources {
        memory_mb: 256,
        accelerators: 0,
        labels: BTreeMap::new(),
    };
    let node = app.start(config).await;
    wait_ready(&node, "web", 1).await;
    let big = service(&node, "big");
    assert_eq!(big.instances.len(), 1);
    let i = &big.instances[0];
    assert_eq!(i.state, InstanceState::Unschedulable, "{i:?}");
    assert_eq!(i.pid, None);
    let detail = i.detail.as_deref().unwrap_or("");
    assert!(
        detail.contains("needs 512 MB") && detail.contains("256 MB"),
        "the reason names both sizes: {detail}"
    );
    let events = node.app.recent_events();
    assert!(events
        .iter()
        .any(|e| e.service == "big" && e.kind == EventKind::Unschedulable));
    assert!(
        !events
            .iter()
            .any(|e| e.service == "big" && e.kind == EventKind::Launched),
        "{events:?}"
    );
    assert!(app.starts().iter().all(|s| s["instance"] != "big-1"));
    let reply = get(node.gateway_addr, "/big").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    // The JSON of ps says the same.
    let ps = get(node.api_addr, "/v1/ps").await.json();
    let big = ps["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "big")
        .unwrap()
        .clone();
    assert_eq!(big["instances"][0]["state"], "unschedulable");
    assert!(big["instances"][0]["detail"].as_str().unwrap().contains("needs 512 MB"));
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_setup_step_runs_again_and_is_given_up_on_after_three_failures() {
    let app = App::new();
    // Fails once, as pyenv's pip shim does when two installs rehash at the same moment.
    let tried = app.path().join("tried");
    let mut flaky = app.member(json!({ "routes": ["/"] }));
    flaky["setup"] = json!([
        "sh",
        "-c",
        format!(
            "test -e {0} || {{ touch {0}; echo shims busy; exit 1; }}",
            tried.display()
        )
    ]);
    let mut broken = app.member(json!({ "routes": ["/broken"] }));
    broken["setup"] = json!(["sh", "-c", "echo no such package; exit 2"]);
    let node = app
        .start(app.config(app.manifest(json!({ "flaky": flaky, "broken": broken }), Value::Null)))
        .await;
    wait_ready(&node, "flaky", 1).await;
    wait_until("broken given up on", Duration::from_secs(30), || {
        node.app
            .recent_events()
            .iter()
            .any(|e| e.service == "broken" && e.kind == EventKind::SetupFailed)
    })
    .await;
    let events = node.app.recent_events();
    let of = |service: &str| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.service == service && e.kind != EventKind::SetupProgress)
            .cloned()
            .collect()
    };

    let flaky = of("flaky");
    let kinds: Vec<EventKind> = flaky.iter().map(|e| e.kind).take(4).collect();
    assert_eq!(
        kinds,
        [
            EventKind::SetupStarted,
            EventKind::SetupRetrying,
            EventKind::SetupStarted,
            EventKind::SetupFinished
        ],
        "{flaky:?}"
    );
    assert!(
        flaky[1].message.contains("trying again in 1s (attempt 1 of 3)") && flaky[1].message.contains("shims busy"),
        "the retry names its pause, the attempt and the step's last words: {}",
        flaky[1].message
    );
    assert!(flaky[3].message.contains("on attempt 2"), "{}", flaky[3].message);
    assert!(flaky[2].at.duration_since(flaky[1].at).unwrap() >= Duration::from_secs(1));
    assert_eq!(get(node.gateway_addr, "/").await.status, StatusCode::OK);

    let broken = of("broken");
    let kinds: Vec<EventKind> = broken.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::SetupStarted,
            EventKind::SetupRetrying,
            EventKind::SetupStarted,
            EventKind::SetupRetrying,
            EventKind::SetupStarted,
            EventKind::SetupFailed
        ],
        "three attempts, then given up on, never launched: {broken:?}"
    );
    assert!(
        broken[3].message.contains("trying again in 2s (attempt 2 of 3)"),
        "{}",
        broken[3].message
    );
    assert!(broken[4].at.duration_since(broken[3].at).unwrap() >= Duration::from_secs(2));
    let failed = &broken[5].message;
    assert!(
        failed.contains("exited with status 2") && failed.contains("3 times") && failed.contains("no such package"),
        "{failed}"
    );
    let ps = service(&node, "broken");
    assert!(ps.state.starts_with("setup failed"), "{}", ps.state);
    assert!(ps.instances.iter().all(|i| i.pid.is_none()), "{ps:?}");
    assert_eq!(
        get(node.gateway_addr, "/broken").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    stop(node).await;
}
