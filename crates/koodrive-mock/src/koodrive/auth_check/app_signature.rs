//! The app signature check: recompute KooDrive's HMAC-SHA256 over the request as received.

use http::request::Parts;

use super::super::reply::{codes, ApiError};
use super::super::MockAuth;
use super::{clip, header_str, host};
use crate::signature::{self, SignedRequest};

/// Checks `Authorization: HMAC-SHA256 AppId=..,SignedHeaders=..,Signature=..` (already parsed).
pub(super) fn check(
    parts: &Parts,
    body: &[u8],
    auth: &MockAuth,
    app_id: &str,
    signed: &str,
    signature: &str,
) -> Result<(), ApiError> {
    if app_id != auth.app_id {
        return Err(ApiError::unauthorized(
            codes::UNAUTHORIZED,
            format!("unknown AppId '{}'", clip(app_id)),
        ));
    }
    let names: Vec<String> = signed
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if !names.iter().any(|n| n == "x-date") || !names.iter().any(|n| n == "x-user-id") {
        return Err(ApiError::unauthorized(
            codes::SIGNATURE_MISMATCH,
            "SignedHeaders must include x-date and x-user-id",
        ));
    }
    let mut headers = Vec::with_capacity(names.len());
    for name in &names {
        let value = if name == "host" {
            host(parts)
        } else {
            header_str(&parts.headers, name)
        };
        let value = value.ok_or_else(|| {
            ApiError::unauthorized(
                codes::SIGNATURE_MISMATCH,
                format!("signed header '{}' is missing from the request", clip(name)),
            )
        })?;
        headers.push((name.as_str(), value));
    }
    let request = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body,
    };
    let expected = signature::signature(auth.app_secret.as_bytes(), &request);
    if constant_time_eq(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    ) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            codes::SIGNATURE_MISMATCH,
            "signature does not match the request (method, path, query, signed headers, body)",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
