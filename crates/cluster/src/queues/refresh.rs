//! The backend's view of JetStream, kept current every [`REFRESH`]: which queues exist
//! (one created or deleted on another node appears or goes here), each queue's figures
//! (stream state, each group's consumer), and space reclaimed below every group's ack
//! floor, as the embedded engine drops a segment once every group is done with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{consumer, stream};
use serde::Deserialize;
use serde_json::json;
use strata_manifest::QueueSpec;
use strata_queue::DLQ_SUFFIX;
use tokio_util::sync::CancellationToken;

use super::handle::{Figures, GroupFigures, JsQueue};
use super::names::{META_PREFIX, META_QUEUE, META_SPEC};
use super::Shared;

/// How often the queues and their figures are read again.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct StreamPage {
    total: usize,
    #[serde(default)]
    streams: Option<Vec<stream::Info>>,
}

/// The streams of a prefix as listed (one whose leader is being elected may be left
/// out: the listing's `missing`).
pub(crate) struct Listing {
    pub streams: BTreeMap<String, stream::Info>,
}

#[derive(Deserialize)]
struct ConsumerPage {
    total: usize,
    #[serde(default)]
    consumers: Option<Vec<consumer::Info>>,
    /// Consumers the listing left out: their leader is being elected (a server lost).
    #[serde(default)]
    missing: Option<Vec<String>>,
}

/// A stream's consumers as listed, and whether the listing had them all.
struct Consumers {
    listed: Vec<consumer::Info>,
    /// False when JetStream left some out (`missing`, or fewer than its `total`).
    complete: bool,
}

#[derive(Deserialize)]
struct SubjectsInfo {
    state: SubjectsState,
}

#[derive(Deserialize)]
struct SubjectsState {
    #[serde(default)]
    subjects: Option<HashMap<String, u64>>,
}

/// Refreshes until `stop`.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
        if let Err(e) = tick(&shared).await {
            tracing::debug!("refresh the queues from JetStream: {e:#}");
        }
    }
}

/// One refresh: the list of queues, then every queue's figures.
pub(crate) async fn tick(shared: &Shared) -> anyhow::Result<()> {
    let version = shared.version.load(Ordering::SeqCst);
    // Where this node's own changes stood before anything was read: what was read may be
    // older than a change made since.
    let local: HashMap<String, u64> = shared
        .table()
        .iter()
        .map(|(name, q)| (name.clone(), q.local_changes()))
        .collect();
    let listing = list_streams(shared).await?;
    let gone = confirm_gone(shared, &listing).await;
    apply_listing(shared, version, &listing.streams, &gone);
    let streams = listing.streams;
    let handles: Vec<Arc<JsQueue>> = shared.table().values().cloned().collect();
    for q in handles {
        let Some(info) = streams.get(&q.name) else {
            continue;
        };
        let local = local.get(&q.name).copied().unwrap_or_else(|| q.local_changes());
        if let Err(e) = refresh_queue(shared, &q, info, &streams, local).await {
            tracing::debug!(queue = %q.name, "refresh the queue's figures: {e:#}");
        }
    }
    Ok(())
}

/// Every stream of this backend's prefix, by queue name.
async fn list_streams(shared: &Shared) -> anyhow::Result<Listing> {
    let core = &shared.core;
    let filter = core.names.all_queues();
    let mut out = BTreeMap::new();
    let mut seen = 0usize;
    loop {
        let page: Response<StreamPage> = core
            .js
            .request("STREAM.LIST", &json!({ "offset": seen, "subject": filter }))
            .await
            .context("list the streams")?;
        let page = match page {
            Response::Ok(page) => page,
            Response::Err { error } => return Err(anyhow!("list the streams: {error}")),
        };
        let streams = page.streams.unwrap_or_default();
        let n = streams.len();
        for info in streams {
            let meta = &info.config.metadata;
            if meta.get(META_PREFIX) != Some(&core.names.prefix) {
                continue;
            }
            if let Some(name) = meta.get(META_QUEUE) {
                out.insert(name.clone(), info);
            }
        }
        seen += n;
        if n == 0 || seen >= page.total {
            return Ok(Listing { streams: out });
        }
    }
}

/// The spec a queue's stream carries.
pub(crate) fn spec_of(info: &stream::Info) -> Result<QueueSpec, String> {
    let text = info
        .config
        .metadata
        .get(META_SPEC)
        .ok_or("its stream carries no strata.spec")?;
    serde_json::from_str(text).map_err(|e| format!("its stream's strata.spec is not valid settings ({e})"))
}

