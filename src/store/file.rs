//! The database file itself: what a file at the database's path is (missing, new, tlschat's,
//! or someone else's) before anything writes to it, and creating it private.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::StoreError;

/// What is at a database path, found without writing to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbFile {
    /// No file.
    Missing,
    /// An empty file, or a SQLite database with nothing in it: safe to make tlschat's.
    Blank,
    /// A tlschat database; `pending` counts the migrations this version would apply.
    Tlschat { pending: usize },
    /// A SQLite database of some other program, or no SQLite file at all.
    Foreign,
}

/// Looks at `path` through a read-only connection that sets no pragma that writes: a foreign
/// file keeps every byte.
pub async fn identify(path: &Path) -> Result<DbFile, StoreError> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(DbFile::Missing),
        Err(source) => return Err(file_error(path, "cannot read", source)),
        Ok(meta) if meta.len() == 0 => return Ok(DbFile::Blank),
        Ok(_) => {}
    }
    let mut conn = match open_read_only(path).await {
        Ok(conn) => conn,
        Err(error) if is_not_a_database(&error) => return Ok(DbFile::Foreign),
        Err(error) => return Err(error.into()),
    };
    let found = identify_open(&mut conn).await;
    let _ = conn.close().await;
    match found {
        Err(StoreError::Sqlx(error)) if is_not_a_database(&error) => Ok(DbFile::Foreign),
        other => other,
    }
}

async fn identify_open(conn: &mut SqliteConnection) -> Result<DbFile, StoreError> {
    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut *conn)
        .await?;
    if objects == 0 {
        return Ok(DbFile::Blank);
    }
    let has_migrations: bool = sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !has_migrations {
        return Ok(DbFile::Foreign);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await?;
    let migrator = sqlx::migrate!();
    // Another sqlx program has a `_sqlx_migrations` table too; tlschat's first migration,
    // byte for byte, is what makes the file tlschat's.
    let first = migrator.iter().next().expect("tlschat has migrations");
    let ours = applied
        .iter()
        .any(|(version, checksum)| *version == first.version && *checksum == *first.checksum);
    if !ours {
        return Ok(DbFile::Foreign);
    }
    let pending = migrator
        .iter()
        .filter(|m| !applied.iter().any(|(version, _)| *version == m.version))
        .count();
    Ok(DbFile::Tlschat { pending })
}

/// One connection that cannot write and changes no setting of the file (sqlx sets no
/// journal mode unless asked).
pub(super) async fn open_read_only(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .connect()
        .await
}

/// SQLITE_NOTADB (26): the file is not a SQLite database.
fn is_not_a_database(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff) == Some(26))
}

/// Creates an empty database file readable by its owner only, whatever the umask. SQLite
/// gives the `-wal` and `-shm` files it creates later the database file's mode, so all three
/// stay private: they hold password hashes.
pub(super) fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process created it first; what it is gets checked like any existing file.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound
                && path
                    .parent()
                    .is_some_and(|folder| !folder.as_os_str().is_empty() && !folder.exists()) =>
        {
            Err(StoreError::NoFolder(path.to_owned()))
        }
        Err(source) => Err(file_error(path, "cannot create the database", source)),
    }
}

/// Makes an empty file about to become a tlschat database (one made with `touch`, say)
/// private: the database, and the `-wal` and `-shm` SQLite gives the same mode, will hold
/// password hashes.
pub(super) fn make_blank_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| file_error(path, "cannot make private the database", source))?;
    }
    Ok(())
}

pub(super) fn file_error(path: &Path, what: &'static str, source: std::io::Error) -> StoreError {
    StoreError::File {
        what,
        path: path.to_owned(),
        error: source,
    }
}
