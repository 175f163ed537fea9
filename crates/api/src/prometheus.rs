//! Pieces of the Prometheus text format (version 0.0.4) for `/v1/metrics`: label values
//! escaped, and the families of relayed requests (a counter by status class and a
//! latency histogram) written from the gateway's per-pool figures, topic deliveries,
//! instances by state, queues and their groups, the cache's shards and the store.

use std::fmt::Write;

use strata_gateway::metrics::RelaySnapshot;
use strata_gateway::{AttemptFailure, NoAnswer, Protocol};
use strata_os::histogram::{HistogramSnapshot, BOUNDS};

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub(crate) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.into()
}

/// `strata_requests_total` and `strata_request_duration_seconds` for each service and
/// protocol.
pub(crate) fn relay_families(out: &mut String, app: &str, services: &[(String, Protocol, RelaySnapshot)]) {
    let app = escape(app);
    let _ = writeln!(
        out,
        "# HELP strata_requests_total Requests relayed to the service by the gateway and by the node API's /v1/any and /v1/all, by protocol (http, grpc, websocket) and the status class of the member's reply head; code=\"none\" when no member replied, by reason.\n# TYPE strata_requests_total counter"
    );
    let labels = |service: &str, protocol: &Protocol| {
        format!(
            "app=\"{app}\",service=\"{}\",protocol=\"{}\"",
            escape(service),
            protocol.label()
        )
    };
    for (service, protocol, s) in services {
        let labels = labels(service, protocol);
        for (i, n) in s.classes.iter().enumerate() {
            // 1xx only once there is one (a WebSocket's 101).
            if i == 0 && *n == 0 {
                continue;
            }
            let _ = writeln!(out, "strata_requests_total{{{labels},code=\"{}xx\"}} {n}", i + 1);
        }
        for (why, n) in NoAnswer::ALL.iter().zip(s.unanswered) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "strata_requests_total{{{labels},code=\"none\",reason=\"{}\"}} {n}",
                    why.label()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP strata_request_duration_seconds Time from a request's arrival at the relay (gateway or /v1/any, /v1/all) until the member's reply head was back (a WebSocket's: its handshake), or until the relay answered itself.\n# TYPE strata_request_duration_seconds histogram"
    );
    for (service, protocol, s) in services {
        histogram(
            out,
            "strata_request_duration_seconds",
            &labels(service, protocol),
            &s.latency,
        );
    }
    header(
        out,
        "strata_reissues_total",
        "counter",
        "Requests sent again to another member, by why the attempt before got no reply: unsent (refused, or a closed idle connection), broken (the connection failed once sent: idempotent requests only), timeout (no reply within the attempt timeout: idempotent only).",
    );
    for (service, protocol, s) in services {
        let labels = labels(service, protocol);
        for (why, n) in AttemptFailure::ALL.iter().zip(s.reissues) {
            let _ = writeln!(out, "strata_reissues_total{{{labels},reason=\"{}\"}} {n}", why.label());
        }
    }
}

/// `strata_route_requests_total` and `strata_route_request_duration_seconds` for each
/// gateway route: what its clients got, the route's own answers (fallback, no member)
/// included.
pub(crate) fn route_families(out: &mut String, app: &str, routes: &[(String, String, RelaySnapshot)]) {
    if routes.is_empty() {
        return;
    }
    let app = escape(app);
    header(
        out,
        "strata_route_requests_total",
        "counter",
        "Requests the gateway answered on the route, by the status class of the answer; code=\"none\" with a reason when no member replied (the answer is then the relay's own or the route's fallback).",
    );
    let labels = |service: &str, route: &str| {
        format!(
            "app=\"{app}\",service=\"{}\",route=\"{}\"",
            escape(service),
            escape(route)
        )
    };
    for (service, route, s) in routes {
        let labels = labels(service, route);
        for (i, n) in s.classes.iter().enumerate() {
            let _ = writeln!(out, "strata_route_requests_total{{{labels},code=\"{}xx\"}} {n}", i + 1);
        }
        for (why, n) in NoAnswer::ALL.iter().zip(s.unanswered) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "strata_route_requests_total{{{labels},code=\"none\",reason=\"{}\"}} {n}",
                    why.label()
                );
            }
        }
    }
    header(
        out,
        "strata_route_request_duration_seconds",
        "histogram",
        "Time from a request's arrival at the gateway until its answer's head, on the route.",
    );
    for (service, route, s) in routes {
        histogram(
            out,
            "strata_route_request_duration_seconds",
            &labels(service, route),
            &s.latency,
        );
    }
}

