//! Real programs the tests drive (Prometheus and promtool; others to come), installed from Debian
//! when missing, so that `cargo test --locked` on a fresh machine sets up what it needs. Installs
//! are serialised and tried once per process; a program that cannot be installed fails its test
//! with the command that installs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

#[derive(Default)]
struct Installs {
    /// `apt-get update` has run in this process.
    updated: bool,
    /// Packages tried already, and why each failed (nothing when it was installed).
    tried: HashMap<String, Option<String>>,
}

static INSTALLS: Mutex<Option<Installs>> = Mutex::new(None);

/// The path of `program`, installing Debian's `package` first if it is not on `PATH`. Blocks (an
/// install takes a minute); call it before the test starts its servers.
pub fn require(program: &str, package: &str) -> PathBuf {
    if let Some(path) = on_path(program) {
        return path;
    }
    let mut guard = INSTALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let installs = guard.get_or_insert_with(Installs::default);
    // Another test may have installed it while this one waited for the lock.
    if let Some(path) = on_path(program) {
        return path;
    }
    if !installs.tried.contains_key(package) {
        let failure = install(package, &mut installs.updated).err();
        installs.tried.insert(package.to_owned(), failure);
    }
    let why = match &installs.tried[package] {
        Some(why) => why.clone(),
        None => format!("`{package}` was installed, but `{program}` is not on PATH"),
    };
    on_path(program).unwrap_or_else(|| {
        panic!(
            "this test needs `{program}` and could not install it: {why}\n\
             install it with `apt-get install -y {package}` (as root), then run the tests again"
        )
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `apt-get update` (once per process), then `apt-get install -y package`. A package's
/// postinst that tries to start a service does not matter: the tests start their own.
fn install(package: &str, updated: &mut bool) -> Result<(), String> {
    eprintln!("installing `{package}` from Debian for the tests (apt-get install -y {package})");
    // A failed update (a mirror down) need not fail the install: the lists may be recent enough.
    let mut update = Ok(());
    if !*updated {
        update = apt(&["update", "-q"]);
        *updated = true;
    }
    apt(&["install", "-y", "-q", "--no-install-recommends", package]).map_err(
        |install| match update {
            Ok(()) => install,
            Err(update) => format!("{update}; then {install}"),
        },
    )
}

fn apt(args: &[&str]) -> Result<(), String> {
    let output: Output = Command::new("apt-get")
        // Another apt run on the machine holds the lock for a while: wait for it.
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(format!(
        "`apt-get {}` failed ({}): {}",
        args.join(" "),
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}
