//! One connection after its TLS handshake: the login dialogue, then the command loop. The
//! session reads and parses; the hub decides and delivers; the outbox writes.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::flood::{FloodGuard, Verdict};
use super::hub::{Login, Request, SessionId};
use super::outbox::Outbox;
use super::Shared;
use crate::auth::{password_problem, AuthError};
use crate::invite;
use crate::net::{InboundLine, LineReader};
use crate::protocol::{
    is_blank, now_millis, parse_command, ByeReason, Command, ErrorCode, LeaveReason, Nick,
    ServerLine, MAX_LOGIN_ATTEMPTS,
};
use crate::store::{AccountId, Role, StoreError};

const HELP: &[&str] = &[
    "Commands:",
    "  text                       send to your current room (//text sends /text)",
    "  /join #room                join or create a room and make it current",
    "  /part [#room]              leave a room (default: the current one)",
    "  /say #room text            send to a room you are in",
    "  /msg nick text             private message",
    "  /rooms [after #room]       list rooms (100 at a time) with member and online counts",
    "  /who [#room]               who is in a room and who of them is online",
    "  /history [#room] [n]       the last n messages (default 50, at most 500)",
    "  /history #room after ID [n]  messages after an id (catch-up)",
    "  /passwd old new            change your password; with spaces: /passwd \"old pass\" \"new pass\"",
    "  /kick nick [reason]        admins: disconnect every connection of nick",
    "  /quit                      leave",
];

fn new_flood_guard(shared: &Shared) -> FloodGuard {
    let config = &shared.config;
    FloodGuard::new(
        config.flood_burst,
        config.flood_per_second,
        config.flood_tolerated,
        Instant::now(),
    )
}

fn rate_limited() -> ServerLine {
    ServerLine::err(ErrorCode::RateLimited, "Slow down: that line was not sent")
}

/// What woke a waiting session.
enum Event {
    Line(InboundLine),
    /// A line refused by flood control.
    RateLimited,
    /// Flood control gave up on this client.
    Flooding,
    /// The peer closed the stream or it broke.
    Closed,
    /// The outbox takes no more lines: the hub closed it, or it gave up on the peer.
    OutboxStopped,
    Shutdown,
}

struct LoggedIn {
    account: AccountId,
    nick: String,
    role: Role,
    /// The newest account event the login already reflects; see `hub::Login`.
    events_seen: i64,
    /// The password event this login wrote itself (with a one-time code).
    own_event: Option<i64>,
}

/// Why a password could not be checked or set: the hashing service, or the database it
/// is checked against. Each says which, so a failing disk is not logged as hashing.
#[derive(Debug, thiserror::Error)]
enum PasswordError {
    #[error(transparent)]
    Hashing(#[from] AuthError),
    #[error("cannot read the account from the database: {0}")]
    ReadAccount(StoreError),
    #[error("cannot store the new password in the database: {0}")]
    StorePassword(StoreError),
}

/// What the password check found.
enum Checked {
    LoggedIn(LoggedIn),
    /// The account's unexpired invite or reset code: a new password is asked for next.
    Invite {
        account: AccountId,
        code_hash: String,
        nick: String,
        role: Role,
        events_seen: i64,
    },
    Failed,
}

pub(super) struct Session<R> {
    id: SessionId,
    /// One permit: a session's `/history` and `/rooms` requests are answered one after
    /// another.
    history_slot: Arc<Semaphore>,
    flood: FloodGuard,
    peer: SocketAddr,
    lines: LineReader<R>,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
}

impl<R: AsyncRead + Unpin> Session<R> {
    pub(super) fn new(
        id: SessionId,
        peer: SocketAddr,
        reader: R,
        outbox: Arc<Outbox>,
        shared: Arc<Shared>,
    ) -> Self {
        let lines = LineReader::new(reader, shared.config.max_line);
        let flood = new_flood_guard(&shared);
        Self {
            id,
            history_slot: Arc::new(Semaphore::new(1)),
            flood,
            peer,
            lines,
            outbox,
            shared,
        }
    }

