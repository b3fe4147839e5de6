//! The binary itself: `--help`, `--demo`, logs carrying the trace id (and never a secret), SIGTERM
//! exiting 0, and a crowd of idle connections. Shared helpers to run it as a process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use crate::support::{within, Client, Mock, Reply, TASK_LIST};

mod idle_connections;
mod logs;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_koodrive-gateway");

pub(crate) fn temp_config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kdgw-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn help_documents_the_modes() {
    let output = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--config",
        "--demo",
        "--fleet",
        "--check-config",
        "KOODRIVE_GATEWAY__",
        "KOODRIVE_GATEWAY_CONFIG",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

pub(crate) struct Process {
    pub(crate) child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
    /// Captured by [`Process::spawn_capturing_stderr`]; otherwise inherited.
    stderr: Option<ChildStderr>,
}

impl Process {
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::spawn_with(args, env, Stdio::inherit())
    }

    /// As [`Process::spawn`], keeping stderr for [`Process::stderr`] (it must be read after the
    /// exit: the process writes little there, so the pipe never fills).
    pub(crate) fn spawn_capturing_stderr(args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::spawn_with(args, env, Stdio::piped())
    }

    fn spawn_with(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Process {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("KOODRIVE_GATEWAY_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Process {
            stderr: child.stderr.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// What the process wrote to stderr, read to its end (call once it has exited).
    pub(crate) async fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(stderr) = self.stderr.as_mut() {
            within(
                "stderr to end",
                tokio::io::AsyncReadExt::read_to_string(stderr, &mut text),
            )
            .await
            .unwrap();
        }
        text
    }

    /// Reads stdout until a line contains `needle`; returns the lines read, that one last.
    pub(crate) async fn lines_until(&mut self, needle: &str) -> Vec<String> {
        let from = self.seen.len();
        self.line_with(needle).await;
        self.seen[from..].to_vec()
    }

    /// Reads stdout until a line contains `needle`; returns that line.
    pub(crate) async fn line_with(&mut self, needle: &str) -> String {
        within(needle, async {
            loop {
                let line = self.lines.next_line().await.unwrap().expect("stdout ended");
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
    }

    /// Waits for the `--demo` banner, through its "try: curl" line; returns the gateway's address.
    pub(crate) async fn demo_banner(&mut self) -> std::net::SocketAddr {
        let banner = self.line_with("gateway on http://").await;
        let addr = banner
            .split("gateway on http://")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .unwrap()
            .parse()
            .unwrap();
        self.line_with("curl").await;
        addr
    }

    /// Waits for the JSON "listening" line; returns the proxy and admin addresses.
    pub(crate) async fn listening(&mut self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let line = self.line_with("koodrive-gateway listening").await;
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = |key: &str| json[key].as_str().unwrap().parse().unwrap();
        (addr("addr"), addr("admin_addr"))
    }

    pub(crate) async fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        self.sigterm();
        self.exited().await
    }

    pub(crate) fn sigterm(&self) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit (a stop already sent); returns its status and every line.
    /// Its output is read meanwhile: a gateway whose stdout pipe is full waits for it to drain
    /// (its log writer flushes on the way out), so a test that left many lines unread would
    /// otherwise never see it exit.
    pub(crate) async fn exited(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let (child, lines, seen) = (&mut self.child, &mut self.lines, &mut self.seen);
        let read_all = async {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line);
            }
        };
        let (status, ()) = within("exit after SIGTERM", async {
            tokio::join!(child.wait(), read_all)
        })
        .await;
        (status.unwrap(), self.seen)
    }
}

/// A gateway process in token mode in front of `mock`, logging JSON at `rust_log`; `upstream`
/// adds lines to its `[upstream]` table. Returns the process and its config file.
pub(crate) fn json_logging_gateway(
    name: &str,
    mock: &Mock,
    upstream: &str,
    token: &str,
    rust_log: &str,
) -> (Process, PathBuf) {
    let config = temp_config(
        name,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n{upstream}\
             [auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"{token}\"\n\
             [log]\nformat = \"json\"\n",
            mock.url()
        ),
    );
    let process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", rust_log)],
    );
    (process, config)
}

#[tokio::test]
async fn demo_serves_the_task_list_through_the_embedded_mock() {
    let mut process = Process::spawn(
        &["--demo"],
        &[
            ("KOODRIVE_GATEWAY__SERVER__LISTEN", "127.0.0.1:0"),
            ("KOODRIVE_GATEWAY__SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let addr = process.demo_banner().await;
    let client = Client::new(addr);
    let response = client
        .get(&format!("{TASK_LIST}?taskType=0&pageSize=5"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let json = response.json();
    let page = json
        .get("taskList")
        .or_else(|| json.get("taskListDtos"))
        .unwrap();
    assert_eq!(page.as_array().unwrap().len(), 5);
    let (status, _) = process.terminate().await;
    assert!(status.success());
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
