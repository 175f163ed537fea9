//! The pump's tests, on real sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A client and a member, their near ends joined with early bytes each way and a
/// watch that never cuts.
async fn tunnel(to_client: &[u8], to_member: &[u8]) -> (TcpStream, TcpStream, Joined) {
    tunnel_watched(to_client, to_member, Box::new(|_, _| None), false).await
}

async fn tunnel_watched(
    to_client: &[u8],
    to_member: &[u8],
    watch: Watch,
    websocket: bool,
) -> (TcpStream, TcpStream, Joined) {
    let (client, client_near) = crate::tcp_pair().await;
    let (member, member_near) = crate::tcp_pair().await;
    let joined = Joined::new(client_near, member_near, to_client, to_member, watch, websocket).unwrap();
    (client, member, joined)
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(seed) % 251) as u8).collect()
}

/// Writes `out` then ends its stream, while reading everything the other way until
/// the end: what it read. The reads are slow at first, so that the tunnel's writes
/// to this side fill the socket and wait.
async fn exchange(mut s: TcpStream, out: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = s.split();
    let write = async {
        w.write_all(&out).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let read = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 7000];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                break got;
            }
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::join!(write, read).1
}

#[tokio::test]
async fn bytes_cross_both_ways_early_bytes_first_through_full_sockets_and_both_ends_pass() {
    let (client, member, joined) = tunnel(b"member-early ", b"client-early ").await;
    // More than the sockets hold each way, sent at once both ways: the tunnel's
    // writes come back short, keep what is left, and hold back the reads.
    let (up, down) = (data(8 << 20, 7), data(6 << 20, 13));
    let (at_member, at_client) = tokio::join!(exchange(member, down.clone()), exchange(client, up.clone()));
    assert_eq!(&at_member[..13], b"client-early ");
    assert!(
        at_member[13..] == up[..],
        "client to member: {} bytes of {}",
        at_member.len() - 13,
        up.len()
    );
    assert_eq!(&at_client[..13], b"member-early ");
    assert!(
        at_client[13..] == down[..],
        "member to client: {} bytes of {}",
        at_client.len() - 13,
        down.len()
    );
    // Both streams ended: so has the tunnel.
    let ended = tokio::time::timeout(Duration::from_secs(5), joined.ended())
        .await
        .expect("the tunnel ends once both sides have");
    assert!(matches!(ended, Ended::Both), "{ended:?}");
}

#[tokio::test]
async fn one_end_is_passed_on_and_the_other_way_goes_on() {
    let (mut client, mut member, joined) = tunnel(b"", b"").await;
    client.write_all(b"bye").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    member.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye", "the client's end reaches the member as an end");
    // The member still answers.
    member.write_all(b"answer").await.unwrap();
    let mut got = [0u8; 6];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"answer");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), joined.ended())
            .await
            .is_err(),
        "over before the member's end"
    );
    member.shutdown().await.unwrap();
    assert_eq!(client.read(&mut got).await.unwrap(), 0);
    assert!(matches!(joined.ended().await, Ended::Both));
}

#[tokio::test]
async fn dropping_the_tunnel_closes_both_sides_and_a_reset_ends_it_with_the_error() {
    let (mut client, mut member, joined) = tunnel(b"", b"").await;
    drop(joined);
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    assert_eq!(member.read(&mut buf).await.unwrap(), 0);

    // A member that resets its connection: the tunnel ends with the error.
    let (mut client, member, joined) = tunnel(b"", b"").await;
    let member = member.into_std().unwrap();
    socket_linger_zero(&member);
    drop(member);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        // Writing toward the gone member shows the reset, if the read did not.
        loop {
            let _ = client.write_all(b"x").await;
            if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(joined.poll_ended(cx))).await {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a reset ends the tunnel");
    assert!(matches!(ended, Ended::Failed(_)), "{ended:?}");
}

/// The watch is called once a WATCH with whether bytes moved since, and cuts the
/// tunnel when it says so; the sockets close when it is dropped.
#[tokio::test]
async fn the_watch_sees_bytes_move_and_cuts_the_tunnel() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let watch: Watch = Box::new(move |_, moved| {
        let mut seen = record.lock().unwrap();
        seen.push(moved);
        // Asked to close gracefully at the first quiet second after bytes moved (which
        // sends nothing: not a WebSocket), cut at the next.
        let quiet = seen.iter().skip_while(|m| !**m).filter(|m| !**m).count();
        match quiet {
            0 => None,
            1 => Some(Limit::Close("idle")),
            _ => Some(Limit::Cut("idle")),
        }
    });
    let (mut client, mut member, joined) = tunnel_watched(b"", b"", watch, false).await;
    client.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    member.read_exact(&mut got).await.unwrap();
    let ended = tokio::time::timeout(WATCH * 5, joined.ended())
        .await
        .expect("cut within a few watches");
    assert!(matches!(ended, Ended::Cut("idle")), "{ended:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&false), "{seen:?}");
    assert!(seen.contains(&true), "the read was seen: {seen:?}");
    drop(joined);
    // Nothing but the end reached either side.
    assert_eq!(client.read(&mut got).await.unwrap(), 0);
    assert_eq!(member.read(&mut got).await.unwrap(), 0);
}

/// A frame as the member sends it: unmasked, a length under 126.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// Reads what `s` has within `wait`.
async fn read_for(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A WebSocket tunnel told to close: the client gets a Close of the pump's own once the
/// member's frame under way has passed, nothing of the member's after it, and the
/// handshake's other half goes through to the member; the tunnel then ends as both
/// sides end, not cut.
#[tokio::test]
async fn a_websocket_tunnel_told_to_close_sends_the_client_a_close_between_two_frames() {
    let close = Arc::new(AtomicBool::new(false));
    let asked = close.clone();
    let watch: Watch = Box::new(move |_, _| asked.load(Ordering::SeqCst).then_some(Limit::Close("idle")));
    // The member's early bytes: a whole frame and the start of the next.
    let first = frame(0x1, b"early");
    let second = frame(0x1, b"a message in two parts");
    let mut early = first.clone();
    early.extend_from_slice(&second[..5]);
    let (mut client, mut member, joined) = tunnel_watched(&early, b"", watch, true).await;
    assert_eq!(read_for(&mut client, Duration::from_millis(300)).await, early);

    // Asked while the member's frame is still under way: nothing is sent yet.
    close.store(true, Ordering::SeqCst);
    assert_eq!(
        read_for(&mut client, WATCH * 2).await,
        b"",
        "no Close in the middle of a frame"
    );

    // The frame ends (and one more follows in the same write): the Close comes after.
    let third = frame(0x2, b"third");
    let mut rest = second[5..].to_vec();
    rest.extend_from_slice(&third);
    member.write_all(&rest).await.unwrap();
    let got = read_for(&mut client, WATCH * 2 + Duration::from_millis(500)).await;
    let mut want = rest.clone();
    want.extend_from_slice(b"\x88\x06\x03\xe9idle");
    assert_eq!(got, want, "the frames, then a Close (1001, \"idle\")");

    // What the member sends now is dropped; the client's Close in answer reaches it.
    member.write_all(&frame(0x1, b"too late")).await.unwrap();
    let answer = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9];
    client.write_all(&answer).await.unwrap();
    let mut got = [0u8; 8];
    member.read_exact(&mut got).await.unwrap();
    assert_eq!(got, answer);
    // The member answers and closes; the client sees the end and nothing else.
    member.write_all(&frame(0x8, &[0x03, 0xe9])).await.unwrap();
    member.shutdown().await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"", "nothing after the pump's Close");
    client.shutdown().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), joined.ended())
        .await
        .expect("over once both sides ended");
    assert!(matches!(ended, Ended::Both), "{ended:?}");
}