/// `strata_queue_fsync_duration_seconds` for each queue with a file of its own.
pub(crate) fn fsync_family(out: &mut String, app: &str, queues: &[(String, HistogramSnapshot)]) {
    if queues.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP strata_queue_fsync_duration_seconds Time to make one committed batch of a queue durable (fdatasync of its files), with fsync \"always\" or at each interval.\n# TYPE strata_queue_fsync_duration_seconds histogram"
    );
    let app = escape(app);
    for (queue, h) in queues {
        let labels = format!("app=\"{app}\",queue=\"{}\"", escape(queue));
        histogram(out, "strata_queue_fsync_duration_seconds", &labels, h);
    }
}

/// `strata_topic_messages_total`: each service subscription's messages, by outcome
/// (delivered: a 2xx; failed: no 2xx or no instance, dropped; dropped: its mailbox
/// was full). In `all` mode, one per instance reached.
pub(crate) fn topic_family(out: &mut String, app: &str, subscribers: &[strata_cache::TopicStats]) {
    if subscribers.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP strata_topic_messages_total Messages of a topic for a subscribing service, by outcome: delivered (a 2xx), failed (no 2xx, or no instance: dropped, never retried), dropped (the subscription already held 1024 messages or 8 MiB).\n# TYPE strata_topic_messages_total counter"
    );
    let app = escape(app);
    for s in subscribers {
        let labels = format!(
            "app=\"{app}\",service=\"{}\",topic=\"{}\"",
            escape(&s.subscriber),
            escape(&s.topic)
        );
        for (outcome, n) in [("delivered", s.delivered), ("failed", s.failed), ("dropped", s.dropped)] {
            let _ = writeln!(out, "strata_topic_messages_total{{{labels},outcome=\"{outcome}\"}} {n}");
        }
    }
}

/// `strata_runtime_workers`: the threads of the node's own async runtime.
pub(crate) fn runtime_family(out: &mut String, app: &str, workers: usize) {
    header(
        out,
        "strata_runtime_workers",
        "gauge",
        "Threads of the node's async runtime (strata --workers).",
    );
    let _ = writeln!(out, "strata_runtime_workers{{app=\"{}\"}} {workers}", escape(app));
}

