//! The floors under target (a): one fdatasync of a small write into a preallocated file,
//! and one unloaded HTTP round trip to the node.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::measure::Latencies;

const PREALLOCATED: u64 = 64 << 20;

/// Writes `size` bytes at the next position of a file whose blocks were written and
/// synced beforehand (so no block allocation or size change needs the journal), then
/// fdatasyncs; repeated for `secs`. Runs on a blocking thread.
pub fn fsync(dir: &Path, size: usize, secs: f64) -> Result<Latencies> {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PREALLOCATED / zeros.len() as u64 {
        file.write_all(&zeros).context("preallocate the probe file")?;
    }
    file.sync_all().context("sync the preallocated probe file")?;
    let record = vec![b'x'; size];
    let mut lat = Latencies::default();
    let mut at = 0u64;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline && at + size as u64 <= PREALLOCATED {
        let t = Instant::now();
        file.write_all_at(&record, at).context("write to the probe file")?;
        file.sync_data().context("fdatasync the probe file")?;
        lat.push(t.elapsed());
        at += size as u64;
    }
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    Ok(lat)
}

/// `GET /v1/health` one at a time on one kept-alive connection, for `secs` after a
/// warm-up; waits up to `wait` for the node to answer at all. With a `gap`, the calling
/// thread sleeps that long before each call (not timed), so that each round trip starts
/// from idle threads on both sides, as a publish's answer does after the node waited
/// for JetStream.
pub async fn health(client: &strata_client::Client, secs: f64, wait: Duration, gap: Duration) -> Result<Latencies> {
    let give_up = Instant::now() + wait;
    loop {
        match client.health().await {
            Ok(()) => break,
            Err(e) if Instant::now() < give_up => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("the node API does not answer GET /v1/health"),
        }
    }
    for _ in 0..200 {
        client.health().await?;
    }
    let mut lat = Latencies::default();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        if !gap.is_zero() {
            // Blocks this thread on purpose: no tokio timer (1 ms granularity).
            std::thread::sleep(gap);
        }
        let t = Instant::now();
        client.health().await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}
