//! The full-screen client: what `chat` runs when it is on a terminal. The connection and
//! login happen first, on the plain terminal (so a certificate question or a wrong password
//! reads like any other program's); then the screen switches to the chat, which reconnects
//! by itself when the connection drops.

use std::io::Write;
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    EventStream,
};
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::client::trust::{self, Trust};
use crate::client::{LineReader, LineWriter};
use crate::protocol::now_millis;
use crate::protocol::{ErrorCode, ServerLine};

mod backoff;
mod input;
mod keys;
mod pace;
pub mod state;
pub mod view;

pub use backoff::Backoff;
use pace::Pacer;
use state::{Action, App, Link, Origin};

/// Longest a login may take before the attempt counts as failed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a reconnect's TCP connect and TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection that lived this long was a success: the next drop starts from the first
/// wait. (Resetting at every login would retry at once, forever, a server that accepts
/// and then drops us.)
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// How often lines waiting for their turn are looked at (see [`Pacer`]).
const PACE_CHECK_EVERY: Duration = Duration::from_millis(50);
/// Most key events taken together, when they arrive faster than they are read.
const EVENT_BATCH: usize = 64 * 1024;

/// Everything needed to connect and log in again, kept for the whole run (the password
/// only in this process's memory).
#[derive(Clone)]
pub struct Account {
    pub server: String,
    pub trust: Trust,
    pub nick: String,
    pub password: String,
}

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the nickname or password was not accepted")]
    Refused,
    #[error("the server asks for a new password, but this account has one already")]
    NeedsNewPassword,
    #[error("the server closed the connection: {0}")]
    Closed(String),
    #[error("the server did not complete the login in time")]
    Timeout,
    #[error("connection lost during login: {0}")]
    Io(#[from] std::io::Error),
}

impl LoginError {
    /// Whether trying again later can help (a refused password will stay refused).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Refused | Self::NeedsNewPassword)
    }
}

/// Where a login dialogue stopped.
#[derive(Debug)]
pub enum LoginStep {
    /// Logged in; the `WELCOME` line.
    Welcome(ServerLine),
    /// The password was a one-time code and the server waits at `NEWPASS` for the account's
    /// new password ([`send_new_password`]); `problem` is why the last one was refused.
    NewPassword { problem: Option<String> },
}

/// Answers the `NICK` and `PASS` prompts. Lines before the prompts (a banner) are skipped.
pub async fn log_in(
    reader: &mut LineReader,
    writer: &mut LineWriter,
    nick: &str,
    password: &str,
) -> Result<LoginStep, LoginError> {
    continue_login(reader, writer, Some((nick, password))).await
}

/// Answers `NEWPASS` with `new_password` and reads on: `WELCOME`, or `NEWPASS` again when
/// the server refused it.
pub async fn send_new_password(
    reader: &mut LineReader,
    writer: &mut LineWriter,
    new_password: &str,
) -> Result<LoginStep, LoginError> {
    writer.send_line(new_password).await?;
    continue_login(reader, writer, None).await
}

