//! The SQL providers' test databases: the shared servers, private ones a
//! test may stop and restart, and unique table names.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::scratch::new_scratch_dir;

/// The PostgreSQL server of the tests: `SHEDLOCK_TEST_POSTGRES_URL`, else
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> String {
    std::env::var("SHEDLOCK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The MySQL/MariaDB server of the tests: `SHEDLOCK_TEST_MYSQL_URL`, else
/// `mysql://root@127.0.0.1:3306/test`.
pub fn mysql_url() -> String {
    std::env::var("SHEDLOCK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A table name no other test run uses: `shedlock_t_<pid>_<n>_<tag>`.
pub fn unique_table_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("shedlock_t_{}_{n}_{tag}", std::process::id())
}

/// Fails the test with how to get the server running (never a silent skip).
pub fn database_unreachable(database: &str, err: &dyn std::fmt::Display) -> ! {
    let (variable, how) = match database {
        "postgres" => (
            "SHEDLOCK_TEST_POSTGRES_URL",
            "apt-get install -y postgresql && service postgresql start, then create the database: \
             psql -U postgres -h 127.0.0.1 -c 'CREATE DATABASE test' (trust authentication on \
             127.0.0.1); `bash .ci/run` does all of it",
        ),
        _ => (
            "SHEDLOCK_TEST_MYSQL_URL",
            "apt-get install -y mariadb-server && service mariadb start, then \
             mariadb -u root -e 'CREATE DATABASE IF NOT EXISTS test' (root without password on \
             127.0.0.1); `bash .ci/run` does all of it",
        ),
    };
    fail!(
        "the {database} test server is unreachable ({err}). These tests need it: {how}. \
         Set {variable} to use another server."
    )
}

/// A private PostgreSQL server owned by a test: its own cluster (`initdb`,
/// trust authentication) on a free port, so a test may stop and restart it
/// without disturbing the shared server other tests use. It stops, and its
/// files are removed, when this value is dropped or the test process exits.
pub struct PostgresServer {
    process: ServerProcess,
}

impl PostgresServer {
    /// Starts a new server with `settings` (`name=value`, each passed to
    /// `postgres` as `-c`), e.g. `idle_session_timeout=1s`.
    ///
    /// # Panics
    ///
    /// When the PostgreSQL server programs are missing (the message says how
    /// to install them) or the server does not start: a test that needs it
    /// must fail, not skip.
    pub fn start(settings: &[&str]) -> PostgresServer {
        PostgresServer::start_with(settings, None)
    }

    /// Starts a new server that takes connections over TLS only (with
    /// `certificates`' server certificate), refusing plain ones.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_tls(certificates: &crate::tls::TestCertificates) -> PostgresServer {
        PostgresServer::start_with(&[], Some(certificates))
    }

    fn start_with(settings: &[&str], tls: Option<&crate::tls::TestCertificates>) -> PostgresServer {
        let bin = postgres_bin_dir();
        // initdb and postgres refuse to run as root.
        let user = running_as_root().then_some("postgres");
        let dir = ScratchDir::new("postgres");
        if let Some(user) = user {
            run(Command::new("chown").arg(user).arg(dir.path()));
        }
        let data = dir.path().join("data");
        run(as_user(user, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "--no-locale"]));
        let port = free_port();
        let mut server = as_user(user, &bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        for setting in settings {
            server.args(["-c", setting]);
        }
        if let Some(certificates) = tls {
            // The server reads its key only when its user alone can.
            let copy = |from: PathBuf, name: &str| {
                let to = dir.path().join(name);
                if let Err(err) = std::fs::copy(&from, &to) {
                    fail!("cannot copy {} to {}: {err}", from.display(), to.display());
                }
                to
            };
            let cert = copy(certificates.server_cert(), "server.crt");
            let key = copy(certificates.server_key(), "server.key");
            let hba = dir.path().join("pg_hba.conf");
            if let Err(err) = std::fs::write(
                &hba,
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            ) {
                fail!("cannot write {}: {err}", hba.display());
            }
            run(Command::new("chmod").arg("600").arg(&key));
            if let Some(user) = user {
                run(Command::new("chown")
                    .arg(user)
                    .arg(&cert)
                    .arg(&key)
                    .arg(&hba));
            }
            for (setting, path) in [
                ("ssl_cert_file", &cert),
                ("ssl_key_file", &key),
                ("hba_file", &hba),
            ] {
                server.args(["-c", &format!("{setting}={}", path.display())]);
            }
            server.args(["-c", "ssl=on"]);
        }
        let mut ready = Command::new(bin.join("pg_isready"));
        ready.args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()]);
        PostgresServer {
            // SIGINT: fast shutdown, which ends the client sessions, as a
            // service stop does.
            process: ServerProcess::start("PostgreSQL", dir, port, server, "INT", ready),
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.process.port
        )
    }

    /// Stops the server (fast shutdown: client sessions are ended) and waits
    /// until it has exited. Its data stays.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the stopped server again, on the same port and data, and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) {
        self.process.start_again();
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

/// A private MariaDB server owned by a test: its own data directory
/// (`mariadb-install-db`, `root` without password, a database `test`) on a
/// free port, so a test may stop and restart it without disturbing the
/// shared server other tests use. It stops, and its files are removed, when
/// this value is dropped or the test process exits.
pub struct MariaDbServer {
    process: ServerProcess,
}

impl MariaDbServer {
    /// Starts a new server with `options` added to `mariadbd`'s command
    /// line, e.g. `--wait-timeout=1`.
    ///
    /// # Panics
    ///
    /// When the MariaDB server programs are missing (the message says how to
    /// install them) or the server does not start: a test that needs it must
    /// fail, not skip.
    pub fn start(options: &[&str]) -> MariaDbServer {
        let install_db = mariadb_program(&["mariadb-install-db", "mysql_install_db"]);
        let mariadbd = mariadb_program(&["mariadbd", "mysqld"]);
        let admin = mariadb_program(&["mariadb-admin", "mysqladmin"]);
        // mariadbd refuses to run as root unless told to.
        let user = running_as_root().then_some("--user=root");
        let dir = ScratchDir::new("mariadb");
        let data = dir.path().join("data");
        // Temporary tables of their own: two servers set up at once in the
        // same directory trip over each other's.
        let tmp = dir.path().join("tmp");
        if let Err(err) = std::fs::create_dir(&tmp) {
            fail!("cannot create {}: {err}", tmp.display());
        }
        run(Command::new(install_db)
            .env("TMPDIR", &tmp)
            .arg("--no-defaults")
            .arg(arg("--datadir=", &data))
            .arg("--auth-root-authentication-method=normal")
            .args(user));
        let port = free_port();
        let mut server = Command::new(mariadbd);
        server
            .arg("--no-defaults")
            .arg(arg("--datadir=", &data))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(arg("--socket=", &dir.path().join("mariadbd.sock")))
            .arg(arg("--pid-file=", &dir.path().join("mariadbd.pid")))
            .arg(arg("--tmpdir=", &tmp))
            .args([
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
                "--innodb-flush-log-at-trx-commit=0",
            ])
            .args(user)
            .args(options);
        let mut ready = Command::new(admin);
        ready.args([
            "--no-defaults",
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "root",
            "--connect-timeout=1",
            "ping",
        ]);
        MariaDbServer {
            // SIGTERM: a normal shutdown, which ends the client sessions.
            process: ServerProcess::start("MariaDB", dir, port, server, "TERM", ready),
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `mysql://root@127.0.0.1:{port}/test`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.process.port)
    }

    /// Stops the server (a normal shutdown: client sessions are ended) and
    /// waits until it has exited. Its data stays.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the stopped server again, on the same port and data, and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) {
        self.process.start_again();
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

/// Runs a server under a shell that starts and stops it on request (lines
/// `start`, `stop` on its stdin, each answered on its stdout) and, when its
/// stdin closes (this value dropped, or the test process gone, even by a
/// panic or a kill), stops the server and removes its directory.
struct ServerProcess {
    title: &'static str,
    dir: ScratchDir,
    port: u16,
    ready: Command,
    shell: Child,
    requests: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
}

/// The supervising shell: `sh -c SUPERVISOR sh DIR SIGNAL SERVER ARGS...`.
const SUPERVISOR: &str = r#"dir=$1; signal=$2; shift 2
"$@" </dev/null >>"$dir/server.log" 2>&1 & pid=$!
while read -r request; do
  case $request in
    stop) kill -s "$signal" "$pid"; wait "$pid"; echo stopped ;;
    start) "$@" </dev/null >>"$dir/server.log" 2>&1 & pid=$!; echo started ;;
  esac
