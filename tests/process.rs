//! The `chat-server` binary as a process: crash safety under `kill -9`, graceful shutdown on
//! SIGTERM and SIGINT, and start-up errors.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{field, stored_ids, ServerFiles, ServerProcess, TestClient, TestServer};
use tlschat::client::{self, LineReader, LineWriter};

async fn raw_login(
    server: &str,
    files: &ServerFiles,
    nick: &str,
    password: &str,
) -> (LineReader, LineWriter) {
    let (mut reader, mut writer) = client::connect(server, files.client_tls()).await.unwrap();
    for answer in [nick, password] {
        let prompt = reader.next_line().await.unwrap().unwrap();
        assert!(prompt == "NICK" || prompt == "PASS", "{prompt}");
        writer.send_line(answer).await.unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let Some(Ok(line)) = reader.next_line().await else {
            panic!("login of {nick} ended early; saw {seen:?}");
        };
        if line.starts_with("INFO ") {
            return (reader, writer);
        }
        seen.push(line);
    }
}

#[tokio::test]
async fn every_message_anyone_received_survives_kill_9() {
    let files = ServerFiles::new();
    files.add_user("alice", "password-one").await;
    files.add_user("bob", "password-two").await;
    let server = ServerProcess::spawn(&files, &[]);
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    // Both log in before either floods the room.
    let mut clients = Vec::new();
    for (nick, password) in [("alice", "password-one"), ("bob", "password-two")] {
        clients.push((
            nick,
            raw_login(&server.server(), &files, nick, password).await,
        ));
    }
    for (nick, (mut reader, mut writer)) in clients {
        // The sender does not wait for echoes: the server is killed with messages in flight.
        tasks.push(tokio::spawn(async move {
            for i in 0..5000 {
                if writer.send_line(&format!("{nick} {i}")).await.is_err() {
                    break;
                }
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(Ok(line))) =
                tokio::time::timeout(Duration::from_secs(20), reader.next_line()).await
            {
                if line.starts_with("MSG #general ") {
                    received
                        .lock()
                        .unwrap()
                        .insert(field(&line, 2).parse::<i64>().unwrap());
                }
            }
        }));
    }
    // Let messages flow, then kill without warning.
    for _ in 0..200 {
        if received.lock().unwrap().len() >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.signal("KILL");
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    }
    drop(server);
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() >= 50,
        "messages flowed before the kill: {}",
        received.len()
    );

    let restarted = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&restarted.server(), files.client_tls()).await;
    alice.login("alice", "password-one").await;
    let stored = stored_ids(&mut alice, "#general").await;
    let missing: Vec<&i64> = received.difference(&stored).collect();
    assert!(missing.is_empty(), "received but not stored: {missing:?}");
}

async fn graceful_shutdown_on(signal: &str) {
    let files = ServerFiles::new();
    files.add_user("alice", "password-one").await;
    let mut server = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login("alice", "password-one").await;
    let mut waiting = TestClient::connect(&server.server(), files.client_tls()).await;
    waiting.expect("NICK").await;
    for i in 0..20 {
        alice.send(&format!("last words {i}")).await;
    }
    let first_echo = alice.expect("MSG #general ").await;
    server.signal(signal);
    let mut echoed = vec![first_echo];
    loop {
        let line = alice.next().await;
        if line == "BYE server-shutdown" {
            break;
        }
        assert!(line.starts_with("MSG #general "), "{line}");
        echoed.push(line);
    }
    assert!(alice.expect_closed().await.is_empty(), "nothing after BYE");
    assert_eq!(
        waiting.next().await,
        "BYE server-shutdown",
        "a connection still logging in is told too"
    );
    let status = server.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    assert!(server
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("shutdown complete")));

    let restarted = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&restarted.server(), files.client_tls()).await;
    alice.login("alice", "password-one").await;
    let stored = stored_ids(&mut alice, "#general").await;
    for line in echoed {
        assert!(
            stored.contains(&field(&line, 2).parse().unwrap()),
            "{line} not stored"
        );
    }
}

#[tokio::test]
async fn sigterm_says_bye_flushes_and_exits_zero() {
    graceful_shutdown_on("TERM").await;
}

#[tokio::test]
async fn sigint_says_bye_flushes_and_exits_zero() {
    graceful_shutdown_on("INT").await;
}

#[tokio::test]
async fn in_process_shutdown_says_bye_to_everyone() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    server.add_user("bob", "password-two").await;
    let mut alice = server.login("alice", "password-one").await;
    let mut bob = server.login("bob", "password-two").await;
    alice.expect("JOIN #general ").await;
    server.begin_shutdown();
    // No LEAVE noise while everyone goes: just the goodbye.
    assert_eq!(alice.next().await, "BYE server-shutdown");
    assert_eq!(bob.next().await, "BYE server-shutdown");
    alice.expect_closed().await;
    bob.expect_closed().await;
    server.stop().await;
}

fn start_error(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .current_dir(dir.path())
        .args(args)
        .output()
        .expect("run chat-server");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("chat-server: "),
        "one clear line: {stderr}"
    );
    last
}

#[test]
fn port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = start_error(&["--listen", &addr]);
    assert!(
        line.contains("cannot listen on") && line.contains(&addr),
        "{line}"
    );
}

#[test]
fn unreadable_key_is_one_clear_line() {
    let files = std::thread::spawn(ServerFiles::new).join().unwrap();
    let cert = files.certs().server_cert;
    let line = start_error(&["--cert", cert.to_str().unwrap(), "--key", "missing-key.pem"]);
    assert!(line.contains("missing-key.pem"), "{line}");
}

#[test]
fn a_missing_database_folder_is_one_line_naming_it_before_any_certificate_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .current_dir(dir.path())
        .args(["--db", "no-such-dir/chat.db", "--listen", "127.0.0.1:0"])
        .arg("--certs-dir")
        .arg(&certs)
        .output()
        .expect("run chat-server");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, nothing logged before:\n{stderr}"
    );
    assert!(
        stderr.starts_with("chat-server: ")
            && stderr.contains("no-such-dir/chat.db")
            && stderr.contains("the folder no-such-dir does not exist"),
        "{stderr}"
    );
    assert!(
        !certs.exists(),
        "a certificate was generated for a server that cannot start"
    );
}
