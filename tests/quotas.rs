//! Per-account bounds (issue 12): private messages kept for an offline user, rooms created
//! and joined, rooms forgotten when empty, `/rooms` in pages, and kept messages replayed in
//! pages that are marked delivered only once written.

mod common;

use std::collections::HashSet;

use common::{field, test_config, TestClient, TestServer, WAIT};
use tlschat::client::{self, LineReader, LineWriter};
use tlschat::protocol::RoomName;
use tlschat::store::{Durability, Store, DEFAULT_BUSY_TIMEOUT};
use tlschat::Config;

async fn server_with(config: Config, users: &[&str]) -> TestServer {
    let server = TestServer::start_with(config).await;
    for user in users {
        server.add_user(user, &format!("{user}-password")).await;
    }
    server
}

async fn login(server: &TestServer, nick: &str) -> TestClient {
    server.login(nick, &format!("{nick}-password")).await
}

/// Logs in and returns the `DM` lines of the login replay, up to its `INFO`.
async fn login_for_kept(server: &TestServer, nick: &str) -> (TestClient, Vec<String>) {
    let mut client = server.connect().await;
    client
        .answer_prompts(nick, &format!("{nick}-password"))
        .await;
    client.expect(&format!("WELCOME {nick} ")).await;
    let replay = client.collect_until("INFO ").await;
    let dms = replay
        .into_iter()
        .filter(|l| l.starts_with("DM "))
        .collect();
    (client, dms)
}

fn dm_id(line: &str) -> i64 {
    field(line, 1).parse().unwrap()
}

#[tokio::test]
async fn kept_private_messages_are_bounded_per_sender_and_per_recipient() {
    let config = Config {
        kept_dms_per_recipient: 8,
        kept_dms_from_one_sender: 5,
        ..test_config()
    };
    let server = server_with(config, &["alice", "bob", "carol"]).await;
    let mut alice = login(&server, "alice").await;
    for n in 1..=6 {
        alice.send(&format!("/msg bob note {n}")).await;
    }
    for n in 1..=5 {
        assert!(alice.expect("DM ").await.ends_with(&format!(" note {n}")));
    }
    let refused = alice.expect("ERR limit-reached ").await;
    assert!(
        refused.contains("bob") && refused.contains("\"note 6\""),
        "names the recipient and quotes the text: {refused}"
    );

    let mut carol = login(&server, "carol").await;
    for n in 1..=4 {
        carol.send(&format!("/msg bob from carol {n}")).await;
    }
    for n in 1..=3 {
        let echo = carol.expect("DM ").await;
        assert!(echo.ends_with(&format!(" from carol {n}")), "{echo}");
    }
    let refused = carol.expect("ERR limit-reached ").await;
    assert!(refused.contains("\"from carol 4\""), "{refused}");

    let (mut bob, kept) = login_for_kept(&server, "bob").await;
    let texts: Vec<&str> = kept
        .iter()
        .map(|l| l.splitn(6, ' ').nth(5).unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "note 1",
            "note 2",
            "note 3",
            "note 4",
            "note 5",
            "from carol 1",
            "from carol 2",
            "from carol 3"
        ]
    );
    // Delivered, so they no longer count: bob, offline again, may be sent more.
    bob.send("/quit").await;
    bob.expect_closed().await;
    alice.send("/msg bob after the replay").await;
    let echo = alice.skip_until("DM ").await;
    assert!(echo.ends_with(" after the replay"), "{echo}");
}

#[tokio::test]
async fn the_bound_is_exact_when_many_connections_send_at_once() {
    let config = Config {
        kept_dms_from_one_sender: 5,
        ..test_config()
    };
    let server = server_with(config, &["alice", "bob"]).await;
    let mut connections = Vec::new();
    for _ in 0..5 {
        connections.push(login(&server, "alice").await);
    }
    // Every connection pipelines four at once: twenty in flight for a bound of five. The
    // `/help` after them is answered after their answers, which come in request order.
    for connection in &mut connections {
        let mut burst: String = (0..4).map(|n| format!("/msg bob race {n}\n")).collect();
        burst.push_str("/help\n");
        connection.send_raw(burst.as_bytes()).await;
    }
    let mut refused = 0;
    for connection in &mut connections {
        let answers = connection.collect_until("INFO Commands:").await;
        refused += answers
            .iter()
            .filter(|l| l.starts_with("ERR limit-reached "))
            .count();
    }
    assert_eq!(refused, 15, "twenty sent, five kept");
    let (_bob, kept) = login_for_kept(&server, "bob").await;
    assert_eq!(kept.len(), 5, "{kept:#?}");
}

