//! The buffer budget and max_in_flight: signed bodies and normalized pages reserve what they hold.

use super::*;

const BUFFERED: &str = "koodrive_gateway_buffered_bytes";

const CREATE: &str = "/koodrive/ose/v1/task/create";

/// A signed POST whose head declares `len` body bytes, of which it sends one KiB and then
/// nothing more.
async fn slow_sender(gw: &TestGateway, len: usize) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let head = format!(
        "POST {CREATE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1024]).await.unwrap();
    stream
}

#[tokio::test]
async fn signed_bodies_share_the_buffer_budget_and_are_refused_before_being_read() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_buffered_bytes = \"1MiB\"\n[upstream]\ntimeout = \"20s\"\n",
    )
    .await;
    const KIB_300: usize = 300 * 1024;
    // Three slow senders reserve 900 KiB of the 1 MiB.
    let mut holding = Vec::new();
    for _ in 0..3 {
        holding.push(slow_sender(&gw, KIB_300).await);
    }
    let held = metric_until(&gw, BUFFERED, |n| n >= 3.0 * KIB_300 as f64).await;
    assert_eq!(held, 3.0 * KIB_300 as f64);

    // A fourth cannot reserve its length now: 503 with Retry-After, before its body is read.
    let mut fourth = slow_sender(&gw, KIB_300).await;
    let answer = answer_of(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("GATEWAY_OVERLOADED"), "{answer}");
    // One larger than the whole budget never could: 413 (it is within max_signed_body).
    let mut huge = slow_sender(&gw, 2 * 1024 * 1024).await;
    let answer = answer_of(&mut huge).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("GATEWAY_BODY_TOO_LARGE"), "{answer}");
    // Many more, all refused: the budget is never exceeded.
    for _ in 0..20 {
        let mut more = slow_sender(&gw, KIB_300).await;
        assert!(answer_of(&mut more).await.starts_with("HTTP/1.1 503"));
    }
    assert!(metric(&gw, BUFFERED).await <= (1024 * 1024) as f64);
    honest_client_is_served(&gw).await;
    assert_eq!(
        mock.hits(),
        1,
        "only the honest client's request went upstream"
    );

    // Gone, they give their bytes back; a signed body is read and sent again.
    drop(holding);
    metric_until(&gw, BUFFERED, |n| n == 0.0).await;
    let body = vec![b' '; KIB_300];
    let request = gw
        .client
        .request(http::Method::POST, CREATE)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    assert_eq!(gw.client.send(request).await.status, 200);
    assert_eq!(mock.last().body.len(), KIB_300);
    assert_eq!(metric(&gw, BUFFERED).await, 0.0);
}

#[tokio::test]
async fn a_chunked_signed_body_reserves_as_it_grows() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_buffered_bytes = \"256KiB\"\n").await;
    let mut stream = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let head = format!("POST {CREATE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    // 64 KiB held, counted as it came.
    stream.write_all(chunk.as_bytes()).await.unwrap();
    metric_until(&gw, BUFFERED, |n| n >= 65536.0).await;
    honest_client_is_served(&gw).await;
    // Grown past the whole budget: 413, and the bytes are given back.
    let mut answer = String::new();
    for _ in 0..4 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    answer.push_str(&answer_of(&mut stream).await);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    metric_until(&gw, BUFFERED, |n| n == 0.0).await;
    assert_eq!(
        mock.hits(),
        1,
        "only the honest client's request went upstream"
    );
}

#[tokio::test]
async fn an_upstream_body_that_does_not_fit_the_budget_now_streams_through_unnormalized() {
    // A task read's answer is normalized (its `code` becomes a string) when it can be buffered.
    let body = format!(
        r#"{{"code":0,"msg":"{}","taskDto":{{"taskId":1}}}}"#,
        "x".repeat(8 * 1024)
    );
    let mock = Mock::start(move |_| Reply::json(200, body.clone())).await;
    let gw = TestGateway::for_mock(
        &mock,
        &format!("[server]\nmax_buffered_bytes = \"64KiB\"\n[upstream]\ntimeout = \"20s\"\n{POLL_CACHE_OFF}"),
    )
    .await;
    let normalized = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(normalized.json()["code"], "0");
    // A slow sender holds 60 of the 64 KiB: the next answer cannot be buffered.
    let _holding = slow_sender(&gw, 60 * 1024).await;
    metric_until(&gw, BUFFERED, |n| n >= 60.0 * 1024.0).await;
    let passed = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(passed.status, 200);
    assert_eq!(
        passed.json()["code"],
        0,
        "passed through as KooDrive sent it"
    );
    let over = "koodrive_gateway_normalize_fallbacks_total{reason=\"over_budget\"}";
    assert_eq!(metric(&gw, over).await, 1.0);
    assert!(metric(&gw, BUFFERED).await <= 64.0 * 1024.0);
}

/// README, metrics: "`koodrive_gateway_in_flight` | gauge | | client requests in flight, and
/// task-list fetches that outlive theirs (a flight whose leader hung up, a background refresh):
/// the count `server.max_in_flight` sheds above"; config reference: "`server.max_in_flight` |
/// beyond it: 503 `GATEWAY_OVERLOADED`".
///
/// A task-list miss whose client is still waiting is counted twice: once as the client request,
/// once as its flight (when every flight counted itself, not only those that outlive their
/// leader). With `max_in_flight = 2`, one client waiting on a miss and a second client request
/// are two requests, not beyond the limit, yet the second is shed with a 503.
#[tokio::test]
async fn a_task_list_miss_whose_client_waits_takes_one_place_in_max_in_flight() {
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let mock = Mock::start(move |seen| match seen.uri.path() == TASK_LIST {
        true => page().hold(Arc::clone(&held)),
        false => Reply::ok(),
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_in_flight = 2").await;
    let list = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    mock.wait_for_hits(1).await;
    let in_flight = gw.metrics().await["koodrive_gateway_in_flight"];
    let second = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    // A permit if the mock is not waiting yet.
    release.notify_one();
    let first = list.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        second.status,
        200,
        "max_in_flight = 2 and only two client requests in flight (one waiting on its own \
         task-list miss), yet the second was shed: {} (in_flight gauge {in_flight} with one \
         client request open)",
        second.text()
    );
}

/// This test is about an uncached read: the built-in `/task/{id}` poll cache is turned off.
const POLL_CACHE_OFF: &str =
    "[[cache.routes]]\npath = \"/koodrive/ose/v1/task/{id}\"\nttl = \"0s\"\n";
