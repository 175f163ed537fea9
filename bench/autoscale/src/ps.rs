//! `GET {api}/v1/ps`: one service's pool as the node sees it. The autoscaler's fields
//! (`autoscale`, `cold_start_ms`) are optional: a node without them is still measured.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::http::Conn;

/// One service's row of `/v1/ps`.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub ready: usize,
    pub desired: u64,
    /// Instances in any state but `stopped`.
    pub live: usize,
    pub ready_ids: Vec<String>,
    /// `autoscale.target`, when the node reports it.
    pub target: Option<u64>,
    pub signal: Option<String>,
    pub reason: Option<String>,
    /// `autoscale.inflight`, `autoscale.held` (at the gateway), `autoscale.shed` (503s so far).
    pub inflight: Option<u64>,
    pub held: Option<u64>,
    pub shed: Option<u64>,
    /// `cold_start_ms` (of the service or of its `autoscale`) as reported: a number, or
    /// whatever shape the node gives it.
    pub cold_start: Option<Value>,
}

pub struct Ps {
    conn: Conn,
    service: String,
}

impl Ps {
    pub fn new(api: &str, service: &str) -> Ps {
        Ps {
            conn: Conn::new(api),
            service: service.to_string(),
        }
    }

    pub async fn get(&mut self) -> Result<Pool> {
        let reply = self.conn.get("/v1/ps").await.context("GET /v1/ps")?;
        if reply.status != 200 {
            anyhow::bail!("GET /v1/ps: status {}", reply.status);
        }
        let doc: Value = serde_json::from_slice(&reply.body).context("GET /v1/ps: not JSON")?;
        parse(&doc, &self.service)
    }
}

pub fn parse(doc: &Value, service: &str) -> Result<Pool> {
    let svc = doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == service)
        .with_context(|| format!("no service {service:?} in /v1/ps"))?;
    let instances = svc["instances"].as_array().cloned().unwrap_or_default();
    let ready_ids = instances
        .iter()
        .filter(|i| i["state"] == "ready")
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    let live = instances.iter().filter(|i| i["state"] != "stopped").count();
    let auto = &svc["autoscale"];
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    Ok(Pool {
        ready: svc["ready"].as_u64().unwrap_or(0) as usize,
        desired: svc["desired"].as_u64().unwrap_or(0),
        live,
        ready_ids,
        target: auto["target"].as_u64(),
        signal: text(&auto["signal"]),
        reason: text(&auto["reason"]),
        inflight: auto["inflight"].as_u64(),
        held: auto["held"].as_u64(),
        shed: auto["shed"].as_u64(),
        cold_start: match (&svc["cold_start_ms"], &auto["cold_start_ms"]) {
            (Value::Null, Value::Null) => None,
            (Value::Null, v) | (v, _) => Some(v.clone()),
        },
    })
}
