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

/// A one-task page in KooDrive's wire shape.
pub(crate) fn page() -> Reply {
    Reply::json(
        200,
        r#"{"taskListDtos":[{"taskId":"1486254586942472064"}],"code":0,"msg":"Success."}"#,
    )
}

/// README, the task-list key: "`X-User-Id`, a SHA-256 of the effective credential (the caller's
/// token, or the configured token or app id) and the effective `language`".
///
/// Over HTTP/2 (where a field may arrive padded) one credential that KooDrive reads as the same
/// once got two cache entries. A padded value is malformed there (RFC 9113 section 8.2.1): it is
/// refused, so the key and KooDrive only ever see one spelling.
#[tokio::test]
async fn a_padded_credential_over_http2_is_refused_not_keyed_apart() {
    let mock = Mock::start(|_| page()).await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let h2 = Client::http2(gw.running().addr);
    let first = h2
        .get_with(TASK_LIST, &[("authorization", "Bearer caller-token")])
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(mock.hits(), 1);
    let padded = h2
        .get_with(TASK_LIST, &[("authorization", "Bearer caller-token ")])
        .await;
    assert_eq!(padded.status, 400, "{}", padded.text());
    assert!(padded.text().contains("authorization"), "{}", padded.text());
    assert_eq!(mock.hits(), 1);
}

