//! App authentication as the upstream sees it: both modes, credential precedence, token rotation.

use std::time::Duration;

use koodrive_gateway::auth::sign;

use crate::demo::demo_mock;
use crate::support::{
    within, Mock, Recorded, TestGateway, APP_ID, APP_SECRET, TASK_CREATE, TASK_LIST, USER_ID,
};

/// Recomputes the signature over what the upstream received, as KooDrive does.
fn verify_signature(seen: &Recorded) {
    let authorization = seen.header("authorization").expect("no Authorization");
    let (app_id, signed, signature) = sign::parse_authorization(authorization).expect("not HMAC");
    assert_eq!(app_id, APP_ID);
    assert_eq!(signed, "host;x-date;x-user-id");
    let headers = [
        ("host", seen.header("host").unwrap()),
        ("x-date", seen.header("x-date").unwrap()),
        ("x-user-id", seen.header("x-user-id").unwrap()),
    ];
    let hash = sign::payload_hash(&seen.body);
    let input = sign::SignInput {
        method: seen.method.as_str(),
        path: seen.uri.path(),
        query: seen.uri.query(),
        headers: &headers,
        payload_sha256: &hash,
    };
    assert_eq!(signature, sign::signature(APP_SECRET.as_bytes(), &input));
}

fn assert_fresh_x_date(seen: &Recorded) {
    let x_date = seen.header("x-date").unwrap();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(x_date, format)
        .unwrap()
        .assume_utc();
    let age = time::OffsetDateTime::now_utc() - parsed;
    assert!(
        age >= time::Duration::ZERO,
        "X-Date {x_date} is in the future"
    );
    assert!(age < time::Duration::minutes(1), "X-Date {x_date} is stale");
}

#[tokio::test]
async fn app_signature_headers_are_injected_and_verify() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let path = format!("{TASK_LIST}?taskType=0&status=2&status=1&pageSize=10&pageCursor=");
    assert_eq!(gw.client.get(&path).await.status, 200);
    let body = r#"{"taskName":"t1","taskType":0}"#;
    assert_eq!(
        gw.client.post_with(TASK_CREATE, &[], body).await.status,
        200
    );
    let odd_path = gw
        .client
        .get("/koodrive/ose/v1/task/dstUserInfo/a%20b%E4%BD%A0?q=%2F+x")
        .await;
    assert_eq!(odd_path.status, 200);

    for seen in mock.requests() {
        assert_eq!(seen.header("x-user-id"), Some(USER_ID));
        assert_eq!(seen.header("host"), Some(mock.addr().to_string().as_str()));
        assert_eq!(seen.header("language"), Some("en-US"));
        assert_fresh_x_date(&seen);
        verify_signature(&seen);
    }
    assert_eq!(mock.requests()[1].body, body);
}

#[tokio::test]
async fn token_mode_sends_a_bearer_token() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[auth]\nmode = \"token\"\naccess_token = \"tok-123\"",
    )
    .await;
    gw.client.get(TASK_LIST).await;
    let seen = mock.last();
    assert_eq!(seen.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(seen.header("x-user-id"), Some(USER_ID));
    assert_fresh_x_date(&seen);

    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[auth]\nmode = \"token\"\naccess_token = \"AT tok-456\"",
    )
    .await;
    gw.client.get(TASK_LIST).await;
    assert_eq!(mock.last().header("authorization"), Some("AT tok-456"));
}

#[tokio::test]
async fn client_credentials_are_kept_unless_overridden() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let own = [
        ("authorization", "Bearer client-token"),
        ("x-user-id", "42"),
        ("language", "zh-CN"),
    ];
    gw.client.get_with(TASK_LIST, &own).await;
    let seen = mock.last();
    assert_eq!(seen.header("authorization"), Some("Bearer client-token"));
    assert_eq!(seen.header("x-user-id"), Some("42"));
    assert_eq!(seen.header("language"), Some("zh-CN"));
    assert_fresh_x_date(&seen);

    // Only the user id from the client: config signs for that user.
    gw.client.get_with(TASK_LIST, &[("x-user-id", "42")]).await;
    let seen = mock.last();
    assert_eq!(seen.header("x-user-id"), Some("42"));
    verify_signature(&seen);

    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\noverride_client = true").await;
    gw.client.get_with(TASK_LIST, &own).await;
    let seen = mock.last();
    assert_eq!(seen.header("x-user-id"), Some(USER_ID));
    verify_signature(&seen);
}

#[tokio::test]
async fn a_rotated_token_file_is_picked_up_without_failures() {
    let dir = std::env::temp_dir().join(format!("kdgw-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "first-token\n").unwrap();
    let mock = Mock::ok().await;
    let overlay = format!(
        "[auth]\nmode = \"token\"\naccess_token_file = \"{}\"\nfile_poll_interval = \"20ms\"",
        file.display()
    );
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
    assert_eq!(
        mock.last().header("authorization"),
        Some("Bearer first-token")
    );

    // Rotate the way a secret volume does: write a new file, rename it over the old one.
    let next = dir.join("token.next");
    std::fs::write(&next, "second-token").unwrap();
    std::fs::rename(&next, &file).unwrap();
    within("the rotated token", async {
        loop {
            let response = gw.client.get(TASK_LIST).await;
            assert_eq!(response.status, 200, "a request failed during rotation");
            if mock.last().header("authorization") == Some("Bearer second-token") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    std::fs::remove_dir_all(&dir).ok();
}

/// authentication.md, "Two ways to authenticate": "The docs write the format as
/// `Bearer+{access_token}` ... Read it as `Bearer <token>`". A configured token written as the
/// docs write it goes out as `Bearer Bearer+tok`, which KooDrive (the embedded one too) refuses.
#[tokio::test]
async fn a_token_written_as_the_docs_write_it_is_read_as_bearer_token() {
    let koodrive = demo_mock(vec!["tok-123".into()]).await;
    let gw = TestGateway::for_mock_url(
        &format!("http://{}", koodrive.addr()),
        "[auth]\nmode = \"token\"\naccess_token = \"Bearer+tok-123\"",
    )
    .await;
    let response = gw.client.get(&format!("{TASK_LIST}?pageSize=1")).await;
    assert_eq!(response.status, 200, "{}", response.text());
}
