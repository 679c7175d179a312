//! `chat`: the tlschat client. On a terminal it is a full-screen chat (rooms, private
//! conversations, scrollback, reconnecting by itself); with `--plain`, or when standard input
//! or output is not a terminal, it is the line client: it logs in, prints what the server
//! says readably with local times, and sends what is typed. That mode works in a pipe: at the
//! end of its input it says `/quit` and waits for the server's goodbye, so every line it sent
//! has been handled.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::sync::mpsc;

use tlschat::auth::password_problem;
use tlschat::client::trust::{self, Trust};
use tlschat::client::tui::{self, LoginError, LoginStep};
use tlschat::client::{config, render_line, wrap_rows, LineReader, LineWriter};
use tlschat::protocol::{
    passwd_line, replace_forbidden, ByeReason, ErrorCode, ServerLine, MIN_PASSWORD_CHARS,
};

/// Server used when neither a flag, the environment nor the config file names one.
const DEFAULT_SERVER: &str = "localhost:7777";

/// Connect to a tlschat server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server as HOST:PORT [default: the config file's, else localhost:7777].
    #[arg(env = "CHAT_SERVER")]
    server: Option<String>,
    /// Trust this CA certificate (PEM) instead of the system's roots and known_hosts.
    #[arg(long, env = "CHAT_CA")]
    ca: Option<PathBuf>,
    /// Nickname; asked for when missing.
    #[arg(long, env = "CHAT_NICK")]
    nick: Option<String>,
    /// Read the password from the first line of standard input (after the nickname, if that
    /// is read from there too). CHAT_PASSWORD in the environment works as well.
    #[arg(long)]
    password_stdin: bool,
    /// The line client even on a terminal (for scripts, screen readers, or taste).
    #[arg(long)]
    plain: bool,
    /// Print the server's lines exactly as they arrive (implies --plain).
    #[arg(long)]
    raw: bool,
    /// Config file [default: config.toml in the user's config folder, e.g.
    /// ~/.config/tlschat/config.toml].
    #[arg(long, env = "CHAT_CONFIG")]
    config: Option<PathBuf>,
}

/// Where and as whom to connect: flags and environment first, then the config file.
struct Settings {
    server: String,
    nick: Option<String>,
    trust: Trust,
}

