//! [`Nats`]: one connection to the NATS cluster and the JetStream buckets the nodes
//! share. Every bucket is file-backed and replicated on up to three servers.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, kv, object_store};
use serde::{Deserialize, Serialize};

use crate::settle::settled;

/// Node records, put on every heartbeat; old records of dead nodes age out.
pub const NODES: &str = "strata_nodes";
/// The scheduler's lease: one key, renewed every second, gone after three.
pub const LEASE: &str = "strata_lease";
/// Deployed apps: app -> [`AppRecord`].
pub const APPS: &str = "strata_apps";
/// The scheduler's placement: app -> `placement::AppPlacement`.
pub const PLACEMENT: &str = "strata_placement";
/// Ready members: `APP.SERVICE.NODE.INSTANCE` -> `members::MemberRecord`.
pub const MEMBERS: &str = "strata_members";
/// Claimed timer firings: `APP.FUNCTION.SCHEDULED_MS` -> the node that fires it
/// (`firings`); keys age out after `firings::FIRINGS_TTL`.
pub const FIRINGS: &str = "strata_timer_firings";
/// App bundles and their files, by content digest.
pub const BUNDLES: &str = "strata_bundles";

/// How long the lease lives without a renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// A deployed app, as `strata deploy` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub app: String,
    /// Content digest of its bundle (`bundle::BundleIndex`), `sha256:...`.
    pub digest: String,
    /// The manifest, as JSON text (also in the bundle), so the scheduler need not fetch it.
    pub manifest: String,
    pub deployed_ms: u64,
}

/// How long connecting waits for a first NATS server to answer (a command's wait).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The longest wait for a bucket's second open, on the connection's own context, once
/// the bounded probe has answered (`ensure_kv`).
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// The connection and the shared buckets.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub nodes: kv::Store,
    pub lease: kv::Store,
    pub apps: kv::Store,
    pub placement: kv::Store,
    pub members: kv::Store,
    pub firings: kv::Store,
    pub bundles: object_store::ObjectStore,
    /// Replicas of each bucket: one per server given, at most three.
    pub replicas: usize,
}

impl Nats {
    /// Connects to the servers in `urls` (comma-separated) and opens (or creates) the
    /// buckets, each retried for up to 30 s while JetStream elects its leaders
    /// (`settle`).
    pub async fn connect(urls: &str) -> Result<Nats> {
        Self::connect_within(urls, CONNECT_WAIT).await
    }

    /// [`Nats::connect`], waiting up to `wait` for a first server to answer (a node may
    /// start beside the NATS servers, and wait for them longer than a command does).
    pub async fn connect_within(urls: &str, wait: Duration) -> Result<Nats> {
        let servers: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if servers.is_empty() {
            bail!("--nats needs at least one server URL, for example nats://127.0.0.1:4222");
        }
        // A URL that names no server is said at once, not after the wait.
        for server in &servers {
            check_url(server)?;
        }
        let replicas = servers.len().min(3);
        let client = async_nats::ConnectOptions::new()
            .name("strata")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(servers.as_slice())
            .await
            .with_context(|| format!("connect to NATS at {urls}"))?;
        // The client connects in the background: a server that is not there (or a URL
        // that names none) is said at once, not as a JetStream timeout 30 s later.
        let deadline = tokio::time::Instant::now() + wait;
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "no NATS server answered at {urls} within {} s: is nats-server running there (with -js for JetStream), and is the URL right (nats://HOST:PORT, comma-separated)?",
                    wait.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let js = jetstream::new(client.clone());
        Self::open(client, js, replicas)
            .await
            .with_context(|| format!("open the cluster's JetStream buckets at {urls}"))
    }

