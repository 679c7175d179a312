//! `chat-server --config FILE` and `chat-server check-config`: each setting's flag beats its
//! environment variable, which beats the file, which beats the default; an unknown key or a
//! wrong type is an error naming the file, the line and the key; the running server obeys
//! the file.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run_bounded, Run, ServerFiles, ServerProcess, TestClient};

/// `chat-server check-config ARGS` with only the given `CHAT_*` variables set.
fn check_config(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Run {
    let mut all = vec!["check-config"];
    all.extend_from_slice(args);
    chat_server(&all, env, cwd)
}

/// `chat-server ARGS` with only the given `CHAT_*` variables set.
fn chat_server(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CHAT_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied());
    run_bounded(command, None)
}

/// The value of `key` in check-config's output.
fn setting<'a>(run: &'a Run, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in:\n{}", run.stdout))
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tlschat.toml");
    std::fs::write(
        &file,
        "# a comment\nmax_line = 1000\nflood_burst = 3\nlogin_timeout = 5\n\
         hostname = [\"chat.example.com\"]\ndurability = \"process-crash\"\ndb = \"data/chat.db\"\n",
    )
    .unwrap();
    let run = check_config(
        &["--config", file.to_str().unwrap(), "--max-line", "3000"],
        &[("CHAT_MAX_LINE", "2000"), ("CHAT_FLOOD_BURST", "4")],
        dir.path(),
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(setting(&run, "max_line"), "3000", "the flag");
    assert_eq!(setting(&run, "flood_burst"), "4", "the environment");
    assert_eq!(setting(&run, "login_timeout"), "5", "the file");
    assert_eq!(setting(&run, "queue_lines"), "1024", "the default");
    assert_eq!(setting(&run, "hostname"), "[\"chat.example.com\"]");
    assert_eq!(setting(&run, "durability"), "\"process-crash\"");
    // A relative path in the file is relative to the file's folder.
    let db = dir.path().join("data/chat.db");
    assert_eq!(setting(&run, "db"), format!("{:?}", db.to_str().unwrap()));
}

#[test]
fn the_config_file_and_flags_go_before_or_after_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tlschat.toml");
    std::fs::write(&file, "login_timeout = 5\n").unwrap();
    let file = file.to_str().unwrap();
    let before = chat_server(
        &["--config", file, "--max-line", "3000", "check-config"],
        &[],
        dir.path(),
    );
    let after = chat_server(
        &["check-config", "--config", file, "--max-line", "3000"],
        &[],
        dir.path(),
    );
    for (order, run) in [("before", &before), ("after", &after)] {
        assert!(run.status.success(), "{order}: {}", run.stderr);
        assert_eq!(setting(run, "login_timeout"), "5", "{order}: the file");
        assert_eq!(setting(run, "max_line"), "3000", "{order}: the flag");
    }
    assert_eq!(before.stdout, after.stdout);
}

#[test]
fn what_check_config_prints_is_a_config_file_that_means_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let first = check_config(&["--flood-rate", "7.5", "--log", "debug"], &[], dir.path());
    assert!(first.status.success(), "{}", first.stderr);
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &first.stdout).unwrap();
    let second = check_config(&["--config", file.to_str().unwrap()], &[], dir.path());
    assert!(second.status.success(), "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn an_unknown_key_is_an_error_naming_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:7777\"\nmax_lines = 3\n").unwrap();
    let run = check_config(&["--config", file.to_str().unwrap()], &[], dir.path());
    assert!(!run.status.success());
    assert!(run.stderr.contains("typo.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown field `max_lines`"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "nothing printed as if valid");
}

#[test]
fn wrong_types_bad_values_and_half_a_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("max_line = \"big\"\n", "line 1"),
        ("durability = \"sometimes\"\n", "durability"),
        ("login_timeout = 0\n", "login_timeout"),
        ("cert = \"fullchain.pem\"\n", "cert and key go together"),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let run = check_config(&["--config", file.to_str().unwrap()], &[], dir.path());
        assert!(!run.status.success(), "{text:?} accepted:\n{}", run.stdout);
        assert!(run.stderr.contains(expected), "{text:?}: {}", run.stderr);
    }
    let missing = check_config(&["--config", "nowhere.toml"], &[], dir.path());
    assert!(
        missing.stderr.contains("nowhere.toml"),
        "{}",
        missing.stderr
    );
}

/// Flags, environment variables, and the name the error must use.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn a_bad_value_is_named_as_the_user_gave_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tlschat.toml");
    std::fs::write(&file, "flood_rate = 0\nqueue_lines = 0\n").unwrap();
    let config = file.to_str().unwrap();
    let in_file = |key: &str| format!("{key} (in {config})");
    let cases: [Case; 9] = [
        (&["--queue-lines", "0"], &[], "--queue-lines"),
        (&[], &[("CHAT_QUEUE_LINES", "0")], "CHAT_QUEUE_LINES"),
        (&["--flood-rate", "0"], &[], "--flood-rate"),
        (&["--flood-rate=0"], &[], "--flood-rate"),
        (&[], &[("CHAT_FLOOD_RATE", "0")], "CHAT_FLOOD_RATE"),
        (&["--hash-wait", "0"], &[], "--hash-wait"),
        (&["--queue-bytes", "1000"], &[], "--queue-bytes"),
        (
            &["--config", config, "--queue-lines", "5"],
            &[],
            &in_file("flood_rate"),
        ),
        (
            &["--config", config, "--flood-rate", "5"],
            &[],
            &in_file("queue_lines"),
        ),
    ];
    for (args, env, name) in cases {
        let run = check_config(args, env, dir.path());
        assert!(!run.status.success(), "{args:?} {env:?} accepted");
        let line = run.stderr.trim_end();
        assert!(
            line.starts_with(&format!("chat-server: invalid configuration: {name} ")),
            "{args:?} {env:?}: {line}"
        );
        for internal in ["flood_per_second", "outbox_max_lines", "outbox_max_bytes"] {
            assert!(!line.contains(internal), "{line}");
        }
    }
}

#[tokio::test]
async fn the_running_server_obeys_its_config_file() {
    let files = ServerFiles::new();
    files.add_user("alice", "alices password").await;
    let config = files.dir.path().join("tlschat.toml");
    std::fs::write(&config, "max_line = 100\n").unwrap();
    let server = ServerProcess::spawn(&files, &["--config", config.to_str().unwrap()]);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login("alice", "alices password").await;
    alice.send(&"x".repeat(150)).await;
    alice.expect("ERR line-too-long ").await;
    alice.send(&"y".repeat(90)).await;
    let line = alice.skip_until("MSG #general ").await;
    assert!(line.ends_with(&"y".repeat(90)), "{line}");
}

#[test]
fn the_example_config_in_the_repository_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/tlschat.toml");
    let dir = tempfile::tempdir().unwrap();
    let run = check_config(&["--config", example.to_str().unwrap()], &[], dir.path());
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(setting(&run, "db"), "\"/var/lib/tlschat/chat.db\"");
}
