//! What `ps`, `queues`, `cache stats`, `events` and `ls` print for a person: tables read
//! from the node API's JSON (`--json` prints that JSON instead, for programs). Every
//! function writes to `out` and returns its error, so a closed pipe ends the command
//! quietly (see `out`).

use std::io::{self, Write};

use serde_json::Value;
use strata_node::nodefile::Registered;

/// A JSON value for a table cell: the number or text, `-` when absent. serde_json's
/// Display ignores widths, so cells are formatted as strings.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `strata queues`.
pub fn queues(out: &mut dyn Write, reply: &Value) -> io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<9} {:>9} {:>9} {:>12} {:>9} {:>8}",
        "QUEUE", "FSYNC", "STORED", "BACKLOG", "BYTES", "SEGMENTS", "CORRUPT"
    )?;
    for f in reply["failed"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<24} OUT OF SERVICE: {}",
            f["name"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("?")
        )?;
    }
    let queues = reply["queues"].as_array().map(Vec::as_slice).unwrap_or_default();
    for q in queues {
        let groups = q["groups"].as_array().map(Vec::as_slice).unwrap_or_default();
        let backlog = groups.iter().filter_map(|g| g["backlog"].as_u64()).max();
        writeln!(
            out,
            "{:<24} {:<9} {:>9} {:>9} {:>12} {:>9} {:>8}",
            q["name"].as_str().unwrap_or("?"),
            q["fsync"].as_str().unwrap_or("?"),
            cell(&q["messages"]),
            backlog.map_or("-".to_string(), |b| b.to_string()),
            cell(&q["bytes"]),
            cell(&q["segments"]),
            cell(&q["corrupt"])
        )?;
        for repair in q["repairs"].as_array().into_iter().flatten() {
            writeln!(out, "  repaired at open: {}", repair.as_str().unwrap_or("?"))?;
        }
        if let Ok(r) = serde_json::from_value::<strata_queue::Replicas>(q["replicas"].clone()) {
            writeln!(out, "  {}", r.describe())?;
        }
        for g in groups {
            writeln!(
                out,
                "  group {:<16} backlog {} (unread {}, leased {}), dead-lettered {}, next to delete {}",
                g["name"].as_str().unwrap_or("?"),
                g["backlog"],
                g["unread"],
                g["leased"],
                g["dead_lettered"],
                g["floor"]
            )?;
        }
    }
    if !queues.is_empty() {
        writeln!(
            out,
            "STORED: messages on disk, deleted ones included until their segment is reclaimed; \
             BACKLOG: what is left to do, the largest of its groups' (unread + leased)"
        )?;
    }
    Ok(())
}

