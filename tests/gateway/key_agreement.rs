//! Headers go upstream exactly as the cache key read them: an HTTP/2 value with spaces around it
//! is refused (RFC 9113 section 8.2.1), and the shared task-list fetch carries only what the key
//! holds, so no page stored under one key depends on what another caller with that key sent.
//! The admin listener parses as strictly as the proxy listener.

use http::Method;
use http_body_util::Full;

use crate::support::{Client, Mock, TestGateway, TASK_LIST, USER_ID};

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
    let request = gw
        .admin
        .request(Method::POST, "/cache/purge")
        .header("authorization", "Bearer adm1n")
        .header("authorization", "Bearer other")
        .body(Full::default())
        .unwrap();
    let refused = gw.admin.send(request).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["code"], "GATEWAY_BAD_REQUEST");
    // The proxy listener's rule, for comparison.
    let request = gw
        .client
        .request(Method::GET, TASK_LIST)
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b")
        .body(Full::default())
        .unwrap();
    assert_eq!(gw.client.send(request).await.status, 400);
    // One is enough.
    let request = gw
        .admin
        .request(Method::POST, "/cache/purge")
        .header("authorization", "Bearer adm1n")
        .body(Full::default())
        .unwrap();
    assert_eq!(gw.admin.send(request).await.status, 200);
}
