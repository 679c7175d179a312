//! Persistent state in SQLite through sqlx: accounts, rooms, memberships and messages.
//! Queries are checked at run time, so building needs no database.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::invite::CodeKey;

mod accounts;
mod file;
mod messages;
mod moderation;
mod restore;
mod rooms;
mod status;

pub use accounts::{Account, AccountSummary};
pub use file::{identify, DbFile};
pub use messages::{KeptFull, KeptLimits, NewMessage, PendingDm, Recipient};
pub use moderation::{AccountEvent, EventKind, IssuedInvite, LoginAccount, Role, RoleColumn};
pub use restore::{restore, Restored, FORCED_ID_MARGIN};
pub use rooms::RoomRefused;
pub use status::{OnlineAccount, RoomCount, ServerStatus, HEARTBEAT_EVERY};

/// Row id of an account.
pub type AccountId = i64;
/// Row id of a room.
pub type RoomId = i64;

/// How long a writer waits for another process's write lock (for example `chat-admin` while
/// the server runs) before SQLite reports "database is locked".
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

// The causes are part of each message and not also exposed as `source()`: printed as a
// chain (`{:#}`), they would appear twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the nickname {0} is taken")]
    DuplicateNick(String),
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error(transparent)]
    InviteKey(#[from] crate::invite::KeyError),
    #[error("cannot create the backup {}: {error}", .path.display())]
    Backup {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {}: {error}", .path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create the database {}: the folder {} does not exist", .0.display(),
            .0.parent().unwrap_or(Path::new(".")).display())]
    NoFolder(PathBuf),
    #[error("there is no tlschat database at {}", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a tlschat database; nothing was changed", .0.display())]
    Foreign(PathBuf),
    #[error(
        "{} needs an upgrade by this version of tlschat ({pending} migration(s)); start \
         chat-server once, or run a chat-admin command that changes it, and try again",
        .path.display()
    )]
    NeedsUpgrade { path: PathBuf, pending: usize },
    #[error("cannot restore: {0}")]
    Restore(String),
}

impl StoreError {
    /// Whether the message already names the database file (so a caller adds no context).
    pub fn names_the_file(&self) -> bool {
        matches!(
            self,
            Self::File { .. }
                | Self::NoFolder(_)
                | Self::Missing(_)
                | Self::Foreign(_)
                | Self::NeedsUpgrade { .. }
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sqlx(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

/// How a process may open the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file if it is missing (mode 0600) and apply the migrations: the server,
    /// and `chat-admin --create`.
    Create,
    /// Only an existing tlschat database, migrated if needed: `chat-admin`'s commands that
    /// change something.
    Existing,
    /// Only an existing, current tlschat database, never written: `chat-admin list`,
    /// `status` and `backup`.
    ReadOnly,
}

/// What an acknowledged message survives. Either way a message is committed before anyone
/// sees it, so a crash of the server process (`kill -9`) loses nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Commits reach the operating system, not the disk (SQLite `synchronous=NORMAL` in
    /// WAL mode): the server process may crash at any moment, but an operating-system crash
    /// or power loss can take the last moments of messages with it (the database stays
    /// consistent). A commit costs microseconds.
    ProcessCrash,
    /// Every commit waits for the disk (`synchronous=FULL`): messages survive power loss
    /// too, and each batch costs an fsync (milliseconds on most disks).
    #[default]
    PowerLoss,
}

/// Connections that read: logins, history replays, `/who`, `/rooms`.
const READERS: u32 = 3;
/// Attempts of one write, each on a fresh writer connection after the first fails.
const WRITE_TRIES: u32 = 4;

/// A cheap `Clone` handle to the database.
///
/// Every write in this process goes through one connection, queued in order by sqlx's pool.
/// Two connections of one process competing for SQLite's write lock would meet in SQLite's
/// busy handler, which sleeps (1, 2, 5, ... up to 100 ms between tries): a login's write
/// beside the hub's commit cost chat messages hundreds of milliseconds in a login storm.
/// Readers never wait for the writer (WAL).
#[derive(Debug, Clone)]
pub struct Store {
    reader: SqlitePool,
    writer: SqlitePool,
    /// What invite and reset codes are stored under; a file beside the database, so that a
    /// copy of the database alone does not give live codes away.
    invite_key: Arc<CodeKey>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, DEFAULT_BUSY_TIMEOUT).await
    }

    /// As [`Store::open`], waiting at most `busy_timeout` for another writer's lock.
    pub async fn open_with(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        Self::open_with_durability(path, busy_timeout, Durability::default()).await
    }

    /// As [`Store::open_with`], with commits as durable as `durability` says.
    pub async fn open_with_durability(
        path: &Path,
        busy_timeout: Duration,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        Self::open_as(path, OpenMode::Create, busy_timeout, durability).await
    }

