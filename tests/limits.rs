//! Connection limits and handshake abuse: refused before any TLS work, others unaffected.

mod common;

use std::time::Duration;

use common::{test_config, TestServer};
use tlschat::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw TCP connection that the server closes without a word when it is refused.
async fn closed_without_tls(server: &TestServer) -> bool {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // A refused connection is closed at once; an admitted one waits for a ClientHello.
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn connections_per_address_are_capped_and_freed() {
    let config = Config {
        max_per_address: 2,
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    let mut first = server.connect().await;
    first.expect("NICK").await;
    let mut second = server.connect().await;
    second.expect("NICK").await;
    assert!(
        closed_without_tls(&server).await,
        "a third connection is refused"
    );
    drop(first);
    // The place is freed when the first connection's task has ended.
    let mut admitted = false;
    for _ in 0..50 {
        if !closed_without_tls(&server).await {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "a closed connection frees its place");
    second.send("still usable").await;
}

#[tokio::test]
async fn new_connections_per_address_are_rate_limited() {
    let config = Config {
        new_per_address_burst: 3,
        new_per_address_per_second: 0.001,
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    for _ in 0..3 {
        let mut client = server.connect().await;
        client.expect("NICK").await;
    }
    assert!(
        closed_without_tls(&server).await,
        "the fourth new connection is refused"
    );
}

#[tokio::test]
async fn the_global_cap_refuses_before_the_handshake() {
    let config = Config {
        max_connections: 2,
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("alice", "password-one").await;
    let mut alice = server.login("alice", "password-one").await;
    let mut other = server.connect().await;
    other.expect("NICK").await;
    assert!(closed_without_tls(&server).await);
    alice.send("the logged-in user chats on").await;
    alice.expect("MSG #general ").await;
}

#[tokio::test]
async fn plaintext_http_to_the_tls_port_gets_no_http_answer() {
    let server = TestServer::start().await;
    server.add_user("alice", "password-one").await;
    let mut alice = server.login("alice", "password-one").await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/"),
        "{answer:?}"
    );
    alice.send("unaffected").await;
    alice.expect("MSG #general ").await;
}

#[tokio::test]
async fn a_trickled_client_hello_is_cut_off_while_others_log_in() {
    let config = Config {
        handshake_timeout: Duration::from_secs(1),
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("alice", "password-one").await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    // The start of a TLS record holding a ClientHello, one byte at a time.
    let hello_start = [
        0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let trickle = tokio::spawn(async move {
        for byte in hello_start.iter().cycle().take(100) {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 64];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
            {
                return true;
            }
        }
        false
    });
    // Meanwhile others complete their handshakes and log in.
    let mut alice = server.login("alice", "password-one").await;
    alice.send("hello").await;
    alice.expect("MSG #general ").await;
    assert!(trickle.await.unwrap(), "the trickling peer was cut off");
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_survived() {
    let files = common::ServerFiles::new();
    files.add_user("alice", "password-one").await;
    files.add_user("bob", "password-two").await;
    let server = common::ServerProcess::spawn_with_fd_limit(&files, 64, &[]);
    let name = server.server();
    let mut alice = common::TestClient::connect(&name, files.client_tls()).await;
    alice.login("alice", "password-one").await;
    // Hold far more connections than the server has descriptors for.
    let mut hogs = Vec::new();
    for _ in 0..120 {
        match TcpStream::connect(server.addr).await {
            Ok(tcp) => hogs.push(tcp),
            Err(_) => break,
        }
    }
    let mut exhausted = false;
    for _ in 0..100 {
        if server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("accept failed"))
        {
            exhausted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exhausted, "the server ran out of descriptors");
    // Existing users chat on.
    alice.send("still chatting").await;
    alice.expect("MSG #general ").await;
    // Once descriptors are free again, new users get in.
    drop(hogs);
    let mut bob = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok((mut reader, writer)) = tlschat::client::connect(&name, files.client_tls()).await
        else {
            continue;
        };
        if let Ok(Some(Ok(line))) =
            tokio::time::timeout(Duration::from_secs(5), reader.next_line()).await
        {
            if line == "NICK" {
                bob = Some((reader, writer));
                break;
            }
        }
    }
    let (mut reader, mut writer) = bob.expect("a new login works after the shortage");
    writer.send_line("bob").await.unwrap();
    assert_eq!(reader.next_line().await.unwrap().unwrap(), "PASS");
    writer.send_line("password-two").await.unwrap();
    assert!(reader
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .starts_with("WELCOME bob "));
}

#[tokio::test]
async fn accepted_sockets_have_tcp_keepalive() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client.expect("NICK").await;
    // `ss` shows a keepalive timer on the server's side of the connection.
    let output = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( sport = :{} )", server.addr.port()))
        .output();
    let Ok(output) = output else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide `ss` (iproute2)"
        );
        eprintln!("note: no `ss`; skipping");
        return;
    };
    let sockets = String::from_utf8_lossy(&output.stdout);
    assert!(sockets.contains("timer:(keepalive"), "{sockets}");
}

#[tokio::test]
async fn one_account_gets_at_most_its_cap_of_logged_in_connections() {
    const CAP: usize = 5;
    const EXTRA: usize = 7;
    let config = Config {
        max_per_account: CAP,
        // The parallel logins wait for the hashing threads, not for `server-busy`.
        hash_wait: Duration::from_secs(120),
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("mallory", "password-one").await;
    server.add_user("alice", "password-two").await;
    // From several addresses, all at the password prompt; then every password at once, so
    // the logins race each other through the password check.
    let mut attempts = Vec::new();
    for i in 0..CAP + EXTRA {
        let mut client = server.connect_from(&format!("127.0.0.{}", 2 + i % 4)).await;
        client.answer_nick("mallory").await;
        attempts.push(client);
    }
    for client in &mut attempts {
        client.send("password-one").await;
    }
    let answers = futures_util::future::join_all(attempts.into_iter().map(|mut client| async {
        let answer = client.next().await;
        (client, answer)
    }))
    .await;
    let (mut in_, refused): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|(_, answer)| answer.starts_with("WELCOME mallory "));
    assert_eq!(
        in_.len(),
        CAP,
        "{:?}",
        refused.iter().map(|r| &r.1).collect::<Vec<_>>()
    );
    for (mut client, answer) in refused {
        assert_eq!(answer, "BYE too-many-sessions");
        assert_eq!(client.next_or_closed().await, None, "closed after the BYE");
    }
    // Another account is not affected.
    let mut alice = server.login("alice", "password-two").await;
    alice.send("hello").await;
    alice.expect("MSG #general ").await;
    // A connection that leaves frees its place.
    let (leaving, _) = &mut in_[0];
    leaving.send("/quit").await;
    leaving.skip_until("BYE quit").await;
    let mut again = server.connect().await;
    again.login("mallory", "password-one").await;
}

/// Opens a connection from `local`, sends a real ClientHello and reads the server's answer
/// (proof the server computed its flight), then never answers it.
async fn stall_after_client_hello(server: &TestServer, local: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(server.files.client_tls(), name).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut flight = [0u8; 5];
    tokio::time::timeout(common::WAIT, tcp.read_exact(&mut flight))
        .await
        .expect("the server's flight within the wait")
        .expect("the server answers the ClientHello");
    assert_eq!(flight[0], 0x16, "a handshake record");
    tcp
}

/// Whether the server still holds the connection open (it has not closed or reset it).
fn still_open(tcp: &TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match tcp.try_read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(error) => return error.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

#[tokio::test]
async fn clients_that_stall_after_their_client_hello_hold_no_handshake_slot() {
    const SLOTS: usize = 2;
    let config = Config {
        max_handshakes: SLOTS,
        ..test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("alice", "password-one").await;
    // Twice as many stalled clients as slots, from addresses of their own. Each gets the
    // server's flight while all the others are still stalled: a server that held a slot
    // until the client answered would serve the later ones only after dropping the first.
    let mut stalled = Vec::new();
    for i in 0..2 * SLOTS {
        stalled.push(stall_after_client_hello(&server, &format!("127.0.0.{}", 10 + i)).await);
    }
    // The honest handshake is done once `connect_from` returns.
    let mut alice = server.connect_from("127.0.0.2").await;
    for (i, tcp) in stalled.iter().enumerate() {
        assert!(
            still_open(tcp),
            "stalled client {i} was dropped to make room"
        );
    }
    alice.login("alice", "password-one").await;
}