    async fn open(client: async_nats::Client, js: jetstream::Context, replicas: usize) -> Result<Nats> {
        let kv = |bucket: &str, max_age: Duration| kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        // Together: each waits for its own stream, not for the ones before it.
        let (nodes, lease, apps, placement, members, firings) = tokio::try_join!(
            ensure_kv(&js, kv(NODES, Duration::from_secs(60))),
            ensure_kv(&js, kv(LEASE, LEASE_TTL)),
            ensure_kv(&js, kv(APPS, Duration::ZERO)),
            ensure_kv(&js, kv(PLACEMENT, Duration::ZERO)),
            ensure_kv(&js, kv(MEMBERS, Duration::ZERO)),
            ensure_kv(&js, kv(FIRINGS, crate::firings::FIRINGS_TTL)),
        )?;
        let config = object_store::Config {
            bucket: BUNDLES.to_string(),
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let bundles = settled(&js, BUNDLES, |bounded| {
            let (js, config) = (js.clone(), config.clone());
            async move {
                if bounded.get_object_store(BUNDLES).await.is_err() {
                    if let Err(e) = bounded.create_object_store(config).await {
                        // Another node created it first.
                        bounded
                            .get_object_store(BUNDLES)
                            .await
                            .map_err(|_| anyhow::anyhow!("create object store {BUNDLES}: {e}"))?;
                    }
                }
                // Answered: opened again on the connection's own context (its timeouts).
                js.get_object_store(BUNDLES)
                    .await
                    .map_err(|e| anyhow::anyhow!("open object store {BUNDLES}: {e}"))
            }
        })
        .await?;
        Ok(Nats {
            client,
            js,
            nodes,
            lease,
            apps,
            placement,
            members,
            firings,
            bundles,
            replicas,
        })
    }

    /// Every deployed app.
    pub async fn apps(&self) -> Result<Vec<AppRecord>> {
        let mut out = Vec::new();
        for key in keys(&self.apps).await? {
            if let Some(value) = self.apps.get(&key).await.context("read a deployed app")? {
                match serde_json::from_slice::<AppRecord>(&value) {
                    Ok(record) => out.push(record),
                    Err(e) => tracing::warn!(app = key, "unreadable app record: {e}"),
                }
            }
        }
        Ok(out)
    }
}

/// Every key of a bucket.
pub async fn keys(store: &kv::Store) -> Result<Vec<String>> {
    use futures_util::TryStreamExt;
    let keys = store.keys().await.context("list keys")?;
    keys.try_collect().await.context("list keys")
}

async fn ensure_kv(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store> {
    let bucket = config.bucket.clone();
    let (store, stream) = settled(js, &bucket, |bounded| {
        let (js, config, bucket) = (js.clone(), config.clone(), bucket.clone());
        async move {
            let probe = match bounded.get_key_value(&bucket).await {
                Ok(store) => store,
                Err(_) => match bounded.create_key_value(config).await {
                    Ok(store) => store,
                    // Another node created it first.
                    Err(e) => bounded
                        .get_key_value(&bucket)
                        .await
                        .map_err(|_| anyhow::anyhow!("create key-value bucket {bucket}: {e}"))?,
                },
            };
            // Answered: opened again on the connection's own context (its timeouts),
            // that open bounded too (a stream electing its leader left it unanswered
            // for the client's whole 10 s timeout: a node's start, or a CLI command,
            // hung that long): cut off, the attempt is made again.
            let store = tokio::time::timeout(REOPEN_WAIT, js.get_key_value(&bucket))
                .await
                .map_err(|_| anyhow::anyhow!("open key-value bucket {bucket}: no answer within {REOPEN_WAIT:?}"))?
                .with_context(|| format!("open key-value bucket {bucket}"))?;
            anyhow::Ok((store, probe.stream.cached_info().config.clone()))
        }
    })
    .await?;
    // In the background: on a cluster just started, the bucket's stream may still be
    // electing its leader, and an update then waits out the request's whole timeout
    // (nodes took 10 s and more to join). The limit matters only at about 100 nodes.
    tokio::spawn(raise_consumer_limit(js.clone(), stream));
    Ok(store)
}

/// Consumers a shared bucket's stream may have: every node's watches and key listings
/// are consumers of it, and nats-server 2.15 gives a stream 1,000 unless it says
/// otherwise (reached at about 100 nodes in bench/sim.sh).
pub const BUCKET_CONSUMERS: i32 = 1_000_000;

/// Raises the consumer limit of the stream `config` describes to [`BUCKET_CONSUMERS`]
/// where it is lower, or unset: a stream whose config says -1 gets the server's default
/// (1,000 on 2.15), not "unlimited". A server that cannot change it (before 2.12) keeps
/// its own: logged, not fatal.
///
/// Tried a few times, 2 s apart, each bounded: a stream electing its leader answers
/// nothing until it has one.
async fn raise_consumer_limit(js: jetstream::Context, mut config: jetstream::stream::Config) {
    if config.max_consumers >= BUCKET_CONSUMERS {
        return;
    }
    config.max_consumers = BUCKET_CONSUMERS;
    let stream = config.name.clone();
    let mut last = String::new();
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(3), js.update_stream(config.clone())).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 3 s".into(),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::warn!(
        stream,
        "could not raise the consumer limit of the bucket's stream: {last}"
    );
}

