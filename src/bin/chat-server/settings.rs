//! Every setting of the server has one name, used three ways: a flag (`--max-line`), an
//! environment variable (`CHAT_MAX_LINE`) and a key of the TOML config file (`max_line`).
//! A flag beats the environment (clap sees to that), which beats the file, which beats the
//! default. The list below is the only place a setting is declared: with its name, its
//! variable, its default, its description (the help and the README's table, which a test
//! holds to it) and the rule its value must follow.

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
        $field:ident: $ty:ty $(= $default:expr)?, env $env:literal, value $value:literal
            $(, shown $shown:literal)? $(, check $check:expr)?;
    )+) => {
        /// The settings as flags and environment variables; what is missing comes from
        /// the config file, then the defaults. Global, so that they go before or after a
        /// subcommand.
        #[derive(Debug, Clone, clap::Args)]
        pub struct SettingsArgs {
            /// Config file (TOML): one key per setting, named as the flag with `_` for `-`
            /// (flags and environment variables override it).
            #[arg(long, env = "CHAT_CONFIG", global = true, value_name = "FILE")]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env, global = true, value_name = $value)]
                $(#[arg($($arg)+)])?
                pub $field: Option<$ty>,
            )+
        }

        /// A config file: every key optional, unknown keys refused.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {
            $( $field: Option<$ty>, )+
        }

        /// The settings in effect; one without a default is `None` when not given.
        #[derive(Debug, Clone, Serialize)]
        pub struct Settings {
            $( pub $field: setting_type!($ty $(, $default)?), )+
            /// Where each value came from, to name it in messages as the user wrote it.
            #[serde(skip)]
            origins: Vec<(&'static str, &'static str, Origin)>,
            /// The config file, to name it with the keys it set.
            #[serde(skip)]
            config: Option<PathBuf>,
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
                    $( $field: resolved!(args.$field.or(file.$field) $(, $default)?), )+
                    origins,
                    config: args.config,
                };
                if settings.cert.is_some() != settings.key.is_some() {
                    bail!("cert and key go together: set both (a certificate chain and its private key) or neither");
                }
                Ok(settings)
            }

            /// The first setting whose own rule its value breaks, named as the user gave it.
            fn check_each(&self) -> anyhow::Result<()> {
                $($(
                    if let Err(problem) = ($check)(&self.$field) {
                        bail!("invalid configuration: {} {problem}", self.user_name(stringify!($field)));
                    }
                )?)+
                Ok(())
            }
        }

        /// Every setting as declared, in order: what the README's table shows.
        #[cfg(test)]
        fn declared() -> Vec<Declared> {
            vec![$(
                Declared {
                    field: stringify!($field),
                    env: $env,
                    value: $value,
                    description: concat!($($doc),+).trim(),
                    default: default_text!($ty; $($default)?; $($shown)?),
                },
            )+]
        }
    };
}

/// A setting without a default is optional.
macro_rules! setting_type {
    ($ty:ty) => { Option<$ty> };
    ($ty:ty, $default:expr) => { $ty };
}

macro_rules! resolved {
    ($given:expr) => {
        $given
    };
    ($given:expr, $default:expr) => {
        $given.unwrap_or_else(|| $default)
    };
}

/// A default as the README shows it: written out where it depends on the machine, else the
/// value itself.
#[cfg(test)]
macro_rules! default_text {
    ($ty:ty; ; ) => {
        String::from("none")
    };
    ($ty:ty; ; $shown:literal) => {
        String::from($shown)
    };
    ($ty:ty; $default:expr; $shown:literal) => {
        String::from($shown)
    };
    ($ty:ty; $default:expr; ) => {
        value_text::<$ty>($default)
    };
}

