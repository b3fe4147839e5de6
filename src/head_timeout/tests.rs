#![allow(clippy::unwrap_used)]

use super::*;

use http::header::CONNECTION;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const TIMEOUT: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(60);
const MAX_AGE: Duration = Duration::from_secs(3600);

fn connection() -> (DuplexStream, HeadTimeout<DuplexStream>, Arc<Exchanges>) {
    let (client, server) = tokio::io::duplex(1024);
    let exchanges = Arc::new(Exchanges::default());
    let timeouts = Timeouts {
        header_read: TIMEOUT,
        idle: IDLE,
        max_age: MAX_AGE,
    };
    let server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
    (client, server, exchanges)
}

/// Reads until the connection times out: how long that took.
async fn time_to_cut_off(server: &mut HeadTimeout<DuplexStream>) -> Duration {
    let started = Instant::now();
    let mut buf = [0; 64];
    loop {
        match server.read(&mut buf).await {
            Ok(_) => {}
            Err(error) => {
                assert_eq!(error.kind(), io::ErrorKind::TimedOut);
                return started.elapsed();
            }
        }
    }
}

/// Whether the connection is still open (reading nothing, failing nothing) for `span`.
async fn stays_open(server: &mut HeadTimeout<DuplexStream>, span: Duration) -> bool {
    let mut buf = [0; 64];
    tokio::time::timeout(span, server.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_cut_off_after_one_timeout() {
    let (_client, mut server, _) = connection();
    assert_eq!(time_to_cut_off(&mut server).await, TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_connection_read_from_another_task_wakes_that_task() {
    let (_client, mut server, _) = connection();
    assert!(stays_open(&mut server, TIMEOUT / 8).await);
    let other = tokio::spawn(async move { time_to_cut_off(&mut server).await });
    let took = tokio::time::timeout(TIMEOUT * 2, other).await;
    assert!(matches!(took, Ok(Ok(t)) if t <= TIMEOUT), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_head_trickling_in_is_cut_off_within_a_quarter_past_the_timeout() {
    let (mut client, mut server, _) = connection();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /koodrive/ose/v1/task/list HTTP/1.1\r\nHost: x\r\n"
            .iter()
            .cycle()
        {
            if client.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let took = time_to_cut_off(&mut server).await;
    assert!(
        took >= TIMEOUT && took <= TIMEOUT + TIMEOUT / TICKS,
        "{took:?}"
    );
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn a_request_in_service_is_never_cut_off_and_the_wait_starts_at_its_answer() {
    let (_client, mut server, exchanges) = connection();
    let answer = exchanges.serve();
    assert!(stays_open(&mut server, TIMEOUT * 10 + TIMEOUT / 8).await);
    drop(answer);
    let took = time_to_cut_off(&mut server).await;
    assert!(
        took >= TIMEOUT && took <= TIMEOUT + TIMEOUT / TICKS,
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_coming_more_often_than_the_timeout_keep_it_open() {
    let (_client, mut server, exchanges) = connection();
    for _ in 0..20 {
        assert!(stays_open(&mut server, TIMEOUT / 2).await);
        drop(exchanges.serve());
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A frame's 9-byte header and a payload of `len` zeros.
fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, kind, flags, 0, 0, 0, 1];
    frame[..3].copy_from_slice(&u32::try_from(len).unwrap().to_be_bytes()[1..]);
    frame.resize(9 + len, 0);
    frame
}

/// Writes `data` in pieces of `piece` bytes, each read by the server.
async fn send_in_pieces(
    client: &mut DuplexStream,
    server: &mut HeadTimeout<DuplexStream>,
    data: &[u8],
    piece: usize,
) {
    let mut buf = [0; 64];
    for piece in data.chunks(piece) {
        client.write_all(piece).await.unwrap();
        let mut got = 0;
        while got < piece.len() {
            got += server.read(&mut buf).await.unwrap();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_waits_for_its_first_request_as_http1_does() {
    let (mut client, mut server, _) = connection();
    send_in_pieces(&mut client, &mut server, PREFACE, 2).await;
    let took = time_to_cut_off(&mut server).await;
    assert!(took <= TIMEOUT, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_served_http2_connection_is_cut_off_after_the_idle_timeout() {
    let (mut client, mut server, exchanges) = connection();
    send_in_pieces(&mut client, &mut server, PREFACE, 24).await;
    drop(exchanges.serve());
    assert!(stays_open(&mut server, IDLE - TIMEOUT).await);
    let took = time_to_cut_off(&mut server).await;
    assert!(took <= TIMEOUT + TIMEOUT / TICKS, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_http2_header_block_is_cut_off_after_the_header_timeout() {
    let (mut client, mut server, exchanges) = connection();
    // Another stream in service: the connection is not idle, the block is still cut off.
    let _busy = exchanges.serve();
    let mut data = PREFACE.to_vec();
    data.extend(frame(0x4, 0, 6)); // SETTINGS
    data.extend(frame(0x1, 0x1, 20)); // HEADERS, END_STREAM, no END_HEADERS
    data.extend(frame(0x9, 0, 7)); // CONTINUATION, no END_HEADERS
    send_in_pieces(&mut client, &mut server, &data, 5).await;
    let took = time_to_cut_off(&mut server).await;
    assert!(
        took >= TIMEOUT && took <= TIMEOUT + TIMEOUT / TICKS,
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_http2_header_block_is_not_cut_off() {
    let (mut client, mut server, exchanges) = connection();
    let _busy = exchanges.serve();
    let mut data = PREFACE.to_vec();
    data.extend(frame(0x1, 0, 20)); // HEADERS, no END_HEADERS
    data.extend(frame(0x9, 0x4, 7)); // CONTINUATION with END_HEADERS
    data.extend(frame(0x1, 0x5, 3)); // HEADERS with END_HEADERS at once
    data.extend(frame(0x0, 0, 40)); // DATA
    send_in_pieces(&mut client, &mut server, &data, 7).await;
    assert!(stays_open(&mut server, IDLE * 2).await);
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_shorter_than_the_header_timeout_bounds_http1_keep_alive() {
    let (client, server) = tokio::io::duplex(1024);
    let _client = client;
    let exchanges = Arc::new(Exchanges::default());
    let short = Duration::from_secs(2);
    let timeouts = Timeouts {
        header_read: TIMEOUT,
        idle: short,
        max_age: MAX_AGE,
    };
    let mut server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
    drop(exchanges.serve());
    let took = time_to_cut_off(&mut server).await;
    assert!(took <= short + short / TICKS, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_old_connection_closes_after_its_answer_in_progress() {
    let (_client, server) = tokio::io::duplex(1024);
    let exchanges = Arc::new(Exchanges::default());
    let max_age = Duration::from_secs(30);
    let timeouts = Timeouts {
        header_read: TIMEOUT,
        idle: IDLE,
        max_age,
    };
    let mut server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
    let young = exchanges.serve().with(Response::new(()));
    assert!(young.headers().get(CONNECTION).is_none());
    drop(young);
    // A request in service keeps it open past its age...
    let answer = exchanges.serve();
    assert!(stays_open(&mut server, max_age + TIMEOUT).await);
    // ...and its answers now say it closes...
    let late = exchanges.serve().with(Response::new(()));
    assert_eq!(late.headers()[CONNECTION], "close");
    drop(late);
    // ...and with nothing in service it waits for a head no longer than before (the answer
    // saying `close` ends it; hyper closes the connection after that answer).
    drop(answer);
    let took = time_to_cut_off(&mut server).await;
    assert!(took <= TIMEOUT + TIMEOUT / TICKS, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_old_http2_connection_closes_once_nothing_is_in_service() {
    let (mut client, server) = tokio::io::duplex(1024);
    let exchanges = Arc::new(Exchanges::default());
    let max_age = Duration::from_secs(30);
    let timeouts = Timeouts {
        header_read: TIMEOUT,
        idle: IDLE,
        max_age,
    };
    let mut server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
    send_in_pieces(&mut client, &mut server, PREFACE, 24).await;
    let answer = exchanges.serve();
    assert!(stays_open(&mut server, max_age + TIMEOUT).await);
    drop(answer);
    let took = time_to_cut_off(&mut server).await;
    assert!(took <= TIMEOUT / TICKS, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_start_like_http2_but_not_it_is_timed_out() {
    // hyper-util serves the first three as HTTP/1, and holds the last, waiting for the rest
    // of a preface: all are timed.
    let starts: [&[u8]; 4] = [
        b"PRX / HTTP/1.1\r\n",
        b"PRI /x HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n",
    ];
    for start in starts {
        let (mut client, mut server, _) = connection();
        client.write_all(start).await.unwrap();
        let took = tokio::time::timeout(TIMEOUT * 10, time_to_cut_off(&mut server)).await;
        assert_eq!(took, Ok(TIMEOUT), "{:?}", String::from_utf8_lossy(start));
    }
}
