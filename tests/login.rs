//! Login: success, every failure path, timeouts, and several devices of one account.

mod common;

use std::time::Duration;

use common::{field, TestServer};
use tlschat::Config;

#[tokio::test]
async fn login_succeeds_with_the_exact_welcome_sequence() {
    let server = TestServer::start().await;
    server
        .add_user("alice", "correct horse battery staple")
        .await;
    let mut alice = server.connect().await;
    alice
        .answer_prompts("alice", "correct horse battery staple")
        .await;
    assert_eq!(
        alice.next().await,
        "WELCOME alice Logged in. You are in #general. Type /help for commands."
    );
    let join = alice.expect("JOIN #general ").await;
    assert_eq!(field(&join, 3), "alice");
    assert_eq!(alice.next().await, "INFO Current room: #general");
}

#[tokio::test]
async fn nickname_is_case_insensitive_and_shown_as_registered() {
    let server = TestServer::start().await;
    server.add_user("Alice", "password-one").await;
    let mut client = server.connect().await;
    client.answer_prompts("aLiCe", "password-one").await;
    client.expect("WELCOME Alice ").await;
    assert_eq!(field(&client.expect("JOIN #general ").await, 3), "Alice");
}

#[tokio::test]
async fn wrong_password_unknown_nick_and_bad_nick_fail_identically() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    let mut client = server.connect().await;
    let mut answers = Vec::new();
    for (nick, password) in [
        ("alice", "wrong-password"),
        ("nobody", "password-one"),
        ("9 bad nick", "x"),
    ] {
        client.answer_prompts(nick, password).await;
        answers.push(client.next().await);
    }
    for answer in &answers {
        assert_eq!(answer, "ERR auth-failed Invalid nickname or password");
    }
    // Three failures end the connection.
    assert_eq!(client.next().await, "BYE auth-failed");
    assert!(client.expect_closed().await.is_empty());
}

#[tokio::test]
async fn a_failure_asks_again_and_the_second_try_can_succeed() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    let mut client = server.connect().await;
    client.answer_prompts("alice", "password-two").await;
    client.expect("ERR auth-failed ").await;
    client.login("alice", "password-one").await;
}

#[tokio::test]
async fn blank_lines_during_login_are_ignored_and_bad_lines_reported() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    let mut client = server.connect().await;
    client.expect("NICK").await;
    client.send("").await;
    client.send("   ").await;
    client.send_raw(b"\xff\xfe\n").await;
    client.expect("ERR bad-utf8 ").await;
    client.send("alice").await;
    client.expect("PASS").await;
    client.send("password-one").await;
    client.expect("WELCOME alice ").await;
}

#[tokio::test]
async fn bad_lines_at_the_password_prompt_are_reported_and_login_goes_on() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    let mut client = server.connect().await;
    client.expect("NICK").await;
    client.send("alice").await;
    client.expect("PASS").await;
    client.send_raw(b"pass\xffword\n").await;
    client.expect("ERR bad-utf8 ").await;
    client.send_raw(&[b'x'; 5000]).await;
    client.send_raw(b"\n").await;
    client.expect("ERR line-too-long ").await;
    client.send("password-one").await;
    client.expect("WELCOME alice ").await;
}

#[tokio::test]
async fn login_timeout_says_bye_and_closes() {
    let config = Config {
        login_timeout: Duration::from_millis(500),
        ..common::test_config()
    };
    let server = TestServer::start_with(config).await;
    let mut client = server.connect().await;
    client.expect("NICK").await;
    assert_eq!(client.next().await, "BYE login-timeout");
    client.expect_closed().await;
}

#[tokio::test]
async fn stalled_tls_handshake_is_dropped() {
    let config = Config {
        handshake_timeout: Duration::from_millis(300),
        ..common::test_config()
    };
    let server = TestServer::start_with(config).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    // Send nothing: the server must close the socket (read returns 0) after the timeout.
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}

#[tokio::test]
async fn plaintext_is_not_spoken() {
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"alice\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("NICK"), "{buf:?}");
}

#[tokio::test]
async fn two_devices_share_presence_and_messages() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    server.add_user("bob", "password-two").await;
    let mut bob = server.login("bob", "password-two").await;
    let mut laptop = server.login("alice", "password-one").await;
    bob.expect("JOIN #general ").await;
    let mut phone = server.login("alice", "password-one").await;
    // A second device makes no new JOIN for others.
    bob.send("/who").await;
    assert_eq!(bob.next().await, "MEMBER #general alice online");
    assert_eq!(bob.next().await, "MEMBER #general bob online");
    assert_eq!(bob.next().await, "END who");

    phone.send("from the phone").await;
    for client in [&mut laptop, &mut phone, &mut bob] {
        let line = client.expect("MSG #general ").await;
        assert!(line.ends_with(" alice from the phone"), "{line}");
    }
    // The first device leaving is not a LEAVE for others; the last one is.
    laptop.send("/quit").await;
    assert_eq!(laptop.next().await, "BYE quit");
    bob.send("ping").await;
    bob.expect("MSG #general ").await;
    phone.expect("MSG #general ").await;
    phone.send("/quit").await;
    let leave = bob.expect("LEAVE #general ").await;
    assert!(leave.ends_with(" alice quit"), "{leave}");
}

#[tokio::test]
async fn passwd_changes_the_password_for_the_next_login() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    let mut alice = server.login("alice", "password-one").await;
    alice.send("/passwd wrong-old new-password").await;
    alice.expect("ERR auth-failed ").await;
    alice.send("/passwd password-one short").await;
    alice.expect("ERR bad-args ").await;
    alice
        .send("/passwd password-one new password with spaces")
        .await;
    assert_eq!(alice.next().await, "INFO Password changed.");
    let mut again = server.connect().await;
    again.answer_prompts("alice", "password-one").await;
    again.expect("ERR auth-failed ").await;
    again.login("alice", "new password with spaces").await;
}

#[tokio::test]
async fn passwd_works_when_the_old_password_has_spaces_and_quotes() {
    let server = TestServer::start().await;
    // The README's kind of passphrase.
    server
        .add_user("alice", "correct horse battery staple")
        .await;
    let mut alice = server.login("alice", "correct horse battery staple").await;
    alice
        .send(r#"/passwd "correct horse wrong" "a new passphrase""#)
        .await;
    let refused = alice.expect("ERR auth-failed ").await;
    assert!(refused.contains("old password is wrong"), "{refused}");
    alice
        .send(&tlschat::protocol::passwd_line(
            "correct horse battery staple",
            r#"she said "hi" \o/"#,
        ))
        .await;
    assert_eq!(alice.next().await, "INFO Password changed.");
    alice.send(r#"/passwd "she said \"hi\" \\o/" x"#).await;
    let short = alice.expect("ERR bad-args ").await;
    assert!(short.contains("at least 8"), "{short}");
    let mut again = server.connect().await;
    again.login("alice", r#"she said "hi" \o/"#).await;
}
