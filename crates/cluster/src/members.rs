//! The bus across nodes. Instances listen on loopback (the instance contract), so each
//! node puts a TCP forwarder on its cluster address in front of every ready local member
//! and publishes it in the members bucket (`APP.SERVICE.NODE.INSTANCE`); every node joins
//! the other nodes' members into its own pools as `NODE/INSTANCE` at the forwarder's
//! address. The gateway and the relay then treat them like local members: the same
//! pick, reissue, streaming bodies and upload bound, over one more TCP hop (the bytes
//! are copied by the remote node, HTTP is not parsed twice). A remote member whose node
//! is dead (see `membership`) leaves the pools at once, before its key is cleaned up.
//!
//! A member that leaves its pool on its own node (a stop, a roll-over) is drained for the
//! other nodes too: each request that came through its forwarder holds the member (its
//! stop waits) until the reply starts, and after its key is deleted the forwarder keeps
//! taking connections and the member stays held while the other nodes' gateways may
//! still pick it: [`HEARD_WITHIN`], and for as long as their requests keep coming
//! ([`QUIET`]). Then the forwarder stops taking connections (one made after that is
//! refused, which a gateway sends elsewhere) and keeps those it has.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use strata_bus::{Bus, Hold, Member};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{Membership, Nats};

mod probe;
use probe::Probe;

/// A ready member as other nodes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub node: String,
    pub service: String,
    pub instance: String,
    /// The forwarder on the member's node.
    pub addr: SocketAddr,
    /// Its instance is being stopped on purpose (scaled in, replaced, its node stopping):
    /// put just before the key is deleted, so that the other nodes' pools take it out
    /// as [`Member::stopping`] and say so of the calls its stop cuts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

/// A remote member's id (`NODE/INSTANCE-VERSION`, as [`sync`] pools it) without the
/// `-VERSION` its node publishes it with (`rollover::version_of`: 12 hex digits).
pub fn strip_version(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((instance, v)) if v.len() == 12 && v.bytes().all(|b| b.is_ascii_hexdigit()) => instance,
        _ => id,
    }
}

/// How a remote member is named in messages, headers and traces: `INSTANCE@NODE`, as
/// its own `STRATA_INSTANCE` says (two versions of one instance, during a roll-over,
/// share the name as they share that variable).
pub fn remote_name(id: &str) -> String {
    match strip_version(id).split_once('/') {
        Some((node, instance)) => format!("{instance}@{node}"),
        None => id.to_string(),
    }
}

fn key(app: &str, service: &str, node: &str, instance: &str) -> String {
    format!("{app}.{service}.{node}.{instance}")
}

/// How often local pools are compared with what was published.
const SCAN: Duration = Duration::from_millis(100);

/// How long a member that left its pool stays held after its key is deleted: the other
/// nodes hear of a deletion through their watch in milliseconds, and may have picked it
/// just before.
pub const HEARD_WITHIN: Duration = Duration::from_millis(300);

/// After [`HEARD_WITHIN`], the member stays held until no request has come through its
/// forwarder for this long: a node slow to hear (a loaded machine, a watch that stayed
/// silent until its full read) keeps sending, and is served. The stop's grace bounds it.
pub const QUIET: Duration = Duration::from_millis(200);

/// The longest a member stays held and its forwarder open after its key is deleted,
/// however long requests keep coming: a node that has not heard by then (its watch
/// silent past two of its full reads) is not waited for.
const HELD_AT_MOST: Duration = Duration::from_secs(5);

/// How long the put that marks a member stopping may take before its key is deleted
/// without it.
const STOPPING_PUT_WITHIN: Duration = Duration::from_millis(500);

