//! Request spans end with their answer, whatever background work the request started.

use super::*;

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

/// A stale-while-revalidate answer is served at once, but its `request` span stays
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