/// The queues of the table the listing lacks whose stream JetStream says is not there:
/// a stream whose leader is being elected is left out of a listing, or its info fails,
/// and is not gone.
async fn confirm_gone(shared: &Shared, listing: &Listing) -> Vec<String> {
    let absent: Vec<String> = shared
        .table()
        .keys()
        .filter(|name| !listing.streams.contains_key(*name))
        .cloned()
        .collect();
    let mut gone = Vec::new();
    for name in absent {
        if matches!(shared.stream_exists(&name).await, Ok(false)) {
            gone.push(name);
        }
    }
    gone
}

/// Adds the queues created elsewhere and drops those deleted elsewhere (`gone`), unless
/// this backend created or deleted one since the listing began (then the listing may be
/// older than the table; the next one is not).
fn apply_listing(shared: &Shared, version: u64, streams: &BTreeMap<String, stream::Info>, gone: &[String]) {
    let mut table = shared.table_mut();
    if shared.version.load(Ordering::SeqCst) != version {
        return;
    }
    for name in gone {
        if let Some(q) = table.remove(name) {
            tracing::info!(queue = %name, "the queue was deleted (seen on JetStream)");
            q.gone.cancel();
            shared.core.leases.forget_queue(name);
        }
    }
    for (name, info) in streams {
        if name.ends_with(DLQ_SUFFIX) || table.contains_key(name) {
            continue;
        }
        let dlq_name = format!("{name}{DLQ_SUFFIX}");
        let Some(dlq_info) = streams.get(&dlq_name) else {
            // Being created (the dead-letter queue's stream comes first) or half deleted.
            continue;
        };
        match (spec_of(info), spec_of(dlq_info)) {
            (Ok(spec), Ok(dlq_spec)) => {
                let (queue, dlq) = shared.handles(name, spec, dlq_spec);
                tracing::debug!(queue = %name, "a queue created on another node");
                table.insert(dlq_name, dlq);
                table.insert(name.clone(), queue);
                shared.failed_mut().remove(name);
            }
            (Err(reason), _) | (_, Err(reason)) => {
                shared.failed_mut().insert(name.clone(), reason);
            }
        }
    }
}

/// Reads a queue's figures: its stream's state, its groups' consumers, its dead letters
/// per group; then reclaims what every group is done with.
async fn refresh_queue(
    shared: &Shared,
    q: &JsQueue,
    info: &stream::Info,
    streams: &BTreeMap<String, stream::Info>,
    local: u64,
) -> anyhow::Result<()> {
    let core = &shared.core;
    let Consumers {
        listed: consumers,
        complete,
    } = list_consumers(shared, &q.stream).await?;
    let state = &info.state;
    let first_offset = state.first_sequence.saturating_sub(1);
    let old = q.figures().clone();
    let mut dead: BTreeMap<String, u64> = old.groups.iter().map(|(n, g)| (n.clone(), g.dead_lettered)).collect();
    // Dead letters per group: counted in the dead-letter queue's stream, by subject, when
    // it changed.
    if let Some(dlq_info) = streams.get(&format!("{}{DLQ_SUFFIX}", q.name)) {
        let seen = (dlq_info.state.first_sequence, dlq_info.state.last_sequence);
        if q.dead_seen() != Some(seen) {
            let prefix = format!("{}.", core.names.subject(&format!("{}{DLQ_SUFFIX}", q.name)));
            let counts = dead_letters(shared, &dlq_info.config.name, &format!("{prefix}*")).await?;
            dead = counts
                .into_iter()
                .filter_map(|(subject, n)| Some((subject.strip_prefix(&prefix)?.to_string(), n)))
                .collect();
            q.set_dead_seen(seen);
        }
    }
    let mut groups: BTreeMap<String, GroupFigures> = consumers
        .iter()
        .map(|c| {
            let d = dead.get(&c.name).copied().unwrap_or(0);
            (c.name.clone(), GroupFigures::from_consumer(c, first_offset, d))
        })
        .collect();
    // A group the listing left out is still there unless JetStream says its consumer is
    // not (removed by hand, lost with a stream made again): its last figures stand.
    let mut known: Vec<String> = Vec::new();
    for (name, figures) in &old.groups {
        if groups.contains_key(name) {
            known.push(name.clone());
        } else if !consumer_gone(shared, &q.stream, name).await {
            known.push(name.clone());
            groups.insert(name.clone(), figures.clone());
        }
    }
    q.set_figures(
        Figures {
            first_offset,
            next_offset: state.last_sequence,
            messages: state.messages,
            bytes: state.bytes,
            groups,
            replicas: Some(crate::nats::replicas_of(info)),
        },
        local,
    );
    // Space every group is done with goes, as the embedded engine drops a segment every
    // group has deleted. A group made later starts at the oldest message kept, there too.
    // Only from a listing that has every group: one left out (its consumer's leader
    // being elected after a server was lost) may be far behind the others.
    let listed: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    if !may_reclaim(complete, &listed, &known) {
        tracing::debug!(queue = %q.name, "a group's consumer was left out of the listing: nothing reclaimed");
        return Ok(());
    }
    if let Some(floor) = consumers.iter().map(|c| c.ack_floor.stream_sequence).min() {
        if floor >= state.first_sequence && state.messages > 0 {
            let stream = core.js.get_stream_no_info(&q.stream).await?;
            stream
                .purge()
                .sequence(floor + 1)
                .await
                .with_context(|| format!("reclaim below sequence {}", floor + 1))?;
        }
    }
    Ok(())
}