/// Reads the login dialogue, answering `NICK` and `PASS` with `answers` (a second `NICK`
/// means they were refused).
async fn continue_login(
    reader: &mut LineReader,
    writer: &mut LineWriter,
    answers: Option<(&str, &str)>,
) -> Result<LoginStep, LoginError> {
    let dialogue = async {
        let mut problem = None;
        loop {
            let Some(line) = reader.next_line().await else {
                return Err(LoginError::Closed("end of stream".into()));
            };
            match (ServerLine::parse(&line?), answers) {
                (Some(ServerLine::NickPrompt), Some((nick, _))) => writer.send_line(nick).await?,
                (Some(ServerLine::PassPrompt), Some((_, password))) => {
                    writer.send_line(password).await?
                }
                (Some(ServerLine::NickPrompt | ServerLine::PassPrompt), None) => {
                    return Err(LoginError::Refused)
                }
                (Some(ServerLine::NewPassPrompt), _) => {
                    return Ok(LoginStep::NewPassword { problem })
                }
                (
                    Some(ServerLine::Err {
                        code: ErrorCode::BadArgs,
                        text,
                    }),
                    _,
                ) => problem = Some(text),
                (Some(welcome @ ServerLine::Welcome { .. }), _) => {
                    return Ok(LoginStep::Welcome(welcome))
                }
                (
                    Some(ServerLine::Err {
                        code: ErrorCode::AuthFailed,
                        ..
                    }),
                    _,
                ) => return Err(LoginError::Refused),
                (Some(ServerLine::Bye(reason)), _) => {
                    return Err(LoginError::Closed(crate::client::render::bye_words(
                        &reason,
                    )))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(LOGIN_TIMEOUT, dialogue)
        .await
        .unwrap_or(Err(LoginError::Timeout))
}

type Connection = (LineReader, LineWriter);
/// A reconnect attempt's outcome: the logged-in connection and its `WELCOME`, or what went
/// wrong and whether it is final.
type Reconnected = Result<(Connection, ServerLine), (String, bool)>;

/// One reconnect attempt: connect (never asking about certificates: a certificate that
/// changed while we were away is refused) and log in.
async fn reconnect(account: &Account) -> Reconnected {
    let mut never = |_: &str, _: &str| false;
    let connecting = trust::connect(&account.server, &account.trust, &mut never);
    let (mut reader, mut writer) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| (format!("no connection within {CONNECT_TIMEOUT:?}"), false))?
        .map_err(|error| {
            let permanent = matches!(error, trust::TrustError::Changed { .. });
            (error.to_string(), permanent)
        })?;
    match log_in(&mut reader, &mut writer, &account.nick, &account.password).await {
        Ok(LoginStep::Welcome(welcome)) => Ok(((reader, writer), welcome)),
        Ok(LoginStep::NewPassword { .. }) => {
            let error = LoginError::NeedsNewPassword;
            Err((error.to_string(), error.is_final()))
        }
        Err(error) => Err((error.to_string(), error.is_final())),
    }
}

/// Restores the terminal however the chat ends, panics included.
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<(Self, ratatui::DefaultTerminal)> {
        let terminal = ratatui::try_init()?;
        // From here on, leaving (even by `?`) restores the terminal.
        let screen = Self;
        crossterm::execute!(std::io::stdout(), EnableMouseCapture, EnableBracketedPaste)?;
        Ok((screen, terminal))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            std::io::stdout(),
            DisableBracketedPaste,
            DisableMouseCapture
        );
        ratatui::restore();
    }
}

/// Runs the full-screen chat on a logged-in connection until the person quits. An error is
/// the terminal's: the connection's are shown on the screen and retried.
pub async fn run(
    account: Account,
    connection: Connection,
    welcome: ServerLine,
) -> std::io::Result<()> {
    let (screen, mut terminal) = Screen::enter()?;
    let mut app = App::new(&account.server, &account.nick);
    app.apply(welcome, now_millis());
    let mut connection = Some(connection);
    let mut events = EventStream::new();
    let mut backoff = Backoff::default();
    let mut retry_at: Option<Instant> = None;
    let mut attempt: Option<tokio::task::JoinHandle<Reconnected>> = None;
    let mut account = std::sync::Arc::new(account);
    let mut countdown = tokio::time::interval(Duration::from_secs(1));
    let mut pace = tokio::time::interval(PACE_CHECK_EVERY);
    let mut pacer = Pacer::new(std::time::Instant::now());
    let mut connected_since = Some(Instant::now());

    let outcome = loop {
        terminal.draw(|frame| view::draw(frame, &mut app, &chrono::Local))?;
        let now = now_millis();
        let actions = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    // What arrived together is handled together: a burst of keys with line
                    // breaks is a paste (see `keys::on_events`).
                    let mut batch = vec![event];
                    while batch.len() < EVENT_BATCH {
                        match events.next().now_or_never() {
                            Some(Some(Ok(event))) => batch.push(event),
                            _ => break,
                        }
                    }
                    keys::on_events(&mut app, batch, now)
                }
                Some(Err(error)) => break Err(error),
                None => vec![Action::Exit],
            },
            line = next_line(&mut connection) => match line {
                Some(Ok(raw)) => match ServerLine::parse(&raw) {
                    Some(line) => {
                        let bye = matches!(line, ServerLine::Bye(_));
                        let actions = app.apply(line, now);
                        if bye {
                            connection = None;
                            if !matches!(app.link, Link::Closed(_)) {
                                retry_at = Some(schedule(&mut app, &mut backoff, connected_since.take(), now));
                            }
                        }
                        actions
                    }
                    None => Vec::new(),
                },
                Some(Err(_)) | None => {
                    connection = None;
                    if !matches!(app.link, Link::Closed(_)) {
                        retry_at = Some(schedule(&mut app, &mut backoff, connected_since.take(), now));
                    }
                    Vec::new()
                }
            },
            () = wait_until(retry_at) => {
                retry_at = None;
                app.link = Link::Connecting { attempt: backoff.attempt() };
                let account = account.clone();
                attempt = Some(tokio::spawn(async move { reconnect(&account).await }));
                Vec::new()
            }
            result = join(&mut attempt) => {
                attempt = None;
                match result {
                    Ok((new_connection, welcome)) => {
                        connection = Some(new_connection);
                        connected_since = Some(Instant::now());
                        // The catch-up starts when the login replay ends (`App::apply`).
                        app.apply(welcome, now)
                    }
                    Err((error, permanent)) => {
                        app.reconnect_failed(error, permanent, now);
                        if !permanent {
                            retry_at = Some(schedule(&mut app, &mut backoff, connected_since.take(), now));
                        }
                        Vec::new()
                    }
                }
            }
            _ = pace.tick(), if connection.is_some() && (!app.outgoing.is_empty() || !app.automatic.is_empty()) => {
                Vec::new()
            }
            _ = countdown.tick() => {
                if let (Some(at), Link::Reconnecting { attempt, .. }) = (retry_at, &app.link) {
                    app.link = Link::Reconnecting {
                        attempt: *attempt,
                        in_seconds: at.saturating_duration_since(Instant::now()).as_secs_f64().ceil() as u64,
                    };
                }
                Vec::new()
            }
        };
        let mut exit = false;
        for action in actions {
            match action {
                Action::Send(line) if line.starts_with("/quit") => {
                    if let Some((_, writer)) = connection.as_mut() {
                        let _ = writer.send_line(&line).await;
                    }
                }
                Action::Send(line) => {
                    if connection.is_none() && app.outgoing.is_empty() {
                        app.notice(
                            state::EntryKind::Info(
                                "Not connected: what you send waits, and goes when the connection is back (the status bar counts it)."
                                    .into(),
                            ),
                            now,
                        );
                    }
                    app.outgoing.push_back(line);
                }
                Action::ReconnectNow => {
                    if connection.is_none() && attempt.is_none() {
                        if matches!(app.link, Link::Closed(_)) {
                            backoff.reset();
                        }
                        retry_at = Some(Instant::now());
                    }
                }
                Action::PasswordChanged(password) => {
                    account = std::sync::Arc::new(Account {
                        password,
                        ..Account::clone(&account)
                    });
                }
                Action::Bell => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(b"\x07");
                    let _ = out.flush();
                }
                Action::Exit => exit = true,
            }
        }
        if exit {
            if let Some((_, writer)) = connection.as_mut() {
                let _ = writer.close().await;
            }
            break Ok(());
        }
        send_waiting(&mut app, &mut connection, &mut pacer).await;
    };
    drop(terminal);
    drop(screen);
    if let Some(task) = attempt {
        task.abort();
    }
    outcome
}