#[tokio::test]
async fn rooms_created_and_joined_are_bounded_and_empty_rooms_are_forgotten() {
    let config = Config {
        rooms_created_per_account: 3,
        rooms_joined_per_account: 5,
        ..test_config()
    };
    let server = server_with(config, &["alice", "bob"]).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    alice.skip_until("JOIN #general ").await;
    for (client, nick) in [(&mut alice, "a"), (&mut bob, "b")] {
        for n in 1..=3 {
            client.send(&format!("/join #{nick}{n}")).await;
            client.expect(&format!("JOIN #{nick}{n} ")).await;
        }
        client.send(&format!("/join #{nick}4")).await;
        let refused = client.expect("ERR limit-reached ").await;
        assert!(refused.contains("3 rooms"), "{refused}");
    }
    alice.send("/rooms").await;
    assert_eq!(
        alice.collect_until("END rooms").await.len(),
        1 + 7,
        "#general and three rooms each"
    );

    // A room whose last member leaves is forgotten, with its history, and frees the quota.
    alice.send("/say #a3 only alice saw this").await;
    alice.expect("MSG #a3 ").await;
    alice.send("/part #a3").await;
    alice.expect("LEAVE #a3 ").await;
    alice.send("/rooms").await;
    let rooms = alice.collect_until("END rooms").await;
    assert!(
        !rooms.iter().any(|l| l.starts_with("ROOM #a3 ")),
        "{rooms:#?}"
    );
    alice.send("/join #a4").await;
    alice.expect("JOIN #a4 ").await;

    // Joining rooms others created counts towards the membership cap, not the quota.
    bob.send("/join #a1").await;
    bob.expect("JOIN #a1 ").await;
    bob.send("/join #a2").await;
    let refused = bob.expect("ERR limit-reached ").await;
    assert!(refused.contains("5 rooms"), "{refused}");

    // The name is free again and the new room starts empty.
    bob.send("/part #b3").await;
    bob.expect("LEAVE #b3 ").await;
    bob.send("/join #a3").await;
    bob.expect("JOIN #a3 ").await;
    bob.send("/say #a3 marker").await;
    let next = bob.next().await;
    assert!(
        next.starts_with("MSG #a3 ") && next.ends_with(" marker"),
        "no history of the forgotten room: {next}"
    );
}

/// Rooms straight into the database, as many as an attacker made before there was a quota.
async fn rooms_made_by_a_spammer(server: &TestServer, count: usize) {
    let store = Store::open_with_durability(
        &server.files.db(),
        DEFAULT_BUSY_TIMEOUT,
        Durability::ProcessCrash,
    )
    .await
    .unwrap();
    let spammer = store.find_account("spammer").await.unwrap().unwrap().id;
    for n in 0..count {
        let room = RoomName::parse(&format!("#spam-room-with-a-long-name-{n:05}")).unwrap();
        store
            .join_room(spammer, &room, u32::MAX)
            .await
            .unwrap()
            .unwrap();
    }
    store.close().await;
}

#[tokio::test]
async fn rooms_come_in_pages_that_fit_the_queue_while_chat_goes_on() {
    // A small queue: the whole list (3,000 rooms, about 100 KB) would not fit its replies.
    let config = Config {
        outbox_max_bytes: 16 * 1024,
        ..test_config()
    };
    let server = server_with(config, &["alice", "bob", "spammer"]).await;
    rooms_made_by_a_spammer(&server, 3000).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    alice.skip_until("JOIN #general ").await;
    let mut listers = Vec::new();
    for _ in 0..5 {
        listers.push(login(&server, "spammer").await);
    }
    for lister in &mut listers {
        let asks = "/rooms\n".repeat(3);
        lister.send_raw(asks.as_bytes()).await;
    }
    for n in 0..20 {
        alice.send(&format!("chat goes on {n}")).await;
    }
    for n in 0..20 {
        let line = bob.skip_until("MSG #general ").await;
        assert!(line.ends_with(&format!(" chat goes on {n}")), "{line}");
    }
    for lister in &mut listers {
        for _ in 0..3 {
            let page = lister.collect_until("END rooms").await;
            let rooms = page.iter().filter(|l| l.starts_with("ROOM ")).count();
            assert_eq!(rooms, 100, "{page:#?}");
            assert!(lister
                .next()
                .await
                .starts_with("INFO More rooms: /rooms after #"));
        }
    }

    // Paging gives every room exactly once.
    let mut seen = HashSet::new();
    let mut ask = "/rooms".to_owned();
    loop {
        alice.send(&ask).await;
        let page = alice.collect_until("END rooms").await;
        let names: Vec<String> = page
            .iter()
            .filter(|l| l.starts_with("ROOM "))
            .map(|l| field(l, 1).to_owned())
            .collect();
        for name in &names {
            assert!(seen.insert(name.clone()), "{name} listed twice");
        }
        if names.len() < 100 {
            break;
        }
        alice.expect("INFO More rooms: ").await;
        ask = format!("/rooms after {}", names.last().unwrap());
    }
    assert_eq!(seen.len(), 3001, "every spam room and #general");
}

