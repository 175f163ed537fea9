//! Reading many keys of a KV bucket: the keys under a subject filter, as the stream's
//! leader knows them ([`subjects`], for listing pages, which must see every
//! acknowledged write), and every entry under a filter in one pass ([`scan`], for the
//! sweep at open, which reads the whole bucket).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{push::OrderedConfig, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, stream::Stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use strata_store::StoreError;

use super::{keys, nats_err};

/// How long a scan waits for its next message before giving up.
const SCAN_STALL: Duration = Duration::from_secs(10);

/// Every KV key under `filter` in `stream` (a KV bucket whose subjects start with
/// `prefix`), deleted ones included (a delete leaves a marker message): a stream info
/// request to the stream's leader. Past 100,000 keys the answer comes in pages, offsets
/// into the server's map of subjects: keys added while they are taken may make a page
/// repeat a key (dropped by [`candidates`]) or miss one.
pub(crate) async fn subjects(
    js: &jetstream::Context,
    stream: &Stream,
    prefix: &str,
    filter: &str,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    loop {
        let request = serde_json::json!({ "subjects_filter": filter, "offset": out.len() });
        let answer: Response<SubjectsPage> = js
            .request(format!("STREAM.INFO.{}", stream.cached_info().config.name), &request)
            .await
            .map_err(|e| nats_err("list keys", e))?;
        let page = match answer {
            Response::Ok(page) => page,
            Response::Err { error } => return Err(nats_err("list keys", error)),
        };
        let subjects = page.state.subjects.unwrap_or_default();
        let got = subjects.len();
        out.extend(
            subjects
                .into_keys()
                .filter_map(|s| s.strip_prefix(prefix).map(str::to_string)),
        );
        if got == 0 || out.len() >= page.total {
            return Ok(out);
        }
    }
}

/// The part of a stream info answer a key listing reads.
#[derive(Deserialize)]
struct SubjectsPage {
    state: SubjectsState,
    /// How many subjects match, over all pages (absent: no subjects).
    #[serde(default)]
    total: usize,
}

#[derive(Deserialize)]
struct SubjectsState {
    subjects: Option<HashMap<String, u64>>,
}

/// Of the KV keys `kv_keys` of one namespace, those whose key starts with `prefix` and
/// sorts after `after`, as (key, KV key), in byte order of the keys.
pub(crate) fn candidates(kv_keys: Vec<String>, prefix: &str, after: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kv_keys
        .into_iter()
        .filter_map(|kv_key| {
            let (_, key) = keys::split(&kv_key)?;
            let wanted = key.starts_with(prefix) && after.is_none_or(|a| key.as_str() > a);
            wanted.then_some((key, kv_key))
        })
        .collect();
    // The stream info's pages are offsets into the server's map of subjects: keys
    // added between two pages may come again.
    out.sort();
    out.dedup();
    out
}

/// One live entry found by [`scan`].
pub(crate) struct Scanned {
    pub value: Bytes,
}

/// Calls `each` with the last message of every subject under `filter` in `stream` that
/// is not a delete or purge marker: one ordered consumer, deleted when done.
pub(crate) async fn scan(
    js: &jetstream::Context,
    stream: &Stream,
    filter: String,
    mut each: impl FnMut(Scanned),
) -> Result<(), StoreError> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            description: Some("strata store scan".into()),
            filter_subject: filter,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err("start a scan", e))?;
    let name = consumer.cached_info().name.clone();
    let pending = consumer.cached_info().num_pending;
    let scanned = async {
        if pending == 0 {
            return Ok(());
        }
        let mut messages = consumer.messages().await.map_err(|e| nats_err("start a scan", e))?;
        loop {
            let message = match tokio::time::timeout(SCAN_STALL, messages.next()).await {
                Err(_) => return Err(StoreError::Unavailable("JetStream: a scan stalled".into())),
                Ok(None) => return Err(StoreError::Unavailable("JetStream: a scan ended early".into())),
                Ok(Some(m)) => m.map_err(|e| nats_err("scan", e))?,
            };
            let pending = message.info().map_err(|e| nats_err("scan", e))?.pending;
            let marker = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if !marker {
                each(Scanned {
                    value: message.payload.clone(),
                });
            }
            if pending == 0 {
                return Ok(());
            }
        }
    }
    .await;
    // A stream takes a limited number of consumers: do not leave this one to time out.
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(
            consumer = name,
            "could not delete a scan's consumer (it times out): {e}"
        );
    }
    scanned
}

#[cfg(test)]
mod tests {
    use super::candidates;
    use crate::state::keys::kv_key;

    fn keys(of: &[&str], prefix: &str, after: Option<&str>) -> Vec<String> {
        let kv_keys = of.iter().map(|k| kv_key("app/ns", k)).collect();
        candidates(kv_keys, prefix, after).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn candidates_are_the_keys_after_the_cursor_under_the_prefix_in_byte_order() {
        let of = ["u/3", "u/1", "v", "u", "u/2", "t/1", "u/0"];
        assert_eq!(keys(&of, "u/", None), ["u/0", "u/1", "u/2", "u/3"]);
        assert_eq!(keys(&of, "u/", Some("u/1")), ["u/2", "u/3"]);
        assert_eq!(keys(&of, "u/", Some("a")), ["u/0", "u/1", "u/2", "u/3"]);
        assert!(keys(&of, "u/", Some("v")).is_empty());
        assert_eq!(keys(&of, "", None).len(), of.len());
        assert_eq!(keys(&["a", "b", "a"], "", None), ["a", "b"]);
        // Byte order of the keys, not of their encodings.
        assert_eq!(
            keys(&["b", "a=", "a.", "é", "a"], "", None),
            ["a", "a.", "a=", "b", "é"]
        );
        // A KV key this store did not write is no candidate.
        assert_eq!(
            candidates(vec!["not a key".into()], "", None),
            Vec::<(String, String)>::new()
        );
    }
}
