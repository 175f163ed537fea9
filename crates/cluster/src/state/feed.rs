//! The store's one background task: turns the watches of the two KV buckets into
//! [`Change`]s for the subscribers, and removes replaced blob bodies once readers had
//! their grace.

use std::collections::VecDeque;
use std::time::Duration;

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

pub(crate) struct Feed {
    pub values: Watched,
    pub metas: Watched,
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
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                entry = self.values.watch.next() => self.values.handle(entry, &self.changes, &self.cancel).await,
                entry = self.metas.watch.next() => self.metas.handle(entry, &self.changes, &self.cancel).await,
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
