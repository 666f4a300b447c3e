//! Worker processes for multi-process tests: this test binary again, running
//! one ignored test, killed (SIGKILL) and reaped when dropped so none outlives
//! the test, even one that panics.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A worker process. Its output is read once it has exited (it prints a few
/// lines at most, far less than a pipe holds, so it never blocks on them);
/// it may read lines the test sends ([`send_line`](Worker::send_line)).
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    name: String,
}

impl Worker {
    /// Runs the ignored test `test` of this binary in a new process, with `envs`.
    pub fn spawn(test: &str, envs: &[(&str, &str)]) -> Worker {
        Worker::spawn_with_env(test, envs, &[])
    }

    /// Like [`spawn`](Self::spawn), with extra environment variables of the
    /// process itself (e.g. `LD_PRELOAD`).
    pub fn spawn_with_env(
        test: &str,
        envs: &[(&str, &str)],
        process_env: &[(&str, &str)],
    ) -> Worker {
        let exe = std::env::current_exe()
            .unwrap_or_else(|err| fail!("cannot find the test binary: {err}"));
        let mut command = Command::new(exe);
        command
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(envs.iter().copied())
            .envs(process_env.iter().copied());
        let mut child = spawn_talking(&mut command, Stdio::piped())
            .unwrap_or_else(|err| fail!("cannot start worker {test}: {err}"));
        Worker {
            stdin: child.stdin.take(),
            child,
            name: test.to_owned(),
        }
    }

    /// Like [`spawn`](Self::spawn), with the process's wall clock moved by
    /// `offset` (libfaketime's `FAKETIME`, e.g. `+2h` or `+0.4`): its
    /// `SystemTime::now()` is off, its monotonic clock is not.
    pub fn spawn_skewed(test: &str, envs: &[(&str, &str)], offset: &str) -> Worker {
        let lib = libfaketime();
        let lib = lib.to_string_lossy();
        Worker::spawn_with_env(test, envs, &[("LD_PRELOAD", &lib), ("FAKETIME", offset)])
    }

    /// Sends `line` to the worker's standard input (a command it waits for).
    pub fn send_line(&mut self, line: &str) {
        let sent = match &mut self.stdin {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("its standard input is closed")),
        };
        if let Err(err) = sent {
            fail!("cannot send {line:?} to worker {}: {err}", self.name);
        }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the worker at once (SIGKILL on Unix), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the worker where it is (SIGSTOP), as a long pause of the whole
    /// process would (a VM frozen, a swap storm); [`resume`](Self::resume)
    /// lets it go on.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [`pause`](Self::pause)d worker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status();
        if !sent.as_ref().is_ok_and(|status| status.success()) {
            fail!("cannot send SIG{signal} to worker {}: {sent:?}", self.name);
        }
    }

    /// Whether the worker has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the worker to exit (killing it after that),
    /// and returns its status and output (stdout, then stderr).
    pub async fn finish(mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => {
                    self.kill();
                    break None;
                }
            }
        };
        (status, self.output())
    }

    /// Kills the worker and returns what it printed, for a failure message.
    pub fn kill_and_output(&mut self) -> String {
        self.kill();
        self.output()
    }

    /// The output of an exited worker.
    fn output(&mut self) -> String {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let Some(mut pipe) = self.child.stdout.take() {
            let _ = pipe.read_to_string(&mut stdout);
        }
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        format!("--- {} stdout:\n{stdout}--- stderr:\n{stderr}", self.name)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Milliseconds since the epoch by the wall clock, which the processes of one
/// machine share: worker processes use it to agree on ticks.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |now| u64::try_from(now.as_millis()).unwrap_or(u64::MAX))
}

/// Sleeps until wall-clock millisecond `due` (the start of a tick) and returns
/// how late it woke, so a simulated scheduler can skip a tick it missed.
pub async fn sleep_until_ms(due: u64) -> Duration {
    let now = now_ms();
    if now < due {
        tokio::time::sleep(Duration::from_millis(due - now)).await;
    }
    Duration::from_millis(now_ms().saturating_sub(due))
}

/// Starts `command` as a process the test talks to: its standard input and
/// output piped, its standard error to `stderr`.
pub(crate) fn spawn_talking(command: &mut Command, stderr: Stdio) -> std::io::Result<Child> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
}

/// Points at libfaketime's `libfaketimeMT.so.1` where it is not in a standard place.
pub const LIBFAKETIME_ENV: &str = "SHEDLOCK_TEST_LIBFAKETIME";

/// libfaketime's multi-threaded variant (workers run Tokio's thread pool).
/// Not installed, the test fails with the command that installs it: a test
/// that cannot skew clocks must fail, not skip.
pub fn libfaketime() -> PathBuf {
    if let Some(path) = std::env::var_os(LIBFAKETIME_ENV) {
        return PathBuf::from(path);
    }
    let mut dirs = vec![
        PathBuf::from("/usr/lib/faketime"),
        PathBuf::from("/usr/local/lib/faketime"),
        PathBuf::from("/usr/lib64/faketime"),
    ];
    // Debian and Ubuntu: /usr/lib/<multiarch triple>/faketime.
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|entry| entry.path().join("faketime")));
    }
    dirs.into_iter()
        .map(|dir| dir.join("libfaketimeMT.so.1"))
        .find(|lib| lib.is_file())
        .unwrap_or_else(|| {
            fail!(
                "libfaketime is not installed, and this test needs it to skew a worker's clock. \
                 Install it (Debian/Ubuntu: `apt-get install -y faketime`, which brings the \
                 libfaketime package; `bash .ci/test` does it), or set \
                 {LIBFAKETIME_ENV}=/path/to/libfaketimeMT.so.1"
            )
        })
}
