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
//!   reply inboxes (publish-and-wait); [`QueuesConfig`]: which disk, tuning and bounds.
//! - `delete`: [`Queues::delete`], a queue and its dead-letter queue removed durably
//!   (renamed to a tombstone, then removed; tombstones a crash left are cleared at open).
//! - `limits`: the node-wide bounds (`queue_limits` in the manifest): the disk budget
//!   every segment file is counted against before it is made.
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
//! queue's fsync policy, and a publish is answered only then. A publish refused because
//! no new segment could be made (out of file descriptors, disk full, the disk bound)
//! took no offset and stored nothing; the queue stays in service. A delete is done (and in a
//! `groups.log` snapshot) from the commit that made it durable. A new file or directory
//! is answered for only once its directory is synced. After a failed write or sync
//! (including a failed sync at `fsync: interval`, or of the directory after a
//! `groups.log` rewrite) the queue refuses every write until it is reopened, saying why:
//! a failed `fsync` may have dropped the data it was to cover, and a later one would
//! succeed without it.

mod backend;
mod commit;
mod compact;
mod delete;
mod fetch;
mod group;
mod groups_log;
mod index;
mod leader;
mod limits;
mod queue;
mod read;
mod record;
pub mod repair;
mod replicas;
mod retention;
mod segment;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::{QueueLimitsSpec, QueueSpec};
use strata_os::disk::{Disk, DiskFile, Open, OsDisk};
use tokio::sync::oneshot;

pub use backend::{Changed, Placed, QueueBackend, QueueHandle};
pub use commit::Published;
pub use fetch::{FetchOptions, Message};
pub use group::GroupStats;
pub use queue::{Queue, QueueStats};
pub use record::{DeadLetter, NewMessage, MAX_ATTR};
pub use replicas::{Copy, Replicas};
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
    /// Refused for now, nothing stored: a new segment could not be made (out of file
    /// descriptors, disk full), or a node-wide bound (`queue_limits`) is reached. The
    /// message says which; the same call may succeed once the cause is gone.
    #[error("{0}")]
    Unavailable(String),
    /// The queue is declared in the manifest, which owns it: it cannot be deleted
    /// through the API.
    #[error("queue {0:?} is declared in the manifest, which owns it: remove it from the manifest to delete it (its files stay until deleted by hand)")]
    Declared(String),
    /// The queue's files could not be opened at start: it serves nothing until repaired;
    /// every other queue works.
    #[error("queue {queue:?} is out of service: {reason} (the node's log has the details; stop the node and run `strata repair --queue {queue}` to salvage what can be read)")]
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

/// A reply handed to a publisher waiting in [`Queues::request`], or published to a
/// queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub correlation_id: Option<String>,
    pub payload: Bytes,
    /// The W3C `traceparent` the reply carries on (the replier's span, as the node API
    /// records it): handed to the waiting publisher, or stored with the message.
    pub traceparent: Option<String>,
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
    /// Node-wide bounds: how many queues, their segments' disk, the largest segment of a
    /// queue created through [`Queues::create`] that the manifest does not declare.
    pub limits: QueueLimitsSpec,
}

