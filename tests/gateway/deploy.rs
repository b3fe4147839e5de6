//! The deployment files under `deploy/` agree with the gateway they deploy: every config they ship
//! passes the gateway's own validation, and the ports, probe paths, base URLs and stop timeouts
//! around it point at what that config actually says.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use koodrive_gateway::config::Config;
use serde::Deserialize;
use serde_yaml::Value;

const APP_SECRET_ENV: &str = "KOODRIVE_GATEWAY__AUTH__APP_SECRET";
const ADMIN_TOKEN_ENV: &str = "KOODRIVE_GATEWAY__ADMIN__TOKEN";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (possibly multi-document) YAML file.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|document| !document.is_null())
        .collect()
}

/// The secrets as an operator supplies them through the environment.
fn secret_env() -> Vec<(String, String)> {
    vec![
        (APP_SECRET_ENV.into(), "app-secret-from-env".into()),
        (ADMIN_TOKEN_ENV.into(), "admin-token-from-env".into()),
    ]
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {value:?}"))
}

fn seq_of<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what}: expected a list, got {value:?}"))
}

fn named<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no entry named {name}"))
}

fn port_of(url: &str) -> u16 {
    let uri: Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(
        matches!(uri.host(), Some("127.0.0.1" | "localhost")),
        "{url}: the app should reach its sidecar over loopback"
    );
    uri.port_u16()
        .unwrap_or_else(|| panic!("{url}: no explicit port"))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn kubernetes_sidecar_probes_ports_and_timeouts_match_its_config() {
    let mut documents = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("deploy/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    for file in &files {
        let relative = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        for document in yaml_documents(relative.to_str().unwrap()) {
            str_of(&document["apiVersion"], "apiVersion");
            str_of(&document["kind"], "kind");
            documents.push(document);
        }
    }
    let of_kind = |kind: &str| -> &Value {
        let mut found = documents
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind));
        let first = found.next().unwrap_or_else(|| panic!("no {kind}"));
        assert!(found.next().is_none(), "more than one {kind}");
        first
    };
    let config_map = of_kind("ConfigMap");
    let secret = of_kind("Secret");
    let deployment = of_kind("Deployment");

    let pod = &deployment["spec"]["template"]["spec"];
    let containers = seq_of(&pod["containers"], "containers");
    let gateway = named(containers, "koodrive-gateway");
    let app = containers
        .iter()
        .find(|c| c["name"].as_str() != Some("koodrive-gateway"))
        .expect("an app container next to the gateway");

    // The config file the gateway reads is the ConfigMap key, mounted where --config points.
    let args: Vec<&str> = seq_of(&gateway["args"], "gateway args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let config_path = args
        .windows(2)
        .find(|pair| pair[0] == "--config")
        .map(|pair| pair[1])
        .expect("--config PATH in the gateway args");
    let mount = seq_of(&gateway["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| config_path.starts_with(str_of(&m["mountPath"], "mountPath")))
        .expect("a volume mounted over the --config path");
    let key = config_path
        .strip_prefix(str_of(&mount["mountPath"], "mountPath"))
        .unwrap()
        .trim_start_matches('/');
    let volume = named(
        seq_of(&pod["volumes"], "volumes"),
        str_of(&mount["name"], "mount name"),
    );
    assert_eq!(
        volume["configMap"]["name"], config_map["metadata"]["name"],
        "the mounted volume is the ConfigMap"
    );
    let toml = str_of(&config_map["data"][key], "ConfigMap TOML");

    // Secrets reach the gateway through secretKeyRef, exactly as the kubelet would resolve them.
    let mut env = Vec::new();
    for var in seq_of(&gateway["env"], "gateway env") {
        let name = str_of(&var["name"], "env name").to_owned();
        let value = match &var["valueFrom"]["secretKeyRef"] {
            Value::Null => str_of(&var["value"], &name).to_owned(),
            reference => {
                assert_eq!(reference["name"], secret["metadata"]["name"], "{name}");
                let key = str_of(&reference["key"], "secretKeyRef key");
                str_of(&secret["stringData"][key], key).to_owned()
            }
        };
        env.push((name, value));
    }
    for required in [APP_SECRET_ENV, ADMIN_TOKEN_ENV] {
        assert!(
            env.iter().any(|(name, _)| name == required),
            "gateway env lacks {required}"
        );
    }
    let config = Config::parse(toml, env).expect("the ConfigMap's config validates");

    // Probes: kubelet hits the pod IP on the admin port, at /healthz and /readyz.
    let admin_port = config.server.admin_listen.port();
    assert!(!config.server.admin_listen.ip().is_loopback());
    assert!(
        config.server.listen.ip().is_loopback(),
        "proxy stays in-pod"
    );
    let ports = seq_of(&gateway["ports"], "gateway ports");
    let resolve = |port: &Value| -> u16 {
        match port {
            Value::Number(n) => u16::try_from(n.as_u64().unwrap()).unwrap(),
            Value::String(name) => {
                let port = named(ports, name)["containerPort"].as_u64().unwrap();
                u16::try_from(port).unwrap()
            }
            other => panic!("probe port {other:?}"),
        }
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &gateway[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), path, "{probe} path");
        assert_eq!(resolve(&get["port"]), admin_port, "{probe} port");
    }

    // The app talks to the proxy listener.
    let base_url = named(seq_of(&app["env"], "app env"), "KOODRIVE_BASE_URL");
    assert_eq!(
        port_of(str_of(&base_url["value"], "KOODRIVE_BASE_URL")),
        config.server.listen.port()
    );

    // Termination: preStop sleep, then SIGTERM and a drain of up to shutdown_grace, before SIGKILL.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let pre_stop = gateway["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        Duration::from_secs(grace) > Duration::from_secs(pre_stop) + config.server.shutdown_grace,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop}s + shutdown_grace {:?}",
        config.server.shutdown_grace
    );

    // Hardening and resources.
    let security = &gateway["securityContext"];
    assert_eq!(security["runAsNonRoot"], Value::Bool(true));
    assert_eq!(security["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(security["allowPrivilegeEscalation"], Value::Bool(false));
    assert!(seq_of(&security["capabilities"]["drop"], "drop").contains(&"ALL".into()));
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !gateway["resources"][bound][resource].is_null(),
                "resources.{bound}.{resource}"
            );
        }
    }

    // The memory limit holds the worst case the config allows (README "Worst-case memory"):
    // no mix of clients within the config's limits can get the sidecar killed.
    let limits = &gateway["resources"]["limits"];
    let limit = quantity(str_of(&limits["memory"], "limits.memory"));
    let cores = str_of(&limits["cpu"], "limits.cpu")
        .parse::<f64>()
        .map_or(1, |cpus| cpus.ceil() as u64);
    let worst: u64 = config
        .worst_case_memory(cores)
        .iter()
        .map(|(_, bytes)| bytes)
        .sum();
    assert!(
        worst <= limit,
        "worst case {} MiB over the memory limit {} MiB: {:?}",
        worst >> 20,
        limit >> 20,
        config.worst_case_memory(cores)
    );
    // The defaults are what the README's table adds up: the manifest holds them too.
    let defaults = Config::parse(
        "[upstream]\nurl = \"https://x.example\"\n[auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"\n",
        Vec::new(),
    )
    .unwrap();
    let worst: u64 = defaults
        .worst_case_memory(cores)
        .iter()
        .map(|(_, bytes)| bytes)
        .sum();
    assert!(worst <= limit, "defaults: {} MiB", worst >> 20);
    // The README's table states the same sum.
    let readme = read("README.md");
    let stated = format!("| **sum** | | **{} MiB** |", worst >> 20);
    assert!(
        readme.contains(&stated),
        "README's worst-case sum is not {stated}"
    );
}

