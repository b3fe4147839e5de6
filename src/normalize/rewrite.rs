//! Applies a [`Shape`] to JSON text without building a `serde_json::Value` tree.
//!
//! Building the tree (a `String` per key and number, an `IndexMap` per object) costs ~4x the budget
//! for a 100-task page, so this module copies the bytes through and rewrites only the fields the
//! rule names. It expects text that serde_json has already accepted as JSON, and never recurses on
//! the body's nesting: only on the rule's, which the operator bounds.

use std::borrow::Cow;
use std::ops::Range;

use super::rules::{Field, FieldType, Shape};

/// Deeper than this is refused, as serde_json refuses it when parsing into a tree.
const MAX_DEPTH: usize = 128;

/// Why the text could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    TooDeep,
}

/// Rewrites the object that starts at `at` into `out`; returns the number of type mismatches.
pub(super) fn object(
    text: &str,
    at: usize,
    shape: &Shape,
    out: &mut Vec<u8>,
) -> Result<usize, Stop> {
    let mut mismatches = 0;
    rewrite_object(text, at, 1, shape, out, &mut mismatches)?;
    Ok(mismatches)
}

/// Rewrites the object at `at` (a `{`), nested `depth` deep, in one pass; returns the index past it.
fn rewrite_object(
    text: &str,
    at: usize,
    depth: usize,
    shape: &Shape,
    out: &mut Vec<u8>,
    mismatches: &mut usize,
) -> Result<usize, Stop> {
    let b = text.as_bytes();
    let open = out.len();
    out.push(b'{');
    // Per rename: whether its target was seen, and where the renamed entry was written.
    let mut renames: Vec<(bool, Option<Range<usize>>)> = vec![(false, None); shape.rename.len()];
    let mut i = ws(b, at + 1);
    while b.get(i) == Some(&b'"') {
        let key_end = skip_string(b, i);
        let key = text.get(i..key_end).unwrap_or_default();
        let start = ws(b, ws(b, key_end) + 1); // past the ':'
        let decoded = decode_key(key);
        let mut name: &str = &decoded;
        let mut renamed = false;
        let mut skip = false;
        for (r, (from, to)) in shape.rename.iter().enumerate() {
            if name == to.as_str() {
                // The documented key wins over a renamed one written earlier.
                renames[r].0 = true;
                if let Some(range) = renames[r].1.take() {
                    unwrite(out, &mut renames, range);
                }
            } else if name == from.as_str() {
                skip = renames[r].0;
                renamed = true;
                name = to;
            }
        }
        let entry_start = out.len();
        let end = if skip {
            skip_value(b, start, depth)?
        } else {
            out.push(b',');
            match renamed {
                true => write_str(out, name),
                false => out.extend_from_slice(key.as_bytes()),
            }
            out.push(b':');
            let end = rewrite_value(text, start, depth, name, shape, out, mismatches)?;
            if &b[start..end] == b"null" && shape.omit_null.iter().any(|f| f == name) {
                out.truncate(entry_start);
            }
            end
        };
        if renamed && !skip {
            if let Some((_, (_, written))) = shape
                .rename
                .iter()
                .zip(&mut renames)
                .find(|((_, to), _)| to == name)
            {
                *written = Some(entry_start..out.len());
            }
        }
        i = ws(b, end);
        if b.get(i) == Some(&b',') {
            i = ws(b, i + 1);
        }
    }
    if out.get(open + 1) == Some(&b',') {
        out.remove(open + 1); // every entry was written with a leading comma
    }
    out.push(b'}');
    Ok(i + 1)
}

/// Removes an entry already written, and moves the recorded ranges that came after it.
fn unwrite(out: &mut Vec<u8>, renames: &mut [(bool, Option<Range<usize>>)], range: Range<usize>) {
    let (start, len) = (range.start, range.len());
    out.drain(range);
    for written in renames.iter_mut().filter_map(|(_, w)| w.as_mut()) {
        if written.start > start {
            *written = written.start - len..written.end - len;
        }
    }
}

/// Writes the value at `start` of the field `name`, as the shape says; returns the index past it.
fn rewrite_value(
    text: &str,
    start: usize,
    depth: usize,
    name: &str,
    shape: &Shape,
    out: &mut Vec<u8>,
    mismatches: &mut usize,
) -> Result<usize, Stop> {
    let b = text.as_bytes();
    let field = shape.field(name);
    match field {
        Field::Array(element) if b.get(start) == Some(&b'[') => {
            return rewrite_array(text, start, depth + 1, name, element, out, mismatches);
        }
        Field::Object(inner) if b.get(start) == Some(&b'{') => {
            return rewrite_object(text, start, depth + 1, inner, out, mismatches);
        }
        _ => {}
    }
    let end = skip_value(b, start, depth)?;
    let value = &b[start..end];
    let expected = match field {
        Field::Typed(ty) if coerce(value, ty, out) => return Ok(end),
        Field::Typed(ty) => Some(ty.name()),
        Field::Array(_) if value != b"null" => Some("array"),
        Field::Object(_) if value != b"null" => Some("object"),
        _ => None,
    };
    if let Some(expected) = expected {
        super::mismatch(mismatches, name, expected);
    }
    out.extend_from_slice(value);
    Ok(end)
}

