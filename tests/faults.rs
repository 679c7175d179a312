//! Faults around the server, with real parts only: a database another process keeps locked,
//! a database file that stops taking writes, `chat-admin` writing while the chat is busy,
//! a shutdown while one peer has stopped reading, and a hub that dies.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{field, run_bounded, Run, ServerFiles, ServerProcess, TestClient, TestServer, WAIT};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::Connection;
use tokio::sync::watch;

use tlschat::client::{self, LineReader, LineWriter};
use tlschat::protocol::{ServerLine, StoredMessage};
use tlschat::server::fault::HUB_PANIC;
use tlschat::server::ServerError;

const ALICE: (&str, &str) = ("alice", "alice password");
const BOB: (&str, &str) = ("bob", "bob password");
const CAROL: (&str, &str) = ("carol", "carol password");

/// What the server answers a message it could not store.
const NOT_STORED: &str = "ERR server-busy ";

/// How long the in-process server's store waits for another writer's lock before giving up,
/// so a locked database fails a commit quickly instead of after the default 10 s.
const SHORT_BUSY_TIMEOUT: Duration = Duration::from_millis(200);

// ---- faults ---------------------------------------------------------------------------------

/// A connection of our own to the server's database file, outside the server.
async fn raw_connection(db: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    tokio::time::timeout(WAIT, SqliteConnection::connect_with(&options))
        .await
        .expect("raw connection in time")
        .expect("raw connection")
}

/// Every message body in the database, in id order (room messages and private ones).
async fn stored_bodies(db: &Path) -> Vec<String> {
    let mut conn = raw_connection(db).await;
    let bodies = sqlx::query_scalar("SELECT body FROM messages ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("read messages");
    conn.close().await.expect("close raw connection");
    bodies
}

/// Another process holding SQLite's write lock: `BEGIN IMMEDIATE` on a connection of its own.
struct WriteLock {
    conn: SqliteConnection,
}

impl WriteLock {
    async fn take(db: &Path) -> Self {
        let mut conn = raw_connection(db).await;
        tokio::time::timeout(WAIT, sqlx::query("BEGIN IMMEDIATE").execute(&mut conn))
            .await
            .expect("write lock in time")
            .expect("BEGIN IMMEDIATE");
        Self { conn }
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.conn)
            .await
            .expect("ROLLBACK");
        self.conn.close().await.expect("close raw connection");
    }
}

