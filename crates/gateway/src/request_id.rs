//! The request id the gateway gives a request that has none (`X-Request-Id`), or one
//! not [`acceptable`]: `pppppppp-n…`, a per-process prefix and a number in hex.
//!
//! Each gateway thread counts in a slot of its own (an atomic on a cache line of its
//! own): a shared counter was a cache line that the workers took from each other on
//! every request. Slot `s` gives the numbers `s + k * SLOTS`, so no two slots give the
//! same one; slot 0, shared by the threads that are not workers, stays atomic for them.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::HeaderValue;

use crate::worker::{slot, SLOTS};

/// Longest client-given request id kept.
pub const MAX_LEN: usize = 128;

/// Whether a client's `X-Request-Id` is kept: 1 to [`MAX_LEN`] visible ASCII characters,
/// no space. Another is replaced by the gateway's own: the id goes into the access log's
/// `key=value` line and the traces, where a space would let a client write fields of
/// its own (`rid=a status=500`), and a long one would fill the log.
pub fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// One slot's count, alone on its cache line.
#[repr(align(64))]
struct Count(AtomicU64);

/// Request ids: a random node prefix and a number.
pub(crate) struct RequestIds {
    prefix: u64,
    counts: Box<[Count]>,
}

impl RequestIds {
    pub(crate) fn new() -> RequestIds {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        RequestIds {
            prefix: (t ^ (std::process::id() as u64).rotate_left(40)) & 0xffff_ffff,
            counts: (0..SLOTS).map(|_| Count(AtomicU64::new(0))).collect(),
        }
    }

    pub(crate) fn next(&self) -> HeaderValue {
        self.next_in(slot())
    }

    fn next_in(&self, slot: usize) -> HeaderValue {
        let k = self.counts[slot].0.fetch_add(1, Ordering::Relaxed);
        let n = 1 + slot as u64 + k * SLOTS as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_only_when_it_cannot_forge_log_fields() {
        for good in ["a", "my-req-1", "0af7651916cd43dd:b7ad6b", &"x".repeat(MAX_LEN)] {
            assert!(acceptable(&HeaderValue::from_str(good).unwrap()), "{good:?}");
        }
        for bad in [
            "a b service=evil status=500",
            "tab\there",
            &"x".repeat(MAX_LEN + 1),
            "caf\u{e9}",
        ] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(!acceptable(&value), "{bad:?}");
        }
        assert!(!acceptable(&HeaderValue::from_static("")));
    }

    #[test]
    fn ids_from_every_slot_are_distinct_and_share_the_prefix() {
        let ids = RequestIds::new();
        let mut seen = std::collections::HashSet::new();
        for round in 0..50 {
            for slot in [0, 1, 2, SLOTS - 1] {
                let id = ids.next_in(slot);
                let text = id.to_str().unwrap().to_string();
                let (prefix, number) = text.split_once('-').expect("prefix-number");
                assert_eq!(prefix.len(), 8, "{text}");
                assert_eq!(u64::from_str_radix(prefix, 16).unwrap(), ids.prefix, "{text}");
                assert!(u64::from_str_radix(number, 16).unwrap() > 0, "{text}");
                assert!(seen.insert(text.clone()), "round {round}: {text} given twice");
            }
        }
        // From the thread running this test (slot 0, not a worker).
        assert!(seen.insert(ids.next().to_str().unwrap().to_string()));
    }
}
