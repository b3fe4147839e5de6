//! A real `redis-server` per test, on a free loopback port, without persistence: started,
//! killed, paused (SIGSTOP) and resumed, restarted empty on the same port; killed when dropped.
//! A small RESP client inspects and alters its keys. `redis-server` is installed from Debian
//! when missing (see `packages`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::packages::require;

pub struct RedisServer {
    pub port: u16,
    /// A TLS port beside the plain one (which the test's own client uses), when started so.
    pub tls_port: Option<u16>,
    tls_files: Option<(PathBuf, PathBuf)>,
    password: Option<String>,
    child: Option<Child>,
    binary: PathBuf,
    /// Where `SAVE` writes its snapshot, which a restart loads.
    dir: PathBuf,
}

/// A reply, as far as the tests read one.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Ok(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl RedisServer {
    pub fn start(password: Option<&str>) -> RedisServer {
        let binary = require("redis-server", "redis-server");
        let port = free_port();
        let mut server = RedisServer {
            port,
            tls_port: None,
            tls_files: None,
            password: password.map(str::to_owned),
            child: None,
            binary,
            dir: scratch_dir(),
        };
        server.spawn();
        server
    }

    /// A server that also speaks TLS, with this certificate chain and key (PEM files).
    pub fn start_tls(cert: PathBuf, key: PathBuf) -> RedisServer {
        let binary = require("redis-server", "redis-server");
        let mut server = RedisServer {
            port: free_port(),
            tls_port: Some(free_port()),
            tls_files: Some((cert, key)),
            password: None,
            child: None,
            binary,
            dir: scratch_dir(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        command.arg("--dir").arg(&self.dir);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if let (Some(port), Some((cert, key))) = (self.tls_port, &self.tls_files) {
            command.args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"]);
            command.arg("--tls-cert-file").arg(cert);
            command.arg("--tls-key-file").arg(key);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.try_command(&["PING"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A killed server started again on the same port: empty.
    pub fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.spawn();
    }

    /// A killed server started again on the same port with the data of its last `SAVE`, as a
    /// replica that missed the latest writes takes over in a failover.
    pub fn restart_from_snapshot(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Pauses the server (SIGSTOP): connections stay open, nothing answers.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// One command; panics when it cannot be sent.
    pub fn command(&self, args: &[&str]) -> Resp {
        self.try_command(args).expect("redis answers")
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&["KEYS", pattern]) {
            Resp::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Resp::Bulk(Some(bytes)) => String::from_utf8(bytes).ok(),
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.command(&["GET", key]) {
            Resp::Bulk(value) => value,
            other => panic!("GET answered {other:?}"),
        }
    }

    /// SET with raw bytes as the value, keeping the key's expiry.
    pub fn set_bytes(&self, key: &str, value: &[u8]) {
        let mut request = resp_header(4);
        for part in [&b"SET"[..], key.as_bytes(), value, b"KEEPTTL"] {
            request.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            request.extend_from_slice(part);
            request.extend_from_slice(b"\r\n");
        }
        let reply = self.round_trip(&request).expect("redis answers");
        assert_eq!(reply, Resp::Ok("OK".into()));
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<Resp> {
        let mut request = resp_header(args.len());
        for arg in args {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        self.round_trip(&request)
    }

    fn round_trip(&self, request: &[u8]) -> std::io::Result<Resp> {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        if let Some(password) = &self.password {
            let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
            stream.write_all(auth.as_bytes())?;
        }
        stream.write_all(request)?;
        let mut reader = BufReader::new(stream);
        if self.password.is_some() {
            read_reply(&mut reader)?;
        }
        read_reply(&mut reader)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server would not die of SIGKILL any later than now, but resume it anyway.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn resp_header(len: usize) -> Vec<u8> {
    format!("*{len}\r\n").into_bytes()
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Resp::Ok(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut value = vec![0; len as usize + 2];
                reader.read_exact(&mut value)?;
                value.truncate(len as usize);
                Resp::Bulk(Some(value))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_reply(reader)?);
            }
            Resp::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// A fresh directory for one server's snapshot.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kg-redis-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port free on loopback now (bound, then released for redis-server to take).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
