//! What the full-screen client knows: its conversations, what is unread, the connection,
//! and the input line. Server lines and key presses change it; the view only reads it. No
//! I/O here, so every rule is a unit test.

use std::collections::{HashSet, VecDeque};

use crate::auth::password_problem;
use crate::client::render::bye_words;
use crate::protocol::{
    is_forbidden_control, parse_command, passwd_line, ByeReason, Command, ErrorCode, LeaveReason,
    ServerLine, StoredMessage, DEFAULT_MAX_LINE,
};

use super::input::Input;

/// Entries kept per conversation; older ones scroll away for good.
pub const SCROLLBACK: usize = 5_000;
/// Notices kept while there is no conversation to show them in.
const ORPHANS: usize = 100;
/// Messages asked for per catch-up request (the server's most).
const CATCH_UP_PAGE: usize = 500;
/// A paste of more lines than this asks before sending.
pub const PASTE_CONFIRM_LINES: usize = 5;
/// The longest line the server takes (its default `--max-line`), in bytes.
pub const MAX_LINE: usize = DEFAULT_MAX_LINE;

/// A room, or the private conversation with one person.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversationKey {
    Room(String),
    /// Keyed by the lower-cased nickname (nicknames are unique case-insensitively).
    Direct(String),
}

impl ConversationKey {
    pub fn direct(nick: &str) -> Self {
        Self::Direct(nick.to_lowercase())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Message {
        nick: String,
        text: String,
        /// Replayed history rather than live.
        replayed: bool,
        own: bool,
        mention: bool,
    },
    Joined {
        nick: String,
    },
    Left {
        nick: String,
        reason: String,
    },
    Info(String),
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// The message id, for messages.
    pub id: Option<i64>,
    pub kind: EntryKind,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub key: ConversationKey,
    /// `#room`, or the other person's nickname as they registered it.
    pub title: String,
    pub entries: VecDeque<Entry>,
    ids: HashSet<i64>,
    /// The highest message id seen here: where a catch-up after a reconnect starts.
    pub last_id: i64,
    pub unread: usize,
    pub mentioned: bool,
    /// Who is online (rooms only), as the server last said.
    pub online: Vec<String>,
    /// Rows scrolled back from the newest; 0 follows the conversation live.
    pub scroll: usize,
    /// The newest id seen before the connection was lost: replayed messages above it were
    /// said while we were away, so they count as unread.
    news_after: Option<i64>,
    /// Since the last reconnect, the server has confirmed we are still in this room.
    confirmed: bool,
}

impl Conversation {
    fn new(key: ConversationKey, title: String) -> Self {
        Self {
            key,
            title,
            entries: VecDeque::new(),
            ids: HashSet::new(),
            last_id: 0,
            unread: 0,
            mentioned: false,
            online: Vec::new(),
            scroll: 0,
            news_after: None,
            confirmed: true,
        }
    }

    /// Adds a message in id order, unless it is already here; whether it was added. History
    /// fetched after a reconnect can be older than messages already shown (the login replay
    /// brings the newest, the catch-up everything since the last one seen), so a message
    /// goes after the last message with a smaller id, not simply at the end.
    fn insert_message(&mut self, entry: Entry) -> bool {
        let id = entry.id.expect("messages have ids");
        if !self.ids.insert(id) {
            return false;
        }
        let newest = id > self.last_id;
        self.last_id = self.last_id.max(id);
        if newest {
            self.push(entry);
            return true;
        }
        let position = match self
            .entries
            .iter()
            .rposition(|e| e.id.is_some_and(|other| other < id))
        {
            // Right after the last older message.
            Some(older) => older + 1,
            // Older than everything here: before the first message.
            None => self
                .entries
                .iter()
                .position(|e| e.id.is_some())
                .unwrap_or(self.entries.len()),
        };
        self.entries.insert(position, entry);
        self.trim();
        true
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
        self.trim();
    }

    fn trim(&mut self) {
        while self.entries.len() > SCROLLBACK {
            if let Some(Entry { id: Some(id), .. }) = self.entries.pop_front() {
                self.ids.remove(&id);
            }
        }
    }

    pub fn key_is_room(&self) -> bool {
        matches!(self.key, ConversationKey::Room(_))
    }

    fn set_online(&mut self, nick: &str, online: bool) {
        let position = self
            .online
            .iter()
            .position(|n| n.eq_ignore_ascii_case(nick));
        match (position, online) {
            (None, true) => {
                self.online.push(nick.to_owned());
                self.online.sort_by_key(|n| n.to_lowercase());
            }
            (Some(at), false) => {
                self.online.remove(at);
            }
            _ => {}
        }
    }
}

/// A `/history` request on its way: what its answer has brought so far.
#[derive(Debug)]
enum HistoryRequest {
    /// Sent by the client after a reconnect; its answer is not announced.
    CatchUp {
        room: String,
        received: usize,
        /// The highest id in the answer: where the next page starts.
        newest: i64,
    },
    /// Typed by the person, who is told what it brought.
    Asked {
        room: Option<String>,
        received: usize,
        /// Messages that were not on screen yet.
        added: usize,
    },
}

/// Which password the full-screen client is asking for, without echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretStep {
    Old,
    New { old: String },
    Repeat { old: String, new: String },
}

impl SecretStep {
    pub fn prompt(&self) -> &'static str {
        match self {
            Self::Old => "Current password (hidden; Esc cancels): ",
            Self::New { .. } => "New password (hidden; Esc cancels): ",
            Self::Repeat { .. } => "Repeat the new password: ",
        }
    }
}

/// A multi-line paste waiting for the person's yes or no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPaste {
    /// Where it goes, for the question.
    pub title: String,
    /// The lines to send, ready for the wire.
    pub lines: Vec<String>,
}

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connected,
    /// Waiting to try again; `attempt` counts from 1.
    Reconnecting {
        attempt: u32,
        in_seconds: u64,
    },
    /// A connection attempt is under way.
    Connecting {
        attempt: u32,
    },
    /// The session ended and no attempt is made by itself: the reason in words.
    Closed(String),
}

/// Who a line to send comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Typed or pasted: it must not be lost.
    Person,
    /// The client's own (`/who`, catch-up): asked again after a reconnect anyway.
    Client,
}

/// What the client must do after a key press or a server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this line to the server.
    Send(String),
    /// Ring the terminal bell.
    Bell,
    /// Leave the program.
    Exit,
    /// Try to connect again now, without waiting for the next attempt.
    ReconnectNow,
    /// The server confirmed a password change from this client: log in with this one from
    /// now on.
    PasswordChanged(String),
}

