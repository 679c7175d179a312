//! Trusting the server's certificate: a private CA, or trust on first use remembered in a
//! known_hosts file and refused loudly when it changes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{ServerFiles, TestServer, WAIT};
use tlschat::client::trust::{self, KnownHosts, Trust, TrustError};
use tlschat::client::{ClientError, LineReader, LineWriter};
use tlschat::net::tls::{fingerprint_sha256, load_certs};

/// A fingerprint no generated certificate has.
const OTHER_FP: &str = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

/// The SHA-256 fingerprint of the certificate `server` presents.
fn server_fingerprint(server: &TestServer) -> String {
    let chain = load_certs(&server.files.certs().server_cert).expect("server certificate");
    fingerprint_sha256(&chain[0])
}

fn address(server: &TestServer) -> String {
    format!("localhost:{}", server.addr.port())
}

/// A known_hosts file in a folder that does not exist yet.
fn known_hosts_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("tlschat").join("known_hosts")
}

fn pinned(known_hosts: &Path) -> Trust {
    Trust::SystemOrPinned {
        known_hosts: known_hosts.to_owned(),
    }
}

/// Records what `ask` was shown and answers `answer`.
struct Asker {
    answer: bool,
    asked: Vec<(String, String)>,
}

impl Asker {
    fn new(answer: bool) -> Self {
        Self {
            answer,
            asked: Vec::new(),
        }
    }

    async fn connect(
        &mut self,
        server: &str,
        trust: &Trust,
    ) -> Result<(LineReader, LineWriter), TrustError> {
        let mut ask = |host_port: &str, fingerprint: &str| {
            self.asked
                .push((host_port.to_owned(), fingerprint.to_owned()));
            self.answer
        };
        trust::connect(server, trust, &mut ask).await
    }
}

/// Connects with an `ask` that fails the test if it is called.
async fn connect_without_asking(
    server: &str,
    trust: &Trust,
) -> Result<(LineReader, LineWriter), TrustError> {
    let mut ask = |host_port: &str, fingerprint: &str| -> bool {
        panic!("asked about {host_port} {fingerprint} although it should be trusted already")
    };
    trust::connect(server, trust, &mut ask).await
}

async fn next_line(reader: &mut LineReader) -> String {
    tokio::time::timeout(WAIT, reader.next_line())
        .await
        .expect("a line in time")
        .expect("connection open")
        .expect("readable line")
}

/// Proves the connection works both ways: the server asks `NICK`, gets one, asks `PASS`.
async fn talk(connection: (LineReader, LineWriter)) {
    let (mut reader, mut writer) = connection;
    let mut line = next_line(&mut reader).await;
    while line.starts_with("INFO ") {
        line = next_line(&mut reader).await;
    }
    assert_eq!(line, "NICK");
    writer.send_line("alice").await.expect("send");
    assert_eq!(next_line(&mut reader).await, "PASS");
}

fn read_known_hosts(path: &Path) -> KnownHosts {
    KnownHosts::load(path).expect("known_hosts readable")
}

#[tokio::test]
async fn declined_certificate_is_not_trusted_and_not_remembered() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = known_hosts_in(&dir);
    let mut asker = Asker::new(false);

    let result = asker
        .connect(&address(&server), &pinned(&known_hosts))
        .await;

    let expected = server_fingerprint(&server);
    match result {
        Err(TrustError::NotTrusted {
            server: host_port,
            fingerprint,
        }) => {
            assert_eq!(host_port, address(&server));
            assert_eq!(fingerprint, expected);
        }
        Err(other) => panic!("expected NotTrusted, got {other}"),
        Ok(_) => panic!("connected to an untrusted server"),
    }
    assert_eq!(asker.asked, vec![(address(&server), expected)]);
    assert!(!known_hosts.exists(), "known_hosts was written");
    assert_eq!(
        read_known_hosts(&known_hosts).fingerprint_for(&address(&server)),
        None
    );
}

