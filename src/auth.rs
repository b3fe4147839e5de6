//! App authentication: who a request acts as (credential precedence) and the headers that say so
//! upstream (`X-User-Id`, `X-Date`, `Host`, `Authorization`, `language`). Signing is the last step
//! before the upstream call so that the signature covers exactly what is sent.

pub mod sign;

use arc_swap::ArcSwapOption;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{AuthConfig, AuthMode, SecretSource};
use crate::error::GatewayError;
use crate::headers::{LANGUAGE, X_DATE, X_USER_ID};
use crate::metrics::{KeyLabels, Metrics};
use crate::secret::SecretCell;

const X_DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// The effective identity of a request after credential precedence: what a cached page belongs to.
/// The credential is only kept as a SHA-256, never in clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user_id: HeaderValue,
    pub credential_sha256: [u8; 32],
    pub language: HeaderValue,
}

/// The client headers a shared task-list fetch may carry to KooDrive: the ones
/// [`Auth::identity`] reads into the cache key (`X-User-Id`, `Authorization`, `language`), and
/// `X-Date`, which is kept only beside the caller's own `Authorization` (whose hash the key
/// holds, and whose signature covers it). A page shared under one key must not depend on
/// anything else a caller sent (a `Cookie`, an `X_User_Id`, `Accept-Language`, ...).
pub const KEYED_HEADERS: [HeaderName; 4] = [X_USER_ID, AUTHORIZATION, LANGUAGE, X_DATE];

/// How many headers [`Auth::apply`] may add: `X-User-Id`, `language`, `Host`, `X-Date` and
/// `Authorization`.
pub const ADDED_HEADERS: usize = 5;

#[derive(Debug)]
pub struct Auth {
    mode: AuthMode,
    user_id: HeaderValue,
    app_id: String,
    secret: SecretCell,
    language: HeaderValue,
    override_client: bool,
    /// The configured app id's credential hash, computed once (it cannot rotate).
    app_credential: [u8; 32],
    /// The last `X-Date` made, with its second: the value every request sent in that second.
    date: ArcSwapOption<(i64, HeaderValue)>,
}

/// SHA-256 over a kind tag and a credential: the identity part of a cache key.
fn credential_hash(kind: &[u8], credential: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(kind);
    hash.update(credential);
    hash.finalize().into()
}

impl Auth {
    /// Builds the authenticator; a secret file is read now and then watched for rotation (its
    /// readability in `metrics`). The error names the key.
    pub async fn new(config: &AuthConfig, metrics: &Metrics) -> Result<Auth, String> {
        let secret = match &config.secret {
            SecretSource::Inline(secret) => SecretCell::fixed(secret.clone()),
            SecretSource::File(path) => {
                let key = config.secret_key();
                let unreadable = metrics
                    .secret_file_unreadable
                    .get_or_create(&KeyLabels { key })
                    .clone();
                SecretCell::watch_file(key, path.clone(), config.file_poll_interval, unreadable)
                    .await?
            }
        };
        Ok(Auth {
            mode: config.mode,
            user_id: config.user_id.clone(),
            app_id: config.app_id.clone(),
            secret,
            language: config.language.clone(),
            override_client: config.override_client,
            date: ArcSwapOption::empty(),
            app_credential: credential_hash(b"app\0", config.app_id.as_bytes()),
        })
    }