/// When the last request through a forwarder began.
#[derive(Default)]
struct Traffic {
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Traffic {
    fn request(&self) {
        *self.last.lock().unwrap() = Some(tokio::time::Instant::now());
    }
}

/// Keeps a member that was just unpublished held, and its forwarder taking connections,
/// until the other nodes may have heard (see [`HEARD_WITHIN`] and [`QUIET`]). The
/// forwarder stops first: a connection made while the member is stopping would reach
/// nothing, while one refused is sent elsewhere.
async fn release_when_heard(hold: Hold, accepting: CancellationToken, traffic: Arc<Traffic>) {
    let deleted = tokio::time::Instant::now();
    loop {
        let last = traffic.last.lock().unwrap().unwrap_or(deleted);
        let until = (deleted + HEARD_WITHIN).max(last + QUIET).min(deleted + HELD_AT_MOST);
        if tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep_until(until).await;
    }
    accepting.cancel();
    drop(hold);
}

/// One published member: its record, whether the put reached the cluster, the
/// forwarder's stop for new connections and its requests, and the hold that keeps the
/// member from being stopped while other nodes may pick it.
struct Published {
    record: MemberRecord,
    sent: bool,
    accepting: CancellationToken,
    traffic: Arc<Traffic>,
    hold: Hold,
}

/// Whose members [`publish`] publishes.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub app: String,
    pub node: String,
    /// The app's version on this node (a short bundle digest): each member is published
    /// as `INSTANCE-VERSION`, since while a node rolls an app over its old and new
    /// versions both run instances named `web-1`, and each must own its own keys.
    pub version: String,
    /// The forwarders listen here.
    pub ip: IpAddr,
    pub services: Vec<String>,
}

