//! The JSON log line, in tracing-subscriber's own JSON shape (`timestamp`, `level`, the event's
//! fields flattened, `target`, and the current span's fields with its `name` under `span`), but
//! written straight into the line. tracing-subscriber's formatter collects a span's fields into a
//! map and serializes it when the span is created, then parses that JSON back into a map on every
//! event, a large share of a cache hit's CPU with the access log on. Here a span's fields are
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
    let end = value_end(members.as_bytes(), value)?;
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
    let end = value_end(members.as_bytes(), value).unwrap_or(members.len());
    // The first member takes the comma after it; any other, the comma before it.
    let end = match start == 0 && members[end..].starts_with(',') {
        true => end + 1,
        false => end,
    };
    members.replace_range(start..end, "");
}

/// Where the value starting at `at` ends, in members this formatter wrote: a string (every
/// quote inside it escaped), or a number, boolean or `null` running to the next comma. No other
/// kind of value is written here, so no general JSON scanner is needed.
fn value_end(members: &[u8], at: usize) -> Option<usize> {
    let rest = members.get(at..)?;
    if rest.first() != Some(&b'"') {
        let len = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        return (len > 0).then_some(at + len);
    }
    let mut i = 1;
    while let Some(&byte) = rest.get(i) {
        match byte {
            b'\\' => i += 2,
            b'"' => return Some(at + i + 1),
            _ => i += 1,
        }
    }
    None
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
mod tests;
