//! Query buffers: the bytes a connection has received and not yet run. Each is bounded
//! (Redis' `client-query-buffer-limit`), and so are all of a server's together
//! ([`ClientMemory`], as Redis' `maxmemory-clients` bounds its clients' memory): a
//! connection whose buffer would have to grow past either bound is closed instead.
//!
//! What is counted is each buffer's capacity, the memory it holds; it changes when a
//! buffer grows for a large command or shrinks after one, and when a connection with
//! nothing pending gives its buffer back.
//!
//! A connection with nothing pending holds no buffer at all, as Redis frees an idle
//! client's query buffer: its read and reply buffers go back to its worker thread's
//! spare list ([`take_chunk`], [`give_chunk`]) once a batch is run and answered, and the
//! next connection with input takes one from there. Ten thousand idle clients then cost
//! their sockets and tasks, not 32 KiB each.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A connection's read buffer to start with (and to go back to after a large command).
pub(crate) const READ_CHUNK: usize = 16 << 10;

/// Spare buffers kept per worker thread.
const SPARE_MAX: usize = 64;

thread_local! {
    /// Buffers given back by this thread's connections with nothing pending.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of at least [`READ_CHUNK`], from the thread's spares if there is one.
pub(crate) fn take_chunk() -> Vec<u8> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
}

/// Gives `buf` back to the thread's spares (a buffer that grew for a large command is
/// freed instead).
pub(crate) fn give_chunk(mut buf: Vec<u8>) {
    if !(READ_CHUNK..=4 * READ_CHUNK).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAX {
            spare.push(buf);
        }
    });
}

/// The bytes held by the query buffers of all of a server's connections, and their bound;
/// the commands queued in MULTI (`transaction`) and those of blocked clients
/// (`blocking`) are counted here too.
#[derive(Debug)]
pub(crate) struct ClientMemory {
    held: AtomicUsize,
    max: usize,
}

