//! The systemd unit: hardened, checks its config before starting, reloads with SIGHUP.

use super::*;

#[test]
fn systemd_unit_is_hardened_checks_config_and_reloads_with_hup() {
    let unit = read("deploy/systemd/koodrive-gateway.service");
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let value = |key: &str| -> &str {
        let prefix = format!("{key}=");
        settings
            .iter()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("unit lacks {key}="))
    };
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("KillSignal", "SIGTERM"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value(key), expected, "{key}");
    }
    assert!(value("ExecReload").contains("-HUP $MAINPID"));

    let config_file = "--config /etc/koodrive-gateway/koodrive-gateway.toml";
    assert!(value("ExecStart").ends_with(config_file));
    let pre = value("ExecStartPre");
    assert!(
        pre.contains("--check-config") && pre.ends_with(config_file),
        "{pre}"
    );

    // The unit installs the shipped example config; SIGKILL must wait out its drain.
    let example = Config::parse(
        &read("config/koodrive-gateway.toml"),
        [(APP_SECRET_ENV.to_owned(), "s".to_owned())],
    )
    .unwrap();
    let stop = duration(value("TimeoutStopSec"));
    assert!(stop > example.server.shutdown_grace, "{stop:?}");
}