fn many_kept() -> Config {
    Config {
        kept_dms_per_recipient: 10_000,
        kept_dms_from_one_sender: 10_000,
        ..test_config()
    }
}

/// bob logs in over a socket whose receive buffer is tiny: the server can write only as
/// fast as the test reads.
async fn bob_logs_in_slowly(server: &TestServer) -> (LineReader, LineWriter) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let name = format!("localhost:{}", server.addr.port());
    let (mut reader, mut writer) = client::handshake(tcp, &name, server.files.client_tls())
        .await
        .unwrap();
    assert_eq!(next_line(&mut reader).await, "NICK");
    writer.send_line("bob").await.unwrap();
    assert_eq!(next_line(&mut reader).await, "PASS");
    writer.send_line("bob-password").await.unwrap();
    (reader, writer)
}

async fn next_line(reader: &mut LineReader) -> String {
    tokio::time::timeout(WAIT, reader.next_line())
        .await
        .expect("a line in time")
        .expect("not closed")
        .unwrap()
}

/// Sends `count` private messages of about `size` bytes from alice to bob, reading the
/// echoes as they come so alice's own queue never overflows. Returns their ids.
async fn keep_for_bob(alice: &mut TestClient, count: usize, size: usize) -> Vec<i64> {
    let filler = "x".repeat(size);
    let mut ids = Vec::with_capacity(count);
    for chunk in 0..count.div_ceil(10) {
        let lines: String = (chunk * 10..count.min(chunk * 10 + 10))
            .map(|n| format!("/msg bob {n} {filler}\n"))
            .collect();
        alice.send_raw(lines.as_bytes()).await;
        while ids.len() < count.min(chunk * 10 + 10) {
            let echo = alice.expect("DM ").await;
            ids.push(dm_id(&echo));
        }
        alice.take_seen();
    }
    ids
}

#[tokio::test]
async fn a_slow_reader_gets_every_kept_message_in_order_and_they_are_then_delivered() {
    let config = Config {
        outbox_max_lines: 16,
        ..many_kept()
    };
    let server = server_with(config, &["alice", "bob"]).await;
    let mut alice = login(&server, "alice").await;
    let sent = keep_for_bob(&mut alice, 350, 100).await;

    let (mut reader, mut writer) = bob_logs_in_slowly(&server).await;
    let mut received = Vec::new();
    loop {
        let line = next_line(&mut reader).await;
        assert!(!line.starts_with("BYE"), "{line}");
        if line.starts_with("DM ") {
            received.push(dm_id(&line));
        }
        if line.starts_with("INFO ") {
            break;
        }
    }
    assert_eq!(received, sent, "all of them, in order");
    writer.send_line("/quit").await.unwrap();
    while let Some(Ok(_)) = reader.next_line().await {}

    let (_bob, again) = login_for_kept(&server, "bob").await;
    assert!(again.is_empty(), "delivered once written: {again:#?}");
}

#[tokio::test]
async fn a_connection_lost_during_the_replay_leaves_what_was_not_written_kept() {
    let server = server_with(many_kept(), &["alice", "bob"]).await;
    let mut alice = login(&server, "alice").await;
    // About 8 MB: more than the socket buffers and the queue can hold between them.
    let sent = keep_for_bob(&mut alice, 2000, 4000).await;

    let (mut reader, writer) = bob_logs_in_slowly(&server).await;
    let mut first = Vec::new();
    while first.len() < 10 {
        let line = next_line(&mut reader).await;
        if line.starts_with("DM ") {
            first.push(dm_id(&line));
        }
    }
    assert_eq!(first, sent[..10]);
    drop((reader, writer));

    // The rest comes with the next login: from at most where the first left off (a
    // message may come twice, never not at all), in order, to the last one.
    let mut bob = server.connect().await;
    bob.answer_prompts("bob", "bob-password").await;
    let mut again = Vec::new();
    loop {
        let line = bob.next().await;
        if line.starts_with("DM ") {
            again.push(dm_id(&line));
            bob.take_seen();
        }
        if line.starts_with("INFO ") {
            break;
        }
    }
    assert!(!again.is_empty(), "what was not written is still kept");
    let start = sent.iter().position(|id| *id == again[0]).unwrap();
    assert_eq!(again, sent[start..], "a contiguous run to the last one");
    assert!(start < 1000, "most of them were never written: {start}");
}
