//! The embedded mock KooDrive that `--demo` runs keeps KooDrive's documents: every documented
//! task endpoint, X-Date freshness, and the configured credentials however their token is written.

use koodrive_mock::{MockAuth, MockKooDrive};

use crate::support::{TestGateway, APP_ID, APP_SECRET, TASK_LIST};

/// The embedded mock KooDrive (what `--demo` runs) accepting the test config's credentials.
pub(crate) async fn demo_mock(tokens: Vec<String>) -> MockKooDrive {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = MockAuth {
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.into(),
        tokens,
    };
    MockKooDrive::start(listener, auth).await.unwrap()
}

/// authentication.md, "Task endpoints": "| GET /task/dstUserInfo/{src_user_id} | transfer target
/// info |". The embedded KooDrive that `--demo` runs answers it 404 "not found".
#[tokio::test]
async fn demo_serves_every_documented_task_endpoint() {
    let koodrive = demo_mock(Vec::new()).await;
    let gw = TestGateway::for_mock_url(&format!("http://{}", koodrive.addr()), "").await;
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/dstUserInfo/1505084218764547201")
        .await;
    assert_eq!(
        response.status,
        200,
        "GET /task/dstUserInfo/{{src_user_id}}: {}",
        response.text()
    );
}

/// authentication.md, "X-Date": "Must be within 15 minutes of the server's clock and never in the
/// future". The embedded KooDrive accepts an X-Date up to 60 s ahead, so `--demo` would not show a
/// gateway whose clock runs ahead.
#[test]
fn demo_refuses_an_x_date_in_the_future() {
    use koodrive_mock::koodrive::auth_check::check_freshness;
    let now = time::OffsetDateTime::now_utc();
    let ahead = now + time::Duration::seconds(30);
    assert!(
        check_freshness(ahead, now).is_err(),
        "an X-Date 30 s in the future was accepted"
    );
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
