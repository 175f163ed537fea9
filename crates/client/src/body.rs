//! Message bodies inside JSON: `"body": "text"` when the bytes are UTF-8, else
//! `"body_base64": "..."` (standard base64, padded).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The body fields of a JSON message, as sent and as received.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct JsonBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl JsonBody {
    pub fn from_bytes(bytes: &[u8]) -> JsonBody {
        match std::str::from_utf8(bytes) {
            Ok(text) => JsonBody {
                body: Some(text.to_string()),
                body_base64: None,
            },
            Err(_) => JsonBody {
                body: None,
                body_base64: Some(encode(bytes)),
            },
        }
    }

    /// The bytes; a message with neither field has an empty body.
    pub fn into_bytes(self) -> Result<Bytes, Error> {
        match (self.body, self.body_base64) {
            (Some(text), _) => Ok(Bytes::from(text)),
            (None, Some(b64)) => decode(&b64)
                .map(Bytes::from)
                .ok_or_else(|| Error::Protocol(format!("body_base64 is not valid base64: {:?}", truncate(&b64)))),
            (None, None) => Ok(Bytes::new()),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padding optional; `None` on any other character or a bad length.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            n |= (v as u32) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes()), want);
            assert_eq!(decode(want).unwrap(), input.as_bytes());
        }
    }

    #[test]
    fn binary_round_trips_and_garbage_is_refused() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
        assert!(decode("Zm9v!").is_none());
        assert!(decode("Z").is_none());
    }

    #[test]
    fn utf8_goes_as_text_other_bytes_as_base64() {
        let text = JsonBody::from_bytes("héllo".as_bytes());
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"body":"héllo"}"#);
        let bin = JsonBody::from_bytes(&[0xff, 0x00]);
        assert_eq!(serde_json::to_string(&bin).unwrap(), r#"{"body_base64":"/wA="}"#);
        assert_eq!(&bin.into_bytes().unwrap()[..], &[0xff, 0x00]);
    }
}
