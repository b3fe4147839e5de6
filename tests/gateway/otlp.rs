//! OpenTelemetry export (feature `otlp`): the gateway runs as a subprocess (the tracing subscriber
//! is process-global) with a recording mock as its OTLP/HTTP collector.

use bytes::Bytes;

use crate::cli::{temp_config, Process};
use crate::support::{within, Client, Mock, Reply};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const X_TRACEID: &str = "otlp-trace-id-123";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_traceparent_is_continued_upstream() {
    let collector = Mock::start(|_| Reply {
        headers: vec![("content-type".into(), "application/x-protobuf".into())],
        body: Bytes::new(),
        ..Reply::ok()
    })
    .await;
    let mock = Mock::ok().await;
    let config = temp_config(
        "otlp",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n[auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"t\"\n\
             [telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"kdgw-otlp-test\"\n",
            mock.url(),
            collector.url()
        ),
    );
    let mut process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let (addr, _) = process.listening().await;
    let client = Client::new(addr);

    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let response = client
        .get_with(
            "/koodrive/ose/v1/task/1",
            &[("x-traceid", X_TRACEID), ("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(response.status, 200);

    // (a) KooDrive sees the same trace, with the gateway's span as the parent.
    let sent = mock.last();
    let upstream = sent.header("traceparent").unwrap();
    let parts: Vec<&str> = upstream.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream}");
    assert_eq!(parts[1], TRACE_ID, "{upstream}");
    assert_ne!(parts[2], CALLER_SPAN, "{upstream}");
    assert_eq!(parts[2].len(), 16, "{upstream}");

    // (b) The collector receives the spans: the caller's trace id as bytes, the X-Traceid as the
    // `trace_id` attribute, both span names and the service name.
    let trace_bytes = hex::decode(TRACE_ID).unwrap();
    let exported = within("an OTLP export with both spans", async {
        loop {
            let seen = collector.hits();
            let bodies: Vec<Bytes> = collector
                .requests()
                .into_iter()
                .filter(|r| r.method == http::Method::POST && r.uri.path() == "/v1/traces")
                .map(|r| r.body)
                .collect();
            let all: Vec<u8> = bodies.concat();
            if contains(&all, b"upstream") && contains(&all, X_TRACEID.as_bytes()) {
                return all;
            }
            collector.wait_for_hits(seen + 1).await;
        }
    })
    .await;
    assert!(contains(&exported, &trace_bytes), "trace id not exported");
    assert!(contains(&exported, b"trace_id"));
    assert!(contains(&exported, b"request"));
    assert!(contains(&exported, b"kdgw-otlp-test"));
    let posted = collector.last();
    assert_eq!(
        posted.header("content-type"),
        Some("application/x-protobuf")
    );

    let (status, _) = process.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    std::fs::remove_file(config).ok();
}
