//! The platform's topics: the Redis port's pub/sub channels, reached from the node too.
//! A [`Cache`] holds one pub/sub registry (`pubsub`), shared by its Redis port's
//! connections (SUBSCRIBE, PSUBSCRIBE, PUBLISH) and by the node: [`Cache::publish`] is
//! PUBLISH (the node API's `POST /v1/topics/NAME`), and [`Cache::subscribe_topic`] makes
//! a platform subscriber ([`TopicSubscription`]), which a node task drains to POST each
//! message to a service's instances. So a message published on either side reaches the
//! subscribers of both, and counts each of them as a receiver.
//!
//! Guarantees, Redis' own: at most once, to the subscribers present when the message is
//! published; nothing is stored. A platform subscriber's mailbox is bounded
//! ([`TopicBound`]: by default 1024 messages and 8 MiB, Redis' soft `pubsub` output
//! limit); a message that would pass the bound is dropped and counted
//! ([`TopicStats::dropped`]), while a Redis connection past its (32 MiB) bound is closed.
//! What the node's task does with a message (delivered, failed) it counts here too, so
//! that one place ([`Cache::topic_stats`]) has a subscriber's figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::Cache;
use crate::pubsub::Subscriber;

/// How many messages a platform subscriber holds before it drops new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicBound {
    pub messages: usize,
    pub bytes: usize,
}

impl Default for TopicBound {
    /// 1024 messages, 8 MiB (Redis' soft `client-output-buffer-limit pubsub`).
    fn default() -> TopicBound {
        TopicBound {
            messages: 1024,
            bytes: 8 << 20,
        }
    }
}

/// One platform subscriber, as the cache lists it.
#[derive(Debug)]
pub(crate) struct Registered {
    topic: String,
    /// Who subscribes (a service's name).
    name: String,
    subscriber: Arc<Subscriber>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

/// A platform subscriber's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStats {
    pub topic: String,
    /// Who subscribes (a service's name).
    pub subscriber: String,
    /// Messages handed on and taken (for a service: a 2xx from the instance; in `all`
    /// mode, one per instance).
    pub delivered: u64,
    /// Messages handed on and not taken (no 2xx, or no instance): dropped, not retried.
    pub failed: u64,
    /// Messages dropped because the subscriber held [`TopicBound`] already.
    pub dropped: u64,
}

/// A subscription of the platform to one topic; dropped, it unsubscribes.
#[derive(Debug)]
pub struct TopicSubscription {
    cache: Arc<Cache>,
    topic: Bytes,
    entry: Arc<Registered>,
}

impl Cache {
    /// Publishes `message` on `topic`, as PUBLISH does: delivered to every subscriber of
    /// the channel and of each matching pattern (Redis connections and platform
    /// subscribers); answers how many deliveries were made.
    pub fn publish(&self, topic: &[u8], message: &[u8]) -> usize {
        self.pubsub().publish(topic, message)
    }

    /// Hands every publish made on this node (PUBLISH, `POST /v1/topics/NAME`) to
    /// `bridge` too, for the cluster's other nodes; false if a bridge was set already.
    pub fn bridge_topics(&self, bridge: crate::TopicBridge) -> bool {
        self.pubsub().set_bridge(bridge)
    }

    /// A message another node published: delivered to this node's Redis subscribers
    /// (the publishing node delivers to the platform's); answers how many.
    pub fn publish_from_peer(&self, topic: &[u8], message: &[u8]) -> usize {
        self.pubsub().publish_from_peer(topic, message)
    }

