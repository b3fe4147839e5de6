//! What the gateway logs, read from the binary's JSON lines: a client's error is its access
//! event (not a warning), a persisting condition is logged when it starts and when it ends (and
//! is a gauge meanwhile), and `trace_id` is at the top level of every line of a request.

use std::time::Duration;

use serde_json::Value;

use crate::cli::{json_logging_gateway, temp_config, Process};
use crate::support::{within, Client, Mock, Reply, TASK_LIST};

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

const ACCESS: &str = r#""target":"koodrive_gateway::access""#;

/// A gateway process logging JSON at info in front of `upstream`, with `auth` as its `[auth]`.
fn gateway(name: &str, upstream: &str, auth: &str) -> (Process, std::path::PathBuf) {
    let config = temp_config(
        name,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{upstream}\"\nconnect_timeout = \"5s\"\n\
             [auth]\nmode = \"token\"\nuser_id = \"7\"\n{auth}\n[log]\nformat = \"json\"\n"
        ),
    );
    let process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
    (process, config)
}

#[tokio::test]
async fn a_client_error_is_its_access_event_and_a_gateway_failure_still_warns() {
    // Nothing listens on port 1: the gateway's own 502.
    let (mut process, config) =
        gateway("client-error", "http://127.0.0.1:1", "access_token = \"t\"");
    let (addr, _) = process.listening().await;
    let client = Client::new(addr);

    let response = client.get(&format!("{TASK_LIST}?taskType=x")).await;
    assert_eq!(response.status, 400);
    let lines = process.lines_until(ACCESS).await;
    let access = json(lines.last().unwrap());
    assert_eq!(access["status"], 400, "{access}");
    assert_eq!(access["code"], "GATEWAY_BAD_QUERY", "{access}");
    for line in &lines[..lines.len() - 1] {
        assert!(
            !line.contains("request failed") && json(line)["level"] != "WARN",
            "a client's error logged beside its access event: {line}"
        );
    }

    // A failure of the gateway's making keeps its warning, before its access event.
    let response = client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(response.status, 502);
    let lines = process.lines_until(ACCESS).await;
    let warning = lines
        .iter()
        .find(|line| line.contains("request failed"))
        .unwrap_or_else(|| panic!("no warning for a 502: {lines:?}"));
    assert_eq!(json(warning)["level"], "WARN", "{warning}");
    assert_eq!(
        json(lines.last().unwrap())["code"],
        "GATEWAY_UPSTREAM_UNREACHABLE"
    );
    process.terminate().await;
    std::fs::remove_file(config).ok();
}

#[tokio::test]
async fn every_json_line_of_a_request_has_its_trace_id_at_the_top_level() {
    let mock = Mock::start(|_| Reply::json(503, r#"{"code":"13000503","msg":"busy"}"#)).await;
    let (mut process, config) =
        json_logging_gateway("top-trace-id", &mock, "breaker_failures = 1\n", "t", "info");
    let (addr, _) = process.listening().await;
    let trace_id = "trace-id-at-the-top-level";
    let response = Client::new(addr)
        .get_with("/koodrive/ose/v1/task/1", &[("x-traceid", trace_id)])
        .await;
    assert_eq!(response.status, 503);
    // Logged inside the upstream span, a child of the request's, and the access event.
    let breaker = json(&process.line_with("circuit breaker open").await);
    assert_eq!(breaker["span"]["name"], "upstream", "{breaker}");
    assert_eq!(breaker["trace_id"], trace_id, "{breaker}");
    let access = json(&process.line_with(ACCESS).await);
    assert_eq!(access["trace_id"], trace_id, "{access}");
    process.terminate().await;
    std::fs::remove_file(config).ok();
}

/// The `koodrive_gateway_secret_file_unreadable` sample for `key`.
async fn unreadable_gauge(admin: &Client, key: &str) -> String {
    let metrics = admin.get("/metrics").await.text();
    let series = format!("koodrive_gateway_secret_file_unreadable{{key=\"{key}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series}in {metrics}"))
        .to_owned()
}

#[tokio::test]
async fn an_unreadable_secret_file_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let secret = std::env::temp_dir().join(format!("kdgw-{}-unreadable-token", std::process::id()));
    std::fs::write(&secret, "token-one").unwrap();
    let (mut process, config) = gateway(
        "unreadable-secret",
        "http://127.0.0.1:1",
        &format!(
            "access_token_file = \"{}\"\nfile_poll_interval = \"10ms\"",
            secret.display()
        ),
    );
    let (_, admin_addr) = process.listening().await;
    let admin = Client::new(admin_addr);
    // Every key's series exists from the start, at 0.
    for key in ["auth.access_token_file", "auth.app_secret_file"] {
        assert_eq!(unreadable_gauge(&admin, key).await, "0", "{key}");
    }

    std::fs::remove_file(&secret).unwrap();
    let started = process.lines_until("secret file unreadable").await;
    let warning = json(started.last().unwrap());
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["key"], "auth.access_token_file", "{warning}");
    assert_eq!(
        unreadable_gauge(&admin, "auth.access_token_file").await,
        "1"
    );
    // It stays unreadable for about 30 polls: none of them logs again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&secret, "token-two").unwrap();
    let during = process.lines_until("secret file readable again").await;
    let repeated: Vec<&String> = during
        .iter()
        .filter(|line| line.contains("secret file unreadable"))
        .collect();
    assert!(
        repeated.is_empty(),
        "logged again while it lasted: {repeated:?}"
    );
    assert_eq!(json(during.last().unwrap())["level"], "INFO");
    within("the gauge back at 0", async {
        while unreadable_gauge(&admin, "auth.access_token_file").await != "0" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    process.terminate().await;
    std::fs::remove_file(config).ok();
    std::fs::remove_file(secret).ok();
}

/// With `log.format = "pretty"`, a query parameter whose *name* percent-decodes to a line break,
/// followed by a malformed value, puts the decoded name into the `GATEWAY_BAD_QUERY` error's
/// Display (`invalid query parameter {param}=...`), which its debug line would write raw: the client
/// writes a log line of its choosing (CWE-117). The value is escaped (`{value:?}`); the name is
/// not.
#[tokio::test]
async fn a_query_parameter_name_cannot_forge_a_pretty_log_line() {
    let mock = Mock::ok().await;
    let config = temp_config(
        "r4b-pretty",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n\
             [auth]\nuser_id = \"7\"\napp_id = \"app\"\napp_secret = \"s\"\n\
             [log]\nformat = \"pretty\"\n",
            mock.url()
        ),
    );
    // A client's bad query is logged with its detail at debug only (its access event at info
    // carries no query): debug, where the error's Display is written.
    let mut process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    let listening = process.line_with("koodrive-gateway listening").await;
    let addr = listening
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr in {listening:?}"))
        .parse()
        .unwrap();
    let client = Client::new(addr);
    let forged =
        "FORGED%202030-01-01T00:00:00.000000Z%20%20INFO%20koodrive_gateway::admin:%20admin%20purge";
    let response = client.get(&format!("{TASK_LIST}?x%0A{forged}=%ZZ")).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["code"], "GATEWAY_BAD_QUERY");
    let line = process.line_with("FORGED").await;
    let (_, _lines) = process.terminate().await;
    std::fs::remove_file(config).ok();
    assert!(
        !line.starts_with("FORGED"),
        "a client-chosen text starts a log line of its own: {line:?}"
    );
}
