//! Checks JSON text and applies a [`Shape`] to it in one pass, without building a `serde_json::Value`.
//!
//! Building a tree (a `String` per key and number, an `IndexMap` per object) costs several times the
//! budget for a 100-task page, and so does validating with serde_json first and rewriting after. So
//! this module reads the bytes once: it checks the JSON grammar as strictly as serde_json does, copies
//! what the rule does not name, and rewrites only the fields it names. It never recurses on the
//! body's nesting (only on the rule's, which the operator bounds).

use std::ops::Range;

use super::rules::{Field, FieldType, Key, Shape, Step};

/// Deeper than this is refused, as serde_json refuses it when parsing into a tree (it takes 127
/// nested containers, not 128).
const MAX_DEPTH: usize = 127;

/// Why the text could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Not JSON: a grammar error, or trailing bytes after the value.
    Invalid,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

type Result<T> = std::result::Result<T, Stop>;

/// Rewrites the JSON document whose top-level object starts at `at` into `out`; returns the number
/// of type mismatches. Anything but whitespace after the object is an error.
pub(super) fn document(text: &[u8], at: usize, shape: &Shape, out: &mut Vec<u8>) -> Result<usize> {
    let mut rewriter = Rewriter {
        b: text,
        out,
        mismatches: 0,
    };
    let end = rewriter.object(at, 1, shape)?;
    match ws(text, end) == text.len() {
        true => Ok(rewriter.mismatches),
        false => Err(Stop::Invalid),
    }
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
            let (key_end, escaped) = scan_string(b, i)?;
            let colon = ws(b, key_end);
            expect(b, colon, b':')?;
            let start = ws(b, colon + 1);
            let compact = start == key_end + 1;
            let key = lookup(shape, b, key_start, key_end - key_start, escaped);
            // A key the shape does not name, or a typed value that needs no change, is kept.
            let (end, edit) = match key {
                None => (skip_value(b, start, depth)?, Edit::Keep),
                Some(key) if key.plain() => match shape.field(key) {
                    Field::Typed(ty) => self.typed(start, depth, ty, key)?,
                    _ => (start, Edit::Other),
                },
                Some(_) => (start, Edit::Other),
            };
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
            b'"' => string(b, start)?,
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

/// What the shape says about a key (with its quotes), decoding it only if it has escapes.
fn lookup<'s>(
    shape: &'s Shape,
    text: &[u8],
    at: usize,
    len: usize,
    escaped: bool,
) -> Option<&'s Key> {
    let key = text.get(at..at + len)?;
    if !escaped {
        return shape.key_in(text.get(at + 1..).unwrap_or_default(), len - 2);
    }
    let text = std::str::from_utf8(key).ok()?;
    let decoded = serde_json::from_str::<String>(text).ok()?;
    shape.key(decoded.as_bytes())
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

fn expect(b: &[u8], i: usize, byte: u8) -> Result<()> {
    match b.get(i) == Some(&byte) {
        true => Ok(()),
        false => Err(Stop::Invalid),
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// From an opening `"` to just past its closing one, checking escapes and control characters.
fn string(b: &[u8], i: usize) -> Result<usize> {
    scan_string(b, i).map(|(end, _)| end)
}

/// [`string`], and whether the string has escapes.
fn scan_string(b: &[u8], mut i: usize) -> Result<(usize, bool)> {
    expect(b, i, b'"')?;
    i += 1;
    let mut escaped = false;
    loop {
        let rest = b.get(i..).unwrap_or_default();
        let n = find_special(rest).ok_or(Stop::Invalid)?;
        i += n;
        match b[i] {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                    escaped = true;
                    i += 2;
                }
                Some(b'u') => {
                    escaped = true;
                    let hex = b.get(i + 2..i + 6).ok_or(Stop::Invalid)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(Stop::Invalid);
                    }
                    i += 6;
                }
                _ => return Err(Stop::Invalid),
            },
            _ => return Err(Stop::Invalid), // a control character
        }
    }
}

/// The first `"`, `\\` or control character, eight bytes at a time (strings are most of a body).
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest high bit of `(x - n * ONES) & !x & HIGHS` marks the first byte of `x` below `n`
    // (for n <= 0x80); with n = 1 that is the first zero byte.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
    rest.map(|n| offset + n)
}

/// Past a JSON number at `i`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn number(b: &[u8], mut i: usize) -> Result<usize> {
    let digits = |mut i: usize| {
        let from = i;
        // Eight digits at a time (ids are 19 digits), then one by one.
        while let Some(word) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            if !all_digits(u64::from_le_bytes(*word)) {
                break;
            }
            i += 8;
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        match i > from {
            true => Ok(i),
            false => Err(Stop::Invalid),
        }
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        _ => digits(i)?,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Ok(i)
}

