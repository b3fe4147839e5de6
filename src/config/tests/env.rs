//! Environment overrides and the variables the gateway does not read.

use super::*;
use crate::config::env::unread;

#[test]
fn environment_overrides_win_and_are_typed() {
    let config = Config::parse(
        MINIMAL,
        env(&[
            ("KOODRIVE_GATEWAY__AUTH__APP_SECRET", "from-env"),
            ("KOODRIVE_GATEWAY__SERVER__MAX_IN_FLIGHT", "12"),
            ("KOODRIVE_GATEWAY__AUTH__OVERRIDE_CLIENT", "true"),
            ("KOODRIVE_GATEWAY__CACHE__TTL", "250ms"),
            ("KOODRIVE_GATEWAY__AUTH__USER_ID", "42"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let SecretSource::Inline(secret) = &config.auth.secret else {
        panic!("not inline")
    };
    assert_eq!(secret.expose(), "from-env");
    assert_eq!(config.server.max_in_flight, 12);
    assert!(config.auth.override_client);
    assert_eq!(config.cache.ttl, Duration::from_millis(250));
    assert_eq!(config.auth.user_id, "42");
}

#[test]
fn environment_errors_name_the_variable() {
    assert_eq!(
        error_of(MINIMAL, &[("KOODRIVE_GATEWAY__FOO", "1")]),
        "KOODRIVE_GATEWAY__FOO: unknown key foo (from the environment); overrides are \
         KOODRIVE_GATEWAY__SECTION__KEY"
    );
    assert_eq!(
        error_of(MINIMAL, &[("KOODRIVE_GATEWAY__SERVER", "x")]),
        "KOODRIVE_GATEWAY__SERVER: unknown key server (from the environment); overrides are \
         KOODRIVE_GATEWAY__SECTION__KEY"
    );
    assert_eq!(
        error_of(
            MINIMAL,
            &[("KOODRIVE_GATEWAY__AUTH__APP_SECRET_FILEE", "/x")]
        ),
        "KOODRIVE_GATEWAY__AUTH__APP_SECRET_FILEE: unknown key auth.app_secret_filee (from the \
         environment); overrides are KOODRIVE_GATEWAY__SECTION__KEY"
    );
    assert_eq!(
        error_of(MINIMAL, &[("KOODRIVE_GATEWAY__SERVER_MAX_BODY", "1")]),
        "KOODRIVE_GATEWAY__SERVER_MAX_BODY: unknown key server_max_body (from the environment); \
         did you mean KOODRIVE_GATEWAY__SERVER__MAX_BODY?"
    );
    assert_eq!(
        error_of(MINIMAL, &[("KOODRIVE_GATEWAY__SERVER__MAX_BODY", "lots")]),
        "server.max_body (from KOODRIVE_GATEWAY__SERVER__MAX_BODY): expected a size such as \
         64MiB or 512KiB, got \"lots\""
    );
    // The same key in error from the file names no variable.
    assert_eq!(
        error_of(&format!("{MINIMAL}[cache]\nttl = \"3\"\n"), &[]),
        "cache.ttl: expected a duration such as 3s, 250ms or 1m, got \"3\""
    );
}

#[test]
fn unread_variables_are_the_near_misses_of_the_prefix() {
    let names = [
        "KOODRIVE_GATEWAY_CACHE_TTL",
        "KOODRIVE_GATEWAY_CONFIG",
        "KOODRIVE_GATEWAY__CACHE__TTL",
        "KOODRIVE_GATEWAYS",
        "OTHER_KOODRIVE_GATEWAY_X",
        "KOODRIVE_GATEWAY_NOPE",
    ];
    let warnings = unread(names.iter().map(|n| n.to_string()), &keys());
    assert_eq!(
        warnings,
        [
            "KOODRIVE_GATEWAY_CACHE_TTL is not read (not a config override); did you mean \
             KOODRIVE_GATEWAY__CACHE__TTL?",
            "KOODRIVE_GATEWAY_NOPE is not read (not a config override); overrides are \
             KOODRIVE_GATEWAY__SECTION__KEY",
        ]
    );
}
