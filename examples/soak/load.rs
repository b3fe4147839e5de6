//! The load: worker loops sending task-list, task and creation requests, and what they learn from list pages.

use super::*;

pub(crate) struct Shared {
    pub(crate) stats: Mutex<Stats>,
    pub(crate) sent: AtomicU64,
    pub(crate) creates: AtomicU64,
    pub(crate) max_requests: u64,
}

/// What a worker learned from list pages, to ask for real task ids and next pages.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) task_ids: BTreeMap<usize, Vec<String>>,
    pub(crate) cursors: BTreeMap<(usize, usize), String>,
}

pub(crate) async fn worker(
    id: u64,
    client: Client<HttpConnector, Body>,
    addr: SocketAddr,
    deadline: Instant,
    shared: Arc<Shared>,
) {
    let mut rng = fastrand::Rng::with_seed(0x50a4 + id);
    let mut seen = Seen::default();
    while Instant::now() < deadline {
        if shared.sent.fetch_add(1, Ordering::SeqCst) >= shared.max_requests {
            return;
        }
        let user = rng.usize(..USERS.len());
        let zh = user % 2 == 1 && rng.bool();
        let roll = rng.f64();
        let (kind, method, target, body, list_query) =
            if roll < 0.01 && shared.creates.fetch_add(1, Ordering::SeqCst) < MAX_CREATES {
                let body = Bytes::from_static(br#"{"taskName":"soak","taskType":0}"#);
                let target = "/koodrive/ose/v1/task/create".to_owned();
                ("create", Method::POST, target, body, None)
            } else if roll < 0.10 {
                let task_id = seen
                    .task_ids
                    .get(&user)
                    .and_then(|ids| (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())].clone()))
                    .unwrap_or_else(|| "1486254586942400000".to_owned());
                let target = format!("/koodrive/ose/v1/task/{task_id}");
                ("get", Method::GET, target, Bytes::new(), None)
            } else {
                let q = rng.usize(..QUERIES.len());
                let mut target = format!("{LIST}?{}", QUERIES[q]);
                if rng.u8(..100) < 20 {
                    if let Some(cursor) = seen.cursors.get(&(user, q)) {
                        target.push_str(&format!("&pageCursor={cursor}"));
                    }
                }
                ("list", Method::GET, target, Bytes::new(), Some(q))
            };

        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{target}"))
            .header(header::CONTENT_TYPE, "application/json");
        if !USERS[user].is_empty() {
            request = request.header("x-user-id", USERS[user]);
        }
        if zh {
            request = request.header("language", "zh-CN");
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(e) => {
                lock(&shared.stats).unanswered(kind, format!("not sent: {e}"));
                continue;
            }
        };
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_LIMIT, exchange(&client, request)).await;
        let latency = sent.elapsed();
        let answer = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                lock(&shared.stats).unanswered(kind, format!("no response ({})", error_kind(&*e)));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                lock(&shared.stats).unanswered(kind, format!("timeout {REQUEST_LIMIT:?}"));
                continue;
            }
        };
        // Learn ids and cursors from a tenth of the successful list pages.
        if let (Some(q), true) = (list_query, answer.status == StatusCode::OK) {
            if rng.u8(..10) == 0 {
                learn(&mut seen, user, q, &answer.body);
            }
        }
        lock(&shared.stats).answered(kind, &answer, latency);
    }
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) gateway_error: Option<String>,
    pub(crate) cache: Option<String>,
    pub(crate) body: Bytes,
}

pub(crate) async fn exchange(
    client: &Client<HttpConnector, Body>,
    request: Request<Body>,
) -> Result<Answer, BoxError> {
    let response = client.request(request).await?;
    let text = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, gateway_error, cache) = (
        response.status(),
        text("koodrive-gateway-error"),
        text("cache-status"),
    );
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        gateway_error,
        cache,
        body,
    })
}

pub(crate) fn learn(seen: &mut Seen, user: usize, query: usize, body: &[u8]) {
    let Ok(page) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    // The gateway answers ids and cursors as strings; KooDrive's wire shape has numbers.
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match page.get("nextCursor").and_then(text) {
        Some(next) => seen.cursors.insert((user, query), next),
        None => seen.cursors.remove(&(user, query)),
    };
    let ids = seen.task_ids.entry(user).or_default();
    let dtos = page
        .get("taskList")
        .or_else(|| page.get("taskListDtos"))
        .and_then(|v| v.as_array());
    let id_of = |t: &serde_json::Value| t.get("taskId").and_then(text);
    for id in dtos.into_iter().flatten().filter_map(id_of) {
        if ids.len() >= 64 {
            ids.remove(0);
        }
        ids.push(id);
    }
}

/// The innermost cause of a client error, shortened to a stable label.
pub(crate) fn error_kind(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string().chars().take(60).collect()
}
