//! The scripted mock over real HTTP on 127.0.0.1:0; every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::timeout;

use crate::koodrive::auth_check::X_DATE_FORMAT;
use crate::koodrive::reply::codes;
use crate::signature::{authorization, SignedRequest};
use crate::{Mock, MockAuth, Reply};

const LIMIT: Duration = Duration::from_secs(10);
const LIST: &str = "/koodrive/ose/v1/task/list";
const CREATE: &str = "/koodrive/ose/v1/task/create";

fn auth() -> MockAuth {
    MockAuth {
        app_id: "app-1".into(),
        app_secret: "secret-1".into(),
        tokens: Vec::new(),
    }
}

/// `target` signed with `secret` over host, x-date and x-user-id.
fn signed(
    mock: &Mock,
    method: Method,
    target: &str,
    body: &str,
    secret: &str,
) -> Request<Full<Bytes>> {
    let host = mock.addr().to_string();
    let date = OffsetDateTime::now_utc().format(X_DATE_FORMAT).unwrap();
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let headers = [
        ("host", host.as_str()),
        ("x-date", date.as_str()),
        ("x-user-id", "7"),
    ];
    let request = SignedRequest {
        method: method.as_str(),
        path,
        query,
        headers: &headers,
        body: body.as_bytes(),
    };
    let value = authorization("app-1", secret.as_bytes(), &request);
    Request::builder()
        .method(method.clone())
        .uri(format!("http://{host}{target}"))
        .header("x-date", &date)
        .header("x-user-id", "7")
        .header("authorization", value)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// The answer's status and JSON body, or `None` when the connection ended without one.
async fn send(request: Request<Full<Bytes>>) -> Option<(StatusCode, Value)> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = timeout(LIMIT, client.request(request))
        .await
        .unwrap()
        .ok()?;
    let status = response.status();
    let body = timeout(LIMIT, response.into_body().collect())
        .await
        .unwrap()
        .ok()?;
    Some((status, serde_json::from_slice(&body.to_bytes()).unwrap()))
}

#[tokio::test]
async fn koodrive_replies_are_koodrive_answers_under_the_script() {
    let mock = Mock::koodrive(auth(), |seen| match seen.uri.path() {
        CREATE => Reply {
            drop_connection: true,
            ..Reply::koodrive()
        },
        _ => Reply::koodrive(),
    })
    .await;

    let (status, page) = send(signed(
        &mock,
        Method::GET,
        &format!("{LIST}?pageSize=3"),
        "",
        "secret-1",
    ))
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["taskListDtos"].as_array().map(Vec::len), Some(3));
    assert_eq!(page["code"], 0);
    // KooDrive's checks hold: a wrong secret is KooDrive's 401, not the script's 200.
    let (status, error) = send(signed(&mock, Method::GET, LIST, "", "other"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    assert_eq!(error["code"], codes::SIGNATURE_MISMATCH);
    // The script's fault applies to KooDrive's answer: the create's connection is dropped.
    let create = signed(
        &mock,
        Method::POST,
        CREATE,
        r#"{"taskName":"t","taskType":0}"#,
        "secret-1",
    );
    assert!(send(create).await.is_none());

    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(mock.hits(), 3);
    assert_eq!(seen[2].method, Method::POST);
    assert_eq!(&seen[2].body[..], br#"{"taskName":"t","taskType":0}"#);
}

#[tokio::test]
async fn a_koodrive_reply_needs_a_mock_with_koodrive_behind_it() {
    let mock = Mock::start(|_| Reply::koodrive()).await;
    let (status, error) = send(signed(&mock, Method::GET, LIST, "", "secret-1"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        error["msg"].as_str().unwrap().contains("Mock::koodrive"),
        "{error}"
    );
}
