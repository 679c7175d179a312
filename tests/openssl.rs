//! The documented way to chat by hand: the real `openssl s_client` with
//! `-quiet -crlf -verify_return_error -CAfile ca.pem -verify_hostname HOST -connect HOST:PORT`.
//! Skipped (with a note) when no `openssl` binary is installed; CI installs it.

mod common;

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{field, ServerFiles, TestServer, WAIT};
use tlschat::Config;
use tokio::sync::mpsc;

const ALICE_PASSWORD: &str = "correct horse battery staple";
const BOB_PASSWORD: &str = "bobs password 123";

fn openssl_available() -> bool {
    common::openssl_available("the s_client tests")
}

/// One `openssl s_client` process; every read is bounded by [`WAIT`].
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Every stdout line so far, for failure messages.
    seen: Vec<String>,
}

impl SClient {
    /// The documented invocation, with `verify_hostname` as the name to check.
    fn spawn(ca: &Path, verify_hostname: &str, port: u16) -> Self {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-crlf",
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(ca)
            .args(["-verify_hostname", verify_hostname])
            .arg("-connect")
            .arg(format!("localhost:{port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_client");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let mut line = String::from_utf8_lossy(&line).into_owned();
                if line.ends_with('\r') {
                    line.pop();
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            loop {
                match stderr_pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Types one line (s_client's `-crlf` turns the LF into CR LF).
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to s_client: {e}; {}", self.context()));
    }

    fn context(&self) -> String {
        format!(
            "stdout so far: {:#?}\nstderr: {}",
            self.seen,
            self.stderr.lock().unwrap()
        )
    }

    /// The next stdout line; `None` when s_client closed its stdout.
    async fn next_or_closed(&mut self) -> Option<String> {
        match tokio::time::timeout(WAIT, self.lines.recv()).await {
            Ok(Some(line)) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Ok(None) => None,
            Err(_) => panic!("no line within {WAIT:?}; {}", self.context()),
        }
    }

    async fn next(&mut self) -> String {
        match self.next_or_closed().await {
            Some(line) => line,
            None => panic!("s_client output ended; {}", self.context()),
        }
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let line = self.next().await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}; {}",
            self.context()
        );
        line
    }

    async fn skip_until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.next().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Everything until the end of stdout.
    async fn rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Some(line) = self.next_or_closed().await {
            rest.push(line);
        }
        rest
    }

    /// The `NICK` prompt, after any `INFO` banner lines the contract allows before it.
    async fn expect_nick_prompt(&mut self) {
        loop {
            let line = self.next().await;
            if line == "NICK" {
                return;
            }
            assert!(
                line.starts_with("INFO "),
                "only INFO may come before NICK, got {line:?}; {}",
                self.context()
            );
        }
    }

    /// Logs in by typing, checking each line of the contract's login dialogue; returns
    /// after the `INFO` line that ends the login replay.
    async fn login(&mut self, nick: &str, password: &str) {
        self.expect_nick_prompt().await;
        self.send(nick);
        assert_eq!(self.next().await, "PASS", "{}", self.context());
        self.send(password);
        assert_eq!(
            self.next().await,
            format!("WELCOME {nick} Logged in. You are in #general. Type /help for commands."),
            "{}",
            self.context()
        );
        let join = self.expect("JOIN #general ").await;
        assert_eq!(join.split(' ').count(), 4, "{join:?}");
        assert_eq!(field(&join, 3), nick);
        self.skip_until("INFO ").await;
    }

    /// Waits (bounded) for the process to end.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "s_client still running after {limit:?}; {}",
                self.context()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RFC 3339 UTC time with milliseconds, e.g. `2026-11-21T12:01:03.123Z`.
fn assert_time(time: &str) {
    let b = time.as_bytes();
    let shape_ok = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && time
            .char_indices()
            .filter(|(i, _)| ![4, 7, 10, 13, 16, 19, 23].contains(i))
            .all(|(_, c)| c.is_ascii_digit());
    assert!(
        shape_ok,
        "not an RFC 3339 UTC time with milliseconds: {time:?}"
    );
}

async fn server_with_alice_and_bob() -> TestServer {
    let server = TestServer::start().await;
    server.add_user("alice", ALICE_PASSWORD).await;
    server.add_user("bob", BOB_PASSWORD).await;
    server
}

#[tokio::test]
async fn two_people_chat_with_openssl_s_client_as_documented() {
    if !openssl_available() {
        return;
    }
    let server = server_with_alice_and_bob().await;
    let ca = server.files.certs().ca_cert;
    let port = server.addr.port();

    let mut alice = SClient::spawn(&ca, "localhost", port);
    alice.login("alice", ALICE_PASSWORD).await;

    let mut bob = SClient::spawn(&ca, "localhost", port);
    bob.login("bob", BOB_PASSWORD).await;

    // Alice sees bob come online in #general.
    let join = alice.next().await;
    assert!(join.starts_with("JOIN #general "), "{join:?}");
    assert_eq!(join.split(' ').count(), 4, "{join:?}");
    assert_time(field(&join, 2));
    assert_eq!(field(&join, 3), "bob");

    // Typed text is a message to #general; both get it, the sender as its acknowledgement.
    alice.send("hello");
    let mut ids = Vec::new();
    for (who, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let line = client.next().await;
        assert!(line.starts_with("MSG #general "), "{who} got {line:?}");
        assert_eq!(line.split(' ').count(), 6, "{who} got {line:?}");
        let id: u64 = field(&line, 2).parse().expect("message id");
        assert!(id > 0);
        assert_time(field(&line, 3));
        assert!(line.ends_with(" alice hello"), "{who} got {line:?}");
        assert_eq!(field(&line, 4), "alice");
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "one message, one id");

    // A message starting with Q: -quiet keeps s_client from taking it as its own command.
    alice.send("Quick question from alice");
    let line = bob.next().await;
    assert!(line.starts_with("MSG #general "), "{line:?}");
    assert!(
        line.ends_with(" alice Quick question from alice"),
        "{line:?}"
    );
    let second: u64 = field(&line, 2).parse().unwrap();
    assert!(second > ids[0], "ids increase: {} then {second}", ids[0]);
    alice.expect("MSG #general ").await;

    // /quit: BYE quit, the connection closes and s_client ends.
    alice.send("/quit");
    assert_eq!(alice.next().await, "BYE quit", "{}", alice.context());
    let rest = alice.rest().await;
    assert!(rest.is_empty(), "nothing after BYE: {rest:?}");
    alice.wait_exit(WAIT).await;

    let leave = bob.next().await;
    assert!(leave.starts_with("LEAVE #general "), "{leave:?}");
    assert_eq!(leave.split(' ').count(), 5, "{leave:?}");
    assert_time(field(&leave, 2));
    assert_eq!(field(&leave, 3), "alice");
    assert_eq!(field(&leave, 4), "quit");

    bob.send("/quit");
    bob.skip_until("BYE quit").await;
    bob.wait_exit(WAIT).await;
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_over_s_client_gets_the_contract_answer() {
    if !openssl_available() {
        return;
    }
    let server = server_with_alice_and_bob().await;
    let mut alice = SClient::spawn(
        &server.files.certs().ca_cert,
        "localhost",
        server.addr.port(),
    );
    alice.expect_nick_prompt().await;
    alice.send("alice");
    assert_eq!(alice.next().await, "PASS");
    alice.send("not the password");
    assert_eq!(
        alice.next().await,
        "ERR auth-failed Invalid nickname or password"
    );
    alice.expect_nick_prompt().await;
    alice.login_after_nick_prompt("alice", ALICE_PASSWORD).await;
    alice.send("/quit");
    alice.skip_until("BYE quit").await;
    server.stop().await;
}

impl SClient {
    /// [`SClient::login`] for when the `NICK` prompt was already read.
    async fn login_after_nick_prompt(&mut self, nick: &str, password: &str) {
        self.send(nick);
        assert_eq!(self.next().await, "PASS", "{}", self.context());
        self.send(password);
        self.expect(&format!("WELCOME {nick} ")).await;
        self.skip_until("INFO ").await;
    }
}

/// s_client must refuse the server before any protocol line reaches the user.
async fn assert_refused(mut client: SClient) {
    // Keep stdin open: s_client must give up on its own, not because input ended.
    while let Some(line) = client.next_or_closed().await {
        assert_ne!(
            line,
            "NICK",
            "s_client talked to an unverified server; {}",
            client.context()
        );
    }
    let status = client.wait_exit(WAIT).await;
    assert!(
        !status.success(),
        "s_client should fail verification, exited {status}; {}",
        client.context()
    );
}

#[tokio::test]
async fn s_client_rejects_the_certificate_for_a_wrong_hostname() {
    if !openssl_available() {
        return;
    }
    let server = TestServer::start().await;
    let ca = server.files.certs().ca_cert;
    let port = server.addr.port();
    // Control: the right name gets the prompt on the same server.
    let mut ok = SClient::spawn(&ca, "localhost", port);
    ok.expect_nick_prompt().await;
    drop(ok);

    assert_refused(SClient::spawn(&ca, "wrong.example", port)).await;
    server.stop().await;
}

#[tokio::test]
async fn s_client_rejects_a_server_signed_by_another_ca() {
    if !openssl_available() {
        return;
    }
    let server = TestServer::start().await;
    let other = ServerFiles::new();
    assert_refused(SClient::spawn(
        &other.certs().ca_cert,
        "localhost",
        server.addr.port(),
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn s_client_line_endings_and_long_lines_work_by_hand() {
    if !openssl_available() {
        return;
    }
    let config = Config {
        max_line: 64,
        ..common::test_config()
    };
    let server = TestServer::start_with(config).await;
    server.add_user("alice", ALICE_PASSWORD).await;
    let mut alice = SClient::spawn(
        &server.files.certs().ca_cert,
        "localhost",
        server.addr.port(),
    );
    alice.login("alice", ALICE_PASSWORD).await;
    // -crlf sends CR LF; the CR must not become part of the text.
    alice.send("no carriage return here");
    let line = alice.expect("MSG #general ").await;
    assert!(line.ends_with(" alice no carriage return here"), "{line:?}");
    // An overlong typed line is refused and the connection stays usable.
    alice.send(&"x".repeat(100));
    alice.expect("ERR line-too-long ").await;
    alice.send("still here");
    let line = alice.expect("MSG #general ").await;
    assert!(line.ends_with(" alice still here"), "{line:?}");
    alice.send("/quit");
    assert_eq!(alice.next().await, "BYE quit");
    server.stop().await;
}
