//! KooDrive's response shape: `{"code": <number>, "msg": "..."}` on every body, errors included.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

/// KooDrive-style business codes (13000xxx); the numbers are the mock's own, plausible choices.
pub mod codes {
    pub const MISSING_USER_ID: u32 = 13000010;
    pub const BAD_X_DATE: u32 = 13000011;
    pub const MISSING_HOST: u32 = 13000012;
    pub const BAD_PARAMETER: u32 = 13000013;
    pub const BAD_BODY: u32 = 13000014;
    pub const TASK_NOT_FOUND: u32 = 13000301;
    pub const TASK_LIMIT: u32 = 13000302;
    pub const UNAUTHORIZED: u32 = 13000401;
    pub const SIGNATURE_MISMATCH: u32 = 13000402;
    pub const DATE_EXPIRED: u32 = 13000403;
    pub const NOT_FOUND: u32 = 13000404;
    pub const TOO_LARGE: u32 = 13000413;
}

/// An error answered in KooDrive's own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub msg: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            msg: msg.into(),
        }
    }

    /// A bad request (missing header, bad parameter, unknown task): KooDrive answers those with 400.
    pub fn bad_request(code: u32, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    /// Failed authentication: 401.
    pub fn unauthorized(code: u32, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, msg)
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut body = Map::new();
        body.insert("code".into(), self.code.into());
        body.insert("msg".into(), self.msg.clone().into());
        json_response(self.status, &Value::Object(body))
    }
}

/// The `language` request header: it picks the success message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        match headers.get("language").and_then(|v| v.to_str().ok()) {
            Some(v) if v.trim().eq_ignore_ascii_case("zh-CN") => Lang::Zh,
            _ => Lang::En,
        }
    }

    pub fn success(self) -> &'static str {
        match self {
            Lang::En => "Success.",
            Lang::Zh => "成功",
        }
    }
}

/// A 200 answer: the handler's fields, then `code` 0 and the localized `msg`, as KooDrive orders them.
pub fn success(mut fields: Map<String, Value>, lang: Lang) -> Response<Full<Bytes>> {
    fields.insert("code".into(), 0.into());
    fields.insert("msg".into(), lang.success().into());
    json_response(StatusCode::OK, &Value::Object(fields))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    // Serializing a `Value` cannot fail (its keys are strings); fall back to an empty object anyway.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_header_picks_the_success_message() {
        let mut headers = HeaderMap::new();
        assert_eq!(Lang::from_headers(&headers).success(), "Success.");
        headers.insert("language", HeaderValue::from_static("zh-CN"));
        assert_eq!(Lang::from_headers(&headers).success(), "成功");
        headers.insert("language", HeaderValue::from_static("de-DE"));
        assert_eq!(Lang::from_headers(&headers), Lang::En);
    }

    #[test]
    fn error_keeps_status_and_koodrive_shape() {
        let err = ApiError::unauthorized(codes::UNAUTHORIZED, "no token");
        let response = err.response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json;charset=UTF-8"
        );
    }
}
