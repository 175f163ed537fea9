//! Request bodies, each read only as far as its route needs: [`read`] takes at most a
//! route's limit (413 naming it as soon as `Content-Length` or the bytes read pass it),
//! and [`json`] parses straight into the route's typed struct (serde derive), never
//! into a `serde_json::Value` first, refusing a body that cannot become one as early as
//! the bytes show it: at the first byte when it is not a JSON object, and otherwise at
//! the first error in what has arrived (the prefix read so far is parsed after the first
//! chunk, at 64 KiB and at every doubling). So a 64 MiB body of zeros or of `[0,0,...]` costs a read of its
//! first chunk, not a gigabyte of JSON values.
//!
//! The limits per route (docs/queues.md, docs/state.md):
//!
//! | route | limit |
//! |---|---|
//! | control (scale, queue create) | [`CONTROL`] (16 KiB) |
//! | ack, nack | [`OFFSETS`] (8 MiB) |
//! | publish, reply | [`publish_limit`]: [`PUBLISH_BATCH`] (16 MiB), or one message of the queue's `max_message_bytes` in base64 if that is more |
//! | key-value put | [`KV_VALUE`]: the store's value limit (16 MiB) |
//! | cache put | [`CACHE_VALUE`] (32 MiB, the Redis port's largest bulk) |
//! | blobs, calls | streamed, never held whole |

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use strata_wire::ErrorCode;

use crate::ApiError;

/// Control bodies: `{"instances": N}`, a queue's settings.
pub const CONTROL: usize = 16 << 10;
/// `{"offsets": [...]}` of an ack or nack: some 400,000 offsets.
pub const OFFSETS: usize = 8 << 20;
/// A publish (JSON or compact) or a reply, unless one message of the queue needs more.
pub const PUBLISH_BATCH: usize = 16 << 20;
/// A key-value put: the store's value limit (the store refuses more itself, too).
pub const KV_VALUE: usize = 16 << 20;
/// A raw cache value (`/v1/cache/keys/KEY`): as large as the Redis port takes.
pub const CACHE_VALUE: usize = 32 << 20;

/// Where the prefix of a JSON body is first checked; then at every doubling.
const FIRST_CHECK: usize = 64 << 10;

/// The publish limit of a queue whose messages are at most `max_message_bytes`: a batch
/// of [`PUBLISH_BATCH`], or one message of the largest size as base64 with its
/// attributes, whichever is more.
pub fn publish_limit(max_message_bytes: u64) -> usize {
    let one = usize::try_from(max_message_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(2)
        / 3
        * 4;
    PUBLISH_BATCH.max(one.saturating_add(64 << 10))
}

/// The 413 of a body over `limit`; `what` names the route's body ("a publish").
pub fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("{what} is at most {limit} bytes ({}) on the node API", human(limit)),
    )
    .with("limit", limit)
}

fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The declared `Content-Length`, if any.
fn declared(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads a whole body of at most `limit` bytes; 413 at once when `Content-Length` says
/// more, or as soon as more arrived.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    read_checked(headers, body, limit, what, |_| Ok(())).await
}

/// Reads a body like [`read`], calling `check` on what has arrived after the first chunk,
/// at 64 KiB and at every doubling: an error there ends the read (the rest is never
/// taken).
async fn read_checked(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
    what: &str,
    mut check: impl FnMut(&[u8]) -> Result<(), ApiError>,
) -> Result<Bytes, ApiError> {
    let expected = declared(headers);
    if expected.is_some_and(|n| n > limit as u64) {
        return Err(too_large(what, limit));
    }
    // Room for what was declared, never more than the first check's worth up front.
    let mut buf = BytesMut::with_capacity(expected.map_or(0, |n| n as usize).min(FIRST_CHECK));
    // The first chunk is checked at once (a body that is not an object is refused at
    // its first byte), then at 64 KiB and at every doubling.
    let mut next_check = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ClientBody,
                format!("the request body broke off: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            return Err(too_large(what, limit));
        }
        buf.extend_from_slice(&data);
        if buf.len() >= next_check {
            check(&buf)?;
            next_check = buf.len().saturating_mul(2).max(FIRST_CHECK);
        }
    }
    Ok(buf.freeze())
}

