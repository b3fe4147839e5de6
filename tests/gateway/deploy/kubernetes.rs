//! The Kubernetes sidecar manifest: probes, ports, timeouts and resources match the config it mounts.

use super::*;

#[test]
fn kubernetes_sidecar_probes_ports_and_timeouts_match_its_config() {
    let sidecar = check_sidecar("deploy/kubernetes");
    assert!(
        sidecar.config.fleet.is_none(),
        "the plain example is one sidecar"
    );
}

/// The fleet example (`deploy/kubernetes/fleet/`): the same sidecar checks, and its `[fleet]`
/// reads the Redis password and the fleet key from files that a Secret volume mounts, never from
/// the environment or the ConfigMap.
#[test]
fn kubernetes_fleet_sidecar_reads_its_redis_password_and_fleet_key_from_a_mounted_secret() {
    let sidecar = check_sidecar("deploy/kubernetes/fleet");
    let fleet = sidecar
        .config
        .fleet
        .as_ref()
        .expect("[fleet] with a redis_url");
    let password_file = fleet
        .redis_password_file
        .as_ref()
        .expect("fleet.redis_password_file");
    let mounts = seq_of(&sidecar.gateway["volumeMounts"], "volumeMounts");
    let volumes = seq_of(&sidecar.pod["volumes"], "volumes");
    let mut seen = Vec::new();
    for file in [&fleet.key_file, password_file] {
        let file = file.to_str().unwrap();
        let mount = mounts
            .iter()
            .find(|m| file.starts_with(&format!("{}/", str_of(&m["mountPath"], "mountPath"))))
            .unwrap_or_else(|| panic!("no volume mounted over {file}"));
        let path = &file[str_of(&mount["mountPath"], "mountPath").len() + 1..];
        let volume = named(volumes, str_of(&mount["name"], "mount name"));
        let secret = &volume["secret"];
        assert_eq!(
            secret["secretName"], sidecar.secret["metadata"]["name"],
            "{file} comes from the Secret"
        );
        let item = seq_of(&secret["items"], "secret items")
            .iter()
            .find(|item| item["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("no Secret item at {path}"));
        let key = str_of(&item["key"], "item key");
        let value = str_of(&sidecar.secret["stringData"][key], key);
        seen.push(value.to_owned());
        // Not world-readable: the gateway reads it as fsGroup.
        let mode = secret["defaultMode"].as_u64().expect("defaultMode");
        assert_eq!(mode & 0o007, 0, "{file} is world-readable ({mode:o})");
        assert!(mode & 0o040 != 0, "{file} is not group-readable ({mode:o})");
        assert_eq!(
            sidecar.pod["securityContext"]["fsGroup"],
            sidecar.gateway["securityContext"]["runAsGroup"],
            "the Secret's group is the gateway's"
        );
    }
    // The fleet key's placeholder is long enough to pass --check-config once replaced alike.
    assert!(seen[0].len() >= koodrive_gateway::config::fleet::MIN_KEY_BYTES);
    // Neither the ConfigMap nor the environment carries them.
    let toml = serde_yaml::to_string(&sidecar.config_map).unwrap();
    let env = serde_yaml::to_string(&sidecar.gateway["env"]).unwrap();
    for secret in &seen {
        assert!(!toml.contains(secret.as_str()) && !env.contains(secret.as_str()));
    }
    // The Redis the URL names is the ExternalName Service the notes describe.
    let host = fleet
        .redis_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.rsplit('@').next())
        .and_then(|rest| rest.split(':').next())
        .unwrap();
    let service = sidecar
        .documents
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"].as_str() == Some(host))
        .unwrap_or_else(|| panic!("no Service named {host}"));
    assert_eq!(service["spec"]["type"], "ExternalName");
}

/// What [`check_sidecar`] read, for further checks.
struct Sidecar {
    config: Config,
    documents: Vec<Value>,
    config_map: Value,
    secret: Value,
    pod: Value,
    gateway: Value,
}

/// Checks the sidecar Deployment in `dir` against the ConfigMap's config it mounts.
fn check_sidecar(dir: &str) -> Sidecar {
    let mut documents = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path(dir))
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
    Sidecar {
        config,
        config_map: config_map.clone(),
        secret: secret.clone(),
        pod: pod.clone(),
        gateway: gateway.clone(),
        documents: documents.clone(),
    }
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