done
kill -s "$signal" "$pid" 2>/dev/null; wait "$pid"; rm -rf "$dir""#;

impl ServerProcess {
    fn start(
        title: &'static str,
        dir: ScratchDir,
        port: u16,
        server: Command,
        signal: &str,
        ready: Command,
    ) -> ServerProcess {
        let mut shell = Command::new("sh");
        shell
            .args(["-c", SUPERVISOR, "sh"])
            .arg(dir.path())
            .arg(signal)
            .arg(server.get_program())
            .args(server.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut shell = shell
            .spawn()
            .unwrap_or_else(|err| fail!("cannot start sh to run the {title} test server: {err}"));
        let (Some(requests), Some(replies)) = (shell.stdin.take(), shell.stdout.take()) else {
            fail!("the shell running the {title} test server has no stdin or stdout")
        };
        let mut process = ServerProcess {
            title,
            dir,
            port,
            ready,
            shell,
            requests: Some(requests),
            replies: BufReader::new(replies),
        };
        process.wait_until_ready();
        process
    }

    fn stop(&mut self) {
        self.request("stop", "stopped");
    }

    fn start_again(&mut self) {
        self.request("start", "started");
        self.wait_until_ready();
    }

    fn request(&mut self, request: &str, reply: &str) {
        let sent = self
            .requests
            .as_mut()
            .map(|requests| writeln!(requests, "{request}").and_then(|()| requests.flush()));
        if !matches!(sent, Some(Ok(()))) {
            fail!("the shell running the {} test server is gone", self.title);
        }
        let mut line = String::new();
        if self.replies.read_line(&mut line).is_err() || line.trim() != reply {
            fail!(
                "the shell running the {} test server did not answer '{reply}' to '{request}'",
                self.title
            );
        }
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .ready
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
        {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                fail!(
                    "the {} test server on port {} did not accept connections within 20 s; \
                     its log:\n{log}",
                    self.title,
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // End of input: the shell stops the server and removes its files.
        drop(self.requests.take());
        let _ = self.shell.wait();
    }
}

/// The directory of PostgreSQL's server programs (`initdb`, `postgres`,
/// `pg_isready`): Debian's newest `/usr/lib/postgresql/*/bin`, else where
/// `initdb` is on the `PATH`.
fn postgres_bin_dir() -> PathBuf {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
                .filter(|bin| bin.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    // Versions are numbers: "9.6" < "15".
    debian.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|version| version.to_str())
            .and_then(|version| version.split('.').next())
            .and_then(|major| major.parse::<u32>().ok())
    });
    debian
        .pop()
        .or_else(|| {
            find_program(&["initdb"]).and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| {
            fail!(
                "these tests start a private PostgreSQL server and need its programs (initdb, \
                 postgres, pg_isready), found neither in /usr/lib/postgresql/*/bin nor on the \
                 PATH. Install them (Debian/Ubuntu: `apt-get install -y postgresql`; macOS: \
                 `brew install postgresql`)."
            )
        })
}

/// The first of `names` found on the `PATH` or in `/usr/sbin`, else a failure
/// that says what to install.
fn mariadb_program(names: &[&str]) -> PathBuf {
    find_program(names).unwrap_or_else(|| {
        fail!(
            "these tests start a private MariaDB server and need {}, found neither on the PATH \
             nor in /usr/sbin. Install MariaDB's server and client (Debian/Ubuntu: `apt-get \
             install -y mariadb-server mariadb-client`; macOS: `brew install mariadb`).",
            names.join(" or ")
        )
    })
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .collect();
    names.iter().find_map(|name| {
        dirs.iter()
            .map(|dir| dir.join(name))
            .find(|program| program.is_file())
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program`, run as `user` (by `setpriv`, which execs it: signals reach
/// the server itself) when one is given.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .arg("--init-groups")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// `--option=path`.
fn arg(option: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(option);
    arg.push(path);
    arg
}

/// Runs a setup program to its end; fails the test with its output if it fails.
fn run(command: &mut Command) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| fail!("cannot run {program}: {err}"));
    if !output.status.success() {
        fail!(
            "{program} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A new, empty directory for a test server's files, removed when dropped
/// (after the server has stopped, or when setting it up failed).
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(kind: &str) -> ScratchDir {
        ScratchDir {
            path: new_scratch_dir(kind),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
