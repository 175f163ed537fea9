//! Topic delivery: for each subscription of a service (`subscribes` in the manifest), a
//! task takes the topic's messages from the cache's pub/sub registry
//! (`Cache::subscribe_topic`, where the Redis port's PUBLISH and the node API's
//! `POST /v1/topics/NAME` both publish) and POSTs each through the bus to the service's
//! `path` (`strata_api::topics::deliver`, where the HTTP of it is): to ANY one ready
//! member (`relay::any`, load-aware, held while an instance starts from zero) or to ALL
//! of them (`relay::all`, once each). The body is the message's bytes
//! (`application/octet-stream`), with `X-Strata-Topic: NAME`.
//!
//! At most once, as Redis' pub/sub: a delivery that gets no 2xx (or finds no member) is
//! counted as failed and dropped, never retried. Bounded: at most [`PER_MEMBER`]
//! deliveries per ready member run at once (`in_flight`); while they are all busy,
//! messages wait in the subscription's mailbox (`TopicBound`: 1024 messages, 8 MiB), and past that new
//! ones are dropped and counted. The figures (delivered, failed, dropped) are the
//! cache's (`Cache::topic_stats`), shown on `/v1/metrics`.
//!
//! Topics live in one node's cache: in a cluster, a message reaches the subscribers on
//! the node where it was published only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_bus::Pool;
use strata_cache::{Cache, TopicBound, TopicSubscription};
use strata_gateway::RelayPolicy;
use strata_manifest::{CallMode, SubscribesSpec};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Deliveries in flight per ready member (ANY), or broadcasts in flight (ALL).
pub(crate) const PER_MEMBER: usize = 4;

/// How many deliveries of a subscription may run at once with `ready` members: in
/// `any` mode [`PER_MEMBER`] per ready member (one while none is: the relay holds it
/// while an instance starts), in `all` mode [`PER_MEMBER`] broadcasts, so that each
/// member has at most that many of the subscription's messages at a time.
fn in_flight(mode: CallMode, ready: usize) -> usize {
    match mode {
        CallMode::Any => PER_MEMBER * ready.max(1),
        CallMode::All => PER_MEMBER,
    }
}

/// Delivers `spec`'s topic to `service`'s pool until `token` is cancelled.
pub(crate) async fn run(
    cache: Arc<Cache>,
    pool: Arc<Pool>,
    service: String,
    spec: SubscribesSpec,
    policy: RelayPolicy,
    token: CancellationToken,
) {
    let subscription = Arc::new(cache.subscribe_topic(&spec.topic, &service, TopicBound::default()));
    let spec = Arc::new(spec);
    let policy = Arc::new(policy);
    let mut ready = pool.watch_ready();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        // Room first: while every delivery is busy, messages wait in the mailbox, which
        // bounds them.
        if tasks.len() >= in_flight(spec.mode, *ready.borrow_and_update()) {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = ready.changed() => {}
                _ = token.cancelled() => break,
            }
            continue;
        }
        let message = tokio::select! {
            m = subscription.next() => m,
            _ = token.cancelled() => break,
        };
        let (pool, spec, subscription, policy) = (pool.clone(), spec.clone(), subscription.clone(), policy.clone());
        tasks.spawn(async move {
            deliver(&pool, &spec, &subscription, message, &policy).await;
        });
    }
    // Deliveries in flight get a second; the subscription ends when the last goes.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// One message to the pool, counted on the subscription.
async fn deliver(
    pool: &Pool,
    spec: &SubscribesSpec,
    subscription: &TopicSubscription,
    message: Bytes,
    policy: &RelayPolicy,
) {
    let done = strata_api::topics::deliver(pool, spec, message, policy).await;
    subscription.delivered(done.delivered);
    subscription.failed(done.failed);
}
