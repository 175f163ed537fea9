//! The bus across nodes. Instances listen on loopback (the instance contract), so each
//! node puts a TCP forwarder on its cluster address in front of every ready local member
//! and publishes it in the members bucket (`APP.SERVICE.NODE.INSTANCE`); every node joins
//! the other nodes' members into its own pools as `NODE/INSTANCE` at the forwarder's
//! address. The gateway and the relay then treat them like local members: the same
//! pick, reissue, streaming bodies and upload bound, over one more TCP hop (the bytes
//! are copied by the remote node, HTTP is not parsed twice). A remote member whose node
//! is dead (see `membership`) leaves the pools at once, before its key is cleaned up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use strata_bus::{Bus, Member};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{Membership, Nats};

/// A ready member as other nodes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub node: String,
    pub service: String,
    pub instance: String,
    /// The forwarder on the member's node.
    pub addr: SocketAddr,
}

fn key(app: &str, service: &str, node: &str, instance: &str) -> String {
    format!("{app}.{service}.{node}.{instance}")
}

/// How often local pools are compared with what was published.
const SCAN: Duration = Duration::from_millis(100);

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
    // key -> (the forwarder's stop, whether the put reached the cluster)
    let mut published: BTreeMap<String, (CancellationToken, MemberRecord, bool)> = BTreeMap::new();
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
            let (stop, _, _) = published.remove(&k).expect("listed");
            stop.cancel();
            if let Err(e) = nats.members.delete(&k).await {
                tracing::debug!(key = k, "unpublish a member: {e}");
            }
        }
        for (k, (service, instance, member)) in now {
            if !published.contains_key(&k) {
                match forward(ip, member.addr, shutdown.child_token()).await {
                    Ok((addr, stop)) => {
                        let record = MemberRecord {
                            node: node.clone(),
                            service,
                            instance,
                            addr,
                        };
                        published.insert(k.clone(), (stop, record, false));
                    }
                    Err(e) => {
                        tracing::warn!(member = member.id, "cannot forward to a member from {ip}: {e}");
                        continue;
                    }
                }
            }
            let (_, record, sent) = published.get_mut(&k).expect("inserted");
            if !*sent {
                let body = serde_json::to_vec(record).expect("serializable");
                *sent = nats.members.put(&k, body.into()).await.is_ok();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for (k, (stop, _, _)) in published {
        stop.cancel();
        let _ = nats.members.delete(&k).await;
    }
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
    // Pool ids joined, per service.
    let mut joined: BTreeSet<(String, String)> = BTreeSet::new();
    let prefix = format!("{app}.");
    'watch: loop {
        let mut watch = match nats.members.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("watch the cluster's members: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'watch,
                    _ = shutdown.cancelled() => break 'watch,
                }
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                entry = watch.next() => {
                    let Some(Ok(entry)) = entry else { continue 'watch };
                    if !entry.key.starts_with(&prefix) {
                        continue;
                    }
                    if entry.operation == async_nats::jetstream::kv::Operation::Put {
                        match serde_json::from_slice::<MemberRecord>(&entry.value) {
                            Ok(r) if r.node != me => {
                                known.insert(entry.key.clone(), r);
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(key = entry.key, "unreadable member record: {e}"),
                        }
                    } else {
                        known.remove(&entry.key);
                    }
                }
                _ = tick.tick() => {
                    // The watch is the fast path; a full read every 2 s is the safety net
                    // (a watch made while JetStream was still electing can stay silent).
                    ticks += 1;
                    if ticks % 10 == 1 {
                        match read_all(&nats, &prefix, &me).await {
                            Ok(all) => known = all,
                            Err(e) => tracing::debug!("read the cluster's members: {e:#}"),
                        }
                    }
                }
                _ = shutdown.cancelled() => break 'watch,
            }
            sync(&bus, &known, &membership, &mut joined);
        }
    }
    for (service, id) in joined {
        bus.pool(&service).leave(&id);
    }
}

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

/// Makes the pools hold exactly the known members of live nodes.
fn sync(
    bus: &Bus,
    known: &BTreeMap<String, MemberRecord>,
    membership: &Membership,
    joined: &mut BTreeSet<(String, String)>,
) {
    let mut want: BTreeMap<(String, String), SocketAddr> = BTreeMap::new();
    for r in known.values() {
        if membership.is_live(&r.node) {
            want.insert((r.service.clone(), format!("{}/{}", r.node, r.instance)), r.addr);
        }
    }
    joined.retain(|(service, id)| {
        let keep = want.contains_key(&(service.clone(), id.clone()));
        if !keep {
            bus.pool(service).leave(id);
        }
        keep
    });
    for ((service, id), addr) in want {
        if joined.insert((service.clone(), id.clone())) {
            bus.pool(&service).join(Member::new_remote(id, addr));
        }
    }
}

/// A listener on `ip` (any port) whose connections are piped to `to`, until `stop`.
async fn forward(
    ip: IpAddr,
    to: SocketAddr,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            let (mut inbound, _) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("forwarder accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok((addr, token))
}
