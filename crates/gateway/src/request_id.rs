//! The request id the gateway gives a request that has none (`X-Request-Id`):
//! `pppppppp-n…`, a per-process prefix and a counter in hex.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::HeaderValue;

/// Request ids: a random node prefix and a counter.
pub(crate) struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> RequestIds {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        RequestIds {
            prefix: (t ^ (std::process::id() as u64).rotate_left(40)) & 0xffff_ffff,
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `pppppppp-nnnn…`: hex digits written straight into one buffer.
        let mut buf = [0u8; 25];
        let hex = |v: u64, out: &mut [u8]| {
            for (i, b) in out.iter_mut().rev().enumerate() {
                *b = b"0123456789abcdef"[((v >> (4 * i)) & 0xf) as usize];
            }
        };
        hex(self.prefix, &mut buf[..8]);
        buf[8] = b'-';
        let digits = (16 - (n.leading_zeros() / 4) as usize).max(1);
        hex(n, &mut buf[9..9 + digits]);
        HeaderValue::from_bytes(&buf[..9 + digits]).expect("hex is a valid header value")
    }
}