    /// Subscribes `name` (a service) to `topic`, its mailbox held within `bound`.
    pub fn subscribe_topic(self: &Arc<Self>, topic: &str, name: &str, bound: TopicBound) -> TopicSubscription {
        let entry = Arc::new(Registered {
            topic: topic.to_string(),
            name: name.to_string(),
            subscriber: Arc::new(Subscriber::dropping(bound.messages, bound.bytes)),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let topic = Bytes::copy_from_slice(topic.as_bytes());
        self.pubsub().subscribe(&topic, &entry.subscriber);
        self.topic_subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry.clone());
        TopicSubscription {
            cache: self.clone(),
            topic,
            entry,
        }
    }

    /// Every platform subscriber's figures, in the order they subscribed.
    pub fn topic_stats(&self) -> Vec<TopicStats> {
        let list = self.topic_subscribers.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .map(|e| TopicStats {
                topic: e.topic.clone(),
                subscriber: e.name.clone(),
                delivered: e.delivered.load(Ordering::Relaxed),
                failed: e.failed.load(Ordering::Relaxed),
                dropped: e.subscriber.dropped(),
            })
            .collect()
    }
}

impl TopicSubscription {
    /// The next message published on the topic (its payload), oldest first; waits for
    /// one. Cancel-safe: a message is taken only when this returns.
    pub async fn next(&self) -> Bytes {
        loop {
            let mut taken = None;
            // A budget of one byte takes exactly one message.
            self.entry.subscriber.drain(Some(1), |m| taken = Some(m.payload));
            if let Some(payload) = taken {
                return payload;
            }
            self.entry.subscriber.woken().await;
        }
    }

    /// Counts `n` deliveries taken by the subscriber.
    pub fn delivered(&self, n: u64) {
        self.entry.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` deliveries that failed (dropped: at most once).
    pub fn failed(&self, n: u64) {
        self.entry.failed.fetch_add(n, Ordering::Relaxed);
    }

    /// This subscriber's figures.
    pub fn stats(&self) -> TopicStats {
        TopicStats {
            topic: self.entry.topic.clone(),
            subscriber: self.entry.name.clone(),
            delivered: self.entry.delivered.load(Ordering::Relaxed),
            failed: self.entry.failed.load(Ordering::Relaxed),
            dropped: self.entry.subscriber.dropped(),
        }
    }
}

impl Drop for TopicSubscription {
    fn drop(&mut self) {
        self.cache.pubsub().unsubscribe(&self.topic, &self.entry.subscriber);
        self.cache
            .topic_subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| !Arc::ptr_eq(e, &self.entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;

    #[tokio::test]
    async fn a_platform_subscriber_gets_each_message_once_in_order_within_its_bound() {
        let cache = Arc::new(Cache::new(CacheConfig::default()));
        assert_eq!(cache.publish(b"t", b"nobody"), 0);
        let bound = TopicBound {
            messages: 2,
            ..TopicBound::default()
        };
        let a = cache.subscribe_topic("t", "web", bound);
        let b = cache.subscribe_topic("t", "jobs", TopicBound::default());
        assert_eq!(cache.publish(b"t", b"1"), 2);
        assert_eq!(cache.publish(b"t", b"2"), 2);
        assert_eq!(cache.publish(b"t", b"3"), 2, "a drop still counts as a receiver");
        assert_eq!(cache.publish(b"other", b"x"), 0);
        assert_eq!(a.next().await, Bytes::from_static(b"1"));
        assert_eq!(a.next().await, Bytes::from_static(b"2"));
        for want in ["1", "2", "3"] {
            assert_eq!(b.next().await, Bytes::from(want));
        }
        a.delivered(2);
        b.failed(1);
        let stats = cache.topic_stats();
        assert_eq!(
            stats
                .iter()
                .map(|s| (s.subscriber.as_str(), s.delivered, s.failed, s.dropped))
                .collect::<Vec<_>>(),
            vec![("web", 2, 0, 1), ("jobs", 0, 1, 0)]
        );
        // Waiting: woken by the next publish.
        let waiting = tokio::spawn(async move {
            let m = a.next().await;
            (a, m)
        });
        tokio::task::yield_now().await;
        cache.publish(b"t", b"4");
        let (a, m) = waiting.await.unwrap();
        assert_eq!(m, Bytes::from_static(b"4"));
        drop((a, b));
        assert!(cache.topic_stats().is_empty());
        assert_eq!(cache.publish(b"t", b"gone"), 0);
    }
}
