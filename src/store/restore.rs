//! Putting a backup back in place of the database, without ever handing out an id twice.
//!
//! A backup is an older state: its id sequences stop where they stood when it was taken, but
//! clients have since seen later ids and ask for what came "after" them. A restored database
//! whose sequences restarted there would give new messages ids those clients already hold,
//! and they would drop them as duplicates. So the restored copy's sequences are raised to the
//! replaced database's high-water marks before it takes its place.

use std::path::{Path, PathBuf};

use sqlx::{Connection, SqliteConnection};

use super::file::{self, open_read_only, DbFile};
use super::{StoreError, HEARTBEAT_EVERY};
use crate::protocol::now_millis;

/// Tables whose AUTOINCREMENT ids leave the database: message ids reach every client (its
/// "history after ID" catch-up), account event ids mark live sessions.
const SEQUENCES: [&str; 2] = ["messages", "account_events"];

/// How far `--force` moves every sequence on when there is no database to read the
/// high-water marks from: more messages than any team writes between a backup and a loss.
pub const FORCED_ID_MARGIN: i64 = 1_000_000_000;

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Where the replaced database now is (`None` when there was none).
    pub kept_aside: Option<PathBuf>,
    /// Each sequence's new start: the next id is above it.
    pub ids_after: Vec<(&'static str, i64)>,
}

/// Replaces the database at `db` with a copy of `backup`, whose id sequences continue after
/// every id the replaced database ever handed out. Refused while a server runs on `db`, for a
/// backup that is not a sound tlschat database, for a `db` that is not tlschat's, and (unless
/// `force`) when there is no database at `db` to take the high-water marks from; `force` then
/// moves the sequences on by [`FORCED_ID_MARGIN`]. The replaced database is renamed, not
/// deleted, to `DB.before-restore-TIME` (mode 0600).
pub async fn restore(db: &Path, backup: &Path, force: bool) -> Result<Restored, StoreError> {
    let refuse = |why: String| Err(StoreError::Restore(why));
    match file::identify(backup).await? {
        DbFile::Tlschat { .. } => {}
        DbFile::Missing => return refuse(format!("there is no file {}", backup.display())),
        DbFile::Blank | DbFile::Foreign => {
            return refuse(format!("{} is not a tlschat database", backup.display()))
        }
    }
    let mut source = open_read_only(backup).await?;
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut source)
        .await?;
    if integrity != ["ok"] {
        return refuse(format!(
            "{} is damaged (integrity check: {})",
            backup.display(),
            integrity.join("; ")
        ));
    }
    let backup_marks = high_water_marks(&mut source).await?;

    let current = file::identify(db).await?;
    let marks = match current {
        DbFile::Foreign => return Err(StoreError::Foreign(db.to_owned())),
        DbFile::Missing | DbFile::Blank if !force => {
            return refuse(format!(
                "there is no database at {} to continue its ids from; if it is lost, --force \
                 restores anyway and moves every id on by {FORCED_ID_MARGIN}",
                db.display()
            ))
        }
        DbFile::Missing | DbFile::Blank => backup_marks
            .iter()
            .map(|&(table, mark)| (table, mark + FORCED_ID_MARGIN))
            .collect(),
        DbFile::Tlschat { .. } => {
            let mut conn = open_read_only(db).await?;
            let running = running_server(&mut conn).await;
            let current_marks = high_water_marks(&mut conn).await;
            let _ = conn.close().await;
            if let Some(pid) = running? {
                return refuse(format!(
                    "a server (pid {pid}) is running on {}; stop it first",
                    db.display()
                ));
            }
            let current_marks = current_marks?;
            backup_marks
                .iter()
                .zip(&current_marks)
                .map(|(&(table, ours), &(_, theirs))| (table, ours.max(theirs)))
                .collect::<Vec<_>>()
        }
    };

    let name = db
        .file_name()
        .ok_or_else(|| StoreError::Restore(format!("{} names no file", db.display())))?
        .to_string_lossy()
        .into_owned();
    let staged = db.with_file_name(format!("{name}.restoring"));
    let _ = std::fs::remove_file(&staged);
    file::create_private(&staged)?;
    // `VACUUM INTO` rather than a file copy: it also takes what the backup's own `-wal`
    // holds, and writes one consistent, compact file.
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(staged.to_string_lossy().into_owned())
        .execute(&mut source)
        .await;
    let _ = source.close().await;
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&staged);
        return Err(error.into());
    }
    if let Err(error) = prepare(&staged, &marks).await {
        let _ = std::fs::remove_file(&staged);
        return Err(error);
    }

    let kept_aside = match current {
        DbFile::Missing => None,
        _ => Some(keep_aside(db, &name).await?),
    };
    std::fs::rename(&staged, db)
        .map_err(|error| file::file_error(db, "cannot move the restored database to", error))?;
    if let Some(folder) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The renames are durable once the folder is.
        if let Ok(folder) = std::fs::File::open(folder) {
            let _ = folder.sync_all();
        }
    }
    Ok(Restored {
        kept_aside,
        ids_after: marks,
    })
}