/// `strata cache stats`: the node's cache per shard, then the read-through caches.
pub fn cache_stats(out: &mut dyn Write, reply: &Value) -> io::Result<()> {
    let row = |out: &mut dyn Write, name: &str, s: &Value| {
        writeln!(
            out,
            "{name:<14} {:>9} {:>12} {:>10} {:>10} {:>10} {:>9}",
            cell(&s["keys"]),
            cell(&s["bytes"]),
            cell(&s["hits"]),
            cell(&s["misses"]),
            cell(&s["evictions"]),
            cell(&s["expired"])
        )
    };
    writeln!(out, "cache (the Redis port's keys and /v1/cache/keys), per shard:")?;
    writeln!(
        out,
        "{:<14} {:>9} {:>12} {:>10} {:>10} {:>10} {:>9}",
        "SHARD", "KEYS", "BYTES", "HITS", "MISSES", "EVICTIONS", "EXPIRED"
    )?;
    for (i, shard) in reply["shards"].as_array().into_iter().flatten().enumerate() {
        row(out, &i.to_string(), shard)?;
    }
    row(out, "total", &reply["total"])?;
    let max = reply["total"]["max_bytes"].as_u64().unwrap_or(0);
    if max > 0 {
        writeln!(
            out,
            "memory bound: {max} bytes (least recently used keys are evicted past it)"
        )?;
    }
    let redis = &reply["redis"];
    if redis.is_object() {
        let closed = &redis["closed"];
        writeln!(
            out,
            "Redis port: {} clients open (of {}), {} blocked; {} connections, {} commands; refused {}; \
             closed by a bound: query buffers {}, query buffer {}, idle {}, slow command {}, output buffer {}",
            cell(&redis["clients"]),
            cell(&redis["max_clients"]),
            cell(&redis["blocked_clients"]),
            cell(&redis["connections"]),
            cell(&redis["commands"]),
            cell(&redis["refused"]),
            cell(&closed["query_buffers_total"]),
            cell(&closed["query_buffer"]),
            cell(&closed["idle"]),
            cell(&closed["slow_command"]),
            cell(&closed["output_buffer"])
        )?;
    }
    let caches = reply["read_through"].as_object();
    writeln!(out)?;
    let Some(caches) = caches.filter(|c| !c.is_empty()) else {
        writeln!(out, "read-through caches: none declared (`caches` in strata.json)")?;
        return Ok(());
    };
    writeln!(out, "read-through caches (/v1/caches/NAME/KEY, loaded from the store):")?;
    writeln!(
        out,
        "{:<14} {:<14} {:>9} {:>10} {:>13} {:>10} {:>12}",
        "CACHE", "NAMESPACE", "LOADS", "COALESCED", "STALE SERVED", "REFRESHES", "LOAD ERRORS"
    )?;
    for (name, c) in caches {
        writeln!(
            out,
            "{name:<14} {:<14} {:>9} {:>10} {:>13} {:>10} {:>12}",
            cell(&c["namespace"]),
            cell(&c["loads"]),
            cell(&c["coalesced"]),
            cell(&c["stale_served"]),
            cell(&c["refreshes"]),
            cell(&c["load_errors"])
        )?;
    }
    let all = &reply["read_through_total"];
    writeln!(
        out,
        "their entries: keys {}, bytes {}, hits {}, misses {}, evictions {}, expired {}",
        cell(&all["keys"]),
        cell(&all["bytes"]),
        cell(&all["hits"]),
        cell(&all["misses"]),
        cell(&all["evictions"]),
        cell(&all["expired"])
    )?;
    writeln!(
        out,
        "LOADS: misses and refreshes that read the store; COALESCED: misses that waited for a load \
         already running; STALE SERVED: reads answered past ttl_ms, within stale_ms"
    )
}

