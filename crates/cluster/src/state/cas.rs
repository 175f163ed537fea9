//! Conditional writes on one KV key: read what the key holds from the stream leader,
//! check the write's condition against it (the embedded store's rule), then write
//! expecting the revision read, and again when another writer came first.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use strata_store::{Cond, StoreError};

use super::nats_err;

/// Tries of a conditional write that other writers keep slipping ahead of.
const WRITE_ATTEMPTS: usize = 64;
/// Wait before trying again a write a new stream leader was not ready to check.
const NOT_READY_PAUSE: Duration = Duration::from_millis(50);

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
    StoreError::Io(format!(
        "JetStream: the key changed under {WRITE_ATTEMPTS} tries of this write; try again"
    ))
}
