//! `chat`, the real line client, in a pipe: logging in from standard input or the
//! environment, readable output, `--raw`, and a clean `/quit` at the end of its input.

mod common;

use std::path::Path;
use std::process::Command;

use common::admin::issue_code;
use common::{field, run_bounded, Run, TestServer};

const ALICE_PASSWORD: &str = "correct horse battery staple";
const BOB_PASSWORD: &str = "bobs password 123";

/// Runs `chat SERVER --ca CA ARGS...` with `stdin` piped in (then end of input) and the
/// extra environment `env`; waits at most [`RUN_LIMIT`]. Runs off the async runtime so
/// the in-process server keeps serving meanwhile.
async fn run_chat(port: u16, ca: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    for var in ["CHAT_SERVER", "CHAT_CA", "CHAT_NICK", "CHAT_PASSWORD"] {
        command.env_remove(var);
    }
    command
        .arg(format!("localhost:{port}"))
        .arg("--ca")
        .arg(ca)
        .args(args)
        .envs(env.iter().copied());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || run_bounded(command, Some(&stdin)))
        .await
        .expect("chat runner")
}

/// A `HH:MM` local time in square brackets right before `rest` somewhere in `text`.
fn has_timed(text: &str, rest: &str) -> bool {
    text.lines().any(|line| {
        let Some(at) = line.find(rest) else {
            return false;
        };
        let Some(open) = line[..at].rfind('[') else {
            return false;
        };
        let time = &line[open + 1..];
        let b = time.as_bytes();
        b.len() >= 6
            && b[0].is_ascii_digit()
            && b[1].is_ascii_digit()
            && b[2] == b':'
            && b[3].is_ascii_digit()
            && b[4].is_ascii_digit()
            && b[5] == b']'
    })
}

/// No line of the readable output is a raw protocol line.
fn assert_no_raw_protocol(run: &Run) {
    for keyword in [
        "MSG #", "HIST #", "JOIN #", "LEAVE #", "WELCOME ", "INFO ", "BYE ", "NICK", "PASS",
    ] {
        assert!(
            !run.stdout.lines().any(|line| line.starts_with(keyword)),
            "raw protocol line starting with {keyword:?} in readable output:\n{run:?}"
        );
    }
    assert!(!run.stdout.contains("MSG #general"), "{run:?}");
}

async fn server_with_alice_and_bob() -> TestServer {
    let server = TestServer::start().await;
    server.add_user("alice", ALICE_PASSWORD).await;
    server.add_user("bob", BOB_PASSWORD).await;
    server
}

#[tokio::test]
async fn chat_in_a_pipe_sends_renders_and_quits_cleanly() {
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;
    let mut bob = server.login("bob", BOB_PASSWORD).await;

    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "alice", "--password-stdin"],
        &[],
        &format!("{ALICE_PASSWORD}\nhello from a pipe\n/join #ops\n"),
    )
    .await;

    // At the end of its input chat said /quit and got BYE quit: success.
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.stdout.contains("<alice> hello from a pipe"),
        "its own message, readable:\n{run:?}"
    );
    assert!(
        has_timed(&run.stdout, "#general <alice> hello from a pipe"),
        "an HH:MM time before the message:\n{run:?}"
    );
    assert_no_raw_protocol(&run);
    // The password was never sent as a chat message, nor shown.
    assert!(!run.stdout.contains(ALICE_PASSWORD), "{run:?}");
    assert!(
        run.stdout.contains("#ops"),
        "/join #ops was answered:\n{run:?}"
    );

    // Bob saw alice come, speak (not the password) and go.
    let join = bob.expect("JOIN #general ").await;
    assert_eq!(field(&join, 3), "alice");
    let msg = bob.expect("MSG #general ").await;
    assert_eq!(field(&msg, 4), "alice");
    assert!(msg.ends_with(" alice hello from a pipe"), "{msg:?}");
    let leave = bob.expect("LEAVE #general ").await;
    assert_eq!(field(&leave, 3), "alice");
    assert_eq!(field(&leave, 4), "quit");

    // The /join was carried out: alice's next login puts her in #ops too.
    let alice = server.login("alice", ALICE_PASSWORD).await;
    assert!(
        alice
            .seen
            .iter()
            .any(|l| l.starts_with("JOIN #ops ") && l.ends_with(" alice")),
        "{:#?}",
        alice.seen
    );
    server.stop().await;
}

