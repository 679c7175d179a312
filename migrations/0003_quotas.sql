-- Who created a room, for the per-account quota of rooms created (rooms that still exist).
-- Rooms created before this migration count for nobody.
ALTER TABLE rooms ADD COLUMN created_by INTEGER REFERENCES accounts (id) ON DELETE SET NULL;
CREATE INDEX rooms_by_creator ON rooms (created_by) WHERE created_by IS NOT NULL;

-- Kept private messages are bounded per recipient and per sender to one recipient; both
-- counts are read from this index inside the transaction that stores a batch.
CREATE INDEX messages_pending_by_pair ON messages (recipient_id, sender_id) WHERE pending = 1;

-- A room nobody is a member of is forgotten, with its history: a later room of the same
-- name starts empty, so nobody reads what was said before they could have been there, and
-- rooms created and abandoned (spam) cost nothing. `#general`, where accounts start, stays.
-- A trigger covers every way a membership goes: a part, and an account's deletion by
-- chat-admin (the cascade from accounts fires it too).
CREATE TRIGGER forget_empty_rooms AFTER DELETE ON memberships
WHEN NOT EXISTS (SELECT 1 FROM memberships WHERE room_id = OLD.room_id)
BEGIN
    DELETE FROM rooms WHERE id = OLD.room_id AND name <> '#general';
END;

-- Rooms already empty when this migration runs.
DELETE FROM rooms
WHERE name <> '#general' AND id NOT IN (SELECT room_id FROM memberships);
