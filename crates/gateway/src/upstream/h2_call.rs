//! One gRPC call on a member's HTTP/2 connection (`h2`), both ways, without a task or a
//! channel of its own in the usual case.
//!
//! - **Request.** [`send`] opens the stream from the relay's own task. A request body that
//!   is already complete (a unary call: its frames and its end arrived with its head) is
//!   written there and then. The rest of one still streaming in is moved by a [`Pump`]
//!   (frame by frame, as the member's flow control allows), first in the relay's task
//!   while it waits for the reply head ([`Sent`]: a unary call whose data came a little
//!   after its head ends there); only a request still streaming when the head comes (a
//!   client or bidirectional stream) gets a task of its own, which stops when the call's
//!   reply is dropped ([`StopPump`]).
//! - **Reply.** [`H2Reply`] is the member's `RecvStream` as an `http_body::Body`, trailers
//!   included, giving the flow-control window back as its data is taken, so the member
//!   sends no faster than the client reads.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{Reason, RecvStream, SendStream};
use http::request::Parts;
use http::Request;
use http_body::{Body, Frame};
use tokio::sync::oneshot;

use super::h2::{ConnRef, Sender};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dropped with the call's reply (or with the relay when no reply came): the request's
/// [`Pump`] then resets the stream and stops.
pub struct StopPump(#[allow(dead_code)] oneshot::Sender<()>);

/// A call on its way, as a future of the member's reply head; meanwhile it moves what
/// is left of the request (if anything), and hands over what still streams when the
/// head comes: the [`Pump`] then runs on in a task of its own, stopped by the
/// [`StopPump`] that comes with the head.
pub struct Sent<B> {
    response: ResponseFuture,
    pump: Option<Pump<B>>,
}

impl<B> std::future::Future for Sent<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
{
    type Output = Result<(http::Response<RecvStream>, Option<StopPump>), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(pump) = &mut this.pump {
            if Pin::new(pump).poll(cx).is_ready() {
                this.pump = None;
            }
        }
        let head = ready!(Pin::new(&mut this.response).poll(cx))?;
        Poll::Ready(Ok((head, this.pump.take().map(Pump::spawn))))
    }
}

/// Why a call was not sent, or not whole.
pub enum SendError<B> {
    /// The connection takes no new stream (it ended, or the member sent GOAWAY): nothing
    /// was sent, and the head and body come back for another attempt.
    Unsent(Box<(Parts, B)>, h2::Error),
    /// The stream could not be opened: nothing reached the member, but the head is spent.
    Refused(h2::Error),
    /// The client's request broke off (the member's stream, if opened, is reset).
    ClientBody(BoxError),
}

impl<B> std::fmt::Debug for SendError<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unsent(_, e) => write!(f, "unsent: {e}"),
            SendError::Refused(e) => write!(f, "refused: {e}"),
            SendError::ClientBody(e) => write!(f, "the client's request broke off: {e}"),
        }
    }
}