impl Settings {
    fn resolve(args: &Args) -> anyhow::Result<Self> {
        let file = match (&args.config, config::default_config_path()) {
            (Some(path), _) => config::load(path, true)?,
            (None, Some(path)) => config::load(&path, false)?,
            (None, None) => config::FileConfig::default(),
        };
        let server = args
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let trust = Trust::for_user(args.ca.clone().or(file.ca))?;
        Ok(Self {
            server,
            nick: args.nick.clone().or(file.nick),
            trust,
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chat: {}", tlschat::report::chain(&*error));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&args)?;
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut ask = |server: &str, fingerprint: &str| {
        std::io::stdin().is_terminal() && ask_to_trust(server, fingerprint)
    };
    let (mut reader, mut writer) =
        trust::connect(&settings.server, &settings.trust, &mut ask).await?;
    if on_terminal && !args.plain && !args.raw {
        return full_screen(settings, reader, writer).await;
    }
    if let Some(code) = login(&args, &settings, &mut reader, &mut writer).await? {
        return Ok(code);
    }
    chat(&args, reader, writer).await
}

/// Trust on first use: shows the fingerprint and asks, as ssh does.
fn ask_to_trust(server: &str, fingerprint: &str) -> bool {
    eprintln!(
        "The certificate of {server} is not signed by an authority this computer trusts.\n\
         Its SHA-256 fingerprint is\n  {fingerprint}\n\
         Compare it with the one the server's admin gave you (chat-admin gen-cert prints it)."
    );
    loop {
        eprint!("Trust this certificate and remember it for {server}? (yes/no) ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).unwrap_or(0) == 0 {
            return false;
        }
        match trust_answer(&answer) {
            Some(trust) => return trust,
            None => eprintln!("Please type yes or no."),
        }
    }
}

/// yes/y (any case) trusts, no/n or nothing refuses; `None` asks again.
fn trust_answer(answer: &str) -> Option<bool> {
    match answer.trim().to_lowercase().as_str() {
        "yes" | "y" => Some(true),
        "no" | "n" | "" => Some(false),
        _ => None,
    }
}

/// The full-screen chat: nickname and password asked on the terminal (the password only
/// ever kept in memory, for reconnecting), then the chat screen.
async fn full_screen(
    settings: Settings,
    mut reader: LineReader,
    mut writer: LineWriter,
) -> anyhow::Result<ExitCode> {
    let env_password = std::env::var("CHAT_PASSWORD").ok();
    let mut nick = settings.nick.clone();
    for attempt in 1.. {
        let typed_nick = match &nick {
            Some(nick) => nick.clone(),
            None => match read_stdin_line(Some("Nickname: ")).await? {
                Some(nick) if !nick.trim().is_empty() => nick.trim().to_owned(),
                _ => bail!("no nickname given"),
            },
        };
        let mut password = match (&env_password, attempt) {
            (Some(password), 1) => password.clone(),
            _ => tokio::task::spawn_blocking(|| rpassword::prompt_password("Password: ")).await??,
        };
        let mut step = tui::log_in(&mut reader, &mut writer, &typed_nick, &password).await;
        // The password was a one-time code: choose the real one before the chat starts.
        while let Ok(LoginStep::NewPassword { problem }) = step {
            password = tokio::task::spawn_blocking(move || choose_password(problem)).await??;
            step = tui::send_new_password(&mut reader, &mut writer, &password).await;
        }
        match step {
            Ok(LoginStep::NewPassword { .. }) => unreachable!("answered above"),
            Ok(LoginStep::Welcome(welcome)) => {
                let account = tui::Account {
                    server: settings.server,
                    trust: settings.trust,
                    nick: typed_nick,
                    password,
                };
                tui::run(account, (reader, writer), welcome).await?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(LoginError::Refused) => {
                eprintln!("Invalid nickname or password.");
                if settings.nick.is_none() {
                    nick = None;
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    unreachable!("the loop returns")
}

/// Asks on the terminal for the password that replaces a one-time code: twice, without
/// echo, until both agree and it is long enough. `problem` is the server's last refusal.
fn choose_password(problem: Option<String>) -> anyhow::Result<String> {
    match problem {
        Some(problem) => eprintln!("The server refused that password: {problem}"),
        None => eprintln!(
            "That was a one-time code. Choose your own password now \
             (at least {MIN_PASSWORD_CHARS} characters; only you will know it)."
        ),
    }
    Ok(ask_new_password(false)?.unwrap_or_default())
}

/// Asks on the terminal, twice and without echo, until both agree and the password is long
/// enough. `None` when the person left it empty to cancel, where `may_cancel`.
fn ask_new_password(may_cancel: bool) -> anyhow::Result<Option<String>> {
    loop {
        let first = rpassword::prompt_password("New password: ")?;
        if first.is_empty() && may_cancel {
            return Ok(None);
        }
        if let Some(problem) = password_problem(&first) {
            eprintln!("{problem}.");
            continue;
        }
        if rpassword::prompt_password("Repeat it: ")? == first {
            return Ok(Some(first));
        }
        eprintln!("The two differ; once more.");
    }
}

/// `/passwd` on its own: asks for the current and the new password (on a terminal without
/// echo; in a pipe they are the next two lines) and makes the line that changes it, quoted
/// so that any password works. `None` when cancelled or the input ended.
fn password_change_line(
    interactive: bool,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> anyhow::Result<Option<String>> {
    let (old, new) = if interactive {
        eprintln!("Changing your password (an empty answer cancels).");
        let old = rpassword::prompt_password("Current password: ")?;
        if old.is_empty() {
            return Ok(None);
        }
        match ask_new_password(true)? {
            Some(new) => (old, new),
            None => return Ok(None),
        }
    } else {
        match (lines.next(), lines.next()) {
            (Some(old), Some(new)) => (old?, new?),
            _ => return Ok(None),
        }
    };
    Ok(Some(passwd_line(&old, &new)))
}

fn is_bare_passwd(line: &str) -> bool {
    line.trim().eq_ignore_ascii_case("/passwd")
}

fn show(args: &Args, raw: &str, parsed: Option<&ServerLine>) {
    if args.raw {
        println!("{raw}");
        return;
    }
    let text = match parsed {
        Some(parsed) => match render_line(parsed) {
            Some(text) => text,
            None => return,
        },
        None => raw.to_owned(),
    };
    // The server refuses control and direction-changing characters in what users send;
    // should a server send one anyway, it is shown as U+FFFD rather than obeyed.
    let text = replace_forbidden(&text);
    // On a terminal the client wraps lines itself, so that a continuation row is marked
    // and never starts where a line of its own would (`--raw` and pipes are verbatim).
    match terminal_width() {
        Some(width) => println!("{}", wrap_rows(&text, width).join("\n")),
        None => println!("{text}"),
    }
}

/// The width of the terminal standard output goes to, if it goes to one.
fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .map(|(columns, _)| usize::from(columns))
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
    settings: &Settings,
    reader: &mut LineReader,
    writer: &mut LineWriter,
) -> anyhow::Result<Option<ExitCode>> {
    let interactive = std::io::stdin().is_terminal();
    let env_password = std::env::var("CHAT_PASSWORD").ok();
    let mut attempts = 0;
    let mut last_refusal = None;
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
                    settings.nick.is_some() && (env_password.is_some() || args.password_stdin);
                if attempts > 1 && (scripted || !interactive) {
                    eprintln!("chat: login failed");
                    return Ok(Some(ExitCode::FAILURE));
                }
                let nick = match (&settings.nick, attempts) {
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
            Some(ServerLine::NewPassPrompt) => {
                let problem = last_refusal.take();
                let password = if interactive && !args.password_stdin {
                    tokio::task::spawn_blocking(move || choose_password(problem)).await??
                } else {
                    // Scripted: the line after the code is the new password.
                    match read_stdin_line(None).await? {
                        Some(password) => password,
                        None => bail!("the server asks for a new password (NEWPASS): give it on the line after the code"),
                    }
                };
                writer.send_line(&password).await?;
            }
            Some(ServerLine::Err {
                code: ErrorCode::BadArgs,
                text,
            }) => {
                show(args, &raw, parsed.as_ref());
                last_refusal = Some(text.clone());
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
        let interactive = std::io::stdin().is_terminal();
        let mut lines = std::io::stdin().lock().lines();
        while let Some(Ok(mut line)) = lines.next() {
            // Asked here, in the one thread that reads standard input, so a typed password
            // can never be taken for a chat line.
            if is_bare_passwd(&line) {
                match password_change_line(interactive, &mut lines) {
                    Ok(Some(change)) => line = change,
                    Ok(None) => {
                        eprintln!("Password not changed.");
                        continue;
                    }
                    Err(error) => {
                        eprintln!("Password not changed: {error:#}");
                        continue;
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_question_takes_y_and_n_in_any_case() {
        for yes in ["yes\n", "y\n", "Y", " YES "] {
            assert_eq!(trust_answer(yes), Some(true), "{yes:?}");
        }
        for no in ["no\n", "n", "N", "\n"] {
            assert_eq!(trust_answer(no), Some(false), "{no:?}");
        }
        assert_eq!(trust_answer("maybe"), None);
    }

    #[test]
    fn a_bare_passwd_in_a_pipe_takes_the_next_two_lines() {
        assert!(is_bare_passwd(" /PASSWD "));
        assert!(!is_bare_passwd("/passwd a b"));
        let mut lines = ["old pass phrase", "new \"pass\" phrase", "hello"]
            .into_iter()
            .map(|l| Ok(l.to_owned()));
        let line = password_change_line(false, &mut lines).unwrap().unwrap();
        assert_eq!(
            tlschat::protocol::parse_command(&line).unwrap().unwrap(),
            tlschat::protocol::Command::Passwd {
                old: "old pass phrase".into(),
                new: "new \"pass\" phrase".into()
            }
        );
        assert_eq!(lines.next().unwrap().unwrap(), "hello");
        assert_eq!(password_change_line(false, &mut lines).unwrap(), None);
    }
}
