//! `report`: the medians of the rounds' JSON lines, each against its target.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::stats::{fmt_f, median};

pub struct Targets {
    /// First new instance serving, from the step.
    pub first_ms: f64,
    /// Scale from zero may add at most the program's own start time plus this.
    pub cold_slack_ms: f64,
}

const PEERS: &str = "\
no peer runs side by side: Kubernetes (HPA), KEDA and Knative cannot run on this machine.
their published reaction intervals, for reference (defaults):
  Kubernetes HPA: the controller syncs every 15 s (--horizontal-pod-autoscaler-sync-period)
  KEDA: polls each trigger every 30 s (pollingInterval), then feeds the HPA
  Knative KPA: 6 s panic window (10 % of the 60 s stable window), decisions every 2 s (tick-interval)";

fn nums(rows: &[&Value], key: &str) -> Vec<f64> {
    rows.iter().filter_map(|r| r[key].as_f64()).collect()
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

pub fn report(file: &str, targets: &Targets) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a results line is not JSON")?;
    let of = |kind: &str| -> Vec<&Value> { rows.iter().filter(|r| r["kind"] == kind).collect() };
    let (ramps, colds, owns) = (of("ramp"), of("cold"), of("own_start"));

    println!();
    let mut summary = BTreeMap::new();
    if !ramps.is_empty() {
        let r0 = ramps[0];
        println!(
            "ramp: {} rounds, step {} -> {} clients, needed (N) {} instances (medians of the rounds; ms from the step)",
            ramps.len(),
            r0["from"],
            r0["to"],
            r0["needed"]
        );
        println!(
            "  {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
            "round",
            "decision",
            "new ready",
            "new reply",
            "N ready",
            "N serving",
            "ramp p99",
            "steady p99",
            "non-2xx",
            "errors"
        );
        for r in &ramps {
            let c = |k: &str| r[k].as_f64().map_or("-".to_string(), |v| format!("{v:.0}"));
            println!(
                "  {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
                r["round"].to_string(),
                c("scale_decision_ms"),
                c("first_new_ready_ms"),
                c("first_new_reply_ms"),
                c("ready_needed_ms"),
                c("served_needed_ms"),
                c("ramp_p99_ms"),
                c("steady_p99_ms"),
                r["non_2xx"].to_string(),
                r["errors"].to_string()
            );
        }
        let line = |label: &str, key: &str, target: Option<f64>, summary: &mut BTreeMap<String, Value>| {
            let vals = nums(&ramps, key);
            let missing = ramps.len() - vals.len();
            let m = median(vals);
            summary.insert(key.to_string(), json!(m));
            let value = m.map_or("never reached".to_string(), fmt_f);
            let note = if missing > 0 {
                format!(" (not reached in {missing} of {} rounds)", ramps.len())
            } else {
                String::new()
            };
            match target {
                Some(t) => {
                    let met = missing == 0 && m.is_some_and(|m| m <= t);
                    println!(
                        "  {label:<46} {value:>10}   target <= {}: {}{note}",
                        fmt_f(t),
                        verdict(met)
                    );
                }
                None => println!("  {label:<46} {value:>10}{note}"),
            }
        };
        line(
            "scale decision (ps desired/target up)",
            "scale_decision_ms",
            None,
            &mut summary,
        );
        line(
            "first new instance ready (ps)",
            "first_new_ready_ms",
            None,
            &mut summary,
        );
        line(
            "first new instance serving (its first reply)",
            "first_new_reply_ms",
            Some(targets.first_ms),
            &mut summary,
        );
        line("needed count ready (ps)", "ready_needed_ms", None, &mut summary);
        line("needed count serving replies", "served_needed_ms", None, &mut summary);
        line("p50 during the ramp", "ramp_p50_ms", None, &mut summary);
        line("p99 during the ramp", "ramp_p99_ms", None, &mut summary);
        line("max during the ramp", "ramp_max_ms", None, &mut summary);
        line(
            "p99 at steady state (end of the hold)",
            "steady_p99_ms",
            None,
            &mut summary,
        );
        line("p50 at steady state", "steady_p50_ms", None, &mut summary);
        let non_2xx: u64 = ramps.iter().filter_map(|r| r["non_2xx"].as_u64()).sum();
        let errors: u64 = ramps.iter().filter_map(|r| r["errors"].as_u64()).sum();
        println!("  {:<46} {:>10}", "non-2xx replies, all rounds", non_2xx);
        println!("  {:<46} {:>10}", "requests without a reply, all rounds", errors);
        summary.insert("non_2xx".into(), json!(non_2xx));
        summary.insert("errors".into(), json!(errors));
    }

    if !colds.is_empty() || !owns.is_empty() {
        println!();
        println!(
            "scale from zero: {} cold requests, {} own starts (alternating)",
            colds.len(),
            owns.len()
        );
        let sleep = colds.first().and_then(|c| c["sleep_ms"].as_f64()).unwrap_or(0.0);
        let own = median(nums(&owns, "own_start_ms"));
        let cold = median(nums(&colds, "cold_ms"));
        let cold_net = median(nums(&colds, "cold_minus_sleep_ms"));
        let warm = median(nums(&colds, "warm_ms"));
        let node_cold = median(nums(&colds, "cold_start_ms"));
        // pairs of the same round: cold - sleep - own start
        let own_by_round: BTreeMap<String, f64> = owns
            .iter()
            .filter_map(|o| Some((o["round"].to_string(), o["own_start_ms"].as_f64()?)))
            .collect();
        let added = median(
            colds
                .iter()
                .filter_map(|c| Some(c["cold_minus_sleep_ms"].as_f64()? - own_by_round.get(&c["round"].to_string())?))
                .collect(),
        );
        let show = |v: Option<f64>| v.map_or("-".to_string(), fmt_f);
        println!(
            "  {:<46} {:>10}",
            "the program's own start (spawn to healthy)",
            show(own)
        );
        println!("  {:<46} {:>10}", "cold request (send to full reply)", show(cold));
        println!(
            "  {:<46} {:>10}",
            format!("cold request minus the {} sleep", fmt_f(sleep)),
            show(cold_net)
        );
        println!("  {:<46} {:>10}", "warm request right after (reference)", show(warm));
        if node_cold.is_some() {
            println!("  {:<46} {:>10}", "the node's cold_start_ms (ps)", show(node_cold));
        }
        let met = added.is_some_and(|a| a <= targets.cold_slack_ms);
        println!(
            "  {:<46} {:>10}   target <= {} (cold - sleep <= own start + {}): {}",
            "added by strata (cold - sleep - own start)",
            show(added),
            fmt_f(targets.cold_slack_ms),
            fmt_f(targets.cold_slack_ms),
            verdict(met)
        );
        let failed = colds
            .iter()
            .filter(|c| !(200..300).contains(&c["status"].as_u64().unwrap_or(0)))
            .count();
        if failed > 0 {
            println!("  cold requests not answered 2xx: {failed}");
        }
        summary.insert("own_start_ms".into(), json!(own));
        summary.insert("cold_ms".into(), json!(cold));
        summary.insert("cold_minus_sleep_ms".into(), json!(cold_net));
        summary.insert("added_by_strata_ms".into(), json!(added));
        summary.insert("node_cold_start_ms".into(), json!(node_cold));
    }
    println!();
    println!("{PEERS}");
    let mut line = json!({ "kind": "summary" });
    line.as_object_mut().expect("object").extend(summary);
    println!();
    println!("{line}");
    Ok(())
}