/// A side that sent a Close already is closing on its own: the pump adds none.
#[tokio::test]
async fn no_close_of_the_pumps_own_once_a_side_has_sent_one() {
    let watch: Watch = Box::new(|_, _| Some(Limit::Close("idle")));
    let (mut client, mut member, _joined) = tunnel_watched(b"", b"", watch, true).await;
    let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];
    client.write_all(&close).await.unwrap();
    let mut got = [0u8; 8];
    member.read_exact(&mut got).await.unwrap();
    assert_eq!(
        read_for(&mut client, WATCH * 2).await,
        b"",
        "the member's answer is the client's to get"
    );
    member.write_all(&frame(0x8, &[0x03, 0xe8])).await.unwrap();
    assert_eq!(
        read_for(&mut client, Duration::from_millis(500)).await,
        frame(0x8, &[0x03, 0xe8])
    );
}

fn socket_linger_zero(s: &std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is valid for reads of its size; the socket is open.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// Many tunnels on one pump, made and dropped in turn (slots are reused), each
/// echoing through a member: every message comes back to its own client.
#[tokio::test]
async fn many_tunnels_on_one_pump_each_keep_their_own_bytes() {
    for wave in 0..3u8 {
        let mut tasks = Vec::new();
        for i in 0..40u8 {
            let (mut client, mut member, joined) = tunnel(&[wave, i], b"").await;
            tasks.push(tokio::spawn(async move {
                let mut first = [0u8; 2];
                client.read_exact(&mut first).await.unwrap();
                assert_eq!(first, [wave, i], "the early bytes of this tunnel");
                for round in 0..50u8 {
                    let msg = [i, round, wave];
                    client.write_all(&msg).await.unwrap();
                    let mut got = [0u8; 3];
                    member.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, msg);
                    member.write_all(&got).await.unwrap();
                    client.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, msg);
                }
                drop(joined);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}

/// A WebSocket member that goes away without a Close (it died) between two of its
/// frames: its client gets a Close (1011) of the pump's own, then the end, whether the
/// member's stream ended or was reset, and when the client was writing to it as it
/// went (the write may see the reset before a read does); one that ends in the middle
/// of a frame only ends.
#[tokio::test]
async fn a_websocket_member_gone_without_a_close_leaves_its_client_one() {
    let close = b"\x88\x20\x03\xf3the service instance went away".to_vec();
    for (reset, writing) in [(false, false), (true, false), (true, true)] {
        let (mut client, member, joined) = tunnel_watched(b"", b"", Box::new(|_, _| None), true).await;
        let mut member = member;
        let last = frame(0x1, b"last words");
        member.write_all(&last).await.unwrap();
        assert_eq!(read_for(&mut client, Duration::from_millis(300)).await, last);
        if reset {
            let member = member.into_std().unwrap();
            socket_linger_zero(&member);
            drop(member);
        } else {
            drop(member);
        }
        if writing {
            for _ in 0..20 {
                // A masked text frame, as a client sends it.
                if client.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']).await.is_err() {
                    break;
                }
            }
        }
        assert_eq!(
            read_to_end(&mut client).await,
            close,
            "reset: {reset}, writing: {writing}"
        );
        drop(client);
        drop(joined);
    }

    let (mut client, mut member, _joined) = tunnel_watched(b"", b"", Box::new(|_, _| None), true).await;
    let half = frame(0x1, b"cut in the middle");
    member.write_all(&half[..6]).await.unwrap();
    drop(member);
    assert_eq!(
        read_to_end(&mut client).await,
        &half[..6],
        "no Close in the middle of a frame"
    );
}

/// What `s` reads until its end, which must come within 5 s.
async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the side ends")
        .unwrap();
    got
}
