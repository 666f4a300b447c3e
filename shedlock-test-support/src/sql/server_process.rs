//! Supervising a private server's process: a shell that starts and stops
//! it on request and cleans up after it, and finding and running the
//! server's programs.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch::new_scratch_dir;

/// Runs a server under a shell that starts and stops it on request (lines
/// `start`, `stop` on its stdin, each answered on its stdout) and, when its
/// stdin closes (this value dropped, or the test process gone, even by a
/// panic or a kill), stops the server and removes its directory.
pub(super) struct ServerProcess {
    title: &'static str,
    dir: ScratchDir,
    pub(super) port: u16,
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
    pub(super) fn start(
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
            .args(server.get_args());
        let mut shell = crate::worker::spawn_talking(&mut shell, Stdio::null())
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

    pub(super) fn stop(&mut self) {
        self.request("stop", "stopped");
    }

    pub(super) fn start_again(&mut self) {
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
pub(super) fn postgres_bin_dir() -> PathBuf {
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
pub(super) fn mariadb_program(names: &[&str]) -> PathBuf {
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

pub(super) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program`, run as `user` (by `setpriv`, which execs it: signals reach
/// the server itself) when one is given.
pub(super) fn as_user(user: Option<&str>, program: &Path) -> Command {
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
pub(super) fn arg(option: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(option);
    arg.push(path);
    arg
}

/// Runs a setup program to its end; fails the test with its output if it fails.
pub(super) fn run(command: &mut Command) {
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
pub(super) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(super) fn new(kind: &str) -> ScratchDir {
        ScratchDir {
            path: new_scratch_dir(kind),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
