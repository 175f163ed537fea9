//! `strata top`: the node's live picture in the terminal. Every second it reads the node
//! API (`/v1/ps`, `/v1/metrics`, `/v1/queues`, `/v1/events`) and shows, per service,
//! its state, ready and desired instances, requests per second by status class,
//! latency percentiles over the last second (from the request histogram's buckets), in
//! flight and the autoscaler's target; then each instance, each queue's groups with
//! their backlog, and the latest events. `q`, Esc or Ctrl-C leaves. `--once`, or a
//! standard output that is not a terminal (a pipe, a file), prints one frame (after two
//! samples, so that rates exist) as plain text, without box drawing, and exits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use http::Method;
use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};
use serde_json::Value;

use crate::control::ControlClient;
use crate::tables::time_of_day;

/// One read of the node.
struct Sample {
    at: Instant,
    ps: Value,
    queues: Value,
    events: Value,
    /// Per service: replies by status class (`2xx`, ..., `none`), and the request
    /// histogram's cumulative buckets (upper bound in s, count).
    requests: BTreeMap<String, BTreeMap<String, u64>>,
    buckets: BTreeMap<String, Vec<(f64, u64)>>,
}

/// A service's figures between two samples.
#[derive(Debug, Default, Clone, PartialEq)]
struct Rates {
    per_s: f64,
    errors_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

pub async fn run(client: ControlClient, once: bool, every: Duration) -> Result<()> {
    use std::io::IsTerminal;
    let mut last = read(&client).await?;
    if once || !std::io::stdout().is_terminal() {
        tokio::time::sleep(every).await;
        let now = read(&client).await?;
        crate::out::line(&plain_frame(&last, &now)?)?;
        return Ok(());
    }
    let mut terminal = ratatui::init();
    let result = async {
        let mut now = read(&client).await?;
        loop {
            terminal.draw(|f| draw(f, &last, &now, Look::Screen))?;
            let until = Instant::now() + every;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if event::poll(left)? {
                    if let Event::Key(k) = event::read()? {
                        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                        if k.kind == KeyEventKind::Press
                            && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                        {
                            return Ok(());
                        }
                    }
                } else {
                    break;
                }
            }
            last = std::mem::replace(&mut now, read(&client).await?);
        }
    }
    .await;
    ratatui::restore();
    result
}

/// One frame as plain text, tall enough for every row (a plain frame has no scrolling).
fn plain_frame(last: &Sample, now: &Sample) -> Result<String> {
    let mut terminal = Terminal::new(TestBackend::new(140, plain_height(now)))?;
    terminal.draw(|f| draw(f, last, now, Look::Plain))?;
    let buffer = terminal.backend().buffer();
    let width = buffer.area.width as usize;
    let mut out = String::new();
    for row in buffer.content.chunks(width) {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out.trim_end_matches('\n').to_string())
}

async fn read(client: &ControlClient) -> Result<Sample> {
    let get = |path: &'static str| async move {
        let (status, body) = client.call(Method::GET, path, None).await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        Ok::<_, anyhow::Error>(body)
    };
    let ps: Value = serde_json::from_slice(&get("/v1/ps").await?).context("/v1/ps")?;
    let queues: Value = serde_json::from_slice(&get("/v1/queues").await?).unwrap_or(Value::Null);
    let events: Value = serde_json::from_slice(&get("/v1/events").await?).unwrap_or(Value::Null);
    let metrics = String::from_utf8_lossy(&get("/v1/metrics").await?).into_owned();
    let (requests, buckets) = parse_metrics(&metrics);
    Ok(Sample {
        at: Instant::now(),
        ps,
        queues,
        events,
        requests,
        buckets,
    })
}

/// The request counters and latency buckets per service from the metrics text.
type Parsed = (
    BTreeMap<String, BTreeMap<String, u64>>,
    BTreeMap<String, Vec<(f64, u64)>>,
);

