//! Private `redis-server` processes (standalone, Sentinel, Cluster) on free
//! ports, started by the test.
//!
//! Tests talk to a real Redis, never a mock. Setting `SHEDLOCK_TEST_REDIS_URL`
//! points them at a running server instead (then [`RedisServer::kill`] and
//! [`RedisServer::restart`] are unavailable). `SHEDLOCK_TEST_REDIS_SERVER`
//! names another server binary to start (a Redis 6.2 `redis-server`, a
//! `valkey-server`), and `SHEDLOCK_TEST_REDIS_CLI` the `redis-cli` that joins
//! test clusters.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::scratch::new_scratch_dir;

mod topologies;

pub use topologies::{RedisCluster, RedisSentinel};

/// The environment variable naming an existing server for tests.
pub const REDIS_URL_ENV: &str = "SHEDLOCK_TEST_REDIS_URL";

/// The environment variable naming the server binary tests start (a path or
/// a command on the `PATH`; `redis-server` when unset).
pub const REDIS_SERVER_ENV: &str = "SHEDLOCK_TEST_REDIS_SERVER";

/// The environment variable naming the `redis-cli` that creates test
/// clusters (`redis-cli` when unset; a Redis 7 one also joins Valkey and
/// Redis 6.2 nodes).
pub const REDIS_CLI_ENV: &str = "SHEDLOCK_TEST_REDIS_CLI";

/// The server binary tests start: `SHEDLOCK_TEST_REDIS_SERVER`, or `redis-server`.
pub fn server_binary() -> String {
    env_or(REDIS_SERVER_ENV, "redis-server")
}

