//! `chat-admin`: accounts, backups and certificates. Works while the server runs (SQLite's
//! busy timeout covers the overlap). Locks, deletions and password changes reach the running
//! server's live sessions through the database within a second or two.
//!
//! It opens only an existing tlschat database (a mistyped `--db` or the wrong folder must not
//! create one, nor touch another program's SQLite file), creates one only with `--create`,
//! never writes with a command that only reads, and names the database it changed.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};

use tlschat::auth::{hash_many_blocking, hash_password_blocking, password_problem};
use tlschat::import::{read_accounts, AccountList, NewAccount};
use tlschat::invite;
use tlschat::net::certs;
use tlschat::protocol::{format_timestamp, now_millis, Nick};
use tlschat::store::{
    DbFile, Durability, OpenMode, Role, Store, StoreError, DEFAULT_BUSY_TIMEOUT, HEARTBEAT_EVERY,
};

/// `println!` for output that may be piped into `head` or `grep -q`: a reader that has
/// gone is the end of the job, not a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("cannot write to standard output: {error}");
        }
    }};
}

/// Manage tlschat accounts and certificates.
///
/// Accounts one at a time with `adduser`, or many at once with `import FILE`, a file of
/// `NICK PASSWORD` lines (`chat-admin import --help` tells more).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// SQLite database file, the same as the server's.
    #[arg(long, env = "CHAT_DB", default_value = "chat.db", global = true)]
    db: PathBuf,
    /// Create the database if there is none (otherwise a missing one is an error).
    #[arg(long, global = true)]
    create: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account; it starts in #general.
    Adduser {
        nick: String,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create many accounts from lines `NICK PASSWORD`; each starts in #general.
    ///
    /// The password is the rest of the line and may contain spaces. Blank lines and lines
    /// starting with `#` are skipped. Every line is checked first (nickname and password
    /// rules, no nickname twice); if any is bad, each is reported as FILE:LINE and nothing
    /// is created. Passwords are hashed on every core.
    Import {
        /// The list; standard input when absent or `-`.
        file: Option<PathBuf>,
        /// Skip nicknames that already have an account instead of refusing the import.
        #[arg(long)]
        skip_existing: bool,
    },
    /// Create an account if needed and print a one-time code to log in with.
    ///
    /// The new teammate logs in with their nickname and the code as the password, and is
    /// then asked for a password of their own (the NEWPASS step), which nobody else learns.
    /// The code works once, for this nickname only. A new invite replaces an unused one.
    Invite {
        nick: String,
        #[command(flatten)]
        validity: Validity,
    },
    /// Delete an account and its memberships (its messages stay in the history); its live
    /// sessions end.
    Deluser { nick: String },
    /// Set a new password for an account, or with --invite issue a reset code. Sessions
    /// logged in with the old password end (for a code: once it is used).
    Passwd {
        nick: String,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long, conflicts_with = "invite")]
        password_stdin: bool,
        /// Print a one-time reset code instead; the user chooses the new password. The old
        /// password keeps working until the code is used.
        #[arg(long)]
        invite: bool,
        #[command(flatten)]
        validity: Validity,
    },
    /// Make an account an admin (may /kick) or a member.
    Role {
        nick: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Disable an account: its live sessions end and it cannot log in until unlocked.
    Lock { nick: String },
    /// Enable a locked account again.
    Unlock { nick: String },
    /// List accounts.
    List,
    /// Who is online on the running server, and every room with its member and online counts.
    Status,
    /// Write a consistent copy of the database to FILE, also while the server runs.
    ///
    /// The copy is a complete SQLite database (mode 0600: it holds password hashes).
    /// `chat-admin restore FILE` puts it back.
    Backup {
        /// The new file; an existing one is never overwritten.
        file: PathBuf,
    },
    /// Put a backup in place of the database; the server must be stopped.
    ///
    /// The backup is checked (a tlschat database, SQLite's integrity check), the current
    /// database is kept beside it as `DB.before-restore-TIME` (mode 0600), and the restored
    /// copy's ids continue after every id the current one handed out, so that clients never
    /// see an id twice. Messages written after the backup are not in it (the kept database
    /// still has them).
    Restore {
        /// A file written by `chat-admin backup`.
        backup: PathBuf,
        /// Restore even without a database to continue the ids from (it was lost): ids then
        /// jump ahead by a billion past the backup's.
        #[arg(long)]
        force: bool,
    },
    /// Generate a development server certificate (and the development CA if missing).
    GenCert {
        /// Folder for ca.pem, ca-key.pem, server.pem and server-key.pem (the server's
        /// `--certs-dir`; `--dir` is an old name for it).
        #[arg(
            long = "certs-dir",
            alias = "dir",
            env = "CHAT_CERTS_DIR",
            default_value = "certs"
        )]
        dir: PathBuf,
        /// A name the certificate is valid for, besides localhost, 127.0.0.1 and ::1.
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Validity {
    /// Hours the code stays valid.
    #[arg(long, env = "CHAT_INVITE_HOURS", default_value_t = invite::DEFAULT_VALID_HOURS,
          value_parser = clap::value_parser!(u32).range(1..=MAX_VALID_HOURS))]
    valid_hours: u32,
}

