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
             FROM rooms r WHERE r.name > ? AND r.name < '~' ORDER BY r.name LIMIT ?",
        )
        .bind(after.map_or("", RoomName::as_str))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Deletes up to `limit` messages of rooms set aside when their last member left (named
    /// `~ID` by the `forget_empty_rooms` trigger), and once none are left, those rooms.
    /// Returns how many rows went; 0 when there is nothing left to forget.
    pub async fn forget_emptied_rooms(&self, limit: u32) -> Result<u64, StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let messages = sqlx::query(
                    "DELETE FROM messages WHERE id IN
                     (SELECT m.id FROM rooms r JOIN messages m ON m.room_id = r.id
                      WHERE r.name >= '~' LIMIT ?)",
                )
                .bind(limit)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if messages > 0 {
                    return Ok(messages);
                }
                Ok(sqlx::query(
                    "DELETE FROM rooms WHERE name >= '~'
                     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.room_id = rooms.id)",
                )
                .execute(&mut *conn)
                .await?
                .rows_affected())
            }
            .await;
            (conn, result)
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Nick;
    use crate::store::{NewMessage, Recipient};

    /// The last part only sets the room aside (its name free at once, nothing deleted in
    /// the part's write); its history goes later, in batches, and the room with it.
    #[tokio::test]
    async fn an_emptied_room_is_set_aside_then_forgotten_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).await.unwrap();
        let alice = store
            .create_account(&Nick::parse("alice").unwrap(), "hash")
            .await
            .unwrap();
        let spam = RoomName::parse("#spam").unwrap();
        let room = store.join_room(alice, &spam, 20).await.unwrap().unwrap();
        let said: Vec<NewMessage> = (0..25)
            .map(|i| NewMessage {
                time: now_millis(),
                sender_id: alice,
                sender_nick: "alice".into(),
                recipient: Recipient::Room {
                    id: room,
                    name: "#spam".into(),
                },
                text: format!("message {i}"),
            })
            .collect();
        store.insert_messages(&said).await.unwrap();

        store.part_room(alice, room).await.unwrap();
        assert_eq!(
            store.find_room(&spam).await.unwrap(),
            None,
            "the name is free"
        );
        assert!(store
            .rooms_page(None, 100)
            .await
            .unwrap()
            .iter()
            .all(|(name, _)| name != "#spam" && !name.starts_with('~')));
        let kept = store
            .recent_messages(room, "#spam", 100, i64::MAX)
            .await
            .unwrap();
        assert_eq!(kept.len(), 25, "nothing deleted inside the part");
        // A new room of the same name is another room, with none of the old history.
        let again = store.join_room(alice, &spam, 20).await.unwrap().unwrap();
        assert_ne!(again, room);

        let mut batches = Vec::new();
        loop {
            match store.forget_emptied_rooms(10).await.unwrap() {
                0 => break,
                rows => batches.push(rows),
            }
        }
        assert_eq!(batches, [10, 10, 5, 1], "25 messages by 10, then the room");
        let left = store
            .recent_messages(room, "#spam", 100, i64::MAX)
            .await
            .unwrap();
        assert!(left.is_empty());
        assert_eq!(store.find_room(&spam).await.unwrap(), Some(again));
        store.close().await;
    }
}
