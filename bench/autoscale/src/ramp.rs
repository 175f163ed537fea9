//! `ramp`: closed-loop clients stepping from `from` to `to` at the instant T0, while
//! `/v1/ps` is polled; what the pool did and what the clients saw, relative to T0.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::http::Conn;
use crate::ps::{Pool, Ps};
use crate::stats::{fmt_ms, percentile};

pub struct RampConfig {
    pub gateway: String,
    pub api: String,
    pub service: String,
    pub path: String,
    pub from: usize,
    pub to: usize,
    pub warm_s: f64,
    pub hold_s: f64,
    pub needed: usize,
    pub poll_ms: u64,
    pub steady_s: f64,
    pub round: u32,
}

/// One request; times in ms from T0 (negative before it).
struct Rec {
    start: f64,
    end: f64,
    /// 0: no reply (connect or I/O error, timeout)
    status: u16,
    instance: Option<Arc<str>>,
}

struct Sample {
    t: f64,
    pool: Pool,
}

fn rel(t: Instant, t0: Instant) -> f64 {
    if t >= t0 {
        (t - t0).as_secs_f64() * 1e3
    } else {
        -((t0 - t).as_secs_f64() * 1e3)
    }
}

async fn client(
    gateway: String,
    path: String,
    start: Instant,
    end: Instant,
    t0: Instant,
) -> (Vec<Rec>, Option<String>) {
    tokio::time::sleep_until(start.into()).await;
    let mut conn = Conn::new(&gateway);
    let mut recs = Vec::with_capacity(1024);
    let mut names: HashSet<Arc<str>> = HashSet::new();
    let mut first_error = None;
    while Instant::now() < end {
        let s = Instant::now();
        let result = conn.get(&path).await;
        let e = Instant::now();
        match result {
            Ok(reply) => {
                let instance = reply.instance.map(|name| match names.get(name.as_str()) {
                    Some(n) => n.clone(),
                    None => {
                        let n: Arc<str> = name.into();
                        names.insert(n.clone());
                        n
                    }
                });
                recs.push(Rec {
                    start: rel(s, t0),
                    end: rel(e, t0),
                    status: reply.status,
                    instance,
                });
            }
            Err(err) => {
                first_error.get_or_insert_with(|| format!("{err:#}"));
                recs.push(Rec {
                    start: rel(s, t0),
                    end: rel(e, t0),
                    status: 0,
                    instance: None,
                });
                // no hot loop against a refusing gateway
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (recs, first_error)
}

async fn poller(api: String, service: String, t0: Instant, until: Instant, every: Duration) -> (Vec<Sample>, u64) {
    let mut ps = Ps::new(&api, &service);
    let mut samples = Vec::with_capacity(2048);
    let mut errors = 0;
    let mut next = Instant::now();
    while Instant::now() < until {
        let s = Instant::now();
        match ps.get().await {
            Ok(pool) => {
                let e = Instant::now();
                // the state is the node's somewhere between send and reply: take the middle
                let t = rel(s, t0) + (e - s).as_secs_f64() * 1e3 / 2.0;
                samples.push(Sample { t, pool });
            }
            Err(_) => errors += 1,
        }
        next += every;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        tokio::time::sleep_until(next.into()).await;
    }
    (samples, errors)
}

pub async fn run(cfg: &RampConfig) -> Result<Value> {
    if cfg.to < cfg.from || cfg.from == 0 {
        bail!("--from must be at least 1 and --to at least --from");
    }
    // the node and the service must be there before anything starts
    let first = Ps::new(&cfg.api, &cfg.service).get().await?;
    eprintln!(
        "[autoscale-bench] round {}: {} ready, desired {}, before the warm-up",
        cfg.round, first.ready, first.desired
    );

    let origin = Instant::now() + Duration::from_millis(50);
    let t0 = origin + Duration::from_secs_f64(cfg.warm_s);
    let end = t0 + Duration::from_secs_f64(cfg.hold_s);
    let poll = tokio::spawn(poller(
        cfg.api.clone(),
        cfg.service.clone(),
        t0,
        end + Duration::from_millis(100),
        Duration::from_millis(cfg.poll_ms.max(1)),
    ));
    let mut clients = Vec::with_capacity(cfg.to);
    for i in 0..cfg.to {
        let start = if i < cfg.from { origin } else { t0 };
        clients.push(tokio::spawn(client(
            cfg.gateway.clone(),
            cfg.path.clone(),
            start,
            end,
            t0,
        )));
    }
    let mut recs = Vec::new();
    let mut first_error = None;
    for c in clients {
        let (r, err) = c.await?;
        recs.extend(r);
        if first_error.is_none() {
            first_error = err;
        }
    }
    let (samples, poll_errors) = poll.await?;
    recs.sort_by(|a, b| a.end.total_cmp(&b.end));
    let hold_ms = cfg.hold_s * 1e3;
    let ok = |r: &Rec| (200..300).contains(&r.status);

    // Serving before T0: whoever replied before it, and whoever ps showed ready last.
    let last_before = samples.iter().rfind(|s| s.t < 0.0);
    let mut pre: HashSet<Arc<str>> = recs
        .iter()
        .filter(|r| r.end < 0.0 && ok(r))
        .filter_map(|r| r.instance.clone())
        .collect();
    if let Some(s) = last_before {
        pre.extend(s.pool.ready_ids.iter().map(|id| Arc::from(id.as_str())));
    }
    let pre_desired = last_before.map(|s| s.pool.desired);
    let pre_target = last_before.and_then(|s| s.pool.target);
    let pre_ready = last_before.map(|s| s.pool.ready);

    // (a) the first reply from an instance not serving before T0, and its first ready poll
    let first_new = recs
        .iter()
        .filter(|r| r.end >= 0.0 && ok(r))
        .find(|r| r.instance.as_ref().is_some_and(|i| !pre.contains(i)));
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= 0.0).collect();
    let first_new_ready = after.iter().find_map(|s| {
        s.pool
            .ready_ids
            .iter()
            .find(|id| !pre.contains(id.as_str()))
            .map(|id| (s.t, id.clone()))
    });
    let decision = after.iter().find(|s| {
        pre_desired.is_some_and(|d| s.pool.desired > d)
            || matches!((pre_target, s.pool.target), (Some(p), Some(t)) if t > p)
    });

    // (b) time to the needed count: ready in ps, and serving replies
    let ready_needed = after.iter().find(|s| s.pool.ready >= cfg.needed).map(|s| s.t);
    let mut serving: HashSet<Arc<str>> = HashSet::new();
    let mut served_needed = None;
    for r in recs.iter().filter(|r| r.end >= 0.0 && ok(r)) {
        if let Some(i) = &r.instance {
            serving.insert(i.clone());
            if serving.len() >= cfg.needed {
                served_needed = Some(r.end);
                break;
            }
        }
    }
    let distinct_after: HashSet<&Arc<str>> = recs
        .iter()
        .filter(|r| r.end >= 0.0 && ok(r))
        .filter_map(|r| r.instance.as_ref())
        .collect();

    // (c) latency during the ramp (requests started in [T0, T0 + time to needed]) and at
    // steady state (the last steady_s of the hold)
    let ramp_end = ready_needed.unwrap_or(hold_ms);
    let lat = |lo: f64, hi: f64| -> Vec<f64> {
        recs.iter()
            .filter(|r| r.status != 0 && r.start >= lo && r.start <= hi)
            .map(|r| r.end - r.start)
            .collect()
    };
    let mut ramp = lat(0.0, ramp_end);
    let steady_from = (hold_ms - cfg.steady_s * 1e3).max(0.0);
    let mut steady = lat(steady_from, hold_ms);
    let mut warm = lat(-cfg.warm_s * 1e3, 0.0);
    let steady_ok = recs
        .iter()
        .filter(|r| ok(r) && r.end >= steady_from && r.end <= hold_ms)
        .count();

    // (d) what did not succeed
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for r in &recs {
        if !ok(r) {
            let key = if r.status == 0 {
                "error".to_string()
            } else {
                r.status.to_string()
            };
            *statuses.entry(key).or_default() += 1;
        }
    }
    let non_2xx = recs.iter().filter(|r| r.status != 0 && !ok(r)).count();
    let errors = recs.iter().filter(|r| r.status == 0).count();

    let max_ready = after.iter().map(|s| s.pool.ready).max();
    let max_desired = after.iter().map(|s| s.pool.desired).max();
    let max_target = after.iter().filter_map(|s| s.pool.target).max();
    let mut reasons: Vec<String> = Vec::new();
    for s in &after {
        if let Some(r) = &s.pool.reason {
            if !reasons.contains(r) && reasons.len() < 8 {
                reasons.push(r.clone());
            }
        }
    }
    let signal = after.iter().rev().find_map(|s| s.pool.signal.clone());
    let max_held = after.iter().filter_map(|s| s.pool.held).max();
    let max_inflight = after.iter().filter_map(|s| s.pool.inflight).max();
    let shed = match (
        last_before.and_then(|s| s.pool.shed),
        after.iter().rev().find_map(|s| s.pool.shed),
    ) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        (None, b) => b,
        _ => None,
    };

    let result = json!({
        "kind": "ramp",
        "round": cfg.round,
        "from": cfg.from,
        "to": cfg.to,
        "needed": cfg.needed,
        "warm_s": cfg.warm_s,
        "hold_s": cfg.hold_s,
        "pre_ready": pre_ready,
        "pre_serving": pre.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "scale_decision_ms": decision.map(|s| s.t),
        "first_new_reply_ms": first_new.map(|r| r.end),
        "first_new_instance": first_new.and_then(|r| r.instance.as_ref().map(|i| i.to_string())),
        "first_new_ready_ms": first_new_ready.as_ref().map(|(t, _)| *t),
        "first_new_ready_instance": first_new_ready.as_ref().map(|(_, id)| id.clone()),
        "ready_needed_ms": ready_needed,
        "served_needed_ms": served_needed,
        "distinct_serving": distinct_after.len(),
        "ramp_window_ms": ramp_end,
        "ramp_n": ramp.len(),
        "ramp_p50_ms": percentile(&mut ramp, 50.0),
        "ramp_p99_ms": percentile(&mut ramp, 99.0),
        "ramp_max_ms": percentile(&mut ramp, 100.0),
        "steady_n": steady.len(),
        "steady_p50_ms": percentile(&mut steady, 50.0),
        "steady_p99_ms": percentile(&mut steady, 99.0),
        "steady_rps": steady_ok as f64 / (hold_ms - steady_from).max(1.0) * 1e3,
        "warm_p50_ms": percentile(&mut warm, 50.0),
        "requests": recs.len(),
        "non_2xx": non_2xx,
        "errors": errors,
        "failures": statuses,
        "first_error": first_error,
        "max_ready": max_ready,
        "max_desired": max_desired,
        "max_target": max_target,
        "autoscale_signal": signal,
        "max_held": max_held,
        "max_inflight": max_inflight,
        "shed": shed,
        "autoscale_reasons": reasons,
        "cold_start_ms": samples.last().and_then(|s| s.pool.cold_start.clone()),
        "ps_polls": samples.len(),
        "ps_errors": poll_errors,
    });
    summary(cfg, &result, &samples);
    Ok(result)
}

fn summary(cfg: &RampConfig, r: &Value, samples: &[Sample]) {
    let p = |msg: String| eprintln!("[autoscale-bench] {msg}");
    let f = |k: &str| fmt_ms(&r[k]);
    p(format!(
        "round {}: step {} -> {} clients at T0 ({} s warm, {} s hold), needed {} instances",
        cfg.round, cfg.from, cfg.to, cfg.warm_s, cfg.hold_s, cfg.needed
    ));
    p(format!(
        "  scale decision (ps desired/target up): {}   first new instance ready in ps: {} ({})",
        f("scale_decision_ms"),
        f("first_new_ready_ms"),
        r["first_new_ready_instance"].as_str().unwrap_or("-")
    ));
    p(format!(
        "  first reply from a new instance: {} ({})",
        f("first_new_reply_ms"),
        r["first_new_instance"].as_str().unwrap_or("-")
    ));
    p(format!(
        "  {} ready in ps: {}   {} distinct instances serving: {} (distinct after T0: {})",
        cfg.needed,
        f("ready_needed_ms"),
        cfg.needed,
        f("served_needed_ms"),
        r["distinct_serving"]
    ));
    p(format!(
        "  latency during the ramp (started in [T0, T0+{}], n={}): p50 {} p99 {} max {}",
        f("ramp_window_ms"),
        r["ramp_n"],
        f("ramp_p50_ms"),
        f("ramp_p99_ms"),
        f("ramp_max_ms")
    ));
    p(format!(
        "  steady (last {} s, n={}): p50 {} p99 {}, {:.0} replies/s; before T0 p50 {}",
        cfg.steady_s,
        r["steady_n"],
        f("steady_p50_ms"),
        f("steady_p99_ms"),
        r["steady_rps"].as_f64().unwrap_or(0.0),
        f("warm_p50_ms")
    ));
    p(format!(
        "  requests {}, non-2xx {}, errors {} {}; max ready {}, max desired {}, max target {}",
        r["requests"], r["non_2xx"], r["errors"], r["failures"], r["max_ready"], r["max_desired"], r["max_target"]
    ));
    if let Some(e) = r["first_error"].as_str() {
        p(format!("  first error: {e}"));
    }
    if !r["max_inflight"].is_null() {
        p(format!(
            "  node's view: max in flight {}, max held at the gateway {}, shed {}",
            r["max_inflight"], r["max_held"], r["shed"]
        ));
    }
    if let Some(reasons) = r["autoscale_reasons"].as_array().filter(|a| !a.is_empty()) {
        p(format!(
            "  autoscale signal {}, reasons: {}",
            r["autoscale_signal"].as_str().unwrap_or("-"),
            reasons.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | ")
        ));
    }
    // the pool's changes from just before T0 to the end
    let mut line = String::new();
    let mut last: Option<(usize, u64, Option<u64>)> = None;
    for s in samples.iter().filter(|s| s.t >= -200.0) {
        let now = (s.pool.ready, s.pool.desired, s.pool.target);
        if last != Some(now) {
            let target = now.2.map_or(String::new(), |t| format!(" t{t}"));
            line.push_str(&format!(" {:.0}ms:r{}/d{}{}", s.t, now.0, now.1, target));
            last = Some(now);
        }
    }
    p(format!("  pool (ms from T0: r ready / d desired / t target):{line}"));
}
