//! The durable message queue: named queues, each an append-only segmented log with
//! consumer groups, leases, dead letters, dedupe and replies. No HTTP in here; the node
//! API (crate `strata-api`) maps it to routes. Guarantees are in `docs/queues.md`.
//!
//! Layout (each module depends only on those listed after it, and on this root for
//! [`QueueError`]):
//! - [`QueueBackend`] / [`QueueHandle`] (`backend`): the queue contract as traits, which
//!   [`Queues`] and [`Queue`] implement; the node API and the node reach queues only
//!   through them, so a second backend (JetStream) serves the same API.
//! - [`Queues`] (here): the registry of a node's queues under one directory, and the
//!   reply inboxes (publish-and-wait); [`QueuesConfig`]: which disk and tuning.
//!   Every file and directory operation goes through a [`strata_os::disk::Disk`]: the
//!   real file system by default ([`OsDisk`], the type parameter's default, so no call is
//!   dynamic), or in tests one that cuts the power and fails syncs
//!   (`tests/power_cut.rs`).
//! - `fetch`: the read path, [`Queue::fetch`]: leasing offsets to a group, checking what
//!   is read, long polls, moving messages to the dead-letter queue.
//! - [`Queue`] (`queue`): open (recovery), publish, ack, nack, stats, close.
//! - `read`: reading leased records from memory or from the segments (one read per run,
//!   page-cache hits on the caller's thread, the rest on the blocking pool).
//! - `leader`: who commits and when: the pipe of waiting writes, a publisher leading in
//!   place or the queue's own thread, interval syncs, the flush at close.
//! - `commit`: the `Writer` and one group commit: dedupe, offsets, one `pwrite` and one
//!   sync per batch, segment roll, then visible and answered.
//! - `retention`: segments every group is done with, or past the retention limits,
//!   dropped after a commit.
//! - `compact`: `groups.log` rewritten as a snapshot of the groups when it grows.
//! - `index`: what publishers, fetchers and the writer share: where each offset's record
//!   is, the recent writes kept in memory, the groups, behind one mutex.
//! - `group`: one consumer group's position, leases and redeliveries.
//! - `groups_log`: the `groups.log` file, the groups' durable state as a log of
//!   operations: its format, replay and opening.
//! - `segment`: preallocated segment files; recovery at open; reads.
//! - `record`: the on-disk record of one message (length, CRC-32, fields).
//!
//! Invariants: a message is visible to consumers only once it is durable under the
//! queue's fsync policy, and a publish is answered only then. A delete is done (and in a
//! `groups.log` snapshot) from the commit that made it durable. A new file or directory
//! is answered for only once its directory is synced. After a failed write or sync
//! (including a failed sync at `fsync: interval`, or of the directory after a
//! `groups.log` rewrite) the queue refuses every write until it is reopened, saying why:
//! a failed `fsync` may have dropped the data it was to cover, and a later one would
//! succeed without it.

mod backend;
mod commit;
mod compact;
mod fetch;
mod group;
mod groups_log;
mod index;
mod leader;
mod queue;
mod read;
mod record;
mod retention;
mod segment;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_os::disk::{Disk, DiskFile, Open, OsDisk};
use tokio::sync::oneshot;

pub use backend::{Changed, QueueBackend, QueueHandle};
pub use commit::Published;
pub use fetch::{FetchOptions, Message};
pub use group::GroupStats;
pub use queue::{Queue, QueueStats};
pub use record::{NewMessage, MAX_ATTR};
pub use segment::Corruption;

