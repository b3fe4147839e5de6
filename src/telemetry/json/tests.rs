use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The events every test logs: inside a span with a recorded-later field, outside any span,
/// and with every kind of value, including strings that need escaping.
fn log_events() {
    let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} unicode é";
    let span = tracing::info_span!(
        "request",
        trace_id = "0123456789abcdef",
        path = tricky,
        upstream_status = tracing::field::Empty,
        upstream_ms = tracing::field::Empty,
    );
    let _entered = span.enter();
    tracing::info!(target: "koodrive_gateway::access", status = 200u64, cache = "hit", duration_ms = 0.25, "request");
    span.record("upstream_status", 502);
    span.record("upstream_ms", 12u64);
    span.record("upstream_status", 503);
    tracing::warn!(error = %tricky, negative = -7i64, flag = true, nan = f64::NAN, "failed: {}", tricky);
    let empty = tracing::info_span!("upstream");
    let _inner = empty.enter();
    tracing::info!(r#type = "raw name", "inside a span without fields");
    drop(_inner);
    drop(_entered);
    tracing::info!(addr = "127.0.0.1:1", "outside any span");
}

/// Our lines, each with its top-level `trace_id` taken off (tracing-subscriber's have none).
fn ours_without_top_level_trace_ids() -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut lines = lines(true);
    let trace_ids = lines
        .iter_mut()
        .map(|line| {
            line.as_object_mut()
                .unwrap()
                .remove("trace_id")
                .unwrap_or_default()
        })
        .collect();
    (lines, trace_ids)
}

fn lines(json: bool) -> Vec<serde_json::Value> {
    let capture = Capture::default();
    let layer = tracing_subscriber::fmt::layer().with_writer(capture.clone());
    let dispatch = match json {
        true => tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(layer.fmt_fields(JsonMembers).event_format(JsonLines)),
        ),
        false => tracing::Dispatch::new(
            tracing_subscriber::registry().with(
                layer
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .flatten_event(true),
            ),
        ),
    };
    tracing::dispatcher::with_default(&dispatch, log_events);
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|line| {
            let mut value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let timestamp = value.as_object_mut().unwrap().remove("timestamp");
            assert!(
                timestamp.unwrap().as_str().unwrap().ends_with('Z'),
                "{line}"
            );
            value
        })
        .collect()
}

#[test]
fn a_member_recorded_again_is_replaced_wherever_it_stands() {
    let members = r#""a":"x \" ,\"b\":1","b":2,"c":"\\","d":true"#;
    for (name, left) in [
        ("a", r#""b":2,"c":"\\","d":true"#),
        ("b", r#""a":"x \" ,\"b\":1","c":"\\","d":true"#),
        ("c", r#""a":"x \" ,\"b\":1","b":2,"d":true"#),
        ("d", r#""a":"x \" ,\"b\":1","b":2,"c":"\\""#),
        ("e", members),
    ] {
        let mut stored = members.to_string();
        remove_member(&mut stored, name);
        assert_eq!(stored, left, "removing {name}");
    }
    let mut only = r#""a":1"#.to_string();
    remove_member(&mut only, "a");
    assert_eq!(only, "");
}

#[test]
fn lines_match_tracing_subscribers_json_format() {
    let (ours, _) = ours_without_top_level_trace_ids();
    let theirs = lines(false);
    assert_eq!(ours.len(), 4);
    assert_eq!(ours, theirs);
    assert_eq!(ours[0]["span"]["trace_id"], "0123456789abcdef");
    assert_eq!(ours[1]["span"]["upstream_status"], 503);
    assert_eq!(ours[1]["span"]["upstream_ms"], 12);
    assert_eq!(ours[2]["span"], serde_json::json!({"name": "upstream"}));
    assert!(ours[3].get("span").is_none());
}

#[test]
fn the_trace_id_is_at_the_top_level_of_every_line_inside_a_span_that_has_one() {
    let (_, trace_ids) = ours_without_top_level_trace_ids();
    // In the request span, in the upstream span inside it (which has no trace_id of its
    // own), and none outside any span.
    let in_span = serde_json::json!("0123456789abcdef");
    assert_eq!(
        trace_ids,
        [
            in_span.clone(),
            in_span.clone(),
            in_span,
            serde_json::Value::Null
        ]
    );
    // The first member after the level, as it is written.
    let capture = Capture::default();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(capture.clone())
        .fmt_fields(JsonMembers)
        .event_format(JsonLines);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("request", method = "GET", trace_id = "t \" 1");
        let _entered = span.enter();
        tracing::info!("inside");
        tracing::info!(trace_id = "its own", "with its own");
    });
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(r#""level":"INFO","trace_id":"t \" 1","message":"inside""#),
        "{text}"
    );
    let own: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(own["trace_id"], "its own", "{text}");
    assert_eq!(
        lines[1].matches(r#""trace_id":"its own""#).count(),
        1,
        "{text}"
    );
}

#[test]
fn a_member_value_is_found_at_the_start_or_after_a_comma_only() {
    let members = r#""a":"x,\"trace_id\":1","trace_id":"t","b":2"#;
    assert_eq!(member_value(members, TRACE_ID_MEMBER), Some(r#""t""#));
    assert_eq!(
        member_value(r#""trace_id":"u""#, TRACE_ID_MEMBER),
        Some(r#""u""#)
    );
    assert_eq!(
        member_value(r#""a":"\"trace_id\":3""#, TRACE_ID_MEMBER),
        None
    );
    assert_eq!(member_value("", TRACE_ID_MEMBER), None);
}

/// Every kind of value the formatter writes ends where a JSON parser says it does.
#[test]
fn a_written_value_ends_where_json_says() {
    for value in [
        r#""x""#,
        r#""a\"b,c""#,
        r#""\\""#,
        r#""\u001f,""#,
        "12",
        "-1.5",
        "true",
        "null",
    ] {
        let members = format!(r#""k":{value},"n":1"#);
        let end = value_end(members.as_bytes(), 4);
        assert_eq!(end, Some(4 + value.len()), "{members}");
        let parsed: serde_json::Value = serde_json::from_str(&format!("{{{members}}}")).unwrap();
        assert_eq!(
            parsed["k"],
            serde_json::from_str::<serde_json::Value>(value).unwrap()
        );
    }
    assert_eq!(value_end(br#""k":"open"#, 4), None);
    assert_eq!(value_end(br#""k":"#, 4), None);
}
