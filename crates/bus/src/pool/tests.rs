use super::*;

#[test]
fn on_equal_load_a_local_member_is_preferred_to_a_remote_one() {
    let pool = Pool::new("web");
    pool.join(Member::new_remote("b/web-1", "web-1@b", addr(1)));
    pool.join(Member::new("web-1", addr(2)));
    for _ in 0..200 {
        assert_eq!(pool.pick(&[]).unwrap().id, "web-1");
    }
    // Busier, the local member loses to the idle remote one.
    let local = pool.members().iter().find(|m| !m.is_remote()).unwrap().clone();
    let _busy = local.begin();
    assert!((0..50).any(|_| pool.pick(&[]).unwrap().id == "b/web-1"));
}

#[test]
fn local_first_picks_a_local_member_whatever_its_load_and_else_a_remote_one() {
    let pool = Pool::new("web");
    pool.join(Member::new_remote("b/web-1", "web-1@b", addr(1)));
    pool.join(Member::new("web-1", addr(2)));
    let local = pool.members().iter().find(|m| !m.is_remote()).unwrap().clone();
    let _busy = (local.begin(), local.begin());
    pool.set_local_first(true);
    for _ in 0..100 {
        assert_eq!(pool.pick(&[]).unwrap().id, "web-1");
    }
    // Tried already (or passed over): the remote one, rather than none.
    assert_eq!(pool.pick(std::slice::from_ref(&local)).unwrap().id, "b/web-1");
    pool.leave("web-1");
    assert_eq!(pool.pick(&[]).unwrap().id, "b/web-1");
    pool.set_local_first(false);
    assert!(!pool.local_first());
}

#[tokio::test]
async fn cutting_a_member_ends_the_calls_waiting_on_it_and_later_ones_at_once() {
    let member = Member::new_remote("b/web-1", "web-1@b", addr(1));
    let waiting = tokio::spawn({
        let member = member.clone();
        async move { member.until_cut().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    assert!(!member.is_cut());
    member.cut();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), member.until_cut())
        .await
        .unwrap();
    assert!(member.is_cut());
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn membership_follows_join_and_leave() {
    let pool = Pool::new("web");
    let ready = pool.watch_ready();
    assert!(pool.pick(&[]).is_none());
    pool.join(Member::new("web-1", addr(1)));
    pool.join(Member::new("web-2", addr(2)));
    assert_eq!(*ready.borrow(), 2);
    pool.leave("web-1");
    assert_eq!(*ready.borrow(), 1);
    for _ in 0..100 {
        assert_eq!(pool.pick(&[]).unwrap().id, "web-2");
    }
}

#[test]
fn pick_spreads_and_prefers_less_loaded() {
    let pool = Pool::new("web");
    for i in 0..4 {
        pool.join(Member::new(format!("web-{i}"), addr(i)));
    }
    let mut counts = [0usize; 4];
    for _ in 0..4000 {
        let m = pool.pick(&[]).unwrap();
        counts[m.addr.port() as usize] += 1;
    }
    for c in counts {
        assert!(c > 500, "uneven spread: {counts:?}");
    }
    // A member with many requests in flight is chosen far less often.
    let busy = pool.members()[0].clone();
    let _guards: Vec<_> = (0..10).map(|_| busy.begin()).collect();
    let busy_picks = (0..3000)
        .filter(|_| Arc::ptr_eq(&pool.pick(&[]).unwrap(), &busy))
        .count();
    assert_eq!(busy_picks, 0, "p2c never prefers the loaded member over an idle one");
}

#[test]
fn pick_skips_tried_and_suspected_members() {
    let pool = Pool::new("web");
    pool.join(Member::new("web-1", addr(1)));
    pool.join(Member::new("web-2", addr(2)));
    let first = pool.pick(&[]).unwrap();
    for _ in 0..100 {
        let other = pool.pick(std::slice::from_ref(&first)).unwrap();
        assert!(!Arc::ptr_eq(&other, &first));
    }
    pool.suspect(&first);
    let remaining = pool.pick(&[]).unwrap();
    assert!(!Arc::ptr_eq(&remaining, &first));
    assert!(pool.pick(&[remaining]).is_none());
}

#[test]
fn least_loaded_under_skips_full_tried_and_suspected_members() {
    let pool = Pool::new("web");
    let (a, b, c) = (
        Member::new("web-1", addr(1)),
        Member::new("web-2", addr(2)),
        Member::new("web-3", addr(3)),
    );
    for m in [&a, &b, &c] {
        pool.join(m.clone());
    }
    let _a: Vec<_> = (0..3).map(|_| a.begin()).collect();
    let _b: Vec<_> = (0..1).map(|_| b.begin()).collect();
    let _c: Vec<_> = (0..2).map(|_| c.begin()).collect();
    assert!(Arc::ptr_eq(&pool.least_loaded_under(3, &[]).unwrap(), &b));
    assert!(Arc::ptr_eq(
        &pool.least_loaded_under(3, std::slice::from_ref(&b)).unwrap(),
        &c
    ));
    pool.suspect(&c);
    assert!(pool.least_loaded_under(3, std::slice::from_ref(&b)).is_none());
    assert!(pool.least_loaded_under(1, &[]).is_none(), "none under the limit");
}

#[test]
fn a_request_ending_wakes_a_caller_waiting_for_room() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = Arc::new(Pool::new("web"));
        let m = Member::new("web-1", addr(1));
        pool.join(m.clone());
        let guard = m.begin();
        // Room already: at once.
        let t = tokio::time::Instant::now();
        pool.until_room(Duration::from_secs(5), || true).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        // No room: until the request ends, not the whole wait.
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let t = tokio::time::Instant::now();
                pool.until_room(Duration::from_secs(5), || false).await;
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(guard);
        assert_eq!(waiter.await.unwrap(), Duration::from_millis(50));
        // Nothing ends: a member joining ends the wait, and otherwise `within`.
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let t = tokio::time::Instant::now();
                pool.until_room(Duration::from_secs(5), || false).await;
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        pool.join(Member::new("web-2", addr(2)));
        assert_eq!(waiter.await.unwrap(), Duration::from_millis(30));
        let t = tokio::time::Instant::now();
        pool.until_room(Duration::from_millis(100), || false).await;
        assert_eq!(t.elapsed(), Duration::from_millis(100));
    });
}

#[test]
fn served_total_keeps_the_counts_of_members_that_left() {
    let pool = Pool::new("web");
    let m = Member::new("web-1", addr(1));
    pool.join(m.clone());
    drop((0..3).map(|_| m.begin()).collect::<Vec<_>>());
    pool.leave("web-1");
    let n = Member::new("web-2", addr(2));
    pool.join(n.clone());
    drop(n.begin());
    assert_eq!(pool.served_total(), 4);
}

#[test]
fn inflight_counts_until_guard_drops() {
    let m = Member::new("web-1", addr(1));
    let g = m.begin();
    assert_eq!(m.inflight(), 1);
    drop(g);
    assert_eq!(m.inflight(), 0);
    assert_eq!(m.served(), 1);
}
