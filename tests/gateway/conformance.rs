//! Conformance to KooDrive's own documents (task-list-api.md, authentication.md), found in the
//! fifth review round. Each test failed when written; each names the document line it holds to.

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use koodrive_mock::{MockAuth, MockKooDrive};

use crate::normalize::EXAMPLE;
use crate::support::{Mock, Reply, TestGateway, APP_ID, APP_SECRET, TASK_LIST};

/// The embedded mock KooDrive (what `--demo` runs) accepting the test config's credentials.
async fn demo_mock(tokens: Vec<String>) -> MockKooDrive {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = MockAuth {
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.into(),
        tokens,
    };
    MockKooDrive::start(listener, auth).await.unwrap()
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

/// authentication.md, "Task endpoints": "| GET /task/dstUserInfo/{src_user_id} | transfer target
/// info |". The embedded KooDrive that `--demo` runs answers it 404 "not found".
#[tokio::test]
async fn demo_serves_every_documented_task_endpoint() {
    let koodrive = demo_mock(Vec::new()).await;
    let gw = TestGateway::for_mock_url(&format!("http://{}", koodrive.addr()), "").await;
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/dstUserInfo/1505084218764547201")
        .await;
    assert_eq!(
        response.status,
        200,
        "GET /task/dstUserInfo/{{src_user_id}}: {}",
        response.text()
    );
}

/// authentication.md, "X-Date": "Must be within 15 minutes of the server's clock and never in the
/// future". The embedded KooDrive accepts an X-Date up to 60 s ahead, so `--demo` would not show a
/// gateway whose clock runs ahead.
#[test]
fn demo_refuses_an_x_date_in_the_future() {
    use koodrive_mock::koodrive::auth_check::check_freshness;
    let now = time::OffsetDateTime::now_utc();
    let ahead = now + time::Duration::seconds(30);
    assert!(
        check_freshness(ahead, now).is_err(),
        "an X-Date 30 s in the future was accepted"
    );
}

/// authentication.md, "Two ways to authenticate": "The docs write the format as
/// `Bearer+{access_token}` ... Read it as `Bearer <token>`". A configured token written as the
/// docs write it goes out as `Bearer Bearer+tok`, which KooDrive (the embedded one too) refuses.
#[tokio::test]
async fn a_token_written_as_the_docs_write_it_is_read_as_bearer_token() {
    let koodrive = demo_mock(vec!["tok-123".into()]).await;
    let gw = TestGateway::for_mock_url(
        &format!("http://{}", koodrive.addr()),
        "[auth]\nmode = \"token\"\naccess_token = \"Bearer+tok-123\"",
    )
    .await;
    let response = gw.client.get(&format!("{TASK_LIST}?pageSize=1")).await;
    assert_eq!(response.status, 200, "{}", response.text());
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