/// Suffix of a queue's dead-letter queue.
pub const DLQ_SUFFIX: &str = ".dlq";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("no queue named {0:?}")]
    UnknownQueue(String),
    #[error("no consumer group named {0:?} (a group is created by its first fetch)")]
    UnknownGroup(String),
    #[error("message {index} is {size} bytes, over the queue's max_message_bytes ({limit})")]
    TooLarge { index: usize, size: u64, limit: u64 },
    #[error("{0}")]
    BadInput(String),
    #[error("no publisher waits on {0:?} any more (it gave up or never existed)")]
    NoInbox(String),
    #[error("no reply within {0} ms")]
    NoReply(u64),
    #[error("a duplicate of the message at offset {0} (same dedupe id within the window): its reply went to the first publisher")]
    Duplicate(u64),
    #[error("the queue is closed")]
    Closed,
    /// The queue's files could not be opened at start: it serves nothing until repaired;
    /// every other queue works.
    #[error("queue {queue:?} is out of service: {reason} (the node's log has the details; move its directory aside to start it empty)")]
    Failed { queue: String, reason: String },
    #[error("disk: {0}")]
    Io(String),
}

impl QueueError {
    /// A disk error while doing `what` (a verb phrase: "read groups.log").
    pub(crate) fn io(what: &str, e: std::io::Error) -> QueueError {
        QueueError::Io(format!("{what}: {e}"))
    }
}

/// A reply handed to a publisher waiting in [`Queues::request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub correlation_id: Option<String>,
    pub payload: Bytes,
}

/// Where a reply went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replied {
    /// Handed to the publisher waiting on the inbox.
    Inbox,
    /// Published to a queue, at this offset.
    Queue(u64),
}

/// How [`Queues::open_with`] keeps the queues: on which disk, and what tests tune lower.
#[derive(Debug, Clone)]
pub struct QueuesConfig<D: Disk = OsDisk> {
    /// Where the files are: the real file system ([`OsDisk`]), or in tests one that fails
    /// on demand ([`strata_os::disk::FaultDisk`]).
    pub disk: D,
    /// `groups.log` is rewritten as a snapshot of the groups past this many bytes (and
    /// twice its last snapshot). 4 MiB.
    pub compact_bytes: u64,
}

impl<D: Disk> QueuesConfig<D> {
    /// The default settings, on `disk`.
    pub fn on(disk: D) -> QueuesConfig<D> {
        QueuesConfig {
            disk,
            compact_bytes: compact::COMPACT_BYTES,
        }
    }
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig::on(OsDisk)
    }
}

/// A node's queues, each in `dir/NAME`, with its dead-letter queue in `dir/NAME.dlq`, on
/// the disk `D` (the real file system unless a test gives another).
pub struct Queues<D: Disk = OsDisk> {
    dir: PathBuf,
    config: QueuesConfig<D>,
    queues: RwLock<BTreeMap<String, Arc<Queue<D>>>>,
    inboxes: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    next_inbox: AtomicU64,
    /// Held across "exists?" and the open, so that two creates of one queue do not both
    /// open its directory.
    creating: Mutex<()>,
    /// Makes inbox ids unguessable across restarts of the node.
    inbox_prefix: String,
    /// Queues whose files could not be opened, with the reason: out of service.
    failed: RwLock<BTreeMap<String, String>>,
}

fn spec_path(dir: &Path) -> PathBuf {
    dir.join("queue.json")
}

impl Queues {
    /// Opens every queue stored under `dir` and creates the `declared` ones that are not.
    /// A declared spec replaces a stored one. Blocking: recovery reads the segments.
    pub fn open(dir: &Path, declared: &BTreeMap<String, QueueSpec>) -> Result<Queues, QueueError> {
        Queues::open_with(dir, declared, QueuesConfig::default())
    }
}

