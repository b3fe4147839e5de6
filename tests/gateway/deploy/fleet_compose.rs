//! The fleet compose example: Redis and two gateways sharing it, the fleet key and the Redis
//! password as compose secrets (files), each gateway's config valid with `[fleet]` on.

use super::*;

const FLEET_FILE: &str = "deploy/compose.fleet.yaml";

/// The `KOODRIVE_GATEWAY__*` environment of a compose service, with the operator's secrets.
fn gateway_env(service: &Value) -> Vec<(String, String)> {
    let mut env = secret_env();
    for (name, value) in service["environment"].as_mapping().expect("environment") {
        let name = str_of(name, "variable");
        if name.starts_with("KOODRIVE_GATEWAY__") && !env.iter().any(|(n, _)| n == name) {
            env.push((name.to_owned(), str_of(value, name).to_owned()));
        }
    }
    env
}

/// The secrets a service mounts, by name, at compose's `/run/secrets/<name>`.
fn mounted_secrets(service: &Value) -> Vec<String> {
    seq_of(&service["secrets"], "secrets")
        .iter()
        .map(|secret| str_of(secret, "secret").to_owned())
        .collect()
}

#[test]
fn fleet_compose_runs_two_gateways_on_one_redis_with_file_secrets() {
    let documents = yaml_documents(FLEET_FILE);
    let [compose] = documents.as_slice() else {
        panic!("{FLEET_FILE} is one document");
    };
    let services = compose["services"].as_mapping().expect("services");
    let redis = &compose["services"]["redis"];
    assert!(!redis.is_null(), "a redis service");
    let declared = compose["secrets"].as_mapping().expect("top-level secrets");
    for (name, secret) in declared {
        let file = str_of(&secret["file"], "secret file");
        assert!(
            file.starts_with("./secrets/"),
            "{name:?}: secrets live in deploy/secrets/, which git and docker ignore"
        );
    }
    let ignored = read("deploy/secrets/.gitignore");
    assert!(ignored.lines().any(|line| line.trim() == "*"), "{ignored}");
    assert!(read(".dockerignore")
        .lines()
        .any(|l| l.trim() == "deploy/secrets/"));

    // Redis takes its password from the secret file, never a literal; it answers its healthcheck.
    assert!(mounted_secrets(redis).contains(&"redis-password".to_owned()));
    let command = serde_yaml::to_string(&redis["command"]).unwrap();
    assert!(command.contains("/run/secrets/redis-password"), "{command}");
    assert!(command.contains("--save ''") && command.contains("--appendonly no"));
    let redis_port = command
        .split("--port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("redis --port")
        .parse::<u16>()
        .unwrap();
    assert!(!redis["healthcheck"]["test"].is_null());

    let container = read("deploy/koodrive-gateway.container.toml");
    let mut gateways = Vec::new();
    for (name, service) in services {
        let name = str_of(name, "service name");
        if name == "redis" {
            continue;
        }
        let config = Config::parse(&container, gateway_env(service))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let fleet = config
            .fleet
            .clone()
            .unwrap_or_else(|| panic!("{name}: fleet mode on"));
        // The URL names the redis service and its port, without a password in it.
        let uri: Uri = fleet.redis_url.parse().unwrap();
        assert_eq!(uri.host(), Some("redis"), "{name}");
        assert_eq!(uri.port_u16(), Some(redis_port), "{name}");
        // Both files are the compose secrets this service mounts.
        let mounted = mounted_secrets(service);
        let password = fleet.redis_password_file.expect("redis_password_file");
        for file in [&fleet.key_file, &password] {
            let secret = file
                .to_str()
                .unwrap()
                .strip_prefix("/run/secrets/")
                .unwrap_or_else(|| panic!("{name}: {} is not a compose secret", file.display()));
            assert!(
                mounted.iter().any(|m| m == secret),
                "{name} mounts {secret}"
            );
            assert!(declared.contains_key(secret), "secret {secret} declared");
        }
        assert_eq!(
            service["depends_on"]["redis"]["condition"], "service_healthy",
            "{name} starts once Redis answers"
        );
        let stop = duration(str_of(&service["stop_grace_period"], "stop_grace_period"));
        assert!(stop > config.server.shutdown_grace, "{name}: {stop:?}");
        let ports: Vec<String> = seq_of(&service["ports"], "ports")
            .iter()
            .map(|p| str_of(p, "port").to_owned())
            .collect();
        assert!(
            ports.iter().all(|p| p.starts_with("127.0.0.1:")),
            "{ports:?}"
        );
        gateways.push((name.to_owned(), fleet.key_file, ports));
    }
    assert_eq!(gateways.len(), 2, "two gateways");
    assert_eq!(gateways[0].1, gateways[1].1, "one fleet key for both");
    assert!(
        gateways[0]
            .2
            .iter()
            .all(|port| !gateways[1].2.contains(port)),
        "each gateway publishes its own host ports"
    );
}