/// A Kubernetes memory quantity in bytes (`512Mi`, `1Gi`, `300M`).
fn quantity(text: &str) -> u64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("{text}: unit {other}"),
    };
    number * scale
}

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

/// A Dockerfile's instructions, `\` continuations joined, comments and blank lines dropped, split
/// into stages at each `FROM`.
fn dockerfile_stages(relative: &str) -> Vec<Vec<String>> {
    let text = read(relative).replace("\\\n", " ");
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("FROM ") {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .unwrap_or_else(|| panic!("{relative}: an instruction before the first FROM: {line}"))
            .push(line.to_owned());
    }
    stages
}

/// A `COPY` instruction's sources and destination; `None` for `COPY --from=...` (another stage's
/// files, not the build context's).
fn copy_of(instruction: &str) -> Option<(Vec<String>, String)> {
    let args = instruction.strip_prefix("COPY ")?;
    assert!(
        !args.trim_start().starts_with('['),
        "the JSON form of COPY is not read by this test: {instruction}"
    );
    let mut words: Vec<&str> = args.split_whitespace().collect();
    if words.iter().any(|w| w.starts_with("--from=")) {
        return None;
    }
    words.retain(|w| !w.starts_with("--"));
    let (dest, sources) = words.split_last().expect("COPY has a destination");
    assert!(!sources.is_empty(), "COPY without a source: {instruction}");
    for source in sources {
        assert!(
            !source.contains(['*', '?', '[']),
            "globs in COPY are not read by this test: {instruction}"
        );
    }
    Some((
        sources.iter().map(|s| s.to_string()).collect(),
        dest.to_string(),
    ))
}