impl<D: Disk> Queues<D> {
    /// [`Queues::open`] with settings: on another disk (tests), or tuned.
    pub fn open_with(
        dir: &Path,
        declared: &BTreeMap<String, QueueSpec>,
        config: QueuesConfig<D>,
    ) -> Result<Queues<D>, QueueError> {
        let disk = config.disk.clone();
        create_dir_durably(&disk, dir).map_err(|e| QueueError::Io(format!("create {}: {e}", dir.display())))?;
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let queues = Queues {
            dir: dir.to_path_buf(),
            config,
            queues: RwLock::new(BTreeMap::new()),
            inboxes: Mutex::new(HashMap::new()),
            next_inbox: AtomicU64::new(1),
            creating: Mutex::new(()),
            inbox_prefix: format!("{pid:x}{nanos:x}"),
            failed: RwLock::new(BTreeMap::new()),
        };
        let mut stored = BTreeMap::new();
        for name in disk
            .list(dir)
            .map_err(|e| QueueError::Io(format!("list {}: {e}", dir.display())))?
        {
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            if name.ends_with(DLQ_SUFFIX) || !strata_manifest::is_queue_name(&name) {
                continue;
            }
            let spec = match disk.read(&spec_path(&dir.join(&name))) {
                Ok(text) => {
                    serde_json::from_slice(&text).map_err(|e| format!("its queue.json is not valid settings ({e})"))
                }
                Err(_) => Ok(QueueSpec::default()),
            };
            stored.insert(name, spec);
        }
        for (name, spec) in declared {
            stored.insert(name.clone(), Ok(spec.clone()));
        }
        // One damaged queue never stops the others: it is reported and out of service.
        for (name, spec) in stored {
            let opened = spec.and_then(|spec| queues.create(&name, spec).map(drop).map_err(|e| e.to_string()));
            if let Err(reason) = opened {
                tracing::error!(queue = %name, "the queue could not be opened and is out of service: {reason}");
                queues
                    .failed
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name, reason);
            }
        }
        // Queue directories an earlier run created, then crashed before syncing their names.
        disk.sync_dir(dir)
            .map_err(|e| QueueError::Io(format!("sync {}: {e}", dir.display())))?;
        Ok(queues)
    }

    /// Creates a queue (and its dead-letter queue), or returns the existing one.
    /// `true` when it was created. Blocking: creates files.
    pub fn create(&self, name: &str, spec: QueueSpec) -> Result<(Arc<Queue<D>>, bool), QueueError> {
        strata_manifest::check_queue(name, &spec).map_err(|e| QueueError::BadInput(e.to_string()))?;
        if let Some(q) = self.read().get(name) {
            return Ok((q.clone(), false));
        }
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = self.read().get(name) {
            return Ok((q.clone(), false));
        }
        let disk = &self.config.disk;
        let dir = self.dir.join(name);
        let dlq_name = format!("{name}{DLQ_SUFFIX}");
        let dlq_dir = self.dir.join(&dlq_name);
        for d in [&dir, &dlq_dir] {
            create_dir_durably(disk, d).map_err(|e| QueueError::Io(format!("create {}: {e}", d.display())))?;
        }
        let text = serde_json::to_vec_pretty(&spec).expect("a spec serializes");
        write_atomic(disk, &spec_path(&dir), &text).map_err(|e| QueueError::Io(format!("write queue.json: {e}")))?;
        let dlq_spec = QueueSpec {
            max_deliveries: 0,
            retention: Default::default(),
            ..spec.clone()
        };
        let dlq = Arc::new(Queue::open(&dlq_name, dlq_spec, &dlq_dir, None, &self.config)?);
        let queue = Arc::new(Queue::open(name, spec, &dir, Some(dlq.clone()), &self.config)?);
        let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queues.get(name) {
            return Ok((q.clone(), false));
        }
        queues.insert(name.to_string(), queue.clone());
        queues.insert(dlq_name, dlq);
        Ok((queue, true))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Queue<D>>>> {
        self.queues.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Result<Arc<Queue<D>>, QueueError> {
        if let Some(q) = self.read().get(name) {
            return Ok(q.clone());
        }
        match self.failed.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            Some(reason) => Err(QueueError::Failed {
                queue: name.to_string(),
                reason: reason.clone(),
            }),
            None => Err(QueueError::UnknownQueue(name.to_string())),
        }
    }

    /// Queues that could not be opened, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        let failed = self.failed.read().unwrap_or_else(|e| e.into_inner());
        failed.iter().map(|(n, r)| (n.clone(), r.clone())).collect()
    }

    pub fn list(&self) -> Vec<Arc<Queue<D>>> {
        self.read().values().cloned().collect()
    }

    /// Publishes `message` with a fresh inbox as its reply-to and waits up to `deadline`
    /// for the reply. The message stays published if no reply comes.
    pub async fn request(
        &self,
        queue: &str,
        mut message: NewMessage,
        deadline: Duration,
    ) -> Result<(Published, Reply), QueueError> {
        let q = self.get(queue)?;
        let n = self.next_inbox.fetch_add(1, Ordering::Relaxed);
        let inbox = format!("inbox:{}-{n}", self.inbox_prefix);
        if message.correlation_id.is_none() {
            message.correlation_id = Some(format!("{}-{n}", self.inbox_prefix));
        }
        message.reply_to = Some(inbox.clone());
        let (tx, rx) = oneshot::channel();
        self.inboxes().insert(inbox.clone(), tx);
        // Removed however this ends, a dropped caller (client gone) included.
        let _inbox = InboxGuard {
            queues: self,
            inbox: &inbox,
        };
        let result = async {
            let published = q.publish(vec![message]).await?.remove(0);
            if published.duplicate {
                return Err(QueueError::Duplicate(published.offset));
            }
            match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(reply)) => Ok((published, reply)),
                _ => Err(QueueError::NoReply(deadline.as_millis() as u64)),
            }
        }
        .await;
        result
    }

    fn inboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Reply>>> {
        self.inboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a reply to `reply_to`: `inbox:ID` (a waiting publisher) or `queue:NAME`
    /// (published durably there with the correlation id).
    pub async fn reply(&self, reply_to: &str, reply: Reply) -> Result<Replied, QueueError> {
        if reply_to.starts_with("inbox:") {
            let waiter = self.inboxes().remove(reply_to);
            return match waiter.map(|tx| tx.send(reply)) {
                Some(Ok(())) => Ok(Replied::Inbox),
                _ => Err(QueueError::NoInbox(reply_to.to_string())),
            };
        }
        if let Some(name) = reply_to.strip_prefix("queue:") {
            let q = self.get(name)?;
            let published = q
                .publish(vec![NewMessage {
                    payload: reply.payload,
                    dedupe_id: None,
                    reply_to: None,
                    correlation_id: reply.correlation_id,
                }])
                .await?;
            return Ok(Replied::Queue(published[0].offset));
        }
        Err(QueueError::BadInput(format!(
            "reply_to {reply_to:?} is neither inbox:ID nor queue:NAME"
        )))
    }

    /// Stops every writer after what it was given is written and synced.
    pub fn close(&self) {
        for q in self.list() {
            q.close();
        }
    }
}

struct InboxGuard<'a, D: Disk> {
    queues: &'a Queues<D>,
    inbox: &'a str,
}

impl<D: Disk> Drop for InboxGuard<'_, D> {
    fn drop(&mut self) {
        self.queues.inboxes().remove(self.inbox);
    }
}

fn write_atomic<D: Disk>(disk: &D, path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = disk.open(&tmp, Open::Truncate)?;
    f.write_all_at(data, 0)?;
    f.sync_data()?;
    disk.rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        disk.sync_dir(dir)?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents so that they survive a power cut: the parent
/// of each new directory is synced.
fn create_dir_durably<D: Disk>(disk: &D, dir: &Path) -> std::io::Result<()> {
    let missing = dir.ancestors().take_while(|d| disk.list(d).is_err()).count();
    disk.create_dir_all(dir)?;
    for parent in dir.ancestors().skip(1).take(missing) {
        disk.sync_dir(parent)?;
    }
    Ok(())
}