/// `strata events`.
pub fn events(out: &mut dyn Write, events: &[Value]) -> io::Result<()> {
    for e in events {
        writeln!(
            out,
            "{} {:<12} {:<20} {}",
            time_of_day(e["at"].as_u64().unwrap_or(0)),
            e["instance"].as_str().or(e["service"].as_str()).unwrap_or("-"),
            e["kind"].as_str().unwrap_or("-"),
            e["message"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `strata trace`: each trace's spans as a tree under their parents, with the time
/// each started after the first and how long it took.
pub fn traces(out: &mut dyn Write, traces: &[Value]) -> io::Result<()> {
    if traces.is_empty() {
        return writeln!(out, "no traces kept yet: requests through the gateway make them");
    }
    // In a cluster's newest traces every trace names the same silent nodes: said once.
    let mut said_missing = None;
    for trace in traces {
        writeln!(out, "trace {}", trace["trace_id"].as_str().unwrap_or("-"))?;
        let missing = trace["missing_nodes"].as_array().filter(|m| !m.is_empty());
        if let Some(missing) = missing.filter(|m| said_missing != Some(*m)) {
            said_missing = Some(missing);
            let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
            writeln!(
                out,
                "  (nodes {} did not answer in time: their spans, if any, are not shown)",
                names.join(", ")
            )?;
        }
        let spans = trace["spans"].as_array().map(Vec::as_slice).unwrap_or_default();
        let t0 = spans.iter().filter_map(|s| s["start_us"].as_u64()).min().unwrap_or(0);
        let ids: Vec<&str> = spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
        // Roots: no parent, or a parent this node did not record (the client's own).
        let mut stack: Vec<(&Value, usize)> = spans
            .iter()
            .rev()
            .filter(|s| !s["parent_id"].as_str().is_some_and(|p| ids.contains(&p)))
            .map(|s| (s, 0))
            .collect();
        while let Some((span, depth)) = stack.pop() {
            let ms = |us: u64| us as f64 / 1000.0;
            // The member that answered (the platform's own spans, a queue's, the
            // store's, the cache's, have none), and in a cluster the node that recorded it.
            let member = match span["member"].as_str() {
                Some(member) => format!(" -> {member}"),
                None if span.get("unanswered").is_some() => " -> -".to_string(),
                None => String::new(),
            };
            let node = span["node"].as_str().map(|n| format!("  @{n}")).unwrap_or_default();
            writeln!(
                out,
                "{:indent$}{:<7} {:<12} {} {}{member} {}  +{:.1} ms  {:.1} ms{}{node}",
                "",
                span["kind"].as_str().unwrap_or("-"),
                span["service"].as_str().unwrap_or("-"),
                span["method"].as_str().unwrap_or("-"),
                span["path"].as_str().unwrap_or("-"),
                span["status"],
                ms(span["start_us"].as_u64().unwrap_or(t0).saturating_sub(t0)),
                ms(span["duration_us"].as_u64().unwrap_or(0)),
                match (span["unanswered"].as_str(), span["reason"].as_str()) {
                    (_, Some(reason)) => format!("  (no reply: {reason})"),
                    (Some(why), None) => format!("  ({why}, {} attempts)", span["attempts"]),
                    (None, None) if span["kind"] != "attempt" && span["attempts"].as_u64().unwrap_or(0) > 1 => {
                        format!("  ({} attempts)", span["attempts"])
                    }
                    (None, None) => String::new(),
                },
                indent = 2 + depth * 2,
            )?;
            let id = span["span_id"].as_str();
            for child in spans
                .iter()
                .rev()
                .filter(|c| c["parent_id"].as_str() == id && id.is_some())
            {
                stack.push((child, depth + 1));
            }
        }
    }
    Ok(())
}

/// `strata ls`.
pub fn nodes(out: &mut dyn Write, nodes: &[Registered]) -> io::Result<()> {
    if nodes.is_empty() {
        return writeln!(
            out,
            "no strata node is running; `strata up` in an app's directory starts one"
        );
    }
    writeln!(out, "{:<16} {:>8}  {:<26} {:<26} DIR", "APP", "PID", "GATEWAY", "API")?;
    for n in nodes {
        writeln!(
            out,
            "{:<16} {:>8}  {:<26} {:<26} {}",
            n.app,
            n.pid,
            format!("http://{}", n.gateway),
            n.api,
            n.dir.display()
        )?;
    }
    Ok(())
}

pub use strata_appservice::time_of_day;

/// `strata ps`.
pub fn ps(out: &mut dyn Write, ps: &Value) -> io::Result<()> {
    let cache = ps["cache"]
        .as_str()
        .map(|c| format!("  cache redis://{c}"))
        .unwrap_or_default();
    writeln!(
        out,
        "app {}  gateway http://{}  api {}{cache}",
        ps["app"].as_str().unwrap_or("?"),
        ps["gateway"].as_str().unwrap_or("?"),
        ps["api"].as_str().unwrap_or("?")
    )?;
    for failure in ps["failures"].as_array().into_iter().flatten() {
        writeln!(out, "OUT OF SERVICE: {}", failure.as_str().unwrap_or("?"))?;
    }
    for line in ps["store_placement"].as_array().into_iter().flatten() {
        writeln!(out, "{}", line.as_str().unwrap_or("?"))?;
    }
    writeln!(
        out,
        "{:<20} {:<12} {:>7} {:>6} {:>8} {:>8} {:>8}  DETAIL",
        "INSTANCE", "STATE", "PID", "PORT", "RESTARTS", "INFLIGHT", "SERVED"
    )?;
    for svc in ps["services"].as_array().into_iter().flatten() {
        service(out, ps, svc)?;
    }
    Ok(())
}

fn service(out: &mut dyn Write, ps: &Value, svc: &Value) -> io::Result<()> {
    let name = svc["name"].as_str().unwrap_or("?");
    // On a cluster node, desired, min and max are this node's share of the placement:
    // the placement is shown instead.
    let bounds = match ps["cluster"]["placement"].get(name).and_then(Value::as_object) {
        Some(nodes) => {
            let placed: Vec<String> = nodes
                .iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(node, n)| format!("{node} {n}"))
                .collect();
            format!(
                " on node {}; cluster-wide: {}",
                ps["cluster"]["node"].as_str().unwrap_or("?"),
                if placed.is_empty() {
                    "none placed".to_string()
                } else {
                    placed.join(", ")
                }
            )
        }
        None => format!("; min {} max {}", svc["min"], svc["max"]),
    };
    writeln!(
        out,
        "{name} ({}; {} of {} ready{bounds})",
        svc["state"].as_str().unwrap_or("?"),
        svc["ready"],
        svc["desired"],
    )?;
    if let Some(f) = svc["function"].as_str() {
        writeln!(out, "  function, triggered by {f}")?;
    }
    let scale = &svc["autoscale"];
    if scale.is_object() {
        let mut figures = format!("in flight {}", scale["inflight"]);
        if let Some(b) = scale["backlog"].as_u64() {
            figures.push_str(&format!(", backlog {b}"));
            if let Some(d) = scale["drain_s"].as_f64() {
                figures.push_str(&format!(" (drained in ~{d} s)"));
            }
        }
        if let Some(l) = scale["latency_ms"].as_f64() {
            figures.push_str(&format!(", latency {l:.1} ms"));
        }
        if let Some(c) = scale["cold_start_ms"].as_u64() {
            figures.push_str(&format!(", last cold start {c} ms"));
        }
        if scale["shed"].as_u64().unwrap_or(0) > 0 {
            figures.push_str(&format!(", shed {}", scale["shed"]));
        }
        writeln!(
            out,
            "  autoscale: current {} target {} by {} ({figures}): {}",
            svc["desired"],
            scale["target"],
            scale["signal"].as_str().unwrap_or("?"),
            scale["reason"].as_str().unwrap_or("")
        )?;
    }
    let consumer = ps["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["service"] == svc["name"]);
    if let Some(c) = consumer {
        writeln!(
            out,
            "  consumes {}/{}: backlog {} (unread {}, leased {})",
            c["queue"].as_str().unwrap_or("?"),
            c["group"].as_str().unwrap_or("?"),
            c["backlog"],
            c["unread"],
            c["leased"]
        )?;
    }
    for inst in svc["instances"].as_array().into_iter().flatten() {
        let detail = instance_detail(inst);
        writeln!(
            out,
            "  {:<18} {:<12} {:>7} {:>6} {:>8} {:>8} {:>8}  {}",
            inst["id"].as_str().unwrap_or("?"),
            inst["state"].as_str().unwrap_or("?"),
            cell(&inst["pid"]),
            cell(&inst["port"]),
            cell(&inst["restarts"]),
            cell(&inst["inflight"]),
            cell(&inst["served"]),
            detail
        )?;
        // A container: the OCI runtime that runs it (and why a preferred one is not),
        // and its address on a private network.
        if let Some(runtime) = inst["runtime"].as_str() {
            let at = match inst["address"].as_str() {
                Some(address) => format!(", at {address} on the app's private network"),
                None => String::new(),
            };
            writeln!(out, "  {:<18} container on {runtime}{at}", "")?;
        }
    }
    Ok(())
}

/// An instance's DETAIL: why it is in its state, else how its last run ended (marked as
/// the last run's when a new one is under way, so that a ready instance does not read as
/// killed).
pub fn instance_detail(inst: &Value) -> String {
    if let Some(detail) = inst["detail"].as_str() {
        return detail.to_string();
    }
    match (inst["state"].as_str(), inst["last_exit"].as_str()) {
        (Some("ready" | "starting" | "stopping"), Some(exit)) => format!("last run: {exit}"),
        (_, Some(exit)) => exit.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        write(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn queues_name_stored_and_backlog_apart() {
        let reply = json!({"queues": [{"name": "orders", "fsync": "always", "messages": 2, "bytes": 336,
            "segments": 1, "corrupt": 0,
            "groups": [{"name": "fulfil", "floor": 2, "unread": 0, "leased": 0, "backlog": 0, "dead_lettered": 0}]}]});
        let t = text(|out| queues(out, &reply));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("STORED") && lines[0].contains("BACKLOG"), "{t}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row[..4], ["orders", "always", "2", "0"], "{t}");
        assert!(t.contains("group fulfil"), "{t}");
        assert!(t.contains("STORED: messages on disk"), "{t}");
        assert!(!t.contains("cop"), "an embedded queue has no copies to show: {t}");

        let mut replicated = reply.clone();
        replicated["queues"][0]["replicas"] = json!({"wanted": 3, "leader": "n2", "servers": [
            {"server": "n2", "current": true, "offline": false, "lag": 0},
            {"server": "n1", "current": false, "offline": false, "lag": 7}]});
        let t = text(|out| queues(out, &replicated));
        assert!(
            t.contains("  2 copies: n2 (leader), n1 (behind by 7 operations); 3 asked for"),
            "{t}"
        );
    }

    #[test]
    fn a_cluster_node_shows_the_placement_not_its_share_as_bounds() {
        let one = json!({"app": "a", "gateway": "127.0.0.1:8080", "api": "127.0.0.1:1", "services": [
            {"name": "web", "state": "running", "ready": 1, "desired": 1, "min": 0, "max": 1, "served": 0,
             "instances": []}]});
        assert!(text(|out| ps(out, &one)).contains("web (running; 1 of 1 ready; min 0 max 1)"));
        let mut node = one.clone();
        node["cluster"] = json!({"node": "b", "placement": {"web": {"a": 1, "b": 1, "c": 0}}});
        let t = text(|out| ps(out, &node));
        assert!(
            t.contains("web (running; 1 of 1 ready on node b; cluster-wide: a 1, b 1)"),
            "{t}"
        );
    }

    #[test]
    fn a_container_instance_names_its_runtime() {
        let reply = json!({"app": "a", "gateway": "127.0.0.1:8080", "api": "127.0.0.1:1", "services": [
            {"name": "web", "state": "running", "ready": 1, "desired": 2, "min": 1, "max": 2, "served": 0,
             "instances": [
                {"id": "web-1", "state": "ready", "pid": 7, "port": 9000, "restarts": 1, "inflight": 0, "served": 3,
                 "last_exit": "oom: the kernel killed it for memory over its limit", "runtime": "runc 1.1.5+ds1"},
                {"id": "web-2", "state": "ready", "pid": 8, "port": 9001, "restarts": 0, "inflight": 0, "served": 0}]}]});
        let t = text(|out| ps(out, &reply));
        let lines: Vec<&str> = t.lines().collect();
        let web1 = lines.iter().position(|l| l.trim_start().starts_with("web-1")).unwrap();
        assert!(lines[web1].contains("oom: the kernel killed it"), "{t}");
        assert_eq!(lines[web1 + 1].trim(), "container on runc 1.1.5+ds1", "{t}");
        assert!(lines[web1 + 2].trim_start().starts_with("web-2"), "{t}");
        assert_eq!(t.matches("container on").count(), 1, "{t}");

        let mut private = reply.clone();
        private["services"][0]["instances"][0]["address"] = json!("10.140.8.2");
        let t = text(|out| ps(out, &private));
        assert!(
            t.contains("container on runc 1.1.5+ds1, at 10.140.8.2 on the app's private network"),
            "{t}"
        );
    }

    #[test]
    fn cache_stats_is_a_table_per_shard_and_per_read_through_cache() {
        let shard = json!({"keys": 3, "expires": 0, "bytes": 300, "max_bytes": 1000, "hits": 7, "misses": 2,
            "evictions": 1, "expired": 0});
        let reply = json!({"total": shard, "shards": [shard, shard], "read_through_total": shard,
            "read_through": {"history": {"namespace": "history", "loads": 4, "coalesced": 1,
            "stale_served": 2, "refreshes": 3, "load_errors": 0}}});
        let t = text(|out| cache_stats(out, &reply));
        assert!(
            t.contains("SHARD") && t.contains("EVICTIONS") && t.contains("EXPIRED"),
            "{t}"
        );
        let rows = |first: &str| t.lines().filter(|l| l.split_whitespace().next() == Some(first)).count();
        assert_eq!((rows("0"), rows("1"), rows("total")), (1, 1, 1), "{t}");
        assert!(t.contains("their entries: keys 3, bytes 300, hits 7"), "{t}");
        let history: Vec<&str> = t
            .lines()
            .find(|l| l.starts_with("history"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(history, ["history", "history", "4", "1", "2", "3", "0"], "{t}");
        assert!(!t.contains("Redis port:"), "no Redis port, no line: {t}");

        let mut with_port = reply.clone();
        with_port["redis"] = json!({"clients": 2, "max_clients": 10000, "blocked_clients": 1,
            "connections": 9, "commands": 120, "refused": 0, "query_buffer_bytes": 0,
            "closed": {"query_buffers_total": 0, "query_buffer": 1, "idle": 3, "slow_command": 0,
            "output_buffer": 0}});
        let t = text(|out| cache_stats(out, &with_port));
        assert!(
            t.contains("Redis port: 2 clients open (of 10000), 1 blocked; 9 connections, 120 commands; refused 0;"),
            "{t}"
        );
        assert!(t.contains("query buffer 1, idle 3, slow command 0"), "{t}");
    }

    #[test]
    fn a_trace_is_a_tree_naming_members_nodes_and_the_nodes_that_did_not_answer() {
        let trace = json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "missing_nodes": ["c"], "spans": [
            {"node": "a", "span_id": "01", "kind": "gateway", "service": "front", "method": "GET",
             "path": "/front", "member": "front-1", "attempts": 1, "status": 200, "start_us": 1000, "duration_us": 4000},
            {"node": "b", "span_id": "02", "parent_id": "01", "kind": "fetch", "service": "jobs", "method": "POST",
             "path": "/v1/queues/jobs/groups/g/fetch", "attempts": 0, "status": 200, "start_us": 2000, "duration_us": 500},
        ]});
        let t = text(|out| traces(out, &[trace.clone(), trace.clone()]));
        assert_eq!(t.matches("did not answer").count(), 1, "said once for a listing: {t}");
        let t = text(|out| traces(out, &[trace]));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "trace 4bf92f3577b34da6a3ce929d0e0e4736", "{t}");
        assert!(lines[1].contains("nodes c did not answer"), "{t}");
        assert!(
            lines[2].starts_with("  gateway front") && lines[2].contains("/front -> front-1 200"),
            "{t}"
        );
        assert!(lines[2].ends_with("@a"), "{t}");
        // A child, indented; the platform's own span names no member.
        assert!(lines[3].starts_with("    fetch   jobs"), "{t}");
        assert!(
            lines[3].contains("/fetch 200  +1.0 ms  0.5 ms") && lines[3].ends_with("@b"),
            "{t}"
        );
    }

    #[test]
    fn an_instance_s_detail_marks_the_last_run_s_end_once_a_new_run_is_under_way() {
        let detail = |v: serde_json::Value| instance_detail(&v);
        let exit = "killed by signal 9 (SIGKILL)";
        assert_eq!(
            detail(json!({"state": "ready", "last_exit": exit})),
            format!("last run: {exit}")
        );
        assert_eq!(detail(json!({"state": "crash_loop", "last_exit": exit})), exit);
        assert_eq!(
            detail(json!({"state": "starting", "detail": "waiting", "last_exit": exit})),
            "waiting"
        );
        assert_eq!(detail(json!({"state": "ready"})), "");
    }
}
