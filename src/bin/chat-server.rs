//! `chat-server`: parses flags, sets up logging, finds or generates the certificate, opens
//! the database, binds, and hands over to `tlschat::server::run`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tlschat::net::{certs, tls};
use tlschat::store::{Durability, Store, DEFAULT_BUSY_TIMEOUT};
use tlschat::Config;

/// A TLS chat server with password-checked nicknames.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address and port to listen on (TLS only; there is no plaintext listener).
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:7777")]
    listen: String,
    /// SQLite database file; created with its tables on first start.
    #[arg(long, env = "CHAT_DB", default_value = "chat.db")]
    db: PathBuf,
    /// Certificate chain (PEM). Default: certs/server.pem, generated if missing.
    #[arg(long, env = "CHAT_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the certificate. Default: certs/server-key.pem.
    #[arg(long, env = "CHAT_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Folder of the development CA and server certificate.
    #[arg(long, env = "CHAT_CERTS_DIR", default_value = "certs")]
    certs_dir: PathBuf,
    /// Extra name for a generated development certificate (repeatable; comma-separated in
    /// the environment variable).
    #[arg(long = "hostname", env = "CHAT_HOSTNAME", value_delimiter = ',')]
    hostnames: Vec<String>,
    /// Seconds a connection has to log in.
    #[arg(long, env = "CHAT_LOGIN_TIMEOUT", default_value_t = 30)]
    login_timeout: u64,
    /// Longest accepted line, in bytes.
    #[arg(long, env = "CHAT_MAX_LINE", default_value_t = tlschat::protocol::DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Seconds sessions get to receive their last lines on shutdown.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,
    /// Concurrent connections; more are closed before their TLS handshake.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Concurrent connections from one address (IPv4 address, IPv6 /64).
    #[arg(long, env = "CHAT_MAX_PER_ADDRESS", default_value_t = 64)]
    max_per_address: u32,
    /// New connections one address may open at once.
    #[arg(long, env = "CHAT_NEW_PER_ADDRESS_BURST", default_value_t = 32)]
    new_per_address_burst: u32,
    /// New connections per second one address may open after that.
    #[arg(long, env = "CHAT_NEW_PER_ADDRESS_RATE", default_value_t = 2.0)]
    new_per_address_rate: f64,
    /// Outgoing lines queued for one connection before it is dropped as too slow.
    #[arg(long, env = "CHAT_QUEUE_LINES", default_value_t = 1024)]
    queue_lines: usize,
    /// Outgoing bytes queued for one connection before it is dropped as too slow.
    #[arg(long, env = "CHAT_QUEUE_BYTES", default_value_t = 256 * 1024)]
    queue_bytes: usize,
    /// Seconds a write to a peer that stopped reading may take before its session ends.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 30)]
    write_timeout: u64,
    /// Flood control: lines a connection may send at once.
    #[arg(long, env = "CHAT_FLOOD_BURST", default_value_t = 10)]
    flood_burst: u32,
    /// Flood control: lines per second after the burst.
    #[arg(long, env = "CHAT_FLOOD_RATE", default_value_t = 5.0)]
    flood_rate: f64,
    /// Flood control: refused lines tolerated before `BYE flooding`.
    #[arg(long, env = "CHAT_FLOOD_TOLERATED", default_value_t = 20)]
    flood_tolerated: u32,
    /// Seconds a TLS handshake may take.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// TLS handshakes computed at once (default: 8 per CPU the server may use).
    #[arg(long, env = "CHAT_MAX_HANDSHAKES")]
    max_handshakes: Option<usize>,
    /// Seconds of silence before TCP keepalive probes start.
    #[arg(long, env = "CHAT_KEEPALIVE_IDLE", default_value_t = 60)]
    keepalive_idle: u64,
    /// Seconds sent data may stay unacknowledged before a peer counts as gone.
    #[arg(long, env = "CHAT_DEAD_PEER_TIMEOUT", default_value_t = 90)]
    dead_peer_timeout: u64,
    /// Password hashes computed at once (default: the CPUs the server may use).
    #[arg(long, env = "CHAT_HASH_CONCURRENCY")]
    hash_concurrency: Option<usize>,
    /// Seconds a login waits for a hashing slot before `ERR server-busy`.
    #[arg(long, env = "CHAT_HASH_WAIT", default_value_t = 2.0)]
    hash_wait: f64,
    /// Login throttling: milliseconds of delay after one failure (doubling per failure).
    #[arg(long, env = "CHAT_LOGIN_FAILURE_DELAY_MS", default_value_t = 250)]
    login_failure_delay_ms: u64,
    /// Login throttling: failures from one address before it is refused for a while.
    #[arg(long, env = "CHAT_LOGIN_REFUSE_AFTER", default_value_t = 10)]
    login_refuse_after: u32,
    /// Login throttling: the longest delay (and refusal) an address's failures cause, seconds.
    #[arg(long, env = "CHAT_LOGIN_MAX_ADDRESS_DELAY", default_value_t = 60)]
    login_max_address_delay: u64,
    /// Login throttling: the longest delay a nickname's failures cause, seconds.
    #[arg(long, env = "CHAT_LOGIN_MAX_ACCOUNT_DELAY", default_value_t = 8)]
    login_max_account_delay: u64,
    /// Login throttling: seconds after which a failure no longer counts.
    #[arg(long, env = "CHAT_LOGIN_FORGET_AFTER", default_value_t = 900)]
    login_forget_after: u64,
    /// Stored messages replayed per room on login and `/join`.
    #[arg(long, env = "CHAT_REPLAY_PER_ROOM", default_value_t = tlschat::protocol::REPLAY_PER_ROOM)]
    replay_per_room: u32,
    /// What a stored message survives: `power-loss` waits for the disk on every commit;
    /// `process-crash` survives the server being killed but not the machine losing power,
    /// and commits in microseconds instead of milliseconds.
    #[arg(long, env = "CHAT_DURABILITY", value_enum, default_value_t = DurabilityArg::PowerLoss)]
    durability: DurabilityArg,
    /// Log filter, e.g. `info`, `debug`, `tlschat=debug`.
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DurabilityArg {
    ProcessCrash,
    PowerLoss,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::ProcessCrash => Durability::ProcessCrash,
            DurabilityArg::PowerLoss => Durability::PowerLoss,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match EnvFilter::try_new(&args.log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("chat-server: bad --log filter {:?}: {error}", args.log);
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = config_from(&args);
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    let (cert, key) = certificate_paths(&args)?;
    let tls_config = tls::server_config(&cert, &key)?;
    raise_descriptor_limit(config.max_connections);
    let leaf = tls::load_certs(&cert)?;
    let fingerprint = tls::fingerprint_sha256(&leaf[0]);

    let durability = Durability::from(args.durability);
    let store = Store::open_with_durability(&args.db, DEFAULT_BUSY_TIMEOUT, durability)
        .await
        .with_context(|| format!("cannot open database {}", args.db.display()))?;
    let sqlite_version = store.sqlite_version().await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;

    tracing::info!(
        "tlschat {} with SQLite {sqlite_version}, database {}",
        env!("CARGO_PKG_VERSION"),
        args.db.display()
    );
    tracing::info!("certificate {} (SHA-256 {fingerprint})", cert.display());
    let ca = certs::CertPaths::in_dir(&args.certs_dir).ca_cert;
    if args.cert.is_none() && ca.exists() {
        let port = local.port();
        let ca = ca.display();
        tracing::info!("connect with: chat localhost:{port} --ca {ca}");
        tracing::info!(
            "or: openssl s_client -quiet -crlf -verify_return_error -CAfile {ca} -verify_hostname localhost -connect localhost:{port}"
        );
    }
    tracing::info!("listening on {local}");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tlschat::server::run(listener, tls_config, store, config, shutdown).await?;
    Ok(())
}

/// Each connection needs a descriptor, and the usual soft limit (1024) is far below
/// `max_connections`; raise it as far as the hard limit allows.
fn raise_descriptor_limit(max_connections: usize) {
    // The database, the listener and the log need a few more.
    let wanted = max_connections as u64 + 64;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            "the descriptor limit is {limit}, below max_connections ({max_connections}); \
             past it, accepting pauses until connections close. Raise it (ulimit -n, LimitNOFILE=)"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!("cannot raise the descriptor limit: {error}"),
    }
}

