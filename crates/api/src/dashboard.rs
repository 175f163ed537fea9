//! The dashboard: `GET /ui`, a page with its script and style (hand-written, no
//! framework, compiled into the binary: nothing to build, nothing fetched from elsewhere,
//! so it works offline), and `GET /v1/stream`, the live feed the page reads.
//!
//! The page needs no token: it holds no data and no secret. It takes the control token
//! from its URL's fragment (`/ui#token=...`, which a browser never sends to a server) and
//! calls the API with `Authorization: Bearer`, as the CLI does; `/v1/stream` and the
//! logs it follows are the control token's like the rest of the control API.
//!
//! `/v1/stream` is server-sent events (`text/event-stream`): first `hello` (the latency
//! histogram's bucket bounds and the recent events), then every second a `snapshot`
//! (what `/v1/ps`, `/v1/queues` and `/v1/cache` answer, each service's relayed
//! requests: replies by status class and the latency histogram, cumulative, from which
//! the page draws rates and percentiles, and in a cluster the nodes and what runs where,
//! [`crate::cluster`]), and each `event` as it happens. The figures are read from the
//! same counters as `/v1/metrics`, once a second per open page: the gateway's path does
//! not change with a dashboard open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use strata_os::histogram::BOUNDS;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::extract::Path;
use crate::logs::ChannelBody;
use crate::{ApiError, NodeParts};

/// The page's routes (the page, its script and style): the access check lets them
/// through without a token.
const PAGE_ROUTES: [&str; 2] = ["/ui", "/ui/{asset}"];

const HTML: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// Only the node's own script, style and API: no inline script, nothing from elsewhere,
/// not framed by another page.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often the stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new()
        .route("/ui", get(|| async { served("text/html; charset=utf-8", HTML) }))
        .route("/ui/{asset}", get(asset))
        .route("/v1/stream", get(stream))
}

/// Whether a route template is one of the page's, which need no token.
pub(crate) fn is_page(template: Option<&str>) -> bool {
    template.is_some_and(|t| PAGE_ROUTES.contains(&t))
}

fn served(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "dashboard.js" => served("text/javascript; charset=utf-8", SCRIPT),
        "dashboard.css" => served("text/css; charset=utf-8", STYLE),
        _ => ApiError::not_found(format!("no dashboard file {name:?}; the dashboard is at /ui")).into_response(),
    }
}

/// One second's figures.
#[derive(Serialize)]
struct Snapshot {
    /// Milliseconds since the Unix epoch.
    at: u128,
    ps: crate::control::Ps,
    queues: serde_json::Value,
    cache: serde_json::Value,
    relay: BTreeMap<String, Relayed>,
    /// The cluster's nodes and where the app's instances run; null on a single node.
    cluster: Option<crate::cluster::ClusterSnapshot>,
}

/// A service's relayed requests so far (counters: the page takes differences).
#[derive(Serialize)]
struct Relayed {
    /// Replies of status class 1xx to 5xx.
    classes: [u64; 5],
    /// Requests that got no reply.
    unanswered: u64,
    /// Requests at or under each of the hello's `bounds`, then all of them.
    cumulative: Vec<u64>,
}

fn snapshot(state: &NodeParts) -> Snapshot {
    let ps = crate::control::ps_of(state);
    let relay = ps
        .services
        .iter()
        .map(|s| {
            let figures = strata_gateway::RelayStats::of(&state.bus.pool(&s.name)).snapshot();
            let relayed = Relayed {
                classes: figures.classes,
                unanswered: figures.unanswered.iter().sum(),
                cumulative: figures.latency.cumulative.to_vec(),
            };
            (s.name.clone(), relayed)
        })
        .collect();
    Snapshot {
        at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        ps,
        queues: crate::queues::list_of(state),
        cache: crate::cache::stats_of(state),
        relay,
        cluster: state.cluster.as_ref().map(|c| c.snapshot()),
    }
}

/// One server-sent event: JSON has no raw newline, so `data` is one line.
fn message(name: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn stream(State(state): State<Arc<NodeParts>>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    // Subscribed before the recent events are read, so that none falls between; one
    // that is in both the page shows once.
    let mut events = state.app.subscribe();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let hello = json!({ "bounds": BOUNDS, "events": state.app.recent_events() });
        if tx.send(message("hello", &hello)).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next = tokio::select! {
                _ = tick.tick() => message("snapshot", &snapshot(&state)),
                event = events.recv() => match event {
                    Ok(e) => message("event", &e),
                    // The next snapshot still shows where things are.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            };
            if tx.send(next).await.is_err() {
                return;
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::new(ChannelBody { rx }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_event_with_its_data_on_one_line() {
        let m = message("event", &json!({ "message": "two\nlines" }));
        assert_eq!(&m[..], b"event: event\ndata: {\"message\":\"two\\nlines\"}\n\n");
    }

    #[test]
    fn the_page_loads_its_own_files_and_nothing_from_elsewhere() {
        assert!(HTML.contains(r#"src="/ui/dashboard.js""#));
        assert!(HTML.contains(r#"href="/ui/dashboard.css""#));
        assert!(
            HTML.contains(r#"<link rel="icon" href="data:,">"#),
            "no /favicon.ico request (a 401)"
        );
        for text in [HTML, SCRIPT, STYLE] {
            assert!(!text.contains("https://") && !text.contains("url(") && !text.contains("import "));
        }
        // The policy allows no inline script: the page has none.
        assert_eq!(HTML.matches("<script").count(), 1);
    }
}
