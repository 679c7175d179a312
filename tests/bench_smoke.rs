//! The benchmark as CI runs it: the real `chat-server` and the real `chat-bench`, a few
//! seconds of each kind of load, and nothing lost, out of order, duplicated or refused.
//! Never a speed threshold: CI machines are noisy, and speed lives in docs/BENCHMARKS.md.

mod common;

use std::process::Command;

use common::{run_bounded, Run, ServerFiles, ServerProcess};
use serde_json::Value;

/// Creates the benchmark accounts `b0..b{count}` the way docs/bench/run.sh does.
fn create_accounts(files: &ServerFiles, count: usize) {
    let mut users = Command::new(env!("CARGO_BIN_EXE_chat-bench"));
    users.args(["users", "--count", &count.to_string()]);
    let users = run_bounded(users, None);
    assert!(users.status.success(), "{users:?}");
    assert_eq!(users.stdout.lines().count(), count);
    let mut import = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    // A new database, as docs/bench/run.sh makes it.
    import
        .arg("--db")
        .arg(files.db())
        .args(["--create", "import"]);
    let import = run_bounded(import, Some(&users.stdout));
    assert!(import.status.success(), "{import:?}");
}

/// Runs one `chat-bench` scenario against `server` with `--check`; the run and its report.
fn bench(files: &ServerFiles, server: &ServerProcess, args: &[&str]) -> (Run, Value) {
    let report = files.dir.path().join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-bench"));
    command
        .args(args)
        .args(["--server", &server.server(), "--quiet", "--check"])
        .arg("--ca")
        .arg(files.certs().ca_cert)
        .arg("--json")
        .arg(&report)
        .args(["--server-pid", &server.child.id().to_string()]);
    let run = run_bounded(command, None);
    let json = std::fs::read_to_string(&report)
        .unwrap_or_else(|error| panic!("no report ({error}): {run:?}"));
    (
        run,
        serde_json::from_str(&json).expect("the report is JSON"),
    )
}

fn count(report: &Value, path: &[&str]) -> u64 {
    let value = path.iter().fold(report, |value, key| &value[*key]);
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a count in {report:#}"))
}

/// Everything sent reached every member, once and in order, with no error.
fn assert_clean(run: &Run, report: &Value, members: u64) {
    assert!(run.status.success(), "{run:?}");
    assert_eq!(report["clean"], Value::Bool(true), "{report:#}");
    for field in ["lost", "gaps", "duplicates", "errors"] {
        assert_eq!(count(report, &["traffic", field]), 0, "{field}: {report:#}");
    }
    let sent = count(report, &["traffic", "sent"]);
    assert!(sent > 0, "{report:#}");
    // tlschat echoes a message to its sender too, so every member receives every message.
    assert_eq!(count(report, &["traffic", "expected"]), sent * members);
    assert!(count(report, &["traffic", "latency", "samples"]) > 0);
}

#[test]
fn every_scenario_runs_clean_against_the_real_server() {
    let files = ServerFiles::new();
    create_accounts(&files, 24);
    // Logins that arrive together wait for the hashing threads; a slow CI machine must not
    // turn that wait into `server-busy`.
    let server = ServerProcess::spawn(&files, &["--hash-wait", "120"]);

    let saturate = [
        "saturate",
        "--clients",
        "12",
        "--senders",
        "4",
        "--warmup",
        "0.5",
        "--duration",
        "2",
    ];
    let (run, report) = bench(&files, &server, &saturate);
    assert_clean(&run, &report, 12);
    assert!(run.stdout.contains("deliveries/s"), "{run:?}");

    let rate = [
        "rate",
        "--clients",
        "12",
        "--senders",
        "3",
        "--rate",
        "60",
        "--warmup",
        "0.5",
        "--duration",
        "2",
        "--room",
        "#smoke-rate",
    ];
    let (run, report) = bench(&files, &server, &rate);
    assert_clean(&run, &report, 12);

    // Two rooms of five: each room's first member sends three messages to its own room.
    let idle = [
        "idle",
        "--clients",
        "10",
        "--room-size",
        "5",
        "--settle",
        "0.2",
        "--messages",
        "3",
        "--room",
        "#smoke-idle",
    ];
    let (run, report) = bench(&files, &server, &idle);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(count(&report, &["traffic", "expected"]), 2 * 5 * 3);
    assert_eq!(count(&report, &["traffic", "lost"]), 0, "{report:#}");
    assert_eq!(count(&report, &["connect", "connected"]), 10);

    let logins = ["logins", "--count", "20", "--chat-rate", "20"];
    let (run, report) = bench(&files, &server, &logins);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(count(&report, &["logins", "succeeded"]), 20, "{report:#}");
    assert_eq!(count(&report, &["traffic", "lost"]), 0, "{report:#}");

    // The attacks of issue 12, from several loopback addresses.
    let flood = [
        "handshake-flood",
        "--attackers",
        "4",
        "--rate",
        "20",
        "--honest-rate",
        "5",
        "--warmup",
        "0.5",
        "--duration",
        "2",
    ];
    let (run, report) = bench(&files, &server, &flood);
    assert!(run.status.success(), "{run:?}");
    assert!(count(&report, &["honest", "handshakes"]) > 0, "{report:#}");
    assert_eq!(count(&report, &["honest", "failures"]), 0, "{report:#}");
    assert!(count(&report, &["attack", "answered"]) > 0, "{report:#}");
    assert!(run.stdout.contains("honest handshake"), "{run:?}");

    // One account, 24 logins: the server's default of 20 per account holds.
    let hog = [
        "account-hog",
        "--attackers",
        "2",
        "--per-address",
        "12",
        "--account",
        "b22",
        "--honest",
        "b23",
    ];
    let (run, report) = bench(&files, &server, &hog);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(count(&report, &["attack", "logged_in"]), 20, "{report:#}");
    let refused = &report["attack"]["refused"]["BYE too-many-sessions"];
    assert_eq!(refused.as_u64(), Some(4), "{report:#}");
    assert_eq!(
        report["honest"]["logged_in"],
        Value::Bool(true),
        "{report:#}"
    );
}

/// The smoke test above can fail: a run whose messages the server refuses is reported as
/// not clean, and `--check` makes that an exit failure.
#[test]
fn refused_messages_make_the_run_fail() {
    let files = ServerFiles::new();
    create_accounts(&files, 4);
    let server = ServerProcess::spawn(&files, &["--max-line", "100"]);
    let args = [
        "saturate",
        "--clients",
        "4",
        "--senders",
        "2",
        "--warmup",
        "0.2",
        "--duration",
        "1",
        "--payload",
        "200",
        "--drain-timeout",
        "1",
    ];
    let (run, report) = bench(&files, &server, &args);
    assert!(!run.status.success(), "{run:?}");
    assert_eq!(report["clean"], Value::Bool(false));
    assert!(count(&report, &["traffic", "errors"]) > 0, "{report:#}");
    assert!(count(&report, &["traffic", "lost"]) > 0, "{report:#}");
    assert!(run.stderr.contains("not clean"), "{run:?}");
}
