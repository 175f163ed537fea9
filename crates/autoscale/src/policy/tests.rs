use super::*;

fn spec(concurrency: u32) -> AutoscaleSpec {
    AutoscaleSpec {
        concurrency,
        up_window_ms: 1_000,
        down_window_ms: 30_000,
        ..AutoscaleSpec::default()
    }
}

/// A pool driven by the policy on a made-up clock, sampled every 100 ms.
struct Sim {
    policy: Policy,
    now: Duration,
    current: u32,
    decisions: Vec<(Duration, u32, u32, String)>,
    last_request: Duration,
}

impl Sim {
    fn new(spec: AutoscaleSpec, min: u32, max: u32, idle_ms: u64) -> Sim {
        Sim {
            policy: Policy::new(spec, min, max, Duration::from_millis(idle_ms)),
            now: Duration::ZERO,
            current: min,
            decisions: Vec::new(),
            last_request: Duration::ZERO,
        }
    }

    /// Runs `ms` of time with this load; every instance is ready at once.
    fn run(&mut self, ms: u64, inflight: u64, held: u64, backlog: Option<Backlog>) -> Recommendation {
        let mut last = None;
        for _ in 0..ms / 100 {
            self.now += Duration::from_millis(100);
            if inflight + held > 0 {
                self.last_request = self.now;
            }
            let r = self.policy.observe(&Sample {
                at: self.now,
                current: self.current,
                ready: self.current,
                inflight,
                held,
                backlog,
                latency: None,
                idle_for: self.now - self.last_request,
            });
            if r.target != self.current {
                self.decisions
                    .push((self.now, self.current, r.target, r.reason.clone()));
                self.current = r.target;
            }
            last = Some(r);
        }
        last.expect("at least one sample")
    }
}

#[test]
fn a_step_in_load_raises_the_target_within_the_up_window() {
    let mut sim = Sim::new(spec(10), 1, 20, 300_000);
    sim.run(5_000, 5, 0, None);
    assert!(
        sim.decisions.is_empty(),
        "steady load under target: {:?}",
        sim.decisions
    );
    // A step under the overload threshold: 3 instances, then 45 in flight (5 needed).
    let mut sim = Sim::new(spec(10), 3, 20, 300_000);
    sim.run(2_000, 20, 0, None);
    let before = sim.now;
    let r = sim.run(1_500, 45, 0, None);
    assert_eq!(r.target, 5, "{}", r.reason);
    let (at, from, to, why) = &sim.decisions[0];
    assert_eq!((*from, *to), (3, 5));
    let waited = *at - before;
    assert!(
        waited >= Duration::from_millis(1_000) && waited <= Duration::from_millis(1_100),
        "taken after {waited:?}: {why}"
    );
    assert!(why.contains("needed throughout the last 1000 ms"), "{why}");
}

#[test]
fn overload_is_taken_at_once() {
    let mut sim = Sim::new(spec(4), 1, 20, 300_000);
    sim.run(1_000, 1, 0, None);
    let before = sim.now;
    let r = sim.run(100, 64, 0, None);
    assert_eq!(r.target, 16, "{}", r.reason);
    assert_eq!(sim.decisions[0].0 - before, Duration::from_millis(100));
    assert!(sim.decisions[0].3.contains("overload"), "{}", sim.decisions[0].3);
    assert!(
        sim.decisions[0].3.contains("64 request(s) in flight"),
        "{}",
        sim.decisions[0].3
    );
}

#[test]
fn idle_shrinks_the_pool_after_the_down_window_and_never_below_min() {
    let mut sim = Sim::new(spec(4), 2, 20, 300_000);
    sim.run(500, 40, 0, None);
    assert_eq!(sim.current, 10);
    // Load stops: nothing happens for the down window, then down to min.
    sim.run(29_000, 0, 0, None);
    assert_eq!(sim.current, 10, "too early: {:?}", sim.decisions);
    sim.run(1_500, 0, 0, None);
    assert_eq!(sim.current, 2, "{:?}", sim.decisions);
    assert!(sim.decisions.last().unwrap().3.contains("instances.min is 2"));
    sim.run(120_000, 0, 0, None);
    assert_eq!(sim.current, 2, "never below min");
}

