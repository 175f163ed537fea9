//! The relay's unit tests: header rules, and reissues on stale kept-alive connections
//! against a real member socket.

use super::*;

#[test]
fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("x-secret", HeaderValue::from_static("1"));
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
    headers.insert(header::HOST, HeaderValue::from_static("a"));
    strip_hop_by_hop(&mut headers);
    let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, vec!["host"]);
    let mut plain = HeaderMap::new();
    plain.insert(header::HOST, HeaderValue::from_static("a"));
    strip_hop_by_hop(&mut plain);
    assert_eq!(plain.len(), 1);
}

#[test]
fn idempotent_methods_and_keys() {
    let none = HeaderMap::new();
    for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS] {
        assert!(is_idempotent(&m, &none), "{m}");
    }
    assert!(!is_idempotent(&Method::POST, &none));
    assert!(!is_idempotent(&Method::PATCH, &none));
    let mut keyed = HeaderMap::new();
    keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k1"));
    assert!(is_idempotent(&Method::POST, &keyed));
}

/// A member that answers every request on a connection opened since the last
/// `restart`, and drops, unanswered, a request on one opened before it: what a member
/// killed and replaced at the same address looks like to connections kept alive, when
/// the kernel has not yet told the gateway they are closed.
struct Restarting {
    addr: std::net::SocketAddr,
    generation: Arc<std::sync::atomic::AtomicU32>,
}

impl Restarting {
    async fn start() -> Restarting {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let current = generation.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let born = current.load(Ordering::SeqCst);
                let current = current.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n @ 1..) = sock.read(&mut chunk).await else {
                            return;
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        buf.drain(..end + 4);
                        if current.load(Ordering::SeqCst) != born {
                            return;
                        }
                        // Slow enough that requests sent together take a connection each.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Restarting { addr, generation }
    }

    fn restart(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn get(pool: &Pool, policy: &RelayPolicy) -> (StatusCode, u32) {
    let req = Request::get("/x").body(ReqBody::Full(None)).unwrap();
    let (res, outcome) = any(pool, req, policy).await;
    let status = res.status();
    res.into_body().collect().await.expect("the whole body");
    (status, outcome.attempts)
}

#[tokio::test]
async fn stale_kept_alive_connections_cost_no_reissue_of_the_retries() {
    let member = Restarting::start().await;
    let bus = strata_bus::Bus::new();
    let pool = bus.pool("web");
    pool.join(Member::new("web-1", member.addr));
    let policy = RelayPolicy {
        retries: 0,
        ..RelayPolicy::default()
    };
    // Three connections kept alive, all opened before the restart.
    let (a, b, c) = tokio::join!(get(&pool, &policy), get(&pool, &policy), get(&pool, &policy));
    assert_eq!([a, b, c], [(StatusCode::OK, 1); 3]);
    member.restart();
    // The first idle connection fails; the others, as stale, are not tried: the same
    // member answers on a fresh connection, though no reissue is allowed.
    let (status, attempts) = get(&pool, &policy).await;
    assert_eq!((status, attempts), (StatusCode::OK, 2));
    assert_eq!(
        get(&pool, &policy).await,
        (StatusCode::OK, 1),
        "the fresh connection is kept"
    );
}
