//! `Range` on a blob's GET (RFC 9110 14): one byte range, `bytes=FIRST-LAST`,
//! `bytes=FIRST-` or `bytes=-SUFFIX`. What a server may ignore is ignored (the whole
//! blob then comes, 200): another unit, several ranges, a malformed or invalid header
//! (LAST before FIRST), an `If-Range` that is not the blob's ETag, any range of an
//! empty blob, and any on a HEAD (the caller's part). A range that starts past the end
//! is 416.

use axum::http::{header, HeaderMap};

/// What a GET of a blob of `size` bytes with ETag `etag` (quoted) asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The whole blob.
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// Nothing of it can be served: 416.
    Unsatisfiable,
}

pub(crate) fn wanted(headers: &HeaderMap, size: u64, etag: &str) -> Wanted {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::Whole;
    };
    // If-Range with an ETag: the range only if the blob is still that one (a date is
    // not kept for blobs, so one never matches).
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        if if_range.to_str().ok().map(str::trim) != Some(etag) {
            return Wanted::Whole;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    // An empty blob has no byte to range over: the whole (empty) blob, as before.
    if size == 0 {
        return Wanted::Whole;
    }
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes (all of a shorter blob); -0 asks for nothing.
        (true, _, Some(0)) => Wanted::Unsatisfiable,
        (true, _, Some(n)) => Wanted::Part {
            first: size.saturating_sub(n),
            last: size - 1,
        },
        // LAST before FIRST is no valid range: ignored (RFC 9110 14.1.1).
        (false, Some(first), Some(last)) if last < first => Wanted::Whole,
        (false, Some(first), _) if first >= size => Wanted::Unsatisfiable,
        (false, Some(first), None) if last.trim().is_empty() => Wanted::Part { first, last: size - 1 },
        (false, Some(first), Some(last)) => Wanted::Part {
            first,
            last: last.min(size - 1),
        },
        _ => Wanted::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(range: &str, if_range: Option<&str>, size: u64) -> Wanted {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, range.parse().unwrap());
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, v.parse().unwrap());
        }
        wanted(&h, size, "\"abc\"")
    }

    #[test]
    fn one_byte_range_is_served_and_the_rest_ignored_or_refused_as_rfc_9110_says() {
        let part = |first, last| Wanted::Part { first, last };
        assert_eq!(ask("bytes=0-9", None, 100), part(0, 9));
        assert_eq!(ask("bytes=90-", None, 100), part(90, 99));
        assert_eq!(
            ask("bytes=90-500", None, 100),
            part(90, 99),
            "the end is cut to the blob's"
        );
        assert_eq!(ask("bytes=-10", None, 100), part(90, 99));
        assert_eq!(
            ask("bytes=-500", None, 100),
            part(0, 99),
            "a suffix longer than the blob"
        );
        assert_eq!(ask(" bytes=5-5 ", None, 100), part(5, 5));
        assert_eq!(ask("bytes=100-", None, 100), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=-0", None, 100), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=0-", None, 0), Wanted::Whole, "an empty blob, whole");
        assert_eq!(ask("bytes=-5", None, 0), Wanted::Whole);
        assert_eq!(ask("bytes=500-100", None, 100), Wanted::Whole, "last before first");
        for ignored in [
            "bytes=9-0",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=1",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(ask(ignored, None, 100), Wanted::Whole, "{ignored}");
        }
        assert_eq!(ask("bytes=0-9", Some("\"abc\""), 100), part(0, 9));
        assert_eq!(ask("bytes=0-9", Some("\"old\""), 100), Wanted::Whole, "changed since");
        assert_eq!(wanted(&HeaderMap::new(), 100, "\"abc\""), Wanted::Whole);
    }
}
