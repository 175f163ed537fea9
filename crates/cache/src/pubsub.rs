//! The Redis port's publish/subscribe registry, across every worker thread: which
//! connections ([`Subscriber`]s) listen on which channels and glob patterns, and each
//! subscriber's mailbox of messages not yet written to its socket.
//!
//! A publisher never waits for a subscriber: [`PubSub::publish`] appends the message
//! (its channel and payload shared, never copied per subscriber) to each receiver's
//! mailbox under that mailbox's own short lock and wakes its connection, as a list push
//! wakes a blocked client; the connection writes its mailbox out on its own worker.
//! While a connection runs a batch of commands ([`WakeLater`]) the wake-ups wait for
//! the batch's end: a subscriber on another worker is woken once for a pipeline of
//! PUBLISHes instead of once per message (and drains them in one write), as Redis
//! writes to its clients once per turn of its event loop.
//! A PUBLISH to a channel nobody listens on costs one atomic load when nobody listens to
//! anything, else a read lock and a hash lookup, plus a glob match per pattern
//! subscribed (as Redis).
//!
//! A slow subscriber cannot grow memory without bound: a mailbox holding more than
//! [`MAILBOX_LIMIT`] bytes (Redis' `client-output-buffer-limit pubsub` hard limit,
//! 32 MiB) takes no more messages and is marked overflowed; its connection is closed
//! when it next wakes (Redis closes such a client too). Redis' soft limit (8 MiB for
//! 60 s) is not kept. A platform subscriber (a service's `subscribes`, see `topics`)
//! has no connection to close: its mailbox has a bound of its own
//! ([`Subscriber::dropping`]), past which a new message is dropped and counted, and the
//! messages already in it stay.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::glob;

/// Most bytes a subscriber's mailbox holds (as encoded, roughly): Redis' hard
/// `client-output-buffer-limit` for pub/sub clients, 32 MiB.
pub const MAILBOX_LIMIT: usize = 32 << 20;

/// What a mailbox charges per message beyond its channel, pattern and payload (the
/// frame's headers).
const MESSAGE_OVERHEAD: usize = 48;

/// One published message as a subscriber receives it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The pattern it matched (a `pmessage`), or None (a `message`).
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message {
    fn charge(&self) -> usize {
        MESSAGE_OVERHEAD + self.pattern.as_ref().map_or(0, Bytes::len) + self.channel.len() + self.payload.len()
    }
}

thread_local! {
    /// While a [`WakeLater`] is held on this thread: whether one is, and the
    /// subscribers to wake when it is dropped.
    static LATER: RefCell<(bool, Vec<Arc<Subscriber>>)> = const { RefCell::new((false, Vec::new())) };
}

/// Held while a connection runs one batch of commands (synchronously, on one thread):
/// the subscribers its PUBLISHes deliver to are woken once, when it is dropped, rather
/// than once per message.
pub(crate) struct WakeLater(());

impl WakeLater {
    pub fn begin() -> WakeLater {
        LATER.with(|l| l.borrow_mut().0 = true);
        WakeLater(())
    }
}

impl Drop for WakeLater {
    fn drop(&mut self) {
        let mut woken = LATER.with(|l| {
            let mut l = l.borrow_mut();
            l.0 = false;
            std::mem::take(&mut l.1)
        });
        for s in woken.drain(..) {
            // Cleared before the wake-up: a delivery from another thread that saw it
            // set (and so left the wake-up to this one) is in the mailbox by now.
            s.wake_pending.swap(false, Ordering::AcqRel);
            s.notify.notify_one();
        }
        // The list's room is kept for the next batch.
        LATER.with(|l| {
            let mut l = l.borrow_mut();
            if l.1.is_empty() {
                l.1 = woken;
            }
        });
    }
}

/// A subscriber's mailbox: a Redis connection's, or a platform subscriber's.
#[derive(Debug, Default)]
pub(crate) struct Subscriber {
    queue: Mutex<Mailbox>,
    notify: Notify,
    /// A [`WakeLater`] somewhere will wake it.
    wake_pending: AtomicBool,
    overflowed: AtomicBool,
    /// A platform subscriber's bound (messages, bytes): past it a message is dropped.
    /// None: a connection's, closed past the registry's limit.
    drops_past: Option<(usize, usize)>,
    /// Messages dropped at the bound.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Mailbox {
    messages: VecDeque<Message>,
    bytes: usize,
}

