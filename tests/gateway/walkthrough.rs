//! Behaviour the README documents that the binary lacked, found by a hands-on walkthrough in the
//! sixth review round (fixed since).

use crate::support::{Mock, Reply, TestGateway, TASK_LIST};

/// README, "Errors the gateway makes": `503 GATEWAY_UPSTREAM_CIRCUIT_OPEN ... (with Retry-After)`.
/// Other routes carry it; the task list (whose fetch errors are wrapped for collapsed waiters)
/// answers the same 503 without it.
#[tokio::test]
async fn a_task_list_refused_by_an_open_breaker_carries_retry_after() {
    let mock = Mock::start(|_| Reply::json(503, r#"{"code":1,"msg":"down"}"#)).await;
    let overlay = r#"
        [upstream]
        breaker_failures = 1
        breaker_cooldown = "30s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    // One failure opens the breaker.
    assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 503);
    let read = gw.client.get("/koodrive/ose/v1/task/2").await;
    assert_eq!(
        read.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    assert!(
        read.headers.contains_key("retry-after"),
        "task read: {:?}",
        read.headers
    );

    let list = gw.client.get(&format!("{TASK_LIST}?pageSize=7")).await;
    assert_eq!(list.status, 503);
    assert_eq!(
        list.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    assert!(
        list.headers.contains_key("retry-after"),
        "the task list's circuit-open 503 has no Retry-After: {:?}",
        list.headers
    );
}

/// README, Metrics: "Every documented `reason` series exists from the start, at 0". The
/// documented reasons of `koodrive_gateway_normalize_fallbacks_total` are missing until the first
/// fallback (the family is not even in the exposition).
#[tokio::test]
async fn every_documented_normalize_fallback_reason_exists_from_the_start() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let metrics = gw.metrics().await;
    for reason in [
        "invalid_json",
        "not_utf8",
        "not_an_object",
        "not_json",
        "too_large",
        "unsupported_encoding",
    ] {
        let key = format!("koodrive_gateway_normalize_fallbacks_total{{reason=\"{reason}\"}}");
        assert_eq!(metrics.get(&key), Some(&0.0), "{key} missing at start");
    }
}

/// README: "`--demo --config PATH` uses that config with the mock as upstream (the mock accepts the
/// config's credentials)", and "Token mode": a token written as the docs write the header,
/// `Bearer+<token>`, is sent as `Bearer <token>` (and `Bearer <token>` as it is). The demo's mock
/// is given the configured string whole, so it refuses the token the gateway sends: 401.
#[tokio::test]
async fn the_demo_mock_accepts_a_configured_token_written_with_its_scheme() {
    use crate::cli::{temp_config, Process};
    use crate::support::Client;
    for (name, token) in [("plus", "Bearer+tok123"), ("space", "Bearer tok123")] {
        let path = temp_config(
            &format!("r6b-demo-token-{name}"),
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 [upstream]\nurl = \"http://127.0.0.1:9\"\n\
                 [auth]\nmode = \"token\"\nuser_id = \"77\"\naccess_token = \"{token}\"\n"
            ),
        );
        let mut process = Process::spawn(&["--demo", "--config", path.to_str().unwrap()], &[]);
        let addr = process.demo_banner().await;
        let response = Client::new(addr)
            .get(&format!("{TASK_LIST}?pageSize=1"))
            .await;
        let (status, _) = process.terminate().await;
        std::fs::remove_file(path).ok();
        assert!(status.success());
        assert_eq!(
            response.status,
            200,
            "access_token = {token:?}: the demo mock refused the config's token: {}",
            response.text()
        );
    }
}

/// deploy/README.md: `docker build -f deploy/Dockerfile -t koodrive-gateway:0.1.0 .` builds the
/// image. The build stage copies only Cargo.toml, Cargo.lock, src/ and benches/, but src/main.rs
/// embeds `include_str!("../config/demo.toml")`, so `cargo build` in the image cannot find it.
#[test]
fn the_dockerfile_build_stage_copies_every_file_the_binary_embeds() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    // Sources of COPY lines before the runtime stage (no --from).
    let build_stage = dockerfile.split("FROM debian").next().unwrap();
    let copied: Vec<String> = build_stage
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|l| !l.contains("--from"))
        .flat_map(|l| {
            let mut parts: Vec<&str> = l.split_whitespace().collect();
            parts.pop(); // the destination
            parts
                .into_iter()
                .map(|p| p.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let main = std::fs::read_to_string(root.join("src/main.rs")).unwrap();
    for piece in main.split("include_str!(\"").skip(1) {
        let relative = piece.split('"').next().unwrap();
        // Relative to src/: "../config/demo.toml" -> "config/demo.toml".
        let from_root = relative.strip_prefix("../").unwrap_or(relative);
        assert!(
            copied
                .iter()
                .any(|c| from_root == c || from_root.starts_with(&format!("{c}/"))),
            "src/main.rs embeds {from_root}, which deploy/Dockerfile's build stage never copies \
             (it copies {copied:?})"
        );
    }
}

/// README: the key holds `X-User-Id` "without the spaces around it (as KooDrive reads them: an
/// HTTP/2 `x-user-id: 42 ` is user `42`)", and `POST /cache/purge?user_id=...` drops "one user's
/// pages". A purge of `user_id=555%20` answers `{"purged":"user"}` but drops nothing: user 555's
/// page is still a hit. (Either trim it as the key does, or refuse it; not a silent no-op.)
#[tokio::test]
async fn a_purge_whose_user_id_has_surrounding_spaces_purges_that_user_or_is_refused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let path = format!("{TASK_LIST}?pageSize=3");
    let user = [("x-user-id", "555")];
    assert_eq!(gw.client.get_with(&path, &user).await.status, 200);
    let hit = gw.client.get_with(&path, &user).await;
    assert!(
        hit.header("cache-status").contains("hit"),
        "{:?}",
        hit.headers
    );
    let purge = gw
        .admin
        .send(
            http::Request::post(gw.admin.url("/cache/purge?user_id=555%20"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await;
    if purge.status == 200 {
        let after = gw.client.get_with(&path, &user).await;
        assert!(
            !after.header("cache-status").contains("hit"),
            "purge answered {} but user 555's page is still served from the cache: {}",
            purge.text(),
            after.header("cache-status")
        );
    } else {
        assert_eq!(purge.status, 400, "{}", purge.text());
    }
}