/// Opens the call's stream on `sender` with `head` and sends `body`: whole, from this
/// task, when it is already complete; else what has arrived, and a [`Pump`] for the rest.
pub async fn send<B>(
    sender: &mut Sender,
    conn: &Arc<ConnRef>,
    head: Parts,
    mut body: B,
) -> Result<Sent<B>, SendError<B>>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
{
    // With no stream of its own pending, `poll_ready` only checks the connection's state.
    if let Poll::Ready(Err(e)) = sender.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
        return Err(SendError::Unsent(Box::new((head, body)), e));
    }
    let mut next = match poll_now(&mut body).await {
        Some(Err(e)) => return Err(SendError::ClientBody(e)),
        next => next,
    };
    let ended = matches!(next, Some(Ok(None)));
    let (response, mut stream) = sender
        .send_request(Request::from_parts(head, ()), ended)
        .map_err(SendError::Refused)?;
    if ended {
        return Ok(Sent { response, pump: None });
    }
    // What has arrived goes now, each data frame once the one after it (or the end) is
    // known, so that the last carries END_STREAM.
    let mut held: Option<Bytes> = None;
    loop {
        match next {
            // Still streaming: the rest is pumped.
            None => {
                if let Some(data) = held.take() {
                    if stream.send_data(data, false).is_err() {
                        return Ok(Sent { response, pump: None });
                    }
                }
                let pump = Pump {
                    body,
                    stream,
                    stopped: None,
                    _conn: conn.clone(),
                };
                return Ok(Sent {
                    response,
                    pump: Some(pump),
                });
            }
            Some(Ok(None)) => {
                let _ = stream.send_data(held.take().unwrap_or_default(), true);
                return Ok(Sent { response, pump: None });
            }
            Some(Ok(Some(frame))) => match frame.into_data() {
                Ok(data) => {
                    if let Some(before) = held.replace(data) {
                        if stream.send_data(before, false).is_err() {
                            return Ok(Sent { response, pump: None });
                        }
                    }
                }
                Err(frame) => {
                    if let Some(data) = held.take() {
                        let _ = stream.send_data(data, false);
                    }
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = stream.send_trailers(trailers);
                    }
                    return Ok(Sent { response, pump: None });
                }
            },
            Some(Err(e)) => {
                stream.send_reset(Reason::CANCEL);
                return Err(SendError::ClientBody(e));
            }
        }
        next = if body.is_end_stream() {
            Some(Ok(None))
        } else {
            poll_now(&mut body).await
        };
    }
}

/// The body's next frame if it is there without waiting: None when it is not yet,
/// `Some(Ok(None))` at its end.
async fn poll_now<B>(body: &mut B) -> Option<Result<Option<Frame<Bytes>>, BoxError>>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => None,
            Poll::Ready(None) => Some(Ok(None)),
            Poll::Ready(Some(Ok(frame))) => Some(Ok(Some(frame))),
            Poll::Ready(Some(Err(e))) => Some(Err(e)),
        })
    })
    .await
}

/// Moves a request body that is still streaming to the member, as its flow control
/// allows (at least a byte of window before the next frame is read from the client, as
/// hyper does), until the body ends, either side resets, or (once in a task of its own)
/// the call's reply is dropped.
pub struct Pump<B> {
    body: B,
    stream: SendStream<Bytes>,
    /// Set when it runs in a task of its own.
    stopped: Option<oneshot::Receiver<()>>,
    /// Counts the call on its connection while the request streams (keep-alive pings).
    _conn: Arc<ConnRef>,
}

impl<B> Pump<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
{
    /// Goes on in a task of its own, until the returned [`StopPump`] is dropped.
    fn spawn(mut self) -> StopPump {
        let (stop, stopped) = oneshot::channel();
        self.stopped = Some(stopped);
        tokio::spawn(self);
        StopPump(stop)
    }
}