/// A stream's peer not heard from for this long is shown offline.
const SILENT_PEER: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a stream's copies are, as its info reports them: the leader first.
pub fn replicas_of(info: &jetstream::stream::Info) -> strata_queue::Replicas {
    let wanted = info.config.num_replicas.max(1);
    let Some(cluster) = &info.cluster else {
        return strata_queue::Replicas {
            wanted,
            ..Default::default()
        };
    };
    let mut servers: Vec<strata_queue::Copy> = cluster
        .leader
        .iter()
        .map(|leader| strata_queue::Copy {
            server: leader.clone(),
            current: true,
            offline: false,
            lag: 0,
        })
        .collect();
    // A peer the group has not heard from for a while is offline, whether or not the
    // group has marked it so yet (a killed server kept `offline: false` and its last lag).
    servers.extend(cluster.replicas.iter().map(|peer| strata_queue::Copy {
        server: peer.name.clone(),
        current: peer.current,
        offline: peer.offline || peer.active >= SILENT_PEER,
        lag: peer.lag.unwrap_or(0),
    }));
    strata_queue::Replicas {
        wanted,
        leader: cluster.leader.clone(),
        servers,
    }
}

/// Whether `server` is a NATS server URL: `nats://HOST:PORT` (or `tls://`, `ws://`,
/// `wss://`), or `HOST[:PORT]`.
fn check_url(server: &str) -> Result<()> {
    let bad = |why: &str| {
        anyhow::anyhow!("--nats: {server:?} is not a NATS server URL ({why}); give nats://HOST:PORT, comma-separated")
    };
    if server.contains(char::is_whitespace) {
        return Err(bad("it has a space"));
    }
    if let Some((scheme, rest)) = server.split_once("://") {
        if !["nats", "tls", "ws", "wss"].contains(&scheme) {
            return Err(bad(&format!("the scheme {scheme:?} is not nats, tls, ws or wss")));
        }
        if rest.is_empty() || rest.starts_with(['/', ':']) {
            return Err(bad("no host"));
        }
    } else if server.contains(['/', '\\']) {
        return Err(bad("no scheme://, and a path"));
    }
    server
        .parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn a_url_that_names_no_server_is_refused_at_once() {
        for good in [
            "nats://127.0.0.1:4222",
            "tls://nats.example:4222",
            "127.0.0.1:4222",
            "localhost",
        ] {
            check_url(good).unwrap_or_else(|e| panic!("{good}: {e:#}"));
        }
        for bad in [
            "htp:/bad url",
            "http://127.0.0.1:4222",
            "nats://",
            "nats://:4222",
            "a/b",
        ] {
            let e = check_url(bad).expect_err(bad).to_string();
            assert!(e.contains("is not a NATS server URL"), "{bad}: {e}");
        }
    }
}
