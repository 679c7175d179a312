//! Invites and the NEWPASS flow, roles and `/kick`, locks, deletions and password changes
//! ending live sessions (made by `chat-admin`, another process), `chat-admin status`, and
//! history retention — all against the real server over real TLS.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::admin::{admin_async, assert_failure, assert_success, issue_code, login_fails};
use common::{test_config, ServerFiles, TestClient, TestServer, WAIT};
use tlschat::protocol::RoomName;
use tlschat::store::{NewMessage, Recipient, Store};
use tlschat::Config;

/// The issue's promise for lock, deluser and password changes made by another process.
const ENDS_WITHIN: Duration = Duration::from_secs(2);

/// Logs in with `code` at the PASS prompt, is asked for a new password, and sets it.
async fn redeem(server: &TestServer, nick: &str, code: &str, new_password: &str) -> TestClient {
    let mut client = server.connect().await;
    client.answer_prompts(nick, code).await;
    client.expect("NEWPASS").await;
    client.send(new_password).await;
    client.expect(&format!("WELCOME {nick} ")).await;
    client.skip_until("INFO ").await;
    client
}

/// Waits for the `BYE` that starts with `prefix` and then the close, skipping other lines,
/// and returns how long it took.
async fn expect_bye(client: &mut TestClient, prefix: &str) -> Duration {
    let started = Instant::now();
    let bye = client.skip_until("BYE ").await;
    assert!(bye.starts_with(prefix), "expected {prefix:?}, got {bye:?}");
    client.expect_closed().await;
    started.elapsed()
}

/// The line is still in service: a message comes back as its own echo.
async fn still_chatting(client: &mut TestClient, text: &str) {
    client.send(&format!("/say #general {text}")).await;
    let echo = client.skip_until("MSG #general ").await;
    assert!(echo.ends_with(text), "{echo}");
}

#[tokio::test]
async fn an_invite_code_works_once_for_its_nickname_until_it_expires() {
    let server = TestServer::start().await;
    server.add_user("alice", "alices-password").await;
    let db = server.files.db();

    let code = issue_code(&db, &["invite", "carol"]).await;
    let listed = admin_async(&db, &["list"], None).await;
    assert!(listed.stdout.contains("no password yet"), "{listed:?}");

    // The code is carol's only; and carol has no password to guess until she chooses one.
    login_fails(&server, "alice", &code).await;
    login_fails(&server, "dave", &code).await;
    login_fails(&server, "carol", "anything at all").await;

    // Typed in lower case, as people do. A short password is refused and asked again.
    let mut carol = server.connect().await;
    carol.answer_prompts("carol", &code.to_lowercase()).await;
    carol.expect("NEWPASS").await;
    carol.send("short").await;
    carol.expect("ERR bad-args ").await;
    carol.expect("NEWPASS").await;
    carol.send("carols own passphrase").await;
    carol.expect("WELCOME carol ").await;
    carol.skip_until("INFO ").await;
    still_chatting(&mut carol, "hello from carol").await;

    login_fails(&server, "carol", &code).await;
    let mut again = server.login("carol", "carols own passphrase").await;
    again.send("/quit").await;
    again.skip_until("BYE quit").await;

    // An expired code is an ordinary failure.
    let code = issue_code(&db, &["invite", "erin", "--valid-hours", "1"]).await;
    run_sql(&db, "UPDATE invites SET expires_at = 1").await;
    login_fails(&server, "erin", &code).await;
    server.stop().await;
}

/// Issue 12: codes were stored as a plain SHA-256 of their 60 bits, which anyone with a
/// stolen backup could search offline within a code's life. They are now stored under a
/// key kept beside the database, not in it.
#[tokio::test]
async fn a_copy_of_the_database_alone_does_not_give_invite_codes_away() {
    let server = TestServer::start().await;
    let db = server.files.db();
    let code = issue_code(&db, &["invite", "carol"]).await;
    let stored: String = query_one(&db, "SELECT code_hash FROM invites").await;
    let plain: String =
        ring::digest::digest(&ring::digest::SHA256, code.replace('-', "").as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    assert_ne!(stored, plain);
    let key = db.with_file_name("chat.db.invite-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A backup restored without the key: the code does not work there.
    let backup = server.files.dir.path().join("backup.db");
    assert_success(&admin_async(&db, &["backup", backup.to_str().unwrap()], None).await);
    let elsewhere = ServerFiles::new();
    std::fs::copy(&backup, elsewhere.db()).unwrap();
    let restored = TestServer::start_on(elsewhere, test_config()).await;
    login_fails(&restored, "carol", &code).await;
    // On the server with its key, it works.
    redeem(&server, "carol", &code, "carols own passphrase").await;
    server.stop().await;
}

async fn query_one(db: &Path, sql: &str) -> String {
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db))
            .await
            .unwrap();
    let value = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    value
}

