//! The checked JSON scanner the rewriter stands on: whitespace, strings, numbers, literals and
//! whole values, each read as strictly as serde_json reads them, without building anything.

/// Deeper than this is refused, as serde_json refuses it when parsing into a tree (it takes 127
/// nested containers, not 128).
pub(super) const MAX_DEPTH: usize = 127;

/// Why the text could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Not JSON: a grammar error, or trailing bytes after the value.
    Invalid,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

pub(super) type Result<T> = std::result::Result<T, Stop>;

pub(super) fn expect(b: &[u8], i: usize, byte: u8) -> Result<()> {
    match b.get(i) == Some(&byte) {
        true => Ok(()),
        false => Err(Stop::Invalid),
    }
}

pub(super) fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// From an opening `"` to just past its closing one, checking escapes and control characters.
pub(super) fn string(b: &[u8], i: usize) -> Result<usize> {
    scan_string(b, i).map(|(end, _)| end)
}

/// [`string`], and whether the string has escapes. Inlined: it runs for every key and string of a
/// body, most of them a word or two long, where a call costs as much as the scan.
#[inline(always)]
pub(super) fn scan_string(b: &[u8], mut i: usize) -> Result<(usize, bool)> {
    expect(b, i, b'"')?;
    i += 1;
    let mut escaped = false;
    loop {
        i += find_special(b.get(i..).unwrap_or_default()).ok_or(Stop::Invalid)?;
        match b.get(i) {
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                i += escape_len(b, i)?;
            }
            _ => return Err(Stop::Invalid), // a control character
        }
    }
}

/// The first `"`, `\\` or control character, eight bytes at a time (strings are most of a body).
#[inline(always)]
pub(super) fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest high bit of `(x - n * ONES) & !x & HIGHS` marks the first byte of `x` below `n`
    // (for n <= 0x80); with n = 1 that is the first zero byte.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let mut offset = 0;
    while let Some(word) = bytes.get(offset..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*word);
        let found = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = bytes.get(offset..).unwrap_or_default();
    let rest = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
    rest.map(|n| offset + n)
}

/// A key of at most fifteen bytes without escapes at `i` (its opening `"`), read with its closing
/// quote in one sixteen-byte load: its length and its bytes as two little-endian words, the bytes
/// past it zeroed (as [`super::shape::Shape::key_in`] makes them). `None` for any other key, and
/// where fewer than sixteen bytes follow the quote: the general scan decides those, errors
/// included.
#[inline(always)]
pub(super) fn short_key(b: &[u8], i: usize) -> Option<(usize, [u64; 2])> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let chunk = b.get(i + 1..)?.first_chunk::<16>()?;
    let all = u128::from_le_bytes(*chunk);
    // As in `find_special`: the lowest high bit marks the first `"`, `\\` or control character.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let special = |x: u64| {
        below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20)
    };
    let (low, high) = (special(all as u64), special((all >> 64) as u64));
    let len = match (low, high) {
        (0, 0) => return None,
        (0, high) => 8 + high.trailing_zeros() as usize / 8,
        (low, _) => low.trailing_zeros() as usize / 8,
    };
    if chunk.get(len) != Some(&b'"') {
        return None;
    }
    let key = match len {
        0 => 0,
        _ => all & (u128::MAX >> (128 - 8 * len)),
    };
    Some((len, [key as u64, (key >> 64) as u64]))
}

/// Past a JSON number at `i`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub(super) fn number(b: &[u8], mut i: usize) -> Result<usize> {
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
pub(super) fn all_digits(word: u64) -> bool {
    const HIGH_NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    const SIXES: u64 = 0x0606_0606_0606_0606;
    word & HIGH_NIBBLES == THREES && word.wrapping_add(SIXES) & HIGH_NIBBLES == THREES
}

pub(super) fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize> {
    match b.get(i..i + word.len()) == Some(word) {
        true => Ok(i + word.len()),
        false => Err(Stop::Invalid),
    }
}

/// Past the value at `i`, checked, inside a container nested `depth` deep. A loop over the value's
/// nesting (not recursion), with one bit per level saying whether it is an object.
pub(super) fn skip_value(b: &[u8], mut i: usize, depth: usize) -> Result<usize> {
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
pub(super) fn member_key(b: &[u8], i: usize) -> Result<usize> {
    let colon = ws(b, string(b, i)?);
    expect(b, colon, b':')?;
    Ok(ws(b, colon + 1))
}

/// `-?[0-9]+`, any length.
pub(super) fn is_integer(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// The length of the escape at `i` (a backslash), checked.
pub(super) fn escape_len(b: &[u8], i: usize) -> Result<usize> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(2),
        Some(b'u') => {
            let hex = b.get(i + 2..i + 6).ok_or(Stop::Invalid)?;
            match hex.iter().all(u8::is_ascii_hexdigit) {
                true => Ok(6),
                false => Err(Stop::Invalid),
            }
        }
        _ => Err(Stop::Invalid),
    }
}

/// What [`top_level_member`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member<'a> {
    /// The text is one JSON object whose keys have no escapes, naming the member once: its value,
    /// as raw JSON text.
    Once(&'a [u8]),
    /// The text is one such object, without the member.
    Absent,
    /// Not JSON: serde_json refuses it too.
    Invalid,
    /// Not something this scan reads as serde_json would: not UTF-8, not an object, an escaped
    /// key, the member twice, nesting past the limit. The caller asks serde_json.
    Unsure,
}

/// The top-level member `name` of a JSON object, with the whole text checked as strictly as
/// serde_json checks it, without building anything: for reading one field of a body (KooDrive's
/// `code`) at the cost of a scan.
pub(crate) fn top_level_member<'a>(text: &'a [u8], name: &[u8]) -> Member<'a> {
    if std::str::from_utf8(text).is_err() {
        return Member::Unsure;
    }
    let mut i = ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return Member::Unsure;
    }
    let mut found = None;
    i = ws(text, i + 1);
    if text.get(i) != Some(&b'}') {
        loop {
            let Ok((key_end, escaped)) = scan_string(text, i) else {
                return Member::Invalid;
            };
            if escaped {
                return Member::Unsure;
            }
            let colon = ws(text, key_end);
            if text.get(colon) != Some(&b':') {
                return Member::Invalid;
            }
            let start = ws(text, colon + 1);
            let end = match skip_value(text, start, 1) {
                Ok(end) => end,
                Err(Stop::Invalid) => return Member::Invalid,
                Err(Stop::TooDeep) => return Member::Unsure,
            };
            if text.get(i + 1..key_end - 1) == Some(name) {
                if found.is_some() {
                    return Member::Unsure;
                }
                found = text.get(start..end);
            }
            i = ws(text, end);
            match text.get(i) {
                Some(b',') => i = ws(text, i + 1),
                Some(b'}') => break,
                _ => return Member::Invalid,
            }
        }
    }
    match (ws(text, i + 1) == text.len(), found) {
        (false, _) => Member::Invalid,
        (true, Some(value)) => Member::Once(value),
        (true, None) => Member::Absent,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