/// Whether to try again after the server closed the connection with this reason.
pub fn reconnects_after(reason: &ByeReason) -> bool {
    match reason {
        ByeReason::Quit | ByeReason::AuthFailed => false,
        // An admin's decision is not undone by trying again; after a password change
        // elsewhere, the password this client holds is the old one.
        ByeReason::Kicked(_)
        | ByeReason::AccountLocked
        | ByeReason::AccountDeleted
        | ByeReason::PasswordChanged
        | ByeReason::Other(_) => false,
        // Another of the account's connections may close meanwhile; the growing wait
        // keeps a client from hammering a server that keeps saying no.
        ByeReason::LoginTimeout
        | ByeReason::TooSlow
        | ByeReason::ServerShutdown
        | ByeReason::Flooding
        | ByeReason::ServerBusy
        | ByeReason::TooManySessions => true,
    }
}

#[derive(Debug)]
pub struct App {
    pub nick: String,
    pub server: String,
    pub conversations: Vec<Conversation>,
    pub current: usize,
    pub link: Link,
    pub input: Input,
    /// Logged in at least once before this connection.
    reconnected: bool,
    /// A room we asked to join; we switch to it when the server confirms.
    joining: Option<String>,
    /// `/who` answers we asked for ourselves (to fill the online list), not to be shown.
    quiet_who: Vec<String>,
    /// `/history` requests sent and not yet answered, oldest first.
    history_requests: VecDeque<HistoryRequest>,
    /// Lines the client sends by itself (`/who`, catch-up `/history`), paced by the event
    /// loop so that they never meet the server's flood limit.
    pub automatic: VecDeque<String>,
    /// Lines of the person's (typed or pasted) waiting for their turn; they go before the
    /// automatic ones, and stay across a reconnect.
    pub outgoing: VecDeque<String>,
    /// Why the last attempt to connect failed, for the status bar.
    pub last_error: Option<String>,
    /// Asking for passwords for `/passwd`.
    pub secret: Option<SecretStep>,
    /// A paste asking whether to send it.
    pub pending_paste: Option<PendingPaste>,
    /// The new password of a `/passwd` sent, until the server confirms it.
    pending_password: Option<String>,
    /// Logged in, and the server's `INFO` naming its current room (which ends the login
    /// replay) not yet seen: that room means nothing here, where every line names its own.
    awaiting_room_info: bool,
    /// Rows the message pane showed last time; a page for PageUp/PageDown.
    pub page_rows: usize,
    /// Notices from before there was any conversation to show them in (the welcome comes
    /// before the rooms); they open the first conversation.
    pub orphans: Vec<Entry>,
}

impl App {
    pub fn new(server: &str, nick: &str) -> Self {
        Self {
            nick: nick.to_owned(),
            server: server.to_owned(),
            conversations: Vec::new(),
            current: 0,
            link: Link::Connected,
            input: Input::default(),
            reconnected: false,
            joining: None,
            quiet_who: Vec::new(),
            history_requests: VecDeque::new(),
            automatic: VecDeque::new(),
            outgoing: VecDeque::new(),
            last_error: None,
            secret: None,
            pending_paste: None,
            pending_password: None,
            awaiting_room_info: false,
            page_rows: 10,
            orphans: Vec::new(),
        }
    }

    pub fn current(&self) -> Option<&Conversation> {
        self.conversations.get(self.current)
    }

    fn position(&self, key: &ConversationKey) -> Option<usize> {
        self.conversations.iter().position(|c| &c.key == key)
    }

    /// The conversation for `key`, created (after the others of its kind) if new.
    fn conversation(&mut self, key: ConversationKey, title: &str) -> usize {
        if let Some(at) = self.position(&key) {
            return at;
        }
        // Rooms first, then private conversations, each in the order they appeared.
        let at = match key {
            ConversationKey::Room(_) => self
                .conversations
                .iter()
                .position(|c| matches!(c.key, ConversationKey::Direct(_)))
                .unwrap_or(self.conversations.len()),
            ConversationKey::Direct(_) => self.conversations.len(),
        };
        let mut conversation = Conversation::new(key, title.to_owned());
        for entry in self.orphans.drain(..) {
            conversation.push(entry);
        }
        self.conversations.insert(at, conversation);
        if at <= self.current && self.conversations.len() > 1 {
            self.current += 1;
        }
        at
    }

    fn is_me(&self, nick: &str) -> bool {
        nick.eq_ignore_ascii_case(&self.nick)
    }

    /// A notice for the person at the keyboard, in the conversation they are looking at.
    pub fn notice(&mut self, kind: EntryKind, time: i64) {
        let entry = Entry {
            time,
            id: None,
            kind,
        };
        if self.conversations.is_empty() {
            if self.orphans.len() < ORPHANS {
                self.orphans.push(entry);
            }
            return;
        }
        let at = self.current.min(self.conversations.len() - 1);
        self.conversations[at].push(entry);
    }

    pub fn switch_to(&mut self, at: usize) {
        if at < self.conversations.len() {
            self.current = at;
            let conversation = &mut self.conversations[at];
            if conversation.scroll == 0 {
                conversation.unread = 0;
                conversation.mentioned = false;
            }
        }
    }

    pub fn switch_by(&mut self, step: isize) {
        let count = self.conversations.len() as isize;
        if count > 0 {
            let next = (self.current as isize + step).rem_euclid(count);
            self.switch_to(next as usize);
        }
    }

    /// Scrolls the current conversation back (positive) or forward (negative) by rows;
    /// reaching the bottom returns to live and clears its unread count.
    pub fn scroll_by(&mut self, rows: isize) {
        let at = self.current;
        if let Some(conversation) = self.conversations.get_mut(at) {
            conversation.scroll = conversation.scroll.saturating_add_signed(rows);
            if conversation.scroll == 0 {
                conversation.unread = 0;
                conversation.mentioned = false;
            }
        }
    }

    pub fn scroll_to_live(&mut self) {
        if let Some(conversation) = self.conversations.get_mut(self.current) {
            conversation.scroll = 0;
            conversation.unread = 0;
            conversation.mentioned = false;
        }
    }

    /// Whether the person is looking at the newest lines of conversation `at`.
    fn watching(&self, at: usize) -> bool {
        at == self.current && self.conversations[at].scroll == 0
    }

    /// Adds a message (live or replayed) to conversation `at`; counts it as unread, and
    /// rings for a mention, when the person is not watching it.
    fn add_message(&mut self, at: usize, entry: Entry, news: bool) -> Vec<Action> {
        let mention = matches!(entry.kind, EntryKind::Message { mention: true, .. });
        let own = matches!(entry.kind, EntryKind::Message { own: true, .. });
        if !self.conversations[at].insert_message(entry) || !news || own {
            return Vec::new();
        }
        if self.watching(at) {
            return Vec::new();
        }
        let conversation = &mut self.conversations[at];
        conversation.unread += 1;
        if mention {
            conversation.mentioned = true;
            return vec![Action::Bell];
        }
        Vec::new()
    }