/// Reads a JSON object of at most `limit` bytes into `T`. `what` names the body in
/// errors ("a publish"), `shape` shows what is expected (`{"offsets": [...]}`). A body
/// that is not a JSON object is refused at its first byte; a field of the wrong type or
/// an unknown one is named by its path (`messages[3].body`).
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
    shape: &str,
) -> Result<T, ApiError> {
    let bytes = read_checked(headers, body, limit, what, |prefix| check_prefix::<T>(prefix, shape)).await?;
    parse(&bytes, shape)
}

/// Parses a whole body into `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    not_an_object(bytes, shape)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| refusal(e, shape))?;
    de.end()
        .map_err(|e| ApiError::bad(format!("body is not JSON: {e}; expected {shape}")))?;
    Ok(parsed)
}

/// What a prefix of a body already shows wrong: not an object, or an error before its
/// end (a prefix that is merely cut short is fine). A number cut at the end of the
/// prefix (`1e`) would read as an error, so trailing number characters are left out.
fn check_prefix<T: DeserializeOwned>(prefix: &[u8], shape: &str) -> Result<(), ApiError> {
    not_an_object(prefix, shape)?;
    let end = prefix
        .iter()
        .rposition(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .map_or(0, |i| i + 1);
    let mut de = serde_json::Deserializer::from_slice(&prefix[..end]);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) if !e.inner().is_eof() => Err(refusal(e, shape)),
        // Complete or cut short: the rest decides.
        _ => Ok(()),
    }
}

/// Every JSON body of the node API is an object: anything else is refused at its first
/// byte, saying what it is.
fn not_an_object(bytes: &[u8], shape: &str) -> Result<(), ApiError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(ApiError::bad(format!("the body is empty; expected {shape}")));
    };
    let rest = &bytes[start..];
    let found = match rest[0] {
        b'{' => return Ok(()),
        b'[' => "an array",
        b'"' => "a string",
        b'0'..=b'9' | b'-' => "a number",
        _ if rest.starts_with(b"true") || rest.starts_with(b"false") => "a boolean",
        _ if rest.starts_with(b"null") => "null",
        other => {
            return Err(ApiError::bad(format!(
                "body is not JSON: it starts with {:?}; expected {shape}",
                char::from(other)
            )))
        }
    };
    Err(ApiError::bad(format!(
        "the body is {found}; expected a JSON object, {shape}"
    )))
}

