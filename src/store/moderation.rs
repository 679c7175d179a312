//! Invites, roles, locks, and the account events that tell the running server to end
//! sessions, whichever process made the change.

use std::fmt;
use std::str::FromStr;

use sqlx::{Connection, SqliteConnection};

use super::accounts::insert_accounts_in;
use super::{AccountId, Store, StoreError};
use crate::protocol::{now_millis, Nick};

/// What an account may do. Admins may `/kick`; everything else is the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    Admin,
    #[default]
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(word: &str) -> Result<Self, String> {
        match word {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(format!("no role {other:?}; roles are admin and member")),
        }
    }
}

/// A change to an account that its live sessions must learn of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Locked,
    Deleted,
    /// The password changed; sessions that logged in with the old one end.
    Password,
    Role(Role),
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Locked => "locked",
            Self::Deleted => "deleted",
            Self::Password => "password",
            Self::Role(Role::Admin) => "role-admin",
            Self::Role(Role::Member) => "role-member",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "locked" => Self::Locked,
            "deleted" => Self::Deleted,
            "password" => Self::Password,
            "role-admin" => Self::Role(Role::Admin),
            "role-member" => Self::Role(Role::Member),
            _ => return None,
        })
    }
}

/// One row of `account_events`. Ids increase, so a reader can ask for everything newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountEvent {
    pub id: i64,
    pub account: AccountId,
    pub kind: EventKind,
}

/// An account as a login needs it, with the newest account event that existed at that
/// moment: events up to it are already reflected in what was read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginAccount {
    pub id: AccountId,
    pub nick: String,
    /// Empty for an account made by an invite and not yet given a password.
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    pub locked: bool,
    pub invite_hash: Option<String>,
    pub invite_expires_at: Option<i64>,
    pub events_seen: i64,
}

/// A role read from its column; the schema's CHECK keeps it one of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = String;
    fn try_from(word: String) -> Result<Self, String> {
        word.parse().map(Self)
    }
}

/// What `chat-admin invite` did.
#[derive(Debug, Clone)]
pub struct IssuedInvite {
    /// As registered.
    pub nick: String,
    /// True when the invite created the account.
    pub created: bool,
}