    /// Runs the session and hands back the read half, for a lingering close.
    pub(super) async fn run(mut self) -> R {
        self.serve().await;
        self.lines.into_inner()
    }

    async fn serve(&mut self) {
        let login_timeout = self.shared.config.login_timeout;
        let checked = match tokio::time::timeout(login_timeout, self.login()).await {
            Ok(Some(checked)) => checked,
            Ok(None) => return,
            Err(_) => return self.login_timed_out(),
        };
        let logged_in = match checked {
            Checked::LoggedIn(logged_in) => logged_in,
            // Choosing a password gets a timeout of its own: the code was typed in time, and
            // a new teammate may think before choosing.
            Checked::Invite {
                account,
                code_hash,
                nick,
                role,
                events_seen,
            } => {
                let choosing = self.new_password(account, code_hash, nick, role, events_seen);
                match tokio::time::timeout(login_timeout, choosing).await {
                    Ok(Some(logged_in)) => logged_in,
                    Ok(None) => return,
                    Err(_) => return self.login_timed_out(),
                }
            }
            Checked::Failed => unreachable!("login() asks again after a failure"),
        };
        tracing::info!(peer = %self.peer, nick = %logged_in.nick, session = self.id, "logged in");
        // The login answers were limited on their own; chatting starts with a full burst.
        self.flood = new_flood_guard(&self.shared);
        let login = Request::Login(Login {
            session: self.id,
            account: logged_in.account,
            nick: logged_in.nick.clone(),
            role: logged_in.role,
            events_seen: logged_in.events_seen,
            own_event: logged_in.own_event,
            outbox: self.outbox.clone(),
        });
        if !self.shared.hub.send(login).await {
            return self
                .outbox
                .close(Some(&ServerLine::Bye(ByeReason::ServerShutdown)));
        }
        let (reason, bye) = self.command_loop(&logged_in).await;
        tracing::info!(peer = %self.peer, nick = %logged_in.nick, session = self.id, %reason, "left");
        let logout = Request::Logout {
            session: self.id,
            reason,
            bye: bye.clone(),
        };
        // The hub closes the outbox after the lines it still has for this session; only a
        // hub that has already stopped leaves that to the session.
        if !self.shared.hub.send(logout).await {
            self.outbox.close(bye.map(ServerLine::Bye).as_ref());
        }
    }

    fn login_timed_out(&self) {
        tracing::debug!(peer = %self.peer, "login timed out");
        self.outbox
            .close(Some(&ServerLine::Bye(ByeReason::LoginTimeout)));
    }

    async fn next_event(&mut self) -> Event {
        tokio::select! {
            biased;
            () = self.shared.shutdown.cancelled() => Event::Shutdown,
            () = self.outbox.stopped() => Event::OutboxStopped,
            line = self.lines.next() => match line {
                // Every line costs a token, whatever it holds, before any work is done for it.
                Some(Ok(line)) => match self.flood.check(Instant::now()) {
                    Verdict::Accept => Event::Line(line),
                    Verdict::Reject => Event::RateLimited,
                    Verdict::Disconnect => Event::Flooding,
                },
                Some(Err(_)) | None => Event::Closed,
            },
        }
    }

    fn send(&self, line: ServerLine) {
        // An overflow closes the outbox and surfaces as `Event::OutboxStopped`.
        let _ = self.outbox.send(&line);
    }

    /// The `ERR` for a line the codec could not use.
    fn bad_line_error(&self, line: &InboundLine) -> Option<ServerLine> {
        let max = self.shared.config.max_line;
        match line {
            InboundLine::Line(_) => None,
            InboundLine::TooLong => Some(ServerLine::err(
                ErrorCode::LineTooLong,
                format!("Lines are at most {max} bytes; that one was discarded"),
            )),
            InboundLine::BadUtf8 => Some(ServerLine::err(
                ErrorCode::BadUtf8,
                "That line was not valid UTF-8",
            )),
        }
    }

