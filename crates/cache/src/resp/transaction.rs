//! One connection's transaction state: the commands queued since MULTI, and the keys it
//! WATCHes. EXEC itself is in `commands`: it runs the queue through the same dispatch as
//! every other command, inside one [`Keyspace`] holding every shard the transaction
//! touches (see `keyspace` for why that makes it atomic).
//!
//! WATCH registers the connection's [`Watcher`] with each key's shard; every change to a
//! watched key marks it dirty (a write from any connection, this one included, a
//! deletion, an expiry, an eviction, a flush), as Redis' `touchWatchedKey` does. A key
//! that was live when watched and has passed its deadline by EXEC counts as changed
//! even if nothing has removed it yet (Redis' `isWatchedKeyExpired`). EXEC checks the
//! mark with the watched keys' shards held, so nothing can change them between the
//! check and the commands.

use std::ops::Range;
use std::sync::Arc;

use super::parse::Args;
use super::table::Spec;
use crate::keyspace::{Keyspace, ShardSet};
use crate::shard::Watcher;

/// Bytes counted per queued argument besides its own (its range in the queue).
const ARG_OVERHEAD: usize = 16;

/// A connection's MULTI queue and WATCHed keys.
#[derive(Default)]
pub(crate) struct Transaction {
    queue: Option<Queue>,
    watching: Option<Watching>,
}

/// The commands queued since MULTI, their arguments copied into one buffer.
#[derive(Default)]
pub(crate) struct Queue {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    commands: Vec<(&'static Spec, Range<usize>)>,
    /// A command was refused while queueing (unknown, wrong arity): EXEC answers
    /// EXECABORT and runs nothing.
    pub failed: bool,
    /// Bytes counted against the server's bound on clients' memory.
    pub counted: usize,
}

impl Queue {
    /// The bytes a command would add to the queue.
    pub fn cost(args: Args<'_>) -> usize {
        args.iter().map(|a| a.len() + ARG_OVERHEAD).sum()
    }

    pub fn push(&mut self, spec: &'static Spec, args: Args<'_>) {
        let first = self.ranges.len();
        for a in args.iter() {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(a);
            self.ranges.push(start..self.bytes.len());
        }
        self.commands.push((spec, first..self.ranges.len()));
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn get(&self, i: usize) -> (&'static Spec, Args<'_>) {
        let (spec, r) = &self.commands[i];
        (spec, Args::new(&self.bytes, &self.ranges[r.clone()]))
    }
}

/// The keys a connection WATCHes.
struct Watching {
    watcher: Arc<Watcher>,
    keys: Vec<Watched>,
}

struct Watched {
    key: Vec<u8>,
    shard: usize,
    /// Live when watched: its expiry since counts as a change.
    live: bool,
}

impl Transaction {
    pub fn in_multi(&self) -> bool {
        self.queue.is_some()
    }

    /// MULTI.
    pub fn begin(&mut self) {
        self.queue = Some(Queue::default());
    }

    pub fn queue_mut(&mut self) -> Option<&mut Queue> {
        self.queue.as_mut()
    }

    /// Ends MULTI (EXEC, DISCARD): the queue, if there was one.
    pub fn take_queue(&mut self) -> Option<Queue> {
        self.queue.take()
    }

    /// A command was refused: inside MULTI, the transaction will not run.
    pub fn refuse(&mut self) {
        if let Some(q) = &mut self.queue {
            q.failed = true;
        }
    }

    /// WATCH `key` (again: nothing more).
    pub fn watch(&mut self, ks: &mut Keyspace<'_>, key: &[u8]) {
        let w = self.watching.get_or_insert_with(|| Watching {
            watcher: Arc::new(Watcher::default()),
            keys: Vec::new(),
        });
        if w.keys.iter().any(|k| k.key == key) {
            return;
        }
        let (shard, live) = ks.watch(key, &w.watcher);
        w.keys.push(Watched {
            key: key.to_vec(),
            shard,
            live,
        });
    }

    /// UNWATCH (and what EXEC, DISCARD, RESET and the end of the connection do).
    pub fn unwatch(&mut self, ks: &mut Keyspace<'_>) {
        if let Some(w) = self.watching.take() {
            for k in &w.keys {
                ks.unwatch(k.shard, &k.key, &w.watcher);
            }
        }
    }

    /// Adds the shards of the watched keys to `set`.
    pub fn watched_shards(&self, set: &mut ShardSet) {
        if let Some(w) = &self.watching {
            w.keys.iter().for_each(|k| set.insert(k.shard));
        }
    }

    /// Whether a watched key has changed since it was watched; `ks` must hold their
    /// shards.
    pub fn changed(&self, ks: &mut Keyspace<'_>) -> bool {
        let Some(w) = &self.watching else {
            return false;
        };
        w.watcher.is_dirty() || w.keys.iter().any(|k| k.live && ks.has_expired(&k.key))
    }
}