    fn room_message(&mut self, message: StoredMessage, replayed: bool) -> Vec<Action> {
        let own = self.is_me(&message.nick);
        let mention = !own && mentions(&message.text, &self.nick);
        let at = self.conversation(ConversationKey::Room(message.room.clone()), &message.room);
        let id = message.id;
        let entry = Entry {
            time: message.time,
            id: Some(id),
            kind: EntryKind::Message {
                nick: message.nick,
                text: message.text,
                replayed,
                own,
                mention,
            },
        };
        let news = !replayed
            || self.conversations[at]
                .news_after
                .is_some_and(|seen| id > seen);
        if replayed {
            let is_new = !self.conversations[at].ids.contains(&id);
            match self.history_requests.front_mut() {
                Some(HistoryRequest::CatchUp {
                    room,
                    received,
                    newest,
                }) if *room == self.conversations[at].title => {
                    *received += 1;
                    *newest = (*newest).max(id);
                }
                Some(HistoryRequest::Asked {
                    received, added, ..
                }) => {
                    *received += 1;
                    *added += usize::from(is_new);
                }
                _ => {}
            }
        }
        self.add_message(at, entry, news)
    }

    /// Applies one line from the server.
    pub fn apply(&mut self, line: ServerLine, now: i64) -> Vec<Action> {
        match line {
            ServerLine::NickPrompt | ServerLine::PassPrompt | ServerLine::NewPassPrompt => {
                Vec::new()
            }
            ServerLine::Welcome { nick, text } => {
                self.nick = nick;
                self.link = Link::Connected;
                self.last_error = None;
                self.awaiting_room_info = true;
                let text = if self.reconnected {
                    "Reconnected.".to_owned()
                } else {
                    text
                };
                self.notice(EntryKind::Info(text), now);
                Vec::new()
            }
            ServerLine::Msg(message) => self.room_message(message, false),
            ServerLine::Hist(message) => self.room_message(message, true),
            ServerLine::Dm {
                id,
                time,
                from,
                to,
                text,
            } => {
                let own = self.is_me(&from);
                let other = if own { to } else { from.clone() };
                let at = self.conversation(ConversationKey::direct(&other), &other);
                let entry = Entry {
                    time,
                    id: Some(id),
                    kind: EntryKind::Message {
                        nick: from,
                        text,
                        replayed: false,
                        own,
                        // A private message is addressed to you: it rings like a mention.
                        mention: !own,
                    },
                };
                self.add_message(at, entry, true)
            }
            ServerLine::Join { room, time, nick } => {
                let at = self.conversation(ConversationKey::Room(room.clone()), &room);
                self.conversations[at].set_online(&nick, true);
                if self.is_me(&nick) {
                    if self.joining.as_deref() == Some(room.as_str()) {
                        self.joining = None;
                        self.switch_to(at);
                    }
                    self.conversations[at].confirmed = true;
                    // Who else is here, for the status bar; the answer is not shown.
                    self.automatic.push_back(format!("/who {room}"));
                    return Vec::new();
                } else {
                    self.conversations[at].push(Entry {
                        time,
                        id: None,
                        kind: EntryKind::Joined { nick },
                    });
                }
                Vec::new()
            }
            ServerLine::Leave {
                room,
                time,
                nick,
                reason,
            } => {
                let key = ConversationKey::Room(room.clone());
                let Some(at) = self.position(&key) else {
                    return Vec::new();
                };
                if self.is_me(&nick) {
                    self.remove_conversation(at);
                    let text = match reason {
                        LeaveReason::Part => format!("You left {room}."),
                        other => format!("You are no longer in {room} ({other})."),
                    };
                    self.notice(EntryKind::Info(text), time);
                } else {
                    let conversation = &mut self.conversations[at];
                    conversation.set_online(&nick, false);
                    conversation.push(Entry {
                        time,
                        id: None,
                        kind: EntryKind::Left {
                            nick,
                            reason: reason.to_string(),
                        },
                    });
                }
                Vec::new()
            }
            ServerLine::Member { room, nick, online } => {
                if let Some(at) = self.position(&ConversationKey::Room(room.clone())) {
                    self.conversations[at].set_online(&nick, online);
                }
                if self.quiet_who.first() != Some(&room) {
                    let state = if online { "online" } else { "offline" };
                    self.notice(EntryKind::Info(format!("{room}: {nick} ({state})")), now);
                }
                Vec::new()
            }
            ServerLine::Room {
                room,
                members,
                online,
            } => {
                self.notice(
                    EntryKind::Info(format!("{room}: {members} members, {online} online")),
                    now,
                );
                Vec::new()
            }
            ServerLine::End(what) => {
                match what.as_str() {
                    "who" if !self.quiet_who.is_empty() => {
                        self.quiet_who.remove(0);
                    }
                    "history" => match self.history_requests.pop_front() {
                        // A full page: there may be more after its last message.
                        Some(HistoryRequest::CatchUp {
                            room,
                            received,
                            newest,
                        }) if received >= CATCH_UP_PAGE => {
                            self.ask_history_after(&room, newest);
                        }
                        Some(HistoryRequest::Asked {
                            room,
                            received,
                            added,
                        }) => self.history_answered(room, received, added, now),
                        _ => {}
                    },
                    _ => {}
                }
                Vec::new()
            }
            ServerLine::Info(_) if self.awaiting_room_info => {
                // The login replay is over: every room we are still in has said JOIN.
                self.awaiting_room_info = false;
                if self.reconnected {
                    self.forget_unconfirmed_rooms(now);
                    self.catch_up();
                }
                Vec::new()
            }
            ServerLine::Info(text) => {
                // The wording of the server's confirmation (docs/PROTOCOL.md).
                let changed = text.starts_with("Password changed");
                self.notice(EntryKind::Info(text), now);
                match self.pending_password.take() {
                    Some(password) if changed => vec![Action::PasswordChanged(password)],
                    pending => {
                        self.pending_password = pending;
                        Vec::new()
                    }
                }
            }
            ServerLine::Err { code, text } => {
                // A refused `/history` has no `END`: its place in the queue goes with it.
                if matches!(
                    code,
                    ErrorCode::BadArgs | ErrorCode::NotInRoom | ErrorCode::NoSuchRoom
                ) && matches!(
                    self.history_requests.front(),
                    Some(HistoryRequest::Asked { received: 0, .. })
                ) {
                    self.history_requests.pop_front();
                }
                self.notice(EntryKind::Error(format!("{text} ({code})")), now);
                Vec::new()
            }
            ServerLine::Bye(reason) => {
                let words = bye_words(&reason);
                if reconnects_after(&reason) {
                    self.notice(
                        EntryKind::Info(format!("Disconnected by the server: {words}.")),
                        now,
                    );
                } else {
                    self.session_ended(&reason, now);
                }
                Vec::new()
            }
        }
    }

