//! README "Fleet mode", "Try it": `--demo --fleet N` starts N gateways sharing one Redis in front
//! of the mock; the banner's curl commands, run as printed, show a write through gateway 1 in
//! gateway 2's list at once. The demo's `redis-server` is stopped when the demo exits.

use http::Method;
use http_body_util::Full;

use crate::cli::Process;
use crate::support::packages::require;
use crate::support::{within, Client, TestResponse};

/// One banner command: method, address, path and body, as `curl` would send them.
struct Curl {
    method: Method,
    addr: std::net::SocketAddr,
    path: String,
    body: String,
}

/// Reads a banner line `... curl -s [-X POST] 'http://ADDR/PATH' [-d 'BODY']`.
fn parse_curl(line: &str) -> Curl {
    let command = &line[line.find("curl ").expect("a curl command")..];
    let quoted: Vec<&str> = command.split('\'').collect();
    let url = quoted[1].strip_prefix("http://").expect("an http:// URL");
    let slash = url.find('/').expect("a path");
    Curl {
        method: match command.contains("-X POST") {
            true => Method::POST,
            false => Method::GET,
        },
        addr: url[..slash].parse().expect("an address"),
        path: url[slash..].to_owned(),
        body: quoted
            .get(3)
            .map_or(String::new(), |body| (*body).to_owned()),
    }
}

async fn run(curl: &Curl) -> TestResponse {
    let client = Client::new(curl.addr);
    let request = client
        .request(curl.method.clone(), &curl.path)
        .body(Full::from(curl.body.clone()))
        .unwrap();
    client.send(request).await
}

/// Waits until the gateway whose admin listens on `admin` has handled a user invalidation hint.
async fn wait_for_hint(admin: std::net::SocketAddr) {
    const HINTS: &str = r#"koodrive_gateway_fleet_invalidations_received_total{kind="user"} "#;
    let client = Client::new(admin);
    within("gateway 2 to handle the write's hint", async {
        loop {
            let metrics = client.get("/metrics").await.text();
            let handled = metrics
                .lines()
                .find_map(|line| line.strip_prefix(HINTS))
                .and_then(|value| value.trim().parse::<f64>().ok());
            if handled.is_some_and(|n| n >= 1.0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn first_task_id(response: &TestResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["taskList"][0]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no task in {}", response.text()))
        .to_owned()
}

#[tokio::test]
async fn demo_fleet_shows_a_write_through_one_gateway_in_anothers_list() {
    // The demo finds redis-server on PATH; the test installs it when missing.
    let redis = require("redis-server", "redis-server");
    let path = format!(
        "{}:{}",
        redis.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut process = Process::spawn(
        &["--demo", "--fleet", "2"],
        &[
            ("KOODRIVE_GATEWAY__SERVER__LISTEN", "127.0.0.1:0"),
            ("KOODRIVE_GATEWAY__SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
            ("PATH", &path),
        ],
    );
    let banner = process.lines_until("is first in gateway 2's list").await;
    let redis_port: u16 = banner
        .iter()
        .find_map(|line| line.split("sharing redis://127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .expect("the banner names the Redis")
        .parse()
        .unwrap();
    let gateways: Vec<&String> = banner
        .iter()
        .filter(|line| line.starts_with("gateway "))
        .collect();
    assert_eq!(gateways.len(), 2, "{banner:#?}");
    let curls: Vec<Curl> = banner
        .iter()
        .filter(|line| line.contains("curl "))
        .map(|line| parse_curl(line))
        .collect();
    assert_eq!(curls.len(), 3, "{banner:#?}");
    assert_ne!(
        curls[0].addr, curls[1].addr,
        "the write goes through another gateway"
    );
    assert_eq!(curls[0].addr, curls[2].addr);

    // Gateway 2 caches its first page; the write goes through gateway 1; gateway 2's next page,
    // asked for at once (well inside the demo's 3 s TTL), starts with the new task.
    let before = first_task_id(&run(&curls[0]).await);
    let created = run(&curls[1]).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let created_id = created.json()["taskId"].as_str().unwrap().to_owned();
    // A person types the third command milliseconds after the second's answer at the soonest;
    // the test waits for what that time covers, gateway 2 handling the write's hint (the lag
    // bench/fleet.sh measures), rather than for a fixed time.
    let admin = gateways[1]
        .split("admin on http://")
        .nth(1)
        .expect("the banner names gateway 2's admin address")
        .trim()
        .parse()
        .expect("an address");
    wait_for_hint(admin).await;
    let after = first_task_id(&run(&curls[2]).await);
    assert_ne!(before, created_id);
    assert_eq!(
        after, created_id,
        "gateway 2 served its page from before the write"
    );

    let (status, _) = process.terminate().await;
    assert!(status.success());
    within("the demo's redis-server to stop", async {
        while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn demo_fleet_without_redis_server_says_how_to_install_it() {
    let empty = std::env::temp_dir().join(format!("kg-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let mut process = Process::spawn_capturing_stderr(
        &["--demo", "--fleet", "2"],
        &[
            ("KOODRIVE_GATEWAY__SERVER__LISTEN", "127.0.0.1:0"),
            ("KOODRIVE_GATEWAY__SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
            ("PATH", empty.to_str().unwrap()),
        ],
    );
    let stderr = process.stderr().await;
    let (status, _) = process.exited().await;
    assert!(!status.success());
    assert!(
        stderr.contains("apt-get install -y redis-server"),
        "{stderr}"
    );
}

/// `--fleet` is a demo option, from 1 to 16 gateways: anything else exits non-zero before
/// anything starts, saying why.
#[tokio::test]
async fn demo_fleet_refuses_a_size_out_of_range_or_without_demo() {
    for args in [
        &["--fleet", "2"][..],
        &["--demo", "--fleet", "0"][..],
        &["--demo", "--fleet", "17"][..],
    ] {
        let mut process = Process::spawn_capturing_stderr(args, &[]);
        let stderr = process.stderr().await;
        let (status, _) = process.exited().await;
        assert!(!status.success(), "{args:?} started");
        assert!(stderr.contains("--fleet"), "{args:?}: {stderr}");
    }
}
