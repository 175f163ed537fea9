//! The pump's tests, on real sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A client and a member, their near ends joined with early bytes each way and a
/// watch that never cuts.
async fn tunnel(to_client: &[u8], to_member: &[u8]) -> (TcpStream, TcpStream, Joined) {
    tunnel_watched(to_client, to_member, Box::new(|_, _| None)).await
}

async fn tunnel_watched(to_client: &[u8], to_member: &[u8], watch: Watch) -> (TcpStream, TcpStream, Joined) {
    let (client, client_near) = crate::tcp_pair().await;
    let (member, member_near) = crate::tcp_pair().await;
    let joined = Joined::new(client_near, member_near, to_client, to_member, watch).unwrap();
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
        // Cut at the first quiet second after bytes moved.
        (!moved && seen.contains(&true)).then_some("idle")
    });
    let (mut client, mut member, joined) = tunnel_watched(b"", b"", watch).await;
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
    assert_eq!(client.read(&mut got).await.unwrap(), 0);
    assert_eq!(member.read(&mut got).await.unwrap(), 0);
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
