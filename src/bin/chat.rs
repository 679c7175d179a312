//! `chat`: the plain line client. Logs in, prints what the server says readably with local
//! times, and sends what is typed. Works in a pipe: at the end of its input it says `/quit`
//! and waits for the server's goodbye, so every line it sent has been handled.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::sync::mpsc;

use tlschat::client::{self, render_line, LineReader, LineWriter};
use tlschat::net::tls;
use tlschat::protocol::{ByeReason, ServerLine};

/// Connect to a tlschat server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server as HOST:PORT.
    #[arg(env = "CHAT_SERVER", default_value = "localhost:7777")]
    server: String,
    /// Trust this CA certificate (PEM) instead of the system's roots.
    #[arg(long, env = "CHAT_CA")]
    ca: Option<PathBuf>,
    /// Nickname; asked for when missing.
    #[arg(long, env = "CHAT_NICK")]
    nick: Option<String>,
    /// Read the password from the first line of standard input (after the nickname, if that
    /// is read from there too). CHAT_PASSWORD in the environment works as well.
    #[arg(long)]
    password_stdin: bool,
    /// Print the server's lines exactly as they arrive.
    #[arg(long)]
    raw: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tls = tls::client_config(args.ca.as_deref())?;
    let (mut reader, mut writer) = client::connect(&args.server, tls).await?;
    if let Some(code) = login(&args, &mut reader, &mut writer).await? {
        return Ok(code);
    }
    chat(&args, reader, writer).await
}

fn show(args: &Args, raw: &str, parsed: Option<&ServerLine>) {
    if args.raw {
        println!("{raw}");
    } else if let Some(parsed) = parsed {
        if let Some(text) = render_line(parsed) {
            println!("{text}");
        }
    } else {
        println!("{raw}");
    }
}

fn exit_code_for(reason: &ByeReason) -> ExitCode {
    match reason {
        ByeReason::Quit | ByeReason::ServerShutdown => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// One line of standard input, read off the runtime. Reading stdin directly (not through the
/// chat loop's reader thread) during login keeps a typed password from ever being queued as
/// a chat message.
async fn read_stdin_line(prompt: Option<&'static str>) -> anyhow::Result<Option<String>> {
    tokio::task::spawn_blocking(move || {
        if let Some(prompt) = prompt {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line)?;
        Ok::<_, std::io::Error>((read > 0).then(|| line.trim_end_matches(['\n', '\r']).to_owned()))
    })
    .await?
    .context("cannot read standard input")
}

/// The NICK / PASS dialogue. `Some(code)` means the program should exit now.
async fn login(
    args: &Args,
    reader: &mut LineReader,
    writer: &mut LineWriter,
) -> anyhow::Result<Option<ExitCode>> {
    let interactive = std::io::stdin().is_terminal();
    let env_password = std::env::var("CHAT_PASSWORD").ok();
    let mut attempts = 0;
    loop {
        let Some(line) = reader.next_line().await else {
            bail!("the server closed the connection during login");
        };
        let raw = line.context("connection lost during login")?;
        let parsed = ServerLine::parse(&raw);
        match &parsed {
            Some(ServerLine::NickPrompt) => {
                attempts += 1;
                let scripted =
                    args.nick.is_some() && (env_password.is_some() || args.password_stdin);
                if attempts > 1 && (scripted || !interactive) {
                    eprintln!("chat: login failed");
                    return Ok(Some(ExitCode::FAILURE));
                }
                let nick = match (&args.nick, attempts) {
                    (Some(nick), 1) => nick.clone(),
                    _ => match read_stdin_line(interactive.then_some("Nickname: ")).await? {
                        Some(nick) => nick,
                        None => bail!("no nickname given"),
                    },
                };
                writer.send_line(&nick).await?;
            }
            Some(ServerLine::PassPrompt) => {
                let password = if let Some(password) = &env_password {
                    password.clone()
                } else if args.password_stdin {
                    match read_stdin_line(None).await? {
                        Some(password) => password,
                        None => bail!("no password on standard input"),
                    }
                } else if interactive {
                    tokio::task::spawn_blocking(|| rpassword::prompt_password("Password: "))
                        .await??
                } else {
                    bail!("no password: use --password-stdin or set CHAT_PASSWORD");
                };
                writer.send_line(&password).await?;
            }
            Some(ServerLine::Welcome { .. }) => {
                show(args, &raw, parsed.as_ref());
                return Ok(None);
            }
            Some(ServerLine::Bye(reason)) => {
                show(args, &raw, parsed.as_ref());
                return Ok(Some(exit_code_for(reason)));
            }
            _ => show(args, &raw, parsed.as_ref()),
        }
    }
}

/// After login: server lines are printed, typed lines sent.
async fn chat(
    args: &Args,
    mut reader: LineReader,
    mut writer: LineWriter,
) -> anyhow::Result<ExitCode> {
    let (input_tx, mut input) = mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if input_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut input_open = true;
    let mut quit_sent_at = None;
    loop {
        let quit_deadline = async {
            match quit_sent_at {
                Some(at) => tokio::time::sleep_until(at + Duration::from_secs(10)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = reader.next_line() => {
                let Some(Ok(raw)) = line else {
                    if quit_sent_at.is_some() {
                        return Ok(ExitCode::SUCCESS);
                    }
                    eprintln!("chat: connection lost");
                    return Ok(ExitCode::FAILURE);
                };
                let parsed = ServerLine::parse(&raw);
                show(args, &raw, parsed.as_ref());
                if let Some(ServerLine::Bye(reason)) = &parsed {
                    return Ok(exit_code_for(reason));
                }
            }
            typed = input.recv(), if input_open => match typed {
                Some(line) => writer.send_line(&line).await?,
                None => {
                    input_open = false;
                    writer.send_line("/quit").await?;
                    quit_sent_at = Some(tokio::time::Instant::now());
                }
            },
            () = quit_deadline => return Ok(ExitCode::SUCCESS),
        }
    }
}
