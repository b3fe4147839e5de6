//! The shared task-list fetch: it carries only what the key holds, and its private answers and
//! cookies never reach collapsed waiters.

use super::*;

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