/// A request that joined a flight whose page was private to its leader (Set-Cookie) goes to
/// KooDrive itself through `pass`, which labels every answer `detail=too-large`: the waiter's
/// Cache-Status says the page was too large to share, which it was not (and its access label is
/// "pass" while the cache counted it "collapsed").
#[tokio::test]
async fn a_waiter_sent_on_by_a_private_page_is_not_said_too_large() {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let calls = AtomicUsize::new(0);
    let mock = Mock::start(move |_| {
        let reply = Reply::json(200, r#"{"code":0,"msg":"Success.","taskList":[]}"#)
            .header("set-cookie", "sid=x; HttpOnly");
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 => reply.hold(Arc::clone(&held)),
            _ => reply,
        }
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let leader = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    mock.wait_for_hits(1).await;
    let waiter = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.notify_one();
    let leader = within("leader", leader).await.unwrap();
    let waiter = within("waiter", waiter).await.unwrap();
    assert_eq!(leader.status, 200);
    assert_eq!(waiter.status, 200);
    assert_eq!(mock.hits(), 2, "the waiter fetched its own page");
    let status = waiter.header("cache-status").to_owned();
    assert!(
        !status.contains("too-large"),
        "a waiter sent on by a Set-Cookie page says: {status}"
    );
}

#[tokio::test]
async fn http2_header_values_with_spaces_around_them_are_refused_naming_the_header() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let h2 = Client::http2(gw.running().addr);
    for (name, value) in [
        ("x-user-id", "\t42 "),
        ("language", " fr-FR\t"),
        ("authorization", "Bearer tok "),
        ("x-anything", " 1"),
    ] {
        let request = h2
            .request(Method::GET, TASK_LIST)
            .header(name, value)
            .body(Full::default())
            .unwrap();
        let response = h2.send(request).await;
        assert_eq!(response.status, 400, "{name}: {value:?}");
        assert_eq!(response.json()["code"], "GATEWAY_BAD_REQUEST");
        let msg = response.json()["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains(name), "{msg}");
    }
    assert_eq!(mock.hits(), 0, "nothing padded reached KooDrive");
    // The same values without the padding are served, over HTTP/2 too.
    let request = h2
        .request(Method::GET, TASK_LIST)
        .header("x-user-id", "42")
        .header("language", "fr-FR")
        .body(Full::default())
        .unwrap();
    assert_eq!(h2.send(request).await.status, 200);
    assert_eq!(mock.last().header("x-user-id"), Some("42"));
    assert_eq!(mock.last().header("language"), Some("fr-FR"));
}

#[tokio::test]
async fn the_shared_task_list_fetch_carries_only_what_the_key_holds() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let unkeyed = [
        ("x_user_id", "666"),
        ("cookie", "sid=caller-a"),
        ("accept-language", "zh-CN"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("if-none-match", "\"v1\""),
        ("range", "bytes=0-10"),
        ("user-agent", "caller-a/1.0"),
    ];
    let mut headers = vec![("x-user-id", "1001"), ("language", "de-DE")];
    headers.extend(unkeyed);
    let response = gw.client.get_with(TASK_LIST, &headers).await;
    assert_eq!(response.status, 200);
    let seen = mock.last();
    for (name, _) in unkeyed {
        assert_eq!(seen.header(name), None, "{name} reached KooDrive");
    }
    // What the key holds, and what the gateway adds, does.
    assert_eq!(seen.header("x-user-id"), Some("1001"));
    assert_eq!(seen.header("language"), Some("de-DE"));
    assert!(seen.header("authorization").is_some());
    assert!(seen.header("x-date").is_some());
    assert!(seen.header("x-traceid").is_some());
    assert_eq!(seen.header("accept-encoding"), Some("gzip"));
    // Another caller with the same key but other unkeyed headers shares the page: KooDrive is
    // not asked again, and it could not have answered differently.
    let other = gw
        .client
        .get_with(
            TASK_LIST,
            &[
                ("x-user-id", "1001"),
                ("language", "de-DE"),
                ("cookie", "sid=caller-b"),
            ],
        )
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(mock.hits(), 1);
    // An unforwarded look-alike is not the identity either: the configured user is used.
    gw.client
        .get_with(TASK_LIST, &[("x_user_id", "666"), ("pragma", "no-cache")])
        .await;
    assert_eq!(mock.last().header("x-user-id"), Some(USER_ID));
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

#[tokio::test]
async fn identities_never_share_pages() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let identities: [&[(&str, &str)]; 5] = [
        &[],
        &[("x-user-id", "42")],
        &[("x-user-id", "42"), ("authorization", "Bearer token-a")],
        &[("x-user-id", "42"), ("authorization", "Bearer token-b")],
        &[("x-user-id", "42"), ("language", "zh-CN")],
    ];
    let mut owners = Vec::new();
    for round in 0..2 {
        for headers in identities {
            let response = gw.client.get_with(TASK_LIST, headers).await;
            let owner = response.json()["owner"].as_str().unwrap().to_owned();
            if round == 0 {
                owners.push(owner);
            } else {
                assert!(owners.contains(&owner));
            }
        }
    }
    assert_eq!(
        mock.hits(),
        identities.len(),
        "one miss per identity, then hits"
    );
    assert_eq!(
        owners,
        [
            format!("{USER_ID}|app|en-US"),
            "42|app|en-US".into(),
            "42|Bearer token-a|en-US".into(),
            "42|Bearer token-b|en-US".into(),
            "42|app|zh-CN".into(),
        ]
    );
}

/// A header that says who a request acts as, sent twice: the key would take one value and
/// KooDrive might take the other, so the page it made could be stored for the wrong identity.
/// Refused on every route (a write invalidates by user too), never forwarded.
#[tokio::test]
async fn a_repeated_identity_header_is_refused_and_never_forwarded() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    for (name, first, second) in [
        ("x-user-id", "1001", "1002"),
        ("authorization", "Bearer token-a", "Bearer token-b"),
        ("language", "en-US", "zh-CN"),
    ] {
        for (method, path) in [
            (Method::GET, TASK_LIST),
            (Method::POST, "/koodrive/ose/v1/task/create"),
        ] {
            let request = gw
                .client
                .request(method, path)
                .header(name, first)
                .header(name, second)
                .body(Full::default())
                .unwrap();
            let response = gw.client.send(request).await;
            assert_eq!(response.status, 400, "{name} twice on {path}");
            assert_eq!(response.json()["code"], "GATEWAY_BAD_REQUEST");
            let msg = response.json()["msg"].as_str().unwrap().to_owned();
            assert!(msg.to_ascii_lowercase().contains(name), "{msg}");
        }
    }
    assert_eq!(mock.hits(), 0, "nothing was forwarded");
    // Once each, the same headers are served, and the first identity's page is its own.
    let once = gw
        .client
        .get_with(TASK_LIST, &[("x-user-id", "1001"), ("language", "zh-CN")])
        .await;
    assert_eq!(once.status, 200);
    assert_eq!(once.json()["owner"], "1001|app|zh-CN");
}

/// Many identities, queries and concurrent requests, with writes in between: every body belongs
/// to the identity that asked, and every answer after a write reflects it.
#[tokio::test]
async fn randomized_identities_never_see_each_other_and_always_see_their_writes() {
    let versions: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let table = Arc::clone(&versions);
    let mock = Mock::start(move |seen| {
        let user = seen.header("x-user-id").unwrap_or("?").to_owned();
        let mut table = table.lock().unwrap();
        let version = table.entry(user).or_insert(0);
        if seen.method == Method::POST {
            *version += 1;
            return Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#);
        }
        let mut reply = page_for(seen, *version);
        // Echo the query too, so a page for one query is never served for another.
        let mut json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        json["query"] = seen.uri.query().unwrap_or("").into();
        reply.body = json.to_string().into();
        reply
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let users = ["2001", "2002", "2003"];
    let tokens = [None, Some("Bearer tk-1"), Some("Bearer tk-2")];
    let languages = ["en-US", "zh-CN"];
    let queries = ["status=1", "status=1,2&pageSize=10", "taskType=0", ""];
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..6 {
        let mut handles = Vec::new();
        for _ in 0..60 {
            let user = users[rng.usize(..users.len())];
            let token = tokens[rng.usize(..tokens.len())];
            let language = languages[rng.usize(..languages.len())];
            let query = queries[rng.usize(..queries.len())];
            let client = gw.client.clone();
            let floor = *versions.lock().unwrap().get(user).unwrap_or(&0);
            handles.push(tokio::spawn(async move {
                let mut headers = vec![("x-user-id", user), ("language", language)];
                if let Some(token) = token {
                    headers.push(("authorization", token));
                }
                let response = client
                    .get_with(&format!("{TASK_LIST}?{query}"), &headers)
                    .await;
                (user, token, language, query, floor, response)
            }));
        }
        for handle in handles {
            let (user, token, language, query, floor, response) =
                within("a request", handle).await.unwrap();
            let json = response.json();
            let owner = format!("{user}|{}|{language}", token.unwrap_or("app"));
            assert_eq!(json["owner"], owner.as_str(), "round {round}");
            assert_eq!(json["query"], query);
            assert!(
                json["version"].as_u64().unwrap() >= floor,
                "a page older than a finished write"
            );
        }
        // A write for one user, finished before the next round starts.
        let user = users[round % users.len()];
        assert_eq!(gw.client.send(create(&gw, user)).await.status, 200);
    }
}