fn config_from(args: &Args) -> Config {
    let defaults = Config::default();
    Config {
        login_timeout: Duration::from_secs(args.login_timeout),
        max_line: args.max_line,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        outbox_max_lines: args.queue_lines,
        outbox_max_bytes: args.queue_bytes,
        write_timeout: Duration::from_secs(args.write_timeout),
        max_connections: args.max_connections,
        max_per_address: args.max_per_address,
        new_per_address_burst: args.new_per_address_burst,
        new_per_address_per_second: args.new_per_address_rate,
        flood_burst: args.flood_burst,
        flood_per_second: args.flood_rate,
        flood_tolerated: args.flood_tolerated,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        keepalive_idle: Duration::from_secs(args.keepalive_idle),
        dead_peer_timeout: Duration::from_secs(args.dead_peer_timeout),
        hash_concurrency: args.hash_concurrency.unwrap_or(defaults.hash_concurrency),
        max_handshakes: args.max_handshakes.unwrap_or(defaults.max_handshakes),
        hash_wait: Duration::try_from_secs_f64(args.hash_wait).unwrap_or(Duration::ZERO),
        login_failure_delay: Duration::from_millis(args.login_failure_delay_ms),
        login_refuse_after: args.login_refuse_after,
        login_max_address_delay: Duration::from_secs(args.login_max_address_delay),
        login_max_account_delay: Duration::from_secs(args.login_max_account_delay),
        login_forget_after: Duration::from_secs(args.login_forget_after),
        replay_per_room: args.replay_per_room,
    }
}

