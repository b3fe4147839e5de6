//! Checks JSON text and applies a [`Shape`] to it in one pass, without building a `serde_json::Value`.
//!
//! Building a tree (a `String` per key and number, an `IndexMap` per object) costs several times the
//! budget for a 100-task page, and so does validating with serde_json first and rewriting after. So
//! this module reads the bytes once: it checks the JSON grammar as strictly as serde_json does, copies
//! what the rule does not name, and rewrites only the fields it names. It never recurses on the
//! body's nesting (only on the rule's, which the operator bounds).

use std::ops::Range;

use super::code::{code_of, Code};
use super::scan::{expect, is_integer, number, scan_string, skip_value, ws, Result, Stop};
use super::shape::{read_key, Field, FieldType, Key, Shape, Step};

/// Rewrites the JSON document whose top-level object starts at `at` into `out`; returns the number
/// of type mismatches and the output's top-level `code`, read on the way. Anything but whitespace
/// after the object is an error.
pub(super) fn document(
    text: &[u8],
    at: usize,
    shape: &Shape,
    out: &mut Vec<u8>,
) -> Result<(usize, Code)> {
    // A key renamed to `code` is one this reading does not follow.
    let renamed_to_code = shape.rename.iter().any(|(_, to)| to == "code");
    let mut rewriter = Rewriter {
        b: text,
        out,
        mismatches: 0,
        code: if renamed_to_code {
            Seen::Unsure
        } else {
            Seen::Not
        },
    };
    let end = rewriter.object(at, 1, shape)?;
    if ws(text, end) != text.len() {
        return Err(Stop::Invalid);
    }
    let code = match rewriter.code {
        Seen::Not => Code::Known(None),
        // A number made a string reads as its digits, exactly.
        Seen::Once(start, end, Edit::Quote) => text
            .get(start..end)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .map_or(Code::Unknown, |digits| Code::Known(Some(digits.into()))),
        Seen::Once(start, end, _) => text.get(start..end).map_or(Code::Unknown, code_of),
        Seen::Unsure => Code::Unknown,
    };
    Ok((rewriter.mismatches, code))
}

/// Where the top-level `code` is in the source, as far as the rewriter has seen.
#[derive(Debug, Clone, Copy)]
enum Seen {
    Not,
    /// Once, as it is or made a string (`Keep`, `Quote`): its value's source range.
    Once(usize, usize, Edit),
    /// Twice, under an escaped key, renamed, dropped or reshaped: left to the caller.
    Unsure,
}

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// As it is.
    Keep,
    /// A number, as a string of its digits.
    Quote,
    /// A string of digits, as an integer.
    Unquote,
    /// Not decided here: the entry is renamed, dropped when null, or has a nested shape.
    Other,
}

struct Rewriter<'a, 'o> {
    b: &'a [u8],
    out: &'o mut Vec<u8>,
    mismatches: usize,
    /// The top-level `code`.
    code: Seen,
}

