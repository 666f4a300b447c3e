//! Private PostgreSQL and MariaDB servers a test owns, so it may stop and
//! restart them without disturbing the shared servers other tests use.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::process::Command;

use super::server_process::{
    ScratchDir, ServerProcess, arg, as_user, mariadb_program, postgres_bin_dir, run,
    running_as_root,
};
use crate::free_port;

/// A private database server owned by a test, on a free port of 127.0.0.1:
/// a [`PostgresServer`] or a [`MariaDbServer`]. It stops, and its files are
/// removed, when this value is dropped or the test process exits.
pub struct PrivateServer<D: ServerDatabase> {
    process: ServerProcess,
    database: PhantomData<D>,
}

/// The database a [`PrivateServer`] runs, and the URL of its test database.
pub trait ServerDatabase {
    /// The URL of the test database on a server listening on `port` of 127.0.0.1.
    fn url(port: u16) -> String;
}

/// PostgreSQL: its own cluster (`initdb`, trust authentication); the
/// database `postgres` as the user `postgres`.
pub enum Postgres {}

impl ServerDatabase for Postgres {
    fn url(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }
}

/// MariaDB: its own data directory (`mariadb-install-db`, `root` without
/// password); the database `test`.
pub enum MariaDb {}

impl ServerDatabase for MariaDb {
    fn url(port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/test")
    }
}

/// A private PostgreSQL server owned by a test (see [`Postgres`]).
pub type PostgresServer = PrivateServer<Postgres>;

/// A private MariaDB server owned by a test (see [`MariaDb`]).
pub type MariaDbServer = PrivateServer<MariaDb>;

impl<D: ServerDatabase> PrivateServer<D> {
    fn supervise(process: ServerProcess) -> PrivateServer<D> {
        PrivateServer {
            process,
            database: PhantomData,
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The URL of its test database: `postgres://postgres@127.0.0.1:{port}/postgres`
    /// or `mysql://root@127.0.0.1:{port}/test`.
    pub fn url(&self) -> String {
        D::url(self.process.port)
    }

    /// Stops the server (client sessions are ended: PostgreSQL's fast
    /// shutdown, MariaDB's normal one) and waits until it has exited. Its
    /// data stays.
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

impl PrivateServer<Postgres> {
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
        PrivateServer::supervise(
            // SIGINT: fast shutdown, which ends the client sessions, as a
            // service stop does.
            ServerProcess::start("PostgreSQL", dir, port, server, "INT", ready),
        )
    }
}

impl PrivateServer<MariaDb> {
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
        PrivateServer::supervise(
            // SIGTERM: a normal shutdown, which ends the client sessions.
            ServerProcess::start("MariaDB", dir, port, server, "TERM", ready),
        )
    }
}
