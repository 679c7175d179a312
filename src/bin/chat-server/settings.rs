//! Every setting of the server has one name, used three ways: a flag (`--max-line`), an
//! environment variable (`CHAT_MAX_LINE`) and a key of the TOML config file (`max_line`).
//! A flag beats the environment (clap sees to that), which beats the file, which beats the
//! default. The list below is the only place a setting is declared.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// What a stored message survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilityArg {
    ProcessCrash,
    PowerLoss,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One line of text per event, for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $(#[arg($($arg:tt)+)])?
        $field:ident: $ty:ty = $default:expr, $env:literal;
    )+) => {
        /// The settings as flags and environment variables; what is missing comes from
        /// the config file, then the defaults.
        #[derive(Debug, Clone, clap::Args)]
        pub struct SettingsArgs {
            /// Config file (TOML): one key per setting, named as the flag with `_` for `-`
            /// (flags and environment variables override it).
            #[arg(long, env = "CHAT_CONFIG")]
            pub config: Option<PathBuf>,
            /// Certificate chain (PEM), e.g. an ACME client's fullchain.pem. Default:
            /// certs/server.pem, generated if missing.
            #[arg(long, env = "CHAT_CERT")]
            pub cert: Option<PathBuf>,
            /// Private key (PEM) of the certificate, e.g. privkey.pem. Default:
            /// certs/server-key.pem.
            #[arg(long, env = "CHAT_KEY")]
            pub key: Option<PathBuf>,
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env)]
                $(#[arg($($arg)+)])?
                pub $field: Option<$ty>,
            )+
        }

        /// A config file: every key optional, unknown keys refused.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {
            cert: Option<PathBuf>,
            key: Option<PathBuf>,
            $( $field: Option<$ty>, )+
        }

        /// The settings in effect.
        #[derive(Debug, Clone, Serialize)]
        pub struct Settings {
            #[serde(skip_serializing_if = "Option::is_none")]
            pub cert: Option<PathBuf>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub key: Option<PathBuf>,
            $( pub $field: $ty, )+
            /// Where each value came from, to name it in messages as the user wrote it.
            #[serde(skip)]
            origins: Vec<(&'static str, &'static str, Origin)>,
        }

        impl Settings {
            /// Flags and environment, then the config file (if `--config` names one), then
            /// the defaults.
            pub fn resolve(args: SettingsArgs) -> anyhow::Result<Self> {
                let file = match &args.config {
                    Some(path) => load(path)?,
                    None => FileSettings::default(),
                };
                let origins = vec![$(
                    (
                        stringify!($field),
                        $env,
                        Origin::of(stringify!($field), args.$field.is_some(), file.$field.is_some()),
                    ),
                )+];
                let settings = Self {
                    cert: args.cert.or(file.cert),
                    key: args.key.or(file.key),
                    $( $field: args.$field.or(file.$field).unwrap_or_else(|| $default), )+
                    origins,
                };
                if settings.cert.is_some() != settings.key.is_some() {
                    bail!("cert and key go together: set both (a certificate chain and its private key) or neither");
                }
                Ok(settings)
            }
        }
    };
}

