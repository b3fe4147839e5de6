//! Authentication over HTTP: failures in KooDrive's shape, tokens, language.

use http::{Method, StatusCode};
use time::OffsetDateTime;

use super::{assert_error, start, x_date, LIST};
use crate::koodrive::reply::codes;

#[tokio::test]
async fn authentication_failures_use_koodrive_shape() {
    let h = start().await;
    let now = OffsetDateTime::now_utc();
    let bad_signature = h.signed(Method::GET, LIST, "", "wrong-secret", &x_date(now));
    assert_error(
        &h.send(bad_signature).await,
        StatusCode::UNAUTHORIZED,
        codes::SIGNATURE_MISMATCH,
    );
    let stale = x_date(now - time::Duration::minutes(16));
    let old = h.signed(Method::GET, LIST, "", "secret-1", &stale);
    assert_error(
        &h.send(old).await,
        StatusCode::UNAUTHORIZED,
        codes::DATE_EXPIRED,
    );
    let mut no_user = h.get(LIST);
    no_user.headers_mut().remove("x-user-id");
    assert_error(
        &h.send(no_user).await,
        StatusCode::BAD_REQUEST,
        codes::MISSING_USER_ID,
    );
    let mut bad_date = h.get(LIST);
    bad_date
        .headers_mut()
        .insert("x-date", "2024-09-09".parse().unwrap());
    assert_error(
        &h.send(bad_date).await,
        StatusCode::BAD_REQUEST,
        codes::BAD_X_DATE,
    );
    let unknown = h.with_token(LIST, "Bearer nope");
    assert_error(
        &h.send(unknown).await,
        StatusCode::UNAUTHORIZED,
        codes::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn bearer_tokens_and_language() {
    let h = start().await;
    for authorization in ["Bearer tok-1", "tok-1"] {
        let (status, page) = h.send(h.with_token(LIST, authorization)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["msg"], "Success.");
    }
    let mut zh = h.with_token(LIST, "Bearer tok-1");
    zh.headers_mut()
        .insert("language", "zh-CN".parse().unwrap());
    assert_eq!(h.send(zh).await.1["msg"], "成功");
}
