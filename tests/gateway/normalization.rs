//! Normalization through the gateway: the task list reaches callers in the documented schema
//! whatever KooDrive sends (gzip or not), error bodies get one shape, rules come from config.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use crate::support::{Mock, Reply, TestGateway, TASK_LIST};

mod codings;
mod pass_through;

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
