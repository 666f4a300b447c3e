//! What the command's tests share: running the real `shedlock` binary, and
//! reading what it printed.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;

/// The binary with `args` (the store's flags among them), the environment
/// cleared of store variables.
pub fn shedlock_command(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shedlock"))
        .env_remove("SHEDLOCK_REDIS_URL")
        .env_remove("SHEDLOCK_STORE_URL")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run the shedlock binary: {err}"))
}

/// [`shedlock_command`] off the async workers, so the services' pools and
/// connections of the test keep working while it runs.
pub async fn shedlock_command_async(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shedlock_command(&args)
    })
    .await
    .unwrap_or_else(|err| panic!("the shedlock run panicked: {err}"))
}

/// What the run printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the run printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The stdout of a run that must have exited 0.
pub fn succeeded(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "shedlock failed:\n{}\n{}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// `text` read as JSON.
pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}