/// Thirty days: a code is a password anyone holding it can use, and 60 bits stored as a
/// plain SHA-256 should not have to resist a stolen backup for longer.
const MAX_VALID_HOURS: i64 = 30 * 24;

fn parse_role(word: &str) -> Result<Role, String> {
    word.parse()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-admin: {}", tlschat::report::chain(&*error));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Named in full in every message: "which database" is the question when it is the wrong one.
    let db = std::path::absolute(&args.db).unwrap_or_else(|_| args.db.clone());
    match args.command {
        Command::GenCert { dir, hostnames } => gen_cert(&dir, &hostnames),
        Command::Restore { backup, force } => restore(&db, &backup, force).await,
        Command::Import {
            file,
            skip_existing,
        } => import(&db, args.create, file.as_deref(), skip_existing).await,
        command @ (Command::List | Command::Status | Command::Backup { .. }) => {
            let store = open_store(&db, args.create, OpenMode::ReadOnly).await?;
            let result = account_command(&store, command).await;
            store.close().await;
            result
        }
        command => {
            let existed = db.exists();
            let store = open_store(&db, args.create, OpenMode::Existing).await?;
            let result = account_command(&store, command).await;
            store.close().await;
            result?;
            say_changed(&db, existed);
            Ok(())
        }
    }
}

/// Opens the database as `mode` allows; `create` makes a missing one (and then it is read
/// and written like any other).
async fn open_store(db: &Path, create: bool, mode: OpenMode) -> anyhow::Result<Store> {
    let blank = matches!(
        tlschat::store::identify(db).await,
        Ok(DbFile::Missing | DbFile::Blank)
    );
    let mode = if create && blank {
        OpenMode::Create
    } else {
        mode
    };
    match Store::open_as(db, mode, DEFAULT_BUSY_TIMEOUT, Durability::default()).await {
        Ok(store) => Ok(store),
        Err(error @ StoreError::Missing(_)) => Err(anyhow!(
            "{error}: run chat-admin in the server's folder (beside its chat.db), pass \
             --db PATH (or CHAT_DB), or add --create to start a new database"
        )),
        Err(error) if error.names_the_file() => Err(error.into()),
        Err(error) => {
            Err(anyhow::Error::new(error)
                .context(format!("cannot open the database {}", db.display())))
        }
    }
}

fn say_changed(db: &Path, existed: bool) {
    if existed {
        out!("Database changed: {}", db.display());
    } else {
        out!("Database created: {}", db.display());
    }
}

async fn restore(db: &Path, backup: &Path, force: bool) -> anyhow::Result<()> {
    let restored = tlschat::store::restore(db, backup, force).await?;
    out!("Restored {} into {}.", backup.display(), db.display());
    if let Some(aside) = &restored.kept_aside {
        out!(
            "The database it replaced is kept as {} (mode 0600).",
            aside.display()
        );
    }
    for (table, after) in &restored.ids_after {
        let what = table.trim_end_matches('s').replace('_', " ");
        out!("New {what} ids continue after {after}.");
    }
    out!("Database changed: {}", db.display());
    Ok(())
}

