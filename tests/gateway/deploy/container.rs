//! The container's config and the compose example: the admin token, the Dockerfile's ports, the drain.

use super::*;

#[test]
fn container_config_needs_the_admin_token_and_matches_the_dockerfile() {
    let toml = read("deploy/koodrive-gateway.container.toml");
    let config = Config::parse(&toml, secret_env()).expect("container config validates");
    // The admin listener is on 0.0.0.0 there, so a missing token must stop the gateway.
    let without_token = secret_env()
        .into_iter()
        .filter(|(name, _)| name != ADMIN_TOKEN_ENV);
    let error = Config::parse(&toml, without_token).unwrap_err().to_string();
    assert!(error.contains("server.admin_listen"), "{error}");

    // Instructions with their `\` continuations joined.
    let dockerfile = read("deploy/Dockerfile").replace("\\\n", " ");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let runtime = &instructions[instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .unwrap()..];

    let exposed: Vec<u16> = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .map(|port| port.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    for port in [
        config.server.listen.port(),
        config.server.admin_listen.port(),
    ] {
        assert!(exposed.contains(&port), "EXPOSE lacks {port}: {exposed:?}");
    }

    let healthcheck = runtime
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK in the runtime stage");
    let admin = format!(":{}/healthz", config.server.admin_listen.port());
    assert!(healthcheck.contains(&admin), "{healthcheck}");

    assert!(runtime.iter().any(|i| i.starts_with("COPY ")
        && i.contains("deploy/koodrive-gateway.container.toml")
        && i.ends_with(" /etc/koodrive-gateway/koodrive-gateway.toml")));
    let user = runtime
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(
        !matches!(user.split(':').next(), Some("root" | "0")),
        "{user}"
    );
    assert!(
        instructions
            .iter()
            .any(|i| i.contains("cargo build --release --locked")),
        "the image builds from Cargo.lock"
    );
}

#[test]
fn compose_example_shares_the_gateway_network_and_outwaits_its_drain() {
    let config = Config::parse(
        &read("deploy/koodrive-gateway.container.toml"),
        secret_env(),
    )
    .unwrap();
    let documents = yaml_documents("deploy/compose.yaml");
    let [compose] = documents.as_slice() else {
        panic!("compose.yaml is one document");
    };
    let gateway = &compose["services"]["gateway"];
    let app = &compose["services"]["app"];

    // It builds the image from the Dockerfile checked above, with the repository as context.
    let context = repo_path("deploy").join(str_of(&gateway["build"]["context"], "build.context"));
    assert_eq!(
        context.canonicalize().unwrap(),
        repo_path("").canonicalize().unwrap(),
        "compose builds from the repository root"
    );
    assert_eq!(
        str_of(&gateway["build"]["dockerfile"], "build.dockerfile"),
        "deploy/Dockerfile"
    );

    let healthcheck = seq_of(&gateway["healthcheck"]["test"], "healthcheck.test")
        .iter()
        .map(|part| str_of(part, "healthcheck part"))
        .collect::<Vec<_>>()
        .join(" ");
    let admin = format!(":{}/healthz", config.server.admin_listen.port());
    assert!(healthcheck.contains(&admin), "{healthcheck}");
    for required in [APP_SECRET_ENV, ADMIN_TOKEN_ENV] {
        assert!(
            !gateway["environment"][required].is_null(),
            "gateway environment lacks {required}"
        );
    }

    assert_eq!(
        str_of(&app["network_mode"], "network_mode"),
        "service:gateway"
    );
    assert_eq!(
        port_of(str_of(&app["environment"]["KOODRIVE_BASE_URL"], "base URL")),
        config.server.listen.port()
    );

    let stop = duration(str_of(&gateway["stop_grace_period"], "stop_grace_period"));
    assert!(stop > config.server.shutdown_grace, "{stop:?}");
}