impl Subscriber {
    /// A platform subscriber: its mailbox holds at most `messages` messages and `bytes`
    /// bytes; a message past either is dropped and counted ([`Subscriber::dropped`]).
    pub fn dropping(messages: usize, bytes: usize) -> Subscriber {
        Subscriber {
            drops_past: Some((messages.max(1), bytes)),
            ..Subscriber::default()
        }
    }

    /// Messages dropped at a platform subscriber's bound.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Appends `m` unless the mailbox is over [`MAILBOX_LIMIT`] (then marks it
    /// overflowed), or, for a platform subscriber, over its own bound (then drops `m`);
    /// wakes the connection (when the batch ends, under a [`WakeLater`]).
    fn deliver(self: &Arc<Self>, m: Message, limit: usize) {
        if self.overflowed.load(Ordering::Relaxed) {
            return;
        }
        let charge = m.charge();
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((messages, bytes)) = self.drops_past {
                if q.messages.len() >= messages || q.bytes + charge > bytes {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                q.bytes += charge;
                q.messages.push_back(m);
            } else if q.bytes + charge > limit {
                self.overflowed.store(true, Ordering::Release);
                q.messages.clear();
                q.bytes = 0;
            } else {
                q.bytes += charge;
                q.messages.push_back(m);
            }
        }
        let later = LATER.with(|l| {
            let mut l = l.borrow_mut();
            if !l.0 {
                return false;
            }
            if !self.wake_pending.swap(true, Ordering::AcqRel) {
                l.1.push(self.clone());
            }
            true
        });
        if !later {
            self.notify.notify_one();
        }
    }

    /// Waits for a delivery (one since the last wait counts, even if it came before
    /// this call).
    pub async fn woken(&self) {
        self.notify.notified().await
    }

    /// Whether messages wait (or the mailbox overflowed): the connection has something
    /// to do without waiting for a wake-up (one may have been taken while it wrote).
    pub fn has_pending(&self) -> bool {
        self.overflowed() || !self.queue.lock().unwrap_or_else(|e| e.into_inner()).messages.is_empty()
    }

    /// Whether its mailbox went past the limit: the connection is to be closed.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Takes the messages waiting, oldest first, passing each to `f`: all of them, or
    /// (`budget`) as many as fit in about that many bytes, at least one.
    pub fn drain(&self, budget: Option<usize>, mut f: impl FnMut(Message)) {
        let messages = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.messages.is_empty() {
                return;
            }
            match budget {
                Some(budget) if q.bytes > budget => {
                    let mut taken = VecDeque::new();
                    let mut bytes = 0;
                    while bytes < budget {
                        let Some(m) = q.messages.pop_front() else { break };
                        bytes += m.charge();
                        taken.push_back(m);
                    }
                    q.bytes -= bytes;
                    taken
                }
                _ => {
                    q.bytes = 0;
                    std::mem::take(&mut q.messages)
                }
            }
        };
        messages.into_iter().for_each(&mut f);
    }

    /// Bytes waiting in the mailbox.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap().bytes
    }
}

/// Where each publish made on this node is also handed (a cluster's other nodes, see
/// [`crate::Cache::bridge_topics`]): called with the channel and the payload; it must
/// not block.
pub type Bridge = Box<dyn Fn(&[u8], &[u8]) + Send + Sync>;

