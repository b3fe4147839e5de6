//! Identities never share pages: credentials are refused rather than keyed apart when ambiguous,
//! and randomized identities see only their own pages and writes.

use super::*;

/// README, the task-list key: "`X-User-Id`, a SHA-256 of the effective credential (the caller's
/// token, or the configured token or app id) and the effective `language`".
///
/// Over HTTP/2 (where a field may arrive padded) one credential that KooDrive reads as the same
/// once got two cache entries. A padded value is malformed there (RFC 9113 section 8.2.1): it is
/// refused, so the key and KooDrive only ever see one spelling.
#[tokio::test]
async fn a_padded_credential_over_http2_is_refused_not_keyed_apart() {
    let mock = Mock::start(|_| page()).await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let h2 = Client::http2(gw.running().addr);
    let first = h2
        .get_with(TASK_LIST, &[("authorization", "Bearer caller-token")])
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(mock.hits(), 1);
    let padded = h2
        .get_with(TASK_LIST, &[("authorization", "Bearer caller-token ")])
        .await;
    assert_eq!(padded.status, 400, "{}", padded.text());
    assert!(padded.text().contains("authorization"), "{}", padded.text());
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn http2_header_values_with_spaces_around_them_are_refused_naming_the_header() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let h2 = Client::http2(gw.running().addr);
    for (name, value) in [
        ("x-user-id", "\t42 "),
        ("language", " fr-FR\t"),
        ("authorization", "Bearer tok "),
        ("x-anything", " 1"),
    ] {
        let request = h2
            .request(Method::GET, TASK_LIST)
            .header(name, value)
            .body(Full::default())
            .unwrap();
        let response = h2.send(request).await;
        assert_eq!(response.status, 400, "{name}: {value:?}");
        assert_eq!(response.json()["code"], "GATEWAY_BAD_REQUEST");
        let msg = response.json()["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains(name), "{msg}");
    }
    assert_eq!(mock.hits(), 0, "nothing padded reached KooDrive");
    // The same values without the padding are served, over HTTP/2 too.
    let request = h2
        .request(Method::GET, TASK_LIST)
        .header("x-user-id", "42")
        .header("language", "fr-FR")
        .body(Full::default())
        .unwrap();
    assert_eq!(h2.send(request).await.status, 200);
    assert_eq!(mock.last().header("x-user-id"), Some("42"));
    assert_eq!(mock.last().header("language"), Some("fr-FR"));
}

#[tokio::test]
async fn identities_never_share_pages() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let identities: [&[(&str, &str)]; 5] = [
        &[],
        &[("x-user-id", "42")],
        &[("x-user-id", "42"), ("authorization", "Bearer token-a")],
        &[("x-user-id", "42"), ("authorization", "Bearer token-b")],
        &[("x-user-id", "42"), ("language", "zh-CN")],
    ];
    let mut owners = Vec::new();
    for round in 0..2 {
        for headers in identities {
            let response = gw.client.get_with(TASK_LIST, headers).await;
            let owner = response.json()["owner"].as_str().unwrap().to_owned();
            if round == 0 {
                owners.push(owner);
            } else {
                assert!(owners.contains(&owner));
            }
        }
    }
    assert_eq!(
        mock.hits(),
        identities.len(),
        "one miss per identity, then hits"
    );
    assert_eq!(
        owners,
        [
            format!("{USER_ID}|app|en-US"),
            "42|app|en-US".into(),
            "42|Bearer token-a|en-US".into(),
            "42|Bearer token-b|en-US".into(),
            "42|app|zh-CN".into(),
        ]
    );
}

/// A header that says who a request acts as, sent twice: the key would take one value and
/// KooDrive might take the other, so the page it made could be stored for the wrong identity.
/// Refused on every route (a write invalidates by user too), never forwarded.
#[tokio::test]
async fn a_repeated_identity_header_is_refused_and_never_forwarded() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    for (name, first, second) in [
        ("x-user-id", "1001", "1002"),
        ("authorization", "Bearer token-a", "Bearer token-b"),
        ("language", "en-US", "zh-CN"),
    ] {
        for (method, path) in [
            (Method::GET, TASK_LIST),
            (Method::POST, "/koodrive/ose/v1/task/create"),
        ] {
            let request = gw
                .client
                .request(method, path)
                .header(name, first)
                .header(name, second)
                .body(Full::default())
                .unwrap();
            let response = gw.client.send(request).await;
            assert_eq!(response.status, 400, "{name} twice on {path}");
            assert_eq!(response.json()["code"], "GATEWAY_BAD_REQUEST");
            let msg = response.json()["msg"].as_str().unwrap().to_owned();
            assert!(msg.to_ascii_lowercase().contains(name), "{msg}");
        }
    }
    assert_eq!(mock.hits(), 0, "nothing was forwarded");
    // Once each, the same headers are served, and the first identity's page is its own.
    let once = gw
        .client
        .get_with(TASK_LIST, &[("x-user-id", "1001"), ("language", "zh-CN")])
        .await;
    assert_eq!(once.status, 200);
    assert_eq!(once.json()["owner"], "1001|app|zh-CN");
}

/// Many identities, queries and concurrent requests, with writes in between: every body belongs
/// to the identity that asked, and every answer after a write reflects it.
#[tokio::test]
async fn randomized_identities_never_see_each_other_and_always_see_their_writes() {
    let versions: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let table = Arc::clone(&versions);
    let mock = Mock::start(move |seen| {
        let user = seen.header("x-user-id").unwrap_or("?").to_owned();
        let mut table = table.lock().unwrap();
        let version = table.entry(user).or_insert(0);
        if seen.method == Method::POST {
            *version += 1;
            return Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#);
        }
        let mut reply = page_for(seen, *version);
        // Echo the query too, so a page for one query is never served for another.
        let mut json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        json["query"] = seen.uri.query().unwrap_or("").into();
        reply.body = json.to_string().into();
        reply
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let users = ["2001", "2002", "2003"];
    let tokens = [None, Some("Bearer tk-1"), Some("Bearer tk-2")];
    let languages = ["en-US", "zh-CN"];
    let queries = ["status=1", "status=1,2&pageSize=10", "taskType=0", ""];
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..6 {
        let mut handles = Vec::new();
        for _ in 0..60 {
            let user = users[rng.usize(..users.len())];
            let token = tokens[rng.usize(..tokens.len())];
            let language = languages[rng.usize(..languages.len())];
            let query = queries[rng.usize(..queries.len())];
            let client = gw.client.clone();
            let floor = *versions.lock().unwrap().get(user).unwrap_or(&0);
            handles.push(tokio::spawn(async move {
                let mut headers = vec![("x-user-id", user), ("language", language)];
                if let Some(token) = token {
                    headers.push(("authorization", token));
                }
                let response = client
                    .get_with(&format!("{TASK_LIST}?{query}"), &headers)
                    .await;
                (user, token, language, query, floor, response)
            }));
        }
        for handle in handles {
            let (user, token, language, query, floor, response) =
                within("a request", handle).await.unwrap();
            let json = response.json();
            let owner = format!("{user}|{}|{language}", token.unwrap_or("app"));
            assert_eq!(json["owner"], owner.as_str(), "round {round}");
            assert_eq!(json["query"], query);
            assert!(
                json["version"].as_u64().unwrap() >= floor,
                "a page older than a finished write"
            );
        }
        // A write for one user, finished before the next round starts.
        let user = users[round % users.len()];
        assert_eq!(gw.client.send(create(&gw, user)).await.status, 200);
    }
}
