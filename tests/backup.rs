//! `chat-admin backup FILE` while the real server stores messages: the copy, restored,
//! holds every message that was stored before the backup began.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup holds password hashes");
    }
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
