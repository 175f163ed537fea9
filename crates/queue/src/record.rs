//! The on-disk form of one message in a segment.
//!
//! ```text
//! u32 len      bytes after this 8-byte header (the body); 0 marks the zero-filled end
//! u32 crc      CRC-32 of the body
//! body:
//!   u64 offset
//!   u64 timestamp_ms  wall clock (`strata_os::clock::now_ms`)
//!   u8  flags  bit 0 dedupe id, bit 1 reply-to, bit 2 correlation id, bit 3 the
//!              publisher's W3C `traceparent` (so delivery continues its trace),
//!              bit 4 a dead letter's origin ([`DeadLetter::text`])
//!   for each flag set, in that order: u16 length, bytes
//!   payload    the rest of the body
//! ```
//! All integers little-endian. A record is never split across segments.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

pub(crate) const HEADER: usize = 8;
/// offset + timestamp + flags.
pub(crate) const FIXED: usize = 17;
/// Longest dedupe id, reply-to, correlation id or traceparent.
pub const MAX_ATTR: usize = 1024;

const F_DEDUPE: u8 = 1;
const F_REPLY_TO: u8 = 2;
const F_CORRELATION: u8 = 4;
const F_TRACE: u8 = 8;
const F_ORIGIN: u8 = 16;

/// Where a message of a dead-letter queue (`NAME.dlq`) came from: the group that gave up
/// on it, its offset and publish time in `NAME`, and how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub group: String,
    pub offset: u64,
    pub timestamp_ms: u64,
    pub deliveries: u32,
}

impl DeadLetter {
    /// Its stored form: `OFFSET TIMESTAMP_MS DELIVERIES GROUP` (the group last, as it is
    /// the one part that is not a number).
    pub fn text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.offset, self.timestamp_ms, self.deliveries, self.group
        )
    }

    /// Reads [`DeadLetter::text`] back; None when it is not of that form.
    pub fn parse(text: &str) -> Option<DeadLetter> {
        let mut parts = text.splitn(4, ' ');
        let offset = parts.next()?.parse().ok()?;
        let timestamp_ms = parts.next()?.parse().ok()?;
        let deliveries = parts.next()?.parse().ok()?;
        let group = parts.next().filter(|g| !g.is_empty())?.to_string();
        Some(DeadLetter {
            group,
            offset,
            timestamp_ms,
            deliveries,
        })
    }
}

