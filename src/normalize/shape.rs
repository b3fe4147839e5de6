//! A compiled shape: what to do with one JSON object's keys (renames, types, nulls, nested
//! shapes), with every key it names in a small open-addressed table, so that the rewriter looks
//! each key of a body up once.

/// The documented type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
        }
    }
}

/// A compiled [`RawShape`].
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub(super) rename: Vec<(String, String)>,
    pub(super) omit_null: Vec<String>,
    pub(super) types: Vec<(String, FieldType)>,
    pub(super) arrays: Vec<(String, Shape)>,
    pub(super) objects: Vec<(String, Shape)>,
    /// Every key the shape names, with all it says about that key: one lookup per key of a body.
    keys: Vec<Key>,
    /// An open-addressed table over `keys`: each key's length, first sixteen bytes and index.
    slots: Vec<Option<Slot>>,
}

/// What a shape says about one field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field<'a> {
    Array(&'a Shape),
    Object(&'a Shape),
    Typed(FieldType),
    Other,
}

/// A rename step a key goes through, in the order the renames are listed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// The key is rename `r`'s target: the documented key, which wins over the renamed one.
    Target(usize),
    /// The key is rename `r`'s source: it is written under the target's name.
    Source(usize),
}

/// One key a shape names, compiled.
#[derive(Debug, Clone)]
pub(super) struct Key {
    /// The key as it appears in a body (decoded).
    name: Box<[u8]>,
    /// The rename steps, and the name the key ends up with (`name` unless renamed).
    pub(super) steps: Vec<Step>,
    pub(super) renamed_to: Option<String>,
    /// What the shape says about the final name.
    pub(super) omit_null: bool,
    field: FieldIndex,
}

#[derive(Debug, Clone, Copy)]
enum FieldIndex {
    Array(usize),
    Object(usize),
    Typed(FieldType),
    Other,
}