impl Store {
    /// The account named `nick` (case-insensitively) with its outstanding code, if any.
    pub async fn find_login(&self, nick: &str) -> Result<Option<LoginAccount>, StoreError> {
        // One statement, so the account and the event high-water mark are one snapshot. The
        // mark comes from AUTOINCREMENT's counter, not MAX(id): old events are deleted, and
        // an empty table must not make every earlier event look newer than the login.
        Ok(sqlx::query_as(
            "SELECT a.id, a.nick, a.password_hash, a.role, a.locked,
                    i.code_hash AS invite_hash, i.expires_at AS invite_expires_at,
                    (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence
                     WHERE name = 'account_events') AS events_seen
             FROM accounts a LEFT JOIN invites i ON i.account_id = a.id
             WHERE a.nick = ?",
        )
        .bind(nick)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Gives `nick` a code, replacing any earlier one. With `create`, a missing account is
    /// created (in `#general`, with no password); without, a missing account is `None`.
    pub async fn issue_invite(
        &self,
        nick: &Nick,
        code_hash: &str,
        expires_at: i64,
        create: bool,
    ) -> Result<Option<IssuedInvite>, StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let issued = issue(&mut tx, nick, code_hash, expires_at, create).await?;
                tx.commit().await?;
                Ok(issued)
            }
            .await;
            (conn, result)
        })
        .await
    }

    /// Uses up the account's code if it is still `code_hash` and unexpired, and sets the new
    /// password, all at once: of two logins racing with one code, one wins. Returns the
    /// password event's id, or `None` when the code is gone, expired, or the account locked.
    pub async fn redeem_invite(
        &self,
        account: AccountId,
        code_hash: &str,
        password_hash: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.write(|mut conn| async move {
            let result = redeem(&mut conn, account, code_hash, password_hash).await;
            (conn, result)
        })
        .await
    }

    /// Sets a password; sessions logged in with the old one end. Returns the event's id, or
    /// `None` when there is no such account.
    pub async fn set_password(
        &self,
        nick: &str,
        password_hash: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.change_account(
            nick,
            "UPDATE accounts SET password_hash = ? WHERE nick = ? RETURNING id",
            Some(password_hash),
            EventKind::Password,
        )
        .await
    }

    /// Sets the password of an unlocked account whose hash is still `old_hash` (the one its
    /// session just verified), so a change racing an admin's reset or lock loses. Returns the
    /// event's id, or `None` when anything changed meanwhile.
    pub async fn replace_password(
        &self,
        account: AccountId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let changed = sqlx::query(
                    "UPDATE accounts SET password_hash = ?
                     WHERE id = ? AND locked = 0 AND password_hash = ?",
                )
                .bind(new_hash)
                .bind(account)
                .bind(old_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(None);
                }
                let event = record_event(&mut tx, account, EventKind::Password).await?;
                tx.commit().await?;
                Ok(Some(event))
            }
            .await;
            (conn, result)
        })
        .await
    }

    /// Deletes an account and its memberships (its messages stay); its sessions end.
    /// Returns false when no such account exists.
    pub async fn delete_account(&self, nick: &str) -> Result<bool, StoreError> {
        let done = self
            .change_account(
                nick,
                "DELETE FROM accounts WHERE nick = ? RETURNING id",
                None,
                EventKind::Deleted,
            )
            .await?;
        Ok(done.is_some())
    }

    /// Locks or unlocks an account; locking ends its sessions. Returns false when no such
    /// account exists.
    pub async fn set_locked(&self, nick: &str, locked: bool) -> Result<bool, StoreError> {
        let done = if locked {
            self.change_account(
                nick,
                "UPDATE accounts SET locked = 1 WHERE nick = ? RETURNING id",
                None,
                EventKind::Locked,
            )
            .await?
        } else {
            // Nothing live to tell: a locked account has no sessions.
            self.write(|mut conn| async move {
                let result = sqlx::query_scalar(
                    "UPDATE accounts SET locked = 0 WHERE nick = ? RETURNING id",
                )
                .bind(nick)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::from);
                (conn, result)
            })
            .await?
            .map(|_: AccountId| 0)
        };
        Ok(done.is_some())
    }

    /// Returns false when no such account exists.
    pub async fn set_role(&self, nick: &str, role: Role) -> Result<bool, StoreError> {
        let done = self
            .change_account(
                nick,
                "UPDATE accounts SET role = ? WHERE nick = ? RETURNING id",
                Some(role.as_str()),
                EventKind::Role(role),
            )
            .await?;
        Ok(done.is_some())
    }

    /// Runs `statement` (binding `value` first when given, then the nickname; it returns the
    /// account's id) and records `kind` for it in one transaction. Returns the event's id.
    async fn change_account(
        &self,
        nick: &str,
        statement: &'static str,
        value: Option<&str>,
        kind: EventKind,
    ) -> Result<Option<i64>, StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let mut query = sqlx::query_scalar::<_, AccountId>(statement);
                if let Some(value) = value {
                    query = query.bind(value);
                }
                let Some(account) = query.bind(nick).fetch_optional(&mut *tx).await? else {
                    return Ok(None);
                };
                let event = record_event(&mut tx, account, kind).await?;
                tx.commit().await?;
                Ok(Some(event))
            }
            .await;
            (conn, result)
        })
        .await
    }

    /// Events newer than `after`, oldest first.
    pub async fn account_events_after(&self, after: i64) -> Result<Vec<AccountEvent>, StoreError> {
        let rows: Vec<(i64, AccountId, String)> = sqlx::query_as(
            "SELECT id, account_id, kind FROM account_events WHERE id > ? ORDER BY id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, account, kind)| {
                Some(AccountEvent {
                    id,
                    account,
                    kind: EventKind::parse(&kind)?,
                })
            })
            .collect())
    }

    pub async fn last_account_event_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'account_events'",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    /// Forgets events older than `before` (milliseconds) and codes that expired. A running
    /// server reads events within a second of their writing, so a day's are plenty.
    pub async fn prune_account_records(&self, before: i64) -> Result<(), StoreError> {
        self.write(|mut conn| async move {
            let result = async {
                sqlx::query("DELETE FROM account_events WHERE created_at < ?")
                    .bind(before)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("DELETE FROM invites WHERE expires_at < ?")
                    .bind(now_millis())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
            .await;
            (conn, result)
        })
        .await
    }
}

async fn record_event(
    conn: &mut SqliteConnection,
    account: AccountId,
    kind: EventKind,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO account_events (account_id, kind, created_at) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(account)
    .bind(kind.as_str())
    .bind(now_millis())
    .fetch_one(&mut *conn)
    .await?)
}

async fn issue(
    conn: &mut SqliteConnection,
    nick: &Nick,
    code_hash: &str,
    expires_at: i64,
    create: bool,
) -> Result<Option<IssuedInvite>, StoreError> {
    let existing: Option<(AccountId, String)> =
        sqlx::query_as("SELECT id, nick FROM accounts WHERE nick = ?")
            .bind(nick.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let (account, registered, created) = match existing {
        Some((id, registered)) => (id, registered, false),
        None if create => {
            // An empty hash: no password verifies until the code is used.
            let ids = insert_accounts_in(conn, &[(nick.clone(), String::new())]).await?;
            (ids[0], nick.to_string(), true)
        }
        None => return Ok(None),
    };
    sqlx::query(
        "INSERT OR REPLACE INTO invites (account_id, code_hash, created_at, expires_at)
         VALUES (?, ?, ?, ?)",
    )
    .bind(account)
    .bind(code_hash)
    .bind(now_millis())
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(Some(IssuedInvite {
        nick: registered,
        created,
    }))
}

async fn redeem(
    conn: &mut SqliteConnection,
    account: AccountId,
    code_hash: &str,
    password_hash: &str,
) -> Result<Option<i64>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let used = sqlx::query(
        "DELETE FROM invites WHERE account_id = ? AND code_hash = ? AND expires_at > ?",
    )
    .bind(account)
    .bind(code_hash)
    .bind(now_millis())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if used == 0 {
        return Ok(None);
    }
    let set = sqlx::query("UPDATE accounts SET password_hash = ? WHERE id = ? AND locked = 0")
        .bind(password_hash)
        .bind(account)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if set == 0 {
        return Ok(None);
    }
    let event = record_event(&mut tx, account, EventKind::Password).await?;
    tx.commit().await?;
    Ok(Some(event))
}