#[test]
fn min_zero_goes_to_zero_only_once_idle_for_the_idle_timeout() {
    let mut sim = Sim::new(spec(4), 0, 5, 3_000);
    sim.run(1_000, 0, 0, None);
    assert_eq!(sim.current, 0, "nothing runs without demand");
    // A held request at zero: one instance at once.
    let r = sim.run(100, 0, 1, None);
    assert_eq!(r.target, 1, "{}", r.reason);
    sim.run(2_000, 1, 0, None);
    sim.run(2_900, 0, 0, None);
    assert_eq!(sim.current, 1, "kept until idle for 3 s");
    sim.run(200, 0, 0, None);
    assert_eq!(sim.current, 0);
    let why = &sim.decisions.last().unwrap().3;
    assert!(
        why.starts_with("idle for 3000 ms (instances.idle_timeout_ms 3000)"),
        "{why}"
    );

    // A down window shorter than the idle timeout has come to zero by then: the
    // reason is still the idle timeout, which is what lets the pool reach zero.
    let short = AutoscaleSpec {
        down_window_ms: 1_000,
        ..spec(4)
    };
    let mut sim = Sim::new(short, 0, 5, 3_000);
    sim.run(100, 0, 1, None);
    sim.run(3_200, 0, 0, None);
    assert_eq!(sim.current, 0);
    let why = &sim.decisions.last().unwrap().3;
    assert!(why.starts_with("idle for"), "{why}");

    // A function's reason names its own setting.
    let mut sim = Sim::new(spec(4), 0, 5, 3_000);
    sim.policy = Policy::new(spec(4), 0, 5, Duration::from_millis(3_000)).idle_setting("keep_warm_ms");
    sim.run(100, 0, 1, None);
    sim.run(3_200, 0, 0, None);
    assert_eq!(sim.current, 0);
    let why = &sim.decisions.last().unwrap().3;
    assert!(why.starts_with("idle for 3000 ms (keep_warm_ms 3000)"), "{why}");
}

#[test]
fn oscillating_load_does_not_make_the_pool_oscillate() {
    let mut sim = Sim::new(spec(10), 1, 20, 300_000);
    for _ in 0..30 {
        sim.run(2_000, 40, 0, None);
        sim.run(2_000, 0, 0, None);
    }
    assert_eq!(sim.decisions.len(), 1, "one step up, then steady: {:?}", sim.decisions);
    assert_eq!(sim.current, 4);
    // And down once the oscillation stops for a whole window.
    sim.run(31_000, 0, 0, None);
    assert_eq!(sim.current, 1);
    assert_eq!(sim.decisions.len(), 2);
}

#[test]
fn after_an_overload_further_growth_is_taken_at_once() {
    let mut sim = Sim::new(spec(4), 1, 20, 300_000);
    sim.run(1_000, 1, 0, None);
    // The first reading of a step catches it half way.
    sim.run(100, 40, 0, None);
    assert_eq!(sim.current, 10);
    let before = sim.now;
    sim.run(100, 64, 0, None);
    assert_eq!(sim.current, 16, "{:?}", sim.decisions);
    assert_eq!(sim.decisions[1].0 - before, Duration::from_millis(100));
    assert!(
        sim.decisions[1].3.contains("still overloaded"),
        "{}",
        sim.decisions[1].3
    );
    // Once the panic is over, growth waits for the up window again.
    sim.run(5_000, 64, 0, None);
    let before = sim.now;
    sim.run(2_000, 72, 0, None);
    let (at, from, to, _) = sim.decisions.last().unwrap().clone();
    assert_eq!((from, to), (16, 18));
    assert!(at - before >= Duration::from_millis(1_000), "{:?}", sim.decisions);
}

#[test]
fn a_short_spike_under_the_overload_threshold_is_ignored() {
    let mut sim = Sim::new(spec(10), 4, 20, 300_000);
    sim.run(2_000, 30, 0, None);
    sim.run(500, 60, 0, None); // 6 needed, less than 2 x 4, for half the up window
    sim.run(2_000, 30, 0, None);
    assert!(sim.decisions.is_empty(), "{:?}", sim.decisions);
}

#[test]
fn the_target_stops_at_max_and_says_so() {
    let mut sim = Sim::new(spec(4), 1, 8, 300_000);
    let r = sim.run(300, 100, 0, None);
    assert_eq!(r.target, 8);
    assert!(r.at_max, "at max: excess load is shed");
    let r = sim.run(31_000, 4, 0, None);
    assert_eq!(r.target, 1);
    assert!(!r.at_max);
}

#[test]
fn bounded_steps_are_paced() {
    let mut s = spec(4);
    s.max_step_up = 2;
    s.max_step_down = 1;
    let mut sim = Sim::new(s, 1, 20, 300_000);
    sim.run(100, 64, 0, None);
    assert_eq!(sim.current, 3, "one step of 2");
    sim.run(1_000, 64, 0, None);
    assert!(
        sim.current >= 9,
        "steps continue as instances get ready: {}",
        sim.current
    );
    sim.run(1_000, 64, 0, None);
    assert_eq!(sim.current, 16);
    assert!(sim.decisions.iter().all(|d| d.2 - d.1 <= 2), "{:?}", sim.decisions);
    // Load stops: after the down window, one instance at a time, a second apart, all
    // the way down to min (15 steps from 16 to 1).
    let stopped = sim.now;
    sim.run(50_000, 0, 0, None);
    assert_eq!(sim.current, 1, "{:?}", sim.decisions);
    let downs: Vec<_> = sim.decisions.iter().filter(|d| d.2 < d.1).collect();
    assert_eq!(downs.len(), 15, "{downs:?}");
    assert!(downs.iter().all(|d| d.1 - d.2 == 1), "{downs:?}");
    assert!(downs[0].0 - stopped >= Duration::from_secs(30), "{downs:?}");
    for pair in downs.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= DOWN_STEP_SPACING && gap < DOWN_STEP_SPACING + Duration::from_millis(200),
            "steps down {gap:?} apart: {pair:?}"
        );
    }
}