impl Rewriter<'_, '_> {
    /// Rewrites the object at `at` (a `{`), nested `depth` deep; returns the index past it.
    ///
    /// Entries that come out as they went in are not written one by one: they gather into a run of
    /// the source (`pending`) that is copied in one go when an entry that changes, or the end, comes.
    fn object(&mut self, at: usize, depth: usize, shape: &Shape) -> Result<usize> {
        let b = self.b;
        let open = self.out.len() + 1;
        self.out.push(b'{');
        // Per rename: whether its target was seen, and where the renamed entry was written.
        let mut renames: Vec<(bool, Option<Range<usize>>)> =
            vec![(false, None); shape.rename.len()];
        let mut pending: Option<Range<usize>> = None;
        let mut i = ws(b, at + 1);
        if b.get(i) == Some(&b'}') {
            self.out.push(b'}');
            return Ok(i + 1);
        }
        loop {
            let key_start = i;
            let (key_end, escaped, key) = read_key(shape, b, i)?;
            let colon = ws(b, key_end);
            expect(b, colon, b':')?;
            let start = ws(b, colon + 1);
            let compact = start == key_end + 1;
            // A key the shape does not name, or a typed value that needs no change, is kept.
            let (end, edit) = match key {
                None => (skip_value(b, start, depth)?, Edit::Keep),
                Some(key) if key.plain() => match shape.field(key) {
                    Field::Typed(ty) => self.typed(start, depth, ty, key)?,
                    _ => (start, Edit::Other),
                },
                Some(_) => (start, Edit::Other),
            };
            // At the top, an escaped key may be `code` too.
            if depth == 1 && (escaped || &b[key_start..key_end] == b"\"code\"") {
                self.code = match (self.code, escaped, edit) {
                    (Seen::Not, false, Edit::Keep | Edit::Quote) => Seen::Once(start, end, edit),
                    _ => Seen::Unsure,
                };
            }
            let end = if compact && edit == Edit::Keep {
                pending = Some(match pending {
                    Some(run) if b.get(run.end) == Some(&b',') && run.end + 1 == key_start => {
                        run.start..end
                    }
                    run => {
                        let wrote = self.flush(run) || self.out.len() > open;
                        if wrote {
                            self.out.push(b',');
                        }
                        key_start..end
                    }
                });
                end
            } else {
                self.flush(pending.take());
                match (key, edit) {
                    (Some(key), Edit::Other) => self.entry(
                        open,
                        &mut renames,
                        (key_start, key_end, start),
                        depth,
                        key,
                        shape,
                    )?,
                    (_, edit) => {
                        if self.out.len() > open {
                            self.out.push(b',');
                        }
                        self.out.extend_from_slice(&b[key_start..key_end]);
                        self.out.push(b':');
                        self.apply(edit, start, end);
                        end
                    }
                }
            };
            i = ws(b, end);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => break,
                _ => return Err(Stop::Invalid),
            }
        }
        self.flush(pending);
        self.out.push(b'}');
        Ok(i + 1)
    }

    /// Copies a run of the source; whether there was one.
    fn flush(&mut self, run: Option<Range<usize>>) -> bool {
        match run {
            Some(run) => {
                self.out.extend_from_slice(&self.b[run]);
                true
            }
            None => false,
        }
    }

    /// Writes one entry whose key the shape renames, drops when null, or nests a shape under;
    /// `at` is where its key starts, ends, and its value starts. Returns the index past the value.
    fn entry(
        &mut self,
        open: usize,
        renames: &mut [(bool, Option<Range<usize>>)],
        (key_start, key_end, start): (usize, usize, usize),
        depth: usize,
        key: &Key,
        shape: &Shape,
    ) -> Result<usize> {
        let b = self.b;
        let mut skip = false;
        for step in &key.steps {
            match *step {
                Step::Target(r) => {
                    renames[r].0 = true;
                    if let Some(range) = renames[r].1.take() {
                        unwrite(self.out, open, renames, range);
                    }
                }
                Step::Source(r) => {
                    skip = renames[r].0;
                    // The same source key again: its last copy is the one kept (as JSON parsers
                    // that keep a repeated key's last value read it), and a target after it
                    // drops that one, so the output never holds the renamed key twice.
                    if let Some(range) = renames[r].1.take().filter(|_| !skip) {
                        unwrite(self.out, open, renames, range);
                    }
                }
            }
        }
        if skip {
            return skip_value(b, start, depth);
        }
        let entry_start = self.out.len();
        if entry_start > open {
            self.out.push(b',');
        }
        match &key.renamed_to {
            Some(name) => write_str(self.out, name),
            None => self.out.extend_from_slice(&b[key_start..key_end]),
        }
        self.out.push(b':');
        let end = self.value(start, depth, key, shape)?;
        if key.omit_null && &b[start..end] == b"null" {
            self.out.truncate(entry_start);
        } else if let Some(Step::Source(r)) = key
            .steps
            .iter()
            .rev()
            .find(|s| matches!(s, Step::Source(_)))
        {
            renames[*r].1 = Some(entry_start..self.out.len());
        }
        Ok(end)
    }

    /// Writes the value at `start` of `key`, as the shape says; returns the index past it.
    fn value(&mut self, start: usize, depth: usize, key: &Key, shape: &Shape) -> Result<usize> {
        let b = self.b;
        let field = shape.field(key);
        match (field, b.get(start)) {
            (Field::Array(element), Some(b'[')) => {
                return self.array(start, depth + 1, key, element)
            }
            (Field::Object(inner), Some(b'{')) => return self.object(start, depth + 1, inner),
            (Field::Typed(ty), Some(_)) => {
                let (end, edit) = self.typed(start, depth, ty, key)?;
                self.apply(edit, start, end);
                return Ok(end);
            }
            _ => {}
        }
        let end = skip_value(b, start, depth)?;
        let value = &b[start..end];
        let expected = match field {
            Field::Array(_) if value != b"null" => Some("array"),
            Field::Object(_) if value != b"null" => Some("object"),
            _ => None,
        };
        if let Some(expected) = expected {
            super::mismatch(&mut self.mismatches, key.final_name(), expected);
        }
        self.out.extend_from_slice(value);
        Ok(end)
    }

    /// Reads the value of a typed field and says how to write it as `ty`: as it is where it fits
    /// (or where it cannot be made to fit exactly: counted), or changed. `null` fits any type: it
    /// means "no value", not a wrong one.
    fn typed(
        &mut self,
        start: usize,
        depth: usize,
        ty: FieldType,
        key: &Key,
    ) -> Result<(usize, Edit)> {
        let b = self.b;
        let first = b.get(start).copied().unwrap_or_default();
        let end = match first {
            // Inlined here: most values of a page are typed strings.
            b'"' => scan_string(b, start)?.0,
            b'-' | b'0'..=b'9' => number(b, start)?,
            _ => skip_value(b, start, depth)?,
        };
        let value = &b[start..end];
        let edit = match (ty, first) {
            (_, b'n') | (FieldType::String, b'"') => Edit::Keep,
            (FieldType::Integer, b'-' | b'0'..=b'9') if is_integer(value) => Edit::Keep,
            // A number's text goes into the string as it came: exact digits, no float on the way.
            (FieldType::String, b'-' | b'0'..=b'9') => Edit::Quote,
            (FieldType::Integer, b'"') if is_integer(&value[1..value.len() - 1]) => Edit::Unquote,
            _ => {
                super::mismatch(&mut self.mismatches, key.final_name(), ty.name());
                Edit::Keep
            }
        };
        Ok((end, edit))
    }

    /// Writes the value at `start..end` as `edit` says.
    fn apply(&mut self, edit: Edit, start: usize, end: usize) {
        let value = &self.b[start..end];
        match edit {
            Edit::Keep | Edit::Other => self.out.extend_from_slice(value),
            Edit::Quote => {
                self.out.push(b'"');
                self.out.extend_from_slice(value);
                self.out.push(b'"');
            }
            Edit::Unquote => {
                let digits = &value[1..value.len() - 1];
                let (sign, digits) = match digits.split_first() {
                    Some((b'-', rest)) => (&b"-"[..], rest),
                    _ => (&b""[..], digits),
                };
                let first = digits
                    .iter()
                    .position(|&d| d != b'0')
                    .unwrap_or(digits.len().saturating_sub(1));
                self.out.extend_from_slice(sign);
                self.out.extend_from_slice(&digits[first..]); // leading zeros dropped: valid JSON
            }
        }
    }

    /// Rewrites the array at `at` (a `[`), each element with `element`; returns the index past it.
    fn array(&mut self, at: usize, depth: usize, key: &Key, element: &Shape) -> Result<usize> {
        let b = self.b;
        self.out.push(b'[');
        let mut i = ws(b, at + 1);
        if b.get(i) == Some(&b']') {
            self.out.push(b']');
            return Ok(i + 1);
        }
        loop {
            let end = if b.get(i) == Some(&b'{') {
                self.object(i, depth + 1, element)?
            } else {
                let end = skip_value(b, i, depth)?;
                super::mismatch(&mut self.mismatches, key.final_name(), "array of objects");
                self.out.extend_from_slice(&b[i..end]);
                end
            };
            i = ws(b, end);
            match b.get(i) {
                Some(b',') => {
                    self.out.push(b',');
                    i = ws(b, i + 1);
                }
                Some(b']') => break,
                _ => return Err(Stop::Invalid),
            }
        }
        self.out.push(b']');
        Ok(i + 1)
    }
}

/// Removes an entry already written, and moves the recorded ranges that came after it. `open` is
/// where the object's first entry starts: an entry moved there loses its leading comma.
fn unwrite(
    out: &mut Vec<u8>,
    open: usize,
    renames: &mut [(bool, Option<Range<usize>>)],
    range: Range<usize>,
) {
    let (start, len) = (range.start, range.len());
    out.drain(range);
    let comma = start == open && out.get(open) == Some(&b',');
    if comma {
        out.remove(open);
    }
    for written in renames.iter_mut().filter_map(|(_, w)| w.as_mut()) {
        if written.start >= start {
            let shift = len + usize::from(comma);
            let new_start = (written.start - len)
                .saturating_sub(usize::from(comma))
                .max(start);
            *written = new_start..written.end - shift;
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Escaping a `&str` into a `Vec` cannot fail; fall back to the empty key rather than panic.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}