/// Sends what waits, as far as the pace allows.
async fn send_waiting(app: &mut App, connection: &mut Option<Connection>, pacer: &mut Pacer) {
    let Some((_, writer)) = connection.as_mut() else {
        return;
    };
    while (!app.outgoing.is_empty() || !app.automatic.is_empty())
        && pacer.try_take(std::time::Instant::now())
    {
        let Some((line, origin)) = app.next_line() else {
            break;
        };
        if writer.send_line(&line).await.is_err() {
            // The read side notices the broken stream and reconnects; the person's line
            // goes again then (the client's own are asked again anyway).
            if origin == Origin::Person {
                app.outgoing.push_front(line);
            }
            break;
        }
    }
}

/// Counts the attempt and says when it will be. A connection that had lived a while
/// (`connected_since`) starts the waits over.
fn schedule(
    app: &mut App,
    backoff: &mut Backoff,
    connected_since: Option<Instant>,
    now: i64,
) -> Instant {
    if connected_since.is_some_and(|since| since.elapsed() >= STABLE_CONNECTION) {
        backoff.reset();
    }
    let delay = backoff.next_delay(backoff::random_u32());
    app.connection_lost(backoff.attempt(), delay.as_secs_f64().ceil() as u64, now);
    Instant::now() + delay
}

async fn next_line(connection: &mut Option<Connection>) -> Option<std::io::Result<String>> {
    match connection {
        Some((reader, _)) => reader.next_line().await,
        None => std::future::pending().await,
    }
}

async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn join<T>(
    task: &mut Option<tokio::task::JoinHandle<Result<T, (String, bool)>>>,
) -> Result<T, (String, bool)> {
    match task {
        Some(handle) => match handle.await {
            Ok(result) => result,
            Err(error) => Err((format!("reconnect failed: {error}"), false)),
        },
        None => std::future::pending().await,
    }
}