    /// Answers a logged-in session through the hub, behind the answers to its earlier
    /// requests (the echo of a message sent just before, say).
    async fn reply(&self, line: ServerLine) {
        let request = Request::Reply {
            session: self.id,
            line: line.to_bytes(),
        };
        if !self.shared.hub.send(request).await {
            self.send(line);
        }
    }

    /// Waits for the next non-blank line during login. `None` ends the connection.
    async fn login_answer(&mut self) -> Option<String> {
        loop {
            match self.next_event().await {
                Event::Line(InboundLine::Line(text)) if !is_blank(&text) => return Some(text),
                Event::Line(line) => {
                    if let Some(error) = self.bad_line_error(&line) {
                        self.send(error);
                    }
                }
                Event::RateLimited => self.send(rate_limited()),
                Event::Flooding => {
                    self.outbox
                        .close(Some(&ServerLine::Bye(ByeReason::Flooding)));
                    return None;
                }
                Event::Shutdown => {
                    self.outbox
                        .close(Some(&ServerLine::Bye(ByeReason::ServerShutdown)));
                    return None;
                }
                Event::Closed | Event::OutboxStopped => {
                    self.outbox.close(None);
                    return None;
                }
            }
        }
    }

    /// Runs `work` unless the session stops first (its outbox stopped, or the server is
    /// shutting down): then `None`, and the work is dropped where it stood.
    async fn unless_stopped<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            value = work => Some(value),
            () = self.outbox.stopped() => None,
            () = self.shared.shutdown.cancelled() => None,
        }
    }

    /// Ends a login cut short by [`Self::unless_stopped`].
    fn abandon_login(&self) -> Option<Checked> {
        if self.shared.shutdown.is_cancelled() {
            self.outbox
                .close(Some(&ServerLine::Bye(ByeReason::ServerShutdown)));
        }
        None
    }

    /// `Some(lines left out since the last one)` when a line about a failed or busy password
    /// check may be written; guessers cause these, so they share one budget.
    fn auth_log(&self) -> Option<u64> {
        self.shared.auth_log.admit()
    }

    /// The `NICK` / `PASS` dialogue, up to a correct password or a valid code. Every failure
    /// looks the same from outside: the same error, after one password hash's worth of work.
    /// The throttle counts each attempt from the moment its turn comes; only a success takes
    /// it back, so `server-busy` and an abandoned check count as failures.
    async fn login(&mut self) -> Option<Checked> {
        let shared = self.shared.clone();
        let ip = self.peer.ip();
        let mut failures = 0;
        while failures < MAX_LOGIN_ATTEMPTS {
            self.send(ServerLine::NickPrompt);
            let nick = self.login_answer().await?;
            self.send(ServerLine::PassPrompt);
            let password = self.login_answer().await?;
            let nick = nick.trim_end();
            let Some(turn) = self.unless_stopped(shared.throttle.begin(ip, nick)).await else {
                return self.abandon_login();
            };
            let Ok(attempt) = turn else {
                failures += 1;
                if let Some(suppressed) = self.auth_log() {
                    tracing::info!(peer = %self.peer, suppressed, "login refused: too many failures from this address");
                }
                self.send(ServerLine::err(
                    ErrorCode::RateLimited,
                    "Too many failed logins from your address; try again later",
                ));
                continue;
            };
            let Some(checked) = self
                .unless_stopped(self.check_password(nick, password))
                .await
            else {
                return self.abandon_login();
            };
            match checked {
                Ok(Checked::Failed) => {
                    drop(attempt);
                    failures += 1;
                    if let Some(suppressed) = self.auth_log() {
                        tracing::info!(peer = %self.peer, failures, suppressed, "login failed");
                    }
                    self.send(ServerLine::err(
                        ErrorCode::AuthFailed,
                        "Invalid nickname or password",
                    ));
                }
                Ok(checked) => {
                    attempt.succeeded();
                    return Some(checked);
                }
                Err(PasswordError::Hashing(AuthError::Busy)) => {
                    drop(attempt);
                    if let Some(suppressed) = self.auth_log() {
                        tracing::warn!(peer = %self.peer, suppressed, "login answered server-busy: every hashing slot stayed busy");
                    }
                    self.send(ServerLine::err(
                        ErrorCode::ServerBusy,
                        "Too many logins in progress; try again in a moment",
                    ));
                }
                Err(error) => {
                    drop(attempt);
                    if let Some(suppressed) = self.auth_log() {
                        tracing::error!(%error, suppressed, "login check failed");
                    }
                    self.send(ServerLine::err(
                        ErrorCode::ServerBusy,
                        "Login is unavailable; try again",
                    ));
                }
            }
        }
        self.outbox
            .close(Some(&ServerLine::Bye(ByeReason::AuthFailed)));
        None
    }

    /// Every outcome costs one password hash: unknown nicknames, accounts without a
    /// password yet, locked accounts and invite codes included.
    async fn check_password(&self, nick: &str, password: String) -> Result<Checked, PasswordError> {
        let account = match Nick::parse(nick) {
            Ok(nick) => self
                .shared
                .store
                .find_login(nick.as_str())
                .await
                .map_err(PasswordError::ReadAccount)?,
            Err(_) => None,
        };
        let stored_hash = account
            .as_ref()
            .map(|a| a.password_hash.clone())
            .filter(|hash| !hash.is_empty());
        let typed_code = self.shared.store.invite_key().code_hash(&password);
        let verified = self.shared.passwords.verify(stored_hash, password).await?;
        let Some(account) = account.filter(|a| !a.locked) else {
            return Ok(Checked::Failed);
        };
        if verified {
            return Ok(Checked::LoggedIn(LoggedIn {
                account: account.id,
                nick: account.nick,
                role: account.role.0,
                events_seen: account.events_seen,
                own_event: None,
            }));
        }
        let code_valid = account
            .invite_expires_at
            .is_some_and(|expires| expires > now_millis());
        match (account.invite_hash, typed_code) {
            (Some(stored), Some(typed)) if code_valid && invite::hashes_match(&stored, &typed) => {
                Ok(Checked::Invite {
                    account: account.id,
                    code_hash: typed,
                    nick: account.nick,
                    role: account.role.0,
                    events_seen: account.events_seen,
                })
            }
            _ => Ok(Checked::Failed),
        }
    }

    /// The `NEWPASS` dialogue after a valid code: asks until the password is acceptable,
    /// then uses the code up and sets the password in one step. `None` ends the connection:
    /// it closed (the code stays usable), or the code was used up meanwhile (another
    /// connection with the same code won), or the password could not be stored.
    async fn new_password(
        &mut self,
        account: AccountId,
        code_hash: String,
        nick: String,
        role: Role,
        events_seen: i64,
    ) -> Option<LoggedIn> {
        let password = loop {
            self.send(ServerLine::NewPassPrompt);
            let answer = self.login_answer().await?;
            match password_problem(&answer) {
                Some(problem) => self.send(ServerLine::err(ErrorCode::BadArgs, problem)),
                None => break answer,
            }
        };
        let redeemed = async {
            let hash = self.shared.passwords.hash(password).await?;
            self.shared
                .store
                .redeem_invite(account, &code_hash, &hash)
                .await
                .map_err(PasswordError::StorePassword)
        };
        let (error, bye) = match redeemed.await {
            Ok(Some(event)) => {
                tracing::info!(peer = %self.peer, %nick, "invite code used; password set");
                return Some(LoggedIn {
                    account,
                    nick,
                    role,
                    // Events since the code was checked (a role change while the password
                    // was being chosen) still apply; the password event just written ends
                    // the account's other sessions, not this one.
                    events_seen,
                    own_event: Some(event),
                });
            }
            Ok(None) => (
                ServerLine::err(ErrorCode::AuthFailed, "Invalid nickname or password"),
                ByeReason::AuthFailed,
            ),
            Err(error) => {
                tracing::error!(%error, "could not set a password from a code");
                let text = "Could not set the password; the code still works, try again later";
                (
                    ServerLine::err(ErrorCode::ServerBusy, text),
                    ByeReason::ServerBusy,
                )
            }
        };
        self.send(error);
        self.outbox.close(Some(&ServerLine::Bye(bye)));
        None
    }

    /// Runs until the session ends; returns how the others should see it go.
    async fn command_loop(&mut self, me: &LoggedIn) -> (LeaveReason, Option<ByeReason>) {
        loop {
            let text = match self.next_event().await {
                Event::Line(InboundLine::Line(text)) => text,
                Event::Line(bad) => {
                    if let Some(error) = self.bad_line_error(&bad) {
                        self.reply(error).await;
                    }
                    continue;
                }
                Event::RateLimited => {
                    self.reply(rate_limited()).await;
                    continue;
                }
                Event::Flooding => {
                    tracing::info!(peer = %self.peer, nick = %me.nick, "disconnected for flooding");
                    return (LeaveReason::Disconnect, Some(ByeReason::Flooding));
                }
                Event::Closed => return (LeaveReason::Disconnect, None),
                Event::OutboxStopped => {
                    let failure = self.outbox.failure();
                    return (
                        failure.map_or(LeaveReason::Disconnect, |f| f.leave_reason()),
                        None,
                    );
                }
                Event::Shutdown => {
                    return (LeaveReason::Disconnect, Some(ByeReason::ServerShutdown))
                }
            };
            match parse_command(&text) {
                Ok(None) => {}
                Ok(Some(Command::Quit)) => return (LeaveReason::Quit, Some(ByeReason::Quit)),
                Ok(Some(command)) => self.execute(me, command).await,
                Err(error) => self.reply(ServerLine::err(error.code, error.text)).await,
            }
        }
    }

    /// The connection's one slot for a list read (`/history`, `/rooms`). Waiting here stops
    /// this client's reading until its previous answer is out. `None` once it is closing.
    async fn list_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::select! {
            slot = self.history_slot.clone().acquire_owned() => slot.ok(),
            () = self.outbox.stopped() => None,
            () = self.shared.shutdown.cancelled() => None,
        }
    }

    async fn execute(&mut self, me: &LoggedIn, command: Command) {
        let session = self.id;
        let request = match command {
            Command::Say { room, text } => Request::Say {
                session,
                room,
                text,
            },
            Command::Join(room) => Request::Join { session, room },
            Command::Part(room) => Request::Part { session, room },
            Command::Rooms { after } => {
                let Some(slot) = self.list_slot().await else {
                    return;
                };
                Request::Rooms {
                    session,
                    after,
                    slot,
                }
            }
            Command::Who(room) => Request::Who { session, room },
            Command::History { room, query } => {
                let Some(slot) = self.list_slot().await else {
                    return;
                };
                Request::History {
                    session,
                    room,
                    query,
                    slot,
                }
            }
            Command::Msg { to, text } => match self.shared.store.find_account(to.as_str()).await {
                Ok(Some(account)) => Request::Direct {
                    session,
                    to: account.id,
                    to_nick: account.nick,
                    text,
                },
                Ok(None) => {
                    let error =
                        ServerLine::err(ErrorCode::NoSuchUser, format!("There is no user {to}"));
                    return self.reply(error).await;
                }
                Err(error) => {
                    tracing::error!(%error, "could not look up a user");
                    let error =
                        ServerLine::err(ErrorCode::ServerBusy, "Storage is unavailable; try again");
                    return self.reply(error).await;
                }
            },
            Command::Passwd { old, new } => return self.change_password(me, old, new).await,
            Command::Kick { nick, reason } => Request::Kick {
                session,
                nick,
                reason,
            },
            Command::Help => {
                for line in HELP {
                    self.reply(ServerLine::info(*line)).await;
                }
                return;
            }
            Command::Quit => unreachable!("handled by the command loop"),
        };
        let _ = self.shared.hub.send(request).await;
    }

    /// Checks the old password and hashes the new one here; the hub stores it, so that it
    /// can end the account's other sessions before anything else happens to them. The old
    /// password is a password check like a login's: throttled and counted by the same table
    /// (this address, this nickname), and a stolen session cannot guess faster than a
    /// login could. The account's turn is held until the new hash is made, so one account
    /// never has more than one hash in progress.
    async fn change_password(&mut self, me: &LoggedIn, old: String, new: String) {
        if let Some(problem) = password_problem(&new) {
            return self
                .reply(ServerLine::err(ErrorCode::BadArgs, problem))
                .await;
        }
        let shared = self.shared.clone();
        let turn = shared.throttle.begin(self.peer.ip(), &me.nick);
        let Some(turn) = self.unless_stopped(turn).await else {
            return;
        };
        let Ok(attempt) = turn else {
            if let Some(suppressed) = self.auth_log() {
                tracing::info!(peer = %self.peer, nick = %me.nick, suppressed, "password change refused: too many failures from this address");
            }
            let text = "Too many failed password checks from your address; try again later";
            return self
                .reply(ServerLine::err(ErrorCode::RateLimited, text))
                .await;
        };
        let Some(verified) = self.unless_stopped(self.verify_own_password(me, old)).await else {
            return;
        };
        let answer = match verified {
            Ok(Some(old_hash)) => {
                let new_hash = self.unless_stopped(shared.passwords.hash(new)).await;
                // The old password was right, whatever happens to the new one.
                attempt.succeeded();
                match new_hash {
                    None => return,
                    Some(Ok(new_hash)) => {
                        let request = Request::SetPassword {
                            session: self.id,
                            old_hash,
                            new_hash,
                        };
                        let _ = self.shared.hub.send(request).await;
                        return;
                    }
                    Some(Err(error)) => self.password_change_unavailable(&error.into()),
                }
            }
            Ok(None) => {
                drop(attempt);
                if let Some(suppressed) = self.auth_log() {
                    tracing::info!(peer = %self.peer, nick = %me.nick, suppressed, "password change refused: the old password is wrong");
                }
                ServerLine::err(ErrorCode::AuthFailed, "The old password is wrong")
            }
            Err(error) => {
                drop(attempt);
                self.password_change_unavailable(&error)
            }
        };
        self.reply(answer).await;
    }

    /// The account's current hash if `password` is its password; `None` if it is not, or
    /// the account is gone or renamed away.
    async fn verify_own_password(
        &self,
        me: &LoggedIn,
        password: String,
    ) -> Result<Option<String>, PasswordError> {
        let account = self
            .shared
            .store
            .find_account(&me.nick)
            .await
            .map_err(PasswordError::ReadAccount)?;
        let Some(account) = account.filter(|a| a.id == me.account) else {
            return Ok(None);
        };
        let stored = account.password_hash;
        let verified = self
            .shared
            .passwords
            .verify(Some(stored.clone()), password)
            .await?;
        Ok(verified.then_some(stored))
    }

    /// The answer, and a line in the log within the shared budget, when a password change
    /// could not be checked or hashed.
    fn password_change_unavailable(&self, error: &PasswordError) -> ServerLine {
        match error {
            PasswordError::Hashing(AuthError::Busy) => {
                if let Some(suppressed) = self.auth_log() {
                    tracing::warn!(peer = %self.peer, suppressed, "password change answered server-busy: every hashing slot stayed busy");
                }
                ServerLine::err(
                    ErrorCode::ServerBusy,
                    "Too many password checks in progress; try again in a moment",
                )
            }
            _ => {
                if let Some(suppressed) = self.auth_log() {
                    tracing::error!(%error, suppressed, "password change failed");
                }
                ServerLine::err(
                    ErrorCode::ServerBusy,
                    "Could not change the password; try again",
                )
            }
        }
    }
}
