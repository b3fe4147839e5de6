use super::*;

mod env;

const MINIMAL: &str = r#"
[upstream]
url = "https://intl.myhuaweicloud-koodrive.com"
[auth]
user_id = "1505084218764547200"
app_id = "app"
app_secret = "secret"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn error_of(text: &str, pairs: &[(&str, &str)]) -> String {
    match Config::parse(text, env(pairs)) {
        Ok(_) => panic!("accepted: {text} {pairs:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_fill_everything_but_upstream_and_auth() {
    let config = Config::parse(MINIMAL, env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!())
    );
    assert_eq!(config.server.max_in_flight, 1024);
    assert_eq!(config.upstream.timeout, Duration::from_secs(10));
    assert_eq!(config.upstream.max_signed_body, 12 * 1024 * 1024);
    assert_eq!(config.upstream.host, "intl.myhuaweicloud-koodrive.com");
    assert_eq!(config.cache.max_bytes, 64 * 1024 * 1024);
    assert_eq!(config.cache.ttl, Duration::from_secs(3));
    assert_eq!(config.auth.mode, AuthMode::AppSignature);
    assert_eq!(config.auth.language, "en-US");
    assert!(!config.auth.override_client);
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn the_host_header_keeps_only_non_default_ports() {
    let with_port = MINIMAL.replace(
        "https://intl.myhuaweicloud-koodrive.com",
        "http://127.0.0.1:8443",
    );
    let config = Config::parse(&with_port, env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.upstream.host, "127.0.0.1:8443");
    let default_port = MINIMAL.replace(".com\"", ".com:443\"");
    let config = Config::parse(&default_port, env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.upstream.host, "intl.myhuaweicloud-koodrive.com");
}

#[test]
fn errors_name_the_key_and_why() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("[server]\nlistn = 1", &[], "server.listn: unknown field"),
        ("[nope]\nx = 1", &[], "nope: unknown field"),
        (
            "",
            &[("KOODRIVE_GATEWAY__UPSTREAM__TIMEOUT", "soon")],
            "upstream.timeout",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__UPSTREAM__URL", "ftp://x")],
            "upstream.url",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__UPSTREAM__URL", "https://x/base")],
            "upstream.url",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__UPSTREAM__URL", "not a url")],
            "upstream.url",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__CACHE__MAX_BYTES", "lots")],
            "cache.max_bytes",
        ),
        ("", &[("KOODRIVE_GATEWAY__CACHE__TTL", "0s")], "cache.ttl"),
        (
            "",
            &[("KOODRIVE_GATEWAY__SERVER__MAX_IN_FLIGHT", "0")],
            "server.max_in_flight",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__SERVER__LISTEN", "localhost:80")],
            "server.listen",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__AUTH__MODE", "magic")],
            "auth.mode",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__AUTH__MODE", "token")],
            "auth.access_token",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__AUTH__APP_SECRET_FILE", "/x")],
            "auth.app_secret",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__LOG__FORMAT", "xml")],
            "log.format",
        ),
        ("", &[("KOODRIVE_GATEWAY__LOG__LEVEL", "[[[")], "log.level"),
        ("", &[("KOODRIVE_GATEWAY__SERVER", "x")], "server"),
        ("[telemetry]\nendpoint = \"x\"", &[], "telemetry.endpoint"),
        (
            "",
            &[("KOODRIVE_GATEWAY__TELEMETRY__SERVICE_NAME", " ")],
            "telemetry.service_name",
        ),
        (
            "",
            &[("KOODRIVE_GATEWAY__SERVER__ADMIN_LISTEN", "0.0.0.0:9901")],
            "server.admin_listen",
        ),
    ];
    for (extra, pairs, expected) in cases {
        let text = format!("{MINIMAL}\n{extra}");
        let message = error_of(&text, pairs);
        assert!(message.contains(expected), "{extra:?} {pairs:?}: {message}");
    }
    let exposed_with_token = Config::parse(
        MINIMAL,
        env(&[
            ("KOODRIVE_GATEWAY__SERVER__ADMIN_LISTEN", "0.0.0.0:9901"),
            ("KOODRIVE_GATEWAY__ADMIN__TOKEN", "t"),
        ]),
    );
    assert!(exposed_with_token.is_ok());
    let no_user = MINIMAL.replace("user_id = \"1505084218764547200\"", "");
    assert!(error_of(&no_user, &[]).contains("auth.user_id"));
    assert!(error_of("[upstream]\n", &[]).contains("upstream.url"));
}