settings! {
    /// Address and port to listen on (TLS only; there is no plaintext listener).
    listen: String = "0.0.0.0:7777".into(), "CHAT_LISTEN";
    /// SQLite database file; created with its tables on first start.
    db: PathBuf = "chat.db".into(), "CHAT_DB";
    /// Folder of the development CA and server certificate.
    certs_dir: PathBuf = "certs".into(), "CHAT_CERTS_DIR";
    /// Extra name for a generated development certificate (repeatable; comma-separated in
    /// the environment variable, a list in the file).
    #[arg(value_delimiter = ',')]
    hostname: Vec<String> = Vec::new(), "CHAT_HOSTNAME";
    /// Seconds between checks of the certificate and key files for changes, which are then
    /// loaded without a restart (0: only on SIGHUP).
    cert_check_interval: u64 = 5, "CHAT_CERT_CHECK_INTERVAL";
    /// Seconds a connection has to log in.
    login_timeout: u64 = 30, "CHAT_LOGIN_TIMEOUT";
    /// Longest accepted line, in bytes.
    max_line: usize = tlschat::protocol::DEFAULT_MAX_LINE, "CHAT_MAX_LINE";
    /// Seconds sessions get to receive their last lines on shutdown.
    shutdown_grace: u64 = 10, "CHAT_SHUTDOWN_GRACE";
    /// Concurrent connections; more are closed before their TLS handshake.
    max_connections: usize = 10_000, "CHAT_MAX_CONNECTIONS";
    /// Concurrent connections from one address (IPv4 address, IPv6 /64).
    max_per_address: u32 = 64, "CHAT_MAX_PER_ADDRESS";
    /// Concurrent logged-in connections of one account; one more gets `BYE too-many-sessions`.
    max_per_account: usize = 20, "CHAT_MAX_PER_ACCOUNT";
    /// New connections one address may open at once.
    new_per_address_burst: u32 = 32, "CHAT_NEW_PER_ADDRESS_BURST";
    /// New connections per second one address may open after that.
    new_per_address_rate: f64 = 2.0, "CHAT_NEW_PER_ADDRESS_RATE";
    /// Outgoing lines queued for one connection before it is dropped as too slow.
    queue_lines: usize = 1024, "CHAT_QUEUE_LINES";
    /// Outgoing bytes queued for one connection before it is dropped as too slow.
    queue_bytes: usize = 256 * 1024, "CHAT_QUEUE_BYTES";
    /// Seconds a write to a peer that stopped reading may take before its session ends.
    write_timeout: u64 = 30, "CHAT_WRITE_TIMEOUT";
    /// Flood control: lines a connection may send at once.
    flood_burst: u32 = 10, "CHAT_FLOOD_BURST";
    /// Flood control: lines per second after the burst.
    flood_rate: f64 = 5.0, "CHAT_FLOOD_RATE";
    /// Flood control: refused lines tolerated before `BYE flooding`.
    flood_tolerated: u32 = 20, "CHAT_FLOOD_TOLERATED";
    /// Seconds a TLS handshake may take.
    handshake_timeout: u64 = 10, "CHAT_HANDSHAKE_TIMEOUT";
    /// TLS handshakes computed at once [default: 8 per CPU the server may use].
    max_handshakes: usize = tlschat::Config::default().max_handshakes, "CHAT_MAX_HANDSHAKES";
    /// Seconds of silence before TCP keepalive probes start.
    keepalive_idle: u64 = 60, "CHAT_KEEPALIVE_IDLE";
    /// Seconds sent data may stay unacknowledged before a peer counts as gone.
    dead_peer_timeout: u64 = 90, "CHAT_DEAD_PEER_TIMEOUT";
    /// Password hashes computed at once [default: the CPUs the server may use].
    hash_concurrency: usize = tlschat::Config::default().hash_concurrency, "CHAT_HASH_CONCURRENCY";
    /// Seconds a login waits for a hashing slot before `ERR server-busy`.
    hash_wait: f64 = 2.0, "CHAT_HASH_WAIT";
    /// Login throttling: milliseconds of delay after one failure (doubling per failure).
    login_failure_delay_ms: u64 = 250, "CHAT_LOGIN_FAILURE_DELAY_MS";
    /// Login throttling: failures from one address before it is refused for a while.
    login_refuse_after: u32 = 10, "CHAT_LOGIN_REFUSE_AFTER";
    /// Login throttling: the longest delay (and refusal) an address's failures cause, seconds.
    login_max_address_delay: u64 = 60, "CHAT_LOGIN_MAX_ADDRESS_DELAY";
    /// Login throttling: the longest delay a nickname's failures cause, seconds.
    login_max_account_delay: u64 = 8, "CHAT_LOGIN_MAX_ACCOUNT_DELAY";
    /// Login throttling: seconds after which a failure no longer counts.
    login_forget_after: u64 = 900, "CHAT_LOGIN_FORGET_AFTER";
    /// Stored messages replayed per room on login and `/join`.
    replay_per_room: u32 = tlschat::protocol::REPLAY_PER_ROOM, "CHAT_REPLAY_PER_ROOM";
    /// Private messages kept for a user who is offline, from all senders together; past it
    /// the sender gets `ERR limit-reached` and the message is not stored.
    kept_dms_per_recipient: u32 = 1000, "CHAT_KEPT_DMS_PER_RECIPIENT";
    /// Private messages one sender may have kept for one offline user.
    kept_dms_from_one_sender: u32 = 200, "CHAT_KEPT_DMS_FROM_ONE_SENDER";
    /// Rooms an account may have created that still exist; a room goes when its last
    /// member leaves (0: `/join` only joins existing rooms).
    rooms_created_per_account: u32 = 20, "CHAT_ROOMS_CREATED_PER_ACCOUNT";
    /// Rooms an account may be a member of.
    rooms_joined_per_account: u32 = 100, "CHAT_ROOMS_JOINED_PER_ACCOUNT";
    /// Days of history kept; older messages are deleted in the background. 0 keeps all.
    history_days: u32 = 0, "CHAT_HISTORY_DAYS";
    /// What a stored message survives: `power-loss` waits for the disk on every commit;
    /// `process-crash` survives the server being killed but not the machine losing power,
    /// and commits in microseconds instead of milliseconds.
    #[arg(value_enum)]
    durability: DurabilityArg = DurabilityArg::PowerLoss, "CHAT_DURABILITY";
    /// Log filter, e.g. `info`, `debug`, `tlschat=debug`.
    log: String = "info".into(), "CHAT_LOG";
    /// Log format on stderr: `text`, or `json` (one object per line).
    #[arg(value_enum)]
    log_format: LogFormat = LogFormat::Text, "CHAT_LOG_FORMAT";
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Flag,
    Environment,
    File,
    Default,
}