impl ClientMemory {
    pub fn new(max: usize) -> ClientMemory {
        ClientMemory {
            held: AtomicUsize::new(0),
            max,
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes `bytes` more if the total stays within the bound.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.max {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn take(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Why a query buffer may not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverLimit {
    /// Past the connection's own limit.
    Connection,
    /// Past the bound on all connections' buffers together.
    Server,
}

/// One connection's query buffer, counted in its server's [`ClientMemory`] until dropped.
pub(crate) struct QueryBuffer<'a> {
    pub bytes: Vec<u8>,
    /// The capacity counted in `memory`.
    counted: usize,
    memory: &'a ClientMemory,
    /// The most bytes the buffer may hold unrun.
    limit: usize,
}

impl<'a> QueryBuffer<'a> {
    /// No buffer yet: [`QueryBuffer::make_room`] takes one when input arrives.
    pub fn new(memory: &'a ClientMemory, limit: usize) -> QueryBuffer<'a> {
        QueryBuffer {
            bytes: Vec::new(),
            counted: 0,
            memory,
            limit,
        }
    }

    /// Gives the buffer back when it holds nothing unrun (see the module).
    pub fn release(&mut self) {
        if !self.bytes.is_empty() || self.bytes.capacity() == 0 {
            return;
        }
        give_chunk(std::mem::take(&mut self.bytes));
        self.memory.give_back(self.counted);
        self.counted = 0;
    }

    /// Room for the next read. `want` is how many bytes the command at the buffer's
    /// start needs in all (0: not known yet). The buffer grows at most twofold (or by
    /// 1 MiB) per read, so a bare header cannot make it reserve the whole length it
    /// announces, and never past the command it is receiving or its limit.
    pub fn make_room(&mut self, want: usize) -> Result<(), OverLimit> {
        if want > self.limit {
            // That command can never be held.
            return Err(OverLimit::Connection);
        }
        if self.bytes.capacity() == 0 {
            // A first read's worth is always granted: the bound applies to growth, so
            // that every admitted connection can send small commands.
            self.bytes = take_chunk();
            self.counted = self.bytes.capacity();
            self.memory.take(self.counted);
        }
        let len = self.bytes.len();
        let capacity = self.bytes.capacity();
        let spare = want.saturating_sub(len).min(capacity.max(1 << 20)).max(READ_CHUNK / 4);
        if capacity - len >= spare {
            return Ok(());
        }
        let mut target = (len + spare).max(2 * capacity);
        if want > len {
            target = target.min(want.max(len + READ_CHUNK / 4));
        }
        // `len` is within the limit (the connection is closed otherwise), so this still
        // leaves a read's worth free.
        target = target
            .min(self.limit.saturating_add(READ_CHUNK))
            .max(len + READ_CHUNK / 4);
        if !self.memory.try_take(target.saturating_sub(capacity)) {
            return Err(OverLimit::Server);
        }
        self.bytes.reserve_exact(target - len);
        // The allocator may have given more than asked.
        let got = self.bytes.capacity();
        self.memory.take(got.saturating_sub(target));
        self.counted = got.max(target);
        Ok(())
    }

    /// After a batch: a buffer that grew for a large command and now holds little goes
    /// back to a read's worth, unless the command it holds the start of is large.
    pub fn shrink(&mut self, want: usize) {
        let capacity = self.bytes.capacity();
        if capacity <= 4 * READ_CHUNK || self.bytes.len() > READ_CHUNK / 2 || want > 4 * READ_CHUNK {
            return;
        }
        let mut fresh = Vec::with_capacity(READ_CHUNK);
        fresh.extend_from_slice(&self.bytes);
        self.bytes = fresh;
        let counted = self.bytes.capacity();
        self.memory.give_back(self.counted.saturating_sub(counted));
        self.counted = counted;
    }
}

impl Drop for QueryBuffer<'_> {
    fn drop(&mut self) {
        self.memory.give_back(self.counted);
        if self.bytes.is_empty() {
            give_chunk(std::mem::take(&mut self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_toward_the_command_and_counts_what_it_holds() {
        let memory = ClientMemory::new(usize::MAX);
        let mut q = QueryBuffer::new(&memory, 64 << 20);
        assert_eq!((memory.held(), q.bytes.capacity()), (0, 0), "nothing until input");
        q.make_room(0).unwrap();
        assert_eq!(memory.held(), q.bytes.capacity());
        assert!(q.bytes.capacity() >= READ_CHUNK);
        q.bytes.clear();
        q.release();
        assert_eq!((memory.held(), q.bytes.capacity()), (0, 0), "given back when empty");
        q.make_room(0).unwrap();
        assert_eq!(q.bytes.capacity(), READ_CHUNK, "a spare, room enough already");
        // A 10 MB bulk announced: the buffer doubles per read, up to the command exactly.
        let want = 10_000_000;
        q.bytes.resize(READ_CHUNK, b'x');
        let mut capacities = Vec::new();
        while q.bytes.len() < want {
            q.make_room(want).unwrap();
            capacities.push(q.bytes.capacity());
            assert_eq!(memory.held(), q.bytes.capacity());
            let fill = q.bytes.capacity().min(want);
            q.bytes.resize(fill, b'x');
        }
        assert_eq!(
            *capacities.last().unwrap(),
            want,
            "not past the command: {capacities:?}"
        );
        assert!(
            capacities.windows(2).all(|w| w[1] <= (2 * w[0]).max(w[0] + (1 << 20))),
            "at most twofold (or 1 MiB more) per read: {capacities:?}"
        );
        // Run, then back to a read's worth.
        q.bytes.clear();
        q.shrink(0);
        assert_eq!(q.bytes.capacity(), READ_CHUNK);
        assert_eq!(memory.held(), READ_CHUNK);
        drop(q);
        assert_eq!(memory.held(), 0);
    }

    #[test]
    fn a_command_past_the_limit_or_the_servers_bound_is_refused() {
        let memory = ClientMemory::new(3 * READ_CHUNK);
        let mut a = QueryBuffer::new(&memory, 1 << 20);
        assert_eq!(a.make_room((1 << 20) + 1), Err(OverLimit::Connection));
        a.make_room(0).unwrap();
        let mut b = QueryBuffer::new(&memory, 1 << 20);
        b.make_room(0).unwrap();
        // `a` grows to 32 KiB: 48 KiB in all, the bound.
        a.bytes.resize(READ_CHUNK, b'x');
        a.make_room(2 * READ_CHUNK).unwrap();
        assert_eq!(memory.held(), 3 * READ_CHUNK);
        b.bytes.resize(READ_CHUNK, b'x');
        assert_eq!(b.make_room(40_000), Err(OverLimit::Server));
        assert_eq!(memory.held(), 3 * READ_CHUNK, "a refusal takes nothing");
        drop(a);
        b.make_room(40_000).unwrap();
        assert_eq!(b.bytes.capacity(), 40_000);
        assert_eq!(memory.held(), b.bytes.capacity());
    }

    #[test]
    fn never_past_its_limit_and_a_read() {
        let memory = ClientMemory::new(usize::MAX);
        let limit = 100_000;
        let mut q = QueryBuffer::new(&memory, limit);
        // Many small arguments: the size is not known ahead.
        while q.bytes.len() <= limit {
            q.make_room(0).unwrap();
            assert!(q.bytes.capacity() <= limit + READ_CHUNK, "{}", q.bytes.capacity());
            let fill = (q.bytes.len() + 5000).min(q.bytes.capacity());
            q.bytes.resize(fill, b'x');
        }
    }
}
