//! The README's program (`examples/cron_redis.rs`) in three processes against
//! one Redis, with an every-second schedule: each tick is run by exactly one
//! of them, over at least five ticks. The processes are the example's binary,
//! which `cargo test` builds beside this test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shedlock_test_support::redis::RedisServer;

const REPLICAS: usize = 3;
const MIN_TICKS: usize = 5;
/// Long enough for the processes to start and run more than `MIN_TICKS` ticks.
const RUN_FOR: Duration = Duration::from_secs(9);

/// The example's binary: `target/<profile>/examples/cron_redis`, beside this
/// test's `target/<profile>/deps/`.
fn example_binary() -> PathBuf {
    let test = std::env::current_exe().unwrap_or_else(|err| panic!("no test binary: {err}"));
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary path {}", test.display()));
    let binary = profile.join("examples").join("cron_redis");
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test` builds the examples; run it through cargo",
        binary.display()
    );
    binary
}

/// Stops a replica as Ctrl-C would (SIGINT), so it shuts its scheduler down.
fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(
        sent.is_ok_and(|status| status.success()),
        "cannot interrupt a replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_program_runs_each_tick_once_across_three_processes() {
    let server = RedisServer::start();
    let binary = example_binary();
    let replicas: Vec<Child> = (0..REPLICAS)
        .map(|_| {
            Command::new(&binary)
                .env("REDIS_URL", server.url())
                .env("CRON", "* * * * * *")
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()))
        })
        .collect();
    tokio::time::sleep(RUN_FOR).await;
    for replica in &replicas {
        interrupt(replica);
    }
    // Which replicas wrote the report, by the second of the log line.
    let mut runs: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (number, replica) in replicas.into_iter().enumerate() {
        let output = replica
            .wait_with_output()
            .unwrap_or_else(|err| panic!("replica {number}: {err}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "replica {number} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout
            .lines()
            .filter(|line| line.contains("writing the report"))
        {
            // `2026-12-07T13:29:12.196488Z  INFO ...`: the tick is the second.
            let second = line.get(..19).unwrap_or(line).to_owned();
            runs.entry(second).or_default().push(number);
        }
    }
    // The first and last seconds may be cut by the start and the stop.
    let whole: Vec<_> = runs.iter().skip(1).collect();
    let whole = &whole[..whole.len().saturating_sub(1)];
    assert!(
        whole.len() >= MIN_TICKS,
        "only {} whole ticks ran: {runs:?}",
        whole.len()
    );
    for (second, replicas) in whole {
        assert_eq!(
            replicas.len(),
            1,
            "tick {second} ran on {replicas:?}: {runs:?}"
        );
    }
    // And no tick between them went without a run.
    let seconds: Vec<u32> = whole
        .iter()
        .map(|(second, _)| second_of_day(second))
        .collect();
    for pair in seconds.windows(2) {
        assert_eq!(
            pair[1],
            (pair[0] + 1) % 86_400,
            "a tick without a run: {runs:?}"
        );
    }
}

/// The second of the day of a log line's `YYYY-MM-DDTHH:MM:SS` prefix.
fn second_of_day(stamp: &str) -> u32 {
    let field = |range: std::ops::Range<usize>| -> u32 {
        stamp
            .get(range)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("not a timestamp: {stamp:?}"))
    };
    field(11..13) * 3600 + field(14..16) * 60 + field(17..19)
}