/// Every subscription of a server.
pub(crate) struct PubSub {
    channels: RwLock<HashMap<Bytes, Vec<Arc<Subscriber>>>>,
    /// Pattern → its subscribers, in the order patterns were first subscribed.
    patterns: RwLock<Vec<(Bytes, Vec<Arc<Subscriber>>)>>,
    /// Channel and pattern subscriptions held: a PUBLISH with none looks no further.
    subscriptions: AtomicUsize,
    limit: usize,
    bridge: OnceLock<Bridge>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("subscriptions", &self.subscriptions)
            .field("bridged", &self.bridge.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for PubSub {
    fn default() -> Self {
        PubSub::new(MAILBOX_LIMIT)
    }
}

impl PubSub {
    /// A registry whose mailboxes hold at most `limit` bytes each.
    pub fn new(limit: usize) -> PubSub {
        PubSub {
            channels: RwLock::default(),
            patterns: RwLock::default(),
            subscriptions: AtomicUsize::new(0),
            limit,
            bridge: OnceLock::new(),
        }
    }

    /// Hands every later publish made here to `bridge` too; false if one was set.
    pub fn set_bridge(&self, bridge: Bridge) -> bool {
        self.bridge.set(bridge).is_ok()
    }

    /// Subscribes `s` to `channel`; false if it already was.
    pub fn subscribe(&self, channel: &Bytes, s: &Arc<Subscriber>) -> bool {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        let list = channels.entry(channel.clone()).or_default();
        if list.iter().any(|x| Arc::ptr_eq(x, s)) {
            return false;
        }
        list.push(s.clone());
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Unsubscribes `s` from `channel`; false if it was not subscribed.
    pub fn unsubscribe(&self, channel: &[u8], s: &Arc<Subscriber>) -> bool {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        let Some(list) = channels.get_mut(channel) else {
            return false;
        };
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, s));
        let removed = list.len() < before;
        if list.is_empty() {
            channels.remove(channel);
        }
        if removed {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Subscribes `s` to `pattern`; false if it already was.
    pub fn psubscribe(&self, pattern: &Bytes, s: &Arc<Subscriber>) -> bool {
        let mut patterns = self.patterns.write().unwrap_or_else(|e| e.into_inner());
        let list = match patterns.iter().position(|(p, _)| p == pattern) {
            Some(i) => &mut patterns[i].1,
            None => {
                patterns.push((pattern.clone(), Vec::new()));
                &mut patterns.last_mut().expect("just pushed").1
            }
        };
        if list.iter().any(|x| Arc::ptr_eq(x, s)) {
            return false;
        }
        list.push(s.clone());
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Unsubscribes `s` from `pattern`; false if it was not subscribed.
    pub fn punsubscribe(&self, pattern: &[u8], s: &Arc<Subscriber>) -> bool {
        let mut patterns = self.patterns.write().unwrap_or_else(|e| e.into_inner());
        let Some(i) = patterns.iter().position(|(p, _)| p == pattern) else {
            return false;
        };
        let list = &mut patterns[i].1;
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, s));
        let removed = list.len() < before;
        if list.is_empty() {
            patterns.remove(i);
        }
        if removed {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Delivers `payload` to the subscribers of `channel` and of the patterns matching
    /// it; returns how many deliveries were made (a connection subscribed to the channel
    /// and to a matching pattern counts twice, as in Redis).
    pub fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        if let Some(bridge) = self.bridge.get() {
            bridge(channel, payload);
        }
        self.deliver(channel, payload, true)
    }

    /// A message published on another node of the cluster: delivered to this node's
    /// Redis connections only. Its platform subscribers are the publishing node's to
    /// serve (its delivery reaches the service's members on every node), so they are
    /// passed over here, and nothing goes back to the bridge.
    pub fn publish_from_peer(&self, channel: &[u8], payload: &[u8]) -> usize {
        self.deliver(channel, payload, false)
    }

    fn deliver(&self, channel: &[u8], payload: &[u8], platform: bool) -> usize {
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut shared: Option<(Bytes, Bytes)> = None;
        let mut share = || {
            shared
                .get_or_insert_with(|| (Bytes::copy_from_slice(channel), Bytes::copy_from_slice(payload)))
                .clone()
        };
        let mut receivers = 0;
        {
            let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = channels.get(channel) {
                let (channel, payload) = share();
                for s in list.iter().filter(|s| platform || s.drops_past.is_none()) {
                    let m = Message {
                        pattern: None,
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    s.deliver(m, self.limit);
                    receivers += 1;
                }
            }
        }
        let patterns = self.patterns.read().unwrap_or_else(|e| e.into_inner());
        for (pattern, list) in patterns.iter() {
            if !glob::matches(pattern, channel, false) {
                continue;
            }
            let (channel, payload) = share();
            for s in list.iter().filter(|s| platform || s.drops_past.is_none()) {
                let m = Message {
                    pattern: Some(pattern.clone()),
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                s.deliver(m, self.limit);
                receivers += 1;
            }
        }
        receivers
    }

    /// The channels with subscribers, those matching `pattern` if given (PUBSUB
    /// CHANNELS), in no particular order.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c, false)))
            .cloned()
            .collect()
    }

    /// How many connections subscribe to `channel` (PUBSUB NUMSUB).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        channels.get(channel).map_or(0, Vec::len)
    }

    /// How many channels have subscribers (INFO's `pubsub_channels`).
    pub fn channel_count(&self) -> usize {
        self.channels.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many distinct patterns are subscribed (PUBSUB NUMPAT).
    pub fn numpat(&self) -> usize {
        self.patterns.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(s: &Subscriber) -> Vec<(Option<Bytes>, Bytes, Bytes)> {
        let mut v = Vec::new();
        s.drain(None, |m| v.push((m.pattern, m.channel, m.payload)));
        v
    }

    /// Whether a wake-up is waiting for `s` (taking it).
    async fn was_woken(s: &Subscriber) -> bool {
        tokio::select! {
            biased;
            _ = s.woken() => true,
            _ = std::future::ready(()) => false,
        }
    }

    #[tokio::test]
    async fn a_batch_wakes_each_subscriber_once_when_it_ends() {
        let ps = PubSub::default();
        let (a, b) = (Arc::new(Subscriber::default()), Arc::new(Subscriber::default()));
        let news = Bytes::from_static(b"news");
        ps.subscribe(&news, &a);
        ps.subscribe(&news, &b);
        // Outside a batch: woken at once.
        ps.publish(b"news", b"0");
        assert!(was_woken(&a).await && was_woken(&b).await);
        {
            let _batch = WakeLater::begin();
            for i in 1..=3 {
                assert_eq!(ps.publish(b"news", i.to_string().as_bytes()), 2);
            }
            assert!(!was_woken(&a).await, "woken before the batch ended");
            assert!(a.wake_pending.load(Ordering::Relaxed) && b.wake_pending.load(Ordering::Relaxed));
            assert_eq!(LATER.with(|l| l.borrow().1.len()), 2, "each subscriber listed once");
        }
        assert!(was_woken(&a).await && was_woken(&b).await);
        assert!(!was_woken(&a).await, "woken once");
        assert!(!a.wake_pending.load(Ordering::Relaxed));
        assert_eq!(drained(&a).len(), 4);
        // After the batch: at once again.
        ps.publish(b"news", b"4");
        assert!(was_woken(&b).await);
    }

    #[test]
    fn channels_and_patterns_receive_in_order() {
        let ps = PubSub::default();
        assert_eq!(ps.publish(b"news", b"nobody"), 0);
        let a = Arc::new(Subscriber::default());
        let b = Arc::new(Subscriber::default());
        let news = Bytes::from_static(b"news");
        assert!(ps.subscribe(&news, &a));
        assert!(!ps.subscribe(&news, &a));
        assert!(ps.subscribe(&news, &b));
        assert!(ps.psubscribe(&Bytes::from_static(b"n*"), &a));
        assert_eq!(ps.publish(b"news", b"1"), 3);
        assert_eq!(ps.publish(b"nope", b"2"), 1);
        assert_eq!(ps.publish(b"other", b"3"), 0);
        let got = drained(&a);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (None, news.clone(), Bytes::from_static(b"1")));
        assert_eq!(got[1].0.as_deref(), Some(&b"n*"[..]));
        assert_eq!(got[2].1, Bytes::from_static(b"nope"));
        assert_eq!(drained(&b).len(), 1);
        assert_eq!(ps.numsub(b"news"), 2);
        assert_eq!(ps.numpat(), 1);
        assert_eq!(ps.channels(Some(b"n*")), vec![news.clone()]);
        assert!(ps.unsubscribe(b"news", &a));
        assert!(!ps.unsubscribe(b"news", &a));
        assert!(ps.unsubscribe(b"news", &b));
        assert!(ps.punsubscribe(b"n*", &a));
        assert!(ps.channels(None).is_empty());
        assert_eq!(ps.numpat(), 0);
        assert_eq!(ps.subscriptions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_peer_s_message_reaches_connections_only_and_a_local_one_the_bridge_too() {
        let ps = PubSub::default();
        let conn = Arc::new(Subscriber::default());
        let platform = Arc::new(Subscriber::dropping(10, 1 << 20));
        ps.subscribe(&Bytes::from_static(b"t"), &conn);
        ps.subscribe(&Bytes::from_static(b"t"), &platform);
        ps.psubscribe(&Bytes::from_static(b"t*"), &platform);
        let bridged = Arc::new(Mutex::new(Vec::new()));
        let seen = bridged.clone();
        assert!(ps.set_bridge(Box::new(move |c, p| seen
            .lock()
            .unwrap()
            .push((c.to_vec(), p.to_vec())))));
        let taken = |s: &Subscriber| {
            let mut n = 0;
            s.drain(None, |_| n += 1);
            n
        };
        assert_eq!(ps.publish_from_peer(b"t", b"from b"), 1, "the connection only");
        assert_eq!((taken(&conn), taken(&platform)), (1, 0));
        assert!(bridged.lock().unwrap().is_empty(), "a peer's message goes no further");
        assert_eq!(ps.publish(b"t", b"here"), 3);
        assert_eq!((taken(&conn), taken(&platform)), (1, 2));
        assert_eq!(*bridged.lock().unwrap(), [(b"t".to_vec(), b"here".to_vec())]);
    }

    #[test]
    fn a_platform_subscriber_drops_past_its_bound_and_keeps_what_it_has() {
        let ps = PubSub::default();
        let a = Arc::new(Subscriber::dropping(3, 1 << 20));
        ps.subscribe(&Bytes::from_static(b"t"), &a);
        for i in 0..5u8 {
            assert_eq!(ps.publish(b"t", &[i]), 1, "a drop still counts as a receiver");
        }
        assert!(!a.overflowed());
        assert_eq!(a.dropped(), 2);
        let got: Vec<Bytes> = drained(&a).into_iter().map(|m| m.2).collect();
        assert_eq!(
            got,
            vec![
                Bytes::from_static(&[0]),
                Bytes::from_static(&[1]),
                Bytes::from_static(&[2])
            ]
        );
        // By bytes too.
        let b = Arc::new(Subscriber::dropping(100, 2 * (MESSAGE_OVERHEAD + 1 + 10)));
        ps.subscribe(&Bytes::from_static(b"t"), &b);
        for _ in 0..3 {
            ps.publish(b"t", &[0; 10]);
        }
        assert_eq!((b.dropped(), drained(&b).len()), (1, 2));
    }

    #[test]
    fn a_full_mailbox_overflows_and_takes_no_more() {
        let ps = PubSub::new(1000);
        let a = Arc::new(Subscriber::default());
        ps.subscribe(&Bytes::from_static(b"c"), &a);
        for _ in 0..9 {
            assert_eq!(ps.publish(b"c", &[0; 50]), 1);
        }
        assert!(!a.overflowed());
        assert!(a.pending() <= 1000);
        // A budget takes the oldest, at least one.
        let mut first = 0;
        a.drain(Some(1), |_| first += 1);
        assert_eq!(first, 1);
        assert_eq!(a.pending(), 8 * (MESSAGE_OVERHEAD + 1 + 50));
        let mut three = 0;
        a.drain(Some(2 * (MESSAGE_OVERHEAD + 1 + 50) + 1), |_| three += 1);
        assert_eq!(three, 3);
        for _ in 0..20 {
            ps.publish(b"c", &[0; 50]);
        }
        assert!(a.overflowed());
        assert_eq!(a.pending(), 0);
        assert!(drained(&a).is_empty());
    }
}
