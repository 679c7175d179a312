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
        self.write(|mut conn| async move {
            let result = insert_batch(&mut conn, batch).await;
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
        self.write(|mut conn| async move {
            let result = mark_pending(&mut conn, ids).await;
            (conn, result)
        })
        .await
    }

    /// Returns the private messages kept for an account, up to id `upto`, and marks them
    /// delivered.
    pub async fn take_pending_dms(
        &self,
        account: AccountId,
        upto: i64,
    ) -> Result<Vec<PendingDm>, StoreError> {
        // Most logins have nothing kept: asking a reader first keeps them out of the
        // writer's queue, where the hub's commits wait.
        let any_kept: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM messages
                            WHERE recipient_id = ? AND pending = 1 AND id <= ?)",
        )
        .bind(account)
        .bind(upto)
        .fetch_one(&self.reader)
        .await?;
        if !any_kept {
            return Ok(Vec::new());
        }
        self.write(|mut conn| async move {
            let result = take_pending(&mut conn, account, upto).await;
            (conn, result)
        })
        .await
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
) -> Result<Vec<i64>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut ids = Vec::with_capacity(batch.len());
    for message in batch {
        let (room_id, recipient_id, recipient_nick, pending) = match &message.recipient {
            Recipient::Room { id, .. } => (Some(*id), None, None, false),
            Recipient::Account { id, nick, online } => {
                (None, Some(*id), Some(nick.as_str()), !online)
            }
        };
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
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

async fn mark_pending(conn: &mut SqliteConnection, ids: &[i64]) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    for id in ids {
        sqlx::query("UPDATE messages SET pending = 1 WHERE id = ? AND recipient_id IS NOT NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn take_pending(
    conn: &mut SqliteConnection,
    account: AccountId,
    upto: i64,
) -> Result<Vec<PendingDm>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let dms = sqlx::query_as(
        "SELECT id, sent_at AS time, sender_nick AS \"from\", recipient_nick AS \"to\", body AS text
         FROM messages WHERE recipient_id = ? AND pending = 1 AND id <= ? ORDER BY id",
    )
    .bind(account)
    .bind(upto)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE messages SET pending = 0 WHERE recipient_id = ? AND pending = 1 AND id <= ?",
    )
    .bind(account)
    .bind(upto)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(dms)
}