/// Whether all eight bytes of `word` are ASCII digits: each high nibble is 3, and adding 6 to each
/// byte keeps it there (so the low nibble is at most 9).
fn all_digits(word: u64) -> bool {
    const HIGH_NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    const SIXES: u64 = 0x0606_0606_0606_0606;
    word & HIGH_NIBBLES == THREES && word.wrapping_add(SIXES) & HIGH_NIBBLES == THREES
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize> {
    match b.get(i..i + word.len()) == Some(word) {
        true => Ok(i + word.len()),
        false => Err(Stop::Invalid),
    }
}

/// Past the value at `i`, checked, inside a container nested `depth` deep. A loop over the value's
/// nesting (not recursion), with one bit per level saying whether it is an object.
fn skip_value(b: &[u8], mut i: usize, depth: usize) -> Result<usize> {
    let mut level = 0usize;
    let mut objects: u128 = 0;
    loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(b'"') => i = string(b, i)?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(&open @ (b'{' | b'[')) => {
                level += 1;
                if depth + level > MAX_DEPTH {
                    return Err(Stop::TooDeep);
                }
                let object = open == b'{';
                objects = objects << 1 | u128::from(object);
                i = ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    i += 1;
                    level -= 1;
                    objects >>= 1;
                } else {
                    if object {
                        i = member_key(b, i)?;
                    }
                    continue;
                }
            }
            _ => return Err(Stop::Invalid),
        }
        // A value ended at `i`: close containers until one has another element.
        loop {
            if level == 0 {
                return Ok(i);
            }
            i = ws(b, i);
            let object = objects & 1 == 1;
            match (b.get(i), object) {
                (Some(b','), _) => {
                    i = ws(b, i + 1);
                    if object {
                        i = member_key(b, i)?;
                    }
                    break;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    i += 1;
                    level -= 1;
                    objects >>= 1;
                }
                _ => return Err(Stop::Invalid),
            }
        }
    }
}

/// Past `"key" :` and the whitespace after it, at the start of the member's value.
fn member_key(b: &[u8], i: usize) -> Result<usize> {
    let colon = ws(b, string(b, i)?);
    expect(b, colon, b':')?;
    Ok(ws(b, colon + 1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn skims(text: &str) -> bool {
        let at = ws(text.as_bytes(), 0);
        skip_value(text.as_bytes(), at, 0).is_ok_and(|end| ws(text.as_bytes(), end) == text.len())
    }

    #[test]
    fn grammar_agrees_with_serde_json() {
        let cases = [
            "0",
            "-0",
            "1.5",
            "-1e10",
            "1E+2",
            "1e-2",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "--1",
            "\"\"",
            "\"a\\u00e9\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12G4\"",
            "\"a\nb\"",
            "\"\\/\"",
            "\"unterminated",
            "\"ends in backslash\\",
            "true",
            "tru",
            "nul",
            "falsey",
            "[]",
            "[ ]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            "{ }",
            "{\"a\":1}",
            "{\"a\" : 1 , \"b\":[{}]}",
            "{\"a\":}",
            "{\"a\" 1}",
            "{1:2}",
            "{\"a\":1,}",
            "{\"a\":1",
            "[[[]]]",
            "[[[]]",
            "[]]",
            "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
            "[\"a\",{\"b\":[true,false]}]",
            "",
            " ",
            "x",
        ];
        for text in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            assert_eq!(skims(text), serde, "{text:?}");
        }
    }

    #[test]
    fn eight_digits_at_a_time() {
        assert!(all_digits(u64::from_le_bytes(*b"01234567")));
        assert!(all_digits(u64::from_le_bytes(*b"99999999")));
        for byte in 0..=255u8 {
            let mut word = *b"12345678";
            word[5] = byte;
            assert_eq!(
                all_digits(u64::from_le_bytes(word)),
                byte.is_ascii_digit(),
                "{byte}"
            );
        }
    }

    #[test]
    fn special_bytes_are_found_in_any_lane() {
        for at in 0..20 {
            for special in [b'"', b'\\', 0x00, 0x1f] {
                let mut bytes = vec![b'a'; 20];
                bytes.extend_from_slice("é\u{7f}".as_bytes());
                bytes[at] = special;
                assert_eq!(find_special(&bytes), Some(at), "{special} at {at}");
            }
        }
        assert_eq!(find_special("aé\u{7f} ~".repeat(5).as_bytes()), None);
    }
}