impl Shape {
    pub(super) fn new(
        rename: Vec<(String, String)>,
        omit_null: Vec<String>,
        types: Vec<(String, FieldType)>,
        arrays: Vec<(String, Shape)>,
        objects: Vec<(String, Shape)>,
    ) -> Shape {
        let mut shape = Shape {
            rename,
            omit_null,
            types,
            arrays,
            objects,
            keys: Vec::new(),
            slots: Vec::new(),
        };
        let mut names: Vec<&str> = Vec::new();
        let all = shape.rename.iter().flat_map(|(from, to)| [from, to]);
        let all = all
            .chain(&shape.omit_null)
            .chain(shape.types.iter().map(|(f, _)| f))
            .chain(shape.arrays.iter().map(|(f, _)| f))
            .chain(shape.objects.iter().map(|(f, _)| f));
        for name in all {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let keys: Vec<Key> = names.iter().map(|name| shape.compile_key(name)).collect();
        // At most half full, so a probe ends at an empty slot soon.
        let mut slots = vec![None; (keys.len() * 2).next_power_of_two().max(2)];
        let mask = slots.len() - 1;
        for (index, key) in keys.iter().enumerate() {
            let (len, words) = (key.name.len(), words(&key.name));
            let mut slot = hash(len, words[0]) & mask;
            while slots[slot].is_some() {
                slot = (slot + 1) & mask;
            }
            slots[slot] = Some(Slot { len, words, index });
        }
        shape.slots = slots;
        shape.keys = keys;
        shape
    }

    /// Follows the renames as they are listed (a key may be renamed more than once).
    fn compile_key(&self, name: &str) -> Key {
        let mut steps = Vec::new();
        let mut current = name;
        for (r, (from, to)) in self.rename.iter().enumerate() {
            if current == to {
                steps.push(Step::Target(r));
            } else if current == from {
                steps.push(Step::Source(r));
                current = to;
            }
        }
        let field = if let Some(i) = self.arrays.iter().position(|(f, _)| f == current) {
            FieldIndex::Array(i)
        } else if let Some(i) = self.objects.iter().position(|(f, _)| f == current) {
            FieldIndex::Object(i)
        } else if let Some((_, ty)) = self.types.iter().find(|(f, _)| f == current) {
            FieldIndex::Typed(*ty)
        } else {
            FieldIndex::Other
        };
        Key {
            name: name.as_bytes().into(),
            steps,
            renamed_to: (current != name).then(|| current.to_owned()),
            omit_null: self.omit_null.iter().any(|f| f == current),
            field,
        }
    }

    /// What the shape says about `name` (a key as decoded from a body), if anything.
    pub(super) fn key(&self, name: &[u8]) -> Option<&Key> {
        self.key_in(name, name.len())
    }

    /// [`Shape::key`] for the key that is the first `len` bytes of `text`: when `text` goes on past
    /// the key (a body does, with at least the closing quote), its first sixteen bytes are read in
    /// one load.
    pub(super) fn key_in(&self, text: &[u8], len: usize) -> Option<&Key> {
        let name = text.get(..len)?;
        // The sixteen bytes in one load where the text goes on far enough (a key is followed by
        // at least its closing quote), the bytes past the key masked off.
        let words = match text.first_chunk::<16>() {
            Some(chunk) if (1..=16).contains(&len) => {
                let all = u128::from_le_bytes(*chunk) & (u128::MAX >> (128 - 8 * len));
                [all as u64, (all >> 64) as u64]
            }
            _ => words(name),
        };
        self.key_words(name, words)
    }

    /// [`Shape::key_in`] for a key already read: `name` and its first sixteen bytes as two words
    /// (the bytes past it zeroed).
    #[inline(always)]
    pub(super) fn key_words(&self, name: &[u8], words: [u64; 2]) -> Option<&Key> {
        let len = name.len();
        let mask = self.slots.len().wrapping_sub(1);
        let mut slot = hash(len, words[0]) & mask;
        while let Some(&Some(entry)) = self.slots.get(slot) {
            // Sixteen bytes and the length decide it for short keys; longer ones compare the rest.
            if entry.len == len && entry.words == words {
                let key = self.keys.get(entry.index)?;
                if len <= 16 || key.name.get(16..) == name.get(16..) {
                    return Some(key);
                }
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// The field a compiled key ends up as.
    pub(super) fn field(&self, key: &Key) -> Field<'_> {
        match key.field {
            FieldIndex::Array(i) => self
                .arrays
                .get(i)
                .map_or(Field::Other, |(_, s)| Field::Array(s)),
            FieldIndex::Object(i) => self
                .objects
                .get(i)
                .map_or(Field::Other, |(_, s)| Field::Object(s)),
            FieldIndex::Typed(ty) => Field::Typed(ty),
            FieldIndex::Other => Field::Other,
        }
    }
}

impl Key {
    /// Neither renamed nor dropped: only its value's type may change.
    pub(super) fn plain(&self) -> bool {
        self.steps.is_empty() && !self.omit_null
    }

    /// The name the key is written under.
    pub(super) fn final_name(&self) -> &str {
        match &self.renamed_to {
            Some(to) => to,
            None => std::str::from_utf8(&self.name).unwrap_or_default(),
        }
    }
}

/// Where a key's probe starts.
fn hash(len: usize, head: u64) -> usize {
    let mixed = (head ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 40) as usize
}

/// A key in [`Shape`]'s table: keys up to sixteen bytes (all of KooDrive's) are told apart by
/// their length and two words, without a byte comparison.
#[derive(Debug, Clone, Copy)]
struct Slot {
    len: usize,
    words: [u64; 2],
    index: usize,
}

/// Up to the first sixteen bytes of a key, as two numbers: with its length, most keys differ here.
fn words(name: &[u8]) -> [u64; 2] {
    let word = |bytes: &[u8]| {
        let bytes = bytes.iter().take(8).rev();
        bytes.fold(0, |word, &byte| word << 8 | u64::from(byte))
    };
    [word(name), word(name.get(8..).unwrap_or_default())]
}

/// Reads the key at `i` (its opening `"`): past its closing quote, whether it has escapes, and what
/// the shape says about it. Most keys are short and plain: read and looked up from one load.
#[inline(always)]
pub(super) fn read_key<'s>(
    shape: &'s Shape,
    b: &[u8],
    i: usize,
) -> super::scan::Result<(usize, bool, Option<&'s Key>)> {
    if let Some((len, words)) = super::scan::short_key(b, i) {
        let name = b.get(i + 1..i + 1 + len).unwrap_or_default();
        return Ok((i + len + 2, false, shape.key_words(name, words)));
    }
    let (end, escaped) = super::scan::scan_string(b, i)?;
    Ok((end, escaped, lookup(shape, b, i, end - i, escaped)))
}

/// What the shape says about a key (with its quotes), decoding it only if it has escapes.
pub(super) fn lookup<'s>(
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::normalize::rules::typed;

    #[test]
    fn keys_are_found_by_their_whole_name() {
        let names = [
            "createTime",
            "createTimeX",
            "createTimf",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqrstuvwxyz",
            "",
            "é",
        ];
        let shape = Shape::new(
            vec![("old".into(), "createTime".into())],
            Vec::new(),
            typed(FieldType::String, &names),
            Vec::new(),
            Vec::new(),
        );
        for name in names.iter().chain(&["old"]) {
            let key = shape.key(name.as_bytes()).expect(name);
            assert_eq!(&*key.name, name.as_bytes());
            // In a body the key is followed by its closing quote and more.
            let text = format!("{name}\":1,\"zzzzzzzz\":2}}");
            let key = shape.key_in(text.as_bytes(), name.len()).expect(name);
            assert_eq!(&*key.name, name.as_bytes());
        }
        for other in [
            "createTim",
            "createTimeY",
            "b",
            "abcdefgi",
            "abcdefghi",
            "abcdefghijklmnoq",
            "abcdefghijklmnopr",
            "abcdefghijklmnopqrstuvwxyZ",
            "ol",
            "olds",
        ] {
            assert!(shape.key(other.as_bytes()).is_none(), "{other}");
            let text = format!("{other}\"}}");
            assert!(
                shape.key_in(text.as_bytes(), other.len()).is_none(),
                "{other}"
            );
        }
        let old = shape.key(b"old").unwrap();
        assert_eq!(old.final_name(), "createTime");
        assert!(matches!(shape.field(old), Field::Typed(FieldType::String)));
    }
}
