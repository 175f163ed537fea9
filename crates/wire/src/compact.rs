//! The compact form, `application/x-strata-batch`, of `docs/queues.md`.
//!
//! - A publish batch: for each message a 4-byte big-endian length, then that many bytes.
//! - A fetch answer: for each message an 8-byte big-endian offset, a 4-byte big-endian
//!   delivery count, a 4-byte big-endian length, then the payload.
//!
//! Decoding never panics: a truncated header or a length running past the end is an
//! [`WireError`](crate::WireError) naming the message and the byte where it went wrong. Decoded
//! payloads are slices of the answer's buffer, not copies.

use bytes::{BufMut, Bytes, BytesMut};

use crate::WireError as Error;

/// The media type of the compact form.
pub const MEDIA_TYPE: &str = "application/x-strata-batch";

/// Bytes before each payload in a publish batch.
pub const BATCH_HEADER: usize = 4;
/// Bytes before each payload in a fetch answer.
pub const FETCH_HEADER: usize = 16;

/// One message of a compact fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactMessage {
    pub offset: u64,
    /// How many times the message has been handed out, this time included.
    pub deliveries: u32,
    pub body: Bytes,
}

/// A publish batch: each body behind its length. A body over 4 GiB cannot be framed.
pub fn encode_batch<B: AsRef<[u8]>>(bodies: &[B]) -> Result<Bytes, Error> {
    let total: usize = bodies.iter().map(|b| BATCH_HEADER + b.as_ref().len()).sum();
    let mut out = BytesMut::with_capacity(total);
    for (i, body) in bodies.iter().enumerate() {
        let body = body.as_ref();
        let len = u32::try_from(body.len()).map_err(|_| {
            Error(format!(
                "message {i} is {} bytes, over the 4 GiB a compact batch can frame",
                body.len()
            ))
        })?;
        out.put_u32(len);
        out.put_slice(body);
    }
    Ok(out.freeze())
}

/// The bodies of a publish batch (what the node reads; here for tests and tools).
pub fn decode_batch(data: &Bytes) -> Result<Vec<Bytes>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let i = out.len();
        let len = read_u32(data, at, "publish batch", i, "4-byte length")? as usize;
        let start = at + BATCH_HEADER;
        let end = payload_end(data, start, len, "publish batch", i)?;
        out.push(data.slice(start..end));
        at = end;
    }
    Ok(out)
}

/// A fetch answer (what the node writes; here for tests and tools).
pub fn encode_fetch(messages: &[CompactMessage]) -> Result<Bytes, Error> {
    let total: usize = messages.iter().map(|m| FETCH_HEADER + m.body.len()).sum();
    let mut out = BytesMut::with_capacity(total);
    for m in messages {
        let len = u32::try_from(m.body.len()).map_err(|_| {
            Error(format!(
                "message {} is {} bytes, over the 4 GiB a compact answer can frame",
                m.offset,
                m.body.len()
            ))
        })?;
        out.put_u64(m.offset);
        out.put_u32(m.deliveries);
        out.put_u32(len);
        out.put_slice(&m.body);
    }
    Ok(out.freeze())
}

/// The messages of a compact fetch answer.
pub fn decode_fetch(data: &Bytes) -> Result<Vec<CompactMessage>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let i = out.len();
        if data.len() - at < FETCH_HEADER {
            return Err(truncated("fetch answer", i, at, "16-byte header", data.len() - at));
        }
        let offset = u64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let deliveries = read_u32(data, at + 8, "fetch answer", i, "header")?;
        let len = read_u32(data, at + 12, "fetch answer", i, "header")? as usize;
        let start = at + FETCH_HEADER;
        let end = payload_end(data, start, len, "fetch answer", i)?;
        out.push(CompactMessage {
            offset,
            deliveries,
            body: data.slice(start..end),
        });
        at = end;
    }
    Ok(out)
}

fn read_u32(data: &[u8], at: usize, what: &str, index: usize, field: &str) -> Result<u32, Error> {
    match data.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes(b.try_into().expect("4 bytes"))),
        None => Err(truncated(what, index, at, field, data.len().saturating_sub(at))),
    }
}

fn payload_end(data: &[u8], start: usize, len: usize, what: &str, index: usize) -> Result<usize, Error> {
    let left = data.len() - start;
    if len > left {
        return Err(Error(format!(
            "compact {what} is malformed: message {index} claims {len} payload bytes at byte {start}, but only {left} remain"
        )));
    }
    Ok(start + len)
}