    /// The server ended the session for good: says why and what can be done, and forgets
    /// what is no longer known (who is online).
    fn session_ended(&mut self, reason: &ByeReason, now: i64) {
        let words = bye_words(reason);
        let next = match reason {
            ByeReason::Quit => "",
            ByeReason::Kicked(_) => " Press Ctrl+R to log in again, or Ctrl+C to quit.",
            ByeReason::PasswordChanged => {
                " Press Ctrl+C to quit, then start chat again and log in with the new password."
            }
            _ => " Press Ctrl+C to quit.",
        };
        self.notice(
            EntryKind::Error(format!("Session ended: {words}.{next}")),
            now,
        );
        self.mark_away();
        self.link = Link::Closed(words);
    }

    /// A reconnect attempt failed; `permanent` when trying again cannot help.
    pub fn reconnect_failed(&mut self, error: String, permanent: bool, now: i64) {
        if permanent {
            self.notice(
                EntryKind::Error(format!(
                    "Session ended: {error}. Press Ctrl+C to quit (Ctrl+R tries once more)."
                )),
                now,
            );
            self.link = Link::Closed(error);
        } else {
            // The status bar shows it; a line per attempt would bury the conversation.
            self.last_error = Some(error);
        }
    }

    /// Ctrl+R: try to connect now, when not connected (or connecting) already.
    pub fn reconnect_now(&mut self, now: i64) -> Vec<Action> {
        match &self.link {
            Link::Connected | Link::Connecting { .. } => Vec::new(),
            Link::Reconnecting { .. } => vec![Action::ReconnectNow],
            Link::Closed(_) => {
                self.notice(EntryKind::Info("Connecting again.".into()), now);
                self.mark_away();
                vec![Action::ReconnectNow]
            }
        }
    }

    /// What a typed `/history` brought, when the screen would not show it.
    fn history_answered(&mut self, room: Option<String>, received: usize, added: usize, now: i64) {
        let room = room.map(|r| format!(" in {r}")).unwrap_or_default();
        let text = match (received, added) {
            (0, _) => format!("No messages{room} for that request."),
            (n, 0) => format!("Nothing new{room}: all {n} messages are already shown."),
            (n, added) => format!(
                "{n} messages{room} from the history, {added} not shown before \
                 (PageUp scrolls back to older ones)."
            ),
        };
        self.notice(EntryKind::Info(text), now);
    }

