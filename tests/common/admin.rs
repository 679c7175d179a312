//! `chat-admin`, the real binary, run beside a test's server.

use std::path::Path;
use std::process::Command;

use super::{run_bounded, Run, TestServer};

pub fn admin_command(db: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    command
        .env_remove("CHAT_DB")
        .env_remove("CHAT_CERTS_DIR")
        .arg("--db")
        .arg(db)
        .args(args);
    if let Some(dir) = db.parent() {
        command.current_dir(dir);
    }
    command
}

/// A new, empty tlschat database `chat.db` in `dir`, made as a user makes one
/// (`chat-admin --create`); chat-admin opens no other database without being told.
pub fn new_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("chat.db");
    assert_success(&admin(&db, &["--create", "list"], None));
    db
}

/// `chat-admin --db DB ARGS...`, the password (if any) on standard input.
pub fn admin(db: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    run_bounded(admin_command(db, args), stdin)
}

/// The same, off the async runtime (an in-process server must keep running meanwhile).
pub async fn admin_async(db: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let db = db.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        admin(&db, &args, stdin.as_deref())
    })
    .await
    .expect("chat-admin runner")
}

pub fn assert_success(run: &Run) {
    assert!(run.status.success(), "expected success:\n{run:?}");
}

pub fn assert_failure(run: &Run) {
    assert!(!run.status.success(), "expected a failure:\n{run:?}");
    assert!(
        !run.stderr.trim().is_empty(),
        "a failure must say why on stderr:\n{run:?}"
    );
}

/// Runs `chat-admin ARGS` (`invite NICK`, `passwd NICK --invite`) and returns the one-time
/// code it printed.
pub async fn issue_code(db: &Path, args: &[&str]) -> String {
    let run = admin_async(db, args, None).await;
    assert_success(&run);
    let code = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("One-time code: "))
        .unwrap_or_else(|| panic!("no code printed: {run:?}"))
        .trim()
        .to_owned();
    assert_eq!(code.len(), 14, "{code}");
    code
}

/// One failed login attempt with exactly the contract's answer.
pub async fn login_fails(server: &TestServer, nick: &str, password: &str) {
    let mut client = server.connect().await;
    client.answer_prompts(nick, password).await;
    assert_eq!(
        client.next().await,
        "ERR auth-failed Invalid nickname or password"
    );
    client.expect("NICK").await;
}
