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

/// The one-load key read agrees with the general scan wherever it answers, and answers for every
/// plain key of up to fifteen bytes with sixteen bytes after its opening quote.
#[test]
fn short_keys_read_as_the_general_scan_reads_them() {
    let keys = [
        "",
        "a",
        "taskId",
        "createTime",
        "abcdefgh",
        "abcdefghi",
        "abcdefghijklmno",
        "abcdefghijklmnop",
        "abcdefghijklmnopq",
        "a\\\"b",
        "ab\\u0041",
        "a\tb",
        "é",
        "x\u{7f}",
    ];
    for key in keys {
        for tail in [":1,\"zzzzzzzzzzzzzzzzzz\":2}", ":1}", ""] {
            let text = format!("\"{key}\"{tail}");
            let b = text.as_bytes();
            let general = scan_string(b, 0);
            let plain = general.is_ok_and(|(_, escaped)| !escaped) && key.len() <= 15;
            match short_key(b, 0) {
                Some((len, words)) => {
                    assert_eq!(general, Ok((len + 2, false)), "{text:?}");
                    let mut bytes = [0u8; 16];
                    bytes[..len].copy_from_slice(&b[1..1 + len]);
                    let expected = u128::from_le_bytes(bytes);
                    assert_eq!(
                        words,
                        [expected as u64, (expected >> 64) as u64],
                        "{text:?}"
                    );
                }
                None => assert!(!plain || b.len() < 17, "{text:?}: a plain short key missed"),
            }
        }
    }
    assert_eq!(short_key(b"x\"a\"", 0), None, "not at a quote");
}