/// Whether JetStream says the consumer of `group` on `stream` does not exist (an answer
/// that says nothing, a timeout, is not that).
async fn consumer_gone(shared: &Shared, stream: &str, group: &str) -> bool {
    const CONSUMER_NOT_FOUND: u64 = 10014;
    let info: Result<Response<serde_json::Value>, _> = shared
        .core
        .js
        .request(format!("CONSUMER.INFO.{stream}.{group}"), &json!({}))
        .await;
    matches!(info, Ok(Response::Err { error }) if error.error_code().0 == CONSUMER_NOT_FOUND)
}

/// Whether space below the listed groups' floors may go: the listing had every consumer
/// JetStream knows, and every group this node saw before.
fn may_reclaim(complete: bool, listed: &[&str], known: &[String]) -> bool {
    complete && known.iter().all(|k| listed.contains(&k.as_str()))
}

async fn list_consumers(shared: &Shared, stream: &str) -> anyhow::Result<Consumers> {
    let mut out = Vec::new();
    let mut complete = true;
    loop {
        let page: Response<ConsumerPage> = shared
            .core
            .js
            .request(format!("CONSUMER.LIST.{stream}"), &json!({ "offset": out.len() }))
            .await
            .context("list the consumers")?;
        let page = match page {
            Response::Ok(page) => page,
            Response::Err { error } => return Err(anyhow!("list the consumers: {error}")),
        };
        let consumers = page.consumers.unwrap_or_default();
        let n = consumers.len();
        out.extend(consumers);
        if page.missing.is_some_and(|m| !m.is_empty()) {
            complete = false;
        }
        if n == 0 || out.len() >= page.total {
            // A page asked for at an offset past one left out repeats one listed (seen
            // while a consumer's leader was elected): each once, and counted once.
            let mut seen = std::collections::BTreeSet::new();
            out.retain(|c| seen.insert(c.name.clone()));
            complete &= out.len() >= page.total;
            return Ok(Consumers { listed: out, complete });
        }
    }
}

/// Messages per subject under `filter` in `stream`.
async fn dead_letters(shared: &Shared, stream: &str, filter: &str) -> anyhow::Result<HashMap<String, u64>> {
    let info: Response<SubjectsInfo> = shared
        .core
        .js
        .request(format!("STREAM.INFO.{stream}"), &json!({ "subjects_filter": filter }))
        .await
        .context("count the dead letters")?;
    match info {
        Response::Ok(info) => Ok(info.state.subjects.unwrap_or_default()),
        Response::Err { error } => Err(anyhow!("count the dead letters: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reclaimed_while_a_group_is_left_out_of_the_listing() {
        let known = vec!["fast".to_string(), "slow".to_string()];
        assert!(may_reclaim(true, &["fast", "slow"], &known));
        assert!(
            may_reclaim(true, &["fast", "slow", "new"], &known),
            "a group made since"
        );
        // JetStream said it left one out, or a group seen before is not there.
        assert!(!may_reclaim(false, &["fast", "slow"], &known));
        assert!(!may_reclaim(true, &["fast"], &known));
        // The listing's `missing` is read (nats-server's answer while a consumer's leader
        // is elected).
        let page: ConsumerPage =
            serde_json::from_str(r#"{"total": 2, "offset": 0, "limit": 256, "consumers": [], "missing": ["slow"]}"#)
                .unwrap();
        assert_eq!((page.total, page.missing), (2, Some(vec!["slow".to_string()])));
    }
}
