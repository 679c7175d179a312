-- Roles and locking. An account created by an invite has no password yet: an empty
-- password_hash, which no password verifies against.
ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
    CHECK (role IN ('admin', 'member'));
ALTER TABLE accounts ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;

-- At most one outstanding code per account: a new invite or reset replaces the old one.
-- Only a SHA-256 of the code is kept; codes carry 60 random bits and live for days, so a
-- slow password hash would add nothing but login time.
CREATE TABLE invites (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Changes to an account that its live sessions must learn of, from whichever process made
-- them (chat-admin, or the server itself): the server polls this table. A session
-- remembers the highest id that existed when its password was checked, and an event ends
-- only sessions older than itself, so a login with the new password survives its own reset.
-- No foreign key: a deleted account's event must outlive the account.
CREATE TABLE account_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL,
    kind       TEXT    NOT NULL
        CHECK (kind IN ('locked', 'deleted', 'password', 'role-admin', 'role-member')),
    created_at INTEGER NOT NULL
);

-- What the running server publishes for `chat-admin status`: one row about the server
-- (refreshed every few seconds, so a stale row means it is not running) and one per
-- account online.
CREATE TABLE server_status (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    pid          INTEGER NOT NULL,
    version      TEXT    NOT NULL,
    listen       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE online (
    account_id  INTEGER PRIMARY KEY,
    nick        TEXT    NOT NULL,
    connections INTEGER NOT NULL,
    since       INTEGER NOT NULL
);