/// The flags' certificate, else the one in the certificate folder, else a new development
/// certificate signed by the folder's development CA.
fn certificate_paths(args: &Args) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        return Ok((cert.clone(), key.clone()));
    }
    let paths = certs::CertPaths::in_dir(&args.certs_dir);
    match (paths.server_cert.exists(), paths.server_key.exists()) {
        (true, true) => {
            if !args.hostnames.is_empty() {
                tracing::warn!(
                    "--hostname only applies when a certificate is generated; {} exists. \
                     Run `chat-admin gen-cert --hostname NAME` to make a new one",
                    paths.server_cert.display()
                );
            }
            return Ok((paths.server_cert, paths.server_key));
        }
        (true, false) | (false, true) => bail!(
            "only one of {} and {} exists; remove it or run chat-admin gen-cert",
            paths.server_cert.display(),
            paths.server_key.display()
        ),
        (false, false) => {}
    }
    let generated = certs::generate(&args.certs_dir, &args.hostnames)?;
    log_generated(&generated);
    Ok((generated.paths.server_cert, generated.paths.server_key))
}

fn log_generated(generated: &certs::Generated) {
    let show = |p: &Path| p.display().to_string();
    if generated.new_ca {
        tracing::info!(
            "generated a development CA: {} (key {}, mode 0600)",
            show(&generated.paths.ca_cert),
            show(&generated.paths.ca_key)
        );
    }
    tracing::info!(
        "generated a development server certificate for {}: {} (key {}, mode 0600)",
        generated.names.join(", "),
        show(&generated.paths.server_cert),
        show(&generated.paths.server_key)
    );
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received");
    shutdown.cancel();
}
