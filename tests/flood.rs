//! Flood control: a burst, then a rate; excess lines refused and never delivered; sustained
//! abuse disconnected; other users unaffected.

mod common;

use std::time::Duration;

use common::{TestClient, TestServer};
use tlschat::Config;

/// A token every 1000 s: nothing refills while a test runs, so counts are exact.
fn limits(burst: u32, tolerated: u32) -> Config {
    Config {
        flood_burst: burst,
        flood_per_second: 0.001,
        flood_tolerated: tolerated,
        ..Config::default()
    }
}

async fn room_of_three(config: Config) -> (TestServer, TestClient, TestClient, TestClient) {
    let server = TestServer::start_with(config).await;
    for (nick, password) in [
        ("alice", "password-a"),
        ("bob", "password-b"),
        ("carol", "password-c"),
    ] {
        server.add_user(nick, password).await;
    }
    let mut alice = server.login("alice", "password-a").await;
    let mut bob = server.login("bob", "password-b").await;
    let carol = server.login("carol", "password-c").await;
    alice.expect("JOIN #general ").await;
    alice.expect("JOIN #general ").await;
    bob.expect("JOIN #general ").await;
    (server, alice, bob, carol)
}

#[tokio::test]
async fn a_burst_is_cut_at_the_limit_with_exact_counts() {
    let (_server, mut alice, mut bob, mut carol) = room_of_three(limits(10, 100)).await;
    let mut paste = String::new();
    for i in 0..30 {
        paste.push_str(&format!("line {i}\n"));
    }
    alice.send_raw(paste.as_bytes()).await;
    // Answers come in request order: ten echoes, then twenty refusals.
    for i in 0..10 {
        assert!(alice
            .expect("MSG #general ")
            .await
            .ends_with(&format!(" alice line {i}")));
    }
    for _ in 0..20 {
        alice.expect("ERR rate-limited ").await;
    }
    for i in 0..10 {
        assert!(bob
            .expect("MSG #general ")
            .await
            .ends_with(&format!(" alice line {i}")));
    }
    // Nothing refused was delivered: bob's next line is carol's.
    carol.send("marker").await;
    assert!(bob.expect("MSG #general ").await.ends_with(" carol marker"));
}

#[tokio::test]
async fn empty_lines_and_bad_lines_count() {
    let (_server, mut alice, _bob, _carol) = room_of_three(limits(3, 100)).await;
    alice.send_raw(b"\n   \n\xff\nhello\n").await;
    alice.expect("ERR bad-utf8 ").await;
    alice.expect("ERR rate-limited ").await;
}

#[tokio::test]
async fn sustained_flooding_is_disconnected_and_the_room_goes_on() {
    let (_server, mut alice, mut bob, mut carol) = room_of_three(limits(5, 5)).await;
    let mut flood = String::new();
    for i in 0..50 {
        flood.push_str(&format!("spam {i}\n"));
    }
    alice.send_raw(flood.as_bytes()).await;
    let rest = alice.expect_closed().await;
    let echoes = rest.iter().filter(|l| l.starts_with("MSG ")).count();
    let refusals = rest
        .iter()
        .filter(|l| l.starts_with("ERR rate-limited "))
        .count();
    assert_eq!((echoes, refusals), (5, 5), "{rest:#?}");
    assert_eq!(rest.last().map(String::as_str), Some("BYE flooding"));
    for _ in 0..5 {
        bob.expect("MSG #general ").await;
    }
    assert!(bob
        .expect("LEAVE #general ")
        .await
        .ends_with(" alice disconnect"));
    carol.send("still here").await;
    assert!(bob
        .expect("MSG #general ")
        .await
        .ends_with(" carol still here"));
}

#[tokio::test]
async fn flooding_at_the_login_prompt_is_disconnected() {
    let server = TestServer::start_with(limits(4, 4)).await;
    let mut client = server.connect().await;
    client.expect("NICK").await;
    client.send_raw(&b"x\n".repeat(40)).await;
    let rest = client.expect_closed().await;
    assert_eq!(
        rest.last().map(String::as_str),
        Some("BYE flooding"),
        "{rest:#?}"
    );
    assert!(rest.iter().any(|l| l.starts_with("ERR rate-limited ")));
}

#[tokio::test]
async fn the_rate_refills_tokens() {
    let config = Config {
        flood_burst: 2,
        flood_per_second: 20.0,
        flood_tolerated: 100,
        ..Config::default()
    };
    let (_server, mut alice, _bob, _carol) = room_of_three(config).await;
    alice.send_raw(b"a\nb\nc\n").await;
    alice.expect("MSG #general ").await;
    alice.expect("MSG #general ").await;
    alice.expect("ERR rate-limited ").await;
    // 20 per second: after 300 ms (at least) there are tokens again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send("d").await;
    assert!(alice.expect("MSG #general ").await.ends_with(" alice d"));
}
