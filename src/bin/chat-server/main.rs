//! `chat-server`: parses flags, sets up logging, finds or generates the certificate, opens
//! the database, binds, and hands over to `tlschat::server::run`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tlschat::net::certs;
use tlschat::net::reload::{self, CertReloader};
use tlschat::server::EssentialTask;
use tlschat::store::{Durability, Store, DEFAULT_BUSY_TIMEOUT};
use tlschat::Config;

mod settings;

use settings::{DurabilityArg, LogFormat, Settings, SettingsArgs};

/// A TLS chat server with password-checked nicknames.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the settings (flags, environment, config file, defaults) and print those in
    /// effect, as a config file; exits 1 if they would not start a server.
    CheckConfig,
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
    #[cfg(feature = "fault-injection")]
    if std::env::var_os(tlschat::server::fault::ARM_VARIABLE).is_some_and(|value| value == "1") {
        tlschat::server::fault::arm();
    }
    let cli = Cli::parse();
    let checking = matches!(cli.command, Some(Command::CheckConfig));
    let settings = match Settings::resolve(cli.settings).and_then(|s| check(&s).map(|()| s)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("chat-server: {}", tlschat::report::chain(&*error));
            return ExitCode::FAILURE;
        }
    };
    if checking {
        println!("# The settings in effect (flags > environment > config file > defaults).");
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_new(&settings.log).expect("checked above");
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Flattened: the message is a top-level key beside the level and the timestamp,
        // where log collectors look for it.
        LogFormat::Json => logs.with_ansi(false).json().flatten_event(true).init(),
    }
    match serve(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-server: {}", tlschat::report::chain(&*error));
            ExitCode::FAILURE
        }
    }
}

/// What can be known wrong before starting: values out of range or that do not fit
/// together, and a configured certificate that does not load.
fn check(settings: &Settings) -> anyhow::Result<()> {
    settings.check()?;
    if let (Some(cert), Some(key)) = (&settings.cert, &settings.key) {
        reload::load(cert, key)?;
    }
    Ok(())
}

async fn serve(args: Settings) -> anyhow::Result<()> {
    let config = config_from(&args);
    // The database first: a wrong path is one error naming it, with nothing generated yet.
    let durability = Durability::from(args.durability);
    let store = match Store::open_with_durability(&args.db, DEFAULT_BUSY_TIMEOUT, durability).await
    {
        Ok(store) => store,
        Err(error) if error.names_the_file() => return Err(error.into()),
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("cannot open the database {}", args.db.display())))
        }
    };
    let (cert, key) = certificate_paths(&args)?;
    let (reloader, tls_config) = CertReloader::start(&cert, &key)?;
    raise_descriptor_limit(config.max_connections);

    let sqlite_version = store.sqlite_version().await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;

    let ca = certs::CertPaths::in_dir(&args.certs_dir).ca_cert;
    if args.cert.is_none() && ca.exists() {
        let port = local.port();
        let ca = ca.display();
        tracing::info!("connect with: chat localhost:{port} --ca {ca}");
        tracing::info!(
            "or: openssl s_client -quiet -crlf -verify_return_error -CAfile {ca} -verify_hostname localhost -connect localhost:{port}"
        );
    }
    let reload_requests = reload_requests()?;
    // One line with everything an operator checks first; the tests find the address by
    // its `listening on ADDR`.
    tracing::info!(
        "tlschat {} listening on {local}, database {} (SQLite {sqlite_version}), certificate {}: {}",
        env!("CARGO_PKG_VERSION"),
        args.db.display(),
        cert.display(),
        reloader.info().describe()
    );
    reloader.info().warn_if_expiring(&cert, chrono::Utc::now());
    let check_every =
        (args.cert_check_interval > 0).then(|| Duration::from_secs(args.cert_check_interval));
    // Without it a renewed certificate would never be served and the old one would expire
    // in service; a restart reads the files afresh, so it ends the server like the hub does.
    let reloader = EssentialTask::new(
        "certificate reloader",
        tokio::spawn(reloader.watch(check_every, reload_requests)),
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tlschat::server::run(
        listener,
        tls_config,
        store,
        config,
        shutdown,
        vec![reloader],
    )
    .await?;
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

fn config_from(args: &Settings) -> Config {
    Config {
        login_timeout: Duration::from_secs(args.login_timeout),
        max_line: args.max_line,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        outbox_max_lines: args.queue_lines,
        outbox_max_bytes: args.queue_bytes,
        write_timeout: Duration::from_secs(args.write_timeout),
        max_connections: args.max_connections,
        max_per_address: args.max_per_address,
        max_per_account: args.max_per_account,
        new_per_address_burst: args.new_per_address_burst,
        new_per_address_per_second: args.new_per_address_rate,
        flood_burst: args.flood_burst,
        flood_per_second: args.flood_rate,
        flood_tolerated: args.flood_tolerated,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        keepalive_idle: Duration::from_secs(args.keepalive_idle),
        dead_peer_timeout: Duration::from_secs(args.dead_peer_timeout),
        hash_concurrency: args.hash_concurrency,
        max_handshakes: args.max_handshakes,
        hash_wait: Duration::try_from_secs_f64(args.hash_wait).unwrap_or(Duration::ZERO),
        login_failure_delay: Duration::from_millis(args.login_failure_delay_ms),
        login_refuse_after: args.login_refuse_after,
        login_max_address_delay: Duration::from_secs(args.login_max_address_delay),
        login_max_account_delay: Duration::from_secs(args.login_max_account_delay),
        login_forget_after: Duration::from_secs(args.login_forget_after),
        replay_per_room: args.replay_per_room,
        history_days: args.history_days,
        kept_dms_per_recipient: args.kept_dms_per_recipient,
        kept_dms_from_one_sender: args.kept_dms_from_one_sender,
        rooms_created_per_account: args.rooms_created_per_account,
        rooms_joined_per_account: args.rooms_joined_per_account,
    }
}

/// The flags' certificate, else the one in the certificate folder, else a new development
/// certificate signed by the folder's development CA.
fn certificate_paths(args: &Settings) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        return Ok((cert.clone(), key.clone()));
    }
    let paths = certs::CertPaths::in_dir(&args.certs_dir);
    match (paths.server_cert.exists(), paths.server_key.exists()) {
        (true, true) => {
            if !args.hostname.is_empty() {
                tracing::warn!(
                    "hostname only applies when a certificate is generated; {} exists. \
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
    let generated = certs::generate(&args.certs_dir, &args.hostname)?;
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

/// SIGHUP asks for the certificate to be reloaded. The handler is installed before the
/// server says it listens, so from then on a SIGHUP reloads instead of ending the process
/// (its default action).
fn reload_requests() -> anyhow::Result<mpsc::Receiver<&'static str>> {
    let (requests, received) = mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                // A reload already waiting reads the files after this signal too.
                let _ = requests.try_send("SIGHUP");
            }
        });
    }
    #[cfg(not(unix))]
    drop(requests);
    Ok(received)
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
