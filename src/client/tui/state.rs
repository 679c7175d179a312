//! What the full-screen client knows: its conversations, what is unread, the connection,
//! and the input line. Server lines and key presses change it; the view only reads it. No
//! I/O here, so every rule is a unit test.

use std::collections::{HashSet, VecDeque};

use crate::client::render::bye_words;
use crate::protocol::{ByeReason, LeaveReason, ServerLine, StoredMessage};

use super::input::Input;

/// Entries kept per conversation; older ones scroll away for good.
pub const SCROLLBACK: usize = 5_000;
/// Notices kept while there is no conversation to show them in.
const ORPHANS: usize = 100;
/// Messages asked for per catch-up request (the server's most).
const CATCH_UP_PAGE: usize = 500;

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

/// One catch-up request on its way: what its answer has brought so far.
#[derive(Debug)]
struct CatchUp {
    room: String,
    received: usize,
    /// The highest id in the answer: where the next page starts.
    newest: i64,
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
    /// No more attempts: the reason in words.
    Closed(String),
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
    /// Catch-up `/history` requests not yet answered, oldest first.
    quiet_history: VecDeque<CatchUp>,
    /// Lines the client sends by itself (`/who`, catch-up `/history`), sent a few a second
    /// by the event loop so that they never meet the server's flood limit.
    pub automatic: VecDeque<String>,
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
            quiet_history: VecDeque::new(),
            automatic: VecDeque::new(),
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
            if let Some(request) = self.quiet_history.front_mut() {
                if request.room == self.conversations[at].title {
                    request.received += 1;
                    request.newest = request.newest.max(id);
                }
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
                    self.quiet_who.push(room.clone());
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
                    "history" => {
                        if let Some(request) = self.quiet_history.pop_front() {
                            // A full page: there may be more after its last message.
                            if request.received >= CATCH_UP_PAGE {
                                self.ask_history_after(&request.room, request.newest);
                            }
                        }
                    }
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
                self.notice(EntryKind::Info(text), now);
                Vec::new()
            }
            ServerLine::Err { code, text } => {
                self.notice(EntryKind::Error(format!("{text} ({code})")), now);
                Vec::new()
            }
            ServerLine::Bye(reason) => {
                let words = bye_words(&reason);
                self.notice(
                    EntryKind::Info(format!("Disconnected by the server: {words}.")),
                    now,
                );
                if !reconnects_after(&reason) {
                    self.link = Link::Closed(words);
                }
                Vec::new()
            }
        }
    }

    /// The connection dropped; the client will try again (`attempt` from 1) in `seconds`.
    pub fn connection_lost(&mut self, attempt: u32, seconds: u64, now: i64) {
        if self.link == Link::Connected {
            self.notice(
                EntryKind::Info("Connection lost; reconnecting.".into()),
                now,
            );
        }
        self.reconnected = true;
        for conversation in &mut self.conversations {
            conversation.online.clear();
            conversation.news_after = Some(conversation.last_id);
            conversation.confirmed = !conversation.key_is_room();
        }
        self.quiet_who.clear();
        self.quiet_history.clear();
        self.automatic.clear();
        self.link = Link::Reconnecting {
            attempt,
            in_seconds: seconds,
        };
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
        self.quiet_history.push_back(CatchUp {
            room: room.to_owned(),
            received: 0,
            newest: after,
        });
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
        match self.current().map(|c| (c.key.clone(), c.title.clone())) {
            Some((ConversationKey::Room(room), _)) => {
                vec![Action::Send(format!("/say {room} {text}"))]
            }
            Some((ConversationKey::Direct(_), nick)) => {
                vec![Action::Send(format!("/msg {nick} {text}"))]
            }
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
    "Input: Left/Right, Ctrl+Left/Right (word), Home/End, Ctrl+W (delete word), Ctrl+U, Ctrl+K, Up/Down (history). Ctrl+C quits.",
    "Client commands: /switch #room|nick, /msg nick [text] (opens a private conversation), /close (closes it).",
];

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
        assert!(app.quiet_history.is_empty());
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
        app.automatic.clear();
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
