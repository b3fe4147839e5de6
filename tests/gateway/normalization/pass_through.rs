//! What is not normalized passes through untouched and is not stored: invalid JSON, bodies over the
//! bound, HEAD answers, pages not labelled JSON, routes without rules.

use super::*;

#[tokio::test]
async fn invalid_json_passes_through_byte_for_byte_and_is_not_stored() {
    let body = "{\"taskListDtos\": [1, 2,, \u{1F600} nope";
    let mock = Mock::start(move |_| Reply::json(200, body).header("x-kept", "1")).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    for _ in 0..2 {
        let response = gw.client.get(TASK_LIST).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, body);
        assert_eq!(response.header("x-kept"), "1");
    }
    assert_eq!(mock.hits(), 2, "an unparseable page is never stored");
}

#[tokio::test]
async fn a_body_over_the_bound_passes_through_on_a_rule_route() {
    let big = format!(
        r#"{{"code":0,"taskDto":{{"taskId":1,"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let sent = big.clone();
    let mock = Mock::start(move |_| Reply::json(200, sent.clone())).await;
    let overlay = r#"
        [normalize]
        max_body = "1KiB"
        [[normalize.rules]]
        path = "/koodrive/ose/v1/task/{id}"
        types = { code = "string" }
        # An uncached read: the built-in /task/{id} poll cache is off.
        [[cache.routes]]
        path = "/koodrive/ose/v1/task/{id}"
        ttl = "0s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), big);
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn a_task_list_page_over_the_bound_streams_through_and_is_never_stored() {
    let big = format!(
        r#"{{"taskListDtos":[{{"taskId":1,"pad":"{}"}}],"code":0}}"#,
        "x".repeat(4096)
    );
    let sent = big.clone();
    let mock = Mock::start(move |seen| {
        let reply = Reply::json(200, sent.clone()).header("x-kept", "1");
        // Chunked when asked, so the gateway finds out only by reading.
        match seen.uri.query() == Some("chunked=1") {
            true => reply.chunked(),
            false => reply,
        }
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[normalize]\nmax_body = \"1KiB\"").await;
    for (query, calls) in [("", 2), ("", 3), ("?chunked=1", 5), ("?chunked=1", 6)] {
        let response = gw
            .client
            .get_with(
                &format!("{TASK_LIST}{query}"),
                &[("accept-encoding", "identity")],
            )
            .await;
        assert_eq!(response.status, 200, "{query}");
        assert_eq!(response.text(), big, "byte for byte: {query}");
        assert_eq!(response.header("x-kept"), "1");
        let status = response.header("cache-status");
        assert!(status.contains("fwd=bypass; detail=too-large"), "{status}");
        // The first request learns it in a flight that drops the body, then fetches on its
        // own; later ones go straight to KooDrive. Never stored, never a 502.
        assert_eq!(mock.hits(), calls, "{query}");
        assert_eq!(
            mock.last().headers["accept-encoding"],
            "identity",
            "as the client asked"
        );
        assert_eq!(
            mock.last().header("x-traceid"),
            Some(response.header("x-traceid")),
            "sent with the trace id it was given"
        );
    }
    let metrics = gw.admin.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"koodrive_gateway_normalize_fallbacks_total{reason="too_large"} 4"#),
        "{metrics}"
    );
}

/// Nothing to shape without a body: the answer to a HEAD keeps the headers a GET would get (its
/// Content-Length is the upstream body's, not the empty one's).
#[tokio::test]
async fn an_answer_to_head_passes_through_unshaped() {
    const ERROR: &str = r#"{"code": 13000201, "msg": "inner server invoke failure"}"#;
    let mock = Mock::start(|_| Reply::json(400, ERROR)).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let request = gw
        .client
        .request(http::Method::HEAD, "/koodrive/ose/v1/task/result?taskId=1")
        .body(http_body_util::Full::default())
        .unwrap();
    let head = gw.client.send(request).await;
    assert_eq!(head.status, 400);
    assert_eq!(mock.last().method, http::Method::HEAD);
    assert_eq!(head.header("content-length"), ERROR.len().to_string());
}

#[tokio::test]
async fn routes_without_rules_stream_untouched() {
    let body = r#"{"taskListDtos":[],"code":0,"nextCursor":17}"#;
    let mock = Mock::start(move |_| Reply::json(200, body)).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let response = gw.client.get("/koodrive/ose/v1/files/list").await;
    assert_eq!(response.body, body);
}

/// task-list-api.md, "Response 200 (documented schema)" (taskList, code a string, nextCursor a
/// string), and README: "A non-JSON or invalid-JSON page is shared with the waiters of its fetch
/// but not stored." A page KooDrive sends without a JSON Content-Type (none at all, or
/// text/plain) reaches callers in the wire shape (`taskListDtos`, numeric code and cursor), and is
/// stored and served again from the cache in that shape.
#[tokio::test]
async fn a_page_not_labelled_json_is_not_stored_in_the_wire_shape() {
    for content_type in [Some("text/plain;charset=UTF-8"), None] {
        let mock = Mock::start(move |_| {
            let mut reply = Reply::json(200, EXAMPLE);
            reply.headers.clear();
            if let Some(value) = content_type {
                reply.headers.push(("content-type".into(), value.into()));
            }
            reply
        })
        .await;
        let gw = TestGateway::for_mock(&mock, "").await;
        let path = format!("{TASK_LIST}?pageSize=2");
        let first = gw.client.get(&path).await;
        let second = gw.client.get(&path).await;
        assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
        let wire_shape = second.text().contains("taskListDtos");
        assert!(
            !(wire_shape && mock.hits() == 1),
            "content-type {content_type:?}: the wire-shape page was stored and served again \
             (Cache-Status {:?}, {:?}): {}",
            first.header("cache-status"),
            second.header("cache-status"),
            second.text()
        );
    }
}