fn truncated(what: &str, index: usize, at: usize, field: &str, left: usize) -> Error {
    Error(format!(
        "compact {what} is truncated: message {index} at byte {at} needs a {field}, but only {left} byte(s) remain"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(offset: u64, deliveries: u32, body: &'static [u8]) -> CompactMessage {
        CompactMessage {
            offset,
            deliveries,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn batch_layout_is_length_then_bytes() {
        let data = encode_batch(&[&b"ab"[..], b"", b"xyz"]).unwrap();
        assert_eq!(&data[..], b"\0\0\0\x02ab\0\0\0\0\0\0\0\x03xyz");
        let back = decode_batch(&data).unwrap();
        assert_eq!(
            back,
            vec![Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"xyz")]
        );
    }

    #[test]
    fn empty_batch_is_empty() {
        assert!(encode_batch::<&[u8]>(&[]).unwrap().is_empty());
        assert!(decode_batch(&Bytes::new()).unwrap().is_empty());
        assert!(decode_fetch(&Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn fetch_layout_is_offset_deliveries_length_payload() {
        let messages = vec![msg(12, 1, b"hello"), msg(1 << 40, 3, b""), msg(13, 2, &[0xff, 0])];
        let data = encode_fetch(&messages).unwrap();
        assert_eq!(&data[..16], &[0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 5]);
        assert_eq!(&data[16..21], b"hello");
        assert_eq!(data.len(), 3 * FETCH_HEADER + 5 + 2);
        assert_eq!(decode_fetch(&data).unwrap(), messages);
    }

    #[test]
    fn decoded_payloads_share_the_answer_buffer() {
        let data = encode_fetch(&[msg(1, 1, b"payload")]).unwrap();
        let decoded = decode_fetch(&data).unwrap();
        assert_eq!(decoded[0].body.as_ptr(), data[16..].as_ptr());
    }

    fn protocol_message(r: Result<impl std::fmt::Debug, Error>) -> String {
        match r {
            Err(Error(m)) => m,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn truncated_fetch_header_is_an_error() {
        let data = encode_fetch(&[msg(7, 1, b"ok"), msg(8, 1, b"cut")]).unwrap();
        // The second header cut after 10 of its 16 bytes.
        let cut = data.slice(..FETCH_HEADER + 2 + 10);
        let m = protocol_message(decode_fetch(&cut));
        assert!(
            m.contains("truncated") && m.contains("message 1") && m.contains("byte 18"),
            "{m}"
        );
        // A lone partial length field.
        let m = protocol_message(decode_fetch(&Bytes::from_static(&[0, 0, 0])));
        assert!(m.contains("message 0") && m.contains("3 byte(s) remain"), "{m}");
    }

    #[test]
    fn fetch_length_past_the_end_is_an_error() {
        let mut data = encode_fetch(&[msg(7, 1, b"abc")]).unwrap().to_vec();
        data[15] = 200; // claims 200 payload bytes, 3 follow
        let m = protocol_message(decode_fetch(&Bytes::from(data.clone())));
        assert!(
            m.contains("claims 200 payload bytes") && m.contains("only 3 remain"),
            "{m}"
        );
        // A length near u32::MAX must not overflow anything either.
        data[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        protocol_message(decode_fetch(&Bytes::from(data)));
    }

    #[test]
    fn fetch_payload_cut_short_is_an_error() {
        let data = encode_fetch(&[msg(1, 1, b"abcdef")]).unwrap();
        let m = protocol_message(decode_fetch(&data.slice(..data.len() - 1)));
        assert!(
            m.contains("claims 6 payload bytes") && m.contains("only 5 remain"),
            "{m}"
        );
    }

    #[test]
    fn malformed_batch_is_an_error() {
        let m = protocol_message(decode_batch(&Bytes::from_static(b"\0\0\0\x05ab")));
        assert!(m.contains("claims 5 payload bytes"), "{m}");
        let m = protocol_message(decode_batch(&Bytes::from_static(b"\0\0\0\x01a\0\0")));
        assert!(m.contains("message 1") && m.contains("4-byte length"), "{m}");
    }

    #[test]
    fn every_prefix_of_a_valid_answer_decodes_or_errs_without_panicking() {
        let data = encode_fetch(&[msg(1, 1, b"first"), msg(2, 4, b""), msg(3, 1, b"third one")]).unwrap();
        let boundaries = [0, 21, 37, data.len()];
        for n in 0..=data.len() {
            let r = decode_fetch(&data.slice(..n));
            assert_eq!(r.is_ok(), boundaries.contains(&n), "prefix of {n} bytes: {r:?}");
        }
    }
}
