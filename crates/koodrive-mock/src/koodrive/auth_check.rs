//! KooDrive's request authentication, checked on every API call: headers first, then the
//! freshness of `X-Date`, then either a bearer token or the app signature.

use http::{header, request::Parts, HeaderMap};
use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

use super::reply::{codes, ApiError};
use super::MockAuth;
use crate::signature;

mod app_signature;

/// `X-Date`: `YYYYMMDDTHHMMSSZ`, UTC.
pub const X_DATE_FORMAT: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
/// A signature (and its `X-Date`) is valid for 15 minutes.
const MAX_AGE_SECS: i64 = 15 * 60;
/// How far ahead of the mock's clock an `X-Date` may be: not at all, as the docs say ("never in
/// the future"). The gateway writes X-Date from the same clock, truncated to the second.
const MAX_FUTURE_SECS: i64 = 0;

/// Checks a request as received; on success returns the caller's `X-User-Id`.
pub fn check(
    parts: &Parts,
    body: &[u8],
    auth: &MockAuth,
    now: OffsetDateTime,
) -> Result<String, ApiError> {
    let headers = &parts.headers;
    let user_id = header_str(headers, "x-user-id")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(codes::MISSING_USER_ID, "X-User-Id header is required")
        })?;
    if user_id.len() > 64 || !user_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            codes::MISSING_USER_ID,
            "X-User-Id must be at most 64 visible ASCII characters",
        ));
    }
    let x_date = header_str(headers, "x-date")
        .ok_or_else(|| ApiError::bad_request(codes::BAD_X_DATE, "X-Date header is required"))?;
    let date = parse_x_date(x_date)?;
    if host(parts).is_none() {
        return Err(ApiError::bad_request(
            codes::MISSING_HOST,
            "Host header is required",
        ));
    }
    let authorization = header_str(headers, header::AUTHORIZATION.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(codes::UNAUTHORIZED, "Authorization header is required")
        })?;
    check_freshness(date, now)?;
    match signature::parse_authorization(authorization) {
        Some((app_id, signed, signature)) => {
            app_signature::check(parts, body, auth, app_id, signed, signature)?
        }
        None if authorization.starts_with(signature::ALGORITHM) => return Err(ApiError::unauthorized(
            codes::UNAUTHORIZED,
            "malformed Authorization: expected HMAC-SHA256 AppId=..,SignedHeaders=..,Signature=..",
        )),
        None => check_token(authorization, auth)?,
    }
    Ok(user_id.to_string())
}

/// Parses `X-Date`; a malformed one is a bad request (400), not an authentication failure.
pub fn parse_x_date(value: &str) -> Result<OffsetDateTime, ApiError> {
    time::PrimitiveDateTime::parse(value.trim(), X_DATE_FORMAT)
        .map(|t| t.assume_utc())
        .map_err(|_| {
            ApiError::bad_request(
                codes::BAD_X_DATE,
                "X-Date must be UTC in the form YYYYMMDDTHHMMSSZ, e.g. 20240909T033325Z",
            )
        })
}

/// Within 15 minutes of `now` and not in the future.
pub fn check_freshness(date: OffsetDateTime, now: OffsetDateTime) -> Result<(), ApiError> {
    let age = (now - date).whole_seconds();
    if age > MAX_AGE_SECS {
        return Err(ApiError::unauthorized(
            codes::DATE_EXPIRED,
            format!("X-Date is {age} s old; requests expire after 15 minutes"),
        ));
    }
    if age < -MAX_FUTURE_SECS {
        return Err(ApiError::unauthorized(
            codes::DATE_EXPIRED,
            format!("X-Date is {} s in the future", -age),
        ));
    }
    Ok(())
}

/// A bearer token: `Bearer <token>`, the docs' `Bearer+<token>`, or the raw token.
pub fn check_token(authorization: &str, auth: &MockAuth) -> Result<(), ApiError> {
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("Bearer+"))
        .unwrap_or(authorization)
        .trim();
    if !token.is_empty() && auth.tokens.iter().any(|t| t == token) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            codes::UNAUTHORIZED,
            "invalid or expired access token",
        ))
    }
}

