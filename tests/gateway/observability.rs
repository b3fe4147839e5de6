//! Do the metrics tell the truth? Each test drives one scenario an operator cares about and
//! checks the documented meaning of the series it touches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::faults::{read_head, Fault, FaultServer};
use crate::support::{within, Mock, Reply, TestGateway, TASK_LIST};

const TOKEN_MODE: &str = "[auth]\nmode = \"token\"\naccess_token = \"tok-r5a\"\n";

/// The sum of every series whose key starts with `name` and contains each of `labels`.
fn sum(metrics: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| {
            (k.as_str() == name || k.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Polls `/metrics` until `ready` holds (each scrape is an event the gateway has published).
async fn metrics_until(
    gw: &TestGateway,
    what: &str,
    ready: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    within(what, async {
        loop {
            let metrics = gw.metrics().await;
            if ready(&metrics) {
                return metrics;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn dump(metrics: &HashMap<String, f64>, prefix: &str) -> String {
    let mut lines: Vec<_> = metrics
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Opens a raw HTTP/1.1 connection, sends a GET for `path`, and returns the stream (drop it to
/// hang up).
async fn raw_get(gw: &TestGateway, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

/// A gateway whose breaker opens on one failure (cooldown 200 ms), in front of a mock that fails
/// `/fail`, holds `/slow` until the returned `Notify` is told, and answers the rest.
async fn breaker_behind_a_holding_mock() -> (Mock, TestGateway, Arc<Notify>) {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let mock = Mock::start(move |seen| match seen.uri.path() {
        p if p.ends_with("/fail") => Reply::json(500, r#"{"code":"1","msg":"boom"}"#),
        p if p.ends_with("/slow") => Reply::ok().hold(Arc::clone(&held)),
        _ => Reply::ok(),
    })
    .await;
    let overlay =
        format!("{TOKEN_MODE}[upstream]\nbreaker_failures = 1\nbreaker_cooldown = \"200ms\"\n");
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    (mock, gw, hold)
}

/// Finding 1. A half-open probe whose client hangs up "passes its turn to the next request"
/// (README, Fault tolerance): nothing was learnt about KooDrive. The breaker nevertheless
/// counts a new `open` transition, sets `breaker_open` back to 1 and logs "circuit breaker open:
/// KooDrive is failing" (`Permit::drop` calls `transition(OPEN, "open")`).
#[tokio::test]
async fn a_probe_that_passes_its_turn_is_not_a_new_opening() {
    let (mock, gw, hold) = breaker_behind_a_holding_mock().await;

    // One 500: the breaker opens (threshold 1).
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/files/fail").await.status,
        500
    );
    let opened = gw.metrics().await;
    assert_eq!(
        sum(
            &opened,
            "koodrive_gateway_breaker_transitions_total",
            &["open"]
        ),
        1.0
    );
    // The cooldown is configured time: wait it out.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The probe: its client hangs up while KooDrive holds the answer.
    let stream = raw_get(&gw, "/koodrive/ose/v1/files/slow").await;
    mock.wait_for_hits(2).await;
    drop(stream);
    let after = metrics_until(&gw, "the probe's 499", |m| {
        sum(
            m,
            "koodrive_gateway_requests_total",
            &["status_class=\"4xx\""],
        ) >= 1.0
    })
    .await;
    hold.notify_waiters();

    let opens = sum(
        &after,
        "koodrive_gateway_breaker_transitions_total",
        &["reason=\"open\""],
    );
    assert_eq!(
        opens,
        1.0,
        "a probe whose client left was counted as a new breaker opening \
         (breaker_open = {}):\n{}",
        sum(&after, "koodrive_gateway_breaker_open", &[]),
        dump(&after, "koodrive_gateway_breaker")
    );
}

/// Finding 2. `cache_misses_total` is "requests that fetched", yet a task-list miss whose client
/// hangs up while its (shared) fetch runs is never counted: `serve_miss` calls
/// `record(state, "miss")` only after `flight.wait` returns. The fetch still goes to KooDrive
/// (and stores the page): KooDrive was called once, and no cache counter moved. (A `no-cache`
/// request is counted before it fetches, so the same hang-up is counted there; a collapsed
/// waiter that hangs up is likewise never counted as collapsed.)
#[tokio::test]
async fn a_miss_whose_client_hangs_up_is_still_a_miss() {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let mock = Mock::start(move |_| {
        Reply::json(200, r#"{"taskListDtos":[],"code":0}"#).hold(Arc::clone(&held))
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;

    let path = format!("{TASK_LIST}?status=1");
    let stream = raw_get(&gw, &path).await;
    mock.wait_for_hits(1).await;
    drop(stream);
    metrics_until(&gw, "the leader's 499", |m| {
        sum(
            m,
            "koodrive_gateway_requests_total",
            &["route=\"task_list\"", "status_class=\"4xx\""],
        ) == 1.0
    })
    .await;
    // KooDrive answers the orphaned flight, which stores the page.
    hold.notify_one();
    // The orphaned flight ends (its place in `in_flight` given back) once KooDrive answered.
    let metrics = metrics_until(&gw, "the flight's end", |m| {
        sum(m, "koodrive_gateway_in_flight", &[]) == 0.0
            && sum(m, "koodrive_gateway_upstream_requests_total", &[]) == 1.0
    })
    .await;
    let upstream = sum(&metrics, "koodrive_gateway_upstream_requests_total", &[]);
    let misses = sum(&metrics, "koodrive_gateway_cache_misses_total", &[]);
    let collapsed = sum(&metrics, "koodrive_gateway_cache_collapsed_total", &[]);
    assert_eq!(
        (misses + collapsed, upstream),
        (1.0, 1.0),
        "(misses + collapsed, upstream calls): the request that started the fetch is counted \
         nowhere in the cache metrics:\n{}",
        dump(&metrics, "koodrive_gateway_cache")
    );
}

/// Finding 7. `cache_entries` and `cache_bytes` are read from moka's `entry_count()` and
/// `weighted_size()`, which only move when moka runs its pending maintenance: after a page is
/// stored and served as a hit, `/metrics` still says the cache holds nothing, and after a
/// `purge_all` it keeps saying what was there before (until later traffic runs the maintenance).
#[tokio::test]
async fn cache_gauges_say_what_the_cache_holds() {
    let mock = Mock::start(|_| Reply::json(200, r#"{"taskListDtos":[],"code":0}"#)).await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let path = format!("{TASK_LIST}?status=1");
    let stored = gw.client.get(&path).await;
    assert!(
        stored.header("cache-status").contains("stored"),
        "{:?}",
        stored.headers
    );
    let hit = gw.client.get(&path).await;
    assert!(
        hit.header("cache-status").contains("hit"),
        "{:?}",
        hit.headers
    );
    let mut wrong = Vec::new();
    let held = gw.metrics().await;
    let (entries, bytes) = (
        sum(&held, "koodrive_gateway_cache_entries", &[]),
        sum(&held, "koodrive_gateway_cache_bytes", &[]),
    );
    if entries != 1.0 || bytes <= 0.0 {
        wrong.push(format!(
            "one page stored and served as a hit: cache_entries = {entries}, cache_bytes = {bytes}"
        ));
    }
    // Hits until moka's maintenance has caught up and the gauge says 1.
    within("cache_entries to catch up", async {
        loop {
            gw.client.get(&path).await;
            if sum(&gw.metrics().await, "koodrive_gateway_cache_entries", &[]) == 1.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let purge = gw
        .admin
        .request(Method::POST, "/cache/purge")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(gw.admin.send(purge).await.status, 200);
    let after = gw.metrics().await;
    let (entries, bytes) = (
        sum(&after, "koodrive_gateway_cache_entries", &[]),
        sum(&after, "koodrive_gateway_cache_bytes", &[]),
    );
    if entries != 0.0 || bytes != 0.0 {
        wrong.push(format!(
            "after POST /cache/purge (everything dropped): cache_entries = {entries}, cache_bytes = {bytes}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A raw upstream that answers every request with `answer` and closes the connection.
async fn raw_upstream(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// Finding 3. An upstream answer with a transfer coding other than chunked is refused as a 502
/// `GATEWAY_UPSTREAM_PROTOCOL`; the upstream exchange must not label `upstream_requests_total` from
/// the status before that check: the metric says `2xx` for an exchange the gateway itself calls
/// a protocol error. The check also drops the response (and its breaker permit) unrecorded, so a
/// KooDrive (or a proxy in front of it) that always answers so never opens the breaker, although
/// the README lists protocol errors among the failures that do.
#[tokio::test]
async fn a_refused_transfer_coding_is_a_protocol_error_in_the_metrics() {
    let url = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let overlay =
        format!("{TOKEN_MODE}[upstream]\nbreaker_failures = 2\nbreaker_cooldown = \"60s\"\n");
    let gw = TestGateway::for_mock_url(&url, &overlay).await;
    for _ in 0..2 {
        let response = gw.client.get("/koodrive/ose/v1/files/x").await;
        assert_eq!(response.status, 502);
        assert_eq!(
            response.header("koodrive-gateway-error"),
            "GATEWAY_UPSTREAM_PROTOCOL"
        );
    }
    // Two protocol errors opened the breaker: the third is refused without a call.
    let refused = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(
        refused.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    let metrics = gw.metrics().await;
    let mut wrong = Vec::new();
    let protocol = sum(
        &metrics,
        "koodrive_gateway_upstream_requests_total",
        &["outcome=\"protocol_error\""],
    );
    let ok = sum(
        &metrics,
        "koodrive_gateway_upstream_requests_total",
        &["outcome=\"2xx\""],
    );
    if protocol != 2.0 || ok != 0.0 {
        wrong.push(format!(
            "2 answers refused as GATEWAY_UPSTREAM_PROTOCOL: upstream outcome protocol_error = {protocol}, 2xx = {ok}"
        ));
    }
    let open = sum(&metrics, "koodrive_gateway_breaker_open", &[]);
    if open != 1.0 {
        wrong.push(format!(
            "2 consecutive protocol errors with breaker_failures = 2: breaker_open = {open}"
        ));
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        dump(&metrics, "koodrive_gateway_upstream_requests")
    );
}

/// Finding 4. A retried GET (reset before any response byte, then answered on a fresh
/// connection) is two calls to KooDrive, but `upstream_requests_total` counts one exchange (the
/// outcome of the retry only), and no series counted the reset or the retry: an upstream that
/// resets every other connection looked perfectly healthy in the metrics. Now
/// `upstream_retries_total` counts the retries.
#[tokio::test]
async fn a_retried_call_is_counted_as_two_calls() {
    let fault = FaultServer::start(Fault::ResetOnce).await;
    let gw = TestGateway::for_mock_url(&fault.url(), TOKEN_MODE).await;
    let response = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(response.status, 200);
    let metrics = gw.metrics().await;
    // One exchange (its outcome, its latency), and the retry within it counted on its own.
    let calls = sum(&metrics, "koodrive_gateway_upstream_requests_total", &[]);
    let retries = sum(&metrics, "koodrive_gateway_upstream_retries_total", &[]);
    assert_eq!(
        (calls, calls + retries),
        (1.0, fault.hits() as f64),
        "KooDrive accepted {} connections for one retried GET; the metrics say:\n{}",
        fault.hits(),
        dump(&metrics, "koodrive_gateway_upstream")
    );
}

/// Finding 5. `upstream_duration_seconds` is "time to KooDrive's response head", but
/// the exchange must not observe it for every outcome, including `circuit_open` fast-fails that
/// never left the gateway (and client-body failures): while KooDrive is down and the breaker is
/// open, the upstream latency histogram fills with ~0 s samples and its quantiles drop.
#[tokio::test]
async fn upstream_latency_is_not_diluted_by_calls_never_made() {
    let mock = Mock::start(|_| Reply::json(500, r#"{"code":"1","msg":"boom"}"#)).await;
    let overlay =
        format!("{TOKEN_MODE}[upstream]\nbreaker_failures = 1\nbreaker_cooldown = \"60s\"\n");
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    assert_eq!(gw.client.get("/koodrive/ose/v1/files/x").await.status, 500);
    for _ in 0..5 {
        let fast = gw.client.get("/koodrive/ose/v1/files/x").await;
        assert_eq!(
            fast.header("koodrive-gateway-error"),
            "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
        );
    }
    let metrics = gw.metrics().await;
    let observed = sum(
        &metrics,
        "koodrive_gateway_upstream_duration_seconds_count",
        &[],
    );
    assert_eq!(
        observed,
        mock.hits() as f64,
        "KooDrive saw {} request(s); its response-head latency histogram holds:\n{}",
        mock.hits(),
        dump(&metrics, "koodrive_gateway_upstream")
    );
}

/// Finding 6. Every label value in the README is lowercase (`task_list`, `2xx`, `hit`,
/// `protocol_error`) and `metrics.rs` says an unusual method is `other`, but the derived
/// `EncodeLabelValue` writes the variant name: `method="Other"`. A query for `method="other"`
/// finds nothing.
#[tokio::test]
async fn an_unusual_method_is_labelled_other() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let purge = gw
        .client
        .request(
            Method::from_bytes(b"PURGE").unwrap(),
            "/koodrive/ose/v1/files/x",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(gw.client.send(purge).await.status, 200);
    let metrics = gw.metrics().await;
    assert_eq!(
        sum(
            &metrics,
            "koodrive_gateway_requests_total",
            &["method=\"other\""]
        ),
        1.0,
        "{}",
        dump(&metrics, "koodrive_gateway_requests_total")
    );
}

/// Finding 8. While the breaker is half-open and its probe is out, every other request is
/// refused with a 503 `GATEWAY_UPSTREAM_CIRCUIT_OPEN`, yet `breaker_open` reads 0
/// (`Breaker::transition` sets it to `to == OPEN`): a dashboard shows the breaker closed while
/// clients are told the circuit is open, for as long as the probe takes (up to
/// `upstream.timeout`).
#[tokio::test]
async fn breaker_open_says_so_while_requests_are_refused() {
    let (mock, gw, hold) = breaker_behind_a_holding_mock().await;
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/files/fail").await.status,
        500
    );
    // The cooldown is configured time: wait it out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The probe, held by KooDrive.
    let client = gw.client.clone();
    let probe = tokio::spawn(async move { client.get("/koodrive/ose/v1/files/slow").await });
    mock.wait_for_hits(2).await;
    let refused = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    let metrics = gw.metrics().await;
    hold.notify_waiters();
    assert_eq!(within("the probe", probe).await.unwrap().status, 200);
    assert_eq!(
        sum(&metrics, "koodrive_gateway_breaker_open", &[]),
        1.0,
        "a request was just refused as GATEWAY_UPSTREAM_CIRCUIT_OPEN:\n{}",
        dump(&metrics, "koodrive_gateway_breaker")
    );
}

/// Finding 9. The labelled families whose label values are a fixed, documented set are not
/// created until their first event, so a fresh gateway's `/metrics` has no
/// `breaker_transitions_total{reason="open"}` (nor any stale-served or invalidation series). A
/// series born at 1 has no earlier sample, so `increase()`/`rate()` read the first breaker
/// opening, the first stale-if-error and the first write invalidation as no change: an alert on
/// `increase(koodrive_gateway_breaker_transitions_total{reason="open"}[5m]) > 0` misses the
/// first outage after every restart. (`metrics.rs` already creates the hit series up front.)
#[tokio::test]
async fn documented_label_values_are_exposed_from_the_start() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let metrics = gw.metrics().await;
    let expected = [
        r#"koodrive_gateway_breaker_transitions_total{reason="open"}"#,
        r#"koodrive_gateway_breaker_transitions_total{reason="half_open"}"#,
        r#"koodrive_gateway_breaker_transitions_total{reason="closed"}"#,
        r#"koodrive_gateway_cache_stale_served_total{reason="stale-while-revalidate"}"#,
        r#"koodrive_gateway_cache_stale_served_total{reason="stale-if-error"}"#,
        r#"koodrive_gateway_cache_invalidations_total{reason="write"}"#,
        r#"koodrive_gateway_cache_invalidations_total{reason="purge_user"}"#,
        r#"koodrive_gateway_cache_invalidations_total{reason="purge_all"}"#,
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|key| !metrics.contains_key(**key))
        .collect();
    assert!(
        missing.is_empty(),
        "series missing from a fresh gateway's /metrics: {missing:#?}"
    );
}

/// Finding 10 (beside the angle, found on the way: it moves `cache_invalidations_total`). A
/// task write whose client hangs up after the write reached KooDrive is not treated as possibly
/// applied: hyper drops the request's future while it awaits KooDrive's answer,
/// before the invalidation, so the writer's cached lists are served
/// on as hits (for the TTL, then stale-while-revalidate) and `cache_invalidations_total` never
/// moves. The README counts a write "whose answer timed out or broke off after it was sent" as
/// possibly applied; a client hang-up is the same ambiguity.
#[tokio::test]
async fn a_write_whose_client_hangs_up_still_invalidates() {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let mock = Mock::start(move |seen| match seen.method {
        Method::POST => {
            Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#).hold(Arc::clone(&held))
        }
        _ => Reply::json(200, r#"{"taskListDtos":[],"code":0}"#),
    })
    .await;
    let overlay = format!("{TOKEN_MODE}[cache]\nttl = \"60s\"\n");
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    let path = format!("{TASK_LIST}?status=1");
    let stored = gw.client.get(&path).await;
    assert!(
        stored.header("cache-status").contains("stored"),
        "{:?}",
        stored.headers
    );

    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    mock.wait_for_hits(2).await;
    drop(stream);
    metrics_until(&gw, "the write's 499", |m| {
        sum(
            m,
            "koodrive_gateway_requests_total",
            &["route=\"task_write\"", "status_class=\"4xx\""],
        ) == 1.0
    })
    .await;
    hold.notify_one();

    let after = gw.client.get(&path).await;
    let metrics = gw.metrics().await;
    assert!(
        !after.header("cache-status").contains("; hit"),
        "the writer's list after a write KooDrive received: Cache-Status {:?}, \
         invalidations {}",
        after.header("cache-status"),
        dump(&metrics, "koodrive_gateway_cache_invalidations")
    );
}

/// Records the trace id of each `request` span as it closes (in the test's own thread: the
/// tests' runtime is current-thread, so the gateway's tasks run under this subscriber).
struct ClosedRequests(Arc<std::sync::Mutex<Vec<String>>>);

struct TraceId(String);

impl tracing::field::Visit for TraceId {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "trace_id" {
            self.0 = value.to_owned();
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl<S> tracing_subscriber::Layer<S> for ClosedRequests
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut trace_id = TraceId(String::new());
        attrs.record(&mut trace_id);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(trace_id);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if span.name() == "request" {
                if let Some(TraceId(trace_id)) = span.extensions().get::<TraceId>() {
                    self.0.lock().unwrap().push(trace_id.clone());
                }
            }
        }
    }
}

/// Finding 11. A stale-while-revalidate answer is served at once, but its `request` span stays
/// open until the background refresh it started has ended when the refresh is instrumented
/// with `Span::current()`, the serving request's span, which the refresh then
/// holds (and the upstream exchange records the refresh's `upstream_status` and `upstream_ms`
/// into it). Exported over OTLP, a sub-millisecond stale hit shows as a request that lasted as
/// long as KooDrive took (up to `upstream.timeout`), carrying an upstream call it never waited
/// for.
#[tokio::test]
async fn a_stale_answer_span_ends_with_its_answer() {
    use tracing_subscriber::layer::SubscriberExt;
    let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(ClosedRequests(Arc::clone(&closed)));
    let _guard = tracing::subscriber::set_default(subscriber);

    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mock = Mock::start(move |_| {
        let page = Reply::json(200, r#"{"taskListDtos":[],"code":0}"#);
        match served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => page,
            _ => page.hold(Arc::clone(&held)),
        }
    })
    .await;
    let overlay = "[cache]\nttl = \"200ms\"\nstale_while_revalidate = \"60s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let path = format!("{TASK_LIST}?status=1");
    let first = gw
        .client
        .get_with(&path, &[("x-traceid", "r5a-first")])
        .await;
    assert!(first.header("cache-status").contains("stored"));
    // The TTL is configured time: wait it out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stale = gw
        .client
        .get_with(&path, &[("x-traceid", "r5a-stale")])
        .await;
    assert!(
        stale
            .header("cache-status")
            .contains("stale-while-revalidate"),
        "{:?}",
        stale.headers
    );
    // The refresh reached KooDrive, which holds it; the stale answer was delivered.
    mock.wait_for_hits(2).await;
    tokio::task::yield_now().await;
    let ended = closed.lock().unwrap().clone();
    hold.notify_one();
    assert!(
        ended.iter().any(|t| t == "r5a-stale"),
        "request spans closed once the stale answer was delivered: {ended:?}"
    );
}