/// Publishes the ready local members of the publisher's services (found in `bus`) until
/// `shutdown`, each behind a forwarder; removes them all at the end.
pub async fn publish(nats: Nats, publisher: Publisher, bus: Arc<Bus>, shutdown: CancellationToken) {
    let Publisher {
        app,
        node,
        version,
        ip,
        services,
    } = publisher;
    let mut published: BTreeMap<String, Published> = BTreeMap::new();
    loop {
        let mut now = BTreeMap::new();
        for service in &services {
            for m in bus.pool(service).members().iter() {
                if !m.is_remote() {
                    let instance = format!("{}-{version}", m.id);
                    let k = key(&app, service, &node, &instance);
                    now.insert(k, (service.clone(), instance, m.clone()));
                }
            }
        }
        let gone: Vec<String> = published.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
        for k in gone {
            let p = published.remove(&k).expect("listed");
            let stopping = p.hold.member().is_stopping();
            unpublish(&nats, &k, p, stopping).await;
        }
        for (k, (service, instance, member)) in now {
            if !published.contains_key(&k) {
                // Not the shutdown's child: at this version's stop the forwarder takes
                // connections until the other nodes heard (`release_when_heard`).
                let accepting = CancellationToken::new();
                let traffic = Arc::new(Traffic::default());
                match forward(ip, member.clone(), accepting.clone(), traffic.clone()).await {
                    Ok(addr) => {
                        let record = MemberRecord {
                            node: node.clone(),
                            service,
                            instance,
                            addr,
                            stopping: false,
                        };
                        let hold = member.hold();
                        published.insert(
                            k.clone(),
                            Published {
                                record,
                                sent: false,
                                accepting,
                                traffic,
                                hold,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(member = member.id, "cannot forward to a member from {ip}: {e}");
                        continue;
                    }
                }
            }
            let p = published.get_mut(&k).expect("inserted");
            if !p.sent {
                let body = serde_json::to_vec(&p.record).expect("serializable");
                p.sent = nats.members.put(&k, body.into()).await.is_ok();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // This version (or the node) stops: the other nodes stop picking its members first,
    // and the holds keep the instances from stopping until they may have heard.
    for (k, p) in published {
        unpublish(&nats, &k, p, true).await;
    }
}

/// Deletes a member's key (after a record saying it is `stopping`, when it is), and
/// keeps it held until the other nodes may have heard.
async fn unpublish(nats: &Nats, key: &str, p: Published, stopping: bool) {
    if stopping && p.sent {
        let record = MemberRecord {
            stopping: true,
            ..p.record
        };
        let body = serde_json::to_vec(&record).expect("serializable");
        // Briefly: JetStream without a leader would hold the put for its timeout, and
        // the stop (and the publish loop) with it; the deletion says enough.
        match tokio::time::timeout(STOPPING_PUT_WITHIN, nats.members.put(key, body.into())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(key, "mark a member stopping: {e}"),
            Err(_) => tracing::debug!(key, "mark a member stopping: no answer in {STOPPING_PUT_WITHIN:?}"),
        }
    }
    if let Err(e) = nats.members.delete(key).await {
        tracing::debug!(key, "unpublish a member: {e}");
    }
    tokio::spawn(release_when_heard(p.hold, p.accepting, p.traffic));
}

/// Removes every member key this node left behind (a previous run killed with SIGKILL).
pub async fn clear_own(nats: &Nats, node: &str) {
    let Ok(keys) = crate::nats::keys(&nats.members).await else {
        return;
    };
    for k in keys {
        if k.split('.').nth(2) == Some(node) {
            let _ = nats.members.delete(&k).await;
        }
    }
}

/// Joins the members other nodes publish for `app` into `bus` until `shutdown`, and
/// takes out those whose node is dead or whose key is gone.
pub async fn join_remote(
    nats: Nats,
    app: String,
    me: String,
    bus: Arc<Bus>,
    membership: Membership,
    shutdown: CancellationToken,
) {
    // key -> record, as the bucket says.
    let mut known: BTreeMap<String, MemberRecord> = BTreeMap::new();
    let mut joined = Joined::default();
    let mut probe = Probe::default();
    let prefix = format!("{app}.");
    // Every 200 ms: the probe's step and a sync, whatever the watch is doing (making
    // one waits for JetStream, which a deaf node may not reach for seconds).
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64;
    // The full read under way, if one is, and the watch's entries since it began
    // (applied again over its result, which may be older).
    let mut reading: Option<tokio::task::JoinHandle<anyhow::Result<BTreeMap<String, MemberRecord>>>> = None;
    let mut since_read: Vec<(String, Option<MemberRecord>)> = Vec::new();
    'watch: loop {
        let made = {
            let making = nats.members.watch_all();
            tokio::pin!(making);
            loop {
                tokio::select! {
                    made = &mut making => break made,
                    _ = tick.tick() => {
                        probe.step(&membership, &me, &mut joined).await;
                        sync(&bus, &known, &membership, &me, &mut joined);
                    }
                    _ = shutdown.cancelled() => break 'watch,
                }
            }
        };
        let mut watch = match made {
            Ok(w) => {
                // A new watch brings only changes: read whole at the next tick.
                ticks = 0;
                w
            }
            Err(e) => {
                tracing::warn!("watch the cluster's members: {e}");
                let retry = tokio::time::sleep(Duration::from_millis(500));
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        _ = &mut retry => continue 'watch,
                        _ = tick.tick() => {
                            probe.step(&membership, &me, &mut joined).await;
                            sync(&bus, &known, &membership, &me, &mut joined);
                        }
                        _ = shutdown.cancelled() => break 'watch,
                    }
                }
            }
        };
        loop {
            tokio::select! {
                entry = watch.next() => {
                    let Some(Ok(entry)) = entry else { continue 'watch };
                    if !entry.key.starts_with(&prefix) {
                        continue;
                    }
                    let change = if entry.operation == async_nats::jetstream::kv::Operation::Put {
                        match serde_json::from_slice::<MemberRecord>(&entry.value) {
                            Ok(r) if r.node != me => Some(Some(r)),
                            Ok(_) => None,
                            Err(e) => {
                                tracing::warn!(key = entry.key, "unreadable member record: {e}");
                                None
                            }
                        }
                    } else {
                        Some(None)
                    };
                    if let Some(change) = change {
                        if reading.is_some() {
                            since_read.push((entry.key.clone(), change.clone()));
                        }
                        match change {
                            Some(r) => known.insert(entry.key.clone(), r),
                            None => known.remove(&entry.key),
                        };
                    }
                }
                _ = tick.tick() => {
                    // The watch is the fast path; a full read every 2 s is the safety net
                    // (a watch made while JetStream was still electing can stay silent).
                    // In a task of its own: one made as the node is cut off waits for
                    // JetStream for seconds, and the probe must go on meanwhile.
                    if reading.as_ref().is_some_and(|r| r.is_finished()) {
                        match reading.take().expect("checked").await {
                            Ok(Ok(all)) => {
                                known = all;
                                for (key, change) in since_read.drain(..) {
                                    match change {
                                        Some(r) => known.insert(key, r),
                                        None => known.remove(&key),
                                    };
                                }
                            }
                            Ok(Err(e)) => tracing::debug!("read the cluster's members: {e:#}"),
                            Err(_) => {}
                        }
                        since_read.clear();
                    }
                    ticks += 1;
                    if ticks % 10 == 1 && reading.is_none() {
                        since_read.clear();
                        let (nats, prefix, me) = (nats.clone(), prefix.clone(), me.clone());
                        reading = Some(tokio::spawn(async move { read_all(&nats, &prefix, &me).await }));
                    }
                    probe.step(&membership, &me, &mut joined).await;
                }
                _ = shutdown.cancelled() => break 'watch,
            }
            sync(&bus, &known, &membership, &me, &mut joined);
        }
    }
    probe.stop();
    if let Some(r) = reading {
        r.abort();
    }
    for (service, id) in joined.pooled.into_keys() {
        bus.pool(&service).leave(&id);
    }
}

/// The other nodes' members in this node's pools, as [`sync`] keeps them.
#[derive(Default)]
struct Joined {
    /// (service, pool id) -> its forwarder: in the pools.
    pooled: BTreeMap<(String, String), SocketAddr>,
    /// Taken out while this node is deaf, their forwarder out of reach (see [`Probe`]):
    /// joined again once it answers, or once the node hears again and theirs is live.
    parked: BTreeMap<(String, String), SocketAddr>,
    /// The forwarders the last probe could not reach (only while deaf).
    unreachable: BTreeSet<SocketAddr>,
    /// When this node last did not hear itself.
    deaf_at: Option<std::time::Instant>,
}

/// After a node hears itself again, how long it keeps the other nodes' members as while
/// deaf: their heartbeats come within a second.
const RESUMED_GRACE: Duration = Duration::from_secs(2);

/// Every member of other nodes under `prefix` (one app), read whole.
async fn read_all(nats: &Nats, prefix: &str, me: &str) -> anyhow::Result<BTreeMap<String, MemberRecord>> {
    let mut out = BTreeMap::new();
    for key in crate::nats::keys(&nats.members).await? {
        if !key.starts_with(prefix) {
            continue;
        }
        if let Some(value) = nats.members.get(&key).await? {
            if let Ok(r) = serde_json::from_slice::<MemberRecord>(&value) {
                if r.node != me {
                    out.insert(key, r);
                }
            }
        }
    }
    Ok(out)
}

/// Makes the pools hold exactly the known members of live nodes, as far as this node
/// (`me`) can tell: while its own heartbeat is not arriving (its NATS server died and it
/// is reconnecting, or it is cut off), the other nodes' silence says nothing of them,
/// and their members stay (a request to one that did die fails over as to any member
/// that went away), except those whose forwarder the probe could not reach (parked until
/// it can). Taking them all out made this node's gateway answer 503 for seconds while
/// every instance was serving.
fn sync(bus: &Bus, known: &BTreeMap<String, MemberRecord>, membership: &Membership, me: &str, joined: &mut Joined) {
    let hearing = membership.hears_itself(me);
    // Every pool with another node's member, before and after.
    let mut services: BTreeSet<String> = joined
        .pooled
        .keys()
        .chain(joined.parked.keys())
        .map(|(service, _)| service.clone())
        .collect();
    services.extend(known.values().map(|r| r.service.clone()));
    let mut want: BTreeMap<(String, String), SocketAddr> = BTreeMap::new();
    // Members whose instance is being stopped: they leave, marked.
    let mut stopping: BTreeSet<(String, String)> = BTreeSet::new();
    for r in known.values() {
        let key = (r.service.clone(), format!("{}/{}", r.node, r.instance));
        if r.stopping {
            stopping.insert(key);
        } else if membership.is_live(&r.node) {
            want.insert(key, r.addr);
        }
    }
    if !hearing {
        joined.deaf_at = Some(std::time::Instant::now());
    }
    // Just heard again, the others' heartbeats may not have come yet (the next within a
    // second): until they may have, they are not taken for dead either.
    let keep_all = !hearing || joined.deaf_at.is_some_and(|at| at.elapsed() < RESUMED_GRACE);
    if !keep_all {
        joined.parked.clear();
    } else {
        // What the bucket says of a live node's member (its address) comes first.
        let kept: Vec<_> = joined
            .pooled
            .iter()
            .chain(&joined.parked)
            .filter(|(k, _)| !stopping.contains(*k))
            .map(|(k, addr)| (k.clone(), *addr))
            .collect();
        for (k, addr) in kept {
            want.entry(k).or_insert(addr);
        }
        let (parked, reached) = want
            .into_iter()
            .partition(|(_, addr)| joined.unreachable.contains(addr));
        joined.parked = parked;
        want = reached;
    }
    let parked = &joined.parked;
    joined.pooled.retain(|(service, id), _| {
        let key = (service.clone(), id.clone());
        let keep = want.contains_key(&key);
        if !keep {
            let pool = bus.pool(service);
            if let Some(m) = pool.members().iter().find(|m| m.id == *id) {
                if stopping.contains(&key) {
                    m.stopping();
                } else if parked.contains_key(&key) {
                    // Out of reach: the calls waiting on it end now.
                    m.cut();
                }
            }
            pool.leave(id);
        }
        keep
    });
    for ((service, id), addr) in want {
        let pool = bus.pool(&service);
        match joined.pooled.insert((service.clone(), id.clone()), addr) {
            Some(was) if was == addr => {}
            // The same key at a new forwarder (its node restarted): joined anew.
            Some(_) => {
                pool.leave(&id);
                pool.join(Member::new_remote(id.clone(), remote_name(&id), addr));
            }
            None => pool.join(Member::new_remote(id.clone(), remote_name(&id), addr)),
        }
    }
    // Deaf, the node keeps the others' members but picks its own first: the others
    // may be across a partition, where a call would wait for its deadline.
    for service in services {
        bus.pool(&service).set_local_first(!hearing);
    }
}

/// A listener on `ip` (any port) whose connections are piped to `member`: it takes new
/// connections until `accepting` is cancelled, and the pipes it made run until either
/// side closes (the member's stop, which waits for their requests, closes them). Each
/// request through it is noted in `traffic`.
async fn forward(
    ip: IpAddr,
    member: Arc<Member>,
    accepting: CancellationToken,
    traffic: Arc<Traffic>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = accepting.cancelled() => return,
            };
            let (inbound, _) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("forwarder accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // A connection is made for a request.
            traffic.request();
            let (member, traffic) = (member.clone(), traffic.clone());
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                let Ok(outbound) = TcpStream::connect(member.addr).await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                let _ = pipe(inbound, outbound, &member, &traffic).await;
            });
        }
    });
    Ok(addr)
}