    /// True when the client's own `Authorization` is forwarded instead of the configured one.
    fn client_credential<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        if self.override_client {
            return None;
        }
        headers.get(AUTHORIZATION)
    }

    /// True when the request will be signed, so its body must be read whole first.
    pub fn signs(&self, headers: &HeaderMap) -> bool {
        self.mode == AuthMode::AppSignature && self.client_credential(headers).is_none()
    }

    /// Who the client request acts as, computed before any header is injected.
    pub fn identity(&self, headers: &HeaderMap) -> Identity {
        let user_id = match headers.get(X_USER_ID) {
            Some(v) if !self.override_client => trimmed(v),
            _ => self.user_id.clone(),
        };
        let credential_sha256 = match self.client_credential(headers) {
            // Without the spaces around it, as KooDrive reads it (HTTP/2 may keep them).
            Some(client) => credential_hash(b"client\0", client.as_bytes().trim_ascii()),
            // The configured token's hash is kept beside it (every request would hash it
            // otherwise). Untagged, it still never equals a tagged hash: a secret has no NUL.
            None if self.mode == AuthMode::Token => self.secret.get().sha256(),
            None => self.app_credential,
        };
        Identity {
            user_id,
            credential_sha256,
            language: headers
                .get(LANGUAGE)
                .map(trimmed)
                .unwrap_or_else(|| self.language.clone()),
        }
    }

    /// Writes the app-authentication headers into an outgoing request. `body_sha256` is the hex
    /// SHA-256 of the body when [`Auth::signs`] said so.
    pub fn apply(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        host: &HeaderValue,
        body_sha256: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), GatewayError> {
        if self.override_client {
            headers.remove(AUTHORIZATION);
            headers.remove(X_USER_ID);
        }
        // Room for what is added below at once, rather than grown into.
        headers.reserve(ADDED_HEADERS);
        headers
            .entry(X_USER_ID)
            .or_insert_with(|| self.user_id.clone());
        headers
            .entry(LANGUAGE)
            .or_insert_with(|| self.language.clone());
        headers.insert(HOST, host.clone());
        if headers.contains_key(AUTHORIZATION) {
            // The client's own date, if it sent one, stays beside its own signature.
            headers.entry(X_DATE).or_insert_with(|| self.x_date(now));
            return Ok(());
        }
        headers.insert(X_DATE, self.x_date(now));
        let secret = self.secret.get();
        let authorization = match self.mode {
            // The same value for every request while the token is the same: made once.
            AuthMode::Token => {
                let value = secret.header_value(|token| {
                    let mut value = HeaderValue::from_str(&bearer(token)).ok()?;
                    value.set_sensitive(true);
                    Some(value)
                });
                let value = value.ok_or_else(|| {
                    GatewayError::Internal("the access token is not a valid header value".into())
                })?;
                headers.insert(AUTHORIZATION, value);
                return Ok(());
            }
            AuthMode::AppSignature => {
                let text = |name| {
                    headers
                        .get(&name)
                        .and_then(|v| v.to_str().ok())
                        .ok_or(GatewayError::BadRequest("X-User-Id must be visible ASCII"))
                };
                let signed = [
                    ("host", text(HOST)?),
                    ("x-date", text(X_DATE)?),
                    ("x-user-id", text(X_USER_ID)?),
                ];
                let input = sign::SignInput {
                    method: method.as_str(),
                    path: uri.path(),
                    query: uri.query(),
                    headers: &signed,
                    payload_sha256: body_sha256.unwrap_or(sign::EMPTY_PAYLOAD_SHA256),
                };
                let signature = sign::signature(secret.expose().as_bytes(), &input);
                sign::authorization(&self.app_id, &input, &signature)
            }
        };
        let mut value = HeaderValue::from_str(&authorization)
            .map_err(|e| GatewayError::Internal(Box::new(e)))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        Ok(())
    }
}

impl Auth {
    /// [`x_date`], made once per second and shared by the requests sent in it.
    fn x_date(&self, now: OffsetDateTime) -> HeaderValue {
        let second = now.unix_timestamp();
        if let Some(made) = self.date.load().as_deref().filter(|made| made.0 == second) {
            return made.1.clone();
        }
        let value = x_date(now);
        self.date
            .store(Some(std::sync::Arc::new((second, value.clone()))));
        value
    }
}

/// `X-Date` in KooDrive's form, `YYYYMMDDTHHMMSSZ`, UTC.
pub fn x_date(now: OffsetDateTime) -> HeaderValue {
    let text = now
        .to_offset(time::UtcOffset::UTC)
        .format(X_DATE_FORMAT)
        .unwrap_or_default();
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("19700101T000000Z"))
}

