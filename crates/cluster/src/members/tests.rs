use super::*;
use std::net::Ipv4Addr;

/// A member that answers each request (one read) with `reply` once `release` is told,
/// and closes its connections at `stop`.
async fn slow_member(release: Arc<tokio::sync::Notify>, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let (release, stop) = (release.clone(), stop.clone());
            tokio::spawn(async move {
                let serve = async {
                    let mut buf = [0u8; 1024];
                    while conn.read(&mut buf).await.unwrap_or(0) > 0 {
                        release.notified().await;
                        if conn.write_all(b"reply").await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    addr
}

#[test]
fn a_node_that_does_not_hear_itself_keeps_the_other_nodes_members_it_can_reach() {
    use std::time::Instant;
    let bus = Bus::new();
    let membership = Membership::default();
    let record = |node: &str, port: u16| MemberRecord {
        node: node.into(),
        service: "web".into(),
        instance: "web-1".into(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        stopping: false,
    };
    let known = BTreeMap::from([
        ("app.web.b.web-1".to_string(), record("b", 9)),
        ("app.web.c.web-1".to_string(), record("c", 10)),
    ]);
    let mut joined = Joined::default();
    let ids = |bus: &Bus| -> Vec<String> { bus.pool("web").members().iter().map(|m| m.id.clone()).collect() };
    for node in ["a", "b", "c"] {
        membership.heard_at(node, Instant::now());
    }
    sync(&bus, &known, &membership, "a", &mut joined);
    assert_eq!(ids(&bus), ["b/web-1", "c/web-1"]);
    // All silent for longer than DEAD_AFTER: a hears nothing, itself included.
    let long_ago = Instant::now() - crate::DEAD_AFTER * 2;
    for node in ["a", "b", "c"] {
        membership.heard_at(node, long_ago);
    }
    sync(&bus, &known, &membership, "a", &mut joined);
    assert_eq!(
        ids(&bus),
        ["b/web-1", "c/web-1"],
        "the others' members stay while a is deaf"
    );
    assert!(bus.pool("web").local_first(), "and a's own members are picked first");
    // The probe cannot reach c's forwarder: its member is taken out, b's stays.
    let c_member = bus.pool("web").members()[1].clone();
    joined.unreachable = BTreeSet::from([record("c", 10).addr]);
    sync(&bus, &known, &membership, "a", &mut joined);
    assert_eq!(ids(&bus), ["b/web-1"]);
    assert!(c_member.is_gone(), "its calls see it gone");
    assert!(c_member.is_cut(), "and the calls waiting on it end");
    // The next probe reaches it again, a still deaf: it is back.
    joined.unreachable.clear();
    sync(&bus, &known, &membership, "a", &mut joined);
    assert_eq!(ids(&bus), ["b/web-1", "c/web-1"]);
    // Out of reach once more, then a hears itself (the probe's findings forgotten)
    // and c: c's member is joined again. b, silent, is not taken for dead at once
    // (its heartbeat may not have come yet), but once the grace has passed.
    joined.unreachable = BTreeSet::from([record("c", 10).addr]);
    sync(&bus, &known, &membership, "a", &mut joined);
    assert_eq!(ids(&bus), ["b/web-1"]);
    membership.heard_at("a", Instant::now());
    membership.heard_at("c", Instant::now());
    joined.unreachable.clear();
    sync(&bus, &known, &membership, "a", &mut joined);
    assert!(!bus.pool("web").local_first());
    assert_eq!(ids(&bus), ["b/web-1", "c/web-1"], "within the grace, b's member stays");
    joined.deaf_at = Some(Instant::now() - RESUMED_GRACE);
    let b_member = bus.pool("web").members()[0].clone();
    sync(&bus, &known, &membership, "a", &mut joined);
    assert_eq!(ids(&bus), ["c/web-1"], "b's member goes");
    assert!(
        !b_member.is_cut(),
        "not cut: a node taken for dead may still answer the calls it has"
    );
    assert!(joined.parked.is_empty());
}

/// A pool on node a holding node b's one member, both nodes heard just now.
fn b_with_one_member_joined_on_a() -> (
    Arc<Bus>,
    Membership,
    MemberRecord,
    BTreeMap<String, MemberRecord>,
    Joined,
) {
    let bus = Bus::new();
    let membership = Membership::default();
    membership.heard_at("a", std::time::Instant::now());
    membership.heard_at("b", std::time::Instant::now());
    let record = MemberRecord {
        node: "b".into(),
        service: "web".into(),
        instance: "web-1".into(),
        addr: "127.0.0.1:9".parse().unwrap(),
        stopping: false,
    };
    let known = BTreeMap::from([("app.web.b.web-1".to_string(), record.clone())]);
    let mut joined = Joined::default();
    sync(&bus, &known, &membership, "a", &mut joined);
    (bus, membership, record, known, joined)
}

#[test]
fn a_member_whose_key_moves_to_a_new_forwarder_is_joined_anew() {
    let (bus, membership, mut record, mut known, mut joined) = b_with_one_member_joined_on_a();
    let old = bus.pool("web").members()[0].clone();
    record.addr = "127.0.0.1:10".parse().unwrap();
    known.insert("app.web.b.web-1".to_string(), record);
    sync(&bus, &known, &membership, "a", &mut joined);
    let members = bus.pool("web").members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].addr.port(), 10);
    assert!(old.is_gone());
}

#[test]
fn a_member_another_node_stops_leaves_the_pools_marked_stopping() {
    let (bus, membership, mut record, mut known, mut joined) = b_with_one_member_joined_on_a();
    let member = bus.pool("web").members()[0].clone();
    assert!(!member.is_stopping());
    record.stopping = true;
    known.insert("app.web.b.web-1".to_string(), record);
    sync(&bus, &known, &membership, "a", &mut joined);
    assert!(bus.pool("web").members().is_empty());
    assert!(member.is_gone() && member.is_stopping(), "a call its stop cuts says so");
}

#[tokio::test]
async fn a_forwarded_request_holds_its_member_and_outlives_the_forwarders_stop() {
    let release = Arc::new(tokio::sync::Notify::new());
    let stop_member = CancellationToken::new();
    let member = Member::new("web-1", slow_member(release.clone(), stop_member.clone()).await);
    let accepting = CancellationToken::new();
    let traffic = Arc::new(Traffic::default());
    let addr = forward(
        Ipv4Addr::LOCALHOST.into(),
        member.clone(),
        accepting.clone(),
        traffic.clone(),
    )
    .await
    .unwrap();

    // A kept-alive connection: nothing asked, nothing held.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"first").await.unwrap();
    release.notify_one();
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"reply");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(member.held(), 0, "an answered request holds nothing");
    assert_eq!(member.inflight(), 0, "a forwarded request is not this node's load");

    // A request waiting for its reply holds the member, and the forwarder's stop for
    // new connections does not cut it.
    conn.write_all(b"second").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while member.held() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never held its member"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    accepting.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopped forwarder takes no new connection"
    );
    assert_eq!(member.held(), 1);
    release.notify_one();
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"reply", "the request in flight was answered");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(member.held(), 0, "the reply released the member");

    // The member's end closes the pipe.
    stop_member.cancel();
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("the pipe ends with the member's connection");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unpublished_member_is_held_while_other_nodes_keep_sending() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let step = Duration::from_millis(10);

    // Nobody sends: released once the others may have heard.
    let member = Member::new("web-1", addr);
    let start = tokio::time::Instant::now();
    tokio::spawn(release_when_heard(
        member.hold(),
        CancellationToken::new(),
        Arc::new(Traffic::default()),
    ));
    while member.held() > 0 {
        tokio::time::sleep(step).await;
    }
    let took = start.elapsed();
    assert!(took >= HEARD_WITHIN && took < HEARD_WITHIN + 2 * step, "{took:?}");

    // A node slow to hear sends at 250 and 400 ms: held until 200 ms after the last.
    let member = Member::new("web-2", addr);
    let traffic = Arc::new(Traffic::default());
    let start = tokio::time::Instant::now();
    let accepting = CancellationToken::new();
    tokio::spawn(release_when_heard(member.hold(), accepting.clone(), traffic.clone()));
    for at in [250, 400] {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        traffic.request();
    }
    while member.held() > 0 {
        assert!(
            !accepting.is_cancelled(),
            "the forwarder stopped taking connections while held"
        );
        tokio::time::sleep(step).await;
    }
    assert!(
        accepting.is_cancelled(),
        "the forwarder stops before the member is let go"
    );
    let took = start.elapsed();
    let want = Duration::from_millis(400) + QUIET;
    assert!(took >= want && took < want + 2 * step, "{took:?}");

    // A node that never hears and keeps sending is not waited for past HELD_AT_MOST.
    let member = Member::new("web-3", addr);
    let traffic = Arc::new(Traffic::default());
    let start = tokio::time::Instant::now();
    tokio::spawn(release_when_heard(
        member.hold(),
        CancellationToken::new(),
        traffic.clone(),
    ));
    while member.held() > 0 {
        traffic.request();
        tokio::time::sleep(step).await;
    }
    let took = start.elapsed();
    assert!(took >= HELD_AT_MOST && took < HELD_AT_MOST + 2 * step, "{took:?}");
}

#[test]
fn a_remote_members_version_is_stripped_and_its_name_is_instance_at_node() {
    assert_eq!(strip_version("b/web-1-e4d6fc183e96"), "b/web-1");
    assert_eq!(strip_version("b/web-12-000000000000"), "b/web-12");
    assert_eq!(strip_version("b/web-1"), "b/web-1");
    assert_eq!(strip_version("b/my-service-2-e4d6fc18"), "b/my-service-2-e4d6fc18");
    assert_eq!(remote_name("b/web-1-e4d6fc183e96"), "web-1@b");
    assert_eq!(remote_name("node-2/my-service-3-000000000000"), "my-service-3@node-2");
}
