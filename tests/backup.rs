//! `chat-admin backup FILE` while the real server stores messages: the copy, restored,
//! holds every message that was stored before the backup began; `chat-admin restore FILE`
//! never lets an id be handed out twice.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use std::os::unix::fs::PermissionsExt;

use common::admin::{admin, assert_failure, assert_success};
use common::{field, run_bounded, stored_ids, ServerFiles, ServerProcess, TestClient, TestServer};

const PASSWORD: &str = "alices password";
/// Messages sent in all; the backup starts after a third of them are stored.
const MESSAGES: usize = 300;

fn backup(db: &std::path::Path, target: &std::path::Path) -> common::Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    command
        .env_remove("CHAT_DB")
        .arg("--db")
        .arg(db)
        .arg("backup")
        .arg(target);
    run_bounded(command, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_message_stored_before_it_began() {
    let files = ServerFiles::new();
    files.add_user("alice", PASSWORD).await;
    let server = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login("alice", PASSWORD).await;

    // Messages keep flowing while the backup runs; each echo is the proof it was stored.
    let target = files.dir.path().join("backup.db");
    let mut stored_before = BTreeSet::new();
    let mut backup_run = None;
    for n in 0..MESSAGES {
        alice.send(&format!("message {n}")).await;
        if n == MESSAGES / 3 {
            // Everything echoed so far was stored before the backup began.
            while stored_before.len() < n {
                let line = alice.skip_until("MSG #general ").await;
                stored_before.insert(field(&line, 2).parse::<i64>().unwrap());
            }
            let (db, target) = (files.db(), target.clone());
            backup_run = Some(tokio::task::spawn_blocking(move || backup(&db, &target)));
        }
    }
    let run = backup_run.unwrap().await.unwrap();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stdout.contains("Backed up to"), "{}", run.stdout);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a backup holds password hashes");
    // A second backup never overwrites the first.
    let again = backup(&files.db(), &target);
    assert!(!again.status.success());
    assert!(again.stderr.contains("backup.db"), "{}", again.stderr);
    drop(alice);
    drop(server);

    // Restoring is copying the file back, here into a fresh server's place.
    let restored = ServerFiles::new();
    std::fs::copy(&target, restored.db()).unwrap();
    let server = TestServer::start_on(restored, common::test_config()).await;
    let mut alice = server.login("alice", PASSWORD).await;
    let ids = stored_ids(&mut alice, "#general").await;
    let missing: Vec<_> = stored_before.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "stored before the backup, not in it: {missing:?}"
    );
    assert!(stored_before.len() > MESSAGES / 4, "the load was real");
}

/// Sends `text` as alice and returns the id the server gave it.
async fn send(alice: &mut TestClient, text: &str) -> i64 {
    alice.send(text).await;
    let line = alice.skip_until("MSG #general ").await;
    assert!(line.ends_with(text), "{line}");
    field(&line, 2).parse().unwrap()
}

/// The case: a backup at id N, two more messages, a restore; the next messages must
/// not get N+1 and N+2 again, or every client that saw those drops them as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_ids_continue_after_every_id_ever_handed_out() {
    let files = ServerFiles::new();
    files.add_user("alice", PASSWORD).await;
    let mut server = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login("alice", PASSWORD).await;
    for n in 0..3 {
        send(&mut alice, &format!("before the backup {n}")).await;
    }
    let target = files.dir.path().join("backup.db");
    assert_success(&backup(&files.db(), &target));
    send(&mut alice, "after the backup 1").await;
    let last_seen = send(&mut alice, "after the backup 2").await;

    let while_running = admin(&files.db(), &["restore", target.to_str().unwrap()], None);
    assert_failure(&while_running);
    assert!(
        while_running.stderr.contains("running"),
        "{while_running:?}"
    );

    drop(alice);
    server.signal("TERM");
    assert!(server.wait(common::WAIT).success());
    let restored = admin(&files.db(), &["restore", target.to_str().unwrap()], None);
    assert_success(&restored);
    let aside = restored
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("The database it replaced is kept as "))
        .and_then(|rest| rest.strip_suffix(" (mode 0600)."))
        .unwrap_or_else(|| panic!("where the old database went: {restored:?}"));
    let mode = std::fs::metadata(aside).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it holds password hashes");
    assert!(
        restored
            .stdout
            .contains(&format!("Database changed: {}", files.db().display())),
        "{restored:?}"
    );

    let server = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login("alice", PASSWORD).await;
    let next = send(&mut alice, "after the restore").await;
    assert!(
        next > last_seen,
        "id {next} reused (the last id seen was {last_seen})"
    );
    // A client that saw up to `last_seen` catches up and finds the new message.
    let mut catching_up = TestClient::connect(&server.server(), files.client_tls()).await;
    catching_up.login("alice", PASSWORD).await;
    catching_up
        .send(&format!("/history #general after {last_seen}"))
        .await;
    let replay = catching_up.collect_until("END history").await;
    assert!(
        replay
            .iter()
            .any(|line| line.starts_with(&format!("HIST #general {next} "))
                && line.ends_with("after the restore")),
        "{replay:#?}"
    );
}

#[tokio::test]
async fn restore_refuses_a_foreign_backup_and_without_a_database_needs_force() {
    let files = ServerFiles::new();
    files.add_user("alice", PASSWORD).await;
    let target = files.dir.path().join("backup.db");
    assert_success(&backup(&files.db(), &target));

    let not_a_backup = files.dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "hello").unwrap();
    let run = admin(
        &files.db(),
        &["restore", not_a_backup.to_str().unwrap()],
        None,
    );
    assert_failure(&run);
    assert!(run.stderr.contains("not a tlschat database"), "{run:?}");

    std::fs::remove_file(files.db()).unwrap();
    let run = admin(&files.db(), &["restore", target.to_str().unwrap()], None);
    assert_failure(&run);
    assert!(run.stderr.contains("--force"), "{run:?}");
    assert!(!files.db().exists());
    assert_success(&admin(
        &files.db(),
        &["restore", target.to_str().unwrap(), "--force"],
        None,
    ));

    let server = TestServer::start_on(files, common::test_config()).await;
    let mut alice = server.login("alice", PASSWORD).await;
    let id = send(&mut alice, "after a forced restore").await;
    assert!(id > tlschat::store::FORCED_ID_MARGIN, "{id}");
}
