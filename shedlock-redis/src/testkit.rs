//! Test support: a private `redis-server` on a free port, started by the test.
//!
//! Tests talk to a real Redis, never a mock. Setting `SHEDLOCK_TEST_REDIS_URL`
//! points them at a running server instead (then [`RedisServer::kill`] and
//! [`RedisServer::restart`] are unavailable).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming an existing server for tests.
pub const REDIS_URL_ENV: &str = "SHEDLOCK_TEST_REDIS_URL";

/// A `redis-server` process owned by a test. It keeps nothing on disk, and it
/// stops when this value is dropped or the test process exits.
pub struct RedisServer {
    port: u16,
    url: String,
    child: Option<Child>,
    /// Extra `redis-server` arguments (TLS); with them, readiness is a TCP connect.
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a private server on a free port, or uses `SHEDLOCK_TEST_REDIS_URL`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed (the message says how to install
    /// it) or does not start: a test that needs Redis must fail, not skip.
    pub fn start() -> RedisServer {
        if let Ok(url) = std::env::var(REDIS_URL_ENV) {
            return RedisServer {
                port: 0,
                url,
                child: None,
                extra_args: Vec::new(),
            };
        }
        let port = free_port();
        let mut server = RedisServer {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            child: None,
            extra_args: Vec::new(),
        };
        server.spawn();
        server
    }

    /// Starts a private server that accepts only TLS, with the certificate
    /// and key in `server_cert` and `server_key` (PEM files). Its URL is
    /// `rediss://localhost:{port}`.
    pub fn start_tls(server_cert: &str, server_key: &str, ca_cert: &str) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            port,
            url: format!("rediss://localhost:{port}"),
            child: None,
            extra_args: vec![
                "--port 0".to_owned(),
                format!("--tls-port {port}"),
                format!("--tls-cert-file '{server_cert}'"),
                format!("--tls-key-file '{server_key}'"),
                format!("--tls-ca-cert-file '{ca_cert}'"),
                "--tls-auth-clients no".to_owned(),
            ],
        };
        server.spawn();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server at once (SIGKILL): every key is lost, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing the shell's stdin makes it kill the server and exit.
            drop(child.stdin.take());
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port, with no keys.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one command (inline protocol) and returns the raw reply, for
    /// tests that inspect the server without a client library.
    pub fn command(&self, command: &str) -> String {
        let addr = self
            .url
            .trim_start_matches("redis://")
            .trim_end_matches('/');
        let mut stream = TcpStream::connect(addr)
            .unwrap_or_else(|err| panic!("cannot connect to test Redis at {addr}: {err}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(format!("{command}\r\n").as_bytes());
        let mut reply = vec![0; 64 * 1024];
        let n = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

    fn spawn(&mut self) {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!(
                "redis-server is not installed, and these tests need a real Redis. Install it \
                 (Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`), \
                 or set {REDIS_URL_ENV}=redis://127.0.0.1:6379 to use a running server."
            );
        }
        // The shell kills the server when the test process exits (its stdin
        // closes), so no server outlives a test run, even one that panics.
        let listen = if self.extra_args.is_empty() {
            format!("--port {}", self.port)
        } else {
            self.extra_args.join(" ")
        };
        let script = format!(
            "redis-server {listen} --bind 127.0.0.1 --save '' --appendonly no \
             --daemonize no --loglevel warning --logfile '' </dev/null & pid=$!; \
             read _; kill -9 $pid; wait $pid"
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-server: {err}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer PING within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        if !self.extra_args.is_empty() {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot find a free port: {err}"))
}
