//! The Dockerfile's build stage copies every file cargo needs and every file the binary embeds.

use super::*;

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
