//! Fuzzing with seed corpora (`fuzz/corpus/<target>/`): every seed, then random mutations of
//! the seeds, through the query parser and key canonicalizer, the normalizer, and the signer's
//! canonical request. Invariants: no panic; canonicalizing twice changes nothing; equal queries
//! give equal keys; valid JSON in gives valid JSON out. CI runs a bounded number of cases;
//! `fuzz/run.sh` runs many more (`PROPTEST_CASES`).

use std::path::PathBuf;

use koodrive_gateway::auth::sign;
use koodrive_gateway::cache::TaskListQuery;
use koodrive_gateway::normalize::{self, Outcome, Rule};
use proptest::prelude::*;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// A seed with a few random edits: byte flips, insertions of interesting bytes, truncation.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let corpus = seeds(target);
    let interesting: &[u8] = b"%&=,+{}[]\":0123456789-.eE\\\x00\xff";
    (
        0..corpus.len(),
        proptest::collection::vec((any::<usize>(), 0..4u8, any::<u8>()), 0..8),
    )
        .prop_map(move |(pick, edits)| {
            let mut data = corpus[pick].clone();
            for (at, kind, byte) in edits {
                let at = if data.is_empty() {
                    0
                } else {
                    at % (data.len() + 1)
                };
                match kind {
                    0 if at < data.len() => data[at] = byte,
                    1 => data.insert(at, interesting[byte as usize % interesting.len()]),
                    2 if at < data.len() => {
                        data.remove(at);
                    }
                    _ => data.truncate(at),
                }
            }
            data
        })
}

fn check_query(raw: &[u8]) {
    let Ok(text) = std::str::from_utf8(raw) else {
        return;
    };
    if let Ok(query) = TaskListQuery::parse(Some(text)) {
        let canonical = query.canonical();
        let again = TaskListQuery::parse(Some(&canonical)).expect("a canonical query parses");
        assert_eq!(
            again.canonical(),
            canonical,
            "canonicalizing twice changed {text:?}"
        );
        assert_eq!(again, query, "the canonical form means the same query");
    }
}

fn check_normalize(raw: &[u8]) {
    let _ = normalize::normalize_error_body(raw, true);
    match normalize::normalize_body(&Rule::task_list(), raw) {
        Outcome::Normalized { body, .. } => {
            serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON out");
            assert!(
                serde_json::from_slice::<serde_json::Value>(raw).is_ok(),
                "normalized invalid JSON"
            );
        }
        Outcome::PassThrough(_) => {}
    }
}

fn check_sign(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split('\n');
    let (method, path, query) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next(),
    );
    let headers = [
        ("host", "h"),
        ("x-date", "20240909T033325Z"),
        ("x-user-id", "1"),
    ];
    let input = sign::SignInput {
        method,
        path,
        query,
        headers: &headers,
        payload_sha256: sign::EMPTY_PAYLOAD_SHA256,
    };
    let canonical = sign::canonical_request(&input);
    assert_eq!(canonical, sign::canonical_request(&input), "deterministic");
    let query_line = canonical.split('\n').nth(2).unwrap();
    assert_eq!(
        sign::canonical_query(Some(query_line)),
        query_line,
        "canonical query is a fixed point"
    );
    assert_eq!(sign::signature(b"k", &input).len(), 64);
}

#[test]
fn every_seed_holds_the_invariants() {
    seeds("query").iter().for_each(|s| check_query(s));
    seeds("normalize").iter().for_each(|s| check_normalize(s));
    seeds("sign").iter().for_each(|s| check_sign(s));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_queries(raw in mutated("query")) {
        check_query(&raw);
    }

    #[test]
    fn mutated_bodies(raw in mutated("normalize")) {
        check_normalize(&raw);
    }

    #[test]
    fn mutated_sign_inputs(raw in mutated("sign")) {
        check_sign(&raw);
    }
}