#[tokio::test]
async fn chat_password_from_the_environment() {
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;
    let mut bob = server.login("bob", BOB_PASSWORD).await;

    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "alice"],
        &[("CHAT_PASSWORD", ALICE_PASSWORD)],
        // Every input line is chat: nothing is taken as the password.
        "hello via the environment\n",
    )
    .await;
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.stdout.contains("<alice> hello via the environment"),
        "{run:?}"
    );
    assert_no_raw_protocol(&run);

    let msg = bob.skip_until("MSG #general ").await;
    assert!(msg.ends_with(" alice hello via the environment"), "{msg:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_makes_chat_fail_with_login_failed() {
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;
    let mut bob = server.login("bob", BOB_PASSWORD).await;

    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "alice", "--password-stdin"],
        &[],
        "not the password\nthis must not be sent\n",
    )
    .await;
    assert!(!run.status.success(), "{run:?}");
    assert!(run.stderr.contains("login failed"), "{run:?}");

    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "alice"],
        &[("CHAT_PASSWORD", "not the password either")],
        "this must not be sent\n",
    )
    .await;
    assert!(!run.status.success(), "{run:?}");
    assert!(run.stderr.contains("login failed"), "{run:?}");

    // Nothing of it reached the room.
    bob.send("/history #general").await;
    let history = bob.collect_until("END history").await;
    assert_eq!(history, vec!["END history".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn raw_prints_the_protocol_lines() {
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;

    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "alice", "--password-stdin", "--raw"],
        &[],
        &format!("{ALICE_PASSWORD}\nraw hello\n"),
    )
    .await;
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.stdout.lines().any(|l| l.starts_with("WELCOME alice ")),
        "{run:?}"
    );
    let msg = run
        .stdout
        .lines()
        .find(|l| l.starts_with("MSG #general "))
        .unwrap_or_else(|| panic!("no raw MSG line:\n{run:?}"));
    assert_eq!(field(msg, 4), "alice");
    assert!(msg.ends_with(" alice raw hello"), "{msg:?}");
    assert!(
        run.stdout.lines().any(|l| l == "BYE quit"),
        "the goodbye, raw:\n{run:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn chat_fails_against_a_server_its_ca_does_not_sign() {
    let server = server_with_alice_and_bob().await;
    let other = common::ServerFiles::new();
    let run = run_chat(
        server.addr.port(),
        &other.certs().ca_cert,
        &["--nick", "alice", "--password-stdin"],
        &[],
        &format!("{ALICE_PASSWORD}\nmust not be sent\n"),
    )
    .await;
    assert!(!run.status.success(), "{run:?}");
    assert!(!run.stdout.contains("must not be sent"), "{run:?}");
    assert!(!run.stderr.trim().is_empty(), "it says why:\n{run:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_scripted_login_with_an_invite_code_sets_the_next_line_as_the_password() {
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;
    let code = issue_code(&server.files.db(), &["invite", "carol"]).await;

    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "carol", "--password-stdin"],
        &[],
        // The first try is refused (too short) and the next line is taken instead.
        &format!("{code}\nshort\ncarols own passphrase\nhello, I am new\n"),
    )
    .await;
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.stdout.contains("at least 8"),
        "the refusal is shown:\n{run:?}"
    );
    assert!(run.stdout.contains("<carol> hello, I am new"), "{run:?}");
    assert!(!run.stdout.contains("carols own passphrase"), "{run:?}");
    server.login("carol", "carols own passphrase").await;
}

#[tokio::test]
async fn passwd_alone_takes_the_next_two_lines_whatever_they_hold() {
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;
    // The old password is the README's kind, with spaces; the new one has a quote too.
    let new_password = r#"a "new" pass phrase"#;
    let run = run_chat(
        server.addr.port(),
        &ca,
        &["--nick", "alice", "--password-stdin"],
        &[],
        &format!("{ALICE_PASSWORD}\n/passwd\n{ALICE_PASSWORD}\n{new_password}\n"),
    )
    .await;
    assert!(run.status.success(), "{run:?}");
    assert!(run.stdout.contains("-- Password changed."), "{run:?}");
    assert!(!run.stdout.contains("pass phrase"), "{run:?}");
    server.login("alice", new_password).await;
    server.stop().await;
}
