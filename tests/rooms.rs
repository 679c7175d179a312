//! Rooms, messages, presence and every command with its errors.

mod common;

use common::{field, TestClient, TestServer};

async fn two_users() -> (TestServer, TestClient, TestClient) {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    server.add_user("bob", "password-two").await;
    let mut alice = server.login("alice", "password-one").await;
    let bob = server.login("bob", "password-two").await;
    alice.expect("JOIN #general ").await;
    (server, alice, bob)
}

#[tokio::test]
async fn a_message_reaches_everyone_with_id_time_and_echo() {
    let (_server, mut alice, mut bob) = two_users().await;
    alice.send("hello  bob ").await;
    let echo = alice.expect("MSG #general ").await;
    let seen = bob.expect("MSG #general ").await;
    assert_eq!(echo, seen, "sender and recipient get the same line");
    let id: i64 = field(&echo, 2).parse().unwrap();
    assert!(id > 0);
    let time = field(&echo, 3);
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "RFC 3339 with milliseconds: {time}"
    );
    assert_eq!(field(&echo, 4), "alice");
    assert!(
        echo.ends_with(" alice hello  bob"),
        "inner spaces kept, trailing trimmed: {echo:?}"
    );

    bob.send("second").await;
    let next = alice.expect("MSG #general ").await;
    assert!(field(&next, 2).parse::<i64>().unwrap() > id, "ids increase");
}

#[tokio::test]
async fn leading_slash_escape_and_unknown_commands() {
    let (_server, mut alice, mut bob) = two_users().await;
    alice.send("//shrug").await;
    assert!(bob.expect("MSG #general ").await.ends_with(" alice /shrug"));
    alice.expect("MSG #general ").await;
    alice.send("/shrug").await;
    alice.expect("ERR unknown-command ").await;
    alice.send("/join").await;
    alice.expect("ERR bad-args Usage: /join #room").await;
    alice.send("/join nohash").await;
    alice.expect("ERR bad-name ").await;
    alice.send("still here").await;
    alice.expect("MSG #general ").await;
}

#[tokio::test]
async fn join_part_presence_and_current_room() {
    let (_server, mut alice, mut bob) = two_users().await;
    alice.send("/join #Ops").await;
    let join = alice.expect("JOIN #ops ").await;
    assert_eq!(field(&join, 3), "alice");
    // A new room has no history; the next line is the next answer.
    alice.send("in ops").await;
    let msg = alice.expect("MSG #ops ").await;
    assert!(msg.ends_with(" alice in ops"));

    bob.send("/join #ops").await;
    assert!(alice.expect("JOIN #ops ").await.ends_with(" bob"));
    assert!(bob.expect("JOIN #ops ").await.ends_with(" bob"));
    let hist = bob.expect("HIST #ops ").await;
    assert_eq!(
        field(&hist, 2),
        field(&msg, 2),
        "the join replays the room's history"
    );

    // Joining a room you are in only makes it current.
    alice.send("/join #general").await;
    assert_eq!(alice.next().await, "INFO Current room: #general");
    alice.send("back in general").await;
    assert!(bob
        .expect("MSG #general ")
        .await
        .ends_with(" alice back in general"));
    alice.expect("MSG #general ").await;

    // /say needs no current room.
    alice.send("/say #ops via say").await;
    assert!(bob.expect("MSG #ops ").await.ends_with(" alice via say"));
    alice.expect("MSG #ops ").await;

    bob.send("/part #ops").await;
    assert!(bob.expect("LEAVE #ops ").await.ends_with(" bob part"));
    assert_eq!(
        bob.next().await,
        "INFO Current room: #general",
        "#ops was bob's current room"
    );
    assert!(alice.expect("LEAVE #ops ").await.ends_with(" bob part"));
    bob.send("/say #ops can't").await;
    bob.expect("ERR not-in-room ").await;
    bob.send("/part #ops").await;
    bob.expect("ERR not-in-room ").await;
    bob.send("/say #nowhere hi").await;
    bob.expect("ERR no-such-room ").await;
    bob.send("/part #nowhere").await;
    bob.expect("ERR no-such-room ").await;
}

