//! The store's one background task: turns the watches of the two KV buckets into
//! [`Change`]s for the subscribers, and removes replaced blob bodies once readers had
//! their grace.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::kv::{self, Operation, Watch};
use futures_util::StreamExt;
use strata_store::{Change, ChangeKind};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::blobs::Objects;
use super::keys;

/// Wait before watching a bucket again after its watch failed.
const REWATCH_PAUSE: Duration = Duration::from_millis(500);

/// One bucket's watch and where it got to.
pub(crate) struct Watched {
    pub store: kv::Store,
    pub watch: Watch,
    pub kind: ChangeKind,
    /// The last revision handed out.
    pub last: u64,
}

/// A feed shared by every store opened with the same name: each change goes to one of
/// them (a durable pull consumer per bucket), and is acknowledged once handed on.
pub(crate) struct Shared {
    pub values: pull::Stream,
    pub metas: pull::Stream,
    pub values_prefix: String,
    pub metas_prefix: String,
}

/// Where the changes come from.
pub(crate) enum Source {
    /// Every change, to every store (watches).
    Watch { values: Box<Watched>, metas: Box<Watched> },
    /// Each change to one store of those sharing the feed.
    Shared(Box<Shared>),
}

pub(crate) struct Feed {
    pub source: Source,
    pub changes: broadcast::Sender<Change>,
    pub objects: Objects,
    /// Objects of replaced or deleted blobs, to remove after `grace`.
    pub doomed: mpsc::UnboundedReceiver<String>,
    pub grace: Duration,
    pub cancel: CancellationToken,
}

impl Feed {
    pub async fn run(mut self) {
        let mut due: VecDeque<(Instant, String)> = VecDeque::new();
        loop {
            let next_due = due.front().map(|(at, _)| *at);
            let next = async {
                match &mut self.source {
                    Source::Watch { values, metas } => tokio::select! {
                        entry = values.watch.next() => values.handle(entry, &self.changes, &self.cancel).await,
                        entry = metas.watch.next() => metas.handle(entry, &self.changes, &self.cancel).await,
                    },
                    Source::Shared(shared) => tokio::select! {
                        message = shared.values.next() => {
                            handle_shared(message, &shared.values_prefix, ChangeKind::Value, &self.changes).await
                        }
                        message = shared.metas.next() => {
                            handle_shared(message, &shared.metas_prefix, ChangeKind::Blob, &self.changes).await
                        }
                    },
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                () = next => {}
                Some(object) = self.doomed.recv() => due.push_back((Instant::now() + self.grace, object)),
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let (_, object) = due.pop_front().expect("a due removal");
                    if let Err(e) = self.objects.remove(&object).await {
                        tracing::warn!(object, "could not remove a replaced blob body (the sweep at open will): {e}");
                    }
                }
            }
        }
    }
}

/// One message of a shared feed: handed on as a change once the store has a subscriber,
/// then acknowledged (so that no other store of the feed gets it).
async fn handle_shared(
    message: Option<Result<jetstream::Message, pull::MessagesError>>,
    prefix: &str,
    kind: ChangeKind,
    changes: &broadcast::Sender<Change>,
) {
    let message = match message {
        Some(Ok(message)) => message,
        Some(Err(e)) => {
            tracing::debug!("the store's shared change feed: {e}");
            tokio::time::sleep(REWATCH_PAUSE).await;
            return;
        }
        // The consumer's stream ended: nothing more until the store is opened again.
        None => return std::future::pending().await,
    };
    let version = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    let deleted = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
    if let Some((ns, key)) = message.subject.as_str().strip_prefix(prefix).and_then(keys::split) {
        // Held (unacknowledged) until someone listens: a change is never handed to no one.
        while changes.receiver_count() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = changes.send(Change {
            ns,
            key,
            kind,
            version,
            deleted,
        });
    }
    if let Err(e) = message.ack().await {
        tracing::debug!("could not acknowledge a change of the shared feed: {e}");
    }
}

impl Watched {
    async fn handle(
        &mut self,
        entry: Option<Result<kv::Entry, kv::WatcherError>>,
        changes: &broadcast::Sender<Change>,
        cancel: &CancellationToken,
    ) {
        match entry {
            Some(Ok(entry)) => {
                self.last = entry.revision;
                let Some((ns, key)) = keys::split(&entry.key) else {
                    tracing::debug!(key = entry.key, "a key the store did not write; not in the change feed");
                    return;
                };
                let _ = changes.send(Change {
                    ns,
                    key,
                    kind: self.kind,
                    version: entry.revision,
                    deleted: entry.operation != Operation::Put,
                });
            }
            Some(Err(e)) => tracing::debug!("the store's change watch: {e}"),
            None => {
                // The watch ended: watch again from the next revision, until it works.
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(REWATCH_PAUSE) => {}
                    }
                    match self.store.watch_all_from_revision(self.last + 1).await {
                        Ok(watch) => {
                            self.watch = watch;
                            return;
                        }
                        Err(e) => tracing::warn!(
                            bucket = self.store.name,
                            "could not watch the store's changes again: {e}"
                        ),
                    }
                }
            }
        }
    }
}