/// `Bearer <token>`, unless the configured token already starts with a scheme word.
pub fn bearer(token: &str) -> String {
    // The docs write the header as `Bearer+{access_token}`: a token copied with that prefix means
    // the scheme, not a token that begins with it.
    if let Some(token) = token.strip_prefix("Bearer+") {
        return format!("Bearer {token}");
    }
    let has_scheme = token.split_once(' ').is_some_and(|(scheme, rest)| {
        !rest.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic())
    });
    if has_scheme {
        token.to_owned()
    } else {
        format!("Bearer {token}")
    }
}

/// A header value without the spaces and tabs around it, as KooDrive and the signer read it.
/// HTTP/1 heads arrive trimmed; an HTTP/2 field may not (`42 ` and `42` are one user to
/// KooDrive, so they must be one to the cache key and to invalidation too).
pub(crate) fn trimmed(value: &HeaderValue) -> HeaderValue {
    let bytes = value.as_bytes();
    let padded = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if !(padded(bytes.first()) || padded(bytes.last())) {
        return value.clone();
    }
    HeaderValue::from_bytes(bytes.trim_ascii()).unwrap_or_else(|_| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_date_is_basic_iso8601_utc() {
        let t = time::macros::datetime!(2024-09-09 11:33:25 +08:00);
        assert_eq!(x_date(t), "20240909T033325Z");
    }

    fn token_auth(token: &str) -> Auth {
        Auth {
            mode: AuthMode::Token,
            user_id: HeaderValue::from_static("1505084218764547200"),
            app_id: String::new(),
            secret: SecretCell::fixed(
                crate::secret::Secret::new(token).unwrap_or_else(|_| unreachable!()),
            ),
            language: HeaderValue::from_static("en_US"),
            override_client: false,
            app_credential: [0; 32],
            date: ArcSwapOption::empty(),
        }
    }

    #[test]
    fn x_date_is_made_once_a_second() {
        let auth = token_auth("t0k3n");
        let t = time::macros::datetime!(2024-09-09 11:33:25.100 +08:00);
        let first = auth.x_date(t);
        assert_eq!(first, "20240909T033325Z");
        // Later in the same second: the value made for it, shared rather than made again.
        let again = auth.x_date(t + time::Duration::milliseconds(800));
        assert_eq!(again.as_bytes().as_ptr(), first.as_bytes().as_ptr());
        assert_eq!(
            auth.x_date(t + time::Duration::seconds(1)),
            "20240909T033326Z"
        );
        // A clock stepped back gets its own second's value.
        assert_eq!(
            auth.x_date(t - time::Duration::seconds(5)),
            "20240909T033320Z"
        );
    }

    #[test]
    fn a_token_authorization_is_made_once_and_sensitive() {
        let auth = token_auth("Bearer+6ebb");
        let apply = || {
            let mut headers = HeaderMap::new();
            let uri = http::Uri::from_static("http://koodrive/koodrive/ose/v1/file/info");
            let now = OffsetDateTime::now_utc();
            let host = HeaderValue::from_static("koodrive");
            let applied = auth.apply(&http::Method::GET, &uri, &mut headers, &host, None, now);
            assert!(applied.is_ok());
            headers
                .remove(AUTHORIZATION)
                .unwrap_or_else(|| unreachable!())
        };
        let (first, second) = (apply(), apply());
        assert_eq!(first, "Bearer 6ebb");
        assert!(first.is_sensitive());
        assert_eq!(first.as_bytes().as_ptr(), second.as_bytes().as_ptr());
    }

    #[test]
    fn bearer_keeps_an_explicit_scheme() {
        assert_eq!(bearer("6ebb12"), "Bearer 6ebb12");
        assert_eq!(bearer("Bearer 6ebb12"), "Bearer 6ebb12");
        assert_eq!(bearer("AT 6ebb12"), "AT 6ebb12");
        assert_eq!(bearer("Bearer+6ebb"), "Bearer 6ebb");
    }
}