#[tokio::test]
async fn accepted_certificate_is_remembered_and_not_asked_about_again() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = known_hosts_in(&dir);
    let trust = pinned(&known_hosts);
    let expected = server_fingerprint(&server);
    let mut asker = Asker::new(true);

    let connection = asker
        .connect(&address(&server), &trust)
        .await
        .expect("connects once accepted");
    talk(connection).await;

    assert_eq!(asker.asked, vec![(address(&server), expected.clone())]);
    assert_eq!(
        read_known_hosts(&known_hosts).fingerprint_for(&address(&server)),
        Some(expected.as_str())
    );
    let text = fs::read_to_string(&known_hosts).unwrap();
    let entries: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .collect();
    assert_eq!(entries, vec![format!("{} {expected}", address(&server))]);

    // A reconnect, and one spelling the host differently, use the pin without asking.
    talk(
        connect_without_asking(&address(&server), &trust)
            .await
            .expect("reconnects"),
    )
    .await;
    let shouting = format!("LOCALHOST:{}", server.addr.port());
    talk(
        connect_without_asking(&shouting, &trust)
            .await
            .expect("same host"),
    )
    .await;
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), text);
}

#[tokio::test]
async fn changed_certificate_is_refused_loudly() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = known_hosts_in(&dir);
    fs::create_dir_all(known_hosts.parent().unwrap()).unwrap();
    let before = format!("# pinned earlier\n{} {OTHER_FP}\n", address(&server));
    fs::write(&known_hosts, &before).unwrap();
    let presented = server_fingerprint(&server);

    let error = match connect_without_asking(&address(&server), &pinned(&known_hosts)).await {
        Err(error) => error,
        Ok(_) => panic!("connected although the certificate changed"),
    };

    let message = error.to_string();
    match error {
        TrustError::Changed {
            server: host_port,
            remembered,
            presented: shown,
            known_hosts: file,
        } => {
            assert_eq!(host_port, address(&server));
            assert_eq!(remembered, OTHER_FP);
            assert_eq!(shown, presented);
            assert_eq!(file, known_hosts);
        }
        other => panic!("expected Changed, got {other}"),
    }
    assert!(message.contains("HAS CHANGED"), "{message}");
    assert!(message.contains(OTHER_FP), "{message}");
    assert!(message.contains(&presented), "{message}");
    assert!(
        message.contains(&known_hosts.display().to_string()),
        "{message}"
    );
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), before);
}

#[tokio::test]
async fn private_ca_connects_without_asking() {
    let server = TestServer::start().await;
    // `Trust::Ca` carries no known_hosts file: only the CA decides.
    let trust = Trust::Ca(server.files.certs().ca_cert);

    let connection = connect_without_asking(&address(&server), &trust)
        .await
        .expect("connects with the CA");
    talk(connection).await;
}

#[tokio::test]
async fn another_ca_is_refused_without_asking() {
    let server = TestServer::start().await;
    let stranger = ServerFiles::new();
    let trust = Trust::Ca(stranger.certs().ca_cert);

    match connect_without_asking(&address(&server), &trust).await {
        Err(TrustError::Client(ClientError::Handshake { .. })) => {}
        Err(other) => panic!("expected a handshake failure, got {other}"),
        Ok(_) => panic!("connected with a CA that did not sign the certificate"),
    }
}

#[tokio::test]
async fn pin_for_another_port_does_not_apply() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = known_hosts_in(&dir);
    let expected = server_fingerprint(&server);
    let other_port = if server.addr.port() == 1 {
        2
    } else {
        server.addr.port() - 1
    };
    let other = format!("localhost:{other_port}");
    read_known_hosts(&known_hosts)
        .remember(&other, &expected)
        .unwrap();
    let before = fs::read_to_string(&known_hosts).unwrap();
    let mut asker = Asker::new(false);

    match asker
        .connect(&address(&server), &pinned(&known_hosts))
        .await
    {
        Err(TrustError::NotTrusted { fingerprint, .. }) => assert_eq!(fingerprint, expected),
        Err(other) => panic!("expected NotTrusted, got {other}"),
        Ok(_) => panic!("a pin for {other} was used for another port"),
    }
    assert_eq!(asker.asked, vec![(address(&server), expected)]);
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), before);
}

#[tokio::test]
async fn connecting_to_nothing_is_a_connect_error_not_a_trust_question() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = known_hosts_in(&dir);

    match connect_without_asking(&format!("127.0.0.1:{port}"), &pinned(&known_hosts)).await {
        Err(TrustError::Client(ClientError::Connect { .. })) => {}
        Err(other) => panic!("expected a connect error, got {other}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    assert!(!known_hosts.exists());
}
