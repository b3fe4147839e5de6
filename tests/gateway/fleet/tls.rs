//! `rediss://`: the Redis server's certificate is verified (against `fleet.ca_file` here, a
//! private CA); one that does not verify is never talked to, and requests are answered all the
//! same.

use std::path::PathBuf;

use crate::cache::{cache_status, versioned_mock};
use crate::fleet::{key_file, metric, wait_fleet_up, wait_keys};
use crate::support::redis::RedisServer;
use crate::support::{Mock, TestGateway, TASK_LIST};

/// A private CA's PEM, and a server certificate and key for `localhost` it signed, as files.
fn private_ca() -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "kg-fleet-tls-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("ca.pem", ca.pem()),
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
    ];
    for (name, pem) in &files {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

fn tls_overlay(redis: &RedisServer, ca_file: Option<&PathBuf>) -> String {
    let port = redis.tls_port.unwrap();
    let ca = ca_file.map_or(String::new(), |ca| {
        format!("ca_file = \"{}\"\n", ca.display())
    });
    format!(
        "[cache]\nttl = \"60s\"\n[fleet]\nredis_url = \"rediss://localhost:{port}\"\n\
         key_file = \"{}\"\ntimeout = \"200ms\"\nheartbeat = \"100ms\"\n{ca}",
        key_file().display()
    )
}

#[tokio::test]
async fn rediss_with_the_servers_ca_shares_pages() {
    let (ca, cert, key) = private_ca();
    let redis = RedisServer::start_tls(cert, key);
    let mock = versioned_mock().await;
    let overlay = tls_overlay(&redis, Some(&ca));
    let a = TestGateway::for_mock(&mock, &overlay).await;
    let b = TestGateway::for_mock(&mock, &overlay).await;
    wait_fleet_up(&a, true).await;
    wait_fleet_up(&b, true).await;
    assert_eq!(a.client.get(TASK_LIST).await.status, 200);
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    let shared = b.client.get(TASK_LIST).await;
    assert!(
        cache_status(&shared).contains("detail=shared"),
        "{}",
        cache_status(&shared)
    );
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn rediss_whose_certificate_does_not_verify_is_never_used() {
    let (_ca, cert, key) = private_ca();
    let redis = RedisServer::start_tls(cert, key);
    let mock = Mock::ok().await;
    // No ca_file: the webpki roots do not know the private CA.
    let gw = TestGateway::for_mock(&mock, &tls_overlay(&redis, None)).await;
    crate::support::within("a refused connect", async {
        while metric(
            &gw,
            "koodrive_gateway_fleet_redis_errors_total{operation=\"connect\"}",
        )
        .await
            < 1.0
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    for _ in 0..3 {
        assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
    }
    assert_eq!(metric(&gw, "koodrive_gateway_fleet_up").await, 0.0);
    assert!(
        redis.keys("*").is_empty(),
        "nothing was written to the unverified server"
    );
}