settings! {
    /// Address and port to listen on (TLS only; there is no plaintext listener).
    listen: String = "0.0.0.0:7777".into(), env "CHAT_LISTEN", value "ADDR:PORT";
    /// SQLite database file; created with its tables on first start.
    db: PathBuf = "chat.db".into(), env "CHAT_DB", value "PATH";
    /// Certificate chain (PEM), e.g. an ACME client's `fullchain.pem`; goes with `key`.
    /// Without both, the server uses `certs_dir`'s, generated if missing.
    cert: PathBuf, env "CHAT_CERT", value "PATH", shown "`certs/server.pem`";
    /// Private key (PEM) of the certificate, e.g. `privkey.pem`.
    key: PathBuf, env "CHAT_KEY", value "PATH", shown "`certs/server-key.pem`";
    /// Folder where development certificates (and their CA) are found or generated.
    certs_dir: PathBuf = "certs".into(), env "CHAT_CERTS_DIR", value "DIR";
    /// Extra name for a generated development certificate (repeatable; comma-separated in
    /// the environment variable, a list in the file).
    #[arg(value_delimiter = ',')]
    hostname: Vec<String> = Vec::new(), env "CHAT_HOSTNAME", value "NAME";
    /// Seconds a connection has to log in before `BYE login-timeout`.
    login_timeout: u64 = 30, env "CHAT_LOGIN_TIMEOUT", value "SECS", check at_least_one;
    /// Longest accepted line, in bytes.
    max_line: usize = tlschat::protocol::DEFAULT_MAX_LINE, env "CHAT_MAX_LINE", value "BYTES",
        check at_least_one;
    /// Seconds sessions get to receive their last lines on shutdown.
    shutdown_grace: u64 = 10, env "CHAT_SHUTDOWN_GRACE", value "SECS";
    /// Concurrent connections; more are closed before their TLS handshake.
    max_connections: usize = 10_000, env "CHAT_MAX_CONNECTIONS", value "N", check at_least_one;
    /// Concurrent connections from one IPv4 address or IPv6 /64.
    max_per_address: u32 = 64, env "CHAT_MAX_PER_ADDRESS", value "N", check at_least_one;
    /// Concurrent logged-in connections of one account; one more gets `BYE too-many-sessions`.
    max_per_account: usize = 20, env "CHAT_MAX_PER_ACCOUNT", value "N", check at_least_one;
    /// New connections one address may open at once.
    new_per_address_burst: u32 = 32, env "CHAT_NEW_PER_ADDRESS_BURST", value "N",
        check at_least_one;
    /// New connections per second one address may open after that.
    new_per_address_rate: f64 = 2.0, env "CHAT_NEW_PER_ADDRESS_RATE", value "N",
        check positive;
    /// Outgoing lines queued for one connection before it is dropped with `BYE too-slow`.
    queue_lines: usize = 1024, env "CHAT_QUEUE_LINES", value "N", check at_least_one;
    /// Outgoing bytes queued for one connection, likewise; at least two of the longest lines.
    queue_bytes: usize = 256 * 1024, env "CHAT_QUEUE_BYTES", value "N";
    /// Seconds a write to a peer that stopped reading may take before its session ends.
    write_timeout: u64 = 30, env "CHAT_WRITE_TIMEOUT", value "SECS", check at_least_one;
    /// Flood control: lines a connection may send at once.
    flood_burst: u32 = 10, env "CHAT_FLOOD_BURST", value "N", check at_least_one;
    /// Flood control: lines per second after the burst; faster lines get `ERR rate-limited`
    /// and are not sent.
    flood_rate: f64 = 5.0, env "CHAT_FLOOD_RATE", value "N", check positive;
    /// Flood control: refused lines tolerated (refilled at the same rate) before
    /// `BYE flooding`.
    flood_tolerated: u32 = 20, env "CHAT_FLOOD_TOLERATED", value "N";
    /// What a stored message survives: `power-loss` waits for the disk on every commit;
    /// `process-crash` survives the server being killed (the protocol's promise) but not a
    /// power cut, and commits in microseconds instead of an fsync.
    #[arg(value_enum)]
    durability: DurabilityArg = DurabilityArg::PowerLoss, env "CHAT_DURABILITY", value "D";
    /// Seconds a TLS handshake may take, waiting for a slot included.
    handshake_timeout: u64 = 10, env "CHAT_HANDSHAKE_TIMEOUT", value "SECS", check at_least_one;
    /// TLS handshakes computed at once (the server's flight only; waiting for the client
    /// takes no slot), so a connection storm queues instead of crowding out the chat.
    max_handshakes: usize = tlschat::Config::default().max_handshakes, env "CHAT_MAX_HANDSHAKES",
        value "N", shown "8 per CPU", check at_least_one;
    /// Password hashes computed at once, on threads of their own at a lower priority
    /// (19 MiB each).
    hash_concurrency: usize = tlschat::Config::default().hash_concurrency,
        env "CHAT_HASH_CONCURRENCY", value "N", shown "one per CPU", check at_least_one;
    /// Seconds a login waits for a hashing slot before `ERR server-busy` (counted as a
    /// failed attempt).
    hash_wait: f64 = 2.0, env "CHAT_HASH_WAIT", value "SECS", check positive_seconds;
    /// Login throttling: milliseconds of delay after a failed login (or a wrong old password
    /// in `/passwd`), doubling per further failure from the address or for the nickname.
    login_failure_delay_ms: u64 = 250, env "CHAT_LOGIN_FAILURE_DELAY_MS", value "MS";
    /// Login throttling: failed logins from one address before it is refused for a while.
    login_refuse_after: u32 = 10, env "CHAT_LOGIN_REFUSE_AFTER", value "N";
    /// Login throttling: seconds of the longest delay (and refusal) an address's failures
    /// cause.
    login_max_address_delay: u64 = 60, env "CHAT_LOGIN_MAX_ADDRESS_DELAY", value "SECS";
    /// Login throttling: seconds of the longest delay a nickname's failures cause (never a
    /// refusal).
    login_max_account_delay: u64 = 8, env "CHAT_LOGIN_MAX_ACCOUNT_DELAY", value "SECS";
    /// Login throttling: seconds after which a failure no longer counts.
    login_forget_after: u64 = 900, env "CHAT_LOGIN_FORGET_AFTER", value "SECS",
        check at_least_one;
    /// Seconds of silence before TCP keepalive probes start.
    keepalive_idle: u64 = 60, env "CHAT_KEEPALIVE_IDLE", value "SECS", check at_least_one;
    /// Seconds sent data may stay unacknowledged before the peer counts as gone
    /// (`TCP_USER_TIMEOUT`).
    dead_peer_timeout: u64 = 90, env "CHAT_DEAD_PEER_TIMEOUT", value "SECS", check at_least_one;
    /// Stored messages replayed per room on login and `/join`.
    replay_per_room: u32 = tlschat::protocol::REPLAY_PER_ROOM, env "CHAT_REPLAY_PER_ROOM",
        value "N";
    /// Private messages kept for an offline user, from all senders together; past it the
    /// sender gets `ERR limit-reached` and the message is not stored.
    kept_dms_per_recipient: u32 = 1000, env "CHAT_KEPT_DMS_PER_RECIPIENT", value "N",
        check at_least_one;
    /// Private messages one sender may have kept for one offline user.
    kept_dms_from_one_sender: u32 = 200, env "CHAT_KEPT_DMS_FROM_ONE_SENDER", value "N",
        check at_least_one;
    /// Rooms an account may have created that still exist; a room goes when its last
    /// member leaves (`0`: `/join` only joins existing rooms).
    rooms_created_per_account: u32 = 20, env "CHAT_ROOMS_CREATED_PER_ACCOUNT", value "N";
    /// Rooms an account may be a member of.
    rooms_joined_per_account: u32 = 100, env "CHAT_ROOMS_JOINED_PER_ACCOUNT", value "N",
        check at_least_one;
    /// Days of history kept; older messages are deleted hourly in the background (`0`
    /// keeps everything).
    history_days: u32 = 0, env "CHAT_HISTORY_DAYS", value "N";
    /// Seconds between checks of the certificate and key files for changes, which are then
    /// loaded without a restart (`0`: only on SIGHUP).
    cert_check_interval: u64 = 5, env "CHAT_CERT_CHECK_INTERVAL", value "SECS";
    /// Log filter, e.g. `info`, `debug`, `tlschat=debug`.
    log: String = "info".into(), env "CHAT_LOG", value "FILTER", check log_filter;
    /// Log format on stderr: `text`, or `json` (one object per line).
    #[arg(value_enum)]
    log_format: LogFormat = LogFormat::Text, env "CHAT_LOG_FORMAT", value "F";
}