/// Copies bytes both ways until both sides are done (or either fails). From the moment
/// the caller's bytes are passed on until the member's first bytes come back, a request
/// is waiting for its reply: the member is held (see [`Member::hold`]), so that its stop
/// waits for the requests of other nodes as it does for this node's.
async fn pipe(
    mut inbound: TcpStream,
    mut outbound: TcpStream,
    member: &Arc<Member>,
    traffic: &Traffic,
) -> std::io::Result<()> {
    let waiting: std::sync::Mutex<Option<Hold>> = std::sync::Mutex::new(None);
    let (mut from_caller, mut to_caller) = inbound.split();
    let (mut from_member, mut to_member) = outbound.split();
    let up = copy(&mut from_caller, &mut to_member, || {
        let mut waiting = waiting.lock().unwrap();
        if waiting.is_none() {
            traffic.request();
            *waiting = Some(member.hold());
        }
    });
    let down = copy(&mut from_member, &mut to_caller, || {
        waiting.lock().unwrap().take();
    });
    tokio::try_join!(up, down).map(|_| ())
}

/// Copies `from` to `to` until `from` ends (then shuts `to` down for writing), calling
/// `read` on each read before its bytes are passed on.
async fn copy(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut read: impl FnMut(),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; PIPE_BUF];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        read();
        to.write_all(&buf[..n]).await?;
    }
}

/// Each direction's copy buffer.
const PIPE_BUF: usize = 16 * 1024;

#[cfg(test)]
mod tests;
