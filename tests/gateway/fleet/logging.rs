//! What a fleet sidecar logs, read from the binary's JSON lines: fleet mode up (INFO), fallen
//! back once (WARN) however long Redis stays away, up again once it is back; the Redis password
//! never appears.

use crate::cli::{temp_config, Process};
use crate::fleet::key_file;
use crate::support::redis::RedisServer;
use crate::support::{Client, Mock, TASK_LIST};

const PASSWORD: &str = "redis-password-never-logged";

#[tokio::test]
async fn falling_back_is_logged_once_and_resuming_once_and_the_password_never() {
    let mut redis = RedisServer::start(Some(PASSWORD));
    let mock = Mock::ok().await;
    let password = std::env::temp_dir().join(format!("kg-fleet-log-pw-{}", std::process::id()));
    std::fs::write(&password, PASSWORD).unwrap();
    let config = temp_config(
        "fleet-logging",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n[auth]\nmode = \"token\"\nuser_id = \"7\"\n\
             access_token = \"t\"\n[log]\nformat = \"json\"\n\
             [fleet]\nredis_url = \"{}\"\nredis_password_file = \"{}\"\nkey_file = \"{}\"\n\
             timeout = \"200ms\"\nheartbeat = \"100ms\"\n",
            mock.url(),
            redis.url(),
            password.display(),
            key_file().display()
        ),
    );
    let mut process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
    // Fleet mode comes up in the background: before or after the listeners say they listen.
    let first = process.lines_until("fleet mode up").await;
    let up = first.last().unwrap();
    assert!(up.contains(r#""level":"INFO""#), "{up}");
    let addr = match first
        .iter()
        .find(|l| l.contains("koodrive-gateway listening"))
    {
        Some(line) => {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            json["addr"].as_str().unwrap().parse().unwrap()
        }
        None => process.listening().await.0,
    };
    let client = Client::new(addr);
    redis.kill();
    let fallen = process.line_with("fleet mode fallen back").await;
    assert!(fallen.contains(r#""level":"WARN""#), "{fallen}");
    // Redis stays away for many heartbeats and requests: nothing more is said until it is back.
    for _ in 0..10 {
        assert_eq!(client.get(TASK_LIST).await.status, 200);
    }
    redis.restart_empty();
    let during = process.lines_until("fleet mode up").await;
    let repeated: Vec<&String> = during
        .iter()
        .filter(|line| line.contains("fallen back"))
        .collect();
    assert!(repeated.is_empty(), "logged again: {repeated:?}");
    let (_, lines) = process.terminate().await;
    let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(PASSWORD)).collect();
    assert!(
        leaked.is_empty(),
        "the Redis password was logged: {leaked:?}"
    );
    std::fs::remove_file(config).ok();
    std::fs::remove_file(password).ok();
}