/// One setting as declared, for documentation.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
struct Declared {
    /// The config-file key; the flag and the variable are made from it.
    field: &'static str,
    env: &'static str,
    /// What the flag takes, as help and the README show it: `SECS`, `N`, `PATH`.
    value: &'static str,
    description: &'static str,
    /// Markdown: a value in backticks, or words.
    default: String,
}

/// The README's settings table.
#[cfg(test)]
fn markdown_table() -> String {
    let mut table = String::from("| flag | variable | default | meaning |\n|---|---|---|---|\n");
    for setting in declared() {
        table.push_str(&format!(
            "| `{} {}` | `{}` | {} | {} |\n",
            flag_name(setting.field),
            setting.value,
            setting.env,
            setting.default,
            setting.description
        ));
    }
    table
}

/// A default value as a config file would hold it, without TOML's quotes.
#[cfg(test)]
fn value_text<T: Serialize>(value: T) -> String {
    match toml::Value::try_from(value) {
        Ok(toml::Value::String(text)) => format!("`{text}`"),
        Ok(toml::Value::Array(items)) if items.is_empty() => "none".into(),
        Ok(toml::Value::Float(number)) => format!("`{number}`"),
        Ok(shown) => format!("`{shown}`"),
        Err(error) => format!("(cannot show: {error})"),
    }
}