fn parse_metrics(text: &str) -> Parsed {
    let (mut requests, mut buckets): Parsed = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let labels: BTreeMap<&str, &str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        let label = |key: &str| labels.get(key).map(|v| v.to_string());
        let Some(service) = label("service") else { continue };
        match name {
            "strata_requests_total" => {
                let code = label("code").unwrap_or_default();
                *requests.entry(service).or_default().entry(code).or_default() += value as u64;
            }
            "strata_request_duration_seconds_bucket" => {
                let le = label("le").unwrap_or_default();
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                buckets.entry(service).or_default().push((bound, value as u64));
            }
            _ => {}
        }
    }
    (requests, buckets)
}

/// Rates of `service` from `a` to `b`.
fn rates(a: &Sample, b: &Sample, service: &str) -> Rates {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let count = |s: &Sample, f: &dyn Fn(&str) -> bool| -> u64 {
        s.requests
            .get(service)
            .map_or(0, |m| m.iter().filter(|(k, _)| f(k)).map(|(_, n)| n).sum())
    };
    let all = count(b, &|_| true).saturating_sub(count(a, &|_| true));
    let bad = |k: &str| k == "5xx" || k == "none";
    let errors = count(b, &bad).saturating_sub(count(a, &bad));
    // The buckets' growth over the interval: the latencies of the requests in it.
    let delta: Vec<(f64, u64)> = match (a.buckets.get(service), b.buckets.get(service)) {
        (Some(x), Some(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .map(|((le, n0), (_, n1))| (*le, n1.saturating_sub(*n0)))
            .collect(),
        (None, Some(y)) => y.clone(),
        _ => Vec::new(),
    };
    Rates {
        per_s: all as f64 / secs,
        errors_per_s: errors as f64 / secs,
        p50_ms: quantile(&delta, 0.50),
        p99_ms: quantile(&delta, 0.99),
    }
}

/// The `q` quantile (ms) of cumulative buckets, interpolated within its bucket as
/// Prometheus's `histogram_quantile` does; None without requests.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, n) in buckets {
        if n as f64 >= rank {
            if le.is_infinite() {
                return Some(lower * 1000.0);
            }
            let inside = (n - below) as f64;
            let frac = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some((lower + (le - lower) * frac) * 1000.0);
        }
        lower = le;
        below = n;
    }
    Some(lower * 1000.0)
}

/// How a frame is drawn: for the live screen, or as plain text for `--once`.
#[derive(Clone, Copy, PartialEq)]
enum Look {
    Screen,
    Plain,
}

impl Look {
    /// A section: boxed on the screen; in plain text, its title on a line of its own.
    fn section(self, title: &str) -> Block<'static> {
        match self {
            Look::Screen => Block::default().borders(Borders::ALL).title(format!(" {title} ")),
            Look::Plain => Block::default().title(format!("{title}:")),
        }
    }

    /// A table's section in `area`, its title saying so when only the first of `rows`
    /// fit (under the header row).
    fn table_section(self, title: &str, area: Rect, rows: usize) -> Block<'static> {
        let fits = self.section(title).inner(area).height.saturating_sub(1) as usize;
        if rows > fits {
            self.section(&format!("{title} (the first {fits} of {rows})"))
        } else {
            self.section(title)
        }
    }
}

/// The rows of the queues' table: one per group, one for a queue without any.
fn queue_rows(queues: &[Value]) -> usize {
    queues
        .iter()
        .map(|q| q["groups"].as_array().map_or(0, Vec::len).max(1))
        .sum()
}

/// The height of a plain frame with every row of `now` (and the last events).
fn plain_height(now: &Sample) -> u16 {
    let services = now.ps["services"].as_array().map(Vec::as_slice).unwrap_or_default();
    let instances: usize = services
        .iter()
        .map(|s| s["instances"].as_array().map_or(0, Vec::len))
        .sum();
    let queues = now.queues["queues"].as_array().map(Vec::as_slice).unwrap_or_default();
    let rows = 1 + (services.len() + 3) + (instances + 3) + (queue_rows(queues).max(1) + 3) + 12;
    rows.min(u16::MAX as usize) as u16
}

