//! A 200 MiB blob streamed in and out with bounded memory. Alone in its test binary, so
//! that the peak resident size (`VmHWM`) measures this test and nothing else.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use strata_store::{Cond, Store};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const SIZE: u64 = 200 << 20;
/// Most the peak resident size may grow while the blob goes in and out.
const GROWTH_LIMIT: u64 = 64 << 20;

/// Pseudo-random bytes made on the fly (xorshift), hashed as they are handed out.
struct Generated {
    left: u64,
    state: u64,
    hasher: Sha256,
}

impl AsyncRead for Generated {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(64 << 10) as usize & !7;
        let n = if n == 0 {
            self.left.min(buf.remaining() as u64) as usize
        } else {
            n
        };
        let mut chunk = [0u8; 64 << 10];
        for word in chunk[..n.next_multiple_of(8)].chunks_exact_mut(8) {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            word.copy_from_slice(&x.to_le_bytes());
        }
        self.hasher.update(&chunk[..n]);
        buf.put_slice(&chunk[..n]);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Peak resident set size of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_blob_streams_through_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Warm up: the runtime, the blocking pool and the store's first writes.
    store
        .put_blob("app", "warm", "", &[1u8; 1 << 20][..], Cond::Any)
        .await
        .unwrap();
    let before = vm_hwm();

    let mut body = Generated {
        left: SIZE,
        state: 0x9e37_79b9_7f4a_7c15,
        hasher: Sha256::new(),
    };
    let meta = store
        .put_blob("app", "big.bin", "application/octet-stream", &mut body, Cond::Any)
        .await
        .unwrap();
    assert_eq!(body.left, 0);
    let sent: String = body.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(meta.size, SIZE);
    assert_eq!(meta.etag, sent);

    let (got, mut file) = store.get_blob("app", "big.bin").await.unwrap().unwrap();
    assert_eq!(got, meta);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    let received: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(read, SIZE);
    assert_eq!(received, meta.etag);

    let after = vm_hwm();
    let growth = after.saturating_sub(before);
    eprintln!(
        "peak RSS {} MiB before, {} MiB after: grew {} KiB for a {} MiB blob",
        before >> 20,
        after >> 20,
        growth >> 10,
        SIZE >> 20
    );
    assert!(growth < GROWTH_LIMIT, "peak RSS grew by {growth} bytes");
}
