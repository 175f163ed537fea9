//! A node serves its API over whatever backends it is given: the node API reaches the
//! queues and the store only through their traits. Backends that count the calls they
//! get, wrapped around the embedded engines, see every call the API makes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_node::{Backends, Node, NodeConfig};
use strata_queue::{
    Changed, FetchOptions, Message, NewMessage, Published, QueueBackend, QueueError, QueueHandle, QueueStats, Queues,
    Replied, Reply,
};
use strata_store::{
    BlobBody, BlobItem, BlobMeta, Change, Cond, Entry, ListItem, Page, Store, StoreBackend, StoreError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Calls that reached a counting backend.
#[derive(Default)]
struct Calls {
    publishes: AtomicUsize,
    fetches: AtomicUsize,
    puts: AtomicUsize,
    gets: AtomicUsize,
}

struct CountingQueues {
    inner: Arc<Queues>,
    calls: Arc<Calls>,
}

struct CountingQueue {
    inner: Arc<dyn QueueHandle>,
    calls: Arc<Calls>,
}

#[async_trait]
impl QueueBackend for CountingQueues {
    fn kind(&self) -> &'static str {
        "counting"
    }
    async fn create(&self, name: &str, spec: QueueSpec) -> Result<(Arc<dyn QueueHandle>, bool), QueueError> {
        let (q, created) = QueueBackend::create(&*self.inner, name, spec).await?;
        Ok((self.wrap(q), created))
    }
    fn get(&self, name: &str) -> Result<Arc<dyn QueueHandle>, QueueError> {
        Ok(self.wrap(QueueBackend::get(&*self.inner, name)?))
    }
    fn list(&self) -> Vec<Arc<dyn QueueHandle>> {
        QueueBackend::list(&*self.inner)
            .into_iter()
            .map(|q| self.wrap(q))
            .collect()
    }
    async fn request(
        &self,
        queue: &str,
        message: NewMessage,
        deadline: Duration,
    ) -> Result<(Published, Reply), QueueError> {
        QueueBackend::request(&*self.inner, queue, message, deadline).await
    }
    async fn reply(&self, reply_to: &str, reply: Reply) -> Result<Replied, QueueError> {
        QueueBackend::reply(&*self.inner, reply_to, reply).await
    }
    fn close(&self) {
        QueueBackend::close(&*self.inner)
    }
}

impl CountingQueues {
    fn wrap(&self, inner: Arc<dyn QueueHandle>) -> Arc<dyn QueueHandle> {
        Arc::new(CountingQueue {
            inner,
            calls: self.calls.clone(),
        })
    }
}

#[async_trait]
impl QueueHandle for CountingQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn spec(&self) -> &QueueSpec {
        self.inner.spec()
    }
    async fn publish(&self, messages: Vec<NewMessage>) -> Result<Vec<Published>, QueueError> {
        self.calls.publishes.fetch_add(1, Ordering::Relaxed);
        self.inner.publish(messages).await
    }
    async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
        self.calls.fetches.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch(group, opts).await
    }
    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        self.inner.ack(group, offsets).await
    }
    async fn nack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        self.inner.nack(group, offsets).await
    }
    fn stats(&self) -> QueueStats {
        self.inner.stats()
    }
    fn changed(&self) -> Changed<'_> {
        self.inner.changed()
    }
}

struct CountingStore {
    inner: Store,
    calls: Arc<Calls>,
}

#[async_trait]
impl StoreBackend for CountingStore {
    fn kind(&self) -> &'static str {
        "counting"
    }
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        self.calls.gets.fetch_add(1, Ordering::Relaxed);
        StoreBackend::get(&self.inner, ns, key).await
    }
    async fn put(&self, ns: &str, key: &str, value: Bytes, cond: Cond) -> Result<u64, StoreError> {
        self.calls.puts.fetch_add(1, Ordering::Relaxed);
        StoreBackend::put(&self.inner, ns, key, value, cond).await
    }
    async fn delete(&self, ns: &str, key: &str, cond: Cond) -> Result<bool, StoreError> {
        StoreBackend::delete(&self.inner, ns, key, cond).await
    }
    async fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListItem>, StoreError> {
        StoreBackend::list(&self.inner, ns, prefix, after, limit).await
    }
    async fn put_blob(
        &self,
        ns: &str,
        name: &str,
        content_type: &str,
        body: BlobBody,
        cond: Cond,
    ) -> Result<BlobMeta, StoreError> {
        StoreBackend::put_blob(&self.inner, ns, name, content_type, body, cond).await
    }
    async fn get_blob(&self, ns: &str, name: &str) -> Result<Option<(BlobMeta, BlobBody)>, StoreError> {
        StoreBackend::get_blob(&self.inner, ns, name).await
    }
    async fn delete_blob(&self, ns: &str, name: &str, cond: Cond) -> Result<bool, StoreError> {
        StoreBackend::delete_blob(&self.inner, ns, name, cond).await
    }
    async fn list_blobs(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BlobItem>, StoreError> {
        StoreBackend::list_blobs(&self.inner, ns, prefix, after, limit).await
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        StoreBackend::subscribe(&self.inner)
    }
    fn close(&self) {
        StoreBackend::close(&self.inner)
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
async fn call(addr: SocketAddr, token: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_reaches_queues_and_store_only_through_the_given_backends() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = strata_manifest::parse(
        r#"{"strata": 1, "app": "t",
            "services": {"idle": {"run": ["true"], "instances": {"min": 0, "max": 1}}},
            "queues": {"jobs": {}}}"#,
    )
    .unwrap();
    let calls = Arc::new(Calls::default());
    let queues = Queues::open(&dir.path().join("queues"), &BTreeMap::new()).unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut config = NodeConfig::new(manifest, dir.path().to_path_buf());
    config.gateway_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.backends = Some(Backends {
        queues: Arc::new(CountingQueues {
            inner: Arc::new(queues),
            calls: calls.clone(),
        }),
        store: Arc::new(CountingStore {
            inner: store,
            calls: calls.clone(),
        }),
    });
    let shutdown = CancellationToken::new();
    let node = Node::start(config, shutdown.clone()).await.expect("start the node");
    let api = node.api_addr;
    let token = node.control_token().to_string();

    // The manifest's queue was declared on the given backend.
    let (status, body) = call(api, &token, "GET", "/v1/queues", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""backend":"counting""#), "{body}");
    assert!(body.contains(r#""name":"jobs""#), "{body}");

    let (status, body) = call(api, &token, "POST", "/v1/queues/jobs/messages", r#"{"body": "hello"}"#).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(api, &token, "POST", "/v1/queues/jobs/groups/g/fetch", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""body":"hello""#), "{body}");
    assert_eq!(calls.publishes.load(Ordering::Relaxed), 1);
    assert_eq!(calls.fetches.load(Ordering::Relaxed), 1);

    let (status, body) = call(api, &token, "PUT", "/v1/kv/ns/k", "v").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(api, &token, "GET", "/v1/kv/ns/k", "").await;
    assert_eq!((status, body.as_str()), (200, "v"));
    assert_eq!(calls.puts.load(Ordering::Relaxed), 1);
    assert_eq!(calls.gets.load(Ordering::Relaxed), 1);

    // Errors keep the one body shape.
    let (status, body) = call(api, &token, "GET", "/v1/kv/ns/missing", "").await;
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["code"].as_str()),
        (Some(404), Some("not_found")),
        "{body}"
    );

    node.stop();
    node.wait().await;
}
