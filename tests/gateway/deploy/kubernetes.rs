//! The Kubernetes sidecar manifest: probes, ports, timeouts and resources match the config it mounts.

use super::*;

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