/// On a cluster node, the cluster as this node sees it: the nodes by state, how long
/// ago each one's heartbeat arrived (this node's own included: past 1.5 s it is deaf),
/// who holds the scheduler's lease, whether this node's heartbeat reaches the cluster,
/// and the app's placement.
pub(crate) fn cluster_families(out: &mut String, app: &str, c: &crate::cluster::ClusterSnapshot) {
    use crate::cluster::NodeState;
    let app = escape(app);
    header(
        out,
        "strata_cluster_nodes",
        "gauge",
        "Nodes heard from since this one started, by state as this node sees them (late: a heartbeat missed; dead: silent 3 s).",
    );
    for (state, label) in [
        (NodeState::Live, "live"),
        (NodeState::Late, "late"),
        (NodeState::Dead, "dead"),
    ] {
        let n = c.nodes.iter().filter(|n| n.state == state).count();
        let _ = writeln!(out, "strata_cluster_nodes{{app=\"{app}\",state=\"{label}\"}} {n}");
    }
    header(
        out,
        "strata_cluster_node_heard_seconds",
        "gauge",
        "Seconds since each node's last heartbeat arrived here (this node's own past 1.5: it is deaf, its NATS server lost or it is cut off).",
    );
    for n in &c.nodes {
        let secs = n.heard_ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "strata_cluster_node_heard_seconds{{app=\"{app}\",node=\"{}\"}} {secs}",
            escape(&n.name)
        );
    }
    header(
        out,
        "strata_cluster_scheduler",
        "gauge",
        "1 for the node holding the scheduler's lease, as this node last read it (none while no node holds it).",
    );
    if let Some(holder) = &c.scheduler {
        let _ = writeln!(
            out,
            "strata_cluster_scheduler{{app=\"{app}\",node=\"{}\"}} 1",
            escape(holder)
        );
    }
    header(
        out,
        "strata_cluster_heartbeat_ok",
        "gauge",
        "1 when this node's last heartbeat reached the cluster (its NATS connection and JetStream answered), else 0.",
    );
    let ok = u8::from(c.heartbeat_error.is_none());
    let _ = writeln!(
        out,
        "strata_cluster_heartbeat_ok{{app=\"{app}\",node=\"{}\"}} {ok}",
        escape(&c.node)
    );
    header(
        out,
        "strata_cluster_placed",
        "gauge",
        "Instances of each service the scheduler placed on each node.",
    );
    for (service, nodes) in &c.placement {
        for (node, n) in nodes {
            let _ = writeln!(
                out,
                "strata_cluster_placed{{app=\"{app}\",service=\"{}\",node=\"{}\"}} {n}",
                escape(service),
                escape(node)
            );
        }
    }
}

/// `# HELP` and `# TYPE` of one family.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `strata_instances` by state, restarts and OOM kills, for each service.
pub(crate) fn instance_families(out: &mut String, app: &str, services: &[strata_appservice::ServiceStatus]) {
    use strata_appservice::InstanceState as S;
    const STATES: [S; 7] = [
        S::Unschedulable,
        S::Starting,
        S::Ready,
        S::Backoff,
        S::CrashLoop,
        S::Stopping,
        S::Stopped,
    ];
    let app = escape(app);
    header(
        out,
        "strata_instances",
        "gauge",
        "Instances of the service on this node, by state (as ps shows them).",
    );
    for s in services {
        let service = escape(&s.name);
        for state in STATES {
            let n = s.instances.iter().filter(|i| i.state == state).count();
            let label = serde_json::to_value(state).ok();
            let label = label.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
            let _ = writeln!(
                out,
                "strata_instances{{app=\"{app}\",service=\"{service}\",state=\"{label}\"}} {n}"
            );
        }
    }
    type Figure = fn(&strata_appservice::InstanceStatus) -> u64;
    let counters: [(&str, &str, Figure); 2] = [
        (
            "strata_instance_restarts_total",
            "Launches again after an exit or a failed check, summed over the service's current instance slots.",
            |i| u64::from(i.restarts),
        ),
        (
            "strata_instance_oom_kills_total",
            "Instances killed for going over their memory limit, summed over the service's current instance slots.",
            |i| u64::from(i.oom_kills),
        ),
    ];
    for (name, help, figure) in counters {
        header(out, name, "counter", help);
        for s in services {
            let n: u64 = s.instances.iter().map(figure).sum();
            let _ = writeln!(out, "{name}{{app=\"{app}\",service=\"{}\"}} {n}", escape(&s.name));
        }
    }
    let name = "strata_instance_start_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from an instance's launch to its first passed readiness check: what a cold start (a scale from zero) costs before the first request is relayed.",
    );
    for s in services {
        histogram(
            out,
            name,
            &format!("app=\"{app}\",service=\"{}\"", escape(&s.name)),
            &s.start_time,
        );
    }
}