// The rules a single setting's value must follow; each `Err` completes "NAME ...".

fn at_least_one<T: PartialEq + Default>(value: &T) -> Result<(), String> {
    if *value == T::default() {
        return Err("must be at least 1".into());
    }
    Ok(())
}

fn positive(value: &f64) -> Result<(), String> {
    if !(value.is_finite() && *value > 0.0) {
        return Err("must be a positive number".into());
    }
    Ok(())
}

fn positive_seconds(value: &f64) -> Result<(), String> {
    match std::time::Duration::try_from_secs_f64(*value) {
        Ok(duration) if !duration.is_zero() => Ok(()),
        _ => Err("must be a positive, finite number of seconds".into()),
    }
}

fn log_filter(value: &String) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(drop)
        .map_err(|error| format!("is not a log filter ({value:?}): {error}"))
}

impl Settings {
    /// Checks what can be known wrong before starting: each setting by its own rule, then
    /// the settings that must fit together.
    pub fn check(&self) -> anyhow::Result<()> {
        self.check_each()?;
        let needed = tlschat::Config::smallest_outbox_bytes(self.max_line);
        if self.queue_bytes < needed {
            bail!(
                "invalid configuration: {} is {} bytes, too small for two of the longest \
                 lines ({needed} bytes together); raise it or lower {}",
                self.user_name("queue_bytes"),
                self.queue_bytes,
                self.user_name("max_line")
            );
        }
        Ok(())
    }
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
    /// `flood_rate` (in the config file, named, or the default).
    pub fn user_name(&self, field: &str) -> String {
        match self.origins.iter().find(|(name, ..)| *name == field) {
            Some((_, _, Origin::Flag)) => flag_name(field),
            Some((_, env, Origin::Environment)) => (*env).to_owned(),
            Some((_, _, Origin::File)) => match &self.config {
                Some(file) => format!("{field} (in {})", file.display()),
                None => format!("{field} (in the config file)"),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in README.md: its header line and the rows that follow it.
    fn readme_table() -> String {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let header = "| flag | variable | default | meaning |";
        let lines: Vec<&str> = readme
            .lines()
            .skip_while(|line| *line != header)
            .take_while(|line| line.starts_with('|'))
            .collect();
        assert!(!lines.is_empty(), "no settings table in README.md");
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    #[test]
    fn the_readme_table_is_the_declared_settings() {
        let expected = markdown_table();
        let written = readme_table();
        if written == expected {
            return;
        }
        let written_rows: Vec<&str> = written.lines().collect();
        let expected_rows: Vec<&str> = expected.lines().collect();
        let mut diff = String::new();
        for row in &written_rows {
            if !expected_rows.contains(row) {
                diff.push_str(&format!("- {row}\n"));
            }
        }
        for row in &expected_rows {
            if !written_rows.contains(row) {
                diff.push_str(&format!("+ {row}\n"));
            }
        }
        if diff.is_empty() {
            diff.push_str("(the same rows in another order)\n");
        }
        panic!(
            "README.md's settings table differs from the settings declared in \
             src/bin/chat-server/settings.rs (- README, + declared):\n{diff}\n\
             The whole table as declared:\n{expected}"
        );
    }

    #[test]
    fn each_variable_is_its_key_in_capitals() {
        for setting in declared() {
            let env = format!("CHAT_{}", setting.field.to_uppercase());
            assert_eq!(setting.env, env, "{}", setting.field);
        }
    }

    #[test]
    fn the_flags_hold_together_with_a_subcommand() {
        use clap::Args;
        let command = SettingsArgs::augment_args(clap::Command::new("chat-server"))
            .subcommand(clap::Command::new("check-config"));
        command.debug_assert();
    }
}
