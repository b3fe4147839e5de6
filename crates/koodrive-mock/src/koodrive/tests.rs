//! The mock over real HTTP on 127.0.0.1:0, driven by a hyper-util client; every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::auth_check::X_DATE_FORMAT;
use super::reply::codes;
use super::tasks::HISTORY_LEN;
use super::{MockAuth, MockKooDrive};
use crate::signature::{self, SignedRequest};

const LIST: &str = "/koodrive/ose/v1/task/list";
const USER: &str = "1505084218764547200";
const LIMIT: Duration = Duration::from_secs(10);

struct Harness {
    mock: MockKooDrive,
    client: Client<HttpConnector, Full<Bytes>>,
}

async fn start() -> Harness {
    start_with(Client::builder(TokioExecutor::new()).build_http()).await
}

async fn start_with(client: Client<HttpConnector, Full<Bytes>>) -> Harness {
    let listener = timeout(LIMIT, TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap()
        .unwrap();
    let auth = MockAuth {
        app_id: "app-1".into(),
        app_secret: "secret-1".into(),
        tokens: vec!["tok-1".into()],
    };
    let mock = timeout(LIMIT, MockKooDrive::start(listener, auth))
        .await
        .unwrap()
        .unwrap();
    Harness { mock, client }
}

fn x_date(at: OffsetDateTime) -> String {
    at.format(X_DATE_FORMAT).unwrap()
}

impl Harness {
    fn host(&self) -> String {
        self.mock.addr().to_string()
    }

    /// A request signed with `secret` over host, x-date and x-user-id, as the gateway signs.
    fn signed(
        &self,
        method: Method,
        target: &str,
        body: &str,
        secret: &str,
        date: &str,
    ) -> Request<Full<Bytes>> {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let host = self.host();
        let headers = [
            ("host", host.as_str()),
            ("x-date", date),
            ("x-user-id", USER),
        ];
        let request = SignedRequest {
            method: method.as_str(),
            path,
            query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let authorization = signature::authorization("app-1", secret.as_bytes(), &request);
        Request::builder()
            .method(method.clone())
            .uri(format!("http://{host}{target}"))
            .header("host", &host)
            .header("x-date", date)
            .header("x-user-id", USER)
            .header("authorization", authorization)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    fn get(&self, target: &str) -> Request<Full<Bytes>> {
        self.signed(
            Method::GET,
            target,
            "",
            "secret-1",
            &x_date(OffsetDateTime::now_utc()),
        )
    }

    fn with_token(&self, target: &str, authorization: &str) -> Request<Full<Bytes>> {
        Request::get(format!("http://{}{target}", self.host()))
            .header("x-date", x_date(OffsetDateTime::now_utc()))
            .header("x-user-id", USER)
            .header("authorization", authorization)
            .body(Full::default())
            .unwrap()
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
        let response = timeout(LIMIT, self.client.request(req))
            .await
            .unwrap()
            .unwrap();
        let status = response.status();
        let body = timeout(LIMIT, response.into_body().collect())
            .await
            .unwrap()
            .unwrap();
        (status, serde_json::from_slice(&body.to_bytes()).unwrap())
    }
}

fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: u32) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    assert!(answer.1["msg"].as_str().is_some_and(|m| !m.is_empty()));
}

fn ids(page: &Value) -> Vec<String> {
    page["taskListDtos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn signed_list_pages_through_every_task_exactly_once() {
    let h = start().await;
    let mut seen = Vec::new();
    let mut target = format!("{LIST}?pageSize=37&pageCursor=");
    let mut pages = 0;
    loop {
        let (status, page) = h.send(h.get(&target)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            (&page["code"], &page["msg"]),
            (&Value::from(0), &Value::from("Success."))
        );
        let first = &page["taskListDtos"][0];
        assert_eq!(first["taskId"].as_str().unwrap().len(), 19);
        assert!(first["status"].is_u64() && first["taskType"].is_u64());
        assert_eq!(
            first["createTime"].as_str().unwrap().len(),
            "2024-08-12T07:22:33.000Z".len()
        );
        seen.extend(ids(&page));
        pages += 1;
        match page.get("nextCursor") {
            Some(next) => {
                target = format!("{LIST}?pageSize=37&pageCursor={}", next.as_u64().unwrap())
            }
            None => break,
        }
    }
    assert_eq!(pages, HISTORY_LEN.div_ceil(37));
    assert_eq!(seen.len(), HISTORY_LEN);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), HISTORY_LEN);
    // The default page size is 100 and the same user sees the same list.
    let (_, again) = h.send(h.get(LIST)).await;
    assert_eq!(ids(&again), seen[..100]);
    assert!(h.mock.requests() >= 10);
    timeout(LIMIT, h.mock.shutdown()).await.unwrap();
}

#[tokio::test]
async fn filters_and_bad_parameters() {
    let h = start().await;
    let (status, page) = h
        .send(h.get(&format!("{LIST}?taskType=1&status=2,3")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = page["taskListDtos"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items
        .iter()
        .all(|t| t["taskType"] == 1 && (t["status"] == 2 || t["status"] == 3)));
    let (_, failed) = h.send(h.get(&format!("{LIST}?status=3&status=3"))).await;
    let failed = failed["taskListDtos"].as_array().unwrap();
    assert!(!failed.is_empty() && failed.len() < HISTORY_LEN / 4);
    assert!(failed.iter().all(|t| t["resultCode"]
        .as_str()
        .is_some_and(|c| c.starts_with("18"))));
    for bad in [
        "pageSize=0",
        "pageSize=101",
        "status=7",
        "taskType=abc",
        "pageCursor=x",
    ] {
        let answer = h.send(h.get(&format!("{LIST}?{bad}"))).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, codes::BAD_PARAMETER);
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_big_bodies_413() {
    let h = start().await;
    let answer = h.send(h.get("/koodrive/ose/v1/files/list")).await;
    assert_error(&answer, StatusCode::NOT_FOUND, codes::NOT_FOUND);
    let big = "x".repeat(super::MAX_BODY_BYTES + 1);
    let date = x_date(OffsetDateTime::now_utc());
    let create = h.signed(
        Method::POST,
        "/koodrive/ose/v1/task/create",
        &big,
        "secret-1",
        &date,
    );
    assert_error(
        &h.send(create).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::TOO_LARGE,
    );
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let h = start_with(client).await;
    let (status, page) = h.send(h.get(&format!("{LIST}?pageSize=1"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["taskListDtos"].as_array().map(Vec::len), Some(1));
    assert_eq!(h.mock.requests(), 1);
    timeout(LIMIT, h.mock.shutdown()).await.unwrap();
}

mod auth;
mod create;
