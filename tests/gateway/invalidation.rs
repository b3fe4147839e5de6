//! Invalidation: a task write drops the writer's pages (only theirs, and also when the write may
//! have been applied), and the admin purge drops everything or one user's pages behind the admin
//! token, parsing its requests as strictly as the proxy listener does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use crate::cache::{cache_status, create, page_for, version, versioned_mock};
use crate::support::{Mock, Reply, TestGateway, TASK_LIST};

/// README: the key holds `X-User-Id` "without the spaces around it (as KooDrive reads them: an
/// HTTP/2 `x-user-id: 42 ` is user `42`)", and `POST /cache/purge?user_id=...` drops "one user's
/// pages". A purge of `user_id=555%20` answers `{"purged":"user"}` but drops nothing: user 555's
/// page is still a hit. (Either trim it as the key does, or refuse it; not a silent no-op.)
#[tokio::test]
async fn a_purge_whose_user_id_has_surrounding_spaces_purges_that_user_or_is_refused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let path = format!("{TASK_LIST}?pageSize=3");
    let user = [("x-user-id", "555")];
    assert_eq!(gw.client.get_with(&path, &user).await.status, 200);
    let hit = gw.client.get_with(&path, &user).await;
    assert!(
        hit.header("cache-status").contains("hit"),
        "{:?}",
        hit.headers
    );
    let purge = gw
        .admin
        .send(
            http::Request::post(gw.admin.url("/cache/purge?user_id=555%20"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await;
    if purge.status == 200 {
        let after = gw.client.get_with(&path, &user).await;
        assert!(
            !after.header("cache-status").contains("hit"),
            "purge answered {} but user 555's page is still served from the cache: {}",
            purge.text(),
            after.header("cache-status")
        );
    } else {
        assert_eq!(purge.status, 400, "{}", purge.text());
    }
}

#[tokio::test]
async fn admin_purge_refuses_malformed_encoding_naming_the_parameter() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let purge = |query: &str| {
        gw.admin
            .request(Method::POST, &format!("/cache/purge{query}"))
            .body(Full::default())
            .unwrap()
    };
    for query in ["?user_id=%ZZ", "?user_id=%FF", "?user_id=4%2", "?user%ZZ=1"] {
        let refused = gw.admin.send(purge(query)).await;
        assert_eq!(refused.status, 400, "{query}");
        let body = refused.json();
        assert_eq!(body["code"], "GATEWAY_BAD_QUERY", "{query}");
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.contains("user"), "{query}: {msg}");
    }
    // Well-formed encodings still purge.
    assert_eq!(gw.admin.send(purge("?user_id=10%30")).await.status, 200);
    assert_eq!(gw.admin.send(purge("?user_id=a+b")).await.status, 200);
}