async fn account_command(store: &Store, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Adduser {
            nick,
            password_stdin,
        } => {
            let nick = parse_nick(&nick)?;
            if store.find_account(nick.as_str()).await?.is_some() {
                bail!("the nickname {nick} is taken");
            }
            let hash = new_password_hash(&nick, password_stdin).await?;
            store.create_account(&nick, &hash).await?;
            out!("Added {nick}. They start in #general.");
        }
        Command::Invite { nick, validity } => {
            let nick = parse_nick(&nick)?;
            issue_code(store, &nick, validity.valid_hours, true).await?;
        }
        Command::Deluser { nick } => {
            if !store.delete_account(&nick).await? {
                bail!("no user named {nick}");
            }
            out!("Deleted {nick}. Their live sessions end within 2 seconds.");
        }
        Command::Passwd {
            nick,
            invite: true,
            validity,
            ..
        } => {
            let nick = parse_nick(&nick)?;
            issue_code(store, &nick, validity.valid_hours, false).await?;
        }
        Command::Passwd {
            nick,
            password_stdin,
            ..
        } => {
            let nick = parse_nick(&nick)?;
            let Some(account) = store.find_account(nick.as_str()).await? else {
                bail!("no user named {nick}");
            };
            let hash = new_password_hash(&nick, password_stdin).await?;
            if store.set_password(&account.nick, &hash).await?.is_none() {
                bail!("no user named {nick}");
            }
            out!(
                "Password of {} changed. Their live sessions end within 2 seconds.",
                account.nick
            );
        }
        Command::Role { nick, role } => {
            if !store.set_role(&nick, role).await? {
                bail!("no user named {nick}");
            }
            out!("{nick} is now {role}.");
        }
        Command::Lock { nick } => {
            if !store.set_locked(&nick, true).await? {
                bail!("no user named {nick}");
            }
            out!("Locked {nick}. Their live sessions end within 2 seconds; chat-admin unlock {nick} undoes it.");
        }
        Command::Unlock { nick } => {
            if !store.set_locked(&nick, false).await? {
                bail!("no user named {nick}");
            }
            out!("Unlocked {nick}.");
        }
        Command::List => list(store).await?,
        Command::Status => status(store).await?,
        Command::Backup { file } => {
            store.backup_to(&file).await?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            out!("Backed up to {} ({size} bytes).", file.display());
        }
        Command::GenCert { .. } | Command::Import { .. } | Command::Restore { .. } => {
            unreachable!("handled before opening the database")
        }
    }
    Ok(())
}

/// Gives `nick` a fresh code and prints it with what to do with it. `create` makes a missing
/// account (an invite); without it a missing account is an error (a reset).
async fn issue_code(
    store: &Store,
    nick: &Nick,
    valid_hours: u32,
    create: bool,
) -> anyhow::Result<()> {
    let code = invite::new_code().map_err(|_| anyhow!("the system's random generator failed"))?;
    let code_hash = store
        .invite_key()
        .code_hash(&code)
        .expect("a fresh code is a code");
    let expires_at = now_millis() + i64::from(valid_hours) * 3600 * 1000;
    let Some(issued) = store
        .issue_invite(nick, &code_hash, expires_at, create)
        .await?
    else {
        bail!("no user named {nick}");
    };
    let what = match (create, issued.created) {
        (true, true) => "New account",
        (true, false) => "Invite for the existing account",
        (false, _) => "Password reset for",
    };
    out!("{what} {}.", issued.nick);
    out!("One-time code: {code}");
    out!(
        "It works once, for {} only, until {} ({valid_hours} h).",
        issued.nick,
        format_timestamp(expires_at)
    );
    out!(
        "They log in as {} with the code as the password and then choose their own password.",
        issued.nick
    );
    Ok(())
}