/// Changes the database behind the server's back, as another process would.
async fn run_sql(db: &Path, sql: &str) {
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .busy_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn two_connections_racing_with_one_code_let_one_in() {
    let server = TestServer::start().await;
    let code = issue_code(&server.files.db(), &["invite", "carol"]).await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    for client in [&mut first, &mut second] {
        client.answer_prompts("carol", &code).await;
        client.expect("NEWPASS").await;
    }
    first.send("the first passphrase").await;
    second.send("the second passphrase").await;
    let answers = [first.next().await, second.next().await];
    let welcomed = answers.iter().filter(|a| a.starts_with("WELCOME ")).count();
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("ERR auth-failed "))
        .count();
    assert_eq!((welcomed, refused), (1, 1), "{answers:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_reset_code_replaces_the_password_and_ends_the_old_sessions() {
    let server = TestServer::start().await;
    server.add_user("alice", "alices-old-password").await;
    let db = server.files.db();
    let mut laptop = server.login("alice", "alices-old-password").await;

    assert_failure(&admin_async(&db, &["passwd", "nobody", "--invite"], None).await);
    let code = issue_code(&db, &["passwd", "alice", "--invite"]).await;
    // Until the code is used, the old password still works.
    let mut phone = server.login("alice", "alices-old-password").await;

    let mut fresh = redeem(&server, "alice", &code, "alices-new-password").await;
    for old in [&mut laptop, &mut phone] {
        let took = expect_bye(old, "BYE password-changed").await;
        assert!(took <= ENDS_WITHIN, "took {took:?}");
    }
    still_chatting(&mut fresh, "the new session stays").await;
    login_fails(&server, "alice", "alices-old-password").await;

    // The hourly sweep forgets old events; logins must not take that for new ones.
    run_sql(&db, "DELETE FROM account_events").await;
    let mut later = server.login("alice", "alices-new-password").await;
    still_chatting(&mut later, "after the sweep").await;
    server.stop().await;
}

/// Makes `nick` an admin from another process and waits until `client`, logged in as
/// `nick`, may use `/kick`. Account events arrive in order, so any event written before the
/// role change has then been applied too.
async fn become_admin(db: &Path, nick: &str, client: &mut TestClient) {
    assert_success(&admin_async(db, &["role", nick, "admin"], None).await);
    let deadline = Instant::now() + WAIT;
    loop {
        client.send("/kick nobody").await;
        let answer = client.skip_until("ERR ").await;
        if answer.starts_with("ERR no-such-user ") {
            return;
        }
        assert!(answer.starts_with("ERR forbidden "), "{answer}");
        assert!(Instant::now() < deadline, "the role never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_role_given_while_the_new_password_is_chosen_applies_to_that_session() {
    let server = TestServer::start().await;
    let db = server.files.db();
    let code = issue_code(&db, &["invite", "dora"]).await;
    let mut dora = server.connect().await;
    dora.answer_prompts("dora", &code).await;
    dora.expect("NEWPASS").await;
    assert_success(&admin_async(&db, &["role", "dora", "admin"], None).await);
    // Events are read in order: once a later role change has reached a live session, the
    // server has read dora's too, before her login completes.
    server.add_user("probe", "probes-password").await;
    let mut probe = server.login("probe", "probes-password").await;
    become_admin(&db, "probe", &mut probe).await;
    dora.send("doras own passphrase").await;
    dora.expect("WELCOME dora ").await;
    dora.skip_until("INFO ").await;
    dora.send("/kick nobody").await;
    dora.skip_until("ERR no-such-user ").await;
    server.stop().await;
}

#[tokio::test]
async fn changing_the_password_does_not_escape_a_lock() {
    let server = TestServer::start().await;
    server.add_user("bob", "bobs-password-1").await;
    let mut bob = server.login("bob", "bobs-password-1").await;
    assert_success(&admin_async(&server.files.db(), &["lock", "bob"], None).await);
    // Before the server has read the lock, bob changes his password.
    bob.send("/passwd bobs-password-1 bobs-password-2").await;
    let rest = bob.expect_closed().await;
    assert!(rest.iter().any(|l| l == "BYE account-locked"), "{rest:#?}");
    assert!(
        !rest.iter().any(|l| l.starts_with("INFO Password changed")),
        "a locked account's password changed: {rest:#?}"
    );
    login_fails(&server, "bob", "bobs-password-2").await;
    server.stop().await;
}

#[tokio::test]
async fn a_password_change_ends_every_session_but_the_one_that_made_it() {
    let server = TestServer::start().await;
    server.add_user("alice", "alices-old-password").await;
    let mut laptop = server.login("alice", "alices-old-password").await;
    let mut phone = server.login("alice", "alices-old-password").await;

    laptop
        .send("/passwd alices-old-password alices-new-password")
        .await;
    laptop.expect("INFO Password changed").await;
    expect_bye(&mut phone, "BYE password-changed").await;
    // Once the server has read the change back from the store, the maker is still in.
    become_admin(&server.files.db(), "alice", &mut laptop).await;
    still_chatting(&mut laptop, "still here").await;

    // From chat-admin, another process: every session ends.
    let run = admin_async(
        &server.files.db(),
        &["passwd", "alice", "--password-stdin"],
        Some("alices-third-password\n"),
    )
    .await;
    assert_success(&run);
    let took = expect_bye(&mut laptop, "BYE password-changed").await;
    assert!(took <= ENDS_WITHIN, "took {took:?}");
    server.login("alice", "alices-third-password").await;
    server.stop().await;
}

/// alice (to be made admin), bob on two connections, carol watching #general.
async fn team() -> (TestServer, TestClient, [TestClient; 2], TestClient) {
    let server = TestServer::start().await;
    for (nick, password) in [
        ("alice", "alices-password"),
        ("bob", "bobs-password"),
        ("carol", "carols-password"),
    ] {
        server.add_user(nick, password).await;
    }
    let alice = server.login("alice", "alices-password").await;
    let bob = [
        server.login("bob", "bobs-password").await,
        server.login("bob", "bobs-password").await,
    ];
    let mut carol = server.login("carol", "carols-password").await;
    // carol's own JOIN was in her login; wait until her view is quiet.
    carol.send("/who #general").await;
    carol.skip_until("END who").await;
    (server, alice, bob, carol)
}

#[tokio::test]
async fn an_admin_kicks_every_connection_and_members_may_not() {
    let (server, mut alice, [mut bob1, mut bob2], mut carol) = team().await;

    alice.send("/kick bob").await;
    alice.skip_until("ERR forbidden ").await;
    // Made admin while logged in: the role reaches the live session.
    become_admin(&server.files.db(), "alice", &mut alice).await;
    alice.send("/kick alice").await;
    alice.skip_until("ERR bad-args ").await;
    carol.send("/kick bob").await;
    carol.skip_until("ERR forbidden ").await;

    alice.send("/kick BOB spamming the room").await;
    alice.skip_until("INFO Kicked bob").await;
    for bob in [&mut bob1, &mut bob2] {
        expect_bye(bob, "BYE kicked by alice: spamming the room").await;
    }
    let leave = carol.skip_until("LEAVE #general ").await;
    assert!(leave.ends_with(" bob kicked"), "{leave}");
    // A kick is not a lock: bob may come back.
    server.login("bob", "bobs-password").await;
    server.stop().await;
}

#[tokio::test]
async fn lock_ends_live_sessions_and_logins_until_unlock() {
    let (server, _alice, [mut bob1, mut bob2], mut carol) = team().await;
    let db = server.files.db();

    assert_success(&admin_async(&db, &["lock", "bob"], None).await);
    for bob in [&mut bob1, &mut bob2] {
        let took = expect_bye(bob, "BYE account-locked").await;
        assert!(took <= ENDS_WITHIN, "took {took:?}");
    }
    let leave = carol.skip_until("LEAVE #general ").await;
    assert!(leave.ends_with(" bob kicked"), "{leave}");
    login_fails(&server, "bob", "bobs-password").await;
    let listed = admin_async(&db, &["list"], None).await;
    assert!(listed.stdout.contains("locked"), "{listed:?}");

    assert_success(&admin_async(&db, &["unlock", "bob"], None).await);
    server.login("bob", "bobs-password").await;
    server.stop().await;
}

#[tokio::test]
async fn deluser_ends_live_sessions() {
    let (server, _alice, [mut bob1, mut bob2], mut carol) = team().await;
    assert_success(&admin_async(&server.files.db(), &["deluser", "bob"], None).await);
    for bob in [&mut bob1, &mut bob2] {
        let took = expect_bye(bob, "BYE account-deleted").await;
        assert!(took <= ENDS_WITHIN, "took {took:?}");
    }
    let leave = carol.skip_until("LEAVE #general ").await;
    assert!(leave.ends_with(" bob kicked"), "{leave}");
    still_chatting(&mut carol, "the others chat on").await;
    server.stop().await;
}

/// Runs `chat-admin status` until its output satisfies `done` (the server publishes every
/// couple of seconds), and returns that output.
async fn status_until(db: &Path, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let run = admin_async(db, &["status"], None).await;
        assert_success(&run);
        if done(&run.stdout) {
            return run.stdout;
        }
        assert!(Instant::now() < deadline, "status never showed it: {run:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn status_shows_who_is_online_and_room_counts() {
    let (server, mut alice, _bob, _carol) = team().await;
    let db = server.files.db();
    alice.send("/join #ops").await;
    alice.skip_until("JOIN #ops ").await;

    let shown = status_until(&db, |out| {
        out.contains("Online: 3 account(s), 4 connection(s)")
    })
    .await;
    assert!(shown.starts_with("Server running: tlschat "), "{shown}");
    let bob = shown
        .lines()
        .find(|l| l.trim_start().starts_with("bob "))
        .unwrap();
    assert!(bob.contains("2 connection(s)"), "{shown}");
    let general = shown.lines().find(|l| l.contains("#general")).unwrap();
    assert!(general.contains("3 member(s)  3 online"), "{shown}");
    let ops = shown.lines().find(|l| l.contains("#ops")).unwrap();
    assert!(ops.contains("1 member(s)  1 online"), "{shown}");

    alice.send("/quit").await;
    alice.skip_until("BYE quit").await;
    status_until(&db, |out| {
        out.contains("Online: 2 account(s), 3 connection(s)")
    })
    .await;

    let files = server.stop().await;
    let run = admin_async(&files.db(), &["status"], None).await;
    assert_success(&run);
    assert!(
        run.stdout.starts_with("The server is not running."),
        "{run:?}"
    );
}

#[tokio::test]
async fn history_older_than_the_retention_is_deleted_in_the_background() {
    const DAY: i64 = 24 * 3600 * 1000;
    let files = ServerFiles::new();
    files.add_user("alice", "alices-password").await;
    files.add_user("bob", "bobs-password").await;
    let store = Store::open(&files.db()).await.unwrap();
    let alice = store.find_account("alice").await.unwrap().unwrap();
    let bob = store.find_account("bob").await.unwrap().unwrap();
    let general = RoomName::parse("#general").unwrap();
    let general_id = store.find_room(&general).await.unwrap().unwrap();
    let now = tlschat::protocol::now_millis();
    let message = |time: i64, text: &str, recipient: Recipient| NewMessage {
        time,
        sender_id: alice.id,
        sender_nick: alice.nick.clone(),
        recipient,
        text: text.to_owned(),
    };
    let room = || Recipient::Room {
        id: general_id,
        name: general.to_string(),
    };
    let mut old: Vec<NewMessage> = (0..2500)
        .map(|i| message(now - 10 * DAY + i, &format!("old {i}"), room()))
        .collect();
    // Kept for bob, who has not been online since: retention does not take it.
    old.push(message(
        now - 9 * DAY,
        "an old private message",
        Recipient::Account {
            id: bob.id,
            nick: bob.nick.clone(),
            online: false,
        },
    ));
    old.push(message(now - DAY / 2, "recent", room()));
    store.insert_messages(&old).await.unwrap();
    store.close().await;

    let config = Config {
        history_days: 3,
        ..test_config()
    };
    let server = TestServer::start_on(files, config).await;
    let mut alice = server.login("alice", "alices-password").await;
    let deadline = Instant::now() + WAIT;
    let kept = loop {
        alice.send("/history #general 500").await;
        let lines = alice.collect_until("END history").await;
        let hist: Vec<String> = lines
            .into_iter()
            .filter(|l| l.starts_with("HIST "))
            .collect();
        if hist.len() == 1 {
            break hist;
        }
        assert!(Instant::now() < deadline, "still {} messages", hist.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(kept[0].ends_with(" recent"), "{kept:?}");
    let mut bob = server.connect().await;
    bob.login("bob", "bobs-password").await;
    assert!(
        bob.seen
            .iter()
            .any(|l| l.starts_with("DM ") && l.ends_with("an old private message")),
        "{:#?}",
        bob.seen
    );
    server.stop().await;
}
