//! What the command's tests share: running the real `shedlock` binary, and
//! reading what it printed.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use shedlock_core::{
    LockConfiguration, LockProvider, LockingTaskExecutor, missed_every, run_for_tick,
};

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

/// Fails unless the run of `args` exited with `code`, saying `says` on
/// stderr.
pub fn assert_exited_saying(args: &[&str], output: &Output, code: i32, says: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}: {}",
        stderr(output)
    );
    assert!(
        stderr(output).contains(says),
        "{args:?}: {}",
        stderr(output)
    );
}

/// Fails unless a run on a store nobody listens on (127.0.0.1, password
/// `s3cret-pass`) exited 1 with an error naming the host, never printing the
/// password.
pub fn assert_unreachable_without_the_password(output: &Output) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    let all = format!("{}{}", stdout(output), stderr(output));
    assert!(all.contains("error:") && all.contains("127.0.0.1"), "{all}");
    assert!(!all.contains("s3cret"), "the password was printed: {all}");
}

/// `text` read as JSON.
pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// The row of `name` in the table `list` printed.
pub fn row_of(listed: &str, name: &str) -> String {
    listed
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{listed}"))
        .to_owned()
}

/// Runs `nightly` three times on `executor`, each run 20 ms long.
pub async fn run_three_times<P: LockProvider>(
    executor: &LockingTaskExecutor<P>,
    nightly: &LockConfiguration,
) {
    for _ in 0..3 {
        // Made inside the run: `sleep`'s deadline counts from its creation,
        // so one made before the acquisition would end that much sooner.
        let job = async { tokio::time::sleep(Duration::from_millis(20)).await };
        let ran = executor.execute(nightly, job).await;
        assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    }
}

/// What `history`, `show` and `list` print, `shedlock` running the binary
/// on the store, once worker-7 ran the free lock `nightly` three times
/// ([`run_three_times`]): its runs, its last run, a LAST RUN column; and for
/// a lock never run, none (a name the library refuses: exit 2). Returns
/// `history nightly --json` and `show nightly --json`.
pub async fn assert_last_runs_shown(shedlock: impl AsyncFn(&[&str]) -> Output) -> (Value, Value) {
    let history = json_of(&succeeded(
        &shedlock(&["history", "nightly", "--json"]).await,
    ));
    let runs = history
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {history}"));
    assert_eq!(runs.len(), 3, "{history}");
    for run in runs {
        assert_eq!(run["outcome"], "ok", "{run}");
        assert_eq!(run["locked_by"], "worker-7", "{run}");
        assert!(
            run["duration_ms"].as_u64().is_some_and(|ms| ms >= 15),
            "{run}"
        );
        assert!(
            run["started_at"].is_string() && run["finished_at"].is_string(),
            "{run}"
        );
    }
    let text = succeeded(&shedlock(&["history", "nightly"]).await);
    assert!(text.starts_with("STARTED"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");

    // The lock is free, yet listed for its runs, with its last run.
    let show = json_of(&succeeded(&shedlock(&["show", "nightly", "--json"]).await));
    assert_eq!(show["last_run"]["outcome"], "ok", "{show}");
    assert_eq!(show["holders"].as_array().map(Vec::len), Some(0), "{show}");
    let list = succeeded(&shedlock(&["list"]).await);
    assert!(
        list.lines()
            .next()
            .is_some_and(|header| header.contains("LAST RUN")),
        "{list}"
    );
    assert!(
        list.lines().any(|line| line.starts_with("nightly")
            && line.contains("ok ")
            && line.contains("worker-7")),
        "{list}"
    );
    let text = succeeded(&shedlock(&["show", "nightly"]).await);
    assert!(text.contains("last run:  ok "), "{text}");

    // A lock never run has none.
    let empty = succeeded(&shedlock(&["history", "never-run"]).await);
    assert!(empty.contains("no runs recorded"), "{empty}");
    let refused = shedlock(&["history", ""]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    (history, show)
}

/// The instant of tick `n` of a schedule every second: 2027-01-15T08:00:0n.
pub fn tick(n: u64) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n)
}

/// Runs `ticking` (a lock of its name) on `executor` for ticks 0, 1 and 7
/// of a schedule every second: ticks 2 to 6 are missed.
pub async fn run_ticks_with_a_gap<P: LockProvider>(
    executor: &LockingTaskExecutor<P>,
    ticking: &LockConfiguration,
) {
    for n in [0, 1, 7] {
        let config = ticking.clone().for_tick(tick(n));
        let run = executor.execute(&config, async {});
        let ran = run_for_tick(tick(n), missed_every(Duration::from_secs(1)), run).await;
        assert!(matches!(ran, Ok(Some(()))), "tick {n}: {ran:?}");
    }
}

/// What `show` and `history` print of `ticking` after
/// [`run_ticks_with_a_gap`]: the last tick claimed, and the five missed
/// ticks (how many, the first and the last).
pub async fn assert_ticks_shown(shedlock: impl AsyncFn(&[&str]) -> Output) {
    let show = json_of(&succeeded(&shedlock(&["show", "ticking", "--json"]).await));
    assert_eq!(show["last_tick"], "2027-01-15T08:00:07.000Z", "{show}");
    assert_eq!(show["missed_ticks"]["count"], 5, "{show}");
    assert_eq!(
        show["missed_ticks"]["first"], "2027-01-15T08:00:02.000Z",
        "{show}"
    );
    assert_eq!(
        show["missed_ticks"]["last"], "2027-01-15T08:00:06.000Z",
        "{show}"
    );
    let text = succeeded(&shedlock(&["show", "ticking"]).await);
    assert!(
        text.contains("last tick: 2027-01-15T08:00:07.000Z"),
        "{text}"
    );
    assert!(text.contains("missed:    missed 5 ticks"), "{text}");
    let history = json_of(&succeeded(
        &shedlock(&["history", "ticking", "--json"]).await,
    ));
    let outcomes: Vec<&str> = history
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|run| run["outcome"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(outcomes, ["ok", "missed", "ok", "ok"], "{history}");
    assert_eq!(history[1]["missed_ticks"], 5, "{history}");
    let text = succeeded(&shedlock(&["history", "ticking"]).await);
    assert!(text.contains("missed 5 ticks"), "{text}");
}

/// How many `report-NNN` locks [`run_every_report`] runs.
pub const REPORTS: usize = 300;

/// Runs each of `report-000` to `report-299` once on `executor`.
pub async fn run_every_report<P: LockProvider>(
    executor: &LockingTaskExecutor<P>,
    config: impl Fn(&str) -> LockConfiguration,
) {
    for index in 0..REPORTS {
        let ran = executor
            .execute(&config(&format!("report-{index:03}")), async {})
            .await;
        assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    }
}

/// Fails unless `list` has a row for every report [`run_every_report`] ran,
/// each with its last run (ok, by worker-7).
pub fn assert_every_report_listed_with_its_last_run(list: &str) {
    let rows: Vec<&str> = list
        .lines()
        .filter(|line| line.starts_with("report-"))
        .collect();
    assert_eq!(rows.len(), REPORTS, "{list}");
    assert!(
        rows.iter()
            .all(|row| row.contains("ok ") && row.contains("worker-7")),
        "a row without its last run:\n{list}"
    );
}