#[tokio::test]
async fn parting_the_current_room_falls_back_and_parting_all_leaves_no_room() {
    let (_server, mut alice, _bob) = two_users().await;
    alice.send("/join #ops").await;
    alice.expect("JOIN #ops ").await;
    alice.send("/part").await;
    alice.expect("LEAVE #ops ").await;
    assert_eq!(alice.next().await, "INFO Current room: #general");
    alice.send("/part").await;
    alice.expect("LEAVE #general ").await;
    alice.expect("INFO You are in no room").await;
    alice.send("hello?").await;
    alice.expect("ERR not-in-room ").await;
    alice.send("/who").await;
    alice.expect("ERR not-in-room ").await;
    alice.send("/history").await;
    alice.expect("ERR not-in-room ").await;
}

#[tokio::test]
async fn memberships_are_stored_across_logins() {
    let (server, mut alice, mut bob) = two_users().await;
    alice.send("/join #ops").await;
    alice.expect("JOIN #ops ").await;
    alice.send("ops talk").await;
    alice.expect("MSG #ops ").await;
    alice.send("/quit").await;
    alice.expect("BYE quit").await;
    bob.expect("LEAVE #general ").await;

    let mut again = server.connect().await;
    again.answer_prompts("alice", "password-one").await;
    again
        .expect("WELCOME alice Logged in. You are in #general.")
        .await;
    let replay = again.collect_until("INFO ").await;
    let kinds: Vec<String> = replay
        .iter()
        .map(|l| format!("{} {}", field(l, 0), field(l, 1)))
        .collect();
    assert_eq!(
        kinds,
        ["JOIN #general", "JOIN #ops", "HIST #ops", "INFO Current"],
        "each room: JOIN then HIST; then INFO: {replay:#?}"
    );
    assert!(replay[2].ends_with(" alice ops talk"));
    // Coming online again is a JOIN for the others.
    assert!(bob.expect("JOIN #general ").await.ends_with(" alice"));
}

#[tokio::test]
async fn rooms_and_who_list_members_and_online_counts() {
    let (server, mut alice, mut bob) = two_users().await;
    server.add_user("carol", "password-three").await;
    alice.send("/join #ops").await;
    alice.expect("JOIN #ops ").await;
    bob.send("/rooms").await;
    assert_eq!(
        bob.collect_until("END rooms").await,
        ["ROOM #general 3 2", "ROOM #ops 1 1", "END rooms"]
    );
    bob.send("/who #general").await;
    assert_eq!(
        bob.collect_until("END who").await,
        [
            "MEMBER #general alice online",
            "MEMBER #general bob online",
            "MEMBER #general carol offline",
            "END who"
        ]
    );
    bob.send("/who #ops").await;
    assert_eq!(
        bob.collect_until("END who").await,
        ["MEMBER #ops alice online", "END who"]
    );
    bob.send("/who #nope").await;
    bob.expect("ERR no-such-room ").await;
    bob.send("/rooms extra").await;
    bob.expect("ERR bad-args ").await;
}

#[tokio::test]
async fn private_messages_reach_both_sides_and_unknown_users_fail() {
    let (_server, mut alice, mut bob) = two_users().await;
    alice.send("/msg Bob  psst, bob").await;
    let to_bob = bob.expect("DM ").await;
    let to_alice = alice.expect("DM ").await;
    assert_eq!(to_bob, to_alice);
    assert_eq!(field(&to_bob, 3), "alice");
    assert_eq!(field(&to_bob, 4), "bob", "recipient shown as registered");
    assert!(to_bob.ends_with(" alice bob psst, bob"));
    alice.send("/msg nobody hi").await;
    alice.expect("ERR no-such-user ").await;
    alice.send("/msg bob").await;
    alice.expect("ERR bad-args ").await;
}

