//! Test harness: the real server on 127.0.0.1:0 with a temporary directory, a real SQLite
//! file and freshly generated certificates, and clients that speak real TLS to it.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tlschat::auth::hash_password_blocking;
use tlschat::client::{self, LineReader, LineWriter};
use tlschat::net::reload::CertReloader;
use tlschat::net::{certs, tls};
use tlschat::protocol::{Nick, ServerLine};
use tlschat::server::ServerError;
use tlschat::store::{Store, DEFAULT_BUSY_TIMEOUT};
use tlschat::Config;

pub mod admin;

/// How long a test waits for a line it expects before failing.
pub const WAIT: Duration = Duration::from_secs(15);

/// The defaults, but with the abuse limits out of the way: most tests pipeline many lines
/// and open many connections from one address. Tests of those limits set them themselves.
pub fn test_config() -> Config {
    Config {
        flood_burst: 1_000_000,
        flood_per_second: 1_000_000.0,
        flood_tolerated: 1_000_000,
        max_per_address: 1_000_000,
        max_per_account: 1_000_000,
        new_per_address_burst: 1_000_000,
        new_per_address_per_second: 1_000_000.0,
        ..Config::default()
    }
}

/// The same for the `chat-server` binary.
pub const GENEROUS_LIMITS: [&str; 12] = [
    "--flood-burst",
    "1000000",
    "--flood-rate",
    "1000000",
    "--flood-tolerated",
    "1000000",
    "--max-per-address",
    "1000000",
    "--new-per-address-burst",
    "1000000",
    "--new-per-address-rate",
    "1000000",
];

/// The files one server instance uses; kept across restarts.
pub struct ServerFiles {
    pub dir: TempDir,
}

impl ServerFiles {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::generate(&dir.path().join("certs"), &[]).expect("certificates");
        Self { dir }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("chat.db")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn certs(&self) -> certs::CertPaths {
        certs::CertPaths::in_dir(&self.certs_dir())
    }

    pub fn client_tls(&self) -> Arc<ClientConfig> {
        tls::client_config(Some(&self.certs().ca_cert)).expect("client TLS config")
    }

    /// Creates an account directly in the database, as `chat-admin adduser` does.
    pub async fn add_user(&self, nick: &str, password: &str) {
        let store = Store::open(&self.db()).await.expect("open store");
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password_blocking(&password))
            .await
            .unwrap()
            .unwrap();
        store
            .create_account(&Nick::parse(nick).unwrap(), &hash)
            .await
            .expect("create account");
        store.close().await;
    }
}

