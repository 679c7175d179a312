//! The certificate is replaced without a restart: new files on disk (or a SIGHUP) reach the
//! next handshake while connections opened before go on; a bad file or a key that does not
//! match is logged and the old certificate stays in service; an ACME-style full chain with
//! an intermediate serves as it is, whatever the key's PEM form; a certificate close to its
//! expiry is warned about; `--log-format json` writes one JSON object per line.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use common::{run_bounded, ServerFiles, ServerProcess, TestClient, WAIT};
use tlschat::net::certs;
use tlschat::net::tls::{self, fingerprint_sha256, load_certs};

const PASSWORD: &str = "alices password";

/// The SHA-256 fingerprint of the leaf certificate a new TLS handshake with `addr` gets.
fn served_fingerprint(addr: SocketAddr, tls: &Arc<ClientConfig>) -> Result<String, String> {
    let mut tcp = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no certificate presented")?;
    Ok(fingerprint_sha256(leaf))
}

/// Waits (up to [`WAIT`]) until new connections get the certificate `expected`.
fn wait_until_served(server: &ServerProcess, tls: &Arc<ClientConfig>, expected: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let served = served_fingerprint(server.addr, tls);
        if served.as_deref() == Ok(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still served {served:?} instead of {expected} after {WAIT:?}; the log: {:#?}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn file_fingerprint(chain: &Path) -> String {
    fingerprint_sha256(&load_certs(chain).expect("certificate")[0])
}

/// A connection opened before a swap still carries messages both ways.
async fn still_chats(client: &mut TestClient, text: &str) {
    client.send(text).await;
    let echo = client.skip_until("MSG #general ").await;
    assert!(echo.ends_with(text), "{echo}");
}

async fn alice_logged_in(files: &ServerFiles, server: &ServerProcess) -> TestClient {
    let mut alice = TestClient::connect(&server.server(), files.client_tls()).await;
    alice.login("alice", PASSWORD).await;
    alice
}

/// A server on development certificates that checks its files every `check_interval`
/// seconds, with `alice` logged in.
struct Running {
    files: ServerFiles,
    server: ServerProcess,
    /// Trusts the development CA, which signs every certificate these tests swap in.
    tls: Arc<ClientConfig>,
    /// The fingerprint of the certificate the server started with.
    before: String,
    alice: TestClient,
}

impl Running {
    async fn start(check_interval: &str) -> Self {
        let files = ServerFiles::new();
        files.add_user("alice", PASSWORD).await;
        let server = ServerProcess::spawn(&files, &["--cert-check-interval", check_interval]);
        let alice = alice_logged_in(&files, &server).await;
        Self {
            tls: files.client_tls(),
            before: file_fingerprint(&files.certs().server_cert),
            files,
            server,
            alice,
        }
    }

    fn served(&self) -> Result<String, String> {
        served_fingerprint(self.server.addr, &self.tls)
    }
}

/// Writes `contents` through a temporary file and a rename, as the certificate tools do.
fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_reaches_new_connections_while_old_ones_go_on() {
    let mut running = Running::start("1").await;
    let (files, server, tls, before) = (
        &running.files,
        &running.server,
        &running.tls,
        running.before.clone(),
    );

    let startup = server.wait_for_log("listening on ", WAIT);
    for expected in [
        concat!("tlschat ", env!("CARGO_PKG_VERSION")),
        &format!("listening on {}", server.addr),
        files.db().to_str().unwrap(),
        "CN=localhost",
        "expires ",
        &before,
    ] {
        assert!(startup.contains(expected), "{expected:?} not in {startup}");
    }
    assert_eq!(served_fingerprint(server.addr, tls), Ok(before.clone()));

    let renewed = certs::generate(&files.certs_dir(), &[]).expect("new certificate");
    wait_until_served(server, tls, &renewed.fingerprint);
    let reloaded = server.wait_for_log("certificate reloaded", WAIT);
    assert!(reloaded.contains("INFO"), "{reloaded}");
    assert!(reloaded.contains(&renewed.fingerprint), "{reloaded}");
    assert!(reloaded.contains("CN=localhost, expires "), "{reloaded}");
    still_chats(&mut running.alice, "still here after the swap").await;

    let log = server.log.lock().unwrap();
    assert!(
        !log.iter().any(|line| line.contains("expires on")),
        "a certificate good for two years is not warned about: {log:#?}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_while_connections_go_on() {
    // No polling: only the signal can make the server look at the files.
    let mut running = Running::start("0").await;
    let renewed = certs::generate(&running.files.certs_dir(), &[]).expect("new certificate");
    assert_eq!(running.served(), Ok(running.before.clone()));

    running.server.signal("HUP");
    wait_until_served(&running.server, &running.tls, &renewed.fingerprint);
    let reloaded = running
        .server
        .wait_for_log("certificate reloaded (SIGHUP)", WAIT);
    assert!(reloaded.contains(&renewed.fingerprint), "{reloaded}");
    still_chats(&mut running.alice, "still here after SIGHUP").await;
}

#[tokio::test]
async fn a_bad_certificate_or_a_key_that_does_not_match_leaves_the_old_one_in_service() {
    let mut running = Running::start("1").await;
    let (server, tls, before) = (&running.server, &running.tls, running.before.clone());
    let paths = running.files.certs();

    replace_file(&paths.server_cert, b"this is not a certificate\n");
    let refused = server.wait_for_log("no certificate found in", WAIT);
    assert!(refused.contains("ERROR"), "{refused}");
    assert!(refused.contains("server.pem"), "{refused}");
    assert!(refused.contains("still serving"), "{refused}");
    assert!(refused.contains(&before), "{refused}");
    assert_eq!(served_fingerprint(server.addr, tls), Ok(before.clone()));

    // A valid certificate from the same CA, but the key on disk is still the old one: what
    // an ACME client leaves for a moment when it has written the chain and not yet the key.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = certs::CertPaths::in_dir(elsewhere.path());
    fs::copy(&paths.ca_cert, &other.ca_cert).unwrap();
    fs::copy(&paths.ca_key, &other.ca_key).unwrap();
    let renewed = certs::generate(elsewhere.path(), &[]).expect("new certificate");
    replace_file(&paths.server_cert, &fs::read(&other.server_cert).unwrap());
    let mismatch = server.wait_for_log("does not match", WAIT);
    assert!(mismatch.contains("WARN"), "{mismatch}");
    assert!(mismatch.contains("server-key.pem"), "{mismatch}");
    assert!(mismatch.contains("server.pem"), "{mismatch}");
    assert_eq!(served_fingerprint(server.addr, tls), Ok(before));
    still_chats(&mut running.alice, "still here with the old certificate").await;

    // The key arrives: the pair is tried again and served.
    replace_file(&paths.server_key, &fs::read(&other.server_key).unwrap());
    wait_until_served(server, tls, &renewed.fingerprint);
    still_chats(&mut running.alice, "still here with the new one").await;
}

/// A CA (root or intermediate) that signs certificates in these tests.
struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn root_ca(name: &str) -> Issuer {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(name).self_signed(&key).unwrap();
    Issuer { cert, key }
}

fn intermediate_ca(name: &str, parent: &Issuer) -> Issuer {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(name)
        .signed_by(&key, &parent.cert, &parent.key)
        .unwrap();
    Issuer { cert, key }
}

/// A server certificate for `localhost` with `key`, valid from yesterday for `days`.
fn leaf(key: &KeyPair, issuer: &Issuer, days: i64) -> rcgen::Certificate {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let ymd =
        |d: chrono::DateTime<Utc>| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(Utc::now() - chrono::Duration::days(1));
    params.not_after = ymd(Utc::now() + chrono::Duration::days(days));
    params.signed_by(key, &issuer.cert, &issuer.key).unwrap()
}

/// The server on a certificate of this test's own (`--cert`, `--key`).
fn spawn_with_cert(files: &ServerFiles, cert: &Path, key: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ServerProcess::spawn(files, &args)
}

fn openssl(args: &[&str]) {
    let mut command = Command::new("openssl");
    command.args(args);
    let run = run_bounded(command, None);
    assert!(run.status.success(), "openssl {args:?}: {run:?}");
}

/// certbot's layout: `live/` holds symlinks into `archive/`, re-pointed at each renewal.
struct AcmeDir {
    archive: PathBuf,
    live: PathBuf,
}

impl AcmeDir {
    fn new(root: &Path) -> Self {
        let dir = Self {
            archive: root.join("archive"),
            live: root.join("live"),
        };
        fs::create_dir_all(&dir.archive).unwrap();
        fs::create_dir_all(&dir.live).unwrap();
        dir
    }

    fn fullchain(&self) -> PathBuf {
        self.live.join("fullchain.pem")
    }

    fn privkey(&self) -> PathBuf {
        self.live.join("privkey.pem")
    }

    /// Writes version `n` into `archive/` and points the `live/` links at it, chain first.
    fn renew(&self, n: u32, fullchain: &str, privkey: &str) {
        for (name, contents) in [("fullchain", fullchain), ("privkey", privkey)] {
            let target = self.archive.join(format!("{name}{n}.pem"));
            fs::write(&target, contents).unwrap();
            let link = self.live.join(format!("{name}.pem"));
            let tmp = self.live.join(format!("{name}.pem.new"));
            std::os::unix::fs::symlink(&target, &tmp).unwrap();
            fs::rename(&tmp, &link).unwrap();
        }
    }
}

#[tokio::test]
async fn an_acme_full_chain_and_key_serve_as_they_are_in_each_key_form() {
    let files = ServerFiles::new();
    files.add_user("alice", PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let root = root_ca("test root");
    let intermediate = intermediate_ca("test intermediate", &root);
    let root_pem = dir.path().join("root.pem");
    fs::write(&root_pem, root.cert.pem()).unwrap();
    // Trusting only the root: a handshake succeeds only if the server sends the intermediate.
    let tls = tls::client_config(Some(&root_pem)).unwrap();
    let chain = |leaf: &rcgen::Certificate| leaf.pem() + &intermediate.cert.pem();

    let acme = AcmeDir::new(dir.path());
    let pkcs8 = KeyPair::generate().unwrap();
    let first = leaf(&pkcs8, &intermediate, 90);
    acme.renew(1, &chain(&first), &pkcs8.serialize_pem());
    let server = spawn_with_cert(
        &files,
        &acme.fullchain(),
        &acme.privkey(),
        &["--cert-check-interval", "1"],
    );
    assert_eq!(
        served_fingerprint(server.addr, &tls),
        Ok(fingerprint_sha256(first.der()))
    );
    let mut alice = TestClient::connect(&server.server(), tls.clone()).await;
    alice.login("alice", PASSWORD).await;

    if !common::openssl_available("the SEC1 and PKCS#1 key forms") {
        return;
    }
    // SEC1 (`BEGIN EC PRIVATE KEY`), converted by openssl from rcgen's PKCS#8.
    let work = |name: &str| dir.path().join(name);
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    fs::write(work("p384.pem"), p384.serialize_pem()).unwrap();
    let (p384_in, sec1_out) = (work("p384.pem"), work("sec1.pem"));
    openssl(&[
        "ec",
        "-in",
        p384_in.to_str().unwrap(),
        "-out",
        sec1_out.to_str().unwrap(),
    ]);
    let sec1 = fs::read_to_string(&sec1_out).unwrap();
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{sec1}");
    let second = leaf(&p384, &intermediate, 90);
    acme.renew(2, &chain(&second), &sec1);
    wait_until_served(&server, &tls, &fingerprint_sha256(second.der()));

    // RSA in PKCS#1 (`BEGIN RSA PRIVATE KEY`); ring cannot generate RSA keys, openssl can.
    let (rsa8_out, rsa1_out) = (work("rsa8.pem"), work("rsa1.pem"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        rsa8_out.to_str().unwrap(),
    ]);
    openssl(&[
        "rsa",
        "-in",
        rsa8_out.to_str().unwrap(),
        "-traditional",
        "-out",
        rsa1_out.to_str().unwrap(),
    ]);
    let rsa = KeyPair::from_pem(&fs::read_to_string(&rsa8_out).unwrap()).unwrap();
    let pkcs1 = fs::read_to_string(&rsa1_out).unwrap();
    assert!(
        pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{pkcs1}"
    );
    let third = leaf(&rsa, &intermediate, 90);
    acme.renew(3, &chain(&third), &pkcs1);
    wait_until_served(&server, &tls, &fingerprint_sha256(third.der()));

    still_chats(&mut alice, "still here after two renewals").await;
}

#[test]
fn a_certificate_close_to_its_expiry_is_warned_about_at_start() {
    let files = ServerFiles::new();
    let root = root_ca("test root");
    let key = KeyPair::generate().unwrap();
    let expiring = leaf(&key, &root, 5);
    let (cert, key_file) = (
        files.dir.path().join("cert.pem"),
        files.dir.path().join("key.pem"),
    );
    fs::write(&cert, expiring.pem()).unwrap();
    fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = spawn_with_cert(&files, &cert, &key_file, &[]);
    let warning = server.wait_for_log("expires on", WAIT);
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("cert.pem"), "{warning}");
    assert!(warning.contains("CN=localhost"), "{warning}");
    assert!(warning.contains("renew"), "{warning}");
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    let files = ServerFiles::new();
    files.add_user("alice", PASSWORD).await;
    // Starting at all shows the harness found the address inside the JSON line.
    let server = ServerProcess::spawn(&files, &["--log-format", "json"]);
    let mut alice = alice_logged_in(&files, &server).await;
    still_chats(&mut alice, "hello in json").await;
    alice.close().await;
    server.signal("TERM");
    server.wait_for_log("shutdown complete", WAIT);

    let log = server.log.lock().unwrap().clone();
    assert!(log.len() >= 3, "{log:#?}");
    for line in &log {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        for key in ["timestamp", "level", "message", "target"] {
            assert!(object.get(key).is_some(), "no {key:?} in {line}");
        }
    }
    let listening = format!("listening on {}", server.addr);
    assert!(
        log.iter().any(|line| {
            let object: serde_json::Value = serde_json::from_str(line).unwrap();
            object["message"]
                .as_str()
                .is_some_and(|m| m.contains(&listening))
        }),
        "{log:#?}"
    );
}
