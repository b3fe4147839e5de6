//! KooDrive's top-level `code` as text, read on the rewriter's pass (or from a raw value), so the
//! cache policy need not read a page again to learn it.

use super::scan::is_integer;

/// KooDrive's top-level `code`, as text (`0` and `"0"` alike), as serde_json would read it from a
/// body: read on the way by the rewriter, or left [`Code::Unknown`] for the caller to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Code {
    /// Not read here.
    #[default]
    Unknown,
    /// The code, or `None` when there is none (absent, `null`, or not a string or a number).
    Known(Option<Box<str>>),
}

/// The code a raw JSON value (checked) reads as, where that is plain: a string without escapes,
/// an integer, a literal or a container. Escapes and fractions are left [`Code::Unknown`].
pub(crate) fn code_of(raw: &[u8]) -> Code {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Code::Unknown;
    };
    match raw.first() {
        Some(b'"') if !text.contains('\\') => text
            .get(1..text.len() - 1)
            .map_or(Code::Unknown, |s| Code::Known(Some(s.into()))),
        Some(b'-' | b'0'..=b'9') if is_integer(raw) => Code::Known(Some(text.into())),
        Some(b'n' | b't' | b'f' | b'{' | b'[') => Code::Known(None),
        _ => Code::Unknown,
    }
}