/// Paths `.dockerignore` leaves out of the build context (its plain entries; no wildcards in it).
fn docker_ignored() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            assert!(
                !line.contains(['*', '?', '[', '!']),
                ".dockerignore patterns are not read by this test: {line}"
            );
            line.trim_matches('/').to_owned()
        })
        .collect()
}

/// Copies `from` (a file or a directory's contents) to `to` as `COPY` does, leaving out what
/// `.dockerignore` does (`relative` is `from`'s path in the build context).
fn copy_into_context(
    from: &std::path::Path,
    relative: &str,
    to: &std::path::Path,
    ignored: &[String],
) {
    if ignored
        .iter()
        .any(|i| relative == i || relative.starts_with(&format!("{i}/")))
    {
        return;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let child = match relative {
                "." | "" => name.clone(),
                _ => format!("{relative}/{name}"),
            };
            copy_into_context(&entry.path(), &child, &to.join(&name), ignored);
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// A target cargo sees: (package, kind, name, source path relative to the workspace root).
type CargoTarget = (String, String, String, PathBuf);

/// The targets `cargo metadata` finds in the workspace at `dir`, offline, from its Cargo.lock, and
/// each package's manifest.
fn cargo_targets(dir: &std::path::Path) -> (Vec<CargoTarget>, Vec<(String, PathBuf)>) {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--offline",
            "--locked",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let root = PathBuf::from(metadata["workspace_root"].as_str().unwrap());
    let mut targets = Vec::new();
    let mut manifests = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        manifests.push((
            package["name"].as_str().unwrap().to_owned(),
            PathBuf::from(package["manifest_path"].as_str().unwrap()),
        ));
        for target in package["targets"].as_array().unwrap() {
            for kind in target["kind"].as_array().unwrap() {
                let path = PathBuf::from(target["src_path"].as_str().unwrap());
                targets.push((
                    package["name"].as_str().unwrap().to_owned(),
                    kind.as_str().unwrap().to_owned(),
                    target["name"].as_str().unwrap().to_owned(),
                    path.strip_prefix(&root).unwrap().to_owned(),
                ));
            }
        }
    }
    (targets, manifests)
}

/// The targets a manifest declares by name (`[[bin]]`, `[[example]]`, `[[test]]`, `[[bench]]`):
/// cargo refuses to load the manifest when one of their files is missing, whatever it builds.
fn declared_targets(manifest: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let mut declared = Vec::new();
    for (section, kind) in [
        ("bin", "bin"),
        ("example", "example"),
        ("test", "test"),
        ("bench", "bench"),
    ] {
        for target in table
            .get(section)
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            let name = target["name"].as_str().unwrap().to_owned();
            declared.push((kind.to_owned(), name));
        }
    }
    declared
}

/// The files `include_str!`/`include_bytes!` name in the Rust sources under `dir`, as paths that
/// must exist, resolved against the including file.
fn included_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension() != Some(std::ffi::OsStr::new("rs")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for macro_call in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(macro_call) {
                let rest = &text[at + macro_call.len()..];
                let literal = &rest[..rest.find('"').unwrap()];
                found.push(path.parent().unwrap().join(literal));
            }
        }
    }
    found
}