fn draw(f: &mut Frame, last: &Sample, now: &Sample, look: Look) {
    let ps = &now.ps;
    let services = ps["services"].as_array().map(Vec::as_slice).unwrap_or_default();
    let instances: usize = services
        .iter()
        .map(|s| s["instances"].as_array().map_or(0, Vec::len))
        .sum();
    let queues = now.queues["queues"].as_array().map(Vec::as_slice).unwrap_or_default();
    // The screen keeps room for the events; a plain frame is as tall as its rows.
    let instances_height = match look {
        Look::Screen => (instances as u16 + 3).min(16),
        Look::Plain => instances as u16 + 3,
    };
    let [head, svc, inst, q, ev] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(services.len() as u16 + 3),
        Constraint::Length(instances_height),
        Constraint::Length(queue_rows(queues).max(1) as u16 + 3),
        Constraint::Min(4),
    ])
    .areas(f.area());
    let title = format!(
        "strata top — app {}  gateway http://{}  api {}{}",
        ps["app"].as_str().unwrap_or("?"),
        ps["gateway"].as_str().unwrap_or("?"),
        ps["api"].as_str().unwrap_or("?"),
        if look == Look::Screen { "   (q quits)" } else { "" }
    );
    f.render_widget(
        Paragraph::new(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD))),
        head,
    );
    draw_services(f, svc, last, now, services, look);
    draw_instances(f, inst, services, look);
    draw_queues(f, q, queues, look);
    let events = now.events.as_array().map(Vec::as_slice).unwrap_or_default();
    let shown = look.section("events").inner(ev).height as usize;
    let lines: Vec<Line> = events
        .iter()
        .rev()
        .take(shown)
        .rev()
        .map(|e| {
            Line::from(format!(
                "{} {:<14} {:<14} {}",
                time_of_day(e["at"].as_u64().unwrap_or(0)),
                e["instance"].as_str().or(e["service"].as_str()).unwrap_or("-"),
                e["kind"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap_or("")
            ))
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(look.section("events")), ev);
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |ms| format!("{ms:.1}"))
}

fn draw_services(f: &mut Frame, area: Rect, last: &Sample, now: &Sample, services: &[Value], look: Look) {
    let rows: Vec<Row> = services
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap_or("?");
            let r = rates(last, now, name);
            let inflight: u64 = s["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["inflight"].as_u64())
                .sum();
            let scale = &s["autoscale"];
            let target = scale["target"].as_u64().map_or("-".to_string(), |t| t.to_string());
            let backlog = scale["backlog"].as_u64().map_or("-".to_string(), |b| b.to_string());
            Row::new(vec![
                name.to_string(),
                s["state"].as_str().unwrap_or("?").to_string(),
                format!("{}/{}", s["ready"], s["desired"]),
                format!("{:.1}", r.per_s),
                format!("{:.1}", r.errors_per_s),
                ms(r.p50_ms),
                ms(r.p99_ms),
                inflight.to_string(),
                target,
                backlog,
            ])
        })
        .collect();
    let header = Row::new(vec![
        "SERVICE", "STATE", "READY", "REQ/S", "ERR/S", "P50 MS", "P99 MS", "INFLIGHT", "TARGET", "BACKLOG",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(18),
        Constraint::Length(22),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(8),
    ];
    f.render_widget(
        Table::new(rows, widths).header(header).block(look.section("services")),
        area,
    );
}

