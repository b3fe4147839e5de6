//! The JSON log line, in tracing-subscriber's own JSON shape (`timestamp`, `level`, the event's
//! fields flattened, `target`, and the current span's fields with its `name` under `span`), but
//! written straight into the line. tracing-subscriber's formatter collects a span's fields into a
//! map and serializes it when the span is created, then parses that JSON back into a map on every
//! event: with the access log on, about a sixth of a cache hit's CPU. Here a span's fields are
//! kept as the JSON members they are written as, and an event splices them in.
//!
//! One addition to that shape: a line inside a span that carries `trace_id` (the request span and
//! its children) has `trace_id` at the top level too, so that log pipelines can index it without
//! knowing the span layout.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for `log.format = "json"`.
pub struct JsonLines;

/// A span's fields as JSON object members (`"trace_id":"...","route":"task_list"`), without the
/// braces, so that fields recorded later are appended and an event splices them in as they are.
pub struct JsonMembers;

impl<'w> FormatFields<'w> for JsonMembers {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        // A field recorded again replaces its member: each name appears once, as in a map.
        let mut names = Names(Vec::new());
        fields.record(&mut names);
        for name in names.0 {
            remove_member(&mut current.fields, name);
        }
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut members = Fields {
            out: &mut writer,
            first,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }
}

impl<S> FormatEvent<S, JsonMembers> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonMembers>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        // The innermost enclosing span's trace id, unless the event carries its own.
        if let Some(span) = span
            .as_ref()
            .filter(|_| meta.fields().field(TRACE_ID).is_none())
        {
            for scope in span.scope() {
                let extensions = scope.extensions();
                let value = extensions
                    .get::<FormattedFields<JsonMembers>>()
                    .and_then(|members| member_value(&members.fields, TRACE_ID_MEMBER));
                if let Some(value) = value {
                    writer.write_str(",\"trace_id\":")?;
                    writer.write_str(value)?;
                    break;
                }
            }
        }
        let mut fields = Fields {
            out: &mut writer,
            first: false,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            let members = extensions.get::<FormattedFields<JsonMembers>>();
            if let Some(members) = members.filter(|m| !m.fields.is_empty()) {
                writer.write_str(&members.fields)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes fields as `"name":value` members, each but the first after a comma.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let comma = if std::mem::take(&mut self.first) {
            Ok(())
        } else {
            self.out.write_char(',')
        };
        self.result = comma
            .and_then(|()| string(self.out, name))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| value(self.out));
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes null for them too.
        self.member(field, |out| match value.is_finite() {
            true => write!(out, "{value}"),
            false => out.write_str("null"),
        });
    }
}

const TRACE_ID: &str = "trace_id";
/// `trace_id` as a member's start: `"trace_id":`.
const TRACE_ID_MEMBER: &str = "\"trace_id\":";

/// The JSON text of the value of the member that starts with `key` (`"name":`), in
/// `"a":1,"b":"x"`-style members. As in [`remove_member`], a member starts at the beginning or
/// after a comma, which cannot occur inside a string value.
fn member_value<'m>(members: &'m str, key: &str) -> Option<&'m str> {
    let value = match members.strip_prefix(key) {
        Some(_) => key.len(),
        None => {
            let at = members
                .match_indices(key)
                .find(|(at, _)| members.as_bytes().get(at.wrapping_sub(1)) == Some(&b','))?;
            at.0 + key.len()
        }
    };
    let end = crate::normalize::value_end(members.as_bytes(), value)?;
    members.get(value..end)
}

/// The names of the fields being recorded.
struct Names(Vec<&'static str>);

impl Visit for Names {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        let name = field.name();
        self.0.push(name.strip_prefix("r#").unwrap_or(name));
    }
}

/// Removes the member named `name` from `"a":1,"b":"x"`-style members. A member starts at the
/// beginning or after a comma, with its quoted name and a colon; that cannot occur inside a
/// string value, where every quote is escaped.
fn remove_member(members: &mut String, name: &str) {
    let key = format!("\"{name}\":");
    let (start, value) = if members.starts_with(&key) {
        (0, key.len())
    } else {
        match members.find(&format!(",{key}")) {
            Some(comma) => (comma, comma + 1 + key.len()),
            None => return,
        }
    };
    let end = crate::normalize::value_end(members.as_bytes(), value).unwrap_or(members.len());
    // The first member takes the comma after it; any other, the comma before it.
    let end = match start == 0 && members[end..].starts_with(',') {
        true => end + 1,
        false => end,
    };
    members.replace_range(start..end, "");
}

/// A JSON string literal.
fn string(out: &mut Writer<'_>, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            match escape {
                "" => write!(self.0, "\\u{byte:04x}")?,
                escape => self.0.write_str(escape)?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