impl Origin {
    /// clap merges a flag and its environment variable into one value; the command line
    /// tells which of the two it was.
    fn of(field: &str, from_args: bool, from_file: bool) -> Self {
        if from_args {
            let flag = flag_name(field);
            let on_command_line = std::env::args().any(|arg| {
                arg == flag || arg.strip_prefix(&flag).is_some_and(|v| v.starts_with('='))
            });
            if on_command_line {
                Self::Flag
            } else {
                Self::Environment
            }
        } else if from_file {
            Self::File
        } else {
            Self::Default
        }
    }
}

fn flag_name(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

impl Settings {
    /// The setting `field` as the user gave it: `--flood-rate`, `CHAT_FLOOD_RATE`, or
    /// `flood_rate` (in the config file, or the default).
    pub fn user_name(&self, field: &str) -> String {
        match self.origins.iter().find(|(name, ..)| *name == field) {
            Some((_, _, Origin::Flag)) => flag_name(field),
            Some((_, env, Origin::Environment)) => (*env).to_owned(),
            Some((_, _, Origin::File)) => format!("{field} (in the config file)"),
            Some((_, _, Origin::Default)) => format!("{field} (the default)"),
            None => field.to_owned(),
        }
    }
}

/// Reads a config file; an unknown key or a wrong type is an error naming the file, the
/// line and the key. Relative paths in it are relative to the file's folder, so a config
/// means the same whatever folder the server starts in.
fn load(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut file: FileSettings = toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("config file {}: {error}", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    for setting in [
        &mut file.db,
        &mut file.certs_dir,
        &mut file.cert,
        &mut file.key,
    ] {
        if let Some(relative) = setting.as_mut().filter(|p| p.is_relative()) {
            *relative = folder.join(&*relative);
        }
    }
    Ok(file)
}

impl Settings {
    /// The settings as a config file would hold them, paths made absolute so that they
    /// mean the same wherever the file goes (nothing among them is secret: the private key
    /// is a path).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for path in [&mut shown.db, &mut shown.certs_dir]
            .into_iter()
            .chain(shown.cert.as_mut())
            .chain(shown.key.as_mut())
        {
            if let Ok(absolute) = std::path::absolute(&*path) {
                *path = absolute;
            }
        }
        toml::to_string(&shown).unwrap_or_else(|error| format!("# cannot show: {error}\n"))
    }
}
