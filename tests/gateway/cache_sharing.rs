//! What one caller's fetch may give another. Identities never share pages, even under random
//! traffic with writes; the shared task-list fetch carries only what the key holds, and a header
//! value with spaces around it is refused over HTTP/2 (RFC 9113 section 8.2.1) rather than keyed
//! apart; a page that varies, or is private to its caller (`Set-Cookie`), is neither stored nor
//! handed to collapsed waiters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use http_body_util::Full;
use tokio::sync::Notify;

use crate::cache::{create, page_for, versioned_mock};
use crate::support::{within, Client, Mock, Reply, TestGateway, TASK_LIST, USER_ID};

mod identities;
mod shared_fetch;

/// A one-task page in KooDrive's wire shape.
pub(crate) fn page() -> Reply {
    Reply::json(
        200,
        r#"{"taskListDtos":[{"taskId":"1486254586942472064"}],"code":0,"msg":"Success."}"#,
    )
}

/// KooDrive (or the API gateway in front of it) says its page depends on `Accept-Language`. The
/// shared fetch once forwarded the caller's `Accept-Language`, which the key does not contain,
/// and the gateway stored the page anyway: the next caller with another `Accept-Language` got
/// the first caller's variant. RFC 9111 section 4.1: a stored response may only be used for a
/// request whose `Vary`-named headers match. Now the shared fetch carries no header the key does
/// not hold (KooDrive sees no `Accept-Language`), and such a page is still not stored.
#[tokio::test]
async fn a_page_that_varies_is_not_served_to_a_request_it_does_not_match() {
    let mock = Mock::start(|seen| {
        let variant = seen.header("accept-language").unwrap_or("none").to_owned();
        let body = serde_json::json!({"code": 0, "msg": "Success.", "variant": variant});
        Reply::json(200, body.to_string()).header("vary", "Accept-Language")
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let zh = gw
        .client
        .get_with(TASK_LIST, &[("accept-language", "zh-CN")])
        .await;
    assert_eq!(zh.status, 200);
    assert_eq!(zh.json()["variant"], "none");
    let en = gw
        .client
        .get_with(TASK_LIST, &[("accept-language", "en-US")])
        .await;
    assert_eq!(en.json()["variant"], "none");
    assert_eq!(
        mock.hits(),
        2,
        "a page that varies on a header the key does not hold was served from the cache \
         (cache-status: {:?})",
        en.headers.get("cache-status"),
    );
}

/// `Vary: *` means no later request can be known to match (RFC 9111 section 4.1): nginx does not
/// cache such a response. The gateway stores it and serves it as a hit.
#[tokio::test]
async fn a_page_with_vary_star_is_never_served_from_the_cache() {
    let mock = Mock::start(|_| Reply::ok().header("vary", "*")).await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let first = gw.client.get(TASK_LIST).await;
    assert_eq!(first.status, 200);
    let second = gw.client.get(TASK_LIST).await;
    assert_eq!(
        mock.hits(),
        2,
        "a Vary: * page was served from the cache (cache-status: {:?})",
        second.headers.get("cache-status")
    );
}
