//! The hub: the single owner of who is online, which rooms they are in, and each session's
//! current room. Sessions send it requests over a bounded channel; it stores messages in
//! batches (one transaction each), and only after the commit formats every line once and
//! pushes it into the recipients' outboxes, in id order. Being the only task that assigns
//! ids and fans out is what keeps every room in id order with no gaps and no duplicates
//! between a replay and live traffic. It holds no lock; the only locks in the server are
//! the per-connection outbox queues, taken briefly by each push.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::outbox::{Outbox, Stopped};
use crate::protocol::{
    now_millis, ByeReason, ErrorCode, HistoryQuery, LeaveReason, Nick, RoomName, ServerLine,
    StoredMessage,
};
use crate::store::{
    AccountEvent, AccountId, EventKind, KeptFull, KeptLimits, NewMessage, Recipient, Role, RoomId,
    Store,
};
use crate::Config;

/// Who is online, as `chat-admin status` shows it; published by the hub when it changes.
pub type Presence = Arc<Vec<crate::store::OnlineAccount>>;

/// How often the hub publishes who is online, when that changed.
const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the hub remembers account events for logins that checked their password before
/// the event and reach the hub after it: far longer than any login can take.
const REMEMBER_EVENTS: std::time::Duration = std::time::Duration::from_secs(600);

/// Kept private messages replayed per page at login: a page is read, written at the
/// reader's pace and marked delivered once flushed to the socket before the next is read.
const KEPT_PAGE: u32 = 100;
/// Rooms per `/rooms` answer; `/rooms after #room` gives the next ones.
pub const ROOMS_PAGE: u32 = 100;
/// How much of a refused message's text its `ERR` quotes, so the sender knows which it was.
const QUOTED_CHARS: usize = 40;

/// Identifies one connection for the hub's lifetime.
pub type SessionId = u64;

/// A session whose password (or code) was accepted, asking to come online.
#[derive(Debug)]
pub struct Login {
    pub session: SessionId,
    pub account: AccountId,
    pub nick: String,
    pub role: Role,
    /// The newest account event that existed when the password was checked: later ones
    /// (a lock, a reset racing this login) still apply to this session.
    pub events_seen: i64,
    /// The event this login itself caused (setting a password with a one-time code), which
    /// must not end it.
    pub own_event: Option<i64>,
    pub outbox: Arc<Outbox>,
}

/// Requests a logged-in session makes of the hub.
#[derive(Debug)]
pub enum Request {
    Login(Login),
    Logout {
        session: SessionId,
        reason: LeaveReason,
        bye: Option<ByeReason>,
    },
    Say {
        session: SessionId,
        room: Option<RoomName>,
        text: String,
    },
    Direct {
        session: SessionId,
        to: AccountId,
        to_nick: String,
        text: String,
    },
    Join {
        session: SessionId,
        room: RoomName,
    },
    Part {
        session: SessionId,
        room: Option<RoomName>,
    },
    /// A page of the room list: read in a task of its own, then completed by the hub.
    Rooms {
        session: SessionId,
        after: Option<RoomName>,
        /// The session's list slot, held until the answer is queued.
        slot: OwnedSemaphorePermit,
    },
    /// The stored part of a `/rooms` answer (names and member counts), back from its read;
    /// the hub adds who is online.
    RoomsPage {
        session: SessionId,
        rooms: Vec<(String, i64)>,
        slot: OwnedSemaphorePermit,
    },
    Who {
        session: SessionId,
        room: Option<RoomName>,
    },
    History {
        session: SessionId,
        room: Option<RoomName>,
        query: HistoryQuery,
        /// The session's one history slot, held until the answer is queued, so a client
        /// has at most one history read in flight.
        slot: OwnedSemaphorePermit,
    },
    /// An admin ends every connection of `nick`.
    Kick {
        session: SessionId,
        nick: Nick,
        reason: String,
    },
    /// Stores the session's new password (already checked and hashed) and ends the
    /// account's other sessions.
    SetPassword {
        session: SessionId,
        /// The hash the old password was verified against: the change is made only if it
        /// is still the account's (no reset or lock came in between).
        old_hash: String,
        new_hash: String,
    },
    /// A change to an account, read from the store, made by this or another process.
    Account(AccountEvent),
    /// A line the session answered itself (a parse error, `/help`), sent through the hub
    /// so it keeps its place among the answers to earlier requests.
    Reply {
        session: SessionId,
        line: Bytes,
    },
}

/// A cheap `Clone` handle for sending requests to the hub.
#[derive(Debug, Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Request>,
}

impl HubHandle {
    /// Waits for room in the hub's queue (backpressure on busy senders). Returns false when
    /// the hub has stopped and the request was dropped.
    pub async fn send(&self, request: Request) -> bool {
        self.tx.send(request).await.is_ok()
    }
}

/// Requests the hub takes per wake-up; messages among them share one transaction.
const MAX_BATCH: usize = 256;

