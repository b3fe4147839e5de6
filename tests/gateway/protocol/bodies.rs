//! Task-list GETs that carry a body: forwarded with the framing of what is sent, answered over both
//! protocols, and never a reason to open the breaker.

use super::*;

// ---------------------------------------------------------------------------------------------
// A GET /task/list that carries a body (Content-Length) must not be forwarded upstream with the
// client's Content-Length but no body. RFC 9112 section 6: the request would be framed by that
// length; the upstream waits for bytes that never come. nginx drops the body framing (it sends
// its own Content-Length for what it actually forwards), Envoy likewise.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_task_list_get_with_a_body_is_not_forwarded_with_a_content_length_it_does_not_send() {
    let mock = Mock::start(|_| Reply::json(200, page_json())).await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\ntimeout = \"2s\"\n").await;
    let request = gw
        .client
        .request(Method::GET, &format!("{TASK_LIST}?pageSize=5"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = gw.client.send(request).await;
    assert_eq!(
        response.status,
        200,
        "GET /task/list with a 2-byte body: {} {:?}",
        response.text(),
        response.headers
    );
}

/// The same over HTTP/2 (a client that sends `content-length` with DATA on a GET).
#[tokio::test]
async fn an_http2_task_list_get_with_a_body_is_answered() {
    let mock = Mock::start(|_| Reply::json(200, page_json())).await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\ntimeout = \"2s\"\n").await;
    let h2 = crate::support::Client::http2(gw.running().addr);
    let request = h2
        .request(Method::GET, &format!("{TASK_LIST}?pageSize=7"))
        .header("content-length", "2")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = h2.send(request).await;
    assert_eq!(
        response.status,
        200,
        "h2 GET /task/list with a 2-byte body: {}",
        response.text()
    );
}

/// The GET-with-a-body failure above is an upstream timeout to the gateway, so it counts
/// against KooDrive in the circuit breaker: five such requests (the default
/// `upstream.breaker_failures`) open it, and every other caller is refused with 503.
#[tokio::test]
async fn task_list_gets_with_a_body_do_not_open_the_breaker_for_everyone() {
    let mock = Mock::start(|_| Reply::json(200, page_json())).await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\ntimeout = \"2s\"\n").await;
    // Five distinct pages (so five flights), at once.
    let requests: Vec<_> = (1..=5)
        .map(|size| {
            let client = gw.client.clone();
            tokio::spawn(async move {
                let request = client
                    .request(Method::GET, &format!("{TASK_LIST}?pageSize={size}"))
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .unwrap();
                client.send(request).await.status.as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    let response = gw.client.get(&format!("{TASK_LIST}?pageSize=50")).await;
    assert_eq!(
        response.status,
        200,
        "an ordinary task-list read after five GETs with a body ({statuses:?}): {}",
        response.text()
    );
}