    /// The next line to send, the person's before the client's own; what it asks is
    /// remembered here, in sending order, so that answers are matched to it.
    pub fn next_line(&mut self) -> Option<(String, Origin)> {
        if let Some(line) = self.outgoing.pop_front() {
            let mut words = line.split(' ');
            if words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("/history"))
            {
                self.history_requests.push_back(HistoryRequest::Asked {
                    room: words
                        .next()
                        .filter(|w| w.starts_with('#'))
                        .map(str::to_owned),
                    received: 0,
                    added: 0,
                });
            }
            return Some((line, Origin::Person));
        }
        let line = self.automatic.pop_front()?;
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["/who", room] => self.quiet_who.push((*room).to_owned()),
            ["/history", room, "after", after, _] => {
                self.history_requests.push_back(HistoryRequest::CatchUp {
                    room: (*room).to_owned(),
                    received: 0,
                    newest: after.parse().unwrap_or(0),
                })
            }
            _ => {}
        }
        Some((line, Origin::Client))
    }

    /// The connection dropped; the client will try again (`attempt` from 1) in `seconds`.
    pub fn connection_lost(&mut self, attempt: u32, seconds: u64, now: i64) {
        if self.link == Link::Connected {
            self.notice(
                EntryKind::Info(
                    "Connection lost; reconnecting (the status bar shows how it goes; Ctrl+R tries now)."
                        .into(),
                ),
                now,
            );
        }
        self.mark_away();
        self.link = Link::Reconnecting {
            attempt,
            in_seconds: seconds,
        };
    }

    /// No connection any more: what the server said no longer holds. The person's own
    /// waiting lines stay, to go when a connection is back.
    fn mark_away(&mut self) {
        self.reconnected = true;
        for conversation in &mut self.conversations {
            conversation.news_after = Some(conversation.last_id);
            conversation.online.clear();
            conversation.confirmed = !conversation.key_is_room();
        }
        self.quiet_who.clear();
        self.history_requests.clear();
        self.automatic.clear();
    }

    /// Logged in again and the login replay is over: asks every room for everything after
    /// the newest id seen before the connection was lost (all of it for a room where
    /// nothing was seen). The replay brought the newest few already, which may be far past
    /// that; duplicates are dropped on arrival.
    fn catch_up(&mut self) {
        let rooms: Vec<(String, i64)> = self
            .conversations
            .iter()
            .filter(|c| c.key_is_room())
            .map(|c| (c.title.clone(), c.news_after.unwrap_or(c.last_id)))
            .collect();
        let waiting = std::mem::take(&mut self.automatic);
        for (room, after) in rooms {
            self.ask_history_after(&room, after);
        }
        // Missed messages matter more than the online lists: they go first.
        self.automatic.extend(waiting);
    }

    fn ask_history_after(&mut self, room: &str, after: i64) {
        self.automatic
            .push_back(format!("/history {room} after {after} {CATCH_UP_PAGE}"));
    }

    /// Rooms left from another device while this one was away: the login replay did not
    /// mention them.
    fn forget_unconfirmed_rooms(&mut self, now: i64) {
        while let Some(at) = self.conversations.iter().position(|c| !c.confirmed) {
            let room = self.conversations[at].title.clone();
            self.remove_conversation(at);
            self.notice(
                EntryKind::Info(format!("You are no longer in {room}.")),
                now,
            );
        }
    }

    fn remove_conversation(&mut self, at: usize) {
        self.conversations.remove(at);
        if self.current > at || self.current >= self.conversations.len() {
            self.current = self.current.saturating_sub(1);
        }
        self.switch_to(self.current);
    }

    /// Enter: the input line is sent, or answers the question being asked. A line too long
    /// for the server stays in the input, with a word why.
    pub fn enter(&mut self, now: i64) -> Vec<Action> {
        if let Some(step) = self.secret.take() {
            let answer = self.input.take_unremembered();
            return self.secret_answer(step, answer, now);
        }
        if self.pending_paste.is_some() {
            return Vec::new();
        }
        let text = self.input.text();
        let line = text.trim_end();
        let wire = self.message_line(line).unwrap_or_else(|| line.to_owned());
        if wire.len() > MAX_LINE {
            self.notice(
                EntryKind::Error(format!(
                    "Not sent: that line is {} bytes, and the server takes at most {MAX_LINE}. \
                     It is still in the input: shorten it or split it.",
                    wire.len()
                )),
                now,
            );
            return Vec::new();
        }
        let line = if is_passwd_command(line) {
            // Passwords are never kept for Up/Down.
            self.input.take_unremembered()
        } else {
            self.input.take()
        };
        self.submit(&line, now)
    }

    fn secret_answer(&mut self, step: SecretStep, answer: String, now: i64) -> Vec<Action> {
        let cancelled = || EntryKind::Info("Password not changed.".into());
        match step {
            SecretStep::Old if answer.is_empty() => self.notice(cancelled(), now),
            SecretStep::Old => self.secret = Some(SecretStep::New { old: answer }),
            SecretStep::New { .. } if answer.is_empty() => self.notice(cancelled(), now),
            SecretStep::New { old } => match password_problem(&answer) {
                Some(problem) => {
                    self.notice(EntryKind::Error(format!("{problem}; once more.")), now);
                    self.secret = Some(SecretStep::New { old });
                }
                None => self.secret = Some(SecretStep::Repeat { old, new: answer }),
            },
            SecretStep::Repeat { old, new } if answer == new => {
                self.notice(EntryKind::Info("Changing your password...".into()), now);
                let line = passwd_line(&old, &new);
                self.pending_password = Some(new);
                return vec![Action::Send(line)];
            }
            SecretStep::Repeat { old, .. } => {
                self.notice(
                    EntryKind::Error("The two differ; type the new password again.".into()),
                    now,
                );
                self.secret = Some(SecretStep::New { old });
            }
        }
        Vec::new()
    }

    /// Esc: cancels the password questions or a paste waiting for its answer.
    pub fn cancel(&mut self, now: i64) -> Vec<Action> {
        if self.secret.take().is_some() {
            self.input.take_unremembered();
            self.notice(EntryKind::Info("Password not changed.".into()), now);
        }
        self.answer_paste(false, now)
    }

    /// A paste. Without a line break it goes into the input. With line breaks, each whole
    /// line is a message to the conversation on screen (a line starting with `/` too: it
    /// is text), sent at a pace the server accepts, and a large paste asks first; the text
    /// after the last line break stays in the input.
    pub fn paste(&mut self, text: &str, now: i64) -> Vec<Action> {
        let text = text
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}'], "\n");
        if self.secret.is_some() {
            // A pasted password: its first line, and its line break is Enter.
            let mut lines = text.split('\n');
            self.input.insert_str(lines.next().unwrap_or_default());
            return match lines.next() {
                Some(_) => self.enter(now),
                None => Vec::new(),
            };
        }
        if !text.contains('\n') {
            self.input.insert_str(&text);
            self.warn_if_too_long(now);
            return Vec::new();
        }
        let combined = format!("{}{text}", self.input.take_before_cursor());
        let mut pieces: Vec<&str> = combined.split('\n').collect();
        let unfinished = pieces.pop().unwrap_or_default();
        self.input.insert_str(unfinished);
        let Some(prefix) = self.message_prefix() else {
            let count = pieces.iter().filter(|p| !p.trim().is_empty()).count();
            self.notice(
                EntryKind::Error(format!(
                    "Not sent: {count} pasted lines, and you are in no room; /join #room first"
                )),
                now,
            );
            return Vec::new();
        };
        let lines: Vec<String> = pieces
            .iter()
            .flat_map(|piece| paste_lines(&prefix, piece))
            .collect();
        if lines.is_empty() {
            return Vec::new();
        }
        if let Some(pending) = &mut self.pending_paste {
            // More of a paste that arrived in parts.
            pending.lines.extend(lines);
            return Vec::new();
        }
        if lines.len() > PASTE_CONFIRM_LINES {
            let title = self.current().map(|c| c.title.clone()).unwrap_or_default();
            self.pending_paste = Some(PendingPaste { title, lines });
            return Vec::new();
        }
        lines.into_iter().map(Action::Send).collect()
    }

    /// The answer to "send this paste?".
    pub fn answer_paste(&mut self, send: bool, now: i64) -> Vec<Action> {
        let Some(pending) = self.pending_paste.take() else {
            return Vec::new();
        };
        if send {
            return pending.lines.into_iter().map(Action::Send).collect();
        }
        self.notice(
            EntryKind::Info(format!(
                "The paste was not sent ({} lines).",
                pending.lines.len()
            )),
            now,
        );
        Vec::new()
    }

    fn warn_if_too_long(&mut self, now: i64) {
        let text = self.input.text();
        let wire = self.message_line(&text).unwrap_or(text);
        if wire.len() > MAX_LINE {
            self.notice(
                EntryKind::Error(format!(
                    "The input is {} bytes as a line; the server takes at most {MAX_LINE}. \
                     Shorten it before pressing Enter.",
                    wire.len()
                )),
                now,
            );
        }
    }

    /// `/say #room ` or `/msg nick `: what a message to the conversation on screen starts
    /// with on the wire.
    fn message_prefix(&self) -> Option<String> {
        self.current().map(|c| match &c.key {
            ConversationKey::Room(room) => format!("/say {room} "),
            ConversationKey::Direct(_) => format!("/msg {} ", c.title),
        })
    }

    /// The wire line for typed text that is a message (not a command).
    fn message_line(&self, line: &str) -> Option<String> {
        let text = match line.strip_prefix('/') {
            Some(rest) if rest.starts_with('/') => rest,
            Some(_) => return None,
            None => line,
        };
        Some(format!("{}{text}", self.message_prefix()?))
    }

    /// A line typed at the input: what to send, or a local command.
    pub fn submit(&mut self, line: &str, now: i64) -> Vec<Action> {
        let line = line.trim_end();
        if line.trim().is_empty() {
            return Vec::new();
        }
        let (command, rest) = match line.strip_prefix('/') {
            Some(body) if !body.starts_with('/') => {
                let (command, rest) = body.split_once(' ').unwrap_or((body, ""));
                (Some(command.to_lowercase()), rest.trim())
            }
            _ => (None, ""),
        };
        let Some(command) = command else {
            // Plain text, or `//text`, which means the message "/text".
            let text = if line.starts_with("//") {
                &line[1..]
            } else {
                line
            };
            return self.say(text, now);
        };
        match command.as_str() {
            "switch" | "s" => {
                self.switch_named(rest, now);
                Vec::new()
            }
            "msg" | "query" => {
                let (nick, text) = rest.split_once(' ').unwrap_or((rest, ""));
                if nick.is_empty() {
                    self.notice(EntryKind::Error("Usage: /msg nick [text]".into()), now);
                    return Vec::new();
                }
                let at = self.conversation(ConversationKey::direct(nick), nick);
                self.switch_to(at);
                if text.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![Action::Send(format!("/msg {nick} {}", text.trim_start()))]
                }
            }
            "join" => {
                let room = rest.split_whitespace().next().unwrap_or("").to_lowercase();
                if let Some(at) = self.position(&ConversationKey::Room(room.clone())) {
                    self.switch_to(at);
                } else {
                    self.joining = Some(room);
                }
                vec![Action::Send(line.to_owned())]
            }
            "part" if rest.is_empty() => match self.current().map(|c| c.key.clone()) {
                Some(ConversationKey::Room(room)) => vec![Action::Send(format!("/part {room}"))],
                Some(ConversationKey::Direct(_)) => {
                    self.close_current();
                    Vec::new()
                }
                None => vec![Action::Send(line.to_owned())],
            },
            "close" => {
                match self.current().map(|c| c.key.clone()) {
                    Some(ConversationKey::Direct(_)) => self.close_current(),
                    _ => self.notice(
                        EntryKind::Error(
                            "/close closes a private conversation; /part leaves a room".into(),
                        ),
                        now,
                    ),
                }
                Vec::new()
            }
            // Without a room these would name the server's current room, which is not
            // necessarily the one on screen.
            "who" if rest.is_empty() => self.on_screen_room(line, |room| format!("/who {room}")),
            "history" if !rest.starts_with('#') => {
                self.on_screen_room(line, |room| format!("/history {room} {rest}"))
            }
            "quit" | "exit" => {
                self.link = Link::Closed(bye_words(&ByeReason::Quit));
                vec![Action::Send(line.to_owned()), Action::Exit]
            }
            "passwd" if rest.is_empty() => {
                self.secret = Some(SecretStep::Old);
                self.notice(
                    EntryKind::Info(
                        "Changing your password: the current one, then the new one twice. \
                         Nothing you type is shown or remembered; Esc cancels."
                            .into(),
                    ),
                    now,
                );
                Vec::new()
            }
            "passwd" => {
                if let Ok(Some(Command::Passwd { new, .. })) = parse_command(line) {
                    self.pending_password = Some(new);
                }
                vec![Action::Send(line.to_owned())]
            }
            "help" => {
                for text in KEY_HELP {
                    self.notice(EntryKind::Info((*text).into()), now);
                }
                vec![Action::Send(line.to_owned())]
            }
            _ => vec![Action::Send(line.to_owned())],
        }
    }

    /// `command` for the room on screen, or `line` as typed when a DM is on screen.
    fn on_screen_room(&self, line: &str, command: impl Fn(&str) -> String) -> Vec<Action> {
        match self.current().map(|c| &c.key) {
            Some(ConversationKey::Room(room)) => {
                vec![Action::Send(command(room).trim_end().to_owned())]
            }
            _ => vec![Action::Send(line.to_owned())],
        }
    }

    /// A message to the conversation on screen.
    fn say(&mut self, text: &str, now: i64) -> Vec<Action> {
        match self.message_prefix() {
            Some(prefix) => vec![Action::Send(format!("{prefix}{text}"))],
            None => {
                self.notice(
                    EntryKind::Error("You are in no room; /join #room first".into()),
                    now,
                );
                Vec::new()
            }
        }
    }

    fn switch_named(&mut self, name: &str, now: i64) {
        let key = if name.starts_with('#') {
            ConversationKey::Room(name.to_lowercase())
        } else {
            ConversationKey::direct(name)
        };
        match self.position(&key) {
            Some(at) => self.switch_to(at),
            None => self.notice(
                EntryKind::Error(format!("No conversation {name}; /join #room or /msg nick")),
                now,
            ),
        }
    }

    fn close_current(&mut self) {
        if self.current < self.conversations.len() {
            self.remove_conversation(self.current);
        }
    }
}