fn chattr(flag: &str, path: &Path) -> Result<(), String> {
    let output = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run chattr: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chattr {flag} {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether the immutable attribute (`chattr +i`) works in `dir` and, what matters for a
/// running server, also stops writes through a file descriptor opened before it was set
/// (as the server's open database and WAL files are). Needs CAP_LINUX_IMMUTABLE and a
/// file system that supports the attribute (ext4, xfs, btrfs, ...).
fn immutable_stops_open_writers(dir: &Path) -> Result<(), String> {
    use std::io::Write;
    let probe = dir.join("immutable-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&probe)
        .map_err(|e| e.to_string())?;
    file.write_all(b"before\n").map_err(|e| e.to_string())?;
    chattr("+i", &probe)?;
    let write = file.write_all(b"after\n").and_then(|()| file.sync_all());
    let undo = chattr("-i", &probe);
    drop(file);
    let _ = std::fs::remove_file(&probe);
    undo?;
    match write {
        Ok(()) => Err("chattr +i does not stop writes through an open descriptor here".into()),
        Err(_) => Ok(()),
    }
}

/// The database and its WAL marked immutable: every write the server makes to them fails
/// with EPERM, much like a failing disk. Cleared on drop, so the temporary directory can be
/// removed even when the test fails.
struct Unwritable {
    paths: Vec<PathBuf>,
}

impl Unwritable {
    fn set(db: &Path) -> Self {
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        assert!(wal.exists(), "the WAL file exists while the server runs");
        let mut unwritable = Self { paths: Vec::new() };
        for path in [db.to_owned(), wal] {
            chattr("+i", &path).expect("chattr +i");
            unwritable.paths.push(path);
        }
        unwritable
    }

    fn clear(mut self) {
        for path in std::mem::take(&mut self.paths) {
            chattr("-i", &path).expect("chattr -i");
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = chattr("-i", path);
        }
    }
}

// ---- helpers --------------------------------------------------------------------------------

fn parse_stored(line: &str, keyword: &str) -> StoredMessage {
    match (keyword, ServerLine::parse(line)) {
        ("MSG", Some(ServerLine::Msg(message))) | ("HIST", Some(ServerLine::Hist(message))) => {
            message
        }
        _ => panic!("expected a {keyword} line, got {line:?}"),
    }
}

/// The next line must be the `MSG` of `nick`'s `text` in `#general`; returns its id.
async fn expect_msg(client: &mut TestClient, nick: &str, text: &str) -> i64 {
    let line = client.next().await;
    let message = parse_stored(&line, "MSG");
    assert_eq!(
        (
            message.room.as_str(),
            message.nick.as_str(),
            message.text.as_str()
        ),
        ("#general", nick, text),
        "{line:?}; seen: {:#?}",
        client.seen
    );
    message.id
}

/// `from` says `text`: its next line must be the echo and every one of `others`' next line
/// the same message, so nothing else reached any of them before it. Returns the id.
async fn say(
    from: &mut TestClient,
    from_nick: &str,
    others: &mut [&mut TestClient],
    text: &str,
) -> i64 {
    from.send(text).await;
    let id = expect_msg(from, from_nick, text).await;
    for other in others.iter_mut() {
        assert_eq!(expect_msg(other, from_nick, text).await, id, "same message");
    }
    id
}

/// `/history #general` as `(id, nick, text)`.
async fn history(client: &mut TestClient) -> Vec<(i64, String, String)> {
    client.send("/history #general").await;
    let lines = client.collect_until("END history").await;
    lines[..lines.len() - 1]
        .iter()
        .map(|line| {
            let message = parse_stored(line, "HIST");
            (message.id, message.nick, message.text)
        })
        .collect()
}

/// The next line within [`WAIT`]; `None` when the connection ended.
async fn next_line(reader: &mut LineReader) -> Option<String> {
    match tokio::time::timeout(WAIT, reader.next_line()).await {
        Ok(Some(Ok(line))) => Some(line),
        Ok(Some(Err(_))) | Ok(None) => None,
        Err(_) => panic!("no line within {WAIT:?}"),
    }
}

/// Logs in on an already connected client and reads up to the end of the login replay.
async fn login_halves(
    (mut reader, mut writer): (LineReader, LineWriter),
    (nick, password): (&str, &str),
) -> (LineReader, LineWriter) {
    for (prompt, answer) in [("NICK", nick), ("PASS", password)] {
        loop {
            let line = next_line(&mut reader).await.expect("login prompt");
            if line == prompt {
                break;
            }
            assert!(line.starts_with("INFO "), "before {prompt}: {line:?}");
        }
        writer.send_line(answer).await.expect("send");
    }
    let welcome = next_line(&mut reader).await.expect("WELCOME");
    assert!(
        welcome.starts_with(&format!("WELCOME {nick} ")),
        "{welcome}"
    );
    while !next_line(&mut reader)
        .await
        .expect("login replay")
        .starts_with("INFO ")
    {}
    (reader, writer)
}

/// A logged-in client as separate halves, so one task can write while another reads.
async fn login_split(
    server: &ServerProcess,
    files: &ServerFiles,
    account: (&str, &str),
) -> (LineReader, LineWriter) {
    let halves = client::connect(&server.server(), files.client_tls())
        .await
        .expect("connect");
    login_halves(halves, account).await
}

fn admin_adduser(db: &Path, nick: &str, password: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    command
        .env_remove("CHAT_DB")
        .arg("--db")
        .arg(db)
        .args(["adduser", nick, "--password-stdin"]);
    run_bounded(command, Some(&format!("{password}\n")))
}

// ---- 1 and 2: storage unavailable ------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Another connection holds the write lock longer than the server's busy timeout.
    Locked,
    /// The database and WAL files refuse every write.
    Unwritable,
}

/// While `fault` lasts, every message (room or private) is answered with `ERR server-busy`,
/// nothing is delivered and nothing is stored; afterwards the same sessions chat on, new
/// logins work, and the history holds exactly the messages that were delivered.
async fn outage_and_recovery(fault: Fault) {
    // The server's own account of what failed, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tlschat=warn")
        .with_test_writer()
        .try_init();
    let files = ServerFiles::new();
    for (nick, password) in [ALICE, BOB, CAROL] {
        files.add_user(nick, password).await;
    }
    let server =
        TestServer::start_on_with_busy_timeout(files, common::test_config(), SHORT_BUSY_TIMEOUT)
            .await;
    let mut alice = server.login(ALICE.0, ALICE.1).await;
    let mut bob = server.login(BOB.0, BOB.1).await;
    let join = alice.expect("JOIN #general ").await;
    assert_eq!(field(&join, 3), "bob");

    let mut delivered = Vec::new();
    let id = say(&mut alice, "alice", &mut [&mut bob], "before the outage").await;
    delivered.push((id, "alice", "before the outage"));

    let db = server.files.db();
    enum Active {
        Lock(WriteLock),
        Unwritable(Unwritable),
    }
    let active = match fault {
        Fault::Locked => Active::Lock(WriteLock::take(&db).await),
        Fault::Unwritable => Active::Unwritable(Unwritable::set(&db)),
    };

    // Pipelined, so the server may take them as one batch (and then try them one by one).
    for line in ["lost 1", "lost 2", "lost 3", "/msg bob lost private"] {
        alice.send(line).await;
    }
    for _ in 0..4 {
        let line = alice.next().await;
        assert!(
            line.starts_with(NOT_STORED),
            "a message that could not be stored is refused, not echoed: {line:?}; seen: {:#?}",
            alice.seen
        );
    }
    bob.send("lost from bob").await;
    let line = bob.next().await;
    assert!(
        line.starts_with(NOT_STORED),
        "{line:?}; seen: {:#?}",
        bob.seen
    );
    server.assert_running();

    match active {
        Active::Lock(lock) => lock.release().await,
        Active::Unwritable(unwritable) => unwritable.clear(),
    }

    // The first message after the fault is stored and delivered: the sender was told to
    // send it again, so that must work now. The next line either of them gets is that
    // message: nothing refused was delivered.
    alice.send("after the outage").await;
    let line = alice.next().await;
    assert!(
        !line.starts_with("ERR "),
        "the server did not recover once the {fault:?} fault was cleared: {line:?} (the \
         server's log lines above say why)"
    );
    let echo = parse_stored(&line, "MSG");
    assert_eq!(
        (echo.nick.as_str(), echo.text.as_str()),
        ("alice", "after the outage")
    );
    let id = echo.id;
    assert_eq!(expect_msg(&mut bob, "alice", "after the outage").await, id);
    delivered.push((id, "alice", "after the outage"));
    let id = say(&mut bob, "bob", &mut [&mut alice], "bob is back").await;
    delivered.push((id, "bob", "bob is back"));
    alice.send("/msg bob a private word").await;
    let dm = alice.expect("DM ").await;
    assert_eq!(bob.next().await, dm);
    assert!(dm.ends_with(" alice bob a private word"), "{dm}");

    // The server still takes new logins, and their replay is the delivered messages only.
    let mut carol = server.login(CAROL.0, CAROL.1).await;
    for client in [&mut alice, &mut bob] {
        let join = client.expect("JOIN #general ").await;
        assert_eq!(field(&join, 3), "carol");
    }
    let replayed: Vec<(i64, String, String)> = carol
        .take_seen()
        .iter()
        .filter(|line| line.starts_with("HIST "))
        .map(|line| {
            let m = parse_stored(line, "HIST");
            (m.id, m.nick, m.text)
        })
        .collect();
    let expected: Vec<(i64, String, String)> = delivered
        .iter()
        .map(|(id, nick, text)| (*id, nick.to_string(), text.to_string()))
        .collect();
    assert_eq!(replayed, expected, "login replay");
    assert_eq!(history(&mut alice).await, expected, "/history");
    say(
        &mut carol,
        "carol",
        &mut [&mut alice, &mut bob],
        "hello all",
    )
    .await;

    server.assert_running();
    let files = server.stop().await;
    assert_eq!(
        stored_bodies(&files.db()).await,
        [
            "before the outage",
            "after the outage",
            "bob is back",
            "a private word",
            "hello all"
        ],
        "the database holds exactly the delivered messages"
    );
}

#[tokio::test]
async fn a_locked_database_refuses_messages_delivers_nothing_and_recovers() {
    outage_and_recovery(Fault::Locked).await;
}

#[tokio::test]
async fn an_unwritable_database_refuses_messages_delivers_nothing_and_recovers() {
    // `chmod` does not stop root, and a full disk needs a file system of its own; the
    // immutable attribute stops every writer, root included, even through open descriptors.
    let probe_dir = tempfile::tempdir().unwrap();
    if let Err(why) = immutable_stops_open_writers(probe_dir.path()) {
        eprintln!("SKIPPED: cannot make a file unwritable here: {why}");
        return;
    }
    outage_and_recovery(Fault::Unwritable).await;
}

// ---- 3: chat-admin while the chat is busy ----------------------------------------------------

/// Reads a client's lines until `alice`'s message `last` arrives; returns the ids of
/// `alice`'s `#general` messages and any `ERR` lines. `echoed` counts the messages so far.
async fn collect_alice_messages(
    mut reader: LineReader,
    last: &str,
    echoed: watch::Sender<usize>,
) -> (Vec<i64>, Vec<String>) {
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    loop {
        let line = next_line(&mut reader)
            .await
            .unwrap_or_else(|| panic!("connection closed after {} messages", ids.len()));
        if line.starts_with("ERR ") {
            errors.push(line);
        } else if line.starts_with("MSG #general ") {
            let message = parse_stored(&line, "MSG");
            if message.nick == "alice" {
                ids.push(message.id);
                echoed.send_replace(ids.len());
                if message.text == last {
                    return (ids, errors);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_admin_writes_while_the_chat_is_busy_without_database_locked() {
    const WINDOW: usize = 256;
    const AT_LEAST: usize = 2000;
    const LAST: &str = "load finished";
    let files = ServerFiles::new();
    files.add_user(ALICE.0, ALICE.1).await;
    files.add_user(BOB.0, BOB.1).await;
    let server = ServerProcess::spawn(&files, &[]);
    let (alice_reader, mut alice_writer) = login_split(&server, &files, ALICE).await;
    let (bob_reader, _bob_writer) = login_split(&server, &files, BOB).await;

    let (echo_tx, mut echoed) = watch::channel(0usize);
    let alice_task = tokio::spawn(collect_alice_messages(alice_reader, LAST, echo_tx));
    let (bob_tx, _) = watch::channel(0usize);
    let bob_task = tokio::spawn(collect_alice_messages(bob_reader, LAST, bob_tx));

    // Alice pipelines messages (at most WINDOW unacknowledged) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let mut echoed = echoed.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < AT_LEAST || !stop.load(Ordering::Relaxed) {
                while sent - *echoed.borrow_and_update() >= WINDOW {
                    tokio::time::timeout(WAIT, echoed.changed())
                        .await
                        .expect("echoes keep coming")
                        .expect("alice's reader is alive");
                }
                alice_writer
                    .send_line(&format!("load {sent}"))
                    .await
                    .expect("send");
                sent += 1;
                if sent % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            alice_writer.send_line(LAST).await.expect("send");
            sent + 1
        })
    };

    // The load is flowing before the first run of chat-admin...
    tokio::time::timeout(WAIT, echoed.wait_for(|n| *n >= 200))
        .await
        .expect("messages flow")
        .expect("alice's reader is alive");
    let before = *echoed.borrow();
    let db = files.db();
    let mut runs = Vec::new();
    for n in 1..=10 {
        let db = db.clone();
        let run = tokio::task::spawn_blocking(move || {
            admin_adduser(&db, &format!("user{n}"), &format!("password number {n}"))
        })
        .await
        .expect("chat-admin runner");
        runs.push(run);
    }
    // ...and was still flowing while chat-admin wrote.
    let during = *echoed.borrow() - before;
    stop.store(true, Ordering::Relaxed);

    let sent = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("sender finishes")
        .expect("sender");
    let (alice_ids, alice_errors) = tokio::time::timeout(Duration::from_secs(60), alice_task)
        .await
        .expect("alice's echoes arrive")
        .expect("alice's reader");
    let (bob_ids, bob_errors) = tokio::time::timeout(Duration::from_secs(60), bob_task)
        .await
        .expect("bob's messages arrive")
        .expect("bob's reader");

    for (n, run) in runs.iter().enumerate() {
        assert!(run.status.success(), "chat-admin run {}:\n{run:?}", n + 1);
        assert!(
            !run.stderr.to_lowercase().contains("locked")
                && !run.stdout.to_lowercase().contains("locked"),
            "chat-admin run {}:\n{run:?}",
            n + 1
        );
    }
    assert!(during > 0, "messages were committed while chat-admin ran");
    assert!(alice_errors.is_empty(), "alice: {alice_errors:?}");
    assert!(bob_errors.is_empty(), "bob: {bob_errors:?}");
    assert_eq!(alice_ids.len(), sent, "every message echoed");
    assert_eq!(
        bob_ids, alice_ids,
        "bob got alice's messages, in the same order"
    );

    let mut checker = TestClient::connect(&server.server(), files.client_tls()).await;
    checker.login(ALICE.0, ALICE.1).await;
    let stored = common::stored_ids(&mut checker, "#general").await;
    let echoed: BTreeSet<i64> = alice_ids.iter().copied().collect();
    let missing: Vec<&i64> = echoed.difference(&stored).collect();
    assert!(missing.is_empty(), "echoed but not stored: {missing:?}");
    assert_eq!(
        stored, echoed,
        "the history holds exactly the echoed messages"
    );

    // The accounts chat-admin made work at once.
    let mut newcomer = TestClient::connect(&server.server(), files.client_tls()).await;
    newcomer.login("user10", "password number 10").await;
}

// ---- 4: shutdown while a peer has stopped reading --------------------------------------------

// Two workers, so bob's reader keeps up while alice floods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_stalled_reader_ends_within_the_grace_period() {
    const STALLED: (&str, &str) = ("stalled", "stalled password");
    const MAX_MESSAGES: usize = 10_000;
    const IN_FLIGHT: usize = 8;
    let files = ServerFiles::new();
    for (nick, password) in [ALICE, BOB, STALLED] {
        files.add_user(nick, password).await;
    }
    let mut server = ServerProcess::spawn(&files, &["--shutdown-grace", "2"]);

    // bob reads everything, in a task of his own, until the server says goodbye.
    let (mut bob_reader, _bob_writer) = login_split(&server, &files, BOB).await;
    let bob_lines = Arc::new(Mutex::new(Vec::new()));
    let bob_task = {
        let lines = bob_lines.clone();
        tokio::spawn(async move {
            while let Some(line) = next_line(&mut bob_reader).await {
                if !line.starts_with("MSG ") {
                    lines.lock().unwrap().push(line);
                }
            }
        })
    };

    // `stalled` logs in with a small receive buffer and then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    let tcp = tokio::time::timeout(WAIT, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let halves = client::handshake(tcp, &server.server(), files.client_tls())
        .await
        .expect("handshake");
    let stalled = login_halves(halves, STALLED).await;

    // alice fills the room with long lines, paced by her own echoes, until the server gives
    // up on `stalled`: its queue overflowed behind a socket that takes nothing more, and its
    // writer stays stuck on that socket (the write timeout is 30 s).
    let (mut alice_reader, mut alice_writer) = login_split(&server, &files, ALICE).await;
    let filler = "x".repeat(3990);
    let (mut sent, mut echoed) = (0, 0);
    let leave = loop {
        while sent < MAX_MESSAGES && sent - echoed < IN_FLIGHT {
            alice_writer
                .send_line(&format!("{sent:06} {filler}"))
                .await
                .expect("send");
            sent += 1;
        }
        let line = next_line(&mut alice_reader).await.expect("alice's line");
        assert!(!line.starts_with("ERR "), "{line}");
        if line.starts_with("MSG #general ") && field(&line, 4) == "alice" {
            echoed += 1;
        } else if line.starts_with("LEAVE #general ") && field(&line, 3) == "stalled" {
            break line;
        }
        assert!(
            echoed < MAX_MESSAGES,
            "the server never dropped the stalled reader"
        );
    };
    assert!(
        ["disconnect", "timeout"].contains(&field(&leave, 4)),
        "{leave}"
    );

    server.signal("TERM");
    loop {
        let line = next_line(&mut alice_reader)
            .await
            .expect("alice is told before the close");
        if line == "BYE server-shutdown" {
            break;
        }
        assert!(line.starts_with("MSG #general "), "{line}");
    }
    assert_eq!(next_line(&mut alice_reader).await, None, "closed after BYE");
    tokio::time::timeout(Duration::from_secs(30), bob_task)
        .await
        .expect("bob's connection ends")
        .expect("bob's reader");
    let bob_lines = bob_lines.lock().unwrap().clone();
    assert_eq!(
        bob_lines.last().map(String::as_str),
        Some("BYE server-shutdown"),
        "bob's lines other than MSG: {bob_lines:#?}"
    );

    let status = server.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
    // The process has exited, but the thread reading its stderr may not have stored the
    // last lines yet: wait for them rather than reading the log once.
    server.wait_for_log("shutdown complete", Duration::from_secs(10));
    server.wait_for_log("grace period", Duration::from_secs(1));
    drop(stalled);
}

// ---- tasks the server cannot live without ---------------------------------------------------

/// What a bystander reads after the hub died: the rest of the lines, then the close.
async fn goodbye_after_the_hub_died(bob: &mut TestClient) {
    let rest = bob.expect_closed().await;
    assert_eq!(
        rest.last().map(String::as_str),
        Some("BYE server-shutdown"),
        "{rest:#?}"
    );
}

#[tokio::test]
async fn a_hub_that_panics_ends_the_server_with_an_error_naming_it() {
    let server = TestServer::start().await;
    for (nick, password) in [ALICE, BOB] {
        server.add_user(nick, password).await;
    }
    let mut alice = server.login(ALICE.0, ALICE.1).await;
    let mut bob = server.login(BOB.0, BOB.1).await;
    let addr = server.addr;

    tlschat::server::fault::arm();
    alice.send(HUB_PANIC).await;
    goodbye_after_the_hub_died(&mut bob).await;
    let error = server.ended().await.expect_err("run reports the hub's end");
    let ServerError::TaskEnded(ended) = &error else {
        panic!("not a task's end: {error}");
    };
    assert_eq!(ended.task, "hub");
    assert_eq!(
        error.to_string(),
        "the hub task panicked: injected fault: a test told the hub to panic"
    );
    // No zombie: nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_panics_ends_the_process_with_a_failure_status() {
    let files = ServerFiles::new();
    for (nick, password) in [ALICE, BOB] {
        files.add_user(nick, password).await;
    }
    let mut server = ServerProcess::spawn_armed(&files);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login(ALICE.0, ALICE.1).await;
    let mut bob = TestClient::connect(&server.server(), files.client_tls()).await;
    bob.login(BOB.0, BOB.1).await;

    alice.send(HUB_PANIC).await;
    goodbye_after_the_hub_died(&mut bob).await;
    let status = tokio::task::block_in_place(|| server.wait(Duration::from_secs(30)));
    assert_eq!(status.code(), Some(1), "{:#?}", server.log.lock().unwrap());
    let reason = "the hub task panicked: injected fault: a test told the hub to panic";
    let log = server.log.lock().unwrap();
    assert!(
        log.iter()
            .any(|line| line.starts_with("chat-server: ") && line.ends_with(reason)),
        "{log:#?}"
    );
}

/// The `chat-server` that `cargo test` builds has the fault compiled in; unless armed, its
/// text is a message like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unarmed_server_takes_the_fault_text_as_a_message() {
    let files = ServerFiles::new();
    files.add_user(ALICE.0, ALICE.1).await;
    let server = ServerProcess::spawn(&files, &[]);
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login(ALICE.0, ALICE.1).await;
    alice.send(HUB_PANIC).await;
    let echo = alice.expect("MSG #general ").await;
    assert!(echo.ends_with(HUB_PANIC), "{echo}");
    alice.send("still here").await;
    assert!(alice.expect("MSG #general ").await.ends_with("still here"));
}

// ---- errors that say what failed -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_during_login_is_logged_as_the_database_not_as_hashing() {
    let files = ServerFiles::new();
    files.add_user(ALICE.0, ALICE.1).await;
    let server = ServerProcess::spawn(&files, &[]);
    // Another process renames a table the login reads: a real database error, and one that
    // can be undone.
    let mut conn = raw_connection(&files.db()).await;
    sqlx::query("ALTER TABLE invites RENAME TO invites_away")
        .execute(&mut conn)
        .await
        .expect("rename invites");

    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.answer_prompts(ALICE.0, ALICE.1).await;
    alice.expect("ERR server-busy ").await;
    let line = tokio::task::block_in_place(|| server.wait_for_log("login check failed", WAIT));
    assert!(
        line.contains("cannot read the account from the database: ")
            && line.contains("invites")
            && !line.contains("hash"),
        "{line}"
    );

    sqlx::query("ALTER TABLE invites_away RENAME TO invites")
        .execute(&mut conn)
        .await
        .expect("rename invites back");
    alice.answer_nick(ALICE.0).await;
    alice.send(ALICE.1).await;
    alice.expect(&format!("WELCOME {} ", ALICE.0)).await;
}