async fn list(store: &Store) -> anyhow::Result<()> {
    let accounts = store.list_accounts().await?;
    if accounts.is_empty() {
        out!("No accounts yet. Add one with: chat-admin invite NICK");
    }
    let now = now_millis();
    for account in accounts {
        let mut notes = Vec::new();
        if account.locked {
            notes.push("locked".to_owned());
        }
        match account.invite_expires_at {
            Some(expires) if expires > now => {
                notes.push(format!("code valid until {}", format_timestamp(expires)));
            }
            Some(_) => notes.push("code expired".to_owned()),
            None => {}
        }
        if !account.has_password {
            notes.push("no password yet".to_owned());
        }
        out!(
            "{:<32}  {:<6}  created {}  in {} room(s){}",
            account.nick,
            account.role,
            format_timestamp(account.created_at),
            account.rooms,
            if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            }
        );
    }
    Ok(())
}

async fn status(store: &Store) -> anyhow::Result<()> {
    let (server, online, rooms) = store.read_status().await?;
    let now = now_millis();
    let stale_after = 3 * HEARTBEAT_EVERY.as_millis() as i64;
    match &server {
        Some(server) if now - server.heartbeat_at <= stale_after => {
            out!(
                "Server running: tlschat {}, pid {}, listening on {}, up since {}.",
                server.version,
                server.pid,
                server.listen,
                format_timestamp(server.started_at)
            );
        }
        Some(server) => {
            out!(
                "The server is not running (pid {} last reported at {}; it did not stop cleanly).",
                server.pid,
                format_timestamp(server.heartbeat_at)
            );
        }
        None => out!("The server is not running."),
    }
    let running = server.is_some_and(|s| now - s.heartbeat_at <= stale_after);
    if running {
        let connections: i64 = online.iter().map(|a| a.connections).sum();
        out!(
            "Online: {} account(s), {connections} connection(s).",
            online.len()
        );
        for account in &online {
            out!(
                "  {:<32}  {} connection(s)  since {}",
                account.nick,
                account.connections,
                format_timestamp(account.since)
            );
        }
    }
    out!("Rooms:");
    for room in rooms {
        let online = if running {
            format!("  {} online", room.online)
        } else {
            String::new()
        };
        out!("  {:<33}  {} member(s){online}", room.name, room.members);
    }
    Ok(())
}

fn parse_nick(nick: &str) -> anyhow::Result<Nick> {
    Nick::parse(nick).map_err(|e| anyhow!("invalid nickname {nick:?}: {e}"))
}

/// Reads a password (twice, without echo, on a terminal; one line with --password-stdin),
/// checks it, and hashes it.
async fn new_password_hash(nick: &Nick, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = ask_good_password(nick)?;
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    } else {
        bail!("standard input is not a terminal; pass the password with --password-stdin");
    };
    if let Some(problem) = password_problem(&password) {
        bail!("{problem}");
    }
    Ok(tokio::task::spawn_blocking(move || hash_password_blocking(&password)).await??)
}

/// Asks until a password passes the rules (a few times at most), saying what was wrong, so
/// that a short one is refused before it is typed a second time.
fn ask_good_password(nick: &Nick) -> anyhow::Result<String> {
    const TRIES: usize = 3;
    for _ in 0..TRIES {
        let password = rpassword::prompt_password(format!("New password for {nick}: "))?;
        match password_problem(&password) {
            None => return Ok(password),
            Some(problem) => eprintln!("{problem}; try again."),
        }
    }
    bail!("no acceptable password after {TRIES} tries")
}

/// Accounts a transaction creates: short enough not to hold up the server's writes for long.
const IMPORT_BATCH: usize = 500;