/// Shown by `/help` before the server's own list.
pub const KEY_HELP: &[&str] = &[
    "Keys: Ctrl+N / Ctrl+P or Alt+1..9 switch conversations; PageUp / PageDown or the mouse wheel scroll; End returns to live.",
    "Input: Left/Right, Ctrl+Left/Right (word), Home/End, Ctrl+W (delete word), Ctrl+U, Ctrl+K, Up/Down (history). Ctrl+R reconnects now. Ctrl+C quits.",
    "Pasting several lines sends one message per line, paced for the server (more than 5 lines: it asks first).",
    "Client commands: /switch #room|nick, /msg nick [text] (opens a private conversation), /close (closes it), /passwd (asks for the passwords without showing them).",
];

fn is_passwd_command(line: &str) -> bool {
    let word = line.split(' ').next().unwrap_or_default();
    word.eq_ignore_ascii_case("/passwd")
}

/// The wire lines for one pasted line: control characters (which the server refuses) left
/// out, and a line longer than the server takes cut into several, at character
/// boundaries; nothing for a blank line.
fn paste_lines(prefix: &str, piece: &str) -> Vec<String> {
    let text: String = piece
        .chars()
        .filter(|&c| !is_forbidden_control(c))
        .collect();
    let text = text.trim_end();
    if text.trim().is_empty() {
        return Vec::new();
    }
    let room = MAX_LINE.saturating_sub(prefix.len()).max(4);
    let mut lines = Vec::new();
    let mut line = prefix.to_owned();
    for c in text.chars() {
        if line.len() + c.len_utf8() > prefix.len() + room {
            lines.push(std::mem::replace(&mut line, prefix.to_owned()));
        }
        line.push(c);
    }
    lines.push(line);
    lines
}