#[tokio::test]
async fn admin_refuses_a_repeated_authorization_as_the_proxy_does() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[admin]\ntoken = \"adm1n\"\n").await;
    let both = [
        ("authorization", "Bearer adm1n"),
        ("authorization", "Bearer other"),
    ];
    let refused = gw
        .admin
        .post_with("/cache/purge", &both, Bytes::new())
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["code"], "GATEWAY_BAD_REQUEST");
    // The proxy listener's rule, for comparison.
    let both = [("authorization", "Bearer a"), ("authorization", "Bearer b")];
    assert_eq!(gw.client.get_with(TASK_LIST, &both).await.status, 400);
    // One is enough.
    assert_eq!(
        gw.admin
            .post_with(
                "/cache/purge",
                &[("authorization", "Bearer adm1n")],
                Bytes::new()
            )
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_successful_task_write_invalidates_only_the_writer() {
    let fail_writes = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failing = Arc::clone(&fail_writes);
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| {
        if seen.method == Method::POST {
            if failing.load(Ordering::SeqCst) {
                return Reply::json(400, r#"{"code":13000014,"msg":"bad body"}"#);
            }
            return Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#);
        }
        page_for(seen, counter.fetch_add(1, Ordering::SeqCst) + 1)
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let a = [("x-user-id", "1001")];
    let b = [("x-user-id", "1002")];
    let a1 = version(&gw.client.get_with(TASK_LIST, &a).await);
    let b1 = version(&gw.client.get_with(TASK_LIST, &b).await);
    assert_eq!(gw.client.send(create(&gw, "1001")).await.status, 200);
    let a2 = gw.client.get_with(TASK_LIST, &a).await;
    assert!(
        cache_status(&a2).contains("fwd=miss"),
        "the writer's list was invalidated"
    );
    assert!(version(&a2) > a1);
    let b2 = gw.client.get_with(TASK_LIST, &b).await;
    assert!(cache_status(&b2).contains("hit"));
    assert_eq!(version(&b2), b1);

    fail_writes.store(true, Ordering::SeqCst);
    assert_eq!(gw.client.send(create(&gw, "1001")).await.status, 400);
    let a3 = gw.client.get_with(TASK_LIST, &a).await;
    assert!(
        cache_status(&a3).contains("hit"),
        "a failed write invalidates nothing"
    );
}

/// A write to a task path written loosely (a doubled slash, a dot segment, an encoded letter),
/// which KooDrive's server may well route to the same endpoint, invalidates the writer's lists
/// as the canonical path does.
#[tokio::test]
async fn a_write_to_a_loosely_written_task_path_invalidates_too() {
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| {
        if seen.method == Method::POST {
            return Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#);
        }
        page_for(seen, counter.fetch_add(1, Ordering::SeqCst) + 1)
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let a = [("x-user-id", "1001")];
    for path in [
        "/koodrive/ose/v1//task/create",
        "/koodrive/ose/v1/./task/create",
        "/koodrive/ose/v1/%74ask/create",
    ] {
        let before = version(&gw.client.get_with(TASK_LIST, &a).await);
        assert_eq!(
            gw.client
                .post_with(
                    path,
                    &[("x-user-id", "1001")],
                    r#"{"taskName":"t","taskType":0}"#
                )
                .await
                .status,
            200,
            "{path}"
        );
        assert_eq!(mock.last().uri.path(), path, "forwarded as written");
        let after = gw.client.get_with(TASK_LIST, &a).await;
        assert!(cache_status(&after).contains("fwd=miss"), "{path}");
        assert!(version(&after) > before, "{path}");
    }
}

/// A write whose answer never came (KooDrive may have applied it) invalidates the writer's lists
/// as an accepted one does, and only the writer's.
#[tokio::test]
async fn a_write_that_may_have_been_applied_invalidates_too() {
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| match seen.method {
        Method::POST => {
            Reply::json(200, r#"{"code":0,"msg":"Success."}"#).delay(Duration::from_secs(600))
        }
        _ => page_for(seen, counter.fetch_add(1, Ordering::SeqCst) + 1),
    })
    .await;
    let gw = TestGateway::for_mock(
        &mock,
        "[cache]\nttl = \"60s\"\n[upstream]\ntimeout = \"1s\"",
    )
    .await;
    let a = [("x-user-id", "1001")];
    let b = [("x-user-id", "1002")];
    gw.client.get_with(TASK_LIST, &a).await;
    gw.client.get_with(TASK_LIST, &b).await;
    let timed_out = gw.client.send(create(&gw, "1001")).await;
    assert_eq!(timed_out.status, 504);
    assert_eq!(
        mock.last().method,
        Method::POST,
        "the write reached KooDrive"
    );
    let a2 = gw.client.get_with(TASK_LIST, &a).await;
    assert!(
        cache_status(&a2).contains("fwd=miss"),
        "{}",
        cache_status(&a2)
    );
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &b).await).contains("hit"));
}

#[tokio::test]
async fn admin_purges_everything_or_one_user_behind_the_admin_token() {
    let mock = versioned_mock().await;
    let gw =
        TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"\n[admin]\ntoken = \"adm1n\"").await;
    let a = [("x-user-id", "1001")];
    let b = [("x-user-id", "1002")];
    gw.client.get_with(TASK_LIST, &a).await;
    gw.client.get_with(TASK_LIST, &b).await;
    let purge = |query: &str, token: Option<&str>| {
        let mut request = gw
            .admin
            .request(Method::POST, &format!("/cache/purge{query}"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Full::default()).unwrap()
    };
    assert_eq!(gw.admin.send(purge("", None)).await.status, 401);
    assert_eq!(gw.admin.send(purge("", Some("wrong"))).await.status, 401);
    // The scheme's name is case-insensitive; the token is not.
    for (authorization, status) in [
        ("bearer adm1n", 200),
        ("BEARER  adm1n", 200),
        ("Bearer ADM1N", 401),
        ("Basic adm1n", 401),
        ("Bearer", 401),
    ] {
        gw.client.get_with(TASK_LIST, &a).await;
        let purged = gw
            .admin
            .post_with(
                "/cache/purge?user_id=0",
                &[("authorization", authorization)],
                Bytes::new(),
            )
            .await;
        assert_eq!(purged.status, status, "{authorization}");
    }
    // A known endpoint with the wrong method is a 405 naming the methods it takes.
    for (method, path, allow) in [
        (Method::GET, "/cache/purge", "POST"),
        (Method::DELETE, "/cache/purge", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::PUT, "/metrics", "GET, HEAD"),
    ] {
        let request = gw
            .admin
            .request(method.clone(), path)
            .body(Full::default())
            .unwrap();
        let answer = gw.admin.send(request).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.header("allow"), allow, "{method} {path}");
        assert_eq!(answer.json()["code"], "GATEWAY_ADMIN_METHOD_NOT_ALLOWED");
    }
    assert_eq!(gw.admin.get("/nothing").await.status, 404);
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &a).await).contains("hit"));

    // A misspelt or repeated parameter is refused, not read as "purge everything".
    for query in [
        "?userId=1001",
        "?user=1001",
        "?user_id=1001&user_id=1002",
        "?all",
    ] {
        let refused = gw.admin.send(purge(query, Some("adm1n"))).await;
        assert_eq!(refused.status, 400, "{query}");
        assert_eq!(refused.json()["code"], "GATEWAY_BAD_REQUEST");
    }
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &a).await).contains("hit"));
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &b).await).contains("hit"));

    assert_eq!(
        gw.admin
            .send(purge("?user_id=1001", Some("adm1n")))
            .await
            .status,
        200
    );
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &a).await).contains("fwd=miss"));
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &b).await).contains("hit"));

    assert_eq!(gw.admin.send(purge("", Some("adm1n"))).await.status, 200);
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &a).await).contains("fwd=miss"));
    assert!(cache_status(&gw.client.get_with(TASK_LIST, &b).await).contains("fwd=miss"));
}