#[test]
fn a_growing_backlog_scales_out_at_once_and_a_steady_one_by_its_target() {
    let mut s = spec(4);
    s.backlog = 100;
    let mut sim = Sim::new(s, 1, 20, 300_000);
    let growing = Backlog {
        messages: 150,
        arriving_per_s: 500.0,
        draining_per_s: 100.0,
    };
    let r = sim.run(100, 0, 0, Some(growing));
    assert_eq!(r.target, 2, "{}", r.reason);
    assert_eq!(r.signal, Signal::Backlog);
    assert!(r.reason.contains("drained in 1.5 s"), "{}", r.reason);
    assert!(r.reason.contains("growing faster"), "{}", r.reason);
    // A large backlog that drains: sized by its target after the up window.
    let big = Backlog {
        messages: 550,
        arriving_per_s: 0.0,
        draining_per_s: 300.0,
    };
    let r = sim.run(1_200, 0, 0, Some(big));
    assert_eq!(r.target, 6, "{}", r.reason);
    // A consuming pool at zero starts on any backlog.
    let mut sim = Sim::new(spec(4), 0, 4, 60_000);
    let r = sim.run(
        100,
        0,
        0,
        Some(Backlog {
            messages: 1,
            ..Backlog::default()
        }),
    );
    assert_eq!(r.target, 1, "{}", r.reason);
}

/// One publish that is one batch for the one instance there (walk of stop 51: it
/// took the pool to its max in 400 ms), and an overload's step that the next sample,
/// taken before the new instance is ready, took back at once (it launched and killed
/// an instance every 100 ms).
#[test]
fn a_burst_the_pool_holds_adds_nothing_and_an_overload_step_is_kept() {
    let mut s = spec(1);
    s.backlog = 10;
    let mut sim = Sim::new(s.clone(), 1, 4, 300_000);
    // Ten messages arrive at once and stay leased by the one instance for 5 s: the
    // rates say "arriving 10/s, not draining" for a second.
    let burst = Backlog {
        messages: 10,
        arriving_per_s: 10.0,
        draining_per_s: 0.0,
    };
    let r = sim.run(2_000, 1, 0, Some(burst));
    assert_eq!(r.target, 1, "{}", r.reason);
    assert!(sim.decisions.is_empty(), "{:?}", sim.decisions);

    // A backlog past the pool's worth that grows: one step at once; the samples
    // after it, with the new instance not ready yet and less wanted, keep it.
    let mut policy = Policy::new(s, 1, 4, Duration::from_secs(300));
    let sample = |ms: u64, current: u32, ready: u32, messages: u64| Sample {
        at: Duration::from_millis(ms),
        current,
        ready,
        inflight: 1,
        backlog: Some(Backlog {
            messages,
            arriving_per_s: 30.0,
            draining_per_s: 0.0,
        }),
        ..Sample::default()
    };
    let r = policy.observe(&sample(100, 1, 1, 5));
    assert_eq!(r.target, 1, "{}", r.reason);
    let r = policy.observe(&sample(200, 1, 1, 15));
    assert_eq!(r.target, 2, "{}", r.reason);
    assert!(r.reason.contains("overload (backlog growing"), "{}", r.reason);
    for ms in (300..=3_000).step_by(100) {
        let r = policy.observe(&sample(ms, 2, 1, 8));
        assert_eq!(r.target, 2, "at {ms} ms: {}", r.reason);
    }
}

#[test]
fn latency_over_its_target_grows_the_pool() {
    let mut s = spec(100);
    s.latency_ms = Some(100);
    let mut policy = Policy::new(s, 2, 10, Duration::from_secs(300));
    let mut r = None;
    for i in 1..=15 {
        r = Some(policy.observe(&Sample {
            at: Duration::from_millis(i * 100),
            current: 2,
            ready: 2,
            inflight: 20,
            latency: Some(Duration::from_millis(250)),
            ..Sample::default()
        }));
    }
    let r = r.unwrap();
    assert_eq!(r.target, 5, "{}", r.reason);
    assert_eq!(r.signal, Signal::Latency);
    assert!(r.reason.contains("mean latency 250 ms"), "{}", r.reason);
}
