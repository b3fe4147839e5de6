//! The binary's configuration as an operator meets it: `--check-config` on files and the files they
//! name, environment overrides (named by their variable when wrong, warned about when unread), and
//! errors that are one line naming the key.

use std::path::PathBuf;

use crate::cli::{temp_config, Process, BIN};
use crate::support::within;

const GOOD: &str = r#"
[upstream]
url = "http://127.0.0.1:1"
[auth]
user_id = "1"
app_id = "a"
app_secret = "s"
"#;

fn example_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/koodrive-gateway.toml")
}

fn check(path: &PathBuf, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(BIN);
    command.arg("--check-config").arg("--config").arg(path);
    command.env_remove("KOODRIVE_GATEWAY_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Appends overlay keys to the matching sections of a base config.
fn merge_text(base: &str, overlay: &str) -> String {
    let mut table: toml::Table = toml::from_str(base).unwrap();
    let over: toml::Table = toml::from_str(overlay).unwrap();
    for (section, values) in over {
        let entry = table
            .entry(section)
            .or_insert(toml::Value::Table(toml::Table::new()));
        entry
            .as_table_mut()
            .unwrap()
            .extend(values.as_table().unwrap().clone());
    }
    toml::to_string(&table).unwrap()
}

/// `--check-config` with `text` as the config file and `env` set; returns (ok, stderr).
fn check_text(name: &str, text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let path = temp_config(name, text);
    let outcome = check(&path, env);
    std::fs::remove_file(path).ok();
    outcome
}

#[test]
fn check_config_accepts_good_files_and_names_the_bad_key() {
    let good = temp_config("good", GOOD);
    assert_eq!(check(&good, &[]), (true, String::new()));
    // The shipped example is complete once the secret comes from the environment.
    let example = example_config();
    let (ok, stderr) = check(&example, &[]);
    assert!(!ok && stderr.contains("auth.app_secret"), "{stderr}");
    assert!(
        check(
            &example,
            &[("KOODRIVE_GATEWAY__AUTH__APP_SECRET", "from-env")]
        )
        .0
    );

    let cases = [
        ("unknown", "[server]\nlistn = \"x\"", "server.listn"),
        ("url", "[upstream]\nurl = \"ftp://x\"", "upstream.url"),
        (
            "duration",
            "[upstream]\ntimeout = \"soon\"",
            "upstream.timeout",
        ),
        ("size", "[cache]\nmax_bytes = \"lots\"", "cache.max_bytes"),
        ("mode", "[auth]\nmode = \"magic\"", "auth.mode"),
        ("addr", "[server]\nlisten = \"localhost\"", "server.listen"),
    ];
    for (name, overlay, key) in cases {
        let text = merge_text(GOOD, overlay);
        let path = temp_config(name, &text);
        let (ok, stderr) = check(&path, &[]);
        assert!(!ok, "{name} passed");
        assert!(stderr.contains(key), "{name}: {stderr}");
        std::fs::remove_file(path).ok();
    }
    std::fs::remove_file(good).ok();
}

#[test]
fn environment_overrides_every_key() {
    let good = temp_config("env", GOOD);
    let (ok, stderr) = check(&good, &[("KOODRIVE_GATEWAY__UPSTREAM__TIMEOUT", "soon")]);
    assert!(!ok && stderr.contains("upstream.timeout"), "{stderr}");
    let (ok, stderr) = check(
        &good,
        &[("KOODRIVE_GATEWAY__SERVER__MAX_IN_FLIGHT", "many")],
    );
    assert!(!ok && stderr.contains("server.max_in_flight"), "{stderr}");
    let (ok, stderr) = check(&good, &[("KOODRIVE_GATEWAY__AUTH__NOPE", "x")]);
    assert!(!ok && stderr.contains("auth.nope"), "{stderr}");
    assert!(check(&good, &[("KOODRIVE_GATEWAY__SERVER__MAX_IN_FLIGHT", "7")]).0);
    std::fs::remove_file(good).ok();
}

/// The environment may hold variables that are not UTF-8 (a locale, a path): only the
/// KOODRIVE_GATEWAY__ ones are read, and one of those that is not UTF-8 is an error naming it,
/// never a panic.
#[test]
fn a_variable_that_is_not_utf8_never_panics_the_gateway() {
    use std::os::unix::ffi::OsStrExt;
    let good = temp_config("non-utf8-env", GOOD);
    for (name, ok) in [
        ("KDGW_UNRELATED", true),
        ("KOODRIVE_GATEWAY__AUTH__APP_ID", false),
    ] {
        let output = std::process::Command::new(BIN)
            .arg("--check-config")
            .arg("--config")
            .arg(&good)
            .env_remove("KOODRIVE_GATEWAY_CONFIG")
            .env(name, std::ffi::OsStr::from_bytes(b"caf\xe9"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(output.status.success(), ok, "{name}: {stderr}");
        if !ok {
            assert!(stderr.contains(name), "{stderr}");
        }
    }
    std::fs::remove_file(good).ok();
}

/// `--check-config` is what a unit's ExecStartPre runs: a secret file or CA file the gateway
/// cannot use would fail the start after binding, so the check fails too, naming the key.
#[test]
fn check_config_reads_the_files_the_config_names() {
    const SECRET: &str = "[auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"\n";
    let cases = [
        (
            "",
            "[auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret_file = \"/nonexistent/kdgw-secret\"\n",
            "auth.app_secret_file",
        ),
        (
            "",
            "[auth]\nmode = \"token\"\nuser_id = \"1\"\naccess_token_file = \"/nonexistent/kdgw-token\"\n",
            "auth.access_token_file",
        ),
        ("ca_file = \"/nonexistent/ca.pem\"\n", SECRET, "upstream.ca_file"),
    ];
    for (i, (upstream, auth, key)) in cases.iter().enumerate() {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{upstream}{auth}");
        let path = temp_config(&format!("files-{i}"), &text);
        let (ok, stderr) = check(&path, &[]);
        assert!(!ok, "{key}: passed");
        assert!(stderr.contains(key), "{key}: {stderr}");
        std::fs::remove_file(path).ok();
    }
    // A readable secret file passes.
    let secret = std::env::temp_dir().join(format!("kdgw-{}-secret", std::process::id()));
    std::fs::write(&secret, "s3cret\n").unwrap();
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret_file = \"{}\"\n",
        secret.display()
    );
    let path = temp_config("files-ok", &text);
    assert_eq!(check(&path, &[]), (true, String::new()));
    std::fs::remove_file(path).ok();
    std::fs::remove_file(secret).ok();
}

#[test]
fn an_environment_override_in_error_is_named_by_its_variable() {
    // A variable that names no key: the variable, not a TOML key the file does not have.
    let (ok, stderr) = check_text("env-unknown", GOOD, &[("KOODRIVE_GATEWAY__FOO", "1")]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("KOODRIVE_GATEWAY__FOO: unknown key foo (from the environment)"),
        "{stderr}"
    );
    assert!(!stderr.contains("unknown field"), "{stderr}");
    // One spelt with single underscores between the words: the variable meant.
    let (ok, stderr) = check_text("env-near", GOOD, &[("KOODRIVE_GATEWAY__CACHE_TTL", "1s")]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("KOODRIVE_GATEWAY__CACHE_TTL")
            && stderr.contains("did you mean KOODRIVE_GATEWAY__CACHE__TTL?"),
        "{stderr}"
    );
    // A bad value from the environment: its key and the variable it came from.
    let (ok, stderr) = check_text("env-value", GOOD, &[("KOODRIVE_GATEWAY__CACHE__TTL", "3")]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("cache.ttl (from KOODRIVE_GATEWAY__CACHE__TTL): expected a duration"),
        "{stderr}"
    );
}

#[test]
fn a_variable_the_gateway_does_not_read_is_warned_about() {
    // One underscore after the prefix: not an override. The check passes (the file is good)
    // but says the variable was not read, and which one would have been.
    let (ok, stderr) = check_text("env-single", GOOD, &[("KOODRIVE_GATEWAY_CACHE_TTL", "1s")]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: KOODRIVE_GATEWAY_CACHE_TTL is not read")
            && stderr.contains("did you mean KOODRIVE_GATEWAY__CACHE__TTL?"),
        "{stderr}"
    );
    let (ok, stderr) = check_text("env-stray", GOOD, &[("KOODRIVE_GATEWAY_COLOUR", "red")]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: KOODRIVE_GATEWAY_COLOUR is not read")
            && stderr.contains("KOODRIVE_GATEWAY__SECTION__KEY"),
        "{stderr}"
    );
    // KOODRIVE_GATEWAY_CONFIG is read: no warning.
    let path = temp_config("env-config", GOOD);
    let output = std::process::Command::new(BIN)
        .arg("--check-config")
        .env("KOODRIVE_GATEWAY_CONFIG", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{stderr}");
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn a_start_warns_about_a_variable_it_does_not_read() {
    let path = temp_config(
        "env-start",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"http://127.0.0.1:1\"\n\
         [auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"t\"\n",
    );
    let mut process = Process::spawn_capturing_stderr(
        &["--config", path.to_str().unwrap()],
        &[("KOODRIVE_GATEWAY_SERVER_MAX_IN_FLIGHT", "5")],
    );
    process.listening().await;
    process.sigterm();
    let status = within("exit after SIGTERM", process.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let stderr = process.stderr().await;
    assert!(
        stderr.contains("KOODRIVE_GATEWAY_SERVER_MAX_IN_FLIGHT is not read")
            && stderr.contains("did you mean KOODRIVE_GATEWAY__SERVER__MAX_IN_FLIGHT?"),
        "{stderr}"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn size_and_duration_errors_say_what_is_accepted_and_name_the_key_once() {
    for (name, overlay, key, expected) in [
        (
            "megs",
            "[cache]\nmax_bytes = \"64 megs\"",
            "cache.max_bytes",
            "cache.max_bytes: expected a size such as 64MiB or 512KiB, got \"64 megs\"",
        ),
        (
            "unitless",
            "[upstream]\ntimeout = \"3\"",
            "upstream.timeout",
            "upstream.timeout: expected a duration such as 3s, 250ms or 1m, got \"3\"",
        ),
    ] {
        let (ok, stderr) = check_text(name, &merge_text(GOOD, overlay), &[]);
        assert!(!ok, "{name}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert_eq!(stderr.matches(key).count(), 1, "{name}: {stderr}");
    }
}

/// `--check-config`, a start and `--demo --config` report a missing secret file alike: one line
/// naming the key and the file.
#[tokio::test]
async fn a_missing_secret_file_is_one_message_naming_its_key_everywhere() {
    let path = temp_config(
        "missing-secret",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"http://127.0.0.1:1\"\n\
         [auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret_file = \"/nonexistent/kdgw-secret\"\n",
    );
    let config = path.to_str().unwrap();
    let mut messages = Vec::new();
    for args in [
        &["--check-config", "--config", config][..],
        &["--config", config][..],
        &["--demo", "--config", config][..],
    ] {
        let mut process = Process::spawn_capturing_stderr(args, &[]);
        let status = within("exit on a missing secret file", process.child.wait())
            .await
            .unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}");
        let stderr = process.stderr().await;
        assert!(
            stderr.contains("auth.app_secret_file: cannot read /nonexistent/kdgw-secret"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        messages.push(stderr);
    }
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    std::fs::remove_file(path).ok();
}

/// With RUST_BACKTRACE=1 (common on developer machines) an operator's exit is one line, no
/// backtrace: no config, a bad config, an unreadable one.
#[test]
fn operator_errors_print_one_line_and_no_backtrace() {
    let bad = temp_config(
        "backtrace-bad",
        &merge_text(GOOD, "[cache]\nttl = \"soon\""),
    );
    let bad = bad.to_str().unwrap().to_owned();
    for args in [
        &[][..],
        &["--config", bad.as_str()][..],
        &["--check-config", "--config", bad.as_str()][..],
        &["--config", "/nonexistent/kdgw.toml"][..],
    ] {
        let output = std::process::Command::new(BIN)
            .args(args)
            .env_remove("KOODRIVE_GATEWAY_CONFIG")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("stack backtrace"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("koodrive-gateway: "),
            "{args:?}: {stderr}"
        );
    }
    std::fs::remove_file(bad).ok();
}
