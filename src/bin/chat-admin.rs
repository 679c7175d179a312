//! `chat-admin`: accounts and certificates. Works while the server runs (SQLite's busy
//! timeout covers the overlap); changes apply to the next login.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};

use tlschat::auth::{hash_password_blocking, password_problem};
use tlschat::net::certs;
use tlschat::protocol::{format_timestamp, Nick};
use tlschat::store::Store;

/// Manage tlschat accounts and certificates.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// SQLite database file, the same as the server's.
    #[arg(long, env = "CHAT_DB", default_value = "chat.db", global = true)]
    db: PathBuf,
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
    /// Delete an account and its memberships (its messages stay in the history).
    Deluser { nick: String },
    /// Set a new password for an account.
    Passwd {
        nick: String,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Generate a development server certificate (and the development CA if missing).
    GenCert {
        /// Folder for ca.pem, ca-key.pem, server.pem and server-key.pem.
        #[arg(long, env = "CHAT_CERTS_DIR", default_value = "certs")]
        dir: PathBuf,
        /// A name the certificate is valid for, besides localhost, 127.0.0.1 and ::1.
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-admin: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Command::GenCert { dir, hostnames } = &args.command {
        return gen_cert(dir, hostnames);
    }
    let store = Store::open(&args.db)
        .await
        .with_context(|| format!("cannot open database {}", args.db.display()))?;
    let result = account_command(&store, args.command).await;
    store.close().await;
    result
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
            println!("Added {nick}. They start in #general.");
        }
        Command::Deluser { nick } => {
            if !store.delete_account(&nick).await? {
                bail!("no user named {nick}");
            }
            println!("Deleted {nick}.");
        }
        Command::Passwd {
            nick,
            password_stdin,
        } => {
            let nick = parse_nick(&nick)?;
            let Some(account) = store.find_account(nick.as_str()).await? else {
                bail!("no user named {nick}");
            };
            let hash = new_password_hash(&nick, password_stdin).await?;
            if !store.set_password(&account.nick, &hash).await? {
                bail!("no user named {nick}");
            }
            println!("Password of {} changed.", account.nick);
        }
        Command::List => {
            let accounts = store.list_accounts().await?;
            if accounts.is_empty() {
                println!("No accounts yet. Add one with: chat-admin adduser NICK");
            }
            for account in accounts {
                println!(
                    "{:<32}  created {}  in {} room(s)",
                    account.nick,
                    format_timestamp(account.created_at),
                    account.rooms
                );
            }
        }
        Command::GenCert { .. } => unreachable!("handled before opening the database"),
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
        let first = rpassword::prompt_password(format!("New password for {nick}: "))?;
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

fn gen_cert(dir: &std::path::Path, hostnames: &[String]) -> anyhow::Result<()> {
    let generated = certs::generate(dir, hostnames)?;
    let paths = &generated.paths;
    if generated.new_ca {
        println!(
            "New development CA:  {} (key {}, mode 0600)",
            paths.ca_cert.display(),
            paths.ca_key.display()
        );
    } else {
        println!("Signed by the existing CA {}", paths.ca_cert.display());
    }
    println!(
        "Server certificate:  {} (key {}, mode 0600)",
        paths.server_cert.display(),
        paths.server_key.display()
    );
    println!("Valid for:           {}", generated.names.join(", "));
    println!("SHA-256 fingerprint: {}", generated.fingerprint);
    let host = hostnames.first().map_or("localhost", String::as_str);
    let ca = paths.ca_cert.display();
    println!("Restart chat-server to use it. Clients trust it with:");
    println!("  chat {host}:7777 --ca {ca}");
    println!("  openssl s_client -quiet -crlf -verify_return_error -CAfile {ca} -verify_hostname {host} -connect {host}:7777");
    Ok(())
}
