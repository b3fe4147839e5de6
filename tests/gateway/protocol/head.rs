//! HEAD of the task list: the length a GET would return, and no body over HTTP/2.

use super::*;

/// RFC 9110 section 9.3.2: the answer to HEAD should carry the header fields GET's would; the
/// gateway's GET of the task list is normalized (and decoded), so KooDrive's Content-Length for
/// HEAD is not the length GET through the gateway returns.
#[tokio::test]
async fn head_of_the_task_list_says_the_length_get_returns() {
    let mock = Mock::start(|_| Reply::json(200, page_json())).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let get = gw.client.get(&format!("{TASK_LIST}?pageSize=5")).await;
    assert_eq!(get.status, 200);
    let head = gw
        .client
        .send(
            gw.client
                .request(Method::HEAD, &format!("{TASK_LIST}?pageSize=5"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some(get.body.len().to_string()),
        "HEAD {:?} vs GET's {}-byte body",
        head.headers,
        get.body.len()
    );
    // Answered from GET's page, as nginx's proxy_cache_convert_head and Varnish do.
    assert!(head.body.is_empty());
    assert_eq!(mock.hits(), 1, "HEAD was a hit");
    let status = head.headers.get("cache-status").unwrap().to_str().unwrap();
    assert!(status.contains("hit"), "{status}");
    // The same over HTTP/2.
    let h2 = crate::support::Client::http2(gw.running().addr);
    let request = h2
        .request(Method::HEAD, &format!("{TASK_LIST}?pageSize=5"))
        .body(Full::default())
        .unwrap();
    let head = h2.send(request).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        get.body.len().to_string()
    );
    assert_eq!(mock.hits(), 1, "HEAD over HTTP/2 was a hit");
}

/// HEAD of the task list is answered by the gateway (route `TaskList`), and every answer to it
/// loses its body, the task-list path's own errors too (here a bad query's 400, whose JSON body
/// `pipeline::handle` empties). HTTP/1 would hide a body (hyper drops a HEAD answer's body),
/// HTTP/2 does not: DATA frames on a HEAD stream, which RFC 9113 section 8.1.1 makes a malformed
/// response (the h2 client resets the stream).
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
