//! Login throttling: answers slow down, an address that keeps failing is refused for a
//! while, the rightful user is never locked out, and chatting users are unaffected.

mod common;

use std::time::Duration;

use common::{test_config, TestClient, TestServer};
use tlschat::Config;

fn throttling() -> Config {
    Config {
        login_failure_delay: Duration::from_millis(20),
        login_max_address_delay: Duration::from_millis(1500),
        login_max_account_delay: Duration::from_millis(200),
        login_refuse_after: 4,
        ..test_config()
    }
}

/// One NICK/PASS round; returns the answer.
async fn attempt(client: &mut TestClient, nick: &str, password: &str) -> String {
    client.answer_prompts(nick, password).await;
    client.next().await
}

#[tokio::test]
async fn an_address_that_keeps_failing_is_refused_then_let_back_in() {
    let server = TestServer::start_with(throttling()).await;
    server.add_user("alice", "password-one").await;
    let mut first = server.connect().await;
    for _ in 0..3 {
        assert!(attempt(&mut first, "alice", "wrong")
            .await
            .starts_with("ERR auth-failed "));
    }
    first.expect("BYE auth-failed").await;
    let mut second = server.connect().await;
    assert!(attempt(&mut second, "nobody", "wrong")
        .await
        .starts_with("ERR auth-failed "));
    // Four failures: even the right password is refused without being checked.
    let refused = attempt(&mut second, "alice", "password-one").await;
    assert!(refused.starts_with("ERR rate-limited "), "{refused}");
    // Not for long: once the window since the last failure has passed, it works.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(attempt(&mut second, "alice", "password-one")
        .await
        .starts_with("WELCOME alice "));
}

#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_the_rightful_user_out() {
    let server = TestServer::start_with(throttling()).await;
    server.add_user("alice", "password-one").await;
    // The attacker, from 127.0.0.2, until its address is refused.
    let mut refused = false;
    for _ in 0..4 {
        let mut attacker = server.connect_from("127.0.0.2").await;
        for _ in 0..3 {
            let answer = attempt(&mut attacker, "alice", "guess").await;
            if answer.starts_with("ERR rate-limited ") {
                refused = true;
                break;
            }
            assert!(answer.starts_with("ERR auth-failed "), "{answer}");
        }
        if refused {
            break;
        }
    }
    assert!(refused, "the attacking address is refused");
    // alice, from her own address: slowed down at most, and in.
    let mut alice = server.connect().await;
    let answer = attempt(&mut alice, "alice", "password-one").await;
    assert!(answer.starts_with("WELCOME alice "), "{answer}");
}

#[tokio::test]
async fn a_storm_of_bad_logins_does_not_stop_the_chat() {
    let config = Config {
        hash_concurrency: 2,
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("alice", "password-one").await;
    server.add_user("bob", "password-two").await;
    let mut alice = server.login("alice", "password-one").await;
    let mut bob = server.login("bob", "password-two").await;
    alice.expect("JOIN #general ").await;
    let addr = server.addr;
    let tls = server.files.client_tls();
    let mut storm = Vec::new();
    for i in 0..60 {
        let tls = tls.clone();
        storm.push(tokio::spawn(async move {
            let server = format!("localhost:{}", addr.port());
            let mut client = TestClient::connect(&server, tls).await;
            let answer = attempt(&mut client, &format!("guess{i}"), "wrong password").await;
            let expected = ["ERR auth-failed ", "ERR rate-limited ", "ERR server-busy "];
            assert!(expected.iter().any(|e| answer.starts_with(e)), "{answer}");
        }));
    }
    for i in 0..20 {
        alice.send(&format!("during the storm {i}")).await;
        assert!(bob
            .expect("MSG #general ")
            .await
            .ends_with(&format!(" alice during the storm {i}")));
    }
    for task in storm {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn logins_beyond_the_hashing_slots_get_server_busy() {
    let config = Config {
        hash_concurrency: 1,
        hash_wait: Duration::from_millis(1),
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("alice", "password-one").await;
    let name = format!("localhost:{}", server.addr.port());
    let tls = server.files.client_tls();
    // Connect everyone first, then send all the passwords at once.
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut client = TestClient::connect(&name, tls.clone()).await;
        client.expect("NICK").await;
        client.send("alice").await;
        client.expect("PASS").await;
        clients.push(client);
    }
    for client in &mut clients {
        client.send("wrong password").await;
    }
    let mut busy = 0;
    for client in &mut clients {
        let answer = client.next().await;
        if answer.starts_with("ERR server-busy ") {
            busy += 1;
            // Not counted as a failure: the next attempt is a normal one.
            client.expect("NICK").await;
        } else {
            assert!(answer.starts_with("ERR auth-failed "), "{answer}");
        }
    }
    assert!(
        busy > 0,
        "one hashing slot cannot serve twenty logins at once"
    );
}
