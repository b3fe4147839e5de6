//! Bugs the fixes of 44ffd03..560b1da introduced, found in the sixth review round (fixed since).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use crate::support::{within, Mock, Reply, TestGateway, TASK_LIST};

/// HEAD of the task list is now answered by the gateway (route TaskList, `head_of`), but only a
/// successful answer loses its body: an error the task-list path returns (here a bad query, a
/// 400 it used to leave to KooDrive's HEAD) is rendered with its JSON body. HTTP/1 hides this
/// (hyper drops a HEAD answer's body), HTTP/2 does not: DATA frames on a HEAD stream, which RFC
/// 9113 section 8.1.1 makes a malformed response (the h2 client resets the stream).
#[tokio::test]
async fn head_of_the_task_list_over_http2_refused_has_no_body() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build::<_, Full<Bytes>>(HttpConnector::new());
    let request = Request::builder()
        .method(Method::HEAD)
        .uri(format!(
            "http://{}{TASK_LIST}?pageSize=101",
            gw.running().addr
        ))
        .body(Full::default())
        .unwrap();
    let outcome = within("HEAD over h2", async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await;
    match outcome {
        Ok((status, body)) => {
            assert_eq!(status, 400);
            assert!(
                body.is_empty(),
                "HEAD over HTTP/2 got a {}-byte body: {:?}",
                body.len(),
                String::from_utf8_lossy(&body)
            );
        }
        Err(error) => panic!("HEAD over HTTP/2 of a bad task-list query broke the stream: {error}"),
    }
    assert_eq!(mock.hits(), 0);
}

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
