//! Cache poisoning and log forging, found in the fourth review round (a security review) and
//! fixed since: a `Vary` the cache ignored, a leader's `Set-Cookie` handed to collapsed waiters,
//! and a decoded query-parameter name forging lines in the pretty log format.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::cli::{temp_config, Process};
use crate::support::{within, Client, Mock, Reply, TestGateway, TASK_LIST};

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

/// A page with `Set-Cookie` is not stored (it answers one request), yet a request that joined
/// its flight gets it, cookie included: the cookie KooDrive set for the leader's request (made
/// with the leader's own `Cookie`, which is not in the key) reaches another client. nginx's
/// `proxy_cache_lock` and Varnish's waiting list send the waiters upstream themselves when the
/// answer is not cacheable.
#[tokio::test]
async fn a_leaders_set_cookie_never_reaches_a_collapsed_waiter() {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let calls = AtomicUsize::new(0);
    let mock = Mock::start(move |seen| {
        let session = seen
            .header("cookie")
            .unwrap_or("none")
            .trim_start_matches("sid=")
            .to_owned();
        let reply = Reply::json(200, r#"{"code":0,"msg":"Success."}"#)
            .header("set-cookie", &format!("sid={session}; HttpOnly; Secure"));
        // Only the first call is held, so that the waiter's own call (after a fix) is not.
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 => reply.hold(Arc::clone(&held)),
            _ => reply,
        }
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let alice = {
        let client = gw.client.clone();
        tokio::spawn(async move {
            client
                .get_with(TASK_LIST, &[("cookie", "sid=alice-session-secret")])
                .await
        })
    };
    mock.wait_for_hits(1).await;
    let bob = {
        let client = gw.client.clone();
        tokio::spawn(async move {
            client
                .get_with(TASK_LIST, &[("cookie", "sid=bob-session")])
                .await
        })
    };
    // Let bob join alice's flight, then release it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.notify_one();
    let alice = within("alice", alice).await.unwrap();
    let bob = within("bob", bob).await.unwrap();
    assert_eq!(alice.status, 200);
    assert_eq!(bob.status, 200);
    let bobs_cookie = bob
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        !bobs_cookie
            .as_deref()
            .unwrap_or_default()
            .contains("alice-session-secret"),
        "bob got alice's Set-Cookie: {bobs_cookie:?} (cache-status: {:?})",
        bob.headers.get("cache-status")
    );
}

/// With `log.format = "pretty"`, a query parameter whose *name* percent-decodes to a line break,
/// followed by a malformed value, puts the decoded name into the `GATEWAY_BAD_QUERY` error's
/// Display (`invalid query parameter {param}=...`), which its debug line would write raw: the client
/// writes a log line of its choosing (CWE-117). The value is escaped (`{value:?}`); the name is
/// not.
#[tokio::test]
async fn a_query_parameter_name_cannot_forge_a_pretty_log_line() {
    let mock = Mock::ok().await;
    let config = temp_config(
        "r4b-pretty",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n\
             [auth]\nuser_id = \"7\"\napp_id = \"app\"\napp_secret = \"s\"\n\
             [log]\nformat = \"pretty\"\n",
            mock.url()
        ),
    );
    // A client's bad query is logged with its detail at debug only (its access event at info
    // carries no query): debug, where the error's Display is written.
    let mut process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    let listening = process.line_with("koodrive-gateway listening").await;
    let addr = listening
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr in {listening:?}"))
        .parse()
        .unwrap();
    let client = Client::new(addr);
    let forged =
        "FORGED%202030-01-01T00:00:00.000000Z%20%20INFO%20koodrive_gateway::admin:%20admin%20purge";
    let response = client.get(&format!("{TASK_LIST}?x%0A{forged}=%ZZ")).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["code"], "GATEWAY_BAD_QUERY");
    let line = process.line_with("FORGED").await;
    let (_, _lines) = process.terminate().await;
    std::fs::remove_file(config).ok();
    assert!(
        !line.starts_with("FORGED"),
        "a client-chosen text starts a log line of its own: {line:?}"
    );
}
