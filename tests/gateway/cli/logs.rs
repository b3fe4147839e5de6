//! The binary's logs: JSON events carry the trace id, access events and upstream events, and no
//! secret at any level.

use super::*;

#[tokio::test]
async fn logs_carry_the_trace_id_never_the_secret_and_sigterm_exits_zero() {
    let mock = Mock::ok().await;
    let secret = "TOKEN-c0ffee-never-logged";
    let (mut process, config) = json_logging_gateway("logs", &mock, "", secret, "trace");
    let (addr, _) = process.listening().await;
    let client = Client::new(addr);
    let trace_id = "trace-id-for-the-log-test-42";
    let response = client.get_with(TASK_LIST, &[("x-traceid", trace_id)]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        mock.last().header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    let access = process.line_with("\"koodrive_gateway::access\"").await;
    let event: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(event["span"]["trace_id"], trace_id, "{access}");
    assert_eq!(event["status"], 200);

    let (status, lines) = process.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(lines.iter().any(|l| l.contains("shutting down: draining")));
    assert!(lines.iter().any(|l| l.contains("shutdown complete")));
    for line in &lines {
        assert!(!line.contains(secret), "secret in a log line: {line}");
    }
    std::fs::remove_file(config).ok();
}

/// A client that hangs up before its answer still leaves its access event, as nginx does: status
/// 499, with the request's trace id.
#[tokio::test]
async fn a_client_hanging_up_leaves_a_499_access_event() {
    let mock = Mock::with_slow_path(Duration::from_secs(600)).await;
    let (mut process, config) = json_logging_gateway("hangup", &mock, "", "t", "info");
    let (addr, _) = process.listening().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /koodrive/ose/v1/task/slow HTTP/1.1\r\nHost: gw\r\nX-Traceid: hung-up-trace-7\r\n\r\n",
        )
        .await
        .unwrap();
    mock.wait_for_hits(1).await;
    drop(stream);
    let access = process.line_with("\"status\":499").await;
    let event: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(event["target"], "koodrive_gateway::access", "{access}");
    assert_eq!(event["span"]["trace_id"], "hung-up-trace-7", "{access}");
    assert_eq!(event["cache"], "none", "{access}");
    let (status, _) = process.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    std::fs::remove_file(config).ok();
}

#[tokio::test]
async fn events_inside_the_upstream_exchange_carry_the_trace_id() {
    let mock = Mock::start(|_| Reply::json(503, r#"{"code":"13000503","msg":"busy"}"#)).await;
    let (mut process, config) = json_logging_gateway(
        "upstream-span",
        &mock,
        "breaker_failures = 1\n",
        "t",
        "info",
    );
    let (addr, _) = process.listening().await;
    let trace_id = "trace-id-inside-the-upstream-span";
    let response = Client::new(addr)
        .get_with("/koodrive/ose/v1/task/1", &[("x-traceid", trace_id)])
        .await;
    assert_eq!(response.status, 503);
    // The breaker opens while KooDrive's answer is handled, inside the upstream span.
    let line = process.line_with("circuit breaker open").await;
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["span"]["name"], "upstream", "{line}");
    assert_eq!(event["span"]["trace_id"], trace_id, "{line}");
    process.terminate().await;
    std::fs::remove_file(config).ok();
}

#[tokio::test]
async fn no_secret_reaches_logs_error_bodies_or_metrics_at_trace_level() {
    let mock = Mock::start(|seen| {
        if seen.uri.path().ends_with("/fail") {
            crate::support::Reply::json(500, r#"{"code":13000500,"msg":"inner failure"}"#)
        } else {
            crate::support::Reply::ok()
        }
    })
    .await;
    let (app_secret, admin_token) = ("APPSECRET-5f3a9c-never", "ADMINTOKEN-77e1-never");
    let config = temp_config(
        "secrets",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n[auth]\nuser_id = \"7\"\napp_id = \"app\"\napp_secret = \"{app_secret}\"\n\
             [admin]\ntoken = \"{admin_token}\"\n[log]\nformat = \"json\"\n",
            mock.url()
        ),
    );
    let mut process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "trace")],
    );
    let (addr, admin_addr) = process.listening().await;
    let (client, admin) = (Client::new(addr), Client::new(admin_addr));

    let mut bodies = Vec::new();
    bodies.push(client.get(TASK_LIST).await.text());
    bodies.push(client.get("/koodrive/ose/v1/task/fail").await.text());
    bodies.push(
        client
            .get_with(TASK_LIST, &[("x-traceid", "bad id")])
            .await
            .text(),
    );
    bodies.push(client.get(&format!("{TASK_LIST}?pageSize=0")).await.text());
    let purge = |token: &str| {
        admin
            .request(http::Method::POST, "/cache/purge")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::default())
            .unwrap()
    };
    bodies.push(admin.send(purge("wrong")).await.text());
    bodies.push(admin.send(purge(admin_token)).await.text());
    bodies.push(admin.get("/metrics").await.text());
    let authorization = mock.requests()[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    let signature = authorization
        .rsplit("Signature=")
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(signature.len(), 64);

    let (status, lines) = process.terminate().await;
    assert!(status.success());
    // Trace level was on: the upstream pool's trace events are there.
    assert!(
        lines.iter().any(|l| l.contains(r#""level":"TRACE""#)),
        "no trace-level line: {lines:#?}"
    );
    for secret in [app_secret, admin_token, signature.as_str()] {
        for line in &lines {
            assert!(!line.contains(secret), "secret in a log line: {line}");
        }
        for body in &bodies {
            assert!(!body.contains(secret), "secret in a response: {body}");
        }
    }
    std::fs::remove_file(config).ok();
}