/// `Host`, or the HTTP/2 `:authority` that stands in for it.
fn host(parts: &Parts) -> Option<&str> {
    header_str(&parts.headers, header::HOST.as_str())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .filter(|h| !h.is_empty())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn clip(value: &str) -> String {
    value.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::{Request, StatusCode};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-09-09 03:33:25 UTC);

    fn auth() -> MockAuth {
        MockAuth {
            app_id: "app-1".into(),
            app_secret: "example-app-secret".into(),
            tokens: vec!["tok-1".into()],
        }
    }

    fn request_parts(uri: &str, x_date: &str, authorization: &str) -> Parts {
        let req = Request::post(uri)
            .header("host", "mock.local")
            .header("x-date", x_date)
            .header("x-user-id", "1505084218764547200")
            .header("authorization", authorization)
            .body(())
            .unwrap();
        req.into_parts().0
    }

    fn signed(uri: &str, body: &[u8], secret: &str, signed_names: &str) -> Parts {
        let x_date = NOW.format(X_DATE_FORMAT).unwrap();
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let all = [
            ("host", "mock.local"),
            ("x-date", x_date.as_str()),
            ("x-user-id", "1505084218764547200"),
        ];
        let headers: Vec<(&str, &str)> = all
            .into_iter()
            .filter(|(n, _)| signed_names.split(';').any(|s| s == *n))
            .collect();
        let request = signature::SignedRequest {
            method: "POST",
            path,
            query,
            headers: &headers,
            body,
        };
        let value = signature::authorization("app-1", secret.as_bytes(), &request);
        request_parts(uri, &x_date, &value)
    }

    fn outcome(parts: &Parts, body: &[u8]) -> Result<String, (StatusCode, u32)> {
        check(parts, body, &auth(), NOW).map_err(|e| (e.status, e.code))
    }

    #[test]
    fn correct_signature_is_accepted() {
        let parts = signed(
            "/task/list?status=2&status=1",
            b"{}",
            "example-app-secret",
            "host;x-date;x-user-id",
        );
        assert_eq!(
            outcome(&parts, b"{}"),
            Ok("1505084218764547200".to_string())
        );
        let minimal = signed("/task/list", b"", "example-app-secret", "x-date;x-user-id");
        assert!(outcome(&minimal, b"").is_ok());
    }

    #[test]
    fn anything_changed_after_signing_is_rejected() {
        let mismatch = Err((StatusCode::UNAUTHORIZED, codes::SIGNATURE_MISMATCH));
        let wrong_secret = signed("/task/list", b"", "other", "host;x-date;x-user-id");
        assert_eq!(outcome(&wrong_secret, b""), mismatch);
        let parts = signed(
            "/task/list?status=1",
            b"{}",
            "example-app-secret",
            "host;x-date;x-user-id",
        );
        assert_eq!(outcome(&parts, b"{ }"), mismatch);
        let mut moved = parts.clone();
        moved.uri = "/task/list?status=2".parse().unwrap();
        assert_eq!(outcome(&moved, b"{}"), mismatch);
        let unsigned_user = signed("/task/list", b"", "example-app-secret", "host;x-date");
        assert_eq!(outcome(&unsigned_user, b""), mismatch);
    }

    #[test]
    fn header_problems_are_400_and_auth_problems_401() {
        let date = "20240909T033325Z";
        let mut no_user = request_parts("/t", date, "tok-1");
        no_user.headers.remove("x-user-id");
        assert_eq!(
            outcome(&no_user, b""),
            Err((StatusCode::BAD_REQUEST, codes::MISSING_USER_ID))
        );
        for bad_date in [
            "2024-09-09T03:33:25Z",
            "20240909T033325",
            "20241309T033325Z",
            "",
        ] {
            let parts = request_parts("/t", bad_date, "tok-1");
            assert_eq!(
                outcome(&parts, b""),
                Err((StatusCode::BAD_REQUEST, codes::BAD_X_DATE))
            );
        }
        let unknown_app = request_parts(
            "/t",
            date,
            "HMAC-SHA256 AppId=x,SignedHeaders=x-date;x-user-id,Signature=00",
        );
        assert_eq!(
            outcome(&unknown_app, b""),
            Err((StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED))
        );
        let garbled = request_parts("/t", date, "HMAC-SHA256 AppId=app-1");
        assert_eq!(
            outcome(&garbled, b""),
            Err((StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED))
        );
        let mut no_auth = request_parts("/t", date, "");
        no_auth.headers.remove("authorization");
        assert_eq!(
            outcome(&no_auth, b""),
            Err((StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED))
        );
    }

    #[test]
    fn x_date_must_be_recent_and_not_in_the_future() {
        let at = |s: &str| {
            check_freshness(parse_x_date(s).unwrap(), NOW).map_err(|e| (e.status, e.code))
        };
        assert!(at("20240909T033325Z").is_ok());
        assert!(at("20240909T031826Z").is_ok()); // 14:59 old
        let expired = Err((StatusCode::UNAUTHORIZED, codes::DATE_EXPIRED));
        assert_eq!(at("20240909T031824Z"), expired);
        assert_eq!(at("20240909T033326Z"), expired); // 1 s ahead
        assert_eq!(at("20240909T033526Z"), expired);
    }

    #[test]
    fn tokens_with_or_without_bearer_prefix() {
        for accepted in ["Bearer tok-1", "Bearer+tok-1", "tok-1"] {
            assert!(check_token(accepted, &auth()).is_ok(), "{accepted}");
        }
        for rejected in ["Bearer tok-2", "Bearer ", "tok", "Bearer  "] {
            assert!(check_token(rejected, &auth()).is_err(), "{rejected}");
        }
    }
}