/// Rewrites the array at `at` (a `[`), each element with `element`; returns the index past it.
fn rewrite_array(
    text: &str,
    at: usize,
    depth: usize,
    name: &str,
    element: &Shape,
    out: &mut Vec<u8>,
    mismatches: &mut usize,
) -> Result<usize, Stop> {
    let b = text.as_bytes();
    out.push(b'[');
    let mut i = ws(b, at + 1);
    let mut first = true;
    while i < b.len() && b[i] != b']' {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        let end = if b[i] == b'{' {
            rewrite_object(text, i, depth + 1, element, out, mismatches)?
        } else {
            let end = skip_value(b, i, depth)?;
            super::mismatch(mismatches, name, "array of objects");
            out.extend_from_slice(&b[i..end]);
            end
        };
        i = ws(b, end);
        if b.get(i) == Some(&b',') {
            i = ws(b, i + 1);
        }
    }
    out.push(b']');
    Ok(i + 1)
}

/// Writes `value` as `ty` where that is exact; false (and nothing written) if it does not fit.
/// `null` fits any type: it means "no value", not a wrong one.
fn coerce(value: &[u8], ty: FieldType, out: &mut Vec<u8>) -> bool {
    let fits = match (ty, value.first()) {
        (_, Some(b'n')) | (FieldType::String, Some(b'"')) => true,
        (FieldType::Integer, Some(b'-' | b'0'..=b'9')) => is_integer(value),
        // A number's text goes into the string as it came: exact digits, no float on the way.
        (FieldType::String, Some(b'-' | b'0'..=b'9')) => {
            out.push(b'"');
            out.extend_from_slice(value);
            out.push(b'"');
            return true;
        }
        (FieldType::Integer, Some(b'"')) => {
            let digits = &value[1..value.len() - 1];
            if !is_integer(digits) {
                return false;
            }
            let (sign, digits) = match digits.split_first() {
                Some((b'-', rest)) => (&b"-"[..], rest),
                _ => (&b""[..], digits),
            };
            let first = digits
                .iter()
                .position(|&d| d != b'0')
                .unwrap_or(digits.len() - 1);
            out.extend_from_slice(sign);
            out.extend_from_slice(&digits[first..]); // leading zeros dropped: valid JSON
            return true;
        }
        _ => false,
    };
    if fits {
        out.extend_from_slice(value);
    }
    fits
}

/// `-?[0-9]+`, any length.
fn is_integer(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Escaping a `&str` into a `Vec` cannot fail; fall back to the empty key rather than panic.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// A key (with its quotes) as text; only keys with escapes are decoded, into a new string.
fn decode_key(key: &str) -> Cow<'_, str> {
    let inner = key.get(1..key.len() - 1).unwrap_or_default();
    match inner.contains('\\') {
        false => Cow::Borrowed(inner),
        true => Cow::Owned(serde_json::from_str::<String>(key).unwrap_or_default()),
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// From an opening `"` to just past its closing one.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while let Some(rest) = b.get(i..) {
        match find_quote_or_backslash(rest) {
            Some(n) if rest[n] == b'"' => return i + n + 1,
            Some(n) => i += n + 2, // past the escaped character
            None => break,
        }
    }
    b.len()
}

/// The first `"` or `\\`, eight bytes at a time (strings are most of a body's bytes).
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest high bit of `(x - ONES) & !x & HIGHS` marks the first zero byte of `x`.
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default());
        let found = zero_byte(word ^ (ONES * u64::from(b'"')))
            | zero_byte(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\');
    rest.map(|n| offset + n)
}

/// Past the value at `i`, with a loop (not recursion) over its nesting.
fn skip_value(b: &[u8], mut i: usize, depth: usize) -> Result<usize, Stop> {
    let mut level = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_string(b, i),
            b'{' | b'[' => {
                level += 1;
                if depth + level > MAX_DEPTH {
                    return Err(Stop::TooDeep);
                }
                i += 1;
            }
            b'}' | b']' if level == 0 => return Ok(i),
            b'}' | b']' => {
                level -= 1;
                i += 1;
            }
            b',' | b' ' | b'\n' | b'\r' | b'\t' if level == 0 => return Ok(i),
            _ => i += 1,
        }
        if level == 0 && matches!(b.get(i - 1), Some(b'"' | b'}' | b']')) {
            return Ok(i);
        }
    }
    Ok(i)
}
