//! How KooDrive says it is throttling us: a 429, or `APIG.0308` in a body (its API gateway's
//! `{"error_code": ...}` shape or its own `{"code": ...}`), and how long it asks us to wait.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::HeaderMap;

/// KooDrive's API gateway's throttling error code.
const APIG_THROTTLE: &[u8] = b"APIG.0308";
/// The code as a JSON string value, quotes included: what is searched for.
const APIG_THROTTLE_QUOTED: &[u8] = b"\"APIG.0308\"";

/// How a throttle was seen, as the `reason` label of `upstream_throttles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// HTTP 429.
    Status429,
    /// `APIG.0308` in a body, at any other status.
    ApigBody,
}

impl Throttle {
    pub const ALL: [Throttle; 2] = [Throttle::Status429, Throttle::ApigBody];

    pub fn as_str(self) -> &'static str {
        match self {
            Throttle::Status429 => "status_429",
            Throttle::ApigBody => "apig_0308",
        }
    }
}

/// How many bytes a match of the throttling code spans (with its quotes).
pub const APIG_WINDOW: usize = APIG_THROTTLE.len() + 2;

/// Whether a body carries the throttling code as a JSON string value (either error shape).
/// Every page KooDrive sends is searched, so with `memchr`'s vectorized search: a byte-by-byte
/// window would cost every forwarded page several instructions a byte.
pub fn apig_throttle(body: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(APIG_THROTTLE_QUOTED));
    FINDER.find(body).is_some()
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (RFC 9110 section 10.2.3);
/// `None` when absent or unreadable. A date in the past is no wait.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let cases = [
            (Some("3"), Some(Duration::from_secs(3))),
            (Some(" 120 "), Some(Duration::from_secs(120))),
            // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
            (
                Some("Sun, 06 Nov 1994 08:49:47 GMT"),
                Some(Duration::from_secs(10)),
            ),
            (Some("Sun, 06 Nov 1994 08:49:00 GMT"), Some(Duration::ZERO)),
            (Some("soon"), None),
            (Some("-1"), None),
            (None, None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            }
            assert_eq!(retry_after(&headers, now), expected, "{value:?}");
        }
    }

    #[test]
    fn the_throttling_code_is_found_in_either_error_shape() {
        let throttled = [
            r#"{"error_code":"APIG.0308","error_msg":"throttled","request_id":"r"}"#,
            r#"{"code":"APIG.0308","msg":"The throttling threshold has been reached"}"#,
            r#"{"code": "APIG.0308"}"#,
        ];
        for body in throttled {
            assert!(apig_throttle(body.as_bytes()), "{body}");
        }
        let others = [
            r#"{"error_code":"APIG.0309","error_msg":"x"}"#,
            r#"{"code":13000201,"msg":"inner server invoke failure"}"#,
            r#"{"code":"APIG.03081"}"#,
            "",
        ];
        for body in others {
            assert!(!apig_throttle(body.as_bytes()), "{body}");
        }
    }
}