impl<B> std::future::Future for Pump<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if this
                .stopped
                .as_mut()
                .is_some_and(|stopped| Pin::new(stopped).poll(cx).is_ready())
            {
                this.stream.send_reset(Reason::CANCEL);
                return Poll::Ready(());
            }
            this.stream.reserve_capacity(1);
            if this.stream.capacity() == 0 {
                loop {
                    match ready!(this.stream.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        // Reset, or no longer sending: nothing more to move.
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            } else if this.stream.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = this.body.is_end_stream();
                        if this.stream.send_data(data, end).is_err() || end {
                            return Poll::Ready(());
                        }
                    }
                    Err(frame) => {
                        this.stream.reserve_capacity(0);
                        if let Ok(trailers) = frame.into_trailers() {
                            let _ = this.stream.send_trailers(trailers);
                        }
                        return Poll::Ready(());
                    }
                },
                None => {
                    let _ = this.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
                Some(Err(_)) => {
                    this.stream.send_reset(Reason::CANCEL);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// A member's reply body on its way to the client: data and trailers as they come, the
/// window given back as data is taken. Ends early, without error, on the member's
/// `RST_STREAM(NO_ERROR)` (RFC 9113 8.1: a complete reply to a request it did not read
/// to the end).
pub struct H2Reply {
    recv: RecvStream,
    data_done: bool,
    _pump: Option<StopPump>,
    /// Counts the call on its connection until the reply is dropped (keep-alive pings).
    conn: Arc<ConnRef>,
}

impl H2Reply {
    pub fn new(recv: RecvStream, pump: Option<StopPump>, conn: Arc<ConnRef>) -> H2Reply {
        H2Reply {
            recv,
            data_done: false,
            _pump: pump,
            conn,
        }
    }

    /// Why strata ended the call's connection to the member, if it did.
    pub fn connection_ended(&self) -> Option<&str> {
        self.conn.ended_why()
    }
}

impl Body for H2Reply {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        Poll::Ready(
            ready!(this.recv.poll_trailers(cx))
                .transpose()
                .map(|t| t.map(Frame::trailers)),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use http::{HeaderMap, Method, Response, Version};
    use http_body_util::{BodyExt, Full};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::upstream::h2::H2Conns;

    #[tokio::test]
    async fn calls_that_need_a_connection_at_once_share_one() {
        use std::sync::atomic::Ordering;
        let (addr, counts) = counting_member().await;
        let accepted = &counts[0];
        let conns = H2Conns::default();
        // Twenty calls at once to a member this thread has no connection to yet.
        let member = strata_bus::Member::new("m-1", addr);
        let opened = futures_util::future::join_all((0..20).map(|_| conns.connect(&member, usize::MAX))).await;
        assert!(opened.iter().all(|o| o.is_ok()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections the member accepted");
        assert!(conns.cached(usize::MAX).is_some());
    }

    /// A member that counts the connections it accepted and the ones that ended.
    async fn counting_member() -> (SocketAddr, Arc<[std::sync::atomic::AtomicUsize; 2]>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let seen = counts.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                seen[0].fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(socket).await.unwrap();
                    while let Some(Ok(_)) = conn.accept().await {}
                    seen[1].fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, counts)
    }

    #[tokio::test(start_paused = true)]
    async fn calls_past_the_limit_per_connection_open_more_and_idle_extras_close() {
        use std::sync::atomic::Ordering;
        let (addr, counts) = counting_member().await;
        let conns = H2Conns::default();
        let take = |per_conn| {
            let conns = &conns;
            async move {
                match conns.cached(per_conn) {
                    Some(open) => open,
                    None => conns
                        .connect(&strata_bus::Member::new("m-1", addr), per_conn)
                        .await
                        .unwrap(),
                }
            }
        };
        // Three calls in flight at one per connection: three connections.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(take(1).await);
        }
        // Without a limit, the next call shares one of them.
        held.push(take(usize::MAX).await);
        // With two per connection, it takes one with a single call (no new one).
        held.push(take(2).await);
        // Each holder sees its connection's count: its calls and its cache entry.
        let mut per_conn: Vec<usize> = held.iter().map(|(_, c)| Arc::strong_count(c)).collect();
        per_conn.sort();
        assert_eq!(
            per_conn,
            [2, 3, 3, 3, 3],
            "two connections with two calls, one with one"
        );
        assert_eq!(settled(&counts[0], 3).await, 3, "connections the member accepted");
        drop(held);
        // Once idle, a call takes an open one.
        let again = take(1).await;
        assert_eq!(counts[0].load(Ordering::SeqCst), 3);
        drop(again);
        // The two extra ones close when they have had no call for a while; the first
        // one stays.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(settled(&counts[1], 2).await, 2, "connections that ended");
        assert!(conns.cached(usize::MAX).is_some());
        assert_eq!(counts[0].load(Ordering::SeqCst), 3);
    }

    /// `count` once it reached `want`, or after two seconds of real time.
    async fn settled(count: &std::sync::atomic::AtomicUsize, want: usize) -> usize {
        use std::sync::atomic::Ordering;
        for _ in 0..200 {
            if count.load(Ordering::SeqCst) >= want {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(10));
        }
        count.load(Ordering::SeqCst)
    }

    /// How a member saw a call's request: all of it, or the reason it was reset.
    type Seen = Result<Bytes, Option<Reason>>;

    /// An h2c member on port 0: reads each call's request to its end, reports it, and
    /// answers it with the same bytes (`/big`: 3 MiB, more than a stream's window) and
    /// `grpc-status: 0` trailers, sending as its flow control allows. `/bidi` answers
    /// its head at once and echoes each frame as it comes.
    async fn member() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, calls) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(socket).await.unwrap();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let big = req.uri().path() == "/big";
                    let mut echo =
                        (req.uri().path() == "/bidi").then(|| respond.send_response(Response::new(()), false).unwrap());
                    let mut body = req.into_body();
                    let mut got = Vec::new();
                    while let Some(data) = body.data().await {
                        match data {
                            Ok(data) => {
                                let _ = body.flow_control().release_capacity(data.len());
                                got.extend_from_slice(&data);
                                if let Some(echo) = &mut echo {
                                    echo.send_data(data, false).unwrap();
                                }
                            }
                            Err(e) => {
                                let _ = seen.send(Err(e.reason()));
                                return;
                            }
                        }
                    }
                    let _ = seen.send(Ok(Bytes::from(got.clone())));
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    if let Some(mut echo) = echo {
                        echo.send_trailers(trailers).unwrap();
                        return;
                    }
                    let mut reply = Bytes::from(if big { vec![7; 3 << 20] } else { got });
                    let mut stream = respond.send_response(Response::new(()), false).unwrap();
                    while !reply.is_empty() {
                        stream.reserve_capacity(reply.len());
                        let room = std::future::poll_fn(|cx| stream.poll_capacity(cx))
                            .await
                            .unwrap()
                            .unwrap();
                        stream.send_data(reply.split_to(room.min(reply.len())), false).unwrap();
                    }
                    stream.send_trailers(trailers).unwrap();
                });
            }
        });
        (addr, calls)
    }

    fn head(addr: SocketAddr, path: &str) -> Parts {
        let req = Request::builder()
            .method(Method::POST)
            .version(Version::HTTP_2)
            .uri(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        req.into_parts().0
    }

    fn whole(bytes: &'static [u8]) -> impl Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static {
        Full::new(Bytes::from_static(bytes)).map_err(|never| match never {})
    }

    /// A request body the test feeds frame by frame.
    struct Streamed(mpsc::Receiver<Bytes>);

    impl Body for Streamed {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|data| data.map(|d| Ok(Frame::data(d))))
        }
    }

    /// The reply head, and whether the request was still streaming then (its pump went
    /// on in a task of its own).
    async fn head_of<B>(sent: Sent<B>, conn: &Arc<ConnRef>) -> (H2Reply, bool)
    where
        B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
    {
        let (res, pump) = tokio::time::timeout(Duration::from_secs(30), sent)
            .await
            .expect("a reply head")
            .unwrap();
        let spawned = pump.is_some();
        (H2Reply::new(res.into_body(), pump, conn.clone()), spawned)
    }

    async fn reply<B>(sent: Sent<B>, conn: &Arc<ConnRef>) -> (Bytes, HeaderMap)
    where
        B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
    {
        let (body, spawned) = head_of(sent, conn).await;
        assert!(!spawned, "the request ended before the reply head: no task for it");
        let got = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .expect("the whole reply")
            .unwrap();
        let trailers = got.trailers().cloned().expect("trailers");
        (got.to_bytes(), trailers)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_complete_request_goes_whole_and_a_streaming_one_is_pumped() {
        let (addr, mut seen) = member().await;
        let conns = H2Conns::default();
        let (mut sender, conn) = conns
            .connect(&strata_bus::Member::new("m-1", addr), usize::MAX)
            .await
            .unwrap();

        // Unary: the body is complete, so it goes from here, with no pump.
        let sent = send(&mut sender, &conn, head(addr, "/echo"), whole(b"hello"))
            .await
            .unwrap();
        assert!(sent.pump.is_none(), "a complete body needs no pump");
        let (data, trailers) = reply(sent, &conn).await;
        assert_eq!(&data[..], b"hello");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(seen.recv().await.unwrap(), Ok(Bytes::from_static(b"hello")));

        // Streaming: what has arrived goes now, the rest through the pump, run by the
        // wait for the reply head (the member answers once the request ended).
        let (frames, body) = mpsc::channel(4);
        frames.send(Bytes::from_static(b"a")).await.unwrap();
        let (mut sender, conn) = conns.cached(usize::MAX).expect("the connection is kept");
        let sent = send(&mut sender, &conn, head(addr, "/echo"), Streamed(body))
            .await
            .unwrap();
        assert!(sent.pump.is_some(), "a body still streaming is pumped");
        frames.send(Bytes::from_static(b"b")).await.unwrap();
        drop(frames);
        let (data, _) = reply(sent, &conn).await;
        assert_eq!(&data[..], b"ab");
        assert_eq!(seen.recv().await.unwrap(), Ok(Bytes::from_static(b"ab")));

        // A call dropped while its request streams (the client went away): the pump
        // resets the member's stream.
        let (frames, body) = mpsc::channel(4);
        let sent = send(&mut sender, &conn, head(addr, "/echo"), Streamed(body))
            .await
            .unwrap();
        frames.send(Bytes::from_static(b"x")).await.unwrap();
        drop(sent);
        let got = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .unwrap();
        assert_eq!(got.unwrap(), Err(Some(Reason::CANCEL)));
        drop(frames);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_still_streaming_at_the_reply_head_is_pumped_by_a_task_until_the_reply_goes() {
        let (addr, mut seen) = member().await;
        let conns = H2Conns::default();
        let (mut sender, conn) = conns
            .connect(&strata_bus::Member::new("m-1", addr), usize::MAX)
            .await
            .unwrap();

        // A bidirectional stream: the reply head comes first, the request streams on.
        let (frames, body) = mpsc::channel(4);
        let sent = send(&mut sender, &conn, head(addr, "/bidi"), Streamed(body))
            .await
            .unwrap();
        let (mut reply, spawned) = head_of(sent, &conn).await;
        assert!(spawned, "the request streams on in a task of its own");
        for message in [&b"one"[..], b"two"] {
            frames.send(Bytes::from_static(message)).await.unwrap();
            let frame = tokio::time::timeout(Duration::from_secs(30), reply.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(frame.into_data().unwrap(), message, "echoed as it was sent");
        }
        drop(frames);
        let rest = tokio::time::timeout(Duration::from_secs(30), reply.collect())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(seen.recv().await.unwrap(), Ok(Bytes::from_static(b"onetwo")));

        // The reply dropped while the request streams: its task resets the stream.
        let (frames, body) = mpsc::channel(4);
        let sent = send(&mut sender, &conn, head(addr, "/bidi"), Streamed(body))
            .await
            .unwrap();
        let (reply, spawned) = head_of(sent, &conn).await;
        assert!(spawned);
        frames.send(Bytes::from_static(b"x")).await.unwrap();
        drop(reply);
        let got = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .unwrap();
        assert_eq!(got.unwrap(), Err(Some(Reason::CANCEL)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_larger_than_the_window_flows_as_it_is_read() {
        let (addr, mut seen) = member().await;
        let conns = H2Conns::default();
        let (mut sender, conn) = conns
            .connect(&strata_bus::Member::new("m-1", addr), usize::MAX)
            .await
            .unwrap();
        // An empty request: its head carries END_STREAM.
        let sent = send(&mut sender, &conn, head(addr, "/big"), whole(b"")).await.unwrap();
        assert!(sent.pump.is_none());
        assert_eq!(seen.recv().await.unwrap(), Ok(Bytes::new()));
        // 3 MiB through a 2 MiB stream window: only if the reply gives the window back.
        let (data, trailers) = reply(sent, &conn).await;
        assert_eq!(data.len(), 3 << 20);
        assert_eq!(trailers["grpc-status"], "0");
    }
}