fn draw_instances(f: &mut Frame, area: Rect, services: &[Value], look: Look) {
    let rows: Vec<Row> = services
        .iter()
        .flat_map(|s| s["instances"].as_array().into_iter().flatten())
        .map(|i| {
            Row::new(vec![
                i["id"].as_str().unwrap_or("?").to_string(),
                i["state"].as_str().unwrap_or("?").to_string(),
                i["pid"].as_u64().map_or("-".to_string(), |p| p.to_string()),
                i["port"].as_u64().map_or("-".to_string(), |p| p.to_string()),
                i["restarts"].to_string(),
                i["inflight"].to_string(),
                i["served"].to_string(),
                crate::tables::instance_detail(i),
            ])
        })
        .collect();
    let count = rows.len();
    let header = Row::new(vec![
        "INSTANCE", "STATE", "PID", "PORT", "RESTARTS", "INFLIGHT", "SERVED", "DETAIL",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(18),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(look.table_section("instances", area, count)),
        area,
    );
}

fn draw_queues(f: &mut Frame, area: Rect, queues: &[Value], look: Look) {
    let rows: Vec<Row> = queues
        .iter()
        .flat_map(|q| {
            let name = q["name"].as_str().unwrap_or("?").to_string();
            let stored = q["messages"].to_string();
            let groups = q["groups"].as_array().cloned().unwrap_or_default();
            if groups.is_empty() {
                return vec![Row::new(vec![
                    name,
                    stored,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ])];
            }
            groups
                .iter()
                .map(|g| {
                    Row::new(vec![
                        name.clone(),
                        stored.clone(),
                        g["name"].as_str().unwrap_or("?").to_string(),
                        g["backlog"].to_string(),
                        g["leased"].to_string(),
                        g["dead_lettered"].to_string(),
                    ])
                })
                .collect()
        })
        .collect();
    let count = rows.len();
    let header = Row::new(vec!["QUEUE", "STORED", "GROUP", "BACKLOG", "LEASED", "DEAD"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(20),
        Constraint::Length(9),
        Constraint::Length(16),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(look.table_section("queues", area, count)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        // 100 requests: 50 under 1 ms, 40 more under 2 ms, 10 more under 4 ms.
        let b = [(0.001, 50), (0.002, 90), (0.004, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&b, 0.5), Some(1.0));
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((p99 - 3.8).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
    }

    /// Walk of stop 51: queues without a group (each `.dlq`) took rows the pane was not
    /// sized for, and the last queues fell off without a word.
    #[test]
    fn a_plain_frame_has_every_instance_and_queue_row() {
        let instances: Vec<Value> = (1..=20)
            .map(|i| serde_json::json!({ "id": format!("web-{i}"), "state": "ready" }))
            .collect();
        let mut queues: Vec<Value> = Vec::new();
        for q in ["jobs", "mail", "orders", "tq"] {
            let groups: Vec<Value> = (1..=3)
                .map(|g| serde_json::json!({ "name": format!("g{g}") }))
                .collect();
            queues.push(serde_json::json!({ "name": q, "groups": groups }));
            queues.push(serde_json::json!({ "name": format!("{q}.dlq"), "groups": [] }));
        }
        let sample = Sample {
            at: Instant::now(),
            ps: serde_json::json!({ "app": "a", "services": [{ "name": "web", "instances": instances }] }),
            queues: serde_json::json!({ "queues": queues }),
            events: Value::Null,
            requests: BTreeMap::new(),
            buckets: BTreeMap::new(),
        };
        let frame = plain_frame(&sample, &sample).unwrap();
        for i in 1..=20 {
            assert!(frame.contains(&format!("web-{i} ")), "web-{i}: {frame}");
        }
        assert!(frame.contains("tq.dlq") && frame.contains("tq  "), "{frame}");
        assert_eq!(frame.matches(" g3 ").count(), 4, "{frame}");
        assert!(!frame.contains("the first"), "{frame}");
        // On the screen, a pane too short for its rows says so in its title.
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|f| draw(f, &sample, &sample, Look::Screen)).unwrap();
        let screen: String = terminal.backend().buffer().content.iter().map(|c| c.symbol()).collect();
        assert!(screen.contains(" instances (the first 13 of 20) "), "{screen}");
    }

    #[test]
    fn the_metrics_text_gives_counters_and_buckets_per_service() {
        let text = "# HELP x\nstrata_requests_total{app=\"a\",service=\"web\",code=\"2xx\"} 7\n\
                    strata_requests_total{app=\"a\",service=\"web\",code=\"none\",reason=\"no-member\"} 2\n\
                    strata_request_duration_seconds_bucket{app=\"a\",service=\"web\",le=\"0.001\"} 5\n\
                    strata_request_duration_seconds_bucket{app=\"a\",service=\"web\",le=\"+Inf\"} 9\n";
        let (requests, buckets) = parse_metrics(text);
        assert_eq!(requests["web"]["2xx"], 7);
        assert_eq!(requests["web"]["none"], 2);
        assert_eq!(buckets["web"], vec![(0.001, 5), (f64::INFINITY, 9)]);
    }
}
