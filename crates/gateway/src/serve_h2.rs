//! The gateway's HTTP/2 server (h2c and gRPC) on the `h2` crate directly, as the relay
//! already speaks to members.
//!
//! hyper's HTTP/2 server spawned a task per stream and ran the connection in a task of
//! its own; here one task runs a connection and all of its streams: the connection's
//! reads and writes, and each stream's future (the relay, then the pipe of its reply to
//! the client) in a [`FuturesUnordered`], polled when woken. A stream costs no spawn,
//! and a reply's frames are written in the same poll that made them.
//!
//! What hyper's server did and this one does too: its settings (windows of 1 MiB, 200
//! streams at once, 400 KiB of send buffer per stream, the header list bound), a stream
//! the client resets drops its relay (the call to the member is cancelled with it), the
//! reply's connection-specific headers are removed (HTTP/2 forbids them), `date` is
//! added where the reply has none, `content-length` where its size is known, a keep-alive
//! ping every 30 s (a connection whose client does not answer within 20 s is closed),
//! and at shutdown GOAWAY, the streams under way finished, then the close.

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client_body::{ClientBody, H2Body};
use crate::framing::Guarded;
use crate::relay;
use crate::response_body::ResBody;

/// A ping this long after the last one was answered.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A connection whose ping is unanswered this long is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The client's SETTINGS must come within this of its preface.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended before its client closed it.
#[derive(Debug)]
pub enum Ended {
    Handshake(String),
    Protocol(h2::Error),
    NoPong,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Handshake(why) => write!(f, "HTTP/2 handshake: {why}"),
            Ended::Protocol(e) => write!(f, "HTTP/2: {e}"),
            Ended::NoPong => write!(f, "no answer to a keep-alive ping in {KEEP_ALIVE_TIMEOUT:?}"),
        }
    }
}