#[tokio::test]
async fn help_lists_commands_as_info_lines() {
    let (_server, mut alice, _bob) = two_users().await;
    alice.send("/help").await;
    let first = alice.expect("INFO ").await;
    assert!(first.contains("Commands"));
    let mut all = vec![first];
    for _ in 0..12 {
        all.push(alice.expect("INFO ").await);
    }
    let text = all.join("\n");
    for command in [
        "/join", "/part", "/say", "/msg", "/rooms", "/who", "/history", "/passwd", "/kick", "/quit",
    ] {
        assert!(text.contains(command), "{command} missing from help");
    }
}

#[tokio::test]
async fn every_room_arrives_in_id_order_for_everyone() {
    let (server, mut alice, mut bob) = two_users().await;
    server.add_user("carol", "password-three").await;
    let mut carol = server.login("carol", "password-three").await;
    alice.expect("JOIN #general ").await;
    bob.expect("JOIN #general ").await;
    // Three senders interleave without waiting for their echoes.
    for i in 0..30 {
        alice.send(&format!("a{i}")).await;
        bob.send(&format!("b{i}")).await;
        carol.send(&format!("c{i}")).await;
    }
    let mut sequences = Vec::new();
    for client in [&mut alice, &mut bob, &mut carol] {
        let mut ids = Vec::new();
        for _ in 0..90 {
            let line = client.expect("MSG #general ").await;
            ids.push(field(&line, 2).parse::<i64>().unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order: {ids:?}");
        sequences.push(ids);
    }
    assert!(
        sequences.windows(2).all(|w| w[0] == w[1]),
        "everyone saw the same messages"
    );
}

#[tokio::test]
async fn answers_arrive_in_the_order_of_the_requests() {
    let (_server, mut alice, _bob) = two_users().await;
    // One write: a message, then requests the session and the hub each answer.
    alice
        .send_raw(b"first\n/bogus\n/say #nowhere x\n\xff\nsecond\n/msg nobody hi\n/join\nthird\n")
        .await;
    let mut got = Vec::new();
    for _ in 0..8 {
        let line = alice.next().await;
        got.push(format!("{} {}", field(&line, 0), field(&line, 1)));
    }
    assert_eq!(
        got,
        [
            "MSG #general",
            "ERR unknown-command",
            "ERR no-such-room",
            "ERR bad-utf8",
            "MSG #general",
            "ERR no-such-user",
            "ERR bad-args",
            "MSG #general",
        ]
    );
}

#[tokio::test]
async fn history_answers_do_not_interleave() {
    let (_server, mut alice, _bob) = two_users().await;
    for i in 0..30 {
        alice.send(&format!("m{i}")).await;
        alice.expect("MSG #general ").await;
    }
    let mut burst = Vec::new();
    for _ in 0..20 {
        burst.extend_from_slice(b"/history #general 30\n");
    }
    alice.send_raw(&burst).await;
    for answer in 0..20 {
        let lines = alice.collect_until("END history").await;
        assert_eq!(lines.len(), 31, "answer {answer} is whole: {lines:#?}");
        assert!(lines[0].ends_with(" alice m0") && lines[29].ends_with(" alice m29"));
    }
}

#[tokio::test]
async fn a_deleted_sender_costs_only_its_own_messages() {
    let (server, mut alice, mut bob) = two_users().await;
    let store = tlschat::store::Store::open(&server.files.db())
        .await
        .unwrap();
    assert!(store.delete_account("alice").await.unwrap());
    store.close().await;
    // Both pipeline messages so that they share the server's write batches.
    for i in 0..20 {
        alice.send(&format!("ghost {i}")).await;
        bob.send(&format!("real {i}")).await;
    }
    let mut bob_echoes = 0;
    while bob_echoes < 20 {
        let line = bob.next().await;
        assert!(
            !line.contains("ghost"),
            "unstored message delivered: {line}"
        );
        if line.starts_with("MSG #general ") && line.contains(" bob real ") {
            bob_echoes += 1;
        } else {
            assert!(
                !line.starts_with("ERR "),
                "bob's messages must not fail: {line}"
            );
        }
    }
    for _ in 0..20 {
        let line = alice.skip_until("ERR ").await;
        assert!(line.starts_with("ERR server-busy "), "{line}");
    }
}
