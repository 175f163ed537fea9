//! INFO: the sections Redis has that strata can fill with what it measures (server,
//! clients, memory, persistence, stats, replication, keyspace; commandstats and
//! errorstats from `command_stats`), and strata's own `shards`, under Redis' field names.
//! Every figure is measured; a field strata has nothing to measure for is left out
//! rather than given a constant.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::admin::{REDIS_VERSION, STRATA_VERSION};
use super::command_stats::{self, ERROR_PREFIXES};
use super::parse::Args;
use super::reply::Reply;
use super::state::ConnectionContext;
use crate::cache::CacheStats;
use crate::keyspace::Keyspace;

/// INFO; the keyspace holds every shard (for the figures).
pub(crate) fn info(r: &mut Reply<'_>, shared: &ConnectionContext, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let wanted: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let stats = CacheStats::from_shards(ks.stats());
    let text = info_text(shared, &stats, &wanted);
    r.verbatim(&text);
}

/// The INFO text: the sections asked for (all by default), Redis' field names.
pub(crate) fn info_text(shared: &ConnectionContext, stats: &CacheStats, wanted: &[String]) -> String {
    let all = wanted.is_empty() || wanted.iter().any(|w| w == "all" || w == "everything" || w == "default");
    // Not in the default set, as in Redis: `all` and `everything` add them.
    let every = wanted.iter().any(|w| w == "all" || w == "everything");
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let want_extra = |s: &str| every || wanted.iter().any(|w| w == s);
    let server = &shared.server;
    let t = stats.total;
    let (mut figures, mut counters) = counted(shared, stats);
    // Since the last CONFIG RESETSTAT, if any.
    server.baseline.since(&mut figures, &mut counters);
    let counter = |name: &str| counters[STAT_COUNTERS.iter().position(|n| *n == name).expect("a counter")];
    let peak = server.memory_peak.fetch_max(t.bytes, Ordering::Relaxed).max(t.bytes);
    let uptime = server.started.elapsed().as_secs();
    let mut s = String::new();
    if want("server") {
        let _ = write!(
            s,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nstrata_version:{STRATA_VERSION}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:strata\r\nio_threads_active:{}\r\n\r\n",
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            server.run_id,
            server.addr().port(),
            uptime / 86_400,
            server.threads,
        );
    }
    if want("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
            server.connected.load(Ordering::Relaxed),
            server.max_clients,
            shared.cache.waiters().clients(),
        );
    }
    if want("memory") {
        let _ = write!(
            s,
            "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:allkeys-lru\r\nmem_clients_normal:{}\r\nmaxmemory_clients:{}\r\n\r\n",
            t.bytes,
            human(t.bytes),
            human(peak),
            t.max_bytes,
            human(t.max_bytes),
            server.client_memory.held(),
            server.client_memory.max(),
        );
    }
    if want("persistence") {
        s.push_str("# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\naof_enabled:0\r\n\r\n");
    }
    if want("stats") {
        let (ops, kbps_in, kbps_out) = server.rates.per_second();
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{ops}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ninstantaneous_input_kbps:{kbps_in:.2}\r\ninstantaneous_output_kbps:{kbps_out:.2}\r\n",
            counter("total_connections_received"),
            counter("total_commands_processed"),
            figures.net_input,
            figures.net_output,
        );
        for name in &STAT_COUNTERS[2..] {
            let _ = write!(s, "{name}:{}\r\n", counter(name));
        }
        let _ = write!(
            s,
            "pubsub_channels:{}\r\npubsub_patterns:{}\r\ntotal_error_replies:{}\r\n\r\n",
            shared.cache.pubsub().channel_count(),
            shared.cache.pubsub().numpat(),
            figures.error_replies,
        );
    }
    if want("replication") {
        s.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    }
    if want("shards") {
        s.push_str("# Shards\r\n");
        for (i, sh) in stats.shards.iter().enumerate() {
            let _ = write!(
                s,
                "shard{i}:keys={},expires={},bytes={},max_bytes={},hits={},misses={},evicted={},expired={},drops={}\r\n",
                sh.keys, sh.expires, sh.bytes, sh.max_bytes, sh.hits, sh.misses, sh.evictions, sh.expired, sh.drops
            );
        }
        s.push_str("\r\n");
    }
    if want_extra("commandstats") {
        s.push_str("# Commandstats\r\n");
        for (name, [calls, usec, rejected, failed]) in command_stats::slot_names().iter().zip(&figures.slots) {
            if calls + rejected + failed == 0 {
                continue;
            }
            let per_call = if *calls == 0 { 0.0 } else { *usec as f64 / *calls as f64 };
            let _ = write!(
                s,
                "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}\r\n"
            );
        }
        s.push_str("\r\n");
    }
    if want_extra("errorstats") {
        s.push_str("# Errorstats\r\n");
        for (prefix, count) in ERROR_PREFIXES.iter().zip(figures.errors) {
            if count > 0 {
                let _ = write!(s, "errorstat_{prefix}:count={count}\r\n");
            }
        }
        s.push_str("\r\n");
    }
    if want("keyspace") {
        s.push_str("# Keyspace\r\n");
        if t.keys > 0 {
            let _ = write!(s, "db0:keys={},expires={},avg_ttl=0\r\n", t.keys, t.expires);
        }
    }
    while s.ends_with("\r\n\r\n") {
        s.truncate(s.len() - 2);
    }
    s
}

/// The Stats section's counters besides the traffic and the error replies (which
/// `command_stats::Totals` holds), in the order INFO lists them: what CONFIG RESETSTAT
/// starts again, with those (INFO's figures only: the node's metrics keep counting).
pub(crate) const STAT_COUNTERS: [&str; 13] = [
    "total_connections_received",
    "total_commands_processed",
    "rejected_connections",
    "expired_keys",
    "evicted_keys",
    "evicted_clients",
    "client_query_buffer_limit_disconnections",
    "keyspace_hits",
    "keyspace_misses",
    "strata_shard_drops",
    "strata_idle_disconnections",
    "strata_slow_command_disconnections",
    "client_output_buffer_limit_disconnections",
];

/// Every counter INFO reports, as counted since the server started: the per-command and
/// traffic totals, and [`STAT_COUNTERS`].
pub(crate) fn counted(
    shared: &ConnectionContext,
    stats: &CacheStats,
) -> (command_stats::Totals, [u64; STAT_COUNTERS.len()]) {
    let server = &shared.server;
    let closed = &server.closed;
    let t = stats.total;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let counters = [
        n(&server.total_connections),
        server.total_commands(),
        n(&closed.max_clients),
        t.expired,
        t.evictions,
        n(&closed.evicted),
        n(&closed.query_buffer_limit),
        t.hits,
        t.misses,
        t.drops,
        n(&closed.idle),
        n(&closed.slow_command),
        n(&closed.output_limit),
    ];
    (command_stats::totals(&server.stats), counters)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}
