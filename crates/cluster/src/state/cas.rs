//! Conditional writes on one KV key: read what the key holds from the stream leader,
//! check the write's condition against it (the embedded store's rule), then write
//! expecting the revision read, and again when another writer came first.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use strata_store::{Cond, StoreError};

use super::nats_err;

/// Tries of a conditional write that other writers keep slipping ahead of.
const WRITE_ATTEMPTS: usize = 64;
/// Wait before trying again a write a new stream leader was not ready to check.
const NOT_READY_PAUSE: Duration = Duration::from_millis(50);

/// How long a write keeps going again while its stream has no listener on this client's
/// server (see [`no_responders`]).
const NO_RESPONDERS_FOR: Duration = Duration::from_secs(5);

/// Whether a write was answered "no responders" (async-nats: `StreamNotFound`): no
/// stream listened on its subject at the server this client is connected to. JetStream's
/// interest in a new stream's subjects reaches the other servers of a cluster a moment
/// after the stream is made, so a store's first write can meet it (CI saw it on a
/// three-server cluster). Nothing was stored, so the write may simply go again.
pub(crate) fn no_responders(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if let Some(publish) = cause.downcast_ref::<PublishError>() {
            if publish.kind() == PublishErrorKind::StreamNotFound {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// Runs `write` again while it meets no responders ([`no_responders`]), for up to
/// [`NO_RESPONDERS_FOR`]; answers its last result.
pub(crate) async fn heard<T, E, F, Fut>(mut write: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let deadline = Instant::now() + NO_RESPONDERS_FOR;
    loop {
        match write().await {
            Err(e) if no_responders(&e) && Instant::now() < deadline => tokio::time::sleep(NOT_READY_PAUSE).await,
            done => return done,
        }
    }
}

/// What a key holds, as read from the stream leader.
pub(crate) enum Found {
    /// No message for it.
    Absent,
    /// A delete or purge marker, at this revision.
    Deleted(u64),
    Live(kv::Entry),
}

impl Found {
    /// The live version, if any (what conditions are checked against).
    pub fn version(&self) -> Option<u64> {
        match self {
            Found::Live(e) => Some(e.revision),
            _ => None,
        }
    }

    /// The revision a write over it must expect (0: no message).
    fn last(&self) -> u64 {
        match self {
            Found::Absent => 0,
            Found::Deleted(rev) => *rev,
            Found::Live(e) => e.revision,
        }
    }
}

pub(crate) async fn read(bucket: &kv::Store, key: &str) -> Result<Found, StoreError> {
    match bucket.entry(key).await {
        Ok(None) => Ok(Found::Absent),
        Ok(Some(e)) if e.operation == Operation::Put => Ok(Found::Live(e)),
        Ok(Some(e)) => Ok(Found::Deleted(e.revision)),
        Err(e) => Err(nats_err("read", e)),
    }
}

/// The embedded store's rule: does `cond` hold of a key at version `current`?
pub(crate) fn check(cond: Cond, current: Option<u64>) -> Result<(), StoreError> {
    let ok = match cond {
        Cond::Any => true,
        Cond::Absent => current.is_none(),
        Cond::Version(v) => current == Some(v),
    };
    match ok {
        true => Ok(()),
        false => Err(StoreError::Conflict { current }),
    }
}

/// Writes `value` under `key` if `cond` holds of what the key holds: reads it, then
/// writes expecting the revision read; when another write slipped in between, again.
/// Answers the new revision and what it replaced.
pub(crate) async fn write(bucket: &kv::Store, key: &str, value: Bytes, cond: Cond) -> Result<(u64, Found), StoreError> {
    for _ in 0..WRITE_ATTEMPTS {
        let found = read(bucket, key).await?;
        check(cond, found.version())?;
        match bucket.update(key, value.clone(), found.last()).await {
            Ok(revision) => return Ok((revision, found)),
            Err(e) => refused(e, "write").await?,
        }
    }
    Err(contended())
}

/// Deletes `key` if `cond` holds, as [`write`]; answers the entry deleted (None: there
/// was none).
pub(crate) async fn delete(bucket: &kv::Store, key: &str, cond: Cond) -> Result<Option<kv::Entry>, StoreError> {
    for _ in 0..WRITE_ATTEMPTS {
        let found = read(bucket, key).await?;
        check(cond, found.version())?;
        let Found::Live(entry) = found else {
            return Ok(None);
        };
        match bucket.delete_expect_revision(key, Some(entry.revision)).await {
            Ok(()) => return Ok(Some(entry)),
            Err(e) => refused(e, "delete").await?,
        }
    }
    Err(contended())
}

/// After a write expecting a revision failed: `Ok` to read the key again and retry
/// (another write came first, or the stream's new leader was not ready to check),
/// else the error.
pub(crate) async fn refused(e: kv::UpdateError, what: &str) -> Result<(), StoreError> {
    if e.kind() == UpdateErrorKind::WrongLastRevision {
        return Ok(());
    }
    // Nothing was stored: the stream is not listening at this server yet (bounded by
    // the caller's tries, 64 x NOT_READY_PAUSE).
    if no_responders(&e) {
        tokio::time::sleep(NOT_READY_PAUSE).await;
        return Ok(());
    }
    // Newer servers answer codes that async-nats does not map to WrongLastRevision.
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        if let Some(js) = cause.downcast_ref::<jetstream::Error>() {
            let code = js.error_code();
            if code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE || code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT {
                return Ok(());
            }
            if code == ErrorCode::STREAM_EXPECTED_LAST_SEQ_PER_SUBJECT_NOT_READY {
                tokio::time::sleep(NOT_READY_PAUSE).await;
                return Ok(());
            }
        }
        source = cause.source();
    }
    Err(nats_err(what, e))
}

fn contended() -> StoreError {
    StoreError::Unavailable(format!(
        "JetStream: the key changed under {WRITE_ATTEMPTS} tries of this write"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_testkit::nats::{nats_server, NatsCluster};

    /// What a real server answers a write to a subject no stream listens on, through
    /// each kind of write the store makes, is what [`no_responders`] looks for; and a
    /// write [`heard`] runs goes through once the stream appears.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_no_stream_hears_yet_goes_again_until_one_does() {
        if !strata_testkit::needs("a_write_no_stream_hears_yet_goes_again_until_one_does", nats_server()) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cluster = tokio::task::block_in_place(|| NatsCluster::start(dir.path(), 1));
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(cluster.urls())
            .await
            .unwrap();
        let js = jetstream::new(client);
        let config = kv::Config {
            bucket: "heard".into(),
            ..Default::default()
        };
        let bucket = loop {
            // JetStream elects its meta leader a moment after the server accepts clients.
            match js.create_key_value(config.clone()).await {
                Ok(bucket) => break bucket,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        js.delete_stream("KV_heard").await.unwrap();

        let put = bucket.put("k", Bytes::from_static(b"v")).await.unwrap_err();
        assert!(no_responders(&put), "{put:?}");
        let update = bucket.update("k", Bytes::from_static(b"v"), 0).await.unwrap_err();
        assert!(no_responders(&update), "{update:?}");
        let publish = js.publish("heard.x", Bytes::new()).await.unwrap().await.unwrap_err();
        assert!(no_responders(&publish), "{publish:?}");
        // A conditional write that meets no responders is tried again, not failed.
        refused(update, "write").await.unwrap();

        let started = Instant::now();
        let make = {
            let js = js.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                js.create_key_value(config).await.unwrap();
            })
        };
        let revision = heard(|| bucket.put("k", Bytes::from_static(b"v"))).await.unwrap();
        make.await.unwrap();
        assert_eq!(revision, 1);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(bucket.get("k").await.unwrap().unwrap(), "v");
    }
}
