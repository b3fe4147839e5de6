//! Content codings: gzip is decoded whatever the client accepts, other codings pass through, bombs
//! are cut off.

use super::*;

#[tokio::test]
async fn gzip_bodies_are_decoded_whatever_the_client_accepts() {
    let mock = Mock::start(|_| {
        let mut reply = Reply::json(200, gzip(EXAMPLE.as_bytes()));
        reply
            .headers
            .push(("content-encoding".into(), "gzip".into()));
        reply
    })
    .await;
    let gw = TestGateway::for_mock(
        &mock,
        "[cache]\nttl = \"1ms\"\nstale_while_revalidate = \"0s\"",
    )
    .await;
    for accept in [None, Some("gzip"), Some("br, deflate"), Some("identity")] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let response = gw
            .client
            .get_with(&format!("{TASK_LIST}?pageSize=10"), &headers)
            .await;
        assert_eq!(response.status, 200, "{accept:?}");
        assert!(
            response.headers.get("content-encoding").is_none(),
            "{accept:?}"
        );
        same_json(&response.body, DOCUMENTED);
        assert_eq!(
            response.header("content-length"),
            response.body.len().to_string()
        );
    }
    assert_eq!(mock.last().header("accept-encoding"), Some("gzip"));
}

/// The task list's fetch asks for gzip on its callers' behalf, so whatever comes back gzipped
/// is decoded, not only JSON: here a load balancer's HTML error page, which a caller that
/// accepts only identity must not receive compressed.
#[tokio::test]
async fn a_gzipped_page_that_is_not_json_is_decoded_too() {
    const PAGE: &str = "<html>KooDrive maintenance</html>";
    let mock = Mock::start(|_| {
        let mut reply = Reply::json(503, gzip(PAGE.as_bytes()));
        reply.headers = vec![
            ("content-type".into(), "text/html".into()),
            ("content-encoding".into(), "gzip".into()),
        ];
        reply
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let response = gw
        .client
        .get_with(TASK_LIST, &[("accept-encoding", "identity")])
        .await;
    assert_eq!(mock.last().header("accept-encoding"), Some("gzip"));
    assert_eq!(response.status, 503);
    assert_eq!(response.headers.get("content-encoding"), None);
    assert_eq!(response.text(), PAGE);
    assert_eq!(response.header("content-length"), PAGE.len().to_string());
}

/// A coding the gateway cannot undo, which the client asked for (off the task list the
/// client's Accept-Encoding goes upstream): the answer streams through as it came, status and
/// bytes, counted as a fallback where it would have been normalized. It was a 502.
#[tokio::test]
async fn a_body_in_a_coding_the_gateway_cannot_undo_passes_through() {
    const OPAQUE: &[u8] = b"\x28\xb5\x2f\xfd\x00\x58opaque-zstd-frame";
    let mock = Mock::start(|seen| {
        let status = match seen.uri.path().ends_with("/missing") {
            true => 404,
            false => 200,
        };
        Reply::json(status, OPAQUE).header("content-encoding", "zstd")
    })
    .await;
    let overlay = r#"
        [[normalize.rules]]
        path = "/koodrive/ose/v1/task/{id}"
        types = { code = "string" }
        # An uncached read: the built-in /task/{id} poll cache is off.
        [[cache.routes]]
        path = "/koodrive/ose/v1/task/{id}"
        ttl = "0s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    for (path, status) in [
        ("/koodrive/ose/v1/files/missing", 404),
        ("/koodrive/ose/v1/task/1", 200),
    ] {
        let response = gw
            .client
            .get_with(path, &[("accept-encoding", "zstd")])
            .await;
        assert_eq!(mock.last().header("accept-encoding"), Some("zstd"));
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert_eq!(response.header("content-encoding"), "zstd");
        assert_eq!(response.body, OPAQUE);
    }
    let metrics = gw.metrics().await;
    let key = r#"koodrive_gateway_normalize_fallbacks_total{reason="unsupported_encoding"}"#;
    assert_eq!(metrics.get(key), Some(&2.0), "{metrics:?}");
}

#[tokio::test]
async fn a_compression_bomb_is_cut_off_as_a_502() {
    let zeros = vec![b' '; 64 * 1024 * 1024];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 1024 * 1024);
    let mock = Mock::start(move |_| {
        let mut reply = Reply::json(200, bomb.clone());
        reply
            .headers
            .push(("content-encoding".into(), "gzip".into()));
        reply
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[normalize]\nmax_body = \"1MiB\"").await;
    let response = gw.client.get(TASK_LIST).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["code"], "GATEWAY_UPSTREAM_BODY_TOO_LARGE");
}
