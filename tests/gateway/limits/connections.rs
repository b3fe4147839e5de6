//! Connection limits: preface, header, idle and duration timeouts, pings, max_connections.

use super::*;

#[tokio::test]
async fn an_http2_connection_that_sends_only_its_preface_is_closed() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"1s\"\n[admin]\nheader_read_timeout = \"1s\"\n",
    )
    .await;
    for addr in [gw.running().addr, gw.running().admin_addr] {
        let mut silent = h2_connect(addr).await;
        honest_client_is_served(&gw).await;
        let took = time_to_close(&mut silent, Duration::from_secs(10)).await;
        assert!(
            took.is_some_and(|t| t >= Duration::from_millis(900)),
            "{addr}: {took:?}"
        );
    }
}

#[tokio::test]
async fn an_unfinished_http2_header_block_is_closed_after_the_header_timeout() {
    let mock = Mock::ok().await;
    // Idle connections may stay a minute: only the open header block closes this one.
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    )
    .await;
    let mut attacker = h2_connect(gw.running().addr).await;
    // One whole request first: the connection is then past its first-request wait.
    let whole = frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT);
    attacker.write_all(&whole).await.unwrap();
    assert!(read_to_end_of_stream(&mut attacker, 1).await);
    // Then a header block that never ends: HEADERS and CONTINUATION without END_HEADERS.
    let mut open = frame(HEADERS, END_STREAM, 3, &GET_ROOT[..2]);
    open.extend(frame(CONTINUATION, 0, 3, &GET_ROOT[2..]));
    attacker.write_all(&open).await.unwrap();
    honest_client_is_served(&gw).await;
    let took = time_to_close(&mut attacker, Duration::from_secs(20)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(900) && t < Duration::from_secs(15)),
        "{took:?}"
    );
    honest_client_is_served(&gw).await;
}

#[tokio::test]
async fn idle_connections_of_both_protocols_are_closed_after_the_idle_timeout() {
    let mock = Mock::ok().await;
    // The header timeout is long: only the idle timeout closes these.
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"30s\"\nidle_timeout = \"1s\"\n",
    )
    .await;
    let mut h2 = h2_connect(gw.running().addr).await;
    h2.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT))
        .await
        .unwrap();
    assert!(read_to_end_of_stream(&mut h2, 1).await);
    let took = time_to_close(&mut h2, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );

    let mut h1 = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    h1.write_all(b"GET /koodrive/ose/v1/task/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    within("an answer", h1.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let took = time_to_close(&mut h1, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
    honest_client_is_served(&gw).await;
}

#[tokio::test]
async fn a_silent_http2_peer_with_a_request_in_service_is_found_by_pings() {
    // KooDrive takes 20 s: the request stays in service, so only an unanswered ping can tell
    // the peer is gone.
    let mock = Mock::start(|_| Reply::ok().delay(Duration::from_secs(20))).await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"1s\"\n[upstream]\ntimeout = \"30s\"\n",
    )
    .await;
    let mut silent = h2_connect(gw.running().addr).await;
    silent
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT))
        .await
        .unwrap();
    within("the request upstream", mock.wait_for_hits(1)).await;
    let took = time_to_close(&mut silent, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_connections = 4\n[admin]\nmax_connections = 2\n",
    )
    .await;
    // The honest client's connection is one of the four.
    honest_client_is_served(&gw).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(h2_connect(gw.running().addr).await);
    }
    metric_until(
        &gw,
        "koodrive_gateway_connections{listener=\"proxy\"}",
        |n| n == 4.0,
    )
    .await;
    let mut refused = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let took = time_to_close(&mut refused, Duration::from_secs(10)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(5)), "{took:?}");
    honest_client_is_served(&gw).await;
    let refusals = "koodrive_gateway_connections_refused_total{listener=\"proxy\"}";
    assert_eq!(metric(&gw, refusals).await, 1.0);

    // A place comes free when a connection goes.
    drop(idle.pop());
    metric_until(
        &gw,
        "koodrive_gateway_connections{listener=\"proxy\"}",
        |n| n == 3.0,
    )
    .await;
    let fresh = crate::support::Client::new(gw.running().addr);
    assert_eq!(fresh.get(TASK_LIST).await.status, 200);

    // The admin listener has its own, smaller cap (the scraping client holds one place).
    let _one = within("connect", TcpStream::connect(gw.running().admin_addr))
        .await
        .unwrap();
    metric_until(
        &gw,
        "koodrive_gateway_connections{listener=\"admin\"}",
        |n| n == 2.0,
    )
    .await;
    let mut over = within("connect", TcpStream::connect(gw.running().admin_addr))
        .await
        .unwrap();
    let took = time_to_close(&mut over, Duration::from_secs(10)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(5)), "{took:?}");
    let refusals = "koodrive_gateway_connections_refused_total{listener=\"admin\"}";
    assert_eq!(metric(&gw, refusals).await, 1.0);
}

#[tokio::test]
async fn a_connection_past_max_connection_duration_closes_after_its_answer() {
    let mock = Mock::ok().await;
    // Timeouts far away: only the connection's age ends these.
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_connection_duration = \"1s\"\nheader_read_timeout = \"30s\"\nidle_timeout = \"30s\"\n",
    )
    .await;
    // HTTP/1 kept busy: every request is answered, the one after its age with
    // `Connection: close`, and then the connection ends.
    let mut h1 = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let started = Instant::now();
    let mut closing = None;
    for _ in 0..100 {
        h1.write_all(b"GET /koodrive/ose/v1/task/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = answer_of(&mut h1).await.to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        if answer.contains("connection: close") {
            closing = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closing = closing.expect("no answer said Connection: close within 100 requests");
    assert!(closing >= Duration::from_millis(900), "{closing:?}");
    let took = time_to_close(&mut h1, Duration::from_secs(10)).await;
    assert!(took.is_some(), "still open after Connection: close");

    // HTTP/2, served and then quiet: closed at its age, not its idle timeout.
    let mut h2 = h2_connect(gw.running().addr).await;
    h2.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT))
        .await
        .unwrap();
    assert!(read_to_end_of_stream(&mut h2, 1).await);
    let took = time_to_close(&mut h2, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
    honest_client_is_served(&gw).await;
}
