//! Messages inside JSON: `"body": "text"` when the bytes are UTF-8, else
//! `"body_base64": "..."` (standard base64, padded); and the JSON form of fetched
//! messages (`{"messages": [...]}`) that the node API answers and push delivery posts.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::base64;
use crate::WireError;

/// The body fields of a JSON message, as sent and as received.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JsonBody {
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
                body_base64: Some(base64::encode(bytes)),
            },
        }
    }

    /// The bytes; a message with neither field has an empty body.
    pub fn into_bytes(self) -> Result<Bytes, WireError> {
        match (self.body, self.body_base64) {
            (Some(text), _) => Ok(Bytes::from(text)),
            (None, Some(b64)) => base64::decode(&b64)
                .map(Bytes::from)
                .map_err(|e| WireError(format!("body_base64 is not valid base64: {e}"))),
            (None, None) => Ok(Bytes::new()),
        }
    }

    /// The bytes of a message that must carry exactly one of the two fields; the error
    /// names `what` (for example `messages[3]`).
    pub fn into_payload(self, what: &str) -> Result<Bytes, WireError> {
        match (self.body, self.body_base64) {
            (Some(text), None) => Ok(Bytes::from(text)),
            (None, Some(b64)) => base64::decode(&b64)
                .map(Bytes::from)
                .map_err(|e| WireError(format!("{what}.body_base64 is not base64: {e}"))),
            (None, None) => Err(WireError(format!("{what} has neither body nor body_base64"))),
            (Some(_), Some(_)) => Err(WireError(format!("{what} has both body and body_base64; give one"))),
        }
    }
}

/// One fetched message, as the JSON form carries it.
#[derive(Debug, Serialize)]
pub struct MessageOut<'a> {
    pub offset: u64,
    pub deliveries: u32,
    pub timestamp_ms: u64,
    #[serde(flatten)]
    pub body: JsonBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
    /// W3C `traceparent` to continue the publisher's trace with, when it was traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<&'a str>,
    /// In a dead-letter queue: where the message came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterOut<'a>>,
}

/// A dead letter's origin as JSON: the group of queue `NAME` that gave up on it, its
/// offset and publish time there, and how often it was delivered to that group.
#[derive(Debug, Serialize)]
pub struct DeadLetterOut<'a> {
    pub group: &'a str,
    pub offset: u64,
    pub timestamp_ms: u64,
    pub deliveries: u32,
}

impl<'a> MessageOut<'a> {
    pub fn new(
        offset: u64,
        deliveries: u32,
        timestamp_ms: u64,
        payload: &[u8],
        reply_to: Option<&'a str>,
        correlation_id: Option<&'a str>,
    ) -> MessageOut<'a> {
        MessageOut {
            offset,
            deliveries,
            timestamp_ms,
            body: JsonBody::from_bytes(payload),
            reply_to,
            correlation_id,
            traceparent: None,
            dead_letter: None,
        }
    }

    /// The message with its origin, when it is a dead letter.
    pub fn origin(self, dead_letter: Option<DeadLetterOut<'a>>) -> MessageOut<'a> {
        MessageOut { dead_letter, ..self }
    }

    /// The message with the `traceparent` its consumer continues the trace with.
    pub fn traced(self, traceparent: Option<&'a str>) -> MessageOut<'a> {
        MessageOut { traceparent, ..self }
    }
}

/// The JSON form of fetched messages: `{"messages": [...]}` plus `extra` string fields
/// (push delivery names the queue and the group).
pub fn messages_json(messages: &[MessageOut<'_>], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    for (k, v) in extra {
        doc.insert((*k).into(), (*v).into());
    }
    doc.insert(
        "messages".into(),
        serde_json::to_value(messages).expect("messages serialize"),
    );
    serde_json::to_vec(&doc).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_goes_as_text_other_bytes_as_base64() {
        let text = JsonBody::from_bytes("héllo".as_bytes());
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"body":"héllo"}"#);
        let bin = JsonBody::from_bytes(&[0xff, 0x00]);
        assert_eq!(serde_json::to_string(&bin).unwrap(), r#"{"body_base64":"/wA="}"#);
        assert_eq!(&bin.into_bytes().unwrap()[..], &[0xff, 0x00]);
    }
}
