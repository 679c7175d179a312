use sqlx::{Connection, SqliteConnection};

use super::{AccountId, RoomId, Store, StoreError};
use crate::protocol::{now_millis, RoomName};

impl Store {
    /// The rooms an account is a member of, `#general` first, then in the order joined.
    pub async fn account_rooms(
        &self,
        account: AccountId,
    ) -> Result<Vec<(RoomId, RoomName)>, StoreError> {
        let rows: Vec<(RoomId, String)> = sqlx::query_as(
            "SELECT r.id, r.name FROM memberships m JOIN rooms r ON r.id = m.room_id
             WHERE m.account_id = ? ORDER BY r.name <> '#general', m.joined_at, r.name",
        )
        .bind(account)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, name)| RoomName::parse(&name).ok().map(|room| (id, room)))
            .collect())
    }

    /// Makes the account a member, creating the room on first join unless the account has
    /// created `quota` rooms that still exist. Checked in the transaction that creates it,
    /// so the count is exact.
    pub async fn join_room(
        &self,
        account: AccountId,
        room: &RoomName,
        quota: u32,
    ) -> Result<Result<RoomId, RoomRefused>, StoreError> {
        self.write(|mut conn| async move {
            let result = insert_membership(&mut conn, account, room, quota).await;
            (conn, result)
        })
        .await
    }

    pub async fn part_room(&self, account: AccountId, room: RoomId) -> Result<(), StoreError> {
        self.write(|mut conn| async move {
            let result =
                sqlx::query("DELETE FROM memberships WHERE account_id = ? AND room_id = ?")
                    .bind(account)
                    .bind(room)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
                    .map_err(StoreError::from);
            (conn, result)
        })
        .await
    }

    pub async fn find_room(&self, room: &RoomName) -> Result<Option<RoomId>, StoreError> {
        Ok(sqlx::query_scalar("SELECT id FROM rooms WHERE name = ?")
            .bind(room.as_str())
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Up to `limit` rooms named after `after` (all, if `None`), by name, each with its
    /// stored member count. Reads only the page, through the name index.
    pub async fn rooms_page(
        &self,
        after: Option<&RoomName>,
        limit: u32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT r.name, (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.id)
             FROM rooms r WHERE r.name > ? ORDER BY r.name LIMIT ?",
        )
        .bind(after.map_or("", RoomName::as_str))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// The stored members of a room, by nickname.
    pub async fn room_members(&self, room: RoomId) -> Result<Vec<(AccountId, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.nick FROM memberships m JOIN accounts a ON a.id = m.account_id
             WHERE m.room_id = ? ORDER BY a.nick COLLATE NOCASE",
        )
        .bind(room)
        .fetch_all(&self.reader)
        .await?)
    }
}

/// A room the account may not create: it has created `quota` rooms that still exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomRefused {
    pub quota: u32,
}

async fn insert_membership(
    conn: &mut SqliteConnection,
    account: AccountId,
    room: &RoomName,
    quota: u32,
) -> Result<Result<RoomId, RoomRefused>, StoreError> {
    let now = now_millis();
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let existing: Option<RoomId> = sqlx::query_scalar("SELECT id FROM rooms WHERE name = ?")
        .bind(room.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let room_id = match existing {
        Some(id) => id,
        None => {
            let created: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE created_by = ?")
                    .bind(account)
                    .fetch_one(&mut *tx)
                    .await?;
            if created >= i64::from(quota) {
                return Ok(Err(RoomRefused { quota }));
            }
            sqlx::query_scalar(
                "INSERT INTO rooms (name, created_at, created_by) VALUES (?, ?, ?) RETURNING id",
            )
            .bind(room.as_str())
            .bind(now)
            .bind(account)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    sqlx::query(
        "INSERT OR IGNORE INTO memberships (account_id, room_id, joined_at) VALUES (?, ?, ?)",
    )
    .bind(account)
    .bind(room_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(room_id))
}
