//! What the running server publishes for `chat-admin status`, and history retention.

use std::time::Duration;

use sqlx::Connection;

use super::{AccountId, Store, StoreError};
use crate::protocol::now_millis;

/// How often a running server refreshes its row, at the least. A row not refreshed for a few
/// times this belongs to a server that is gone (killed, or the machine went down).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// The row the running server keeps fresh.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServerStatus {
    pub pid: i64,
    pub version: String,
    pub listen: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// An account online, as published.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OnlineAccount {
    pub account_id: AccountId,
    pub nick: String,
    pub connections: i64,
    /// When its first current connection logged in (milliseconds).
    pub since: i64,
}

/// One room of `chat-admin status`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomCount {
    pub name: String,
    pub members: i64,
    pub online: i64,
}

impl Store {
    /// Announces a starting server: its row, and an empty list of who is online.
    pub async fn publish_start(
        &self,
        pid: u32,
        version: &str,
        listen: &str,
    ) -> Result<(), StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let now = now_millis();
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query("DELETE FROM online").execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT OR REPLACE INTO server_status
                     (id, pid, version, listen, started_at, heartbeat_at) VALUES (1, ?, ?, ?, ?, ?)",
                )
                .bind(i64::from(pid))
                .bind(version)
                .bind(listen)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            (conn, result)
        })
        .await
    }

    /// Updates the published list of who is online (`changed` accounts written anew,
    /// `gone` ones removed) and refreshes the heartbeat, in one transaction.
    pub async fn publish_online_changes(
        &self,
        changed: &[OnlineAccount],
        gone: &[AccountId],
    ) -> Result<(), StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                for account in gone {
                    sqlx::query("DELETE FROM online WHERE account_id = ?")
                        .bind(account)
                        .execute(&mut *tx)
                        .await?;
                }
                for account in changed {
                    sqlx::query(
                        "INSERT OR REPLACE INTO online (account_id, nick, connections, since)
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(account.account_id)
                    .bind(&account.nick)
                    .bind(account.connections)
                    .bind(account.since)
                    .execute(&mut *tx)
                    .await?;
                }
                beat(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            (conn, result)
        })
        .await
    }

    /// Tells `chat-admin status` the server is still running.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        self.write(|mut conn| async move {
            let result = beat(&mut conn).await;
            (conn, result)
        })
        .await
    }

    /// Removes the server's row and the online list: the server has stopped.
    pub async fn publish_stop(&self) -> Result<(), StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query("DELETE FROM online").execute(&mut *tx).await?;
                sqlx::query("DELETE FROM server_status")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            (conn, result)
        })
        .await
    }

    /// What the running server last published: its row (if any), who is online, and every
    /// room with its member and online counts.
    pub async fn read_status(
        &self,
    ) -> Result<(Option<ServerStatus>, Vec<OnlineAccount>, Vec<RoomCount>), StoreError> {
        let mut conn = self.reader.acquire().await?;
        // One read transaction: the three answers describe one moment.
        let mut tx = conn.begin().await?;
        let server = sqlx::query_as(
            "SELECT pid, version, listen, started_at, heartbeat_at FROM server_status",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let online = sqlx::query_as(
            "SELECT account_id, nick, connections, since FROM online ORDER BY nick COLLATE NOCASE",
        )
        .fetch_all(&mut *tx)
        .await?;
        let rooms = sqlx::query_as(
            "SELECT r.name, COUNT(m.account_id) AS members, COUNT(o.account_id) AS online
             FROM rooms r LEFT JOIN memberships m ON m.room_id = r.id
             LEFT JOIN online o ON o.account_id = m.account_id
             WHERE r.name < '~'
             GROUP BY r.id ORDER BY r.name",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((server, online, rooms))
    }

    /// Deletes up to `limit` delivered messages sent before `before` (milliseconds), oldest
    /// first, and returns how many went. Kept private messages not yet delivered stay.
    /// Small batches keep each transaction short, so chat messages queued behind it on the
    /// writer wait milliseconds, not the length of a whole purge.
    pub async fn delete_messages_before(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        // Ids grow in acceptance order, so everything older than the first message at or
        // after the cutoff is older than the cutoff: found by walking ids from the oldest,
        // which are exactly the rows about to go, with no index on time needed.
        let bound: Option<i64> =
            sqlx::query_scalar("SELECT id FROM messages WHERE sent_at >= ? ORDER BY id LIMIT 1")
                .bind(before)
                .fetch_optional(&self.reader)
                .await?;
        let bound = bound.unwrap_or(i64::MAX);
        self.write(|mut conn| async move {
            let result = sqlx::query(
                "DELETE FROM messages WHERE id IN
                 (SELECT id FROM messages WHERE id < ? AND pending = 0 ORDER BY id LIMIT ?)",
            )
            .bind(bound)
            .bind(limit)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
            .map_err(StoreError::from);
            (conn, result)
        })
        .await
    }
}

async fn beat(conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("UPDATE server_status SET heartbeat_at = ?")
        .bind(now_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