impl<D: Disk> QueuesConfig<D> {
    /// The default settings, on `disk`.
    pub fn on(disk: D) -> QueuesConfig<D> {
        QueuesConfig {
            disk,
            compact_bytes: compact::COMPACT_BYTES,
            limits: QueueLimitsSpec::default(),
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
    /// The queues the manifest declares: not bounded by `limits`, never deleted.
    declared: BTreeSet<String>,
    /// Every segment file's bytes, against `limits.max_total_bytes`.
    budget: Arc<limits::DiskBudget>,
}

fn spec_path(dir: &Path) -> PathBuf {
    dir.join("queue.json")
}

impl Queues {
    /// Opens every queue stored under `dir` and creates the `declared` ones that are not.
    /// A declared spec replaces a stored one. Tombstones of deletes a crash cut short are
    /// cleared. Blocking: recovery reads the segments.
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
        delete::clear_tombstones(&disk, dir);
        let budget = Arc::new(limits::DiskBudget::new(config.limits.max_total_bytes));
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
            declared: declared.keys().cloned().collect(),
            budget,
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
            let opened = spec.and_then(|spec| {
                queues
                    .create_with(&name, spec, Bounds::Stored)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
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
    /// `true` when it was created. A queue the manifest does not declare is held to the
    /// node's bounds (`queue_limits`): how many queues, its `segment_bytes`, the disk its
    /// two first segments take; past one it is refused ([`QueueError::Unavailable`],
    /// [`QueueError::BadInput`] for the segment size) and nothing is left behind.
    /// Blocking: creates files.
    pub fn create(&self, name: &str, spec: QueueSpec) -> Result<(Arc<Queue<D>>, bool), QueueError> {
        let bounds = if self.declared.contains(name) {
            Bounds::Stored
        } else {
            Bounds::New
        };
        self.create_with(name, spec, bounds)
    }

    fn create_with(&self, name: &str, spec: QueueSpec, bounds: Bounds) -> Result<(Arc<Queue<D>>, bool), QueueError> {
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
        // Two segment files, the queue's and its dead-letter queue's, held while they are
        // made (opening charges what it finds).
        let reserved = match bounds {
            Bounds::New => self.check_bounds(name, &spec)?,
            Bounds::Stored => 0,
        };
        let fresh = bounds == Bounds::New && disk.list(&dir).is_err() && disk.list(&dlq_dir).is_err();
        let made = self.make(name, spec, (&dir, &dlq_dir, &dlq_name));
        self.budget.release(reserved);
        let queue = match made {
            Ok(queue) => queue,
            Err(e) => {
                if fresh {
                    // Nothing of a queue that could not be made stays behind.
                    delete::remove_durably(disk, &self.dir, &[&dir, &dlq_dir]);
                }
                return Err(e);
            }
        };
        let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queues.get(name) {
            return Ok((q.clone(), false));
        }
        queues.insert(name.to_string(), queue.clone());
        if let Some(dlq) = &queue.dlq {
            queues.insert(dlq_name, dlq.clone());
        }
        Ok((queue, true))
    }

    /// Checks a new queue against the node's bounds and reserves its first two segments'
    /// bytes: how many it reserved.
    fn check_bounds(&self, name: &str, spec: &QueueSpec) -> Result<u64, QueueError> {
        let limits = &self.config.limits;
        if spec.segment_bytes > limits.max_segment_bytes {
            return Err(QueueError::BadInput(format!(
                "queues.{name}.segment_bytes: {} is over queue_limits.max_segment_bytes ({}), the largest segment \
                 of a queue created through the node API: ask for less, or declare the queue in the manifest",
                spec.segment_bytes, limits.max_segment_bytes
            )));
        }
        let count = self.count_except(name);
        if count >= u64::from(limits.max_queues) {
            return Err(QueueError::Unavailable(format!(
                "could not create queue {name:?}: the node has {count} queues, its bound queue_limits.max_queues \
                 ({}): delete one (DELETE /v1/queues/NAME) or raise the bound in the manifest",
                limits.max_queues
            )));
        }
        let bytes = spec.segment_bytes.saturating_mul(2);
        self.budget
            .reserve(bytes)
            .map_err(|reason| QueueError::Unavailable(format!("could not create queue {name:?}: {reason}")))?;
        Ok(bytes)
    }

    /// How many queues the node holds (dead-letter queues not counted, those out of
    /// service counted), `name` left out.
    fn count_except(&self, name: &str) -> u64 {
        let queues = self.read();
        let failed = self.failed.read().unwrap_or_else(|e| e.into_inner());
        let open = queues.keys().filter(|n| !n.ends_with(DLQ_SUFFIX) && *n != name);
        let out = failed.keys().filter(|n| *n != name && !queues.contains_key(*n));
        (open.count() + out.count()) as u64
    }

    /// Makes (or opens) the directories, `queue.json` and the two queues: the queue,
    /// holding its dead-letter queue.
    fn make(
        &self,
        name: &str,
        spec: QueueSpec,
        (dir, dlq_dir, dlq_name): (&Path, &Path, &str),
    ) -> Result<Arc<Queue<D>>, QueueError> {
        let disk = &self.config.disk;
        for d in [dir, dlq_dir] {
            create_dir_durably(disk, d).map_err(|e| QueueError::Io(format!("create {}: {e}", d.display())))?;
        }
        let text = serde_json::to_vec_pretty(&spec).expect("a spec serializes");
        write_atomic(disk, &spec_path(dir), &text).map_err(|e| QueueError::Io(format!("write queue.json: {e}")))?;
        let dlq_spec = QueueSpec {
            max_deliveries: 0,
            retention: Default::default(),
            ..spec.clone()
        };
        let dlq = Arc::new(Queue::open(
            dlq_name,
            dlq_spec,
            dlq_dir,
            None,
            &self.config,
            &self.budget,
        )?);
        let queue = Queue::open(name, spec, dir, Some(dlq.clone()), &self.config, &self.budget).inspect_err(|_| {
            dlq.close();
            dlq.shared.release_all();
        })?;
        Ok(Arc::new(queue))
    }

    /// The bytes every queue's segment files take together (what
    /// `queue_limits.max_total_bytes` bounds).
    pub fn disk_bytes(&self) -> u64 {
        self.budget.used()
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
                    traceparent: reply.traceparent,
                    dead_letter: None,
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

/// Whether a create is held to the node's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bounds {
    /// A queue stored or declared: opened whatever the bounds (nothing stored is refused).
    Stored,
    /// A queue made at run time through [`Queues::create`].
    New,
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
