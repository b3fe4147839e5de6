//! Concurrency, cancellation and cache-correctness races in the task-list cache: refreshes keep
//! their deadlines, abandoned flights are bounded, an older fetch never overwrites a newer page.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::support::{within, Mock, Recorded, Reply, TestGateway, TestResponse, TASK_LIST};

fn page(seen: &Recorded, version: u64) -> Reply {
    let user = seen.header("x-user-id").unwrap_or("?");
    let body = serde_json::json!({
        "taskListDtos": [{ "taskId": "1486254586942472064", "userId": user }],
        "version": version,
        "code": 0,
        "msg": "Success.",
    });
    Reply::json(200, body.to_string())
}

fn version(response: &TestResponse) -> u64 {
    response.json()["version"].as_u64().unwrap()
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

/// Was finding 1. A page stored again under a key that still holds an entry (a refetch in the
/// stale-if-error window, a stale-while-revalidate refresh, a `no-cache` refresh) keeps the
/// expiry of the entry it replaces: moka's `Expiry::expire_after_update` defaults to "keep the
/// current expiry" and `Retention` only implements `expire_after_create`. So the refreshed page
/// disappears at the first page's deadline, however young it is, and the stale-if-error cover
/// the README promises for it is gone.
///
/// ttl 2 s, stale_if_error 2 s (retention 4 s). Page v1 stored at t0; at t0+2.5 s it is in the
/// stale-if-error window, so the request refetches and stores v2 (expiry should be ~t0+6.5 s).
/// KooDrive then fails; at t0+4.5 s v2 is 2 s old, inside its stale-if-error window: it must
/// be served. It was evicted at t0+4 s, with v1's deadline, and the client gets the 503.
#[tokio::test]
async fn a_refreshed_page_keeps_the_expiry_of_the_page_it_replaced() {
    let failing = Arc::new(AtomicUsize::new(0));
    let mode = Arc::clone(&failing);
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| match mode.load(Ordering::SeqCst) {
        0 => page(seen, counter.fetch_add(1, Ordering::SeqCst) + 1),
        _ => Reply::json(503, r#"{"code":13000500,"msg":"down"}"#),
    })
    .await;
    let overlay = "[cache]\nttl = \"2s\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"2s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;

    let first = gw.client.get(TASK_LIST).await;
    // v1 was stored no later than now: moka drops it no later than now + 4 s.
    let v1_stored_by = Instant::now();
    assert_eq!(version(&first), 1);
    assert_eq!(
        first.header("cache-status"),
        "koodrive-gateway; fwd=miss; stored"
    );

    sleep_until(v1_stored_by + Duration::from_millis(2500)).await;
    let refetch_sent = Instant::now();
    let second = gw.client.get(TASK_LIST).await;
    assert_eq!(version(&second), 2, "{}", second.header("cache-status"));
    assert_eq!(
        second.header("cache-status"),
        "koodrive-gateway; fwd=miss; stored"
    );

    failing.store(1, Ordering::SeqCst);
    // Past v1's deadline, well inside v2's retention (v2 stored after `refetch_sent`).
    let at = v1_stored_by + Duration::from_millis(4500);
    sleep_until(at).await;
    assert!(
        Instant::now() < refetch_sent + Duration::from_millis(3800),
        "the machine was too slow for this test's windows"
    );
    let third = gw.client.get(TASK_LIST).await;
    assert_eq!(
        third.status,
        200,
        "v2 (stored ~2 s ago, stale_if_error 2 s) should cover KooDrive's 503; got {} {} \
         cache-status={:?} (v2 was evicted at v1's expiry)",
        third.status,
        third.text(),
        third.headers.get("cache-status")
    );
    assert_eq!(version(&third), 2);
}

/// Was finding 1, the same root cause seen on a hot key without any failure: a `no-cache` refresh
/// stores a new page, and a plain request 0.8 s later (well inside the 3 s ttl) misses because
/// the entry was dropped at the first page's deadline.
#[tokio::test]
async fn a_page_refreshed_by_no_cache_is_dropped_at_the_old_deadline_while_fresh() {
    let counter = AtomicU64::new(0);
    let mock =
        Mock::start(move |seen| page(seen, counter.fetch_add(1, Ordering::SeqCst) + 1)).await;
    let overlay = "[cache]\nttl = \"3s\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"0s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;

    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    let v1_stored_by = Instant::now();
    sleep_until(v1_stored_by + Duration::from_millis(2000)).await;
    let refresh = gw
        .client
        .get_with(TASK_LIST, &[("cache-control", "no-cache")])
        .await;
    let v2_stored_after = Instant::now() - Duration::from_millis(1);
    assert_eq!(
        refresh.header("cache-status"),
        "koodrive-gateway; fwd=request; stored"
    );
    assert_eq!(version(&refresh), 2);

    sleep_until(v1_stored_by + Duration::from_millis(3800)).await;
    assert!(Instant::now() < v2_stored_after + Duration::from_millis(2900));
    let after = gw.client.get(TASK_LIST).await;
    assert!(
        after
            .header("cache-status")
            .starts_with("koodrive-gateway; hit; ttl="),
        "v2 is ~1.8 s old with a 3 s ttl, so a hit; got cache-status {:?}, version {}, \
         upstream calls {}",
        after.header("cache-status"),
        version(&after),
        mock.hits()
    );
}

/// Was finding 2. A collapsed fetch runs in its own task and outlives its leader, but nothing
/// counts it against `server.max_in_flight`: a client that starts a flight for a new key and
/// hangs up leaves the upstream request (and its buffered page, up to `normalize.max_body`)
/// running while its slot is freed. Repeating that keeps any number of KooDrive requests and
/// connections open behind a gateway whose `in_flight` gauge says 0, which is exactly the load
/// the limit is there to shed.
#[tokio::test]
async fn abandoned_flights_are_not_bounded_by_max_in_flight() {
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let mock = Mock::start(move |seen| page(seen, 1).hold(Arc::clone(&held))).await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_in_flight = 2").await;
    let hung_up = r#"koodrive_gateway_requests_total{route="task_list",method="GET",status_class="4xx",cache="none"}"#;
    let mut forwarded = 0;
    let mut shed = 0;
    for n in 0..6 {
        let mut stream = TcpStream::connect(gw.running().addr).await.unwrap();
        let head = format!("GET {TASK_LIST}?n={n} HTTP/1.1\r\nHost: gw\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 512];
        tokio::select! {
            () = mock.wait_for_hits(forwarded + 1) => forwarded += 1,
            _ = stream.read(&mut buf) => shed += 1,
        }
        drop(stream);
        if shed > 0 {
            continue;
        }
        // The gateway saw the hang-up: the request left flight as a 499.
        within("the hang-up", async {
            while gw.metrics().await.get(hung_up).copied() != Some(f64::from(forwarded as u32)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    let in_flight = gw.metrics().await["koodrive_gateway_in_flight"];
    assert!(
        mock.hits() <= 2,
        "max_in_flight = 2, yet {} task-list requests are open at KooDrive at once \
         (in_flight gauge {in_flight}, {shed} shed)",
        mock.hits()
    );
    release.notify_waiters();
}

/// A KooDrive stand-in that answers every request at once and keeps nothing (the recording mock
/// would keep every request's headers, which is what this test measures in the gateway).
async fn forgetful_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(
                        br#"{"code":0,"msg":"Success.","taskId":"1"}"#,
                    )));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// Was finding 3. The per-user generation table is bounded by a count (100,000 users), not by
/// bytes, and each entry was a clone of the writer's `X-User-Id` `HeaderValue`:
///
/// - (a) a clone shares the connection's read buffer, so a short id pins the whole request head
///   it came in (up to `server.max_header_bytes`, 64 KiB);
/// - (b) the id itself may be as long as the head allows.
///
/// Writes from distinct users (any 2xx, or any write whose answer timed out) therefore grew
/// memory by up to 64 KiB each, ~6 GiB before the count bound resets the table, whatever
/// `cache.max_bytes` says (64 KiB here).
///
/// Measured as the resident memory of a gateway process of its own (the test process's would
/// move with the tests running beside this one): 1,500 writes with the same user as a control,
/// then 1,500 with short distinct ids and a 48 KiB header beside them, then 1,000 with distinct
/// 40 KiB ids.
#[tokio::test]
async fn the_generation_table_is_bounded_by_count_not_bytes() {
    use crate::cli::{rss_kib, temp_config, Process};
    let upstream = forgetful_upstream().await;
    let config = temp_config(
        "generations",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{upstream}\"\n[auth]\nmode = \"token\"\nuser_id = \"7\"\n\
             access_token = \"t\"\n[cache]\nmax_bytes = \"64KiB\"\n"
        ),
    );
    let mut process = Process::spawn(&["--config", config.to_str().unwrap()], &[]);
    let (addr, _) = process.listening().await;
    let pid = process.child.id().unwrap();
    let client = crate::support::Client::new(addr);
    let pad = "p".repeat(48 * 1024);
    let write = |user: String, pad: &str| {
        let mut request = client
            .request(Method::POST, "/koodrive/ose/v1/task/create")
            .header("x-user-id", user);
        if !pad.is_empty() {
            request = request.header("x-pad", pad);
        }
        request
            .body(Full::new(Bytes::from_static(
                br#"{"taskName":"t","taskType":0}"#,
            )))
            .unwrap()
    };
    // Warm-up and control: one user, many writes.
    for _ in 0..200 {
        assert_eq!(client.send(write("control".into(), &pad)).await.status, 200);
    }
    let before = rss_kib(pid);
    for _ in 0..1500 {
        assert_eq!(client.send(write("control".into(), &pad)).await.status, 200);
    }
    let control = rss_kib(pid).saturating_sub(before);

    let before = rss_kib(pid);
    for n in 0..1500 {
        assert_eq!(client.send(write(format!("u{n}"), &pad)).await.status, 200);
    }
    let pinned = rss_kib(pid).saturating_sub(before);

    let before = rss_kib(pid);
    let long = "1".repeat(40 * 1024);
    for n in 0..1000 {
        let status = client.send(write(format!("{n}-{long}"), "")).await.status;
        assert_eq!(status, 200);
    }
    let long_ids = rss_kib(pid).saturating_sub(before);

    let mib = |kib: u64| kib as f64 / 1024.0;
    let limit = control + 16 * 1024;
    assert!(
        pinned < limit && long_ids < limit,
        "with cache.max_bytes = 64 KiB, resident memory grew by {:.1} MiB after 1,500 writes \
         from one user (control), {:.1} MiB after 1,500 writes from distinct short ids beside a \
         48 KiB header, {:.1} MiB after 1,000 writes from distinct 40 KiB ids",
        mib(control),
        mib(pinned),
        mib(long_ids)
    );
    let (status, _) = process.terminate().await;
    assert!(status.success());
    std::fs::remove_file(config).ok();
}

/// Was finding 4 (low). A store replaces whatever the key holds, last writer wins, with no regard to
/// when each page was fetched: a slow fetch that started first stores its older page over a
/// newer one another request stored meanwhile, and that older page is then served as fresh (Age
/// 0) for a whole ttl. Here a `no-cache` refresh stores v2 (and a hit serves it) while the
/// leader's slow fetch of v1 is still out; v1 then lands on top, and the next hit goes back
/// from v2 to v1 (a task seen SUCCESS shows EXECUTING again).
#[tokio::test]
async fn a_slow_older_fetch_overwrites_a_newer_stored_page() {
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| {
        let version = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let reply = page(seen, version);
        match version {
            1 => reply.delay(Duration::from_millis(1500)),
            _ => reply,
        }
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let slow = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    mock.wait_for_hits(1).await;
    let refreshed = gw
        .client
        .get_with(TASK_LIST, &[("cache-control", "no-cache")])
        .await;
    assert_eq!(
        refreshed.header("cache-status"),
        "koodrive-gateway; fwd=request; stored"
    );
    assert_eq!(version(&refreshed), 2);
    let hit = gw.client.get(TASK_LIST).await;
    assert!(hit.header("cache-status").contains("hit"));
    assert_eq!(version(&hit), 2);

    let slow = within("the slow leader", slow).await.unwrap();
    assert_eq!(version(&slow), 1);
    let after = gw.client.get(TASK_LIST).await;
    assert_eq!(
        version(&after),
        2,
        "the cache served v2, then went back to the older v1 (cache-status {:?}, age {:?})",
        after.header("cache-status"),
        after.header("age")
    );
}

/// Was finding 5 (low). The cache identity and the per-user generation use `X-User-Id` byte for
/// byte, but KooDrive (and the gateway's own signer, `auth/sign.rs`) trims it: over HTTP/2,
/// where the value reaches the gateway untrimmed, `42 ` was one user to KooDrive and two to the
/// cache. Such a value is malformed over HTTP/2 (RFC 9113 section 8.2.1) and is now refused, so
/// no page is ever fetched or stored under the padded spelling, and a write for `42` reaches
/// every page user 42 can be served.
#[tokio::test]
async fn a_padded_user_id_over_http2_is_refused_so_no_page_escapes_the_writers_invalidation() {
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| {
        if seen.method == Method::POST {
            return Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#);
        }
        page(seen, counter.fetch_add(1, Ordering::SeqCst) + 1)
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let h2 = crate::support::Client::http2(gw.running().addr);
    let padded = h2.get_with(TASK_LIST, &[("x-user-id", "42 ")]).await;
    assert_eq!(padded.status, 400, "{}", padded.text());
    assert_eq!(mock.hits(), 0, "nothing fetched for the padded spelling");

    let unpadded = [("x-user-id", "42")];
    let before = h2.get_with(TASK_LIST, &unpadded).await;
    assert_eq!(version(&before), 1);
    let write = gw
        .client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .header("x-user-id", "42")
        .body(Full::new(Bytes::from_static(
            br#"{"taskName":"t","taskType":0}"#,
        )))
        .unwrap();
    assert_eq!(gw.client.send(write).await.status, 200);
    let after = h2.get_with(TASK_LIST, &unpadded).await;
    assert!(
        after.header("cache-status").contains("fwd=miss"),
        "user 42 wrote, yet its list is served from before the write: cache-status {:?}",
        after.header("cache-status"),
    );
}