/// A message as a publisher hands it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    pub payload: Bytes,
    pub dedupe_id: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` of the span that published it, when it was traced.
    pub traceparent: Option<String>,
    /// Set on the copy a dead-letter queue stores: where it came from.
    pub dead_letter: Option<DeadLetter>,
}

impl NewMessage {
    pub fn new(payload: impl Into<Bytes>) -> NewMessage {
        NewMessage {
            payload: payload.into(),
            ..NewMessage::default()
        }
    }

    fn attrs(&self) -> [(u8, Option<Cow<'_, str>>); 5] {
        [
            (F_DEDUPE, self.dedupe_id.as_deref().map(Cow::Borrowed)),
            (F_REPLY_TO, self.reply_to.as_deref().map(Cow::Borrowed)),
            (F_CORRELATION, self.correlation_id.as_deref().map(Cow::Borrowed)),
            (F_TRACE, self.traceparent.as_deref().map(Cow::Borrowed)),
            (F_ORIGIN, self.dead_letter.as_ref().map(|d| Cow::Owned(d.text()))),
        ]
    }

    /// Bytes this message takes in a segment.
    pub(crate) fn encoded_len(&self) -> usize {
        let attrs: usize = self
            .attrs()
            .iter()
            .filter_map(|(_, a)| a.as_ref().map(|a| 2 + a.len()))
            .sum();
        HEADER + FIXED + attrs + self.payload.len()
    }

    pub(crate) fn encode(&self, offset: u64, timestamp_ms: u64, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32_le(0);
        out.put_u32_le(0);
        out.put_u64_le(offset);
        out.put_u64_le(timestamp_ms);
        let attrs = self.attrs();
        let flags = attrs.iter().filter(|(_, a)| a.is_some()).fold(0, |f, (bit, _)| f | bit);
        out.put_u8(flags);
        for (_, attr) in attrs {
            if let Some(attr) = attr {
                out.put_u16_le(attr.len() as u16);
                out.put_slice(attr.as_bytes());
            }
        }
        out.put_slice(&self.payload);
        let body_len = (out.len() - start - HEADER) as u32;
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A message read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp_ms: u64,
    pub dedupe_id: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub dead_letter: Option<DeadLetter>,
    pub payload: Bytes,
}

/// What is at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A whole, intact record and the bytes it takes.
    Record(Record, usize),
    /// Zeros: the end of the written part of a preallocated segment.
    End,
    /// Not a record: torn, overwritten or flipped. The reason, for the report.
    Bad(&'static str),
}

/// Decodes the record at the start of `buf` (which must be a `Bytes` so the payload can
/// be a zero-copy slice of it).
pub(crate) fn decode(buf: &Bytes, max_len: usize) -> Decoded {
    if buf.len() < HEADER {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("a record header cut short")
        };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    if len == 0 {
        return if crc == 0 {
            Decoded::End
        } else {
            Decoded::Bad("a zero length with a checksum")
        };
    }
    if len < FIXED || len > max_len {
        return Decoded::Bad("a length out of range");
    }
    if buf.len() < HEADER + len {
        return Decoded::Bad("a record cut short");
    }
    let body = buf.slice(HEADER..HEADER + len);
    if crc32fast::hash(&body) != crc {
        return Decoded::Bad("a checksum mismatch");
    }
    match parse_body(&body) {
        Some(record) => Decoded::Record(record, HEADER + len),
        None => Decoded::Bad("attributes running past the record or not of their form"),
    }
}

fn parse_body(body: &Bytes) -> Option<Record> {
    let offset = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let timestamp_ms = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let flags = body[16];
    if flags & !(F_DEDUPE | F_REPLY_TO | F_CORRELATION | F_TRACE | F_ORIGIN) != 0 {
        return None;
    }
    let mut at = FIXED;
    let mut attr = |bit: u8| -> Option<Option<String>> {
        if flags & bit == 0 {
            return Some(None);
        }
        let len = u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(body.get(at + 2..at + 2 + len)?).ok()?.to_string();
        at += 2 + len;
        Some(Some(text))
    };
    let dedupe_id = attr(F_DEDUPE)?;
    let reply_to = attr(F_REPLY_TO)?;
    let correlation_id = attr(F_CORRELATION)?;
    let traceparent = attr(F_TRACE)?;
    let dead_letter = match attr(F_ORIGIN)? {
        Some(text) => Some(DeadLetter::parse(&text)?),
        None => None,
    };
    Some(Record {
        offset,
        timestamp_ms,
        dedupe_id,
        reply_to,
        correlation_id,
        traceparent,
        dead_letter,
        payload: body.slice(at..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(m: &NewMessage, offset: u64) -> Bytes {
        let mut out = BytesMut::new();
        m.encode(offset, 1234, &mut out);
        assert_eq!(out.len(), m.encoded_len());
        out.freeze()
    }

    #[test]
    fn round_trip_with_and_without_attributes() {
        let plain = NewMessage::new(&b"hello"[..]);
        let full = NewMessage {
            payload: Bytes::from_static(b"\x00\xffbinary"),
            dedupe_id: Some("d-1".into()),
            reply_to: None,
            correlation_id: Some("c".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            dead_letter: Some(DeadLetter {
                group: "billing team".into(),
                offset: u64::MAX,
                timestamp_ms: 1_764_300_000_000,
                deliveries: 5,
            }),
        };
        for (m, offset) in [(&plain, 0), (&full, u64::MAX)] {
            let bytes = encoded(m, offset);
            let Decoded::Record(r, used) = decode(&bytes, 1 << 20) else {
                panic!("not decoded")
            };
            assert_eq!(used, bytes.len());
            assert_eq!(r.offset, offset);
            assert_eq!(r.timestamp_ms, 1234);
            assert_eq!(r.payload, m.payload);
            assert_eq!(r.dedupe_id, m.dedupe_id);
            assert_eq!(r.reply_to, m.reply_to);
            assert_eq!(r.correlation_id, m.correlation_id);
            assert_eq!(r.traceparent, m.traceparent);
            assert_eq!(r.dead_letter, m.dead_letter);
        }
    }

    #[test]
    fn a_dead_letters_origin_that_is_not_of_its_form_is_bad() {
        for text in ["", "1 2 3", "1 2 3 ", "x 2 3 g", "1 2 -3 g", "1 2 99999999999 g"] {
            assert_eq!(DeadLetter::parse(text), None, "{text:?}");
        }
        // Written by hand with a good checksum: the record is refused, not served
        // without its origin.
        let mut out = BytesMut::new();
        let body_start = out.len();
        out.put_u64_le(3);
        out.put_u64_le(1);
        out.put_u8(F_ORIGIN);
        out.put_u16_le(5);
        out.put_slice(b"1 2 3");
        out.put_slice(b"payload");
        let body = out.split_off(body_start).freeze();
        let mut record = BytesMut::new();
        record.put_u32_le(body.len() as u32);
        record.put_u32_le(crc32fast::hash(&body));
        record.put_slice(&body);
        assert!(matches!(decode(&record.freeze(), 1 << 20), Decoded::Bad(_)));
    }

    #[test]
    fn zeros_are_the_end() {
        assert_eq!(decode(&Bytes::from(vec![0; 64]), 1024), Decoded::End);
        assert_eq!(decode(&Bytes::from(vec![0; 3]), 1024), Decoded::End);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_bad() {
        let m = NewMessage {
            payload: Bytes::from_static(b"payload"),
            dedupe_id: Some("id".into()),
            reply_to: Some("inbox:1".into()),
            correlation_id: None,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            dead_letter: DeadLetter::parse("7 8 9 group"),
        };
        let good = encoded(&m, 7);
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.to_vec();
                bad[byte] ^= 1 << bit;
                match decode(&Bytes::from(bad), 1 << 20) {
                    Decoded::Bad(_) => {}
                    other => panic!("flip of byte {byte} bit {bit} gave {other:?}"),
                }
            }
        }
        for cut in 1..good.len() {
            assert!(
                matches!(decode(&good.slice(..cut), 1 << 20), Decoded::Bad(_)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn lengths_out_of_range_are_bad() {
        let mut bad = encoded(&NewMessage::new(&b"x"[..]), 1).to_vec();
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&Bytes::from(bad), 1 << 20),
            Decoded::Bad("a length out of range")
        );
    }
}