fn refusal(e: serde_path_to_error::Error<serde_json::Error>, shape: &str) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::bad(format!("body is not JSON: {inner}; expected {shape}"));
    }
    // A missing field is named by its own path, as every other problem is.
    let text = inner.to_string();
    if let Some((name, _)) = text.strip_prefix("missing field `").and_then(|r| r.split_once('`')) {
        let field = match path.as_str() {
            "." => name.to_string(),
            _ => format!("{path}.{name}"),
        };
        return ApiError::bad(format!("{field}: required field is missing; expected {shape}")).with("field", field);
    }
    match path.as_str() {
        "." => ApiError::bad(format!("{inner}; expected {shape}")),
        _ => ApiError::bad(format!("{path}: {inner}; expected {shape}")).with("field", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        messages: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        body: String,
        n: Option<f64>,
    }

    const SHAPE: &str = r#"{"messages": [...]}"#;

    fn error_of(r: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
        let e = r.expect_err("an error");
        (e.status().as_u16(), format!("{e:?}"))
    }

    #[test]
    fn a_field_of_the_wrong_type_or_unknown_is_named_by_its_path() {
        let (status, text) = error_of(parse::<Batch>(br#"{"messages":[{"body":"a"},{"body":7}]}"#, SHAPE));
        assert_eq!(status, 400);
        assert!(text.contains("messages[1].body: invalid type: integer `7`"), "{text}");
        let (_, text) = error_of(parse::<Batch>(br#"{"messages":[],"colour":1}"#, SHAPE));
        assert!(text.contains("unknown field `colour`"), "{text}");
        // A missing field is named by its path too, with the `field` member.
        let missing = parse::<Batch>(br#"{}"#, SHAPE).unwrap_err();
        assert!(
            missing.message().starts_with("messages: required field is missing"),
            "{missing:?}"
        );
        assert!(
            format!("{missing:?}").contains(r#""field": String("messages")"#),
            "{missing:?}"
        );
        let missing = parse::<Batch>(br#"{"messages":[{}]}"#, SHAPE).unwrap_err();
        assert!(
            missing
                .message()
                .starts_with("messages[0].body: required field is missing"),
            "{missing:?}"
        );
        let (_, text) = error_of(parse::<Batch>(br#"{"messages":[]} x"#, SHAPE));
        assert!(text.contains("body is not JSON: trailing characters"), "{text}");
    }

    #[test]
    fn what_is_not_an_object_is_refused_at_its_first_byte() {
        for (body, says) in [
            (&b"[0,0,0"[..], "the body is an array"),
            (b"0000000", "the body is a number"),
            (b"\0\0\0\0", "body is not JSON: it starts with"),
            (b"  \"x\"", "the body is a string"),
            (b"null", "the body is null"),
            (b"not json", "body is not JSON"),
            (b"", "the body is empty"),
        ] {
            let (status, text) = error_of(check_prefix::<Batch>(body, SHAPE));
            assert_eq!(status, 400);
            assert!(text.contains(says), "{body:?}: {text}");
        }
    }

    #[test]
    fn a_prefix_cut_anywhere_in_a_good_body_passes_and_a_bad_one_fails_early() {
        let good = br#"{"messages": [{"body": "a\u00e9\"b", "n": -1.5e+3}, {"n": 12, "body": "tr"}]}"#;
        for cut in 1..=good.len() {
            assert!(
                check_prefix::<Batch>(&good[..cut], SHAPE).is_ok(),
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(&good[..cut])
            );
        }
        let bad = br#"{"messages": [0, 0, 0"#;
        let (_, text) = error_of(check_prefix::<Batch>(bad, SHAPE));
        assert!(text.contains("messages[0]"), "{text}");
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_its_limit_and_no_further() {
        let headers = HeaderMap::new();
        let ok = read(&headers, Body::from("12345"), 5, "a test body").await.unwrap();
        assert_eq!(&ok[..], b"12345");
        let (status, text) = error_of(read(&headers, Body::from("123456"), 5, "a test body").await);
        assert_eq!(status, 413);
        assert!(text.contains("a test body is at most 5 bytes"), "{text}");
        // A declared length over the limit is refused before any byte is read.
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "67108864".parse().unwrap());
        let (status, text) = error_of(read(&declared, Body::empty(), CONTROL, "a control body").await);
        assert_eq!(status, 413);
        assert!(text.contains("at most 16384 bytes (16 KiB)"), "{text}");
    }

    #[tokio::test]
    async fn garbage_after_a_good_start_ends_the_read_at_the_first_check() {
        // A body that would be 64 MiB, of which only what the check needs is taken.
        let body = Chunks {
            left: 64 << 20,
            start: Some(br#"{"messages": [0"#),
        };
        let (status, text) =
            error_of(json::<Batch>(&HeaderMap::new(), Body::new(body), 128 << 20, "a publish", SHAPE).await);
        assert_eq!(status, 400);
        assert!(text.contains("messages[0]"), "{text}");
        let taken = TAKEN.load(std::sync::atomic::Ordering::Relaxed);
        assert!(taken <= 2 * FIRST_CHECK, "read {taken} bytes");
    }

    /// A body of `start` then `,0` repeated, in 16 KiB chunks, counting what was taken.
    struct Chunks {
        left: usize,
        start: Option<&'static [u8]>,
    }

    static TAKEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            let size = (16 << 10).min(self.left);
            if size == 0 {
                return std::task::Poll::Ready(None);
            }
            let mut out = self.start.take().map(<[u8]>::to_vec).unwrap_or_default();
            while out.len() < size {
                out.extend_from_slice(b",0");
            }
            out.truncate(size);
            self.left -= size;
            TAKEN.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(out)))))
        }
    }
}
