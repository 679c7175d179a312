use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

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
    pub role: String,
    pub locked: bool,
    /// When the outstanding invite or reset code expires, if there is one.
    pub invite_expires_at: Option<i64>,
    /// False for an account made by an invite that has not been used yet.
    pub has_password: bool,
}

impl Store {
    /// Creates an account that starts in `#general`.
    pub async fn create_account(
        &self,
        nick: &Nick,
        password_hash: &str,
    ) -> Result<AccountId, StoreError> {
        let ids = self
            .create_accounts(&[(nick.clone(), password_hash.to_owned())])
            .await?;
        Ok(ids[0])
    }

    /// Creates accounts (nickname and PHC hash) that start in `#general`, all in one
    /// transaction: either every one is created or, on an error such as a taken nickname,
    /// none. Returns their ids in order.
    pub async fn create_accounts(
        &self,
        accounts: &[(Nick, String)],
    ) -> Result<Vec<AccountId>, StoreError> {
        self.write(|mut conn| async move {
            let result = insert_accounts(&mut conn, accounts).await;
            (conn, result)
        })
        .await
    }

    /// Those of `nicks` that name an existing account (compared case-insensitively), as
    /// registered.
    pub async fn taken_nicks(&self, nicks: &[Nick]) -> Result<Vec<String>, StoreError> {
        // Well below SQLite's limit on bound parameters.
        const PER_QUERY: usize = 500;
        let mut taken = Vec::new();
        for chunk in nicks.chunks(PER_QUERY) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT nick FROM accounts WHERE nick IN (");
            let mut list = query.separated(", ");
            for nick in chunk {
                list.push_bind(nick.as_str());
            }
            query.push(")");
            taken.extend(
                query
                    .build_query_scalar::<String>()
                    .fetch_all(&self.reader)
                    .await?,
            );
        }
        Ok(taken)
    }

    /// Looks an account up by nickname, case-insensitively.
    pub async fn find_account(&self, nick: &str) -> Result<Option<Account>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, nick, password_hash FROM accounts WHERE nick = ?")
                .bind(nick)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    pub async fn list_accounts(&self) -> Result<Vec<AccountSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT a.nick, a.created_at, COUNT(m.room_id) AS rooms, a.role, a.locked,
                    i.expires_at AS invite_expires_at, a.password_hash <> '' AS has_password
             FROM accounts a LEFT JOIN memberships m ON m.account_id = a.id
             LEFT JOIN invites i ON i.account_id = a.id
             GROUP BY a.id ORDER BY a.nick COLLATE NOCASE",
        )
        .fetch_all(&self.reader)
        .await?)
    }
}

async fn insert_accounts(
    conn: &mut SqliteConnection,
    accounts: &[(Nick, String)],
) -> Result<Vec<AccountId>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let ids = insert_accounts_in(&mut tx, accounts).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Inserts accounts that start in `#general`, inside the caller's transaction.
pub(super) async fn insert_accounts_in(
    tx: &mut SqliteConnection,
    accounts: &[(Nick, String)],
) -> Result<Vec<AccountId>, StoreError> {
    let now = now_millis();
    sqlx::query("INSERT OR IGNORE INTO rooms (name, created_at) VALUES (?, ?)")
        .bind(DEFAULT_ROOM)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let mut ids = Vec::with_capacity(accounts.len());
    for (nick, password_hash) in accounts {
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
        sqlx::query(
            "INSERT INTO memberships (account_id, room_id, joined_at)
             SELECT ?, id, ? FROM rooms WHERE name = ?",
        )
        .bind(id)
        .bind(now)
        .bind(DEFAULT_ROOM)
        .execute(&mut *tx)
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(name: &str) -> Nick {
        Nick::parse(name).unwrap()
    }

    #[tokio::test]
    async fn accounts_in_one_batch_are_all_created_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).await.unwrap();
        store
            .create_account(&nick("Alice"), "hash-a")
            .await
            .unwrap();

        let clash = [
            (nick("bob"), "hash-b".to_owned()),
            (nick("ALICE"), "hash-c".to_owned()),
        ];
        let error = store.create_accounts(&clash).await.unwrap_err();
        assert!(
            matches!(error, StoreError::DuplicateNick(ref n) if n == "ALICE"),
            "{error}"
        );
        assert!(store.find_account("bob").await.unwrap().is_none());

        let fine = [
            (nick("bob"), "hash-b".to_owned()),
            (nick("carol"), "hash-c".to_owned()),
        ];
        let ids = store.create_accounts(&fine).await.unwrap();
        assert_eq!(ids.len(), 2);
        let listed = store.list_accounts().await.unwrap();
        let rooms: Vec<(&str, i64)> = listed.iter().map(|a| (a.nick.as_str(), a.rooms)).collect();
        assert_eq!(rooms, [("Alice", 1), ("bob", 1), ("carol", 1)]);
        let carol = store.find_account("CAROL").await.unwrap().unwrap();
        assert_eq!((carol.id, carol.password_hash.as_str()), (ids[1], "hash-c"));

        let mut asked: Vec<Nick> = (0..1200).map(|i| nick(&format!("u{i}"))).collect();
        asked.extend([nick("alice"), nick("Carol")]);
        let mut taken = store.taken_nicks(&asked).await.unwrap();
        taken.sort();
        assert_eq!(taken, ["Alice", "carol"]);
        store.close().await;
    }
}