/// Any duration the config takes is one the gateway can add to a clock reading: past 366 days
/// ("for ever" for each of them) a key is refused by name, rather than accepted only to panic
/// every request (`upstream.timeout`) or the breaker (`upstream.breaker_cooldown`).
#[test]
fn durations_are_bounded_by_name() {
    for key in [
        "server.shutdown_grace",
        "server.header_read_timeout",
        "server.idle_timeout",
        "server.max_connection_duration",
        "admin.idle_timeout",
        "admin.header_read_timeout",
        "upstream.connect_timeout",
        "upstream.timeout",
        "upstream.pool_idle_timeout",
        "upstream.breaker_cooldown",
        "auth.file_poll_interval",
        "cache.ttl",
        "cache.stale_while_revalidate",
        "cache.stale_if_error",
    ] {
        let name = format!(
            "KOODRIVE_GATEWAY__{}",
            key.replace('.', "__").to_uppercase()
        );
        let error = error_of(MINIMAL, &[(&name, "500000000000years")]);
        assert!(
            error.contains(key) && error.contains("366 days"),
            "{key}: {error}"
        );
        Config::parse(MINIMAL, env(&[(&name, "366days")])).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A syntax error says where and why, never the line itself: a typo on a secret's line (a
/// backslash TOML does not take, a stray quote) would otherwise put the secret in the log.
#[test]
fn a_toml_syntax_error_never_quotes_the_line() {
    for (line, secret) in [
        (r#"access_token = "TOK-9f2e\q-never-logged""#, "TOK-9f2e"),
        (
            r#"access_token = "TOK-77a1"quoted"-never-logged""#,
            "TOK-77a1",
        ),
    ] {
        let text = format!("[auth]\nmode = \"token\"\n{line}\n");
        let Err(error) = Config::parse(&text, env(&[])) else {
            panic!("accepted: {text}");
        };
        // All of it, as the log's error chain shows it.
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(e) = source {
            chain += &format!(": {e}");
            source = e.source();
        }
        assert!(!chain.contains(secret), "{chain}");
        assert!(chain.contains("line 3, column"), "{chain}");
    }
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = Config::parse(MINIMAL, env(&[("KOODRIVE_GATEWAY__ADMIN__TOKEN", "adm1n")]))
        .unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("secret\""), "{debug}");
    assert!(!debug.contains("adm1n"), "{debug}");
}

#[test]
fn telemetry_defaults_to_no_export() {
    let config = Config::parse(MINIMAL, env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.telemetry.otlp_endpoint.is_none());
    assert_eq!(config.telemetry.service_name, "koodrive-gateway");
}

#[cfg(not(feature = "otlp"))]
#[test]
fn an_otlp_endpoint_without_the_otlp_feature_is_an_error() {
    let set = [(
        "KOODRIVE_GATEWAY__TELEMETRY__OTLP_ENDPOINT",
        "http://127.0.0.1:4318",
    )];
    let message = error_of(MINIMAL, &set);
    assert!(message.contains("telemetry.otlp_endpoint"), "{message}");
    assert!(
        message.contains("built without the otlp feature"),
        "{message}"
    );
}

#[cfg(feature = "otlp")]
#[test]
fn an_otlp_endpoint_is_an_http_url() {
    let config = Config::parse(
        MINIMAL,
        env(&[
            (
                "KOODRIVE_GATEWAY__TELEMETRY__OTLP_ENDPOINT",
                "http://127.0.0.1:4318/",
            ),
            ("KOODRIVE_GATEWAY__TELEMETRY__SERVICE_NAME", "sidecar-7"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = config.telemetry.otlp_endpoint.unwrap();
    assert_eq!(endpoint.authority().unwrap().as_str(), "127.0.0.1:4318");
    assert_eq!(config.telemetry.service_name, "sidecar-7");
    for bad in [
        "ftp://collector:4318",
        "collector:4318",
        "http://c:4318/?x=1",
        "not a url",
    ] {
        let message = error_of(
            MINIMAL,
            &[("KOODRIVE_GATEWAY__TELEMETRY__OTLP_ENDPOINT", bad)],
        );
        assert!(
            message.contains("telemetry.otlp_endpoint"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn the_shipped_example_and_its_commented_rule_are_valid() {
    let example = include_str!("../../config/koodrive-gateway.toml");
    let secret = [("KOODRIVE_GATEWAY__AUTH__APP_SECRET", "s")];
    Config::parse(example, env(&secret)).unwrap_or_else(|e| panic!("{e}"));
    let mut uncommented = String::new();
    let mut in_rule = false;
    for line in example.lines() {
        in_rule |= line.starts_with("# [[normalize.rules]]");
        match line.strip_prefix("# ") {
            Some(rest) if in_rule => uncommented.push_str(rest),
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    let config = Config::parse(&uncommented, env(&secret)).unwrap_or_else(|e| panic!("{e}"));
    let rule = config.normalize.rules.find(
        &http::Method::GET,
        "/koodrive/ose/v1/task/1486254586942472064",
    );
    assert!(rule.is_some_and(|r| r.path() == "/koodrive/ose/v1/task/{id}"));
}

#[test]
fn connection_and_memory_bounds_have_defaults_and_are_checked_by_name() {
    let config = Config::parse(MINIMAL, env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.server.max_connections, 512);
    assert_eq!(config.server.max_buffered_bytes, 48 * 1024 * 1024);
    assert_eq!(
        config.server.max_connection_duration,
        Duration::from_secs(3600)
    );
    assert_eq!(config.admin.max_connections, 64);
    assert_eq!(config.admin.idle_timeout, Duration::from_secs(10));
    assert_eq!(config.admin.header_read_timeout, Duration::from_secs(5));
    for (name, value, key) in [
        (
            "KOODRIVE_GATEWAY__SERVER__IDLE_TIMEOUT",
            "0s",
            "server.idle_timeout",
        ),
        (
            "KOODRIVE_GATEWAY__SERVER__MAX_CONNECTION_DURATION",
            "0s",
            "server.max_connection_duration",
        ),
        (
            "KOODRIVE_GATEWAY__SERVER__MAX_CONNECTIONS",
            "0",
            "server.max_connections",
        ),
        (
            "KOODRIVE_GATEWAY__SERVER__MAX_CONNECTIONS",
            "many",
            "server.max_connections",
        ),
        (
            "KOODRIVE_GATEWAY__SERVER__MAX_BUFFERED_BYTES",
            "1KiB",
            "server.max_buffered_bytes",
        ),
        (
            "KOODRIVE_GATEWAY__ADMIN__MAX_CONNECTIONS",
            "0",
            "admin.max_connections",
        ),
        (
            "KOODRIVE_GATEWAY__ADMIN__IDLE_TIMEOUT",
            "0s",
            "admin.idle_timeout",
        ),
        (
            "KOODRIVE_GATEWAY__ADMIN__HEADER_READ_TIMEOUT",
            "0s",
            "admin.header_read_timeout",
        ),
    ] {
        let message = error_of(MINIMAL, &[(name, value)]);
        assert!(message.contains(key), "{name}={value}: {message}");
    }
    let set = Config::parse(
        MINIMAL,
        env(&[
            ("KOODRIVE_GATEWAY__SERVER__MAX_CONNECTIONS", "9"),
            ("KOODRIVE_GATEWAY__SERVER__MAX_BUFFERED_BYTES", "1MiB"),
            ("KOODRIVE_GATEWAY__ADMIN__IDLE_TIMEOUT", "3s"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.server.max_connections, 9);
    assert_eq!(set.server.max_buffered_bytes, 1024 * 1024);
    assert_eq!(set.admin.idle_timeout, Duration::from_secs(3));
}
