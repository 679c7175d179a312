use std::collections::HashMap;

use sqlx::{Connection, SqliteConnection};

use super::{AccountId, RoomId, Store, StoreError};
use crate::protocol::StoredMessage;

/// Who a message is for: a room, or one account.
#[derive(Debug, Clone)]
pub enum Recipient {
    Room {
        id: RoomId,
        name: String,
    },
    Account {
        id: AccountId,
        nick: String,
        online: bool,
    },
}

/// A message accepted by the server and not yet stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub time: i64,
    pub sender_id: AccountId,
    pub sender_nick: String,
    pub recipient: Recipient,
    pub text: String,
}

/// How many private messages may wait for an account that has no connection: in all, and
/// from one sender. Checked in the transaction that stores them, so the counts are exact
/// however many connections send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptLimits {
    pub per_recipient: u32,
    pub from_one_sender: u32,
}

impl KeptLimits {
    pub const UNLIMITED: Self = Self {
        per_recipient: u32::MAX,
        from_one_sender: u32::MAX,
    };
}

/// Why a private message for an account with no connection was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFull {
    /// The recipient has `per_recipient` messages waiting.
    Recipient,
    /// The sender has `from_one_sender` messages waiting for this recipient.
    Sender,
}

/// A private message kept for an account that had no connection when it arrived.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingDm {
    pub id: i64,
    pub time: i64,
    pub from: String,
    pub to: String,
    pub text: String,
}

impl Store {
    /// Stores a batch in one transaction (one fsync for the lot) and returns the ids, in order.
    /// Either every message is stored or none is.
    pub async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<i64>, StoreError> {
        let stored = self
            .insert_messages_within(batch, KeptLimits::UNLIMITED)
            .await?;
        Ok(stored.into_iter().filter_map(Result::ok).collect())
    }

    /// Stores a batch in one transaction, except private messages for an account with no
    /// connection past `limits`, which are not stored at all. Returns each message's id, or
    /// which limit refused it, in order. Either every other message is stored or none is.
    pub async fn insert_messages_within(
        &self,
        batch: &[NewMessage],
        limits: KeptLimits,
    ) -> Result<Vec<Result<i64, KeptFull>>, StoreError> {
        self.write(|mut conn| async move {
            let result = insert_batch(&mut conn, batch, limits).await;
            (conn, result)
        })
        .await
    }

    /// The last `limit` messages of a room with an id of at most `upto`, oldest first.
    pub async fn recent_messages(
        &self,
        room: RoomId,
        room_name: &str,
        limit: u32,
        upto: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
            "SELECT id, sent_at, sender_nick, body FROM messages
             WHERE room_id = ? AND id <= ? ORDER BY id DESC LIMIT ?",
        )
        .bind(room)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.reverse();
        Ok(to_messages(rows, room_name))
    }

    /// The highest message id ever handed out (0 before the first message).
    pub async fn last_message_id(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")
                .fetch_optional(&self.reader)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Up to `limit` messages of a room with an id greater than `after`, oldest first.
    pub async fn messages_after(
        &self,
        room: RoomId,
        room_name: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT id, sent_at, sender_nick, body FROM messages
             WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(room)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(to_messages(rows, room_name))
    }

    /// Keeps private messages for their recipients' next login after all.
    pub async fn keep_for_recipient(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.set_pending(ids, true).await
    }

    /// Marks kept private messages delivered: they were written to a connection.
    pub async fn mark_delivered(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.set_pending(ids, false).await
    }

    async fn set_pending(&self, ids: &[i64], pending: bool) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|mut conn| async move {
            let result = update_pending(&mut conn, ids, pending).await;
            (conn, result)
        })
        .await
    }

    /// Up to `limit` private messages kept for an account, with ids above `after` and up to
    /// `upto`, oldest first. They stay kept until [`Store::mark_delivered`].
    pub async fn kept_dms(
        &self,
        account: AccountId,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<PendingDm>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, sent_at AS time, sender_nick AS \"from\", recipient_nick AS \"to\",
                    body AS text
             FROM messages WHERE recipient_id = ? AND pending = 1 AND id > ? AND id <= ?
             ORDER BY id LIMIT ?",
        )
        .bind(account)
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }
}

fn to_messages(rows: Vec<(i64, i64, String, String)>, room_name: &str) -> Vec<StoredMessage> {
    rows.into_iter()
        .map(|(id, time, nick, text)| StoredMessage {
            id,
            time,
            room: room_name.to_owned(),
            nick,
            text,
        })
        .collect()
}

async fn insert_batch(
    conn: &mut SqliteConnection,
    batch: &[NewMessage],
    limits: KeptLimits,
) -> Result<Vec<Result<i64, KeptFull>>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    // Counts read once per recipient and pair, then kept up to date here: the transaction
    // holds the write lock, so nothing else changes them meanwhile.
    let mut kept_for: HashMap<AccountId, u32> = HashMap::new();
    let mut kept_from: HashMap<(AccountId, AccountId), u32> = HashMap::new();
    let mut stored = Vec::with_capacity(batch.len());
    for message in batch {
        let (room_id, recipient_id, recipient_nick, pending) = match &message.recipient {
            Recipient::Room { id, .. } => (Some(*id), None, None, false),
            Recipient::Account { id, nick, online } => {
                (None, Some(*id), Some(nick.as_str()), !online)
            }
        };
        if let (Some(recipient), true) = (recipient_id, pending) {
            let pair = (message.sender_id, recipient);
            let for_recipient = match kept_for.get(&recipient) {
                Some(count) => *count,
                None => count_kept(&mut tx, recipient, None).await?,
            };
            let from_sender = match kept_from.get(&pair) {
                Some(count) => *count,
                None => count_kept(&mut tx, recipient, Some(message.sender_id)).await?,
            };
            kept_for.insert(recipient, for_recipient);
            kept_from.insert(pair, from_sender);
            if for_recipient >= limits.per_recipient {
                stored.push(Err(KeptFull::Recipient));
                continue;
            }
            if from_sender >= limits.from_one_sender {
                stored.push(Err(KeptFull::Sender));
                continue;
            }
            kept_for.insert(recipient, for_recipient + 1);
            kept_from.insert(pair, from_sender + 1);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (sent_at, sender_id, sender_nick, room_id, recipient_id,
                                   recipient_nick, body, pending)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(message.time)
        .bind(message.sender_id)
        .bind(&message.sender_nick)
        .bind(room_id)
        .bind(recipient_id)
        .bind(recipient_nick)
        .bind(&message.text)
        .bind(pending)
        .fetch_one(&mut *tx)
        .await?;
        stored.push(Ok(id));
    }
    tx.commit().await?;
    Ok(stored)
}

/// Private messages kept for `recipient`, from `sender` only if given.
async fn count_kept(
    conn: &mut SqliteConnection,
    recipient: AccountId,
    sender: Option<AccountId>,
) -> Result<u32, StoreError> {
    let count: i64 = match sender {
        None => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages WHERE recipient_id = ? AND pending = 1",
            )
            .bind(recipient)
            .fetch_one(&mut *conn)
            .await?
        }
        Some(sender) => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages
                 WHERE recipient_id = ? AND sender_id = ? AND pending = 1",
            )
            .bind(recipient)
            .bind(sender)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

async fn update_pending(
    conn: &mut SqliteConnection,
    ids: &[i64],
    pending: bool,
) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    for id in ids {
        sqlx::query("UPDATE messages SET pending = ? WHERE id = ? AND recipient_id IS NOT NULL")
            .bind(pending)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