/// Each queue's stored messages, bytes and published count, and each group's backlog,
/// leased messages, floor and dead letters.
pub(crate) fn queue_families(out: &mut String, app: &str, queues: &[strata_queue::QueueStats]) {
    if queues.is_empty() {
        return;
    }
    let app = escape(app);
    type Figure = fn(&strata_queue::QueueStats) -> u64;
    let per_queue: [(&str, &str, &str, Figure); 4] = [
        (
            "strata_queue_messages",
            "gauge",
            "Messages the queue holds (retention removes them, consumption does not).",
            |q| q.messages,
        ),
        ("strata_queue_bytes", "gauge", "Payload bytes the queue holds.", |q| {
            q.bytes
        }),
        (
            "strata_queue_published_total",
            "counter",
            "Messages ever published to the queue (its next offset).",
            |q| q.next_offset,
        ),
        (
            "strata_queue_corrupt_records_total",
            "counter",
            "Damaged records found in the queue's files and skipped.",
            |q| q.corrupt,
        ),
    ];
    for (name, kind, help, figure) in per_queue {
        header(out, name, kind, help);
        for q in queues {
            let _ = writeln!(
                out,
                "{name}{{app=\"{app}\",queue=\"{}\"}} {}",
                escape(&q.name),
                figure(q)
            );
        }
    }
    type GroupFigure = fn(&strata_queue::GroupStats) -> u64;
    let per_group: [(&str, &str, &str, GroupFigure); 5] = [
        (
            "strata_queue_group_backlog",
            "gauge",
            "Messages the group has not finished: unread plus leased.",
            |g| g.backlog,
        ),
        (
            "strata_queue_group_leased",
            "gauge",
            "Messages handed to the group's consumers and not yet acked or nacked.",
            |g| g.leased,
        ),
        (
            "strata_queue_group_floor_offset",
            "gauge",
            "The offset below which every message is done for the group; its rate is the group's consumption rate.",
            |g| g.floor,
        ),
        (
            "strata_queue_group_dead_lettered_total",
            "counter",
            "Messages moved to the dead-letter queue after max_deliveries.",
            |g| g.dead_lettered,
        ),
        (
            "strata_queue_group_acked_total",
            "counter",
            "Messages acked (deleted) by the group's consumers since the queue opened; on JetStream, those acked through this node.",
            |g| g.acked,
        ),
    ];
    for (name, kind, help, figure) in per_group {
        header(out, name, kind, help);
        for q in queues {
            for g in &q.groups {
                let _ = writeln!(
                    out,
                    "{name}{{app=\"{app}\",queue=\"{}\",group=\"{}\"}} {}",
                    escape(&q.name),
                    escape(&g.name),
                    figure(g)
                );
            }
        }
    }
    // Not on JetStream: its server keeps the ack waits and counts no expiries.
    let expiries = queues
        .iter()
        .flat_map(|q| q.groups.iter().filter_map(move |g| Some((q, g, g.lease_expiries?))));
    let mut expiries = expiries.peekable();
    if expiries.peek().is_some() {
        header(
            out,
            "strata_queue_group_lease_expiries_total",
            "counter",
            "Leases that ran out before an ack or nack (the message is delivered again), since the queue opened.",
        );
    }
    for (q, g, n) in expiries {
        let _ = writeln!(
            out,
            "strata_queue_group_lease_expiries_total{{app=\"{app}\",queue=\"{}\",group=\"{}\"}} {n}",
            escape(&q.name),
            escape(&g.name)
        );
    }
}

/// The cache's figures per shard.
pub(crate) fn cache_families(out: &mut String, app: &str, cache: &strata_cache::CacheStats) {
    let app = escape(app);
    type Figure = fn(&strata_cache::ShardStats) -> u64;
    let families: [(&str, &str, &str, Figure); 7] = [
        ("strata_cache_keys", "gauge", "Keys the shard holds.", |s| s.keys),
        (
            "strata_cache_bytes",
            "gauge",
            "Bytes the shard is charged: keys, values and a fixed overhead per entry.",
            |s| s.bytes,
        ),
        (
            "strata_cache_max_bytes",
            "gauge",
            "The shard's memory bound (0: none).",
            |s| s.max_bytes,
        ),
        (
            "strata_cache_hits_total",
            "counter",
            "Reads that found a live key.",
            |s| s.hits,
        ),
        ("strata_cache_misses_total", "counter", "Reads that found none.", |s| {
            s.misses
        }),
        (
            "strata_cache_evictions_total",
            "counter",
            "Keys removed to stay under the memory bound.",
            |s| s.evictions,
        ),
        (
            "strata_cache_expired_total",
            "counter",
            "Keys removed because their deadline passed.",
            |s| s.expired,
        ),
    ];
    for (name, kind, help, figure) in families {
        header(out, name, kind, help);
        for (i, shard) in cache.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{app=\"{app}\",shard=\"{i}\"}} {}", figure(shard));
        }
    }
}

