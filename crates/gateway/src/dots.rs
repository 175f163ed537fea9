//! Paths with dot segments (`/api/../admin`), refused before any routing.

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use strata_wire::ErrorCode;

use crate::relay;
use crate::response_body::ResBody;

/// The 400 for a request whose path has a `.` or `..` segment, whatever it asks for (a
/// relay, a protocol switch, a gRPC call): routed by its prefix as it is, `/api/../admin`
/// would reach the api service's member, which may resolve it out of that prefix (RFC
/// 3986 5.2.4).
pub(crate) fn refused<B>(req: &Request<B>, rid: &HeaderValue) -> Option<Response<ResBody>> {
    has_dot_segment(req.uri().path()).then(|| {
        relay::error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "",
            "the path has a \".\" or \"..\" segment; send it with dot segments removed (RFC 3986 5.2.4)",
            Some(rid),
        )
    })
}

/// Whether `path` has a `.` or `..` segment, dots written as they are or
/// percent-encoded (`%2e`), as RFC 3986 says they are the same.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let (mut dots, mut rest) = (0, segment.as_bytes());
        while !rest.is_empty() && dots < 3 {
            rest = match rest {
                [b'.', tail @ ..] => tail,
                [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
                _ => return false,
            };
            dots += 1;
        }
        rest.is_empty() && (dots == 1 || dots == 2)
    })
}

#[cfg(test)]
mod tests {
    use super::has_dot_segment;

    #[test]
    fn dot_segments_are_found_written_or_percent_encoded_and_nothing_else() {
        for yes in [
            "/api/../admin",
            "/api/./x",
            "/api/..",
            "/..",
            "/api/%2e%2e/admin",
            "/api/%2E./x",
            "/api/.%2e",
            "/api/%2e",
        ] {
            assert!(has_dot_segment(yes), "{yes}");
        }
        for no in [
            "/",
            "/api/x",
            "/api/...",
            "/api/..x",
            "/api/.well-known/a",
            "/a.b/c",
            "/api/%2e%2e%2e",
            "/api/%2f",
        ] {
            assert!(!has_dot_segment(no), "{no}");
        }
    }
}
