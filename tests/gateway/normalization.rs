//! Normalization through the gateway: the task list reaches callers in the documented schema
//! whatever KooDrive sends (gzip or not), error bodies get one shape, rules come from config.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use crate::support::{Mock, Reply, TestGateway, TASK_LIST};

/// The upstream's own example response, from task-list-api.md.
pub const EXAMPLE: &str = r#"{
  "taskListDtos" : [ {
    "taskId" : "1486254586942472064",
    "taskName" : "ceshi1111",
    "taskType" : 0,
    "status" : 2,
    "createTime" : "2024-08-12T07:22:33.000Z"
  }, {
    "taskId" : "1486368980720435072",
    "taskName" : "ceshi4",
    "taskType" : 0,
    "status" : 2,
    "createTime" : "2024-08-12T11:09:50.000Z"
  } ],
  "nextCursor" : 1723549107000,
  "code" : 0,
  "msg" : "Success."
}"#;

const DOCUMENTED: &str = r#"{"taskList":[{"taskId":"1486254586942472064","taskName":"ceshi1111","taskType":0,"status":2,"createTime":"2024-08-12T07:22:33.000Z"},{"taskId":"1486368980720435072","taskName":"ceshi4","taskType":0,"status":2,"createTime":"2024-08-12T11:09:50.000Z"}],"nextCursor":"1723549107000","code":"0","msg":"Success."}"#;

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    Bytes::from(encoder.finish().unwrap())
}

fn same_json(actual: &[u8], expected: &str) {
    let actual: serde_json::Value = serde_json::from_slice(actual).unwrap();
    let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn the_task_list_reaches_callers_in_the_documented_schema() {
    let mock = Mock::start(|_| Reply::json(200, EXAMPLE)).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let response = gw
        .client
        .get(&format!(
            "{TASK_LIST}?taskType=0&status=2&pageSize=10&pageCursor"
        ))
        .await;
    assert_eq!(response.status, 200);
    same_json(&response.body, DOCUMENTED);
    // Exact digits, never through a float.
    assert!(response.text().contains(r#""nextCursor":"1723549107000""#));
    assert_eq!(
        response.header("content-length"),
        response.body.len().to_string()
    );
}

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

#[tokio::test]
async fn error_bodies_get_one_shape_and_keep_their_status() {
    let mock = Mock::start(|seen| match seen.uri.path() {
        p if p.ends_with("/apig") => Reply::json(
            429,
            r#"{"error_code":"APIG.0308","error_msg":"throttled","request_id":"r-1"}"#,
        ),
        _ => Reply::json(
            400,
            r#"{"code": 13000201, "msg": "inner server invoke failure"}"#,
        ),
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let business = gw.client.get("/koodrive/ose/v1/task/result?taskId=1").await;
    assert_eq!(business.status, 400);
    same_json(
        &business.body,
        r#"{"code":"13000201","msg":"inner server invoke failure"}"#,
    );
    let throttled = gw.client.get("/koodrive/ose/v1/task/apig").await;
    assert_eq!(throttled.status, 429);
    same_json(
        &throttled.body,
        r#"{"code":"APIG.0308","msg":"throttled","requestId":"r-1"}"#,
    );
    assert!(
        throttled.headers.get("koodrive-gateway-error").is_none(),
        "KooDrive's, not ours"
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
async fn user_rules_from_config_normalize_another_endpoint() {
    let mock = Mock::start(|_| {
        Reply::json(200, r#"{"taskDto":{"taskId":1486254586942472064999,"status":"3","extra":{"a":1}},"code":0,"msg":"ok"}"#)
    })
    .await;
    let overlay = r#"
        [[normalize.rules]]
        path = "/koodrive/ose/v1/task/{id}"
        rename = { taskDto = "task" }
        types = { code = "string" }
        [normalize.rules.objects.task]
        types = { taskId = "string", status = "integer" }
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    assert_eq!(
        response.text(),
        r#"{"task":{"taskId":"1486254586942472064999","status":3,"extra":{"a":1}},"code":"0","msg":"ok"}"#
    );
}

#[tokio::test]
async fn routes_without_rules_stream_untouched() {
    let body = r#"{"taskListDtos":[],"code":0,"nextCursor":17}"#;
    let mock = Mock::start(move |_| Reply::json(200, body)).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let response = gw.client.get("/koodrive/ose/v1/files/list").await;
    assert_eq!(response.body, body);
}

/// authentication.md, "Responses and errors": "Tables declare `code` a String on task APIs and an
/// Integer elsewhere". On `GET /task/{task_id}` (a task API) a success keeps a numeric code while
/// an error on the same route gets a string one.
#[tokio::test]
async fn task_read_success_code_is_a_string_like_its_errors() {
    let mock = Mock::start(|seen| match seen.uri.path().ends_with("/1") {
        true => Reply::json(400, r#"{"code":13000301,"msg":"task does not exist"}"#),
        false => Reply::json(
            200,
            r#"{"taskDto":{"taskId":"1486254586942472064","status":2},"code":0,"msg":"Success."}"#,
        ),
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let error = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(error.status, 400);
    let ok = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        (error.json()["code"].clone(), ok.json()["code"].clone()),
        (serde_json::json!("13000301"), serde_json::json!("0")),
        "code on a task API: error {} / success {}",
        error.text(),
        ok.text()
    );
}

/// authentication.md, "Responses and errors": "`code` a String on task APIs and an Integer
/// elsewhere". Off the task APIs (here the file listing `POST /files/{type}`), an error's integer
/// code is turned into a string, while a success on the same route keeps its integer.
#[tokio::test]
async fn non_task_api_error_code_stays_an_integer() {
    let mock = Mock::start(|seen| match seen.body.is_empty() {
        true => Reply::json(
            400,
            r#"{"code":13000201,"msg":"inner server invoke failure"}"#,
        ),
        false => Reply::json(200, r#"{"fileList":[],"code":0,"msg":"Success."}"#),
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let post = |body: &'static str| {
        gw.client
            .request(Method::POST, "/koodrive/ose/v1/files/all")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let ok = gw
        .client
        .send(post(r#"{"pageInfo":{"pageSize":10}}"#))
        .await;
    let error = gw.client.send(post("")).await;
    assert_eq!((ok.status.as_u16(), error.status.as_u16()), (200, 400));
    assert_eq!(
        (ok.json()["code"].clone(), error.json()["code"].clone()),
        (serde_json::json!(0), serde_json::json!(13000201)),
        "code off the task APIs: success {} / error {}",
        ok.text(),
        error.text()
    );
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
