//! The fault matrix: each upstream fault, on each route, gets its documented answer in bounded time.

use super::*;

/// Runs the three cells for one fault, then checks the gateway is healthy again.
async fn matrix(fault: Fault) {
    let server = FaultServer::start(Fault::Healthy).await;
    let gw = TestGateway::for_mock_url(&server.url(), MATRIX_CONFIG).await;

    // A stale page for ?status=2 first (stored healthy, then past its TTL).
    assert_eq!(
        gw.client.get(&format!("{TASK_LIST}?status=2")).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.set(fault).await;

    if fault == Fault::Huge {
        // Not a failure, so no stale page either: the body streams through in every cell, and
        // each of the 50 requests fetches it for itself (only the flight that learnt it is extra).
        let client = &gw.client;
        check_huge(
            client,
            &format!("{TASK_LIST}?status=1"),
            Instant::now(),
            true,
        )
        .await;
        check_huge(
            client,
            &format!("{TASK_LIST}?status=2"),
            Instant::now(),
            true,
        )
        .await;
        let before = server.hits();
        let started = Instant::now();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let client = gw.client.clone();
                let path = format!("{TASK_LIST}?status=3");
                tokio::spawn(async move { check_huge(&client, &path, started, false).await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert!(server.hits() - before <= 51, "{}", server.hits() - before);
        // The clients left mid-body: each exchange ends when the gateway notices.
        crate::support::within("in-flight back to 0", async {
            while in_flight(&gw).await != 0.0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    } else {
        // A plain miss.
        let (response, elapsed) = timed(&gw, &format!("{TASK_LIST}?status=1")).await;
        check(fault, &response, elapsed);

        // A stale page available.
        let (response, elapsed) = timed(&gw, &format!("{TASK_LIST}?status=2")).await;
        check_stale(fault, &response, elapsed);

        // 50 collapsed waiters.
        let before = server.hits();
        let started = Instant::now();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let client = gw.client.clone();
                tokio::spawn(async move { client.get(&format!("{TASK_LIST}?status=3")).await })
            })
            .collect();
        for waiter in waiters {
            check(fault, &waiter.await.unwrap(), started.elapsed());
        }
        assert!(
            server.hits() - before <= 4,
            "{fault:?}: {} upstream calls for 50 waiters",
            server.hits() - before
        );
    }

    assert_eq!(in_flight(&gw).await, 0.0, "{fault:?}");
    server.set(Fault::Healthy).await;
    let after = gw.client.get(&format!("{TASK_LIST}?taskType=7")).await;
    assert_eq!(
        after.status, 200,
        "{fault:?}: not serving normally afterwards"
    );
}

#[tokio::test]
async fn fault_reset_before_headers() {
    matrix(Fault::ResetBeforeHeaders).await;
}

#[tokio::test]
async fn fault_reset_mid_head() {
    matrix(Fault::ResetMidHead).await;
}

#[tokio::test]
async fn fault_reset_mid_body() {
    matrix(Fault::ResetMidBody).await;
}

#[tokio::test]
async fn fault_stall_before_headers() {
    matrix(Fault::StallBeforeHeaders).await;
}

#[tokio::test]
async fn fault_stall_mid_body() {
    matrix(Fault::StallMidBody).await;
}

#[tokio::test]
async fn fault_5xx_and_429_answers() {
    for status in [500, 502, 503, 429] {
        matrix(Fault::Status(status)).await;
    }
}

#[tokio::test]
async fn fault_api_gateway_throttling() {
    matrix(Fault::ApigThrottle).await;
}

#[tokio::test]
async fn fault_garbage_instead_of_http() {
    matrix(Fault::Garbage).await;
}

#[tokio::test]
async fn fault_50_mib_body() {
    matrix(Fault::Huge).await;
}

#[tokio::test]
async fn fault_gzip_bomb() {
    matrix(Fault::GzipBomb).await;
}

#[tokio::test]
async fn fault_connection_refused() {
    matrix(Fault::Refused).await;
}