    /// Opens the database at `path` as `mode` allows. A file that is not a tlschat database
    /// is refused in every mode before anything is written to it.
    pub async fn open_as(
        path: &Path,
        mode: OpenMode,
        busy_timeout: Duration,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        match (file::identify(path).await?, mode) {
            (file::DbFile::Foreign, _) => return Err(StoreError::Foreign(path.to_owned())),
            (
                file::DbFile::Missing | file::DbFile::Blank,
                OpenMode::Existing | OpenMode::ReadOnly,
            ) => return Err(StoreError::Missing(path.to_owned())),
            (file::DbFile::Missing, OpenMode::Create) => file::create_private(path)?,
            (file::DbFile::Blank, OpenMode::Create) => file::make_blank_private(path)?,
            (file::DbFile::Tlschat { pending }, OpenMode::ReadOnly) if pending > 0 => {
                return Err(StoreError::NeedsUpgrade {
                    path: path.to_owned(),
                    pending,
                })
            }
            _ => {}
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(false)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        if mode == OpenMode::ReadOnly {
            let options = options.read_only(true);
            let writer = open_pool(options.clone(), 1).await?;
            let reader = open_pool(options, READERS).await?;
            // Read-only commands neither issue nor check codes, and must not create the key
            // file; a key of their own, never written anywhere, keeps the type simple.
            return Ok(Self {
                reader,
                writer,
                invite_key: Arc::new(CodeKey::ephemeral()?),
            });
        }
        let synchronous = match durability {
            Durability::ProcessCrash => SqliteSynchronous::Normal,
            Durability::PowerLoss => SqliteSynchronous::Full,
        };
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            // Checkpoints run in the background (`Store::checkpoint`), not inside whichever
            // commit happens to cross SQLite's threshold: that commit is the hub's, and
            // every message in its batch would wait for the copy and its fsync.
            .pragma("wal_autocheckpoint", "0");
        let key_path = CodeKey::path_for(path);
        let invite_key = tokio::task::spawn_blocking(move || CodeKey::load_or_create(&key_path))
            .await
            .expect("reading the invite key does not panic")?;
        let writer = open_pool(options.clone(), 1).await?;
        sqlx::migrate!().run(&writer).await?;
        // The readers open after the writer has created the file and switched it to WAL
        // (connections opening alongside that switch would collide).
        let reader = open_pool(options, READERS).await?;
        Ok(Self {
            reader,
            writer,
            invite_key: Arc::new(invite_key),
        })
    }

    /// Waits for in-flight queries and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Copies the write-ahead log into the database as far as readers allow, without
    /// blocking writers (`PRAGMA wal_checkpoint(PASSIVE)`). The server runs it every
    /// second, on a reader so that the writer's queue never waits for it; `close` does a
    /// full one.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.reader)
            .await?;
        Ok(())
    }

    /// Writes a consistent copy of the whole database to `target` while the server keeps
    /// running (`VACUUM INTO` reads one snapshot; writers are not blocked). The file is
    /// created new with mode 0600: it holds password hashes. [`restore`] puts it back.
    pub async fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // SQLite writes into an existing file only if it is empty; creating it here, new,
        // sets its mode and refuses to overwrite an earlier backup.
        options.open(target).map_err(|error| StoreError::Backup {
            path: target.to_owned(),
            error,
        })?;
        let path = target.to_string_lossy().into_owned();
        let result = sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&self.reader)
            .await;
        if let Err(error) = result {
            let _ = std::fs::remove_file(target);
            return Err(error.into());
        }
        Ok(())
    }

    /// The key invite and reset codes are stored under (see [`crate::invite`]).
    pub fn invite_key(&self) -> &CodeKey {
        &self.invite_key
    }

    pub async fn sqlite_version(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&self.reader)
            .await?)
    }
}

/// A pool of `size` connections, all opened now, so that running out of file descriptors
/// later cannot stop messages from being stored or history from being read.
async fn open_pool(options: SqliteConnectOptions, size: u32) -> Result<SqlitePool, StoreError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(size)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    let mut connections = Vec::new();
    for _ in 0..size {
        connections.push(pool.acquire().await?);
    }
    drop(connections);
    Ok(pool)
}

impl Store {
    /// Runs one write on the writer connection. If it fails, the connection is thrown away
    /// and the write tried again on a fresh one, a few times: after a failed commit (a full or
    /// unwritable disk) SQLite may have rolled back by itself while sqlx still counts a
    /// transaction open, and a connection opened during such a fault can stay read-only.
    /// So the store works again as soon as the disk does. Failures a retry cannot cure
    /// (constraint violations) or that already waited their turn (another writer's lock) are
    /// returned at once.
    async fn write<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(PoolConnection<Sqlite>) -> Fut,
        Fut: Future<Output = (PoolConnection<Sqlite>, Result<T, StoreError>)>,
    {
        let mut tries = 0;
        loop {
            let (mut conn, result) = attempt(self.writer.acquire().await?).await;
            let Err(error) = result else { return result };
            conn.close_on_drop();
            drop(conn);
            tries += 1;
            if tries >= WRITE_TRIES || !worth_retrying(&error) {
                return Err(error);
            }
            tracing::warn!(%error, "a write failed; retrying on a fresh connection");
        }
    }
}

fn worth_retrying(error: &StoreError) -> bool {
    match error {
        StoreError::DuplicateNick(_)
        | StoreError::Migrate(_)
        | StoreError::Backup { .. }
        | StoreError::File { .. }
        | StoreError::Missing(_)
        | StoreError::NoFolder(_)
        | StoreError::Foreign(_)
        | StoreError::NeedsUpgrade { .. }
        | StoreError::Restore(_)
        | StoreError::InviteKey(_) => false,
        StoreError::Sqlx(sqlx::Error::Database(db)) => {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6) already waited the busy timeout.
            let primary_code = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            let constraint = db.is_unique_violation()
                || db.is_foreign_key_violation()
                || db.is_check_violation();
            !constraint && !matches!(primary_code, Some(5 | 6))
        }
        StoreError::Sqlx(_) => true,
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