/// For each of [`SEQUENCES`], the highest id ever handed out: the sequence, or the highest
/// row if that is higher (a table written before it had a sequence row).
async fn high_water_marks(
    conn: &mut SqliteConnection,
) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut marks = Vec::new();
    for table in SEQUENCES {
        let mark = if table_exists(conn, table).await? {
            sqlx::query_scalar(&format!(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0),
                            coalesce((SELECT max(id) FROM {table}), 0))"
            ))
            .bind(table)
            .fetch_one(&mut *conn)
            .await?
        } else {
            0
        };
        marks.push((table, mark));
    }
    Ok(marks)
}

async fn table_exists(conn: &mut SqliteConnection, table: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await?)
}

/// The pid of a server whose heartbeat is fresh, as `chat-admin status` judges it.
async fn running_server(conn: &mut SqliteConnection) -> Result<Option<i64>, StoreError> {
    if !table_exists(conn, "server_status").await? {
        return Ok(None);
    }
    let row: Option<(i64, i64)> = sqlx::query_as("SELECT pid, heartbeat_at FROM server_status")
        .fetch_optional(&mut *conn)
        .await?;
    let stale_after = 3 * HEARTBEAT_EVERY.as_millis() as i64;
    Ok(row
        .filter(|&(_, heartbeat_at)| now_millis() - heartbeat_at <= stale_after)
        .map(|(pid, _)| pid))
}

/// Raises the staged copy's sequences to `marks` and forgets the server that was running
/// when the backup was taken (its status row and who was online).
async fn prepare(staged: &Path, marks: &[(&'static str, i64)]) -> Result<(), StoreError> {
    let mut conn = SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(staged)
            // One self-contained file to rename into place, no `-wal` beside it.
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete),
    )
    .await?;
    let result = async {
        let mut tx = conn.begin().await?;
        for &(table, mark) in marks {
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
                    .bind(table)
                    .fetch_optional(&mut *tx)
                    .await?;
            match seq {
                Some(seq) if seq >= mark => {}
                Some(_) => {
                    sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = ?")
                        .bind(mark)
                        .bind(table)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
                        .bind(table)
                        .bind(mark)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for table in ["server_status", "online"] {
            if table_exists(&mut tx, table).await? {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    let _ = conn.close().await;
    result
}

/// Renames the database (and its `-wal` and `-shm`, after a checkpoint has emptied them into
/// it) to `NAME.before-restore-TIME`, mode 0600. Returns the new path of the database.
async fn keep_aside(db: &Path, name: &str) -> Result<PathBuf, StoreError> {
    if let Ok(mut conn) = SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .create_if_missing(false),
    )
    .await
    {
        // A clean close of the last connection checkpoints and removes the `-wal`.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let aside = db.with_file_name(format!("{name}.before-restore-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let (from, to) = (with_suffix(db, suffix), with_suffix(&aside, suffix));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {
                continue
            }
            Err(error) => return Err(file::file_error(&from, "cannot keep aside", error)),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .map_err(|error| file::file_error(&to, "cannot make private", error))?;
        }
    }
    Ok(aside)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