/// The Redis port's connections and commands, and the connections its bounds refused or
/// closed (INFO's clients and stats sections).
pub(crate) fn redis_families(out: &mut String, app: &str, redis: &strata_cache::RespStats) {
    let app = escape(app);
    let families = [
        (
            "strata_redis_clients",
            "gauge",
            "Connections open on the Redis port.",
            redis.clients,
        ),
        (
            "strata_redis_max_clients",
            "gauge",
            "The Redis port's bound on open connections (cache.max_clients).",
            redis.max_clients,
        ),
        (
            "strata_redis_blocked_clients",
            "gauge",
            "Connections waiting in a blocking command (BLPOP, BRPOP, BLMOVE and the like).",
            redis.blocked_clients,
        ),
        (
            "strata_redis_query_buffer_bytes",
            "gauge",
            "Bytes the connections' query buffers hold (bounded by cache.max_query_buffers_total_mb).",
            redis.query_buffer_bytes,
        ),
        (
            "strata_redis_connections_total",
            "counter",
            "Connections the Redis port accepted.",
            redis.connections,
        ),
        (
            "strata_redis_commands_total",
            "counter",
            "Commands the Redis port ran.",
            redis.commands,
        ),
        (
            "strata_redis_refused_connections_total",
            "counter",
            "Connections refused at accept because cache.max_clients were open (Redis' rejected_connections).",
            redis.refused,
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name}{{app=\"{app}\"}} {value}");
    }
    header(
        out,
        "strata_redis_closed_connections_total",
        "counter",
        "Connections the Redis port closed because of a bound, by reason: query_buffers_total (every query buffer together past cache.max_query_buffers_total_mb), query_buffer (one past cache.max_query_buffer_mb), idle (cache.idle_timeout_ms), slow_command (a command not whole within cache.command_timeout_ms), output_buffer (a subscriber's mailbox past its bound).",
    );
    let closed = [
        ("query_buffers_total", redis.closed_query_buffers_total),
        ("query_buffer", redis.closed_query_buffer),
        ("idle", redis.closed_idle),
        ("slow_command", redis.closed_slow_command),
        ("output_buffer", redis.closed_output_buffer),
    ];
    for (reason, n) in closed {
        let _ = writeln!(
            out,
            "strata_redis_closed_connections_total{{app=\"{app}\",reason=\"{reason}\"}} {n}"
        );
    }
}

/// The store's operations by kind and its group commits' times.
pub(crate) fn store_families(out: &mut String, app: &str, figures: &strata_store::StoreFigures) {
    let app = escape(app);
    header(
        out,
        "strata_store_operations_total",
        "counter",
        "Store operations: writes once durable (a failed condition counts), reads once asked.",
    );
    let writes = strata_store::WRITE_KINDS.iter().zip(figures.writes);
    let reads = strata_store::READ_KINDS.iter().zip(figures.reads);
    for (op, n) in writes.chain(reads) {
        let _ = writeln!(out, "strata_store_operations_total{{app=\"{app}\",op=\"{op}\"}} {n}");
    }
    header(
        out,
        "strata_store_commit_duration_seconds",
        "histogram",
        "Time to make one group commit of the store durable: the log's write and fdatasync (on JetStream: each write, until its stream's replicas acknowledged it).",
    );
    histogram(
        out,
        "strata_store_commit_duration_seconds",
        &format!("app=\"{app}\""),
        &figures.commit_time,
    );
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram.
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (le, n) in BOUNDS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
        h.count(),
        h.sum_seconds(),
        h.count()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("web"), "web");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