/// Starts the hub. `shutdown` silences presence while everyone leaves; `stop` makes it
/// finish the requests already queued and end, even if a stuck session still holds a handle.
pub fn spawn(
    store: Store,
    config: &Config,
    shutdown: CancellationToken,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> (
    HubHandle,
    tokio::task::JoinHandle<()>,
    watch::Receiver<Presence>,
) {
    let (tx, rx) = mpsc::channel(4096);
    let (presence, presence_rx) = watch::channel(Presence::default());
    let hub = Hub {
        store,
        replay_per_room: config.replay_per_room,
        kept_limits: KeptLimits {
            per_recipient: config.kept_dms_per_recipient,
            from_one_sender: config.kept_dms_from_one_sender,
        },
        rooms_created_per_account: config.rooms_created_per_account,
        rooms_joined_per_account: config.rooms_joined_per_account,
        max_per_account: config.max_per_account,
        to_self: tx.downgrade(),
        shutdown,
        stop,
        tracker,
        rx,
        sessions: HashMap::new(),
        accounts: HashMap::new(),
        rooms: HashMap::new(),
        pending: Vec::new(),
        last_stored_id: 0,
        ended: HashMap::new(),
        roles: HashMap::new(),
        presence,
        presence_changed: true,
    };
    (HubHandle { tx }, tokio::spawn(hub.run()), presence_rx)
}

struct SessionState {
    account: AccountId,
    /// Account events up to this id were in force when the session logged in.
    events_seen: i64,
    /// Events this session caused (its password changes), which end only the others.
    own_events: Vec<i64>,
    outbox: Arc<Outbox>,
    /// Where plain text goes; per connection, so two devices can look at different rooms.
    current: Option<RoomName>,
}

struct OnlineAccount {
    nick: String,
    role: Role,
    /// When its first current connection logged in.
    since: i64,
    sessions: Vec<SessionId>,
    /// The account's stored memberships, `#general` first, then in the order joined.
    rooms: Vec<(RoomId, RoomName)>,
}

impl OnlineAccount {
    fn room_id(&self, room: &RoomName) -> Option<RoomId> {
        self.rooms
            .iter()
            .find(|(_, name)| name == room)
            .map(|(id, _)| *id)
    }

    /// The room a connection lands in: `#general` if a member, else the first room.
    fn default_room(&self) -> Option<RoomName> {
        self.rooms.first().map(|(_, name)| name.clone())
    }
}

/// A room with at least one member online.
struct LiveRoom {
    /// Accounts that are members and online; all of their connections receive the room.
    online: Vec<AccountId>,
}

/// How an account event that ends sessions looks to the rooms and to the sessions.
fn ending(kind: EventKind) -> (LeaveReason, ByeReason) {
    match kind {
        EventKind::Locked => (LeaveReason::Kicked, ByeReason::AccountLocked),
        EventKind::Deleted => (LeaveReason::Kicked, ByeReason::AccountDeleted),
        EventKind::Password | EventKind::Role(_) => {
            (LeaveReason::Disconnect, ByeReason::PasswordChanged)
        }
    }
}

/// One part of a login's or a `/join`'s replay.
enum ReplayStep {
    Line(Bytes),
    /// The room's recent messages, as `HIST` lines.
    RoomHistory {
        id: RoomId,
        name: RoomName,
    },
    /// Private messages kept for the account while it had no connection.
    KeptMessages(AccountId),
}

/// Output waiting for the batch's commit. Replies wait in the same queue as messages, so a
/// session's answers arrive in the order of its requests: an error never overtakes the echo
/// of a message sent before it.
enum Pending {
    Message {
        session: SessionId,
        message: NewMessage,
    },
    Reply {
        session: SessionId,
        line: Bytes,
    },
}

struct Hub {
    store: Store,
    replay_per_room: u32,
    kept_limits: KeptLimits,
    rooms_created_per_account: u32,
    rooms_joined_per_account: u32,
    /// For reads done off the hub (a `/rooms` page) to hand back their result; weak, so
    /// the hub still ends when every session's handle is gone.
    to_self: mpsc::WeakSender<Request>,
    /// Logged-in connections one account may have. Checked here, where logins are taken
    /// one at a time, so a burst of parallel logins cannot slip past it.
    max_per_account: usize,
    shutdown: CancellationToken,
    stop: CancellationToken,
    tracker: TaskTracker,
    rx: mpsc::Receiver<Request>,
    sessions: HashMap<SessionId, SessionState>,
    accounts: HashMap<AccountId, OnlineAccount>,
    rooms: HashMap<RoomName, LiveRoom>,
    pending: Vec<Pending>,
    /// The highest message id stored: replays read history up to it, and everything after
    /// it reaches the connection live.
    last_stored_id: i64,
    /// The newest event that ended an account's sessions, and the newest role change, for a
    /// login that checked its password before the event and reaches the hub after it.
    ended: HashMap<AccountId, (AccountEvent, std::time::Instant)>,
    roles: HashMap<AccountId, (i64, Role, std::time::Instant)>,
    presence: watch::Sender<Presence>,
    presence_changed: bool,
}

impl Hub {
    async fn run(mut self) {
        match self.store.last_message_id().await {
            Ok(id) => self.last_stored_id = id,
            Err(error) => tracing::error!(%error, "could not read the last message id"),
        }
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut presence_tick = tokio::time::interval(PRESENCE_EVERY);
        presence_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                // First, or a hub that always has requests would never get to it.
                _ = presence_tick.tick() => {
                    self.publish_presence();
                    self.forget_old_events();
                }
                received = self.rx.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        break;
                    }
                    for request in batch.drain(..) {
                        self.handle(request).await;
                    }
                    self.store_and_deliver().await;
                }
                // Closing lets `recv_many` hand out what is queued, then report the end.
                () = self.stop.cancelled(), if !self.rx.is_closed() => self.rx.close(),
            }
        }
    }

    async fn handle(&mut self, request: Request) {
        #[cfg(feature = "fault-injection")]
        if matches!(&request, Request::Say { text, .. } if text == super::fault::HUB_PANIC)
            && super::fault::armed()
        {
            panic!("injected fault: a test told the hub to panic");
        }
        match request {
            Request::Say {
                session,
                room,
                text,
            } => self.accept_room_message(session, room, text).await,
            Request::Direct {
                session,
                to,
                to_nick,
                text,
            } => self.accept_direct_message(session, to, to_nick, text),
            Request::Reply { session, line } => self.pending.push(Pending::Reply { session, line }),
            control => {
                // Everything accepted before a control request is stored and delivered first,
                // so joins, parts and logins see exactly the messages sent before them.
                self.store_and_deliver().await;
                self.handle_control(control).await;
            }
        }
    }

    async fn handle_control(&mut self, request: Request) {
        match request {
            Request::Login(login) => self.login(login).await,
            Request::Kick {
                session,
                nick,
                reason,
            } => self.kick(session, &nick, &reason),
            Request::SetPassword {
                session,
                old_hash,
                new_hash,
            } => self.set_password(session, &old_hash, &new_hash).await,
            Request::Account(event) => self.apply_account_event(event),
            Request::Logout {
                session,
                reason,
                bye,
            } => self.logout(session, reason, bye),
            Request::Join { session, room } => self.join(session, room).await,
            Request::Part { session, room } => self.part(session, room).await,
            Request::Rooms {
                session,
                after,
                slot,
            } => self.list_rooms(session, after, slot),
            Request::RoomsPage {
                session,
                rooms,
                slot,
            } => self.answer_rooms(session, rooms, slot),
            Request::Who { session, room } => self.who(session, room).await,
            Request::History {
                session,
                room,
                query,
                slot,
            } => self.history(session, room, query, slot).await,
            Request::Say { .. } | Request::Direct { .. } | Request::Reply { .. } => {
                unreachable!("queued behind the messages, not a control request")
            }
        }
    }

    // ---- messages -------------------------------------------------------------------------

    async fn accept_room_message(
        &mut self,
        session: SessionId,
        room: Option<RoomName>,
        text: String,
    ) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let account = &self.accounts[&state.account];
        let Some(room) = room.or_else(|| state.current.clone()) else {
            return self.reply_err(
                session,
                ErrorCode::NotInRoom,
                "You are in no room; /join #room first",
            );
        };
        let Some(room_id) = account.room_id(&room) else {
            return self.not_a_member(session, &room).await;
        };
        let message = NewMessage {
            time: now_millis(),
            sender_id: state.account,
            sender_nick: account.nick.clone(),
            recipient: Recipient::Room {
                id: room_id,
                name: room.to_string(),
            },
            text,
        };
        self.pending.push(Pending::Message { session, message });
    }

    fn accept_direct_message(
        &mut self,
        session: SessionId,
        to: AccountId,
        to_nick: String,
        text: String,
    ) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let message = NewMessage {
            time: now_millis(),
            sender_id: state.account,
            sender_nick: self.accounts[&state.account].nick.clone(),
            recipient: Recipient::Account {
                id: to,
                nick: to_nick,
                online: self.accounts.contains_key(&to),
            },
            text,
        };
        self.pending.push(Pending::Message { session, message });
    }

    /// Commits the accepted messages in one transaction, then delivers messages (in id order)
    /// and replies, in the order they were accepted.
    async fn store_and_deliver(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let messages: Vec<NewMessage> = batch
            .iter()
            .filter_map(|p| match p {
                Pending::Message { message, .. } => Some(message.clone()),
                Pending::Reply { .. } => None,
            })
            .collect();
        let mut outcomes = self.store_messages(&messages).await.into_iter();
        let not_stored = ServerLine::err(
            ErrorCode::ServerBusy,
            "Message not stored; please send it again",
        )
        .to_bytes();
        let mut undelivered_dms = Vec::new();
        for pending in batch {
            match pending {
                Pending::Message { session, message } => match outcomes.next() {
                    Some(Outcome::Stored(id)) => {
                        self.last_stored_id = self.last_stored_id.max(id);
                        if !self.deliver(message, id) {
                            undelivered_dms.push(id);
                        }
                    }
                    Some(Outcome::Refused(full)) => {
                        let refused = self.kept_full_error(&message, full).to_bytes();
                        self.push_all(vec![session], &refused);
                    }
                    Some(Outcome::Failed) | None => self.push_all(vec![session], &not_stored),
                },
                Pending::Reply { session, line } => self.push_all(vec![session], &line),
            }
        }
        if !undelivered_dms.is_empty() {
            if let Err(error) = self.store.keep_for_recipient(&undelivered_dms).await {
                tracing::error!(%error, "could not keep undelivered private messages");
            }
        }
    }

    /// Stores a batch in one transaction. If that fails, stores the messages one by one, so
    /// one bad message (its sender's account was just deleted, say) costs only itself.
    /// Returns what became of each message, in order.
    async fn store_messages(&self, messages: &[NewMessage]) -> Vec<Outcome> {
        if messages.is_empty() {
            return Vec::new();
        }
        let limits = self.kept_limits;
        match self.store.insert_messages_within(messages, limits).await {
            Ok(stored) => return stored.into_iter().map(Outcome::from).collect(),
            Err(error) if messages.len() == 1 => {
                tracing::error!(%error, "could not store a message");
                return vec![Outcome::Failed];
            }
            Err(error) => tracing::warn!(%error, "could not store a batch; storing one by one"),
        }
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            let one = std::slice::from_ref(message);
            match self.store.insert_messages_within(one, limits).await {
                Ok(stored) => outcomes.extend(stored.into_iter().map(Outcome::from)),
                Err(error) => {
                    tracing::error!(%error, "could not store a message");
                    outcomes.push(Outcome::Failed);
                }
            }
        }
        outcomes
    }

    /// The answer to a private message refused because too many wait for its recipient,
    /// quoting the start of its text so the sender knows which one it was.
    fn kept_full_error(&self, message: &NewMessage, full: KeptFull) -> ServerLine {
        let to = match &message.recipient {
            Recipient::Account { nick, .. } => nick.as_str(),
            Recipient::Room { name, .. } => name.as_str(),
        };
        let why = match full {
            KeptFull::Recipient => format!(
                "{to} is offline and has {} messages waiting",
                self.kept_limits.per_recipient
            ),
            KeptFull::Sender => format!(
                "{to} is offline and has {} of your messages waiting",
                self.kept_limits.from_one_sender
            ),
        };
        let mut quoted: String = message.text.chars().take(QUOTED_CHARS).collect();
        if quoted.len() < message.text.len() {
            quoted.push('…');
        }
        ServerLine::err(
            ErrorCode::LimitReached,
            format!("{why}; not sent: \"{quoted}\""),
        )
    }

    /// Queues a stored message for its recipients. Returns false for a private message that
    /// reached none of its recipient's connections although it was stored as delivered
    /// (they were dropped earlier in the same batch), so it is kept for the next login.
    fn deliver(&mut self, message: NewMessage, id: i64) -> bool {
        match message.recipient {
            Recipient::Room { name, .. } => {
                if let Ok(room) = RoomName::parse(&name) {
                    let line = ServerLine::Msg(StoredMessage {
                        id,
                        time: message.time,
                        room: name,
                        nick: message.sender_nick,
                        text: message.text,
                    })
                    .to_bytes();
                    self.broadcast_room(&room, &line, None);
                }
                true
            }
            Recipient::Account {
                id: to,
                nick: to_nick,
                online: stored_as_delivered,
            } => {
                let line = ServerLine::Dm {
                    id,
                    time: message.time,
                    from: message.sender_nick,
                    to: to_nick,
                    text: message.text,
                }
                .to_bytes();
                let mut reached_recipient = false;
                let mut dropped = Vec::new();
                for session in self.account_sessions(to) {
                    let Some(state) = self.sessions.get(&session) else {
                        continue;
                    };
                    match state.outbox.push(line.clone()) {
                        Ok(()) => reached_recipient = true,
                        Err(Stopped) => dropped.push(session),
                    }
                }
                if to != message.sender_id {
                    for session in self.account_sessions(message.sender_id) {
                        let Some(state) = self.sessions.get(&session) else {
                            continue;
                        };
                        if state.outbox.push(line.clone()).is_err() {
                            dropped.push(session);
                        }
                    }
                }
                self.drop_overflowed(dropped);
                reached_recipient || !stored_as_delivered
            }
        }
    }

    // ---- presence -------------------------------------------------------------------------

    async fn login(&mut self, login: Login) {
        let Login {
            session,
            account: account_id,
            nick,
            mut role,
            events_seen,
            own_event,
            outbox,
        } = login;
        if let Some((event, _)) = self.ended.get(&account_id) {
            if event.id > events_seen && Some(event.id) != own_event {
                let (_, bye) = ending(event.kind);
                outbox.close(Some(&ServerLine::Bye(bye)));
                return;
            }
        }
        let connections = self
            .accounts
            .get(&account_id)
            .map_or(0, |a| a.sessions.len());
        if connections >= self.max_per_account {
            tracing::info!(%nick, session, connections, "login refused: the account has too many connections");
            outbox.close(Some(&ServerLine::Bye(ByeReason::TooManySessions)));
            return;
        }
        if let Some((id, newer, _)) = self.roles.get(&account_id) {
            if *id > events_seen {
                role = *newer;
            }
        }
        self.presence_changed = true;
        let first_connection = !self.accounts.contains_key(&account_id);
        if first_connection {
            let rooms = match self.store.account_rooms(account_id).await {
                Ok(rooms) => rooms,
                Err(error) => {
                    tracing::error!(%error, "could not load memberships");
                    let error =
                        ServerLine::err(ErrorCode::ServerBusy, "Cannot load your rooms; try again");
                    outbox.push_reply(error.to_bytes());
                    outbox.close(Some(&ServerLine::Bye(ByeReason::ServerBusy)));
                    return;
                }
            };
            self.accounts.insert(
                account_id,
                OnlineAccount {
                    nick: nick.clone(),
                    role,
                    since: now_millis(),
                    sessions: Vec::new(),
                    rooms,
                },
            );
        }
        let account = self.accounts.get_mut(&account_id).expect("inserted above");
        account.sessions.push(session);
        let rooms = account.rooms.clone();
        let current = account.default_room();
        self.sessions.insert(
            session,
            SessionState {
                account: account_id,
                events_seen,
                own_events: own_event.into_iter().collect(),
                outbox: outbox.clone(),
                current: current.clone(),
            },
        );

        let where_text = match &current {
            Some(room) => format!("You are in {room}."),
            None => "You are in no room; /join #room to start.".to_owned(),
        };
        let mut replay = vec![ReplayStep::Line(
            ServerLine::Welcome {
                nick: nick.clone(),
                text: format!("Logged in. {where_text} Type /help for commands."),
            }
            .to_bytes(),
        )];
        let now = now_millis();
        for (room_id, room) in &rooms {
            let join = ServerLine::Join {
                room: room.to_string(),
                time: now,
                nick: nick.clone(),
            }
            .to_bytes();
            if first_connection {
                self.broadcast_room(room, &join, None);
                let live = self
                    .rooms
                    .entry(room.clone())
                    .or_insert(LiveRoom { online: Vec::new() });
                live.online.push(account_id);
            }
            replay.push(ReplayStep::Line(join));
            replay.push(ReplayStep::RoomHistory {
                id: *room_id,
                name: room.clone(),
            });
        }
        if first_connection {
            replay.push(ReplayStep::KeptMessages(account_id));
        }
        replay.push(ReplayStep::Line(
            ServerLine::info(current_room_text(current.as_ref())).to_bytes(),
        ));
        self.start_replay(&outbox, replay);
    }

    /// Writes `steps` to one connection at its own pace, in a task of its own. Until the
    /// replay ends, the outbox holds every other line for the connection, so the replay
    /// comes first, the live stream follows it without a gap, and the hub never waits.
    /// History is read up to the last id stored so far: anything newer is live.
    fn start_replay(&self, outbox: &Arc<Outbox>, steps: Vec<ReplayStep>) {
        outbox.begin_replay();
        let outbox = outbox.clone();
        let store = self.store.clone();
        let upto = self.last_stored_id;
        let per_room = self.replay_per_room;
        self.tracker.spawn(async move {
            for step in steps {
                let lines = match step {
                    ReplayStep::Line(line) => vec![line],
                    ReplayStep::RoomHistory { id, name } => {
                        match store
                            .recent_messages(id, name.as_str(), per_room, upto)
                            .await
                        {
                            Ok(messages) => messages
                                .into_iter()
                                .map(|m| ServerLine::Hist(m).to_bytes())
                                .collect(),
                            Err(error) => {
                                tracing::error!(%error, room = %name, "could not load history");
                                let text = format!("Could not load the history of {name}");
                                vec![ServerLine::err(ErrorCode::ServerBusy, text).to_bytes()]
                            }
                        }
                    }
                    ReplayStep::KeptMessages(account) => {
                        if replay_kept(&store, &outbox, account, upto).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                for line in lines {
                    if outbox.push_replay(line).await.is_err() {
                        return;
                    }
                }
            }
            outbox.end_replay();
        });
    }

    /// Removes a session; when it was its account's last, the account leaves every room.
    /// Sessions dropped on the way (their queues overflowed) are removed the same way.
    fn logout(&mut self, session: SessionId, reason: LeaveReason, bye: Option<ByeReason>) {
        let mut pending = vec![(session, reason, bye)];
        while let Some((session, reason, bye)) = pending.pop() {
            let Some(state) = self.sessions.remove(&session) else {
                continue;
            };
            self.presence_changed = true;
            state.outbox.close(bye.map(ServerLine::Bye).as_ref());
            let Some(account) = self.accounts.get_mut(&state.account) else {
                continue;
            };
            account.sessions.retain(|s| *s != session);
            if !account.sessions.is_empty() {
                continue;
            }
            let account = self.accounts.remove(&state.account).expect("present above");
            let now = now_millis();
            for (_, room) in &account.rooms {
                let Some(live) = self.rooms.get_mut(room) else {
                    continue;
                };
                live.online.retain(|a| *a != state.account);
                if live.online.is_empty() {
                    self.rooms.remove(room);
                    continue;
                }
                if self.shutdown.is_cancelled() {
                    continue;
                }
                let line = ServerLine::Leave {
                    room: room.to_string(),
                    time: now,
                    nick: account.nick.clone(),
                    reason,
                }
                .to_bytes();
                let dropped = self.broadcast_room_collect(room, &line, None);
                pending.extend(
                    dropped
                        .into_iter()
                        .map(|s| (s, LeaveReason::Disconnect, None)),
                );
            }
        }
    }

    // ---- moderation ------------------------------------------------------------------------

    fn kick(&mut self, session: SessionId, nick: &Nick, reason: &str) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let kicker = &self.accounts[&state.account];
        if kicker.role != Role::Admin {
            return self.reply_err(session, ErrorCode::Forbidden, "Only admins may /kick");
        }
        let kicker_nick = kicker.nick.clone();
        let target = self
            .accounts
            .iter()
            .find(|(_, account)| account.nick.eq_ignore_ascii_case(nick.as_str()))
            .map(|(id, account)| (*id, account.nick.clone()));
        let Some((target, target_nick)) = target else {
            return self.reply_err(
                session,
                ErrorCode::NoSuchUser,
                format!("{nick} is not online"),
            );
        };
        if target == state.account {
            return self.reply_err(session, ErrorCode::BadArgs, "You cannot kick yourself");
        }
        let text = if reason.is_empty() {
            format!("by {kicker_nick}")
        } else {
            format!("by {kicker_nick}: {reason}")
        };
        tracing::info!(by = %kicker_nick, nick = %target_nick, reason, "kicked");
        for target_session in self.account_sessions(target) {
            let bye = ByeReason::Kicked(text.clone());
            self.logout(target_session, LeaveReason::Kicked, Some(bye));
        }
        self.reply(session, ServerLine::info(format!("Kicked {target_nick}.")));
    }

    async fn set_password(&mut self, session: SessionId, old_hash: &str, new_hash: &str) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let account = state.account;
        let nick = self.accounts[&account].nick.clone();
        let event = match self
            .store
            .replace_password(account, old_hash, new_hash)
            .await
        {
            Ok(Some(event)) => event,
            Ok(None) => {
                let text = "Your password was changed elsewhere or your account locked; \
                            nothing was changed";
                return self.reply_err(session, ErrorCode::AuthFailed, text);
            }
            Err(error) => return self.storage_error(session, error),
        };
        tracing::info!(%nick, "password changed");
        if let Some(state) = self.sessions.get_mut(&session) {
            state.own_events.push(event);
        }
        // The event reaches the hub again through the store and then spares this session;
        // the others end here at once. Events written before it still apply to this session
        // too, so a lock that is not yet read is not escaped by changing the password.
        self.end_sessions_before(AccountEvent {
            id: event,
            account,
            kind: EventKind::Password,
        });
        self.reply(session, ServerLine::info("Password changed."));
    }

    fn apply_account_event(&mut self, event: AccountEvent) {
        match event.kind {
            EventKind::Role(role) => {
                let now = std::time::Instant::now();
                self.roles.insert(event.account, (event.id, role, now));
                if let Some(account) = self.accounts.get_mut(&event.account) {
                    account.role = role;
                }
            }
            EventKind::Locked | EventKind::Deleted | EventKind::Password => {
                let now = std::time::Instant::now();
                self.ended.insert(event.account, (event, now));
                self.end_sessions_before(event);
            }
        }
        // Events arrive in order: the sessions' own events up to this one are behind them.
        for session in self.account_sessions(event.account) {
            if let Some(state) = self.sessions.get_mut(&session) {
                state.own_events.retain(|own| *own > event.id);
            }
        }
    }

    /// Forgets events no login still in progress can predate: a login checks its password at
    /// most a login timeout or two before it reaches the hub.
    fn forget_old_events(&mut self) {
        let now = std::time::Instant::now();
        let fresh = |at: &std::time::Instant| now.duration_since(*at) < REMEMBER_EVENTS;
        self.ended.retain(|_, (_, at)| fresh(at));
        self.roles.retain(|_, (_, _, at)| fresh(at));
    }

    /// Ends the account's sessions that logged in before `event`.
    fn end_sessions_before(&mut self, event: AccountEvent) {
        let (leave, bye) = ending(event.kind);
        let older: Vec<SessionId> = self
            .account_sessions(event.account)
            .into_iter()
            .filter(|s| {
                self.sessions.get(s).is_some_and(|state| {
                    state.events_seen < event.id && !state.own_events.contains(&event.id)
                })
            })
            .collect();
        if !older.is_empty() {
            tracing::info!(account = event.account, kind = ?event.kind, sessions = older.len(), "ending sessions");
        }
        for session in older {
            self.logout(session, leave, Some(bye.clone()));
        }
    }

    /// Publishes who is online, if that changed since the last time.
    fn publish_presence(&mut self) {
        if !std::mem::take(&mut self.presence_changed) {
            return;
        }
        let online = self
            .accounts
            .iter()
            .map(|(id, account)| crate::store::OnlineAccount {
                account_id: *id,
                nick: account.nick.clone(),
                connections: account.sessions.len() as i64,
                since: account.since,
            })
            .collect();
        self.presence.send_replace(Arc::new(online));
    }

    async fn join(&mut self, session: SessionId, room: RoomName) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let account_id = state.account;
        let joined = self.accounts[&account_id].rooms.len();
        if self.accounts[&account_id].room_id(&room).is_some() {
            state.current = Some(room.clone());
            return self.reply(session, ServerLine::info(current_room_text(Some(&room))));
        }
        if joined >= self.rooms_joined_per_account as usize {
            let text = format!(
                "You are in {joined} rooms, the most allowed; /part one before joining {room}"
            );
            return self.reply_err(session, ErrorCode::LimitReached, text);
        }
        let quota = self.rooms_created_per_account;
        let room_id = match self.store.join_room(account_id, &room, quota).await {
            Ok(Ok(id)) => id,
            Ok(Err(refused)) => {
                let text = format!(
                    "You have created {} rooms that still exist, the most allowed; \
                     {room} was not created",
                    refused.quota
                );
                return self.reply_err(session, ErrorCode::LimitReached, text);
            }
            Err(error) => {
                tracing::error!(%error, %room, "could not store a join");
                return self.reply_err(session, ErrorCode::ServerBusy, "Could not join; try again");
            }
        };
        let account = self
            .accounts
            .get_mut(&account_id)
            .expect("session's account is online");
        account.rooms.push((room_id, room.clone()));
        let nick = account.nick.clone();
        self.rooms
            .entry(room.clone())
            .or_insert(LiveRoom { online: Vec::new() })
            .online
            .push(account_id);
        let join = ServerLine::Join {
            room: room.to_string(),
            time: now_millis(),
            nick,
        }
        .to_bytes();
        self.broadcast_room(&room, &join, Some(session));
        if let Some(state) = self.sessions.get_mut(&session) {
            state.current = Some(room.clone());
            let outbox = state.outbox.clone();
            let replay = vec![
                ReplayStep::Line(join),
                ReplayStep::RoomHistory {
                    id: room_id,
                    name: room.clone(),
                },
            ];
            self.start_replay(&outbox, replay);
        }
    }

    async fn part(&mut self, session: SessionId, room: Option<RoomName>) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let account_id = state.account;
        let Some(room) = room.or_else(|| state.current.clone()) else {
            return self.reply_err(session, ErrorCode::NotInRoom, "You are in no room");
        };
        let Some(room_id) = self.accounts[&account_id].room_id(&room) else {
            return self.not_a_member(session, &room).await;
        };
        if let Err(error) = self.store.part_room(account_id, room_id).await {
            tracing::error!(%error, %room, "could not store a part");
            return self.reply_err(session, ErrorCode::ServerBusy, "Could not leave; try again");
        }
        let account = self
            .accounts
            .get_mut(&account_id)
            .expect("session's account is online");
        let leave = ServerLine::Leave {
            room: room.to_string(),
            time: now_millis(),
            nick: account.nick.clone(),
            reason: LeaveReason::Part,
        }
        .to_bytes();
        account.rooms.retain(|(id, _)| *id != room_id);
        let fallback = account.default_room();
        let account_sessions = account.sessions.clone();
        self.broadcast_room(&room, &leave, None);
        if let Some(live) = self.rooms.get_mut(&room) {
            live.online.retain(|a| *a != account_id);
            if live.online.is_empty() {
                self.rooms.remove(&room);
            }
        }
        for sid in account_sessions {
            let Some(state) = self.sessions.get_mut(&sid) else {
                continue;
            };
            if state.current.as_ref() == Some(&room) {
                state.current = fallback.clone();
                let info = ServerLine::info(current_room_text(fallback.as_ref()));
                self.reply(sid, info);
            }
        }
    }

    // ---- queries --------------------------------------------------------------------------

    /// Reads a page of the room list in a task of its own, so a `/rooms` never holds up
    /// the hub; the hub then adds who is online ([`Hub::answer_rooms`]).
    fn list_rooms(
        &mut self,
        session: SessionId,
        after: Option<RoomName>,
        slot: OwnedSemaphorePermit,
    ) {
        if !self.sessions.contains_key(&session) {
            return;
        }
        let store = self.store.clone();
        let hub = self.to_self.clone();
        self.tracker.spawn(async move {
            let rooms = match store.rooms_page(after.as_ref(), ROOMS_PAGE).await {
                Ok(rooms) => rooms,
                Err(error) => {
                    tracing::error!(%error, "could not list rooms");
                    Vec::new()
                }
            };
            if let Some(hub) = hub.upgrade() {
                let page = Request::RoomsPage {
                    session,
                    rooms,
                    slot,
                };
                let _ = hub.send(page).await;
            }
        });
    }

    fn answer_rooms(
        &mut self,
        session: SessionId,
        rooms: Vec<(String, i64)>,
        _slot: OwnedSemaphorePermit,
    ) {
        let more = rooms.len() >= ROOMS_PAGE as usize;
        let last = rooms.last().map(|(name, _)| name.clone());
        let mut lines: Vec<Bytes> = rooms
            .into_iter()
            .map(|(name, members)| {
                let online = RoomName::parse(&name)
                    .ok()
                    .and_then(|room| self.rooms.get(&room))
                    .map_or(0, |live| live.online.len());
                ServerLine::Room {
                    room: name,
                    members: members.max(0) as u64,
                    online: online as u64,
                }
                .to_bytes()
            })
            .collect();
        lines.push(ServerLine::end("rooms").to_bytes());
        if let (true, Some(last)) = (more, last) {
            let hint = format!("More rooms: /rooms after {last}");
            lines.push(ServerLine::info(hint).to_bytes());
        }
        self.reply_lines(session, lines);
    }

    async fn who(&mut self, session: SessionId, room: Option<RoomName>) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let Some(room) = room.or_else(|| state.current.clone()) else {
            return self.reply_err(
                session,
                ErrorCode::NotInRoom,
                "You are in no room; use /who #room",
            );
        };
        let room_id = match self.store.find_room(&room).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return self.reply_err(
                    session,
                    ErrorCode::NoSuchRoom,
                    format!("There is no room {room}"),
                )
            }
            Err(error) => return self.storage_error(session, error),
        };
        let members = match self.store.room_members(room_id).await {
            Ok(members) => members,
            Err(error) => return self.storage_error(session, error),
        };
        let mut lines: Vec<Bytes> = members
            .into_iter()
            .map(|(account, nick)| {
                ServerLine::Member {
                    room: room.to_string(),
                    nick,
                    online: self.accounts.contains_key(&account),
                }
                .to_bytes()
            })
            .collect();
        lines.push(ServerLine::end("who").to_bytes());
        self.reply_lines(session, lines);
    }

    /// Checks the request here, where memberships live, then reads and sends in a task of its
    /// own at the reader's pace, so a long reply never holds up the hub.
    async fn history(
        &mut self,
        session: SessionId,
        room: Option<RoomName>,
        query: HistoryQuery,
        slot: OwnedSemaphorePermit,
    ) {
        let Some(state) = self.sessions.get(&session) else {
            return;
        };
        let Some(room) = room.or_else(|| state.current.clone()) else {
            return self.reply_err(
                session,
                ErrorCode::NotInRoom,
                "You are in no room; use /history #room",
            );
        };
        let Some(room_id) = self.accounts[&state.account].room_id(&room) else {
            return self.not_a_member(session, &room).await;
        };
        let outbox = state.outbox.clone();
        let store = self.store.clone();
        self.tracker.spawn(async move {
            let _slot = slot;
            let messages = match query {
                HistoryQuery::Last(n) => {
                    store
                        .recent_messages(room_id, room.as_str(), n, i64::MAX)
                        .await
                }
                HistoryQuery::After { id, limit } => {
                    store
                        .messages_after(room_id, room.as_str(), id, limit)
                        .await
                }
            };
            let lines = match messages {
                Ok(messages) => messages.into_iter().map(ServerLine::Hist).collect(),
                Err(error) => {
                    tracing::error!(%error, "could not read history");
                    vec![ServerLine::err(
                        ErrorCode::ServerBusy,
                        "Could not read the history; try again",
                    )]
                }
            };
            for line in lines.iter().chain([&ServerLine::end("history")]) {
                if outbox.push_paced(line.to_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }

    // ---- delivery helpers -----------------------------------------------------------------

    fn account_sessions(&self, account: AccountId) -> Vec<SessionId> {
        self.accounts
            .get(&account)
            .map(|a| a.sessions.clone())
            .unwrap_or_default()
    }

    /// Pushes to every online session in the room, then drops those whose queue overflowed.
    fn broadcast_room(&mut self, room: &RoomName, line: &Bytes, except: Option<SessionId>) {
        let dropped = self.broadcast_room_collect(room, line, except);
        self.drop_overflowed(dropped);
    }

    fn broadcast_room_collect(
        &self,
        room: &RoomName,
        line: &Bytes,
        except: Option<SessionId>,
    ) -> Vec<SessionId> {
        let mut dropped = Vec::new();
        let Some(live) = self.rooms.get(room) else {
            return dropped;
        };
        let sessions = live
            .online
            .iter()
            .filter_map(|account| self.accounts.get(account))
            .flat_map(|account| &account.sessions)
            .filter(|session| Some(**session) != except);
        for session in sessions {
            let Some(state) = self.sessions.get(session) else {
                continue;
            };
            if state.outbox.push(line.clone()).is_err() {
                dropped.push(*session);
            }
        }
        dropped
    }

    fn push_all(&mut self, sessions: Vec<SessionId>, line: &Bytes) {
        let dropped: Vec<SessionId> = sessions
            .into_iter()
            .filter(|s| {
                self.sessions
                    .get(s)
                    .is_some_and(|state| state.outbox.push(line.clone()).is_err())
            })
            .collect();
        self.drop_overflowed(dropped);
    }

    /// Logs out sessions whose outbox stopped taking lines: too slow, or the peer is gone.
    fn drop_overflowed(&mut self, dropped: Vec<SessionId>) {
        for session in dropped {
            let failure = self.sessions.get(&session).and_then(|s| s.outbox.failure());
            tracing::info!(
                session,
                ?failure,
                "dropping a session that no longer takes lines"
            );
            let reason = failure.map_or(LeaveReason::Disconnect, |f| f.leave_reason());
            self.logout(session, reason, None);
        }
    }

    /// Queues a line for one session behind everything accepted before it.
    fn reply(&mut self, session: SessionId, line: ServerLine) {
        self.pending.push(Pending::Reply {
            session,
            line: line.to_bytes(),
        });
    }

    fn reply_lines(&mut self, session: SessionId, lines: Vec<Bytes>) {
        if let Some(state) = self.sessions.get(&session) {
            for line in lines {
                state.outbox.push_reply(line);
            }
        }
    }

    fn reply_err(&mut self, session: SessionId, code: ErrorCode, text: impl Into<String>) {
        self.reply(session, ServerLine::err(code, text));
    }

    fn storage_error(&mut self, session: SessionId, error: crate::store::StoreError) {
        tracing::error!(%error, "storage error");
        self.reply_err(
            session,
            ErrorCode::ServerBusy,
            "Storage is unavailable; try again",
        );
    }

    /// Tells a session it is not in `room`, or that no such room exists.
    async fn not_a_member(&mut self, session: SessionId, room: &RoomName) {
        match self.store.find_room(room).await {
            Ok(Some(_)) => self.reply_err(
                session,
                ErrorCode::NotInRoom,
                format!("You are not in {room}; /join {room} first"),
            ),
            Ok(None) => self.reply_err(
                session,
                ErrorCode::NoSuchRoom,
                format!("There is no room {room}"),
            ),
            Err(error) => self.storage_error(session, error),
        }
    }
}

/// What became of one accepted message.
enum Outcome {
    Stored(i64),
    /// A private message for an account with no connection, past a bound: not stored.
    Refused(KeptFull),
    /// The store failed: not stored.
    Failed,
}

impl From<Result<i64, KeptFull>> for Outcome {
    fn from(stored: Result<i64, KeptFull>) -> Self {
        match stored {
            Ok(id) => Self::Stored(id),
            Err(full) => Self::Refused(full),
        }
    }
}

/// Writes the private messages kept for `account` (up to id `upto`) in pages, at the
/// reader's pace. A page is marked delivered once the writer has written it to the socket
/// and flushed it; if the connection fails first, what was not written stays kept for the
/// next login. Fails when the connection stopped taking lines.
async fn replay_kept(
    store: &Store,
    outbox: &Outbox,
    account: AccountId,
    upto: i64,
) -> Result<(), Stopped> {
    let mut after = 0;
    loop {
        let page = match store.kept_dms(account, after, upto, KEPT_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, "could not load kept private messages");
                return Ok(());
            }
        };
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id;
        let full_page = page.len() >= KEPT_PAGE as usize;
        let mut pushed = Vec::with_capacity(page.len());
        let mut outcome = Ok(());
        for dm in page {
            let line = ServerLine::Dm {
                id: dm.id,
                time: dm.time,
                from: dm.from,
                to: dm.to,
                text: dm.text,
            }
            .to_bytes();
            match outbox.push_replay(line).await {
                Ok(number) => pushed.push((dm.id, number)),
                Err(stopped) => {
                    outcome = Err(stopped);
                    break;
                }
            }
        }
        if let (Ok(()), Some((_, number))) = (&outcome, pushed.last()) {
            outcome = outbox.written(*number).await;
        }
        let written = outbox.lines_written();
        let delivered: Vec<i64> = pushed
            .iter()
            .filter(|(_, number)| *number <= written)
            .map(|(id, _)| *id)
            .collect();
        if let Err(error) = store.mark_delivered(&delivered).await {
            // They stay kept and come again at the next login: twice rather than never.
            tracing::error!(%error, "could not mark kept private messages delivered");
        }
        outcome?;
        if !full_page {
            return Ok(());
        }
    }
}

fn current_room_text(room: Option<&RoomName>) -> String {
    match room {
        Some(room) => format!("Current room: {room}"),
        None => "You are in no room; /join #room to start".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Nick;
    use crate::server::Failure;

    async fn store_with(nicks: &[&str]) -> (tempfile::TempDir, Store, Vec<AccountId>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).await.unwrap();
        let mut ids = Vec::new();
        for nick in nicks {
            let nick = Nick::parse(nick).unwrap();
            ids.push(
                store
                    .create_account(&nick, "not a real hash")
                    .await
                    .unwrap(),
            );
        }
        (dir, store, ids)
    }

    fn login(session: SessionId, account: AccountId, nick: &str, outbox: &Arc<Outbox>) -> Request {
        Request::Login(Login {
            session,
            account,
            nick: nick.into(),
            role: Role::Member,
            events_seen: 0,
            own_event: None,
            outbox: outbox.clone(),
        })
    }

    /// Sends requests back to back: the hub takes them as one batch.
    async fn run_batch(hub: &HubHandle, requests: Vec<Request>) {
        for request in requests {
            assert!(hub.send(request).await);
        }
    }

    #[tokio::test]
    async fn a_dm_after_its_recipient_overflowed_in_the_same_batch_is_kept() {
        let (_dir, store, ids) = store_with(&["alice", "bob"]).await;
        let (alice, bob) = (ids[0], ids[1]);
        let token = CancellationToken::new();
        let (hub, task, _presence) = spawn(
            store.clone(),
            &Config::default(),
            token.clone(),
            token.clone(),
            TaskTracker::new(),
        );
        let alice_out = Arc::new(Outbox::new(100, 1 << 20));
        let bob_out = Arc::new(Outbox::new(3, 1 << 20));
        run_batch(
            &hub,
            vec![
                login(1, alice, "alice", &alice_out),
                login(2, bob, "bob", &bob_out),
            ],
        )
        .await;

        let say = |text: &str| Request::Say {
            session: 1,
            room: None,
            text: text.into(),
        };
        let dm = Request::Direct {
            session: 1,
            to: bob,
            to_nick: "bob".into(),
            text: "psst".into(),
        };
        // bob takes three live lines; the fourth message overflows him, then the DM follows.
        run_batch(&hub, vec![say("1"), say("2"), say("3"), say("4"), dm]).await;
        drop(hub);
        task.await.unwrap();

        assert_eq!(bob_out.failure(), Some(Failure::TooSlow));
        let kept = store.kept_dms(bob, 0, i64::MAX, 10).await.unwrap();
        assert_eq!(kept.len(), 1, "the DM bob never got is kept");
        assert_eq!(kept[0].text, "psst");
    }

    #[tokio::test]
    async fn a_dm_to_a_connected_recipient_is_not_kept() {
        let (_dir, store, ids) = store_with(&["alice", "bob"]).await;
        let token = CancellationToken::new();
        let (hub, task, _presence) = spawn(
            store.clone(),
            &Config::default(),
            token.clone(),
            token.clone(),
            TaskTracker::new(),
        );
        let alice_out = Arc::new(Outbox::new(100, 1 << 20));
        let bob_out = Arc::new(Outbox::new(100, 1 << 20));
        let dm = Request::Direct {
            session: 1,
            to: ids[1],
            to_nick: "bob".into(),
            text: "hi".into(),
        };
        run_batch(
            &hub,
            vec![
                login(1, ids[0], "alice", &alice_out),
                login(2, ids[1], "bob", &bob_out),
                dm,
            ],
        )
        .await;
        drop(hub);
        task.await.unwrap();
        assert_eq!(bob_out.failure(), None);
        assert!(store
            .kept_dms(ids[1], 0, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty());
    }
}