/// Whether `text` mentions `nick` as a word of its own (case-insensitively), as in
/// "alice: hi", "@alice" or "thanks, Alice!", but not "malice".
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let lower = text.to_lowercase();
    let nick = nick.to_lowercase();
    lower.match_indices(&nick).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + nick.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-11-21T12:00:00.000Z";

    fn line(text: &str) -> ServerLine {
        ServerLine::parse(text).unwrap_or_else(|| panic!("not a server line: {text}"))
    }

    fn feed(app: &mut App, lines: &[&str]) -> Vec<Action> {
        lines
            .iter()
            .flat_map(|text| app.apply(line(text), 0))
            .collect()
    }

    /// Alice logged in to #general and #dev, each with some history.
    fn logged_in() -> App {
        let mut app = App::new("localhost:7777", "alice");
        feed(
            &mut app,
            &[
                "WELCOME alice Logged in. You are in #general. Type /help for commands.",
                &format!("JOIN #general {T} alice"),
                &format!("HIST #general 1 {T} bob first"),
                &format!("HIST #general 2 {T} alice second"),
                &format!("JOIN #dev {T} alice"),
                &format!("HIST #dev 3 {T} carol third"),
                "INFO You are in #general.",
            ],
        );
        app
    }

    fn ids(app: &App, title: &str) -> Vec<i64> {
        let conversation = app.conversations.iter().find(|c| c.title == title).unwrap();
        conversation.entries.iter().filter_map(|e| e.id).collect()
    }

    fn conversation<'a>(app: &'a App, title: &str) -> &'a Conversation {
        app.conversations.iter().find(|c| c.title == title).unwrap()
    }

    #[test]
    fn login_replay_makes_the_room_list_without_unread_counts() {
        let app = logged_in();
        let titles: Vec<_> = app.conversations.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, ["#general", "#dev"]);
        assert_eq!(app.current().unwrap().title, "#general");
        assert_eq!(ids(&app, "#general"), [1, 2]);
        assert!(app.conversations.iter().all(|c| c.unread == 0));
        let infos = conversation(&app, "#general")
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Info(_)))
            .count();
        assert_eq!(infos, 1, "the welcome, not the server's current room");
        let replayed = conversation(&app, "#dev").entries.iter().any(|e| {
            matches!(&e.kind, EntryKind::Message { replayed: true, nick, .. } if nick == "carol")
        });
        assert!(replayed, "history is marked as history");
    }

    #[test]
    fn own_joins_ask_quietly_who_is_online() {
        let mut app = App::new("localhost:7777", "alice");
        let actions = feed(&mut app, &[&format!("JOIN #general {T} alice")]);
        assert_eq!(actions, vec![]);
        assert_eq!(
            app.automatic,
            ["/who #general"],
            "sent at the client's own pace"
        );
        send_all(&mut app);
        feed(
            &mut app,
            &[
                "MEMBER #general alice online",
                "MEMBER #general bob online",
                "MEMBER #general carol offline",
                "END who",
            ],
        );
        let general = conversation(&app, "#general");
        assert_eq!(general.online, ["alice", "bob"]);
        assert!(general.entries.is_empty(), "the quiet answer is not shown");
        // Asked by the person: shown.
        feed(&mut app, &["MEMBER #general bob online", "END who"]);
        assert_eq!(conversation(&app, "#general").entries.len(), 1);
        // Presence keeps the list current.
        feed(&mut app, &[&format!("LEAVE #general {T} bob quit")]);
        assert_eq!(conversation(&app, "#general").online, ["alice"]);
    }

    #[test]
    fn messages_elsewhere_count_as_unread_and_mentions_ring() {
        let mut app = logged_in();
        let actions = feed(
            &mut app,
            &[
                &format!("MSG #dev 10 {T} carol anyone?"),
                &format!("MSG #dev 11 {T} carol alice: review please"),
                &format!("MSG #general 12 {T} bob on screen, not unread"),
                &format!("MSG #dev 13 {T} alice my own"),
            ],
        );
        assert_eq!(actions, vec![Action::Bell], "only the mention rings");
        let dev = conversation(&app, "#dev");
        assert_eq!((dev.unread, dev.mentioned), (2, true));
        assert_eq!(conversation(&app, "#general").unread, 0);
        app.switch_by(1);
        let dev = conversation(&app, "#dev");
        assert_eq!((dev.unread, dev.mentioned), (0, false));
    }

    #[test]
    fn scrolled_back_counts_as_not_watching() {
        let mut app = logged_in();
        app.scroll_by(5);
        feed(&mut app, &[&format!("MSG #general 20 {T} bob new")]);
        assert_eq!(conversation(&app, "#general").unread, 1);
        app.scroll_to_live();
        assert_eq!(conversation(&app, "#general").unread, 0);
    }

    /// Loses the connection and logs in again with the given login replay.
    fn reconnect(app: &mut App, replay: &[&str]) {
        app.connection_lost(1, 1, 0);
        assert!(matches!(app.link, Link::Reconnecting { attempt: 1, .. }));
        app.automatic.clear();
        feed(app, &["WELCOME alice Logged in."]);
        feed(app, replay);
        feed(app, &["INFO You are in #general."]);
    }

    /// What the event loop does: sends every waiting line.
    fn send_all(app: &mut App) -> Vec<String> {
        std::iter::from_fn(|| app.next_line().map(|(line, _)| line)).collect()
    }

    fn history_requests(app: &App) -> Vec<&str> {
        app.automatic
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("/history"))
            .collect()
    }

    #[test]
    fn catch_up_asks_after_the_last_id_and_shows_each_message_once() {
        let mut app = logged_in();
        feed(&mut app, &[&format!("MSG #general 5 {T} bob five")]);
        app.switch_by(1); // look at #dev while #general catches up
                          // The login replay (the newest few of each room), then the catch-up requests.
        reconnect(
            &mut app,
            &[
                &format!("JOIN #general {T} alice"),
                &format!("HIST #general 2 {T} alice second"),
                &format!("HIST #general 5 {T} bob five"),
                &format!("HIST #general 8 {T} bob eight"),
                &format!("HIST #general 9 {T} bob nine"),
                &format!("JOIN #dev {T} alice"),
                &format!("HIST #dev 3 {T} carol third"),
            ],
        );
        assert_eq!(
            history_requests(&app),
            ["/history #general after 5 500", "/history #dev after 3 500"]
        );
        send_all(&mut app);
        assert!(app.conversations[1]
            .entries
            .iter()
            .any(|e| matches!(&e.kind, EntryKind::Info(t) if t == "Reconnected.")));
        // The answers: everything after 5 (the replay's 8 and 9 again), nothing in #dev.
        feed(
            &mut app,
            &[
                &format!("HIST #general 6 {T} bob six"),
                &format!("HIST #general 7 {T} bob seven"),
                &format!("HIST #general 8 {T} bob eight"),
                &format!("HIST #general 9 {T} bob nine"),
                "END history",
                "END history",
            ],
        );
        assert_eq!(ids(&app, "#general"), [1, 2, 5, 6, 7, 8, 9]);
        assert_eq!(conversation(&app, "#general").unread, 4, "6 to 9 are news");
        assert_eq!(conversation(&app, "#general").last_id, 9);
        assert!(app.history_requests.is_empty());
    }

    #[test]
    fn a_room_with_nothing_seen_catches_up_from_the_start_and_full_pages_ask_again() {
        let mut app = logged_in();
        feed(&mut app, &[&format!("JOIN #quiet {T} alice")]);
        reconnect(
            &mut app,
            &[
                &format!("JOIN #general {T} alice"),
                &format!("JOIN #dev {T} alice"),
                &format!("JOIN #quiet {T} alice"),
            ],
        );
        assert!(history_requests(&app).contains(&"/history #quiet after 0 500"));
        send_all(&mut app);
        feed(&mut app, &["END history", "END history"]);
        let page: Vec<String> = (100..600)
            .map(|id| format!("HIST #quiet {id} {T} bob n{id}"))
            .collect();
        let page: Vec<&str> = page.iter().map(String::as_str).collect();
        feed(&mut app, &page);
        feed(&mut app, &["END history"]);
        assert_eq!(history_requests(&app), ["/history #quiet after 599 500"]);
    }

    #[test]
    fn rooms_left_elsewhere_while_away_are_dropped() {
        let mut app = logged_in();
        reconnect(&mut app, &[&format!("JOIN #general {T} alice")]);
        let titles: Vec<_> = app.conversations.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, ["#general"]);
        assert_eq!(history_requests(&app), ["/history #general after 2 500"]);
    }

    #[test]
    fn old_history_asked_for_by_hand_is_not_unread() {
        let mut app = logged_in();
        app.switch_by(1);
        reconnect(
            &mut app,
            &[
                &format!("JOIN #general {T} alice"),
                &format!("JOIN #dev {T} alice"),
            ],
        );
        send_all(&mut app);
        feed(&mut app, &["END history", "END history"]);
        // Older than what was seen before the loss: not news.
        feed(&mut app, &[&format!("HIST #general 0 {T} bob ancient")]);
        assert_eq!(conversation(&app, "#general").unread, 0);
    }

    #[test]
    fn private_messages_are_conversations_of_their_own() {
        let mut app = logged_in();
        let actions = feed(&mut app, &[&format!("DM 30 {T} Bob alice psst")]);
        assert_eq!(actions, vec![Action::Bell]);
        let bob = conversation(&app, "Bob");
        assert_eq!(bob.key, ConversationKey::direct("bob"));
        assert_eq!(bob.unread, 1);
        // My reply lands in the same conversation, whatever the case of the name.
        feed(&mut app, &[&format!("DM 31 {T} alice bob hi")]);
        assert_eq!(ids(&app, "Bob"), [30, 31]);
        assert_eq!(app.conversations.len(), 3, "rooms first, then the DM");
    }

    #[test]
    fn typed_lines_go_to_the_conversation_on_screen() {
        let mut app = logged_in();
        assert_eq!(
            app.submit("hello", 0),
            vec![Action::Send("/say #general hello".into())]
        );
        assert_eq!(
            app.submit("//slash", 0),
            vec![Action::Send("/say #general /slash".into())]
        );
        assert_eq!(app.submit("/msg dave", 0), vec![]);
        assert_eq!(app.current().unwrap().title, "dave", "/msg opens the DM");
        assert_eq!(
            app.submit("hi there", 0),
            vec![Action::Send("/msg dave hi there".into())]
        );
        assert_eq!(app.submit("/switch #dev", 0), vec![]);
        assert_eq!(app.current().unwrap().title, "#dev");
        assert_eq!(
            app.submit("/who", 0),
            vec![Action::Send("/who #dev".into())],
            "the room on screen, not the server's current room"
        );
        assert_eq!(
            app.submit("/history 5", 0),
            vec![Action::Send("/history #dev 5".into())]
        );
        assert_eq!(
            app.submit("/rooms", 0),
            vec![Action::Send("/rooms".into())],
            "other commands go to the server as typed"
        );
        assert_eq!(app.submit("   ", 0), vec![]);
    }

    #[test]
    fn join_switches_when_the_server_confirms_and_part_leaves() {
        let mut app = logged_in();
        assert_eq!(
            app.submit("/join #Ops", 0),
            vec![Action::Send("/join #Ops".into())]
        );
        assert_eq!(app.current().unwrap().title, "#general");
        feed(&mut app, &[&format!("JOIN #ops {T} alice")]);
        assert_eq!(app.current().unwrap().title, "#ops");
        assert_eq!(
            app.submit("/part", 0),
            vec![Action::Send("/part #ops".into())]
        );
        feed(&mut app, &[&format!("LEAVE #ops {T} alice part")]);
        assert!(app.conversations.iter().all(|c| c.title != "#ops"));
        assert!(app.current().is_some());
    }

    #[test]
    fn errors_and_info_are_shown_where_the_person_is_looking() {
        let mut app = logged_in();
        app.switch_by(1);
        feed(
            &mut app,
            &["ERR rate-limited Slow down", "INFO Rooms: #general #dev"],
        );
        let dev = &conversation(&app, "#dev").entries;
        assert!(
            matches!(&dev[dev.len() - 2].kind, EntryKind::Error(t) if t == "Slow down (rate-limited)")
        );
        assert!(matches!(&dev[dev.len() - 1].kind, EntryKind::Info(_)));
    }

    #[test]
    fn only_some_goodbyes_end_the_reconnecting() {
        let mut app = logged_in();
        feed(&mut app, &["BYE server-shutdown"]);
        assert_eq!(app.link, Link::Connected, "the loop reconnects");
        feed(&mut app, &["BYE kicked"]);
        assert!(matches!(app.link, Link::Closed(_)));
        assert!(reconnects_after(&ByeReason::TooSlow));
        assert!(reconnects_after(&ByeReason::TooManySessions));
        assert!(!reconnects_after(&ByeReason::Quit));
    }

    #[test]
    fn a_typed_history_says_when_it_brought_nothing_new() {
        let mut app = logged_in();
        let sent = app.submit("/history 2", 0);
        assert_eq!(sent, vec![Action::Send("/history #general 2".into())]);
        app.outgoing.push_back("/history #general 2".into());
        send_all(&mut app);
        feed(
            &mut app,
            &[
                &format!("HIST #general 1 {T} bob first"),
                &format!("HIST #general 2 {T} alice second"),
                "END history",
            ],
        );
        let last = app.current().unwrap().entries.back().unwrap();
        assert_eq!(
            last.kind,
            EntryKind::Info("Nothing new in #general: all 2 messages are already shown.".into())
        );
        app.outgoing.push_back("/history #general after 2".into());
        send_all(&mut app);
        feed(&mut app, &["END history"]);
        let last = app.current().unwrap().entries.back().unwrap();
        assert_eq!(
            last.kind,
            EntryKind::Info("No messages in #general for that request.".into())
        );
        // A refused request takes its place in the queue with it.
        app.outgoing.push_back("/history #nope".into());
        send_all(&mut app);
        feed(&mut app, &["ERR not-in-room You are not in #nope"]);
        assert!(app.history_requests.is_empty());
    }

    #[test]
    fn a_final_goodbye_ends_the_session_and_says_how_to_leave() {
        let mut app = logged_in();
        feed(&mut app, &["MEMBER #general bob online"]);
        feed(&mut app, &["BYE account-locked"]);
        assert!(matches!(app.link, Link::Closed(_)));
        assert!(app.conversations.iter().all(|c| c.online.is_empty()));
        let last = app.current().unwrap().entries.back().unwrap();
        assert_eq!(
            last.kind,
            EntryKind::Error(
                "Session ended: an admin locked your account. Press Ctrl+C to quit.".into()
            )
        );
        // Reconnect failures are remembered for the status bar, not added as lines.
        let mut app = logged_in();
        app.connection_lost(1, 1, 0);
        let lines = app.current().unwrap().entries.len();
        for _ in 0..5 {
            app.reconnect_failed("connection refused".into(), false, 0);
        }
        assert_eq!(app.current().unwrap().entries.len(), lines);
        assert_eq!(app.last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("alice: hi", "alice"));
        assert!(mentions("thanks, Alice!", "alice"));
        assert!(mentions("@alice", "alice"));
        assert!(!mentions("malice aforethought", "alice"));
        assert!(!mentions("alice_2 is someone else", "alice"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn scrollback_is_bounded() {
        let mut app = logged_in();
        for id in 100..100 + SCROLLBACK as i64 + 50 {
            app.apply(line(&format!("MSG #general {id} {T} bob n{id}")), 0);
        }
        let general = conversation(&app, "#general");
        assert_eq!(general.entries.len(), SCROLLBACK);
        assert_eq!(general.ids.len(), SCROLLBACK);
    }
}