/// `docker build` cannot run here, so the build stage's context is assembled as its `COPY` lines
/// assemble it, and cargo is asked there what it would be asked in the image: the manifest and
/// lock load offline, and every target the build needs (the library and binaries, and any target
/// a manifest declares by name) is found where it is in the repository, as is every file the
/// sources include. Derived from Cargo.toml, so a new declared target or workspace member the
/// Dockerfile does not copy fails here.
#[test]
fn dockerfile_build_stage_copies_everything_cargo_needs() {
    let stages = dockerfile_stages("deploy/Dockerfile");
    let [build, .., runtime] = stages.as_slice() else {
        panic!("deploy/Dockerfile has a build stage and a runtime stage");
    };
    let workdir = build
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("WORKDIR "))
        .expect("a WORKDIR in the build stage")
        .trim()
        .to_owned();
    assert!(
        build
            .iter()
            .any(|i| i.contains("cargo build") && i.contains("--locked")),
        "the build stage runs cargo build --locked"
    );
    let ignored = docker_ignored();
    let context = std::env::temp_dir().join(format!("kdgw-docker-context-{}", std::process::id()));
    std::fs::remove_dir_all(&context).ok();
    std::fs::create_dir_all(&context).unwrap();
    for (sources, dest) in build.iter().filter_map(|i| copy_of(i)) {
        let dest_dir = dest.ends_with('/') || sources.len() > 1;
        let dest = match dest.strip_prefix('/') {
            Some(absolute) => {
                let under = workdir.trim_matches('/');
                match absolute.strip_prefix(under) {
                    Some(inside) => inside.trim_start_matches('/').to_owned(),
                    // Outside the build directory: not part of what cargo sees.
                    None => continue,
                }
            }
            None => dest.clone(),
        };
        for source in &sources {
            let from = repo_path(source);
            assert!(
                from.exists(),
                "the build stage copies {source}, which does not exist"
            );
            let relative = source.trim_end_matches('/');
            let to = match dest_dir && from.is_file() {
                true => context.join(&dest).join(from.file_name().unwrap()),
                false => context.join(&dest),
            };
            copy_into_context(&from, relative, &to, &ignored);
        }
    }

    let (repository, manifests) = cargo_targets(&repo_path(""));
    let (in_image, _) = cargo_targets(&context);
    // Every package's manifest: the root's, and any workspace member's.
    let declared: Vec<(String, String, String)> = manifests
        .iter()
        .flat_map(|(package, manifest)| {
            declared_targets(manifest)
                .into_iter()
                .map(|(kind, name)| (package.clone(), kind, name))
        })
        .collect();
    let needed: Vec<&CargoTarget> = repository
        .iter()
        .filter(|(package, kind, name, _)| {
            !matches!(kind.as_str(), "example" | "test" | "bench")
                || declared.contains(&(package.clone(), kind.clone(), name.clone()))
        })
        .collect();
    let missing: Vec<String> = needed
        .iter()
        .filter(|target| !in_image.contains(target))
        .map(|(package, kind, name, path)| {
            format!("{package} {kind} `{name}` ({})", path.display())
        })
        .collect();
    for file in included_files(&context) {
        assert!(
            file.exists(),
            "the sources include {}, which the build stage does not copy",
            file.strip_prefix(&context).unwrap_or(&file).display()
        );
    }
    std::fs::remove_dir_all(&context).ok();
    assert!(
        missing.is_empty(),
        "deploy/Dockerfile's build stage does not copy what cargo needs: {missing:?}"
    );

    // The runtime stage's own COPY sources come from the build context too.
    for (sources, _) in runtime.iter().filter_map(|i| copy_of(i)) {
        for source in sources {
            assert!(
                repo_path(&source).exists(),
                "the runtime stage copies {source}, which does not exist"
            );
        }
    }
}

/// deploy/README.md: `docker build -f deploy/Dockerfile -t koodrive-gateway:0.1.0 .` builds the
/// image. The build stage copies only Cargo.toml, Cargo.lock, src/ and benches/, but src/main.rs
/// embeds `include_str!("../config/demo.toml")`, so `cargo build` in the image cannot find it.
#[test]
fn the_dockerfile_build_stage_copies_every_file_the_binary_embeds() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    // Sources of COPY lines before the runtime stage (no --from).
    let build_stage = dockerfile.split("FROM debian").next().unwrap();
    let copied: Vec<String> = build_stage
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|l| !l.contains("--from"))
        .flat_map(|l| {
            let mut parts: Vec<&str> = l.split_whitespace().collect();
            parts.pop(); // the destination
            parts
                .into_iter()
                .map(|p| p.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let main = std::fs::read_to_string(root.join("src/main.rs")).unwrap();
    for piece in main.split("include_str!(\"").skip(1) {
        let relative = piece.split('"').next().unwrap();
        // Relative to src/: "../config/demo.toml" -> "config/demo.toml".
        let from_root = relative.strip_prefix("../").unwrap_or(relative);
        assert!(
            copied
                .iter()
                .any(|c| from_root == c || from_root.starts_with(&format!("{c}/"))),
            "src/main.rs embeds {from_root}, which deploy/Dockerfile's build stage never copies \
             (it copies {copied:?})"
        );
    }
}
