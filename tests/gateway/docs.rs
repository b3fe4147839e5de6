//! The repository stands on its own: its documents link only inside it, the KooDrive facts it relies
//! on are written down in `docs/` and agree with the code, and its license is the one it declares.

use std::path::{Path, PathBuf};

use koodrive_gateway::auth::sign::{self, SignInput};

use crate::support::{exchange, status_line, Mock, TestGateway};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the repository, but build output and git's own.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The targets of the inline links `[text](target)` in a Markdown text.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].to_string());
        }
    }
    targets
}

#[test]
fn every_markdown_link_resolves_to_a_file_inside_the_repository() {
    let root = root().canonicalize().unwrap();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.iter().any(|f| f.ends_with("README.md")));
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            let path = target.split('#').next().unwrap().trim();
            if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().unwrap().join(path);
            match resolved.canonicalize() {
                Ok(found) if found.starts_with(&root) => {}
                _ => bad.push(format!("{}: {target}", file.display())),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "links that leave the repository or lead nowhere: {bad:#?}"
    );
}

#[test]
fn the_readme_cites_the_koodrive_facts_written_in_docs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let first = readme.lines().find(|l| l.contains("KooDrive")).unwrap();
    assert!(first.contains("](docs/koodrive-api.md)"), "{first}");
    let docs = std::fs::read_to_string(root().join("docs/koodrive-api.md")).unwrap();
    let docs = docs.split_whitespace().collect::<Vec<_>>().join(" ");
    for fact in [
        "/koodrive/ose/v1/task/list",
        "/task/create",
        "/task/result",
        "/task/dstUserInfo/",
        "X-Date",
        "YYYYMMDDTHHMMSSZ",
        "X-Traceid",
        "58 characters",
        "taskListDtos",
        "error_code",
        "APIG.0308",
        "13000201",
    ] {
        assert!(
            docs.contains(fact),
            "docs/koodrive-api.md says nothing of {fact}"
        );
    }
}

/// The body of the first fenced block after `marker` in `text`.
fn fenced_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let from = &text[text.find(marker).unwrap()..];
    let open = from.find("```\n").unwrap() + 4;
    let body = &from[open..];
    &body[..body.find("```").unwrap()]
}

/// The first 64-hex-digit word after `marker` in `text`.
fn hex64_after(text: &str, marker: &str) -> String {
    let from = &text[text.find(marker).unwrap() + marker.len()..];
    from.split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64)
        .unwrap()
        .to_string()
}

#[test]
fn the_documented_signature_examples_are_what_the_signer_computes() {
    let docs = std::fs::read_to_string(root().join("docs/koodrive-api.md")).unwrap();
    let secret = b"example-app-secret";
    assert!(docs.contains("AppSecret `example-app-secret`"));
    let headers: &[(&str, &str)] = &[
        ("Host", "intl.myhuaweicloud-koodrive.com"),
        ("X-Date", "20240909T033325Z"),
        ("X-User-Id", "1505084218764547200"),
    ];

    let get = SignInput {
        method: "GET",
        path: "/koodrive/ose/v1/task/list",
        query: Some("taskType=0&status=2&status=1&pageSize=10&pageCursor="),
        headers,
        payload_sha256: sign::EMPTY_PAYLOAD_SHA256,
    };
    let documented = fenced_after(&docs, "has this\ncanonical request");
    assert_eq!(format!("{}\n", sign::canonical_request(&get)), documented);
    assert_eq!(
        sign::signature(secret, &get),
        hex64_after(&docs, "and the signature")
    );

    let body = br#"{"taskName":"t1","taskType":0}"#;
    assert!(docs.contains(r#"`{"taskName":"t1","taskType":0}`"#));
    let hash = sign::payload_hash(body);
    assert_eq!(hash, hex64_after(&docs, "the body hash"));
    let post = SignInput {
        method: "POST",
        path: "/koodrive/ose/v1/task/create",
        query: None,
        headers,
        payload_sha256: &hash,
    };
    let after_post = &docs[docs.find("the body hash").unwrap()..];
    assert_eq!(
        sign::signature(secret, &post),
        hex64_after(after_post, "signature")
    );
}

#[test]
fn the_license_file_is_the_license_cargo_toml_declares() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = std::fs::read_to_string(root().join("LICENSE"))
        .expect("Cargo.toml declares Apache-2.0, so the repository ships its text as LICENSE");
    assert!(license.contains("Apache License"));
    assert!(license.contains("Version 2.0, January 2004"));
    assert!(license.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
}

/// `curl --http2` offers `Upgrade: h2c` on an HTTP/1.1 request. The gateway answers it over
/// HTTP/1.1 (no 101), and the README says so and names the flag that does work.
#[tokio::test]
async fn an_h2c_upgrade_offer_is_answered_over_http1_as_the_readme_says() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let answer = exchange(
        &gw,
        b"GET /koodrive/ose/v1/files/x HTTP/1.1\r\nHost: gw\r\n\
          Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");
    let sent = mock.last();
    assert!(sent.header("upgrade").is_none());
    assert!(sent.header("http2-settings").is_none());

    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("### HTTP/2").unwrap()..];
    let section = &section[..section[3..].find("\n#").unwrap()];
    assert!(section.contains("--http2-prior-knowledge"), "{section}");
    assert!(section.contains("Upgrade: h2c"), "{section}");
}
