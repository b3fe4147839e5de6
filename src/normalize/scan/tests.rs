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