/// The server running inside the test's runtime.
pub struct TestServer {
    pub files: ServerFiles,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_on(ServerFiles::new(), config).await
    }

    /// Starts a server on existing files (a restart on the same database).
    pub async fn start_on(files: ServerFiles, config: Config) -> Self {
        Self::start_on_with_busy_timeout(files, config, DEFAULT_BUSY_TIMEOUT).await
    }

    /// As [`TestServer::start_on`], with a store that waits at most `busy_timeout` for
    /// another writer's lock (fault tests make commits fail quickly).
    pub async fn start_on_with_busy_timeout(
        files: ServerFiles,
        config: Config,
        busy_timeout: Duration,
    ) -> Self {
        Self::start_listening(files, config, busy_timeout, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a server on existing files at a given address: a restart that clients find
    /// where they left it.
    pub async fn restart_at(files: ServerFiles, addr: SocketAddr) -> Self {
        Self::start_listening(files, test_config(), DEFAULT_BUSY_TIMEOUT, addr).await
    }

    async fn start_listening(
        files: ServerFiles,
        config: Config,
        busy_timeout: Duration,
        addr: SocketAddr,
    ) -> Self {
        let certs = files.certs();
        // The binary's own path: the same loader and resolver, without the file watching.
        let (_, tls) =
            CertReloader::start(&certs.server_cert, &certs.server_key).expect("server TLS");
        let store = Store::open_with(&files.db(), busy_timeout)
            .await
            .expect("open store");
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(tlschat::server::run(
            listener,
            tls,
            store,
            config,
            token,
            Vec::new(),
        ));
        Self {
            files,
            addr,
            shutdown,
            task,
        }
    }

    pub async fn add_user(&self, nick: &str, password: &str) {
        self.files.add_user(nick, password).await;
    }

    /// A TLS connection that has not logged in.
    pub async fn connect(&self) -> TestClient {
        TestClient::connect(
            &format!("localhost:{}", self.addr.port()),
            self.files.client_tls(),
        )
        .await
    }

    /// A TLS connection from another loopback address (`127.0.0.2`, say), which the
    /// server's per-address limits count apart.
    pub async fn connect_from(&self, local: &str) -> TestClient {
        TestClient::connect_from(self.addr, local, self.files.client_tls()).await
    }

    /// Logs in and reads everything up to the `INFO` line that ends the login replay.
    pub async fn login(&self, nick: &str, password: &str) -> TestClient {
        let mut client = self.connect().await;
        client.login(nick, password).await;
        client
    }

    /// Starts graceful shutdown and waits until the server has finished.
    pub async fn stop(self) -> ServerFiles {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
            .expect("server run");
        self.files
    }

    /// Waits until the server ends by itself (a task it cannot live without ended), and
    /// returns what `run` returned.
    pub async fn ended(self) -> Result<(), ServerError> {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
    }

    /// Fails the test if the server task has ended (returned or panicked).
    pub fn assert_running(&self) {
        assert!(!self.task.is_finished(), "the server task ended");
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }
}

/// A client speaking real TLS; every wait is bounded by [`WAIT`].
pub struct TestClient {
    reader: LineReader,
    writer: LineWriter,
    /// Every line received, for failure messages.
    pub seen: Vec<String>,
}

impl TestClient {
    pub async fn connect(server: &str, tls: Arc<ClientConfig>) -> Self {
        let (reader, writer) = client::connect(server, tls).await.expect("connect");
        Self {
            reader,
            writer,
            seen: Vec::new(),
        }
    }

    /// A TLS connection to the server at `addr` from another loopback address
    /// (`127.0.0.2`, say), for tasks that do not hold the [`TestServer`].
    pub async fn connect_from(addr: SocketAddr, local: &str, tls: Arc<ClientConfig>) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
        let tcp = socket.connect(addr).await.expect("connect");
        let server = format!("localhost:{}", addr.port());
        let (reader, writer) = client::handshake(tcp, &server, tls)
            .await
            .expect("handshake");
        TestClient {
            reader,
            writer,
            seen: Vec::new(),
        }
    }

    /// Waits for the `NICK` and `PASS` prompts and answers them; the answer is left to read.
    pub async fn answer_prompts(&mut self, nick: &str, password: &str) {
        self.answer_nick(nick).await;
        self.send(password).await;
    }

    /// Answers the `NICK` prompt and waits at `PASS`.
    pub async fn answer_nick(&mut self, nick: &str) {
        self.expect("NICK").await;
        self.send(nick).await;
        self.expect("PASS").await;
    }

    /// Logs in; every line up to the `INFO` that ends the login replay stays in `seen`.
    pub async fn login(&mut self, nick: &str, password: &str) {
        self.answer_prompts(nick, password).await;
        self.expect(&format!("WELCOME {nick} ")).await;
        self.skip_until("INFO ").await;
    }

    /// Returns and forgets the lines received so far.
    pub fn take_seen(&mut self) -> Vec<String> {
        std::mem::take(&mut self.seen)
    }

    pub async fn send(&mut self, line: &str) {
        self.writer.send_line(line).await.expect("send");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.send_raw(bytes).await.expect("send raw");
    }

    pub async fn close(&mut self) {
        let _ = self.writer.close().await;
    }

    /// The next line; `None` when the server closed the connection.
    pub async fn next_or_closed(&mut self) -> Option<String> {
        match tokio::time::timeout(WAIT, self.reader.next_line()).await {
            Ok(Some(Ok(line))) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Ok(Some(Err(_))) | Ok(None) => None,
            Err(_) => panic!("no line within {WAIT:?}; seen so far: {:#?}", self.seen),
        }
    }

    pub async fn next(&mut self) -> String {
        match self.next_or_closed().await {
            Some(line) => line,
            None => panic!("connection closed; seen so far: {:#?}", self.seen),
        }
    }

    /// The next line, which must start with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let line = self.next().await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}; seen: {:#?}",
            self.seen
        );
        line
    }

    /// The next line, parsed.
    pub async fn next_parsed(&mut self) -> ServerLine {
        let line = self.next().await;
        ServerLine::parse(&line).unwrap_or_else(|| panic!("not a contract line: {line:?}"))
    }

    /// Skips lines until one starts with `prefix`, and returns it.
    pub async fn skip_until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.next().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Reads lines up to and including one starting with `prefix`; returns them all.
    pub async fn collect_until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.next().await;
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(line) = tokio::time::timeout(quiet, self.reader.next_line()).await {
            panic!("expected silence, got {line:?}");
        }
    }

    /// Asserts the server closes the connection (after any remaining lines, returned).
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Some(line) = self.next_or_closed().await {
            rest.push(line);
        }
        rest
    }
}

/// Every stored message id of `room`, paging through `/history ROOM after ID 500`.
pub async fn stored_ids(client: &mut TestClient, room: &str) -> std::collections::BTreeSet<i64> {
    let mut ids = std::collections::BTreeSet::new();
    let mut after = 0;
    loop {
        client
            .send(&format!("/history {room} after {after} 500"))
            .await;
        let lines = client.collect_until("END history").await;
        let page: Vec<i64> = lines[..lines.len() - 1]
            .iter()
            .map(|l| field(l, 2).parse().unwrap())
            .collect();
        ids.extend(&page);
        match page.last() {
            Some(last) if page.len() == 500 => after = *last,
            _ => return ids,
        }
    }
}