/// `chat-admin import`: checks the whole list before opening the database, refuses (or with
/// `skip_existing` skips) nicknames already taken, hashes on every core, then inserts.
async fn import(
    db: &Path,
    create: bool,
    file: Option<&Path>,
    skip_existing: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (source, list) = read_account_list(file)?;
    for problem in &list.problems {
        eprintln!("{source}:{}: {}", problem.line, problem.message);
    }
    if !list.problems.is_empty() {
        bail!(
            "{} bad line(s) in {source}; nothing imported",
            list.problems.len()
        );
    }
    let existed = db.exists();
    let store = open_store(db, create, OpenMode::Existing).await?;
    let result = import_into(&store, &source, list.accounts, skip_existing).await;
    store.close().await;
    let (imported, skipped) = result?;
    out!(
        "imported {imported} accounts (skipped {skipped} existing) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    say_changed(db, existed);
    Ok(())
}

/// The list from `file`, or standard input for none or `-`, with the name to report it by.
fn read_account_list(file: Option<&Path>) -> anyhow::Result<(String, AccountList)> {
    match file {
        None => Ok((
            "<stdin>".to_owned(),
            read_accounts(std::io::stdin().lock())?,
        )),
        Some(path) if path.as_os_str() == "-" => read_account_list(None),
        Some(path) => {
            let name = path.display().to_string();
            let opened = std::fs::File::open(path).with_context(|| format!("cannot open {name}"));
            let list = read_accounts(std::io::BufReader::new(opened?))
                .with_context(|| format!("cannot read {name}"))?;
            Ok((name, list))
        }
    }
}

/// Returns how many accounts were created and how many skipped as existing.
async fn import_into(
    store: &Store,
    source: &str,
    accounts: Vec<NewAccount>,
    skip_existing: bool,
) -> anyhow::Result<(usize, usize)> {
    let nicks: Vec<Nick> = accounts.iter().map(|a| a.nick.clone()).collect();
    let taken: HashSet<String> = store
        .taken_nicks(&nicks)
        .await?
        .iter()
        .map(|nick| nick.to_ascii_lowercase())
        .collect();
    let (existing, new): (Vec<_>, Vec<_>) = accounts
        .into_iter()
        .partition(|a| taken.contains(&a.nick.as_str().to_ascii_lowercase()));
    if !existing.is_empty() && !skip_existing {
        for account in &existing {
            eprintln!(
                "{source}:{}: the nickname {} is taken",
                account.line, account.nick
            );
        }
        bail!(
            "{} account(s) already exist; nothing imported (--skip-existing skips them)",
            existing.len()
        );
    }
    let hashed = tokio::task::spawn_blocking(move || hash_all(new)).await??;
    let mut imported = 0;
    for batch in hashed.chunks(IMPORT_BATCH) {
        store.create_accounts(batch).await.with_context(|| {
            format!(
                "{imported} of {} accounts were imported before this failure \
                 (--skip-existing imports the rest)",
                hashed.len()
            )
        })?;
        imported += batch.len();
    }
    Ok((imported, existing.len()))
}

/// Hashes the passwords on one thread per core, showing progress on a terminal.
fn hash_all(accounts: Vec<NewAccount>) -> anyhow::Result<Vec<(Nick, String)>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = accounts.len();
    let show = total > 0 && std::io::stderr().is_terminal();
    let every = (total / 100).max(1);
    let passwords: Vec<&str> = accounts.iter().map(|a| a.password.as_str()).collect();
    let hashes = hash_many_blocking(&passwords, threads, |done| {
        if show && (done % every == 0 || done == total) {
            eprint!("\rhashing passwords: {done}/{total}");
        }
    })?;
    if show {
        eprintln!();
    }
    Ok(accounts.into_iter().map(|a| a.nick).zip(hashes).collect())
}

fn gen_cert(dir: &std::path::Path, hostnames: &[String]) -> anyhow::Result<()> {
    let generated = certs::generate(dir, hostnames)?;
    let paths = &generated.paths;
    if generated.new_ca {
        out!(
            "New development CA:  {} (key {}, mode 0600)",
            paths.ca_cert.display(),
            paths.ca_key.display()
        );
    } else {
        out!("Signed by the existing CA {}", paths.ca_cert.display());
    }
    out!(
        "Server certificate:  {} (key {}, mode 0600)",
        paths.server_cert.display(),
        paths.server_key.display()
    );
    out!("Valid for:           {}", generated.names.join(", "));
    out!("SHA-256 fingerprint: {}", generated.fingerprint);
    let host = hostnames.first().map_or("localhost", String::as_str);
    let ca = paths.ca_cert.display();
    out!("A running chat-server picks it up within seconds (or at once on SIGHUP). Clients trust it with:");
    out!("  chat {host}:7777 --ca {ca}");
    out!("  openssl s_client -quiet -crlf -verify_return_error -CAfile {ca} -verify_hostname {host} -connect {host}:7777");
    Ok(())
}
