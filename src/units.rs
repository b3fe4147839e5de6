//! Durations and sizes as the config writes them (`3s`, `64MiB`), with errors that say what is
//! accepted, with an example: an operator who wrote `"3"` or `"64 megs"` learns the fix.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::de::{self, Deserializer, Visitor};

const DURATION: &str = "a duration such as 3s, 250ms or 1m";
const SIZE: &str = "a size such as 64MiB or 512KiB";

/// A humantime duration (`250ms`, `3s`, `1m`, `1h 30m`).
pub fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct Expect;
    impl Visitor<'_> for Expect {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(DURATION)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim())
                .map_err(|_| E::custom(format!("expected {DURATION}, got \"{text}\"")))
        }
    }
    de.deserialize_str(Expect)
}

/// A byte size: `64MiB`, `512KiB`, `12MB`, or a number of bytes.
pub fn size<'de, D: Deserializer<'de>>(de: D) -> Result<ByteSize, D::Error> {
    struct Expect;
    impl Visitor<'_> for Expect {
        type Value = ByteSize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(SIZE)
        }
        fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
            Ok(ByteSize::b(bytes))
        }
        fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
            u64::try_from(bytes)
                .map(ByteSize::b)
                .map_err(|_| E::custom(format!("expected {SIZE}, got {bytes}")))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
            text.trim()
                .parse()
                .map_err(|_| E::custom(format!("expected {SIZE}, got \"{text}\"")))
        }
    }
    de.deserialize_any(Expect)
}

/// An optional [`duration`] (use with `#[serde(default)]`).
pub fn option_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    duration(de).map(Some)
}

/// An optional [`size`] (use with `#[serde(default)]`).
pub fn optional_size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<ByteSize>, D::Error> {
    size(de).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Units {
        #[serde(default, deserialize_with = "duration")]
        wait: Duration,
        #[serde(default, deserialize_with = "size")]
        bytes: ByteSize,
    }

    fn parse(text: &str) -> Result<Units, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.message().to_owned())
    }

    #[test]
    fn accepted_forms_parse() {
        for (text, expected) in [
            ("wait = \"3s\"", Duration::from_secs(3)),
            ("wait = \"250ms\"", Duration::from_millis(250)),
            ("wait = \" 1m \"", Duration::from_secs(60)),
            ("wait = \"1h 30m\"", Duration::from_secs(5400)),
        ] {
            assert_eq!(parse(text).unwrap().wait, expected, "{text}");
        }
        for (text, expected) in [
            ("bytes = \"64MiB\"", 64 << 20),
            ("bytes = \"512 KiB\"", 512 << 10),
            ("bytes = \"12MB\"", 12_000_000),
            ("bytes = 1024", 1024),
            ("bytes = \"1024\"", 1024),
        ] {
            assert_eq!(parse(text).unwrap().bytes.as_u64(), expected, "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_accepted_with_an_example() {
        for (text, expected) in [
            (
                "wait = \"3\"",
                "expected a duration such as 3s, 250ms or 1m, got \"3\"",
            ),
            (
                "wait = 3",
                "invalid type: integer `3`, expected a duration such as 3s, 250ms or 1m",
            ),
            (
                "bytes = \"64 megs\"",
                "expected a size such as 64MiB or 512KiB, got \"64 megs\"",
            ),
            (
                "bytes = -1",
                "expected a size such as 64MiB or 512KiB, got -1",
            ),
            (
                "bytes = true",
                "invalid type: boolean `true`, expected a size such as 64MiB or 512KiB",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err(), expected, "{text}");
        }
    }
}
