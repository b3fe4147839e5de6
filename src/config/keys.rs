//! Every config key (`section.key`), read off the raw serde structs themselves, so that a key added
//! to them is known at once to the environment-override check and to the documentation test.
//!
//! serde's derived `Deserialize` names a struct's fields when it asks for one
//! (`deserialize_struct`). [`keys`] walks the tree by deserializing [`RawConfig`] from a probe
//! that, at each level, offers the one field on the path being explored and, at its end, notes
//! whether a struct (a section, whose fields are explored in turn) or a value (a key) was asked
//! for. The probe's answers are errors: only what was asked for is used.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::RawConfig;

/// Every key of the config file, `section.key`, in declaration order (`normalize.rules`, a list
/// of tables, is one key).
pub fn keys() -> Vec<String> {
    let mut keys = Vec::new();
    walk(&mut Vec::new(), &mut keys);
    keys
}

fn walk(path: &mut Vec<&'static str>, keys: &mut Vec<String>) {
    match probe(path) {
        Asked::Struct(fields) => {
            for field in fields {
                path.push(field);
                walk(path, keys);
                path.pop();
            }
        }
        Asked::Value => keys.push(path.join(".")),
    }
}

/// What deserializing the value at a path asked for.
#[derive(Debug)]
enum Asked {
    Struct(&'static [&'static str]),
    Value,
}

fn probe(path: &[&'static str]) -> Asked {
    let asked = RefCell::new(Asked::Value);
    // Always an error (the probe never gives a value): what matters is what was asked.
    let _ = RawConfig::deserialize(Probe {
        path,
        asked: &asked,
    });
    asked.into_inner()
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

struct Probe<'a> {
    /// The fields still to descend into.
    path: &'a [&'static str],
    asked: &'a RefCell<Asked>,
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.path.split_first() {
            None => {
                *self.asked.borrow_mut() = Asked::Struct(fields);
                Err(Stop)
            }
            Some((field, rest)) => visitor.visit_map(OneField {
                field: Some(field),
                value: Probe {
                    path: rest,
                    asked: self.asked,
                },
            }),
        }
    }

    // An optional section is looked through.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    // Anything else is a value: a key.
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// A map of one entry: the field on the path, with the probe as its value.
struct OneField<'a> {
    field: Option<&'static str>,
    value: Probe<'a>,
}

impl<'de, 'a> MapAccess<'de> for OneField<'a> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.field.take() {
            Some(field) => seed.deserialize(field.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Probe {
            path: self.value.path,
            asked: self.value.asked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_off_the_raw_structs() {
        let keys = keys();
        for key in [
            "server.listen",
            "server.max_header_bytes",
            "upstream.url",
            "upstream.breaker_cooldown",
            "auth.app_secret_file",
            "auth.override_client",
            "cache.ttl",
            "normalize.max_body",
            "normalize.rules",
            "admin.token",
            "log.level",
            "telemetry.service_name",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        // Only leaves: no section is a key.
        assert!(keys.iter().all(|k| k.contains('.')), "{keys:?}");
        assert!(!keys.iter().any(|k| k == "server"), "{keys:?}");
    }
}
