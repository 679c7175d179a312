-- Accounts are created only by chat-admin. Nicknames are unique case-insensitively and
-- kept as registered.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    nick          TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE rooms (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE memberships (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, room_id)
) WITHOUT ROWID;

CREATE INDEX memberships_by_room ON memberships (room_id);

-- Room messages and private messages share one id sequence: ids are unique server-wide and
-- increase in acceptance order. AUTOINCREMENT keeps ids from ever being reused, so a client's
-- "after ID" catch-up stays correct even after deletions.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    sent_at        INTEGER NOT NULL,
    sender_id      INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    sender_nick    TEXT    NOT NULL,
    room_id        INTEGER REFERENCES rooms (id) ON DELETE CASCADE,
    recipient_id   INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
    recipient_nick TEXT,
    body           TEXT    NOT NULL,
    -- A private message stored while its recipient had no connection, replayed at login.
    pending        INTEGER NOT NULL DEFAULT 0,
    CHECK ((room_id IS NULL) <> (recipient_id IS NULL))
);

CREATE INDEX messages_by_room ON messages (room_id, id) WHERE room_id IS NOT NULL;
CREATE INDEX messages_pending ON messages (recipient_id, id) WHERE pending = 1;

INSERT INTO rooms (name, created_at) VALUES ('#general', 0);
