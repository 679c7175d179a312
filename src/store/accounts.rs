use sqlx::{Connection, SqliteConnection};

use super::{is_unique_violation, AccountId, Store, StoreError};
use crate::protocol::{now_millis, Nick, DEFAULT_ROOM};

/// An account as the login check needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub id: AccountId,
    /// As registered, which may differ in case from what the user typed.
    pub nick: String,
    pub password_hash: String,
}

/// One line of `chat-admin list`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountSummary {
    pub nick: String,
    pub created_at: i64,
    pub rooms: i64,
}

impl Store {
    /// Creates an account that starts in `#general`.
    pub async fn create_account(
        &self,
        nick: &Nick,
        password_hash: &str,
    ) -> Result<AccountId, StoreError> {
        self.write(|mut conn| async move {
            let result = insert_account(&mut conn, nick, password_hash).await;
            (conn, result)
        })
        .await
    }

    /// Looks an account up by nickname, case-insensitively.
    pub async fn find_account(&self, nick: &str) -> Result<Option<Account>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, nick, password_hash FROM accounts WHERE nick = ?")
                .bind(nick)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Returns false when no such account exists.
    pub async fn delete_account(&self, nick: &str) -> Result<bool, StoreError> {
        self.write(|mut conn| async move {
            let result = sqlx::query("DELETE FROM accounts WHERE nick = ?")
                .bind(nick)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected() > 0)
                .map_err(StoreError::from);
            (conn, result)
        })
        .await
    }

    /// Returns false when no such account exists.
    pub async fn set_password(&self, nick: &str, password_hash: &str) -> Result<bool, StoreError> {
        self.write(|mut conn| async move {
            let result = sqlx::query("UPDATE accounts SET password_hash = ? WHERE nick = ?")
                .bind(password_hash)
                .bind(nick)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected() > 0)
                .map_err(StoreError::from);
            (conn, result)
        })
        .await
    }

    pub async fn list_accounts(&self) -> Result<Vec<AccountSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.nick, a.created_at, COUNT(m.room_id) AS rooms
             FROM accounts a LEFT JOIN memberships m ON m.account_id = a.id
             GROUP BY a.id ORDER BY a.nick COLLATE NOCASE",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

async fn insert_account(
    conn: &mut SqliteConnection,
    nick: &Nick,
    password_hash: &str,
) -> Result<AccountId, StoreError> {
    let now = now_millis();
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let id: AccountId = sqlx::query_scalar(
        "INSERT INTO accounts (nick, password_hash, created_at) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(nick.as_str())
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::DuplicateNick(nick.to_string())
        } else {
            e.into()
        }
    })?;
    sqlx::query("INSERT OR IGNORE INTO rooms (name, created_at) VALUES (?, ?)")
        .bind(DEFAULT_ROOM)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO memberships (account_id, room_id, joined_at)
         SELECT ?, id, ? FROM rooms WHERE name = ?",
    )
    .bind(id)
    .bind(now)
    .bind(DEFAULT_ROOM)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}