/// The first line of `{server_binary} --version`, e.g.
/// `Valkey server v=8.1.8 ...` or `Redis server v=6.2.14 ...`.
///
/// # Panics
///
/// When the binary cannot be run (the message says how to install one).
pub fn server_version() -> String {
    let binary = server_binary();
    match Command::new(&binary).arg("--version").output() {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Err(err) => fail!("{}", missing_server(&binary, &err)),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// What to do when the server binary cannot be run.
fn missing_server(binary: &str, err: &std::io::Error) -> String {
    if std::env::var_os(REDIS_SERVER_ENV).is_some_and(|value| !value.is_empty()) {
        format!(
            "{REDIS_SERVER_ENV}={binary} cannot be run ({err}); point it at a redis-server or valkey-server binary"
        )
    } else {
        format!(
            "redis-server is not installed ({err}), and these tests need a real Redis. Install it \
             (Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`), \
             set {REDIS_SERVER_ENV}=/path/to/redis-server (or valkey-server) to start another \
             binary, or set {REDIS_URL_ENV}=redis://127.0.0.1:6379 to use a running server."
        )
    }
}

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
    /// When `redis-server` (or `SHEDLOCK_TEST_REDIS_SERVER`) is not installed
    /// (the message says how to install it) or does not start: a test that
    /// needs Redis must fail, not skip.
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

    /// Starts a private server that asks for `password`; its URL carries it.
    pub fn start_with_password(password: &str) -> RedisServer {
        let port = free_port();
        RedisServer::start_with(
            port,
            format!("redis://:{password}@127.0.0.1:{port}"),
            vec![
                format!("--port {port}"),
                format!("--requirepass {password}"),
            ],
        )
    }

    /// Starts a private server that accepts only TLS, with the certificate
    /// and key in `server_cert` and `server_key` (PEM files). Its URL is
    /// `rediss://localhost:{port}`.
    pub fn start_tls(server_cert: &str, server_key: &str, ca_cert: &str) -> RedisServer {
        let port = free_port();
        RedisServer::start_with(
            port,
            format!("rediss://localhost:{port}"),
            vec![
                "--port 0".to_owned(),
                format!("--tls-port {port}"),
                format!("--tls-cert-file '{server_cert}'"),
                format!("--tls-key-file '{server_key}'"),
                format!("--tls-ca-cert-file '{ca_cert}'"),
                "--tls-auth-clients no".to_owned(),
            ],
        )
    }

    /// A server that replicates without disk (snapshots go over the socket
    /// and are loaded in memory), a replica of the local `replica_of` port
    /// when given; `dir` (made if missing) catches anything else it writes.
    pub fn start_replicating(dir: &Path, replica_of: Option<u16>) -> RedisServer {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|err| fail!("cannot make {}: {err}", dir.display()));
        let port = free_port();
        let mut args = vec![
            format!("--port {port}"),
            format!("--dir '{}'", dir.display()),
            "--repl-diskless-sync yes".to_owned(),
            "--repl-diskless-sync-delay 0".to_owned(),
            "--repl-diskless-load swapdb".to_owned(),
        ];
        if let Some(master) = replica_of {
            args.push(format!("--replicaof 127.0.0.1 {master}"));
        }
        RedisServer::start_with(port, format!("redis://127.0.0.1:{port}"), args)
    }

    /// Starts a private server with `args` in place of `--port {port}` (they
    /// must make it listen on `port`); ready once the port accepts connections.
    pub fn start_with(port: u16, url: String, args: Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            port,
            url,
            child: None,
            extra_args: args,
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
            .unwrap_or_else(|err| fail!("cannot connect to test Redis at {addr}: {err}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(format!("{command}\r\n").as_bytes());
        let mut reply = vec![0; 64 * 1024];
        let n = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

    /// The answer to a command whose reply is an integer (`:<n>`); fails
    /// the test on any other reply.
    pub fn integer(&self, command: &str) -> i64 {
        let reply = self.command(command);
        reply
            .strip_prefix(':')
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| fail!("{command} answered {reply:?}, not an integer"))
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> bool {
        self.integer(&format!("EXISTS {key}")) == 1
    }

    /// `key`'s time to live in milliseconds (`PTTL`: -2 when it does not
    /// exist, -1 when it never expires).
    pub fn pttl(&self, key: &str) -> i64 {
        self.integer(&format!("PTTL {key}"))
    }

    /// Whether the server accepts `SET key value NX GET` (Redis 7 and Valkey;
    /// Redis 6.2 answers a syntax error), probed on a throwaway key.
    pub fn supports_set_nx_get(&self) -> bool {
        let key = "shedlock-test-support:set-nx-get-probe";
        let reply = self.command(&format!("SET {key} probe NX GET"));
        self.command(&format!("DEL {key}"));
        !reply.starts_with('-')
    }

    fn spawn(&mut self) {
        let binary = server_binary();
        if let Err(err) = Command::new(&binary).arg("--version").output() {
            fail!("{}", missing_server(&binary, &err));
        }
        // The shell kills the server when the test process exits (its stdin
        // closes), so no server outlives a test run, even one that panics.
        // A configuration file (Sentinel's) must come first; options given
        // by the test come after the defaults, so they win (`--appendonly yes`).
        let (config_file, options): (Vec<&String>, Vec<&String>) = self
            .extra_args
            .iter()
            .partition(|arg| !arg.starts_with("--"));
        let config_file = config_file
            .iter()
            .map(|arg| arg.as_str())
            .collect::<Vec<_>>();
        let listen = if self.extra_args.is_empty() {
            format!("--port {}", self.port)
        } else {
            options
                .iter()
                .map(|arg| arg.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        // The binary is the script's $1, so its path needs no quoting.
        let script = format!(
            "\"$1\" {} --bind 127.0.0.1 --save '' --appendonly no \
             --daemonize no --loglevel warning --logfile '' {listen} </dev/null & pid=$!; \
             read _; kill -9 $pid; wait $pid",
            config_file.join(" ")
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| fail!("cannot start {binary}: {err}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if Instant::now() > deadline {
                fail!(
                    "{binary} on port {} did not answer PING within 10 s",
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

/// A new, empty directory for a test's own server files (replicas that
/// receive a snapshot), removed by the caller.
pub fn server_scratch_dir(kind: &str) -> PathBuf {
    new_scratch_dir(kind)
}

/// The elements of a reply (as [`RedisServer::command`] returns it),
/// flattened: bulk strings, integers and simple strings in order (`ROLE`,
/// `SENTINEL ...`, `CLUSTER GETKEYSINSLOT`).
pub fn reply_elements(reply: &str) -> Vec<&str> {
    reply
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with(['*', '$']))
        .map(|line| line.trim_start_matches([':', '+']))
        .collect()
}

/// The value that follows `name` in a reply of field-value pairs
/// (`SENTINEL MASTER`, `SENTINEL REPLICAS`, `INFO`-like maps).
pub fn reply_field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let elements = reply_elements(reply);
    elements
        .iter()
        .position(|element| *element == name)
        .and_then(|at| elements.get(at + 1).copied())
}
