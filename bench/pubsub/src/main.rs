//! One publisher and N subscribers on one channel, speaking the Redis protocol (RESP2
//! `SUBSCRIBE`/`PUBLISH`) or NATS core (`SUB`/`PUB`) over plain TCP, so that the client
//! is the same for every server and costs little.
//!
//!     pubsub-bench redis|nats HOST:PORT SUBSCRIBERS SECS SIZE
//!
//! The publisher sends WINDOW messages per write (a Redis publisher then reads their
//! WINDOW replies) and pauses while the subscribers are more than LAG messages each
//! behind what it sent: pub/sub has no end-to-end flow control, and a server whose
//! subscribers fall behind without bound would only measure its output buffers (Redis
//! and strata disconnect such a subscriber; NATS marks it a slow consumer). Delivered
//! messages are counted by the subscribers; the figure is those counted during SECS
//! after a warm-up second. Prints one line:
//!
//!     RESULT delivered_per_s=... published_per_s=... subscribers=N size=SIZE delivered_total=...
//!
//! (`delivered_total`: every message the subscribers counted, warm-up included, for a
//! server's CPU per message over the whole run.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHANNEL: &str = "bench";
const WINDOW: u64 = 64;
const LAG: u64 = 20_000;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Redis,
    Nats,
}

fn usage(why: &str) -> ! {
    eprintln!("pubsub-bench: {why}\nusage: pubsub-bench redis|nats HOST:PORT SUBSCRIBERS SECS SIZE");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        usage("five arguments");
    }
    let proto = match args[0].as_str() {
        "redis" => Proto::Redis,
        "nats" => Proto::Nats,
        other => usage(&format!("unknown protocol {other:?}")),
    };
    let addr = args[1].clone();
    let number = |i: usize| -> u64 {
        args[i]
            .parse()
            .unwrap_or_else(|_| usage(&format!("{:?} is no number", args[i])))
    };
    let (subs, secs, size) = (number(2), number(3), number(4) as usize);
    if subs == 0 || secs == 0 {
        usage("SUBSCRIBERS and SECS must be above 0");
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut ready = Vec::new();
    for _ in 0..subs {
        let (delivered, failed) = (delivered.clone(), failed.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = addr.clone();
        tokio::spawn(async move {
            if let Err(e) = subscribe(proto, &addr, delivered, tx).await {
                eprintln!("pubsub-bench: a subscriber failed: {e}");
                failed.store(true, Ordering::Relaxed);
            }
        });
        ready.push(rx);
    }
    for r in ready {
        if r.await.is_err() {
            eprintln!("pubsub-bench: a subscriber could not subscribe");
            std::process::exit(1);
        }
    }
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, stop, delivered) = (published.clone(), stop.clone(), delivered.clone());
        tokio::spawn(async move { publish(proto, &addr, size, subs, published, delivered, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (d0, p0, t0) = (
        delivered.load(Ordering::Relaxed),
        published.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (d1, p1, elapsed) = (
        delivered.load(Ordering::Relaxed),
        published.load(Ordering::Relaxed),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    match publisher.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("pubsub-bench: the publisher failed: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("pubsub-bench: the publisher panicked: {e}");
            std::process::exit(1);
        }
    }
    if failed.load(Ordering::Relaxed) {
        std::process::exit(1);
    }
    let s = elapsed.as_secs_f64();
    println!(
        "RESULT delivered_per_s={:.0} published_per_s={:.0} subscribers={subs} size={size} delivered_total={}",
        (d1 - d0) as f64 / s,
        (p1 - p0) as f64 / s,
        delivered.load(Ordering::Relaxed)
    );
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn connect(addr: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A NATS connection past its INFO line, CONNECT sent.
async fn nats_connect(addr: &str, buf: &mut Vec<u8>) -> Result<TcpStream> {
    let mut stream = connect(addr).await?;
    while !buf.windows(2).any(|w| w == b"\r\n") {
        read_more(&mut stream, buf).await?;
    }
    let end = buf.windows(2).position(|w| w == b"\r\n").expect("a line") + 2;
    if !buf.starts_with(b"INFO ") {
        return Err(format!("not a NATS server: {:?}", String::from_utf8_lossy(&buf[..end])).into());
    }
    buf.drain(..end);
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n")
        .await?;
    Ok(stream)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 64 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Subscribes, says so on `ready`, then counts every message into `delivered`.
async fn subscribe(
    proto: Proto,
    addr: &str,
    delivered: Arc<AtomicU64>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<()> {
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut stream = match proto {
        Proto::Redis => {
            let mut s = connect(addr).await?;
            s.write_all(format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{CHANNEL}\r\n", CHANNEL.len()).as_bytes())
                .await?;
            s
        }
        Proto::Nats => {
            let mut s = nats_connect(addr, &mut buf).await?;
            s.write_all(format!("SUB {CHANNEL} 1\r\nPING\r\n").as_bytes()).await?;
            s
        }
    };
    let mut ready = Some(ready);
    let mut pos = 0;
    loop {
        // Parse every whole frame in the buffer.
        loop {
            let frame = match proto {
                Proto::Redis => redis_frame(&buf[pos..])?,
                Proto::Nats => nats_frame(&buf[pos..])?,
            };
            let Some((len, kind)) = frame else { break };
            pos += len;
            match kind {
                Frame::Message => {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                Frame::Subscribed => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Frame::Ping => stream.write_all(b"PONG\r\n").await?,
                Frame::Other => {}
            }
        }
        buf.drain(..pos);
        pos = 0;
        read_more(&mut stream, &mut buf).await?;
    }
}

enum Frame {
    Message,
    Subscribed,
    Ping,
    Other,
}

/// One RESP2 line starting at `at`: its text and where the next starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
    Some((&buf[at..end], end + 2))
}

fn int(text: &[u8]) -> Result<i64> {
    Ok(std::str::from_utf8(text)?.parse()?)
}

/// A whole RESP2 push (an array of bulk strings) at the start of `buf`: its length and
/// whether it is a message or the subscribe confirmation.
fn redis_frame(buf: &[u8]) -> Result<Option<(usize, Frame)>> {
    let Some((head, mut at)) = line(buf, 0) else {
        return Ok(None);
    };
    if head.first() == Some(&b'-') {
        return Err(format!("server error: {}", String::from_utf8_lossy(head)).into());
    }
    if head.first() != Some(&b'*') {
        return Err(format!("unexpected reply {:?}", String::from_utf8_lossy(head)).into());
    }
    let n = int(&head[1..])?;
    let mut first: Option<&[u8]> = None;
    for _ in 0..n {
        let Some((item, next)) = line(buf, at) else {
            return Ok(None);
        };
        match item.first() {
            Some(b'$') => {
                let len = int(&item[1..])? as usize;
                if buf.len() < next + len + 2 {
                    return Ok(None);
                }
                first.get_or_insert(&buf[next..next + len]);
                at = next + len + 2;
            }
            Some(b':') => at = next,
            _ => return Err(format!("unexpected item {:?}", String::from_utf8_lossy(item)).into()),
        }
    }
    let kind = match first {
        Some(b"message") => Frame::Message,
        Some(b"subscribe") => Frame::Subscribed,
        _ => Frame::Other,
    };
    Ok(Some((at, kind)))
}

/// A whole NATS server frame at the start of `buf`.
fn nats_frame(buf: &[u8]) -> Result<Option<(usize, Frame)>> {
    let Some((head, next)) = line(buf, 0) else {
        return Ok(None);
    };
    if let Some(rest) = head.strip_prefix(b"MSG ") {
        let len = rest.rsplit(|&b| b == b' ').next().ok_or("MSG without a size")?;
        let len = int(len)? as usize;
        if buf.len() < next + len + 2 {
            return Ok(None);
        }
        return Ok(Some((next + len + 2, Frame::Message)));
    }
    let kind = match head {
        b"PONG" => Frame::Subscribed,
        b"PING" => Frame::Ping,
        h if h.starts_with(b"-ERR") => return Err(format!("server error: {}", String::from_utf8_lossy(h)).into()),
        _ => Frame::Other,
    };
    Ok(Some((next, kind)))
}

/// Publishes WINDOW messages per write until `stop`, holding back while the subscribers
/// are more than LAG messages each behind.
async fn publish(
    proto: Proto,
    addr: &str,
    size: usize,
    subs: u64,
    published: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let payload = vec![b'x'; size];
    let mut one = Vec::new();
    match proto {
        Proto::Redis => one.extend_from_slice(
            format!("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{CHANNEL}\r\n${size}\r\n", CHANNEL.len()).as_bytes(),
        ),
        Proto::Nats => one.extend_from_slice(format!("PUB {CHANNEL} {size}\r\n").as_bytes()),
    }
    one.extend_from_slice(&payload);
    one.extend_from_slice(b"\r\n");
    let batch: Vec<u8> = one.repeat(WINDOW as usize);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut stream = match proto {
        Proto::Redis => connect(addr).await?,
        Proto::Nats => nats_connect(addr, &mut buf).await?,
    };
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if sent * subs > delivered.load(Ordering::Relaxed) + LAG * subs {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        stream.write_all(&batch).await?;
        if proto == Proto::Redis {
            // WINDOW integer replies.
            let mut replies = 0;
            let mut pos = 0;
            while replies < WINDOW {
                match line(&buf, pos) {
                    Some((reply, next)) => {
                        if reply.first() != Some(&b':') {
                            return Err(format!("PUBLISH answered {:?}", String::from_utf8_lossy(reply)).into());
                        }
                        pos = next;
                        replies += 1;
                    }
                    None => read_more(&mut stream, &mut buf).await?,
                }
            }
            buf.drain(..pos);
        }
        sent += WINDOW;
        published.store(sent, Ordering::Relaxed);
    }
    if proto == Proto::Nats {
        // Everything sent has reached the server once it answers a PING after it.
        stream.write_all(b"PING\r\n").await?;
        while !buf.windows(4).any(|w| w == b"PONG") {
            read_more(&mut stream, &mut buf).await?;
        }
    }
    Ok(())
}