/// Serves one HTTP/2 connection until the client closes it (or breaks the protocol, or
/// stops answering pings); `handle` answers each request. Once `shutdown` is cancelled,
/// the streams under way finish and the connection closes.
pub async fn serve<H, F>(
    io: Guarded,
    max_header_list_size: u32,
    shutdown: &CancellationToken,
    handle: H,
) -> Result<(), Ended>
where
    H: Fn(Request<ClientBody>) -> F,
    F: Future<Output = Response<ResBody>>,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_frame_size(16 << 10)
        .max_header_list_size(max_header_list_size)
        .max_local_error_reset_streams(Some(1024))
        .max_send_buffer_size(400 << 10)
        .max_concurrent_streams(200);
    let mut conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(Ended::Handshake(e.to_string())),
        Err(_) => return Err(Ended::Handshake(format!("no SETTINGS within {HANDSHAKE_TIMEOUT:?}"))),
    };
    let mut pings = conn.ping_pong().expect("a new connection's pings");
    let mut keep_alive = pin!(tokio::time::sleep(KEEP_ALIVE_INTERVAL));
    // When the ping still waiting for its pong was sent.
    let mut waiting: Option<Instant> = None;
    let mut cancelled = pin!(shutdown.cancelled());
    let mut closing = false;
    let mut streams = FuturesUnordered::new();
    // What one round does: every stream that was woken, then the connection (what they
    // queued is written by its poll, in one write, and new streams are taken), then the
    // pings.
    let mut round = |cx: &mut Context<'_>, wakeup: &Wakeup| -> Poll<Result<(), Ended>> {
        loop {
            // The set yields after two of its streams woke themselves (as a stream that
            // sends data does); it is polled again until none is left woken, so that the
            // frames of all go out together.
            for _ in 0..STREAM_PASSES {
                wakeup.woken.store(false, Ordering::SeqCst);
                while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
                // Out of tokio's budget for this poll, what is woken stays woken: its
                // resources would only say "later" again.
                if !wakeup.woken.load(Ordering::SeqCst) || !tokio::task::coop::has_budget_remaining() {
                    break;
                }
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    // A stream that panics ends alone (its client sees the stream reset),
                    // as it did with a task of its own, not with the connection's other
                    // streams.
                    let one = AssertUnwindSafe(stream(&handle, req, respond)).catch_unwind();
                    streams.push(one.map(|ended| {
                        if ended.is_err() {
                            tracing::error!("an HTTP/2 stream's handler panicked; the stream was reset");
                        }
                    }));
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Ended::Protocol(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {}
            }
            if !closing && cancelled.as_mut().poll(cx).is_ready() {
                closing = true;
                conn.graceful_shutdown();
                continue;
            }
            if waiting.is_some() {
                if let Poll::Ready(pong) = pings.poll_pong(cx) {
                    if let Err(e) = pong {
                        return Poll::Ready(Err(Ended::Protocol(e)));
                    }
                    waiting = None;
                    keep_alive.as_mut().reset(Instant::now() + KEEP_ALIVE_INTERVAL);
                }
            }
            if keep_alive.as_mut().poll(cx).is_ready() {
                if waiting.is_some() {
                    return Poll::Ready(Err(Ended::NoPong));
                }
                if let Err(e) = pings.send_ping(h2::Ping::opaque()) {
                    return Poll::Ready(Err(Ended::Protocol(e)));
                }
                let now = Instant::now();
                waiting = Some(now);
                keep_alive.as_mut().reset(now + KEEP_ALIVE_TIMEOUT);
                // The ping is written by the connection's next poll.
                continue;
            }
            return Poll::Pending;
        }
    };
    // Everything above is polled with the connection's own waker (`Wakeup`): a wake
    // that comes while this task is in its poll (h2 wakes the connection as a stream
    // queues a frame, a stream is woken by a frame the connection read) makes another
    // round here, instead of scheduling the task to be polled once more.
    let wakeup = Arc::new(Wakeup::default());
    let waker = Waker::from(wakeup.clone());
    poll_fn(|task| {
        wakeup.task.register(task.waker());
        let cx = &mut Context::from_waker(&waker);
        for _ in 0..ROUNDS_PER_POLL {
            wakeup.polling.store(true, Ordering::SeqCst);
            wakeup.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(ended) = round(cx, &wakeup) {
                return Poll::Ready(ended);
            }
            wakeup.polling.store(false, Ordering::SeqCst);
            if !wakeup.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
            if !tokio::task::coop::has_budget_remaining() {
                break;
            }
        }
        // Still woken after as many rounds, or out of tokio's budget: the worker's other
        // tasks run first.
        task.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// How many rounds one poll of a connection makes at most while it keeps being woken.
const ROUNDS_PER_POLL: usize = 16;
/// How many times a round polls the set of streams at most while they keep waking.
const STREAM_PASSES: usize = 64;

/// The waker a connection and its streams are polled with: while the connection's task
/// is in its poll, a wake only marks it woken (the poll makes another round); otherwise
/// it wakes the task.
#[derive(Default)]
struct Wakeup {
    task: AtomicWaker,
    polling: AtomicBool,
    woken: AtomicBool,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Woken first, then polling read: a poll that has just ended sees the mark, or
        // this sees it ended and wakes the task (both orders SeqCst).
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

/// One stream: the request answered (dropped if the client resets the stream first),
/// then the reply sent with its body.
async fn stream<H, F>(handle: &H, req: Request<h2::RecvStream>, mut respond: SendResponse<Bytes>)
where
    H: Fn(Request<ClientBody>) -> F,
    F: Future<Output = Response<ResBody>>,
{
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let req = req.map(|recv| ClientBody::H2(H2Body::new(recv, length)));
    let res = {
        let mut answer = pin!(handle(req));
        let answered = poll_fn(|cx| {
            if let Poll::Ready(res) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(res));
            }
            // The client may give up on the call meanwhile: then the relay is dropped.
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match answered {
            Some(res) => res,
            None => return,
        }
    };
    let (mut head, body) = res.into_parts();
    // What HTTP/2 forbids in a reply (RFC 9113 8.2.2): a relayed reply has none left,
    // but the gateway's own may say `connection: close`.
    relay::strip_hop_by_hop(&mut head.headers);
    if !head.headers.contains_key(header::DATE) {
        head.headers.insert(header::DATE, date());
    }
    if body.is_end_stream() {
        let _ = respond.send_response(Response::from_parts(head, ()), true);
        return;
    }
    if let Some(len) = body.size_hint().exact() {
        head.headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    let send = match respond.send_response(Response::from_parts(head, ()), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(error = %e, "an HTTP/2 reply head could not be sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    if let Err(e) = pipe(body, send).await {
        tracing::debug!(error = %e, "an HTTP/2 reply body ended early");
    }
}

/// Sends `body` on `send` as the client's window allows: a chunk waits for capacity
/// before the next is read (so what is buffered here stays one chunk), trailers end it.
/// The first chunk goes without waiting (h2 holds it until the window has room): one
/// chunk is the bound either way, and a reply of one chunk (a unary gRPC reply, most
/// small HTTP replies) then costs no claim of capacity. Each h2 call takes the
/// connection's lock, so the client's reset is looked at only when the reply has to
/// wait; a reply still moving learns of it from `send_data`.
async fn pipe(mut body: ResBody, mut send: SendStream<Bytes>) -> Result<(), h2::Error> {
    let mut held: Option<(Bytes, bool)> = None;
    let mut first = true;
    poll_fn(|cx| {
        let step = pipe_step(&mut body, &mut send, &mut held, &mut first, cx);
        if step.is_pending() {
            // A reset from the client ends the reply (and drops the member's side with it).
            if let Poll::Ready(reason) = send.poll_reset(cx) {
                return Poll::Ready(Err(reason.map_or_else(|e| e, h2::Error::from)));
            }
        }
        step
    })
    .await
}

fn pipe_step(
    body: &mut ResBody,
    send: &mut SendStream<Bytes>,
    held: &mut Option<(Bytes, bool)>,
    first: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), h2::Error>> {
    loop {
        if held.is_some() {
            while send.capacity() == 0 {
                match ready!(send.poll_capacity(cx)) {
                    Some(Ok(0)) => {}
                    Some(Ok(_)) => break,
                    Some(Err(e)) => return Poll::Ready(Err(e)),
                    None => return Poll::Ready(Err(h2::Error::from(Reason::STREAM_CLOSED))),
                }
            }
            let (data, end) = held.take().expect("held");
            send.send_data(data, end)?;
            if end {
                return Poll::Ready(Ok(()));
            }
            continue;
        }
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if data.is_empty() || std::mem::take(first) {
                        send.send_data(data, end)?;
                        if end {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    // A claim of one byte, not the chunk's length: h2 raises it to what
                    // is buffered as the chunk is sent (hyper does the same, see its #4003).
                    send.reserve_capacity(1);
                    *held = Some((data, end));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send.reserve_capacity(0);
                        send.send_trailers(trailers)?;
                        return Poll::Ready(Ok(()));
                    }
                }
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "a reply body failed on its way to an HTTP/2 client");
                send.send_reset(Reason::INTERNAL_ERROR);
                return Poll::Ready(Ok(()));
            }
            None => {
                send.send_data(Bytes::new(), true)?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// `date` for a reply, made once a second on each worker thread.
fn date() -> HeaderValue {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(now);
            cached.1 = HeaderValue::from_str(&text).expect("an HTTP date is a header value");
            cached.0 = secs;
        }
        cached.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    type Answer = Pin<Box<dyn Future<Output = Response<ResBody>> + Send>>;

    /// Sets its flag when dropped: a relay's future that was dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// One connection served by [`serve`] on a real socket: `/echo` answers the body
    /// it got (with headers HTTP/2 forbids, which must not reach the client), `/hang`
    /// never answers (its flag says when its future is dropped), `/slow` answers after
    /// 300 ms, `/big` answers 200 KiB in one chunk.
    async fn start(
        shutdown: CancellationToken,
        hung: Arc<AtomicBool>,
    ) -> (
        h2::client::SendRequest<Bytes>,
        tokio::task::JoinHandle<Result<(), Ended>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let io = Guarded::new(stream, 64 << 10, Duration::from_secs(10), Duration::from_secs(60));
            let handle = move |req: Request<ClientBody>| -> Answer {
                let hung = hung.clone();
                Box::pin(async move {
                    match req.uri().path() {
                        "/echo" => {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut res = Response::new(ResBody::full(body));
                            let headers = res.headers_mut();
                            headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
                            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
                            headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
                            res
                        }
                        "/panic" => panic!("a handler that panics (a test)"),
                        "/big" => Response::new(ResBody::full(vec![7u8; 200 << 10])),
                        "/hang" => {
                            let _dropped = Dropped(hung);
                            std::future::pending().await
                        }
                        _ => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Response::new(ResBody::full("done"))
                        }
                    }
                })
            };
            serve(io, 16 << 10, &shutdown, handle).await
        });
        let socket = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = h2::client::handshake(socket).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        (sender, server)
    }

    fn request(path: &str) -> Request<()> {
        Request::builder()
            .method("POST")
            .uri(format!("http://gateway{path}"))
            .body(())
            .unwrap()
    }

    async fn read_body(res: Response<h2::RecvStream>) -> Bytes {
        let mut body = res.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        out.into()
    }

    #[tokio::test]
    async fn replies_go_out_clean_and_a_reset_or_panicking_stream_ends_alone() {
        let hung = Arc::new(AtomicBool::new(false));
        let (sender, _server) = start(CancellationToken::new(), hung.clone()).await;
        let mut sender = sender.ready().await.unwrap();
        let (reply, mut body) = sender.send_request(request("/echo"), false).unwrap();
        body.send_data(Bytes::from_static(b"hello, "), false).unwrap();
        body.send_data(Bytes::from_static(b"gateway"), true).unwrap();
        let res = reply.await.unwrap();
        assert_eq!(res.status(), 200);
        let headers = res.headers();
        for forbidden in ["connection", "keep-alive", "transfer-encoding"] {
            assert!(
                !headers.contains_key(forbidden),
                "{forbidden} reached the client: {headers:?}"
            );
        }
        assert_eq!(headers[header::CONTENT_LENGTH], "14");
        assert!(headers.contains_key(header::DATE));
        assert_eq!(read_body(res).await, "hello, gateway");

        // A call the client gives up on: its answer's future is dropped.
        let mut sender = sender.ready().await.unwrap();
        let (reply, mut body) = sender.send_request(request("/hang"), false).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!hung.load(Ordering::SeqCst), "dropped before the reset");
        body.send_reset(Reason::CANCEL);
        drop(reply);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !hung.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the reset stream's answer was never dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A handler that panics: its stream is reset, the connection's others go on.
        let mut sender = sender.ready().await.unwrap();
        let (reply, _) = sender.send_request(request("/panic"), true).unwrap();
        let err = reply.await.expect_err("the panicked stream is reset");
        assert!(err.is_reset(), "{err}");
        // The connection serves on.
        let mut sender = sender.ready().await.unwrap();
        let (reply, _) = sender.send_request(request("/echo"), true).unwrap();
        let res = reply.await.unwrap();
        assert_eq!(read_body(res).await, "");
    }

    #[tokio::test]
    async fn a_first_chunk_larger_than_the_clients_window_goes_whole_as_the_client_reads() {
        let (sender, _server) = start(CancellationToken::new(), Arc::new(AtomicBool::new(false))).await;
        // The client's window is HTTP/2's default, 64 KiB: the chunk is sent unclaimed
        // and h2 holds what does not fit until the client gives window back.
        let mut sender = sender.ready().await.unwrap();
        let (reply, _) = sender.send_request(request("/big"), true).unwrap();
        let res = reply.await.unwrap();
        assert_eq!(res.headers()[header::CONTENT_LENGTH], (200 << 10).to_string());
        let body = tokio::time::timeout(Duration::from_secs(10), read_body(res))
            .await
            .expect("the whole reply within 10 s");
        assert_eq!(body.len(), 200 << 10);
        assert!(body.iter().all(|&b| b == 7));
        // The connection serves on.
        let mut sender = sender.ready().await.unwrap();
        let (reply, mut body) = sender.send_request(request("/echo"), false).unwrap();
        body.send_data(Bytes::from_static(b"after"), true).unwrap();
        assert_eq!(read_body(reply.await.unwrap()).await, "after");
    }

    #[tokio::test]
    async fn at_shutdown_the_streams_under_way_finish_and_the_connection_closes() {
        let shutdown = CancellationToken::new();
        let (sender, server) = start(shutdown.clone(), Arc::new(AtomicBool::new(false))).await;
        let mut sender = sender.ready().await.unwrap();
        let (reply, _) = sender.send_request(request("/slow"), true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        let res = reply.await.expect("the stream under way is answered");
        assert_eq!(read_body(res).await, "done");
        let ended = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the connection closes once its streams are done");
        assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    }

    #[test]
    fn the_date_is_an_http_date() {
        let value = date();
        let parsed = httpdate::parse_http_date(value.to_str().unwrap()).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off < Duration::from_secs(2), "{value:?}");
    }
}
