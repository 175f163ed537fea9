//! The store's durable-write benchmark (run by `bench/store.sh`; see it for settings).
//!
//! In a temp dir under `--dir` (the file system the store would use), each round measures:
//! - raw fdatasync: a 144-byte `pwrite` appended into a preallocated, zero-filled file,
//!   then `fdatasync` (the floor of any durable write on this disk);
//! - single put: one durable `Store::put` of a 128-byte value at a time, awaited, from a
//!   tokio task (the latency a caller sees, channel and wake-ups included). The two are
//!   interleaved op by op, so both see the same disk and the same neighbours;
//! - concurrent puts: `--tasks` tasks each putting 128-byte values back to back for
//!   `--secs` seconds (group commit), as throughput.
//!
//! It prints each round, then the medians over rounds and the ratios against the
//! targets: p50(put) <= 1.5 x p50(fdatasync), concurrent >= 10 x single-put throughput.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::{Cond, Store};

struct Args {
    rounds: usize,
    ops: usize,
    tasks: usize,
    secs: f64,
    dir: PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args {
        rounds: 5,
        ops: 1000,
        tasks: 64,
        secs: 3.0,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = value.parse().expect("--rounds N"),
            "--ops" => a.ops = value.parse().expect("--ops N"),
            "--tasks" => a.tasks = value.parse().expect("--tasks N"),
            "--secs" => a.secs = value.parse().expect("--secs S"),
            "--dir" => a.dir = value.into(),
            _ => panic!("unknown flag {flag} (--rounds, --ops, --tasks, --secs, --dir)"),
        }
    }
    a
}

struct Round {
    fsync_p50: f64,
    fsync_p99: f64,
    put_p50: f64,
    put_p99: f64,
    single_rate: f64,
    concurrent_rate: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn main() {
    let args = parse_args();
    let work = tempfile::tempdir_in(&args.dir).expect("create a temp dir");
    println!(
        "store bench: {} rounds, {} interleaved fdatasync/put pairs, {} tasks x {} s, in {}",
        args.rounds,
        args.ops,
        args.tasks,
        args.secs,
        work.path().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(Store::open(&work.path().join("store")).expect("open the store"));

    // The raw file: preallocated by writing zeros, so appends change no metadata.
    let raw_path = work.path().join("raw.log");
    let raw = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&raw_path)
        .unwrap();
    let raw_len = (args.ops as u64 * args.rounds as u64 + 1) * 144;
    let raw_len = raw_len.next_multiple_of(1 << 20);
    let zeros = vec![0u8; 1 << 20];
    for off in (0..raw_len).step_by(1 << 20) {
        raw.write_all_at(&zeros, off).unwrap();
    }
    raw.sync_all().unwrap();
    let record = [0x5au8; 144];
    let mut raw_pos = 0u64;

    let value = Bytes::from(vec![b'v'; 128]);
    // Warm up: the writer, the runtime, the file's first pages.
    rt.block_on(async {
        for i in 0..50 {
            store
                .put("bench", &format!("warm/{i}"), value.clone(), Cond::Any)
                .await
                .unwrap();
        }
    });

    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        // Interleaved: one raw fdatasync, one durable put.
        let mut fsyncs = Vec::with_capacity(args.ops);
        let mut puts = Vec::with_capacity(args.ops);
        rt.block_on(async {
            for i in 0..args.ops {
                let t = Instant::now();
                raw.write_all_at(&record, raw_pos).unwrap();
                raw.sync_data().unwrap();
                fsyncs.push(t.elapsed().as_secs_f64() * 1e6);
                raw_pos += record.len() as u64;

                let key = format!("single/{r}/{i:08}");
                let t = Instant::now();
                store.put("bench", &key, value.clone(), Cond::Any).await.unwrap();
                puts.push(t.elapsed().as_secs_f64() * 1e6);
            }
        });
        let single_rate = puts.len() as f64 / (puts.iter().sum::<f64>() / 1e6);
        fsyncs.sort_by(f64::total_cmp);
        puts.sort_by(f64::total_cmp);

        // Concurrent puts.
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let elapsed = rt.block_on(async {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for t in 0..args.tasks {
                let (store, done, stop, value) = (store.clone(), done.clone(), stop.clone(), value.clone());
                tasks.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("concurrent/{r}/{t:03}/{i:08}");
                        store.put("bench", &key, value.clone(), Cond::Any).await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                }));
            }
            tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.unwrap();
            }
            start.elapsed()
        });
        let concurrent_rate = done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();

        let round = Round {
            fsync_p50: percentile(&fsyncs, 0.5),
            fsync_p99: percentile(&fsyncs, 0.99),
            put_p50: percentile(&puts, 0.5),
            put_p99: percentile(&puts, 0.99),
            single_rate,
            concurrent_rate,
        };
        println!(
            "round {}: fdatasync p50 {:.0} us p99 {:.0} us | put p50 {:.0} us p99 {:.0} us ({:.2}x) | single {:.0}/s, {} tasks {:.0}/s ({:.1}x)",
            r + 1,
            round.fsync_p50,
            round.fsync_p99,
            round.put_p50,
            round.put_p99,
            round.put_p50 / round.fsync_p50,
            round.single_rate,
            args.tasks,
            round.concurrent_rate,
            round.concurrent_rate / round.single_rate,
        );
        rounds.push(round);
    }

    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let (fsync_p50, put_p50) = (m(|r| r.fsync_p50), m(|r| r.put_p50));
    let (single, concurrent) = (m(|r| r.single_rate), m(|r| r.concurrent_rate));
    let latency_ratio = m(|r| r.put_p50 / r.fsync_p50);
    let throughput_ratio = m(|r| r.concurrent_rate / r.single_rate);
    println!("\nmedians over {} rounds:", args.rounds);
    println!(
        "  raw fdatasync     p50 {:.0} us  p99 {:.0} us",
        fsync_p50,
        m(|r| r.fsync_p99)
    );
    println!(
        "  durable put       p50 {:.0} us  p99 {:.0} us",
        put_p50,
        m(|r| r.put_p99)
    );
    println!("  single-put rate   {single:.0} puts/s");
    println!("  {} tasks          {concurrent:.0} puts/s", args.tasks);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "  p50(put) / p50(fdatasync) = {latency_ratio:.2} (median of per-round ratios; target <= 1.5: {})",
        verdict(latency_ratio <= 1.5)
    );
    println!(
        "  concurrent / single       = {throughput_ratio:.1} (median of per-round ratios; target >= 10: {})",
        verdict(throughput_ratio >= 10.0)
    );
    drop(store);
}
