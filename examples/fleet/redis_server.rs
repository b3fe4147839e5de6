//! The bench's `redis-server`: on a free loopback port, no persistence, a password; killed,
//! paused and resumed, restarted empty on the same port; killed when dropped. Faults that need a
//! command (a changed password, a memory limit, a busy server) go through a control connection.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    pub password: String,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(password: &str) -> Result<RedisServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut server = RedisServer {
            port,
            password: password.to_owned(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "local",
            ])
            .args(["--requirepass", &self.password])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server ({e}): apt-get install -y redis-server")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.control().is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not answer".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A connection authenticated with the password the server started with.
    pub fn control(&self) -> redis::RedisResult<redis::Connection> {
        let url = format!("redis://:{}@127.0.0.1:{}", self.password, self.port);
        let client = redis::Client::open(url)?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Killed, then started again on the same port: empty.
    pub fn restart_empty(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Every later connect fails authentication; the open connections are closed.
    pub fn change_password(
        &self,
        conn: &mut redis::Connection,
        to: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("CONFIG")
            .arg(&["SET", "requirepass", to])
            .query::<()>(conn)?;
        for kind in ["normal", "pubsub"] {
            redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", kind, "SKIPME", "yes"])
                .query::<i64>(conn)?;
        }
        Ok(())
    }

    /// Every write is refused with OOM (`maxmemory` of one byte, no eviction), or not.
    pub fn out_of_memory(conn: &mut redis::Connection, on: bool) -> redis::RedisResult<()> {
        redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory-policy", "noeviction"])
            .query::<()>(conn)?;
        let limit = if on { "1" } else { "0" };
        redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory", limit])
            .query::<()>(conn)
    }

    /// A slow server: `DEBUG SLEEP` for `each` in a loop until `stop`, so that most calls wait
    /// behind one (the server runs one command at a time).
    pub fn busy(&self, each: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let conn = self.control();
        std::thread::spawn(move || {
            let Ok(mut conn) = conn else { return };
            while !stop.load(Ordering::Relaxed) {
                let sleep = format!("{:.3}", each.as_secs_f64());
                if redis::cmd("DEBUG")
                    .arg(&["SLEEP", &sleep])
                    .query::<()>(&mut conn)
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

/// The temporary files the gateways read: the fleet key and the Redis password.
pub fn secret_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kg-bench-fleet-{}-{name}", std::process::id()));
    let _ = std::fs::write(&path, text);
    path
}
