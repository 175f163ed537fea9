//! The scheduler's lease: one key in the lease bucket, whose messages live
//! `LEASE_TTL` (3 s). A node takes it with a create (which succeeds only when no one
//! holds it), keeps it with an update on the revision it holds (compare-and-set) every
//! second, and loses it when an update fails. When the holder dies its last renewal
//! ages out and the next create elsewhere succeeds: at most one holder at a time, by
//! JetStream's per-subject sequence check, with no election of our own.

use std::time::Duration;

use async_nats::jetstream::kv;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const KEY: &str = "scheduler";
const RENEW: Duration = Duration::from_secs(1);

/// Tries for the lease until `shutdown`; `held` is true while this node holds it.
/// On shutdown a held lease is released at once, so another node takes over without
/// waiting for it to age out.
pub async fn run(store: kv::Store, me: String, held: watch::Sender<bool>, shutdown: CancellationToken) {
    let mut revision: Option<u64> = None;
    loop {
        revision = match revision {
            Some(rev) => match store.update(KEY, me.clone().into(), rev).await {
                Ok(next) => Some(next),
                Err(e) => {
                    tracing::warn!("lost the scheduler's lease: {e}");
                    None
                }
            },
            None => match store.create(KEY, me.clone().into()).await {
                Ok(rev) => {
                    tracing::info!(node = me, "took the scheduler's lease");
                    Some(rev)
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => None,
                Err(e) => {
                    tracing::debug!("take the scheduler's lease: {e}");
                    None
                }
            },
        };
        held.send_if_modified(|h| {
            let now = revision.is_some();
            std::mem::replace(h, now) != now
        });
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(rev) = revision {
        let _ = store.delete_expect_revision(KEY, Some(rev)).await;
    }
    held.send_replace(false);
}

/// Who holds the lease now, if anyone.
pub async fn holder(store: &kv::Store) -> Option<String> {
    let value = store.get(KEY).await.ok()??;
    Some(String::from_utf8_lossy(&value).into_owned())
}
