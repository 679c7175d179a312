//! Persistent state in SQLite through sqlx: accounts, rooms, memberships and messages.
//! Queries are checked at run time, so building needs no database.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

mod accounts;
mod messages;
mod rooms;

pub use accounts::{Account, AccountSummary};
pub use messages::{NewMessage, PendingDm, Recipient};

/// Row id of an account.
pub type AccountId = i64;
/// Row id of a room.
pub type RoomId = i64;

/// How long a writer waits for another process's write lock (for example `chat-admin` while
/// the server runs) before SQLite reports "database is locked".
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the nickname {0} is taken")]
    DuplicateNick(String),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connections to the database: the hub's writes, history reads, logins.
const POOL_SIZE: u32 = 4;

/// A cheap `Clone` handle to the database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, DEFAULT_BUSY_TIMEOUT).await
    }

    /// As [`Store::open`], waiting at most `busy_timeout` for another writer's lock.
    pub async fn open_with(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every acknowledged message must survive power loss, not just a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        // Every connection is opened now, so running out of file descriptors later cannot
        // stop messages from being stored.
        let pool = SqlitePoolOptions::new()
            .min_connections(POOL_SIZE)
            .max_connections(POOL_SIZE)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::migrate!().run(&pool).await?;
        Ok(Self { pool })
    }

    /// Waits for in-flight queries and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn sqlite_version(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Returns a write's result, throwing its connection away if the write failed. After a
/// failed commit (a full or unwritable disk) SQLite may have rolled back on its own while
/// sqlx still counts a transaction open, and a connection opened during such a fault can
/// stay read-only; a fresh connection has neither problem, so the store recovers as soon
/// as the disk does.
fn finish_write<T>(
    mut conn: PoolConnection<Sqlite>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    if result.is_err() {
        conn.close_on_drop();
    }
    result
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