/// Field `n` (0-based) of a space-separated line.
pub fn field(line: &str, n: usize) -> &str {
    line.split(' ')
        .nth(n)
        .unwrap_or_else(|| panic!("no field {n} in {line:?}"))
}

/// The `chat-server` binary as a child process, for signals and `kill -9`.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the server logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    pub fn spawn(files: &ServerFiles, extra_args: &[&str]) -> Self {
        Self::spawn_in(
            files.dir.path(),
            &files.db(),
            &files.certs_dir(),
            extra_args,
        )
    }

    pub fn spawn_in(cwd: &Path, db: &Path, certs_dir: &Path, extra_args: &[&str]) -> Self {
        Self::start(
            Command::new(env!("CARGO_BIN_EXE_chat-server")),
            cwd,
            db,
            certs_dir,
            extra_args,
        )
    }

    /// Starts the server allowed at most `limit` open file descriptors.
    pub fn spawn_with_fd_limit(files: &ServerFiles, limit: u32, extra_args: &[&str]) -> Self {
        Self::spawn_after_shell(files, &format!("ulimit -n {limit}"), extra_args)
    }

    /// Starts the server with the file-creation mask `umask` (octal, as the shell takes it).
    pub fn spawn_with_umask(files: &ServerFiles, umask: &str, extra_args: &[&str]) -> Self {
        Self::spawn_after_shell(files, &format!("umask {umask}"), extra_args)
    }

    /// Starts the server with its injectable faults armed (see `tlschat::server::fault`).
    pub fn spawn_armed(files: &ServerFiles) -> Self {
        let arm = format!("export {}=1", tlschat::server::fault::ARM_VARIABLE);
        Self::spawn_after_shell(files, &arm, &[])
    }

    /// Starts the server from a shell that first runs `setup` (which the server inherits).
    fn spawn_after_shell(files: &ServerFiles, setup: &str, extra_args: &[&str]) -> Self {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("{setup} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_chat-server"));
        Self::start(
            shell,
            files.dir.path(),
            &files.db(),
            &files.certs_dir(),
            extra_args,
        )
    }

    fn start(
        mut command: Command,
        cwd: &Path,
        db: &Path,
        certs_dir: &Path,
        extra_args: &[&str],
    ) -> Self {
        let mut child = command
            .current_dir(cwd)
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .args(GENEROUS_LIMITS)
            .arg("--db")
            .arg(db)
            .arg("--certs-dir")
            .arg(certs_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat-server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // The line is in the log before anyone learns the address from it, so a
                // test that starts reading the log once the server is up sees that line.
                let addr = listen_address(&line).map(str::to_owned);
                log_writer.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = addr_tx.send(addr);
                }
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {:#?}", log.lock().unwrap());
            }
        };
        Self { child, addr, log }
    }

    pub fn server(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The first log line containing `needle`, waiting up to `limit` for it.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {limit:?}; the log: {:#?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The address in a log line saying `listening on ADDR`, as text or inside a JSON object;
/// the address ends where a space, a comma or the string's closing quote begins.
pub fn listen_address(line: &str) -> Option<&str> {
    let rest = line.split("listening on ").nth(1)?;
    rest.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .next()
        .filter(|addr| !addr.is_empty())
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an `openssl` binary can be run; without one, `skipping` is skipped with a note.
/// CI installs openssl (.ci/run), so there a missing binary is a failure, not a skip.
pub fn openssl_available(skipping: &str) -> bool {
    match Command::new("openssl")
        .arg("version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => true,
        _ if std::env::var_os("CI").is_some() => panic!("CI must provide the `openssl` binary"),
        _ => {
            eprintln!("note: no usable `openssl` binary; skipping {skipping}");
            false
        }
    }
}

/// How long one run of a binary may take before the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What one finished run of a binary left behind.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn drain(
    mut source: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match source.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    });
    (buffer, handle)
}

/// Runs `command` with `stdin` (or no standard input at all) and waits at most [`RUN_LIMIT`].
pub fn run_bounded(mut command: Command, stdin: Option<&str>) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_owned();
        // The pipe closes when the thread ends: the program sees end of input.
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let (stdout, out_thread) = drain(child.stdout.take().unwrap());
    let (stderr, err_thread) = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {RUN_LIMIT:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout.lock().unwrap()),
                String::from_utf8_lossy(&stderr.lock().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = out_thread.join();
    let _ = err_thread.join();
    let stdout = String::from_utf8_lossy(&stdout.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    Run {
        status,
        stdout,
        stderr,
    }
}
