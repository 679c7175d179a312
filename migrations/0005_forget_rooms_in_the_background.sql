-- Forgetting an emptied room deleted its whole history inside the write that removed the
-- last membership: the hub's, so all chat waited for it (half a second for 300,000
-- messages). Now the room is only set aside, under a name nobody can type (`~ID`; names
-- start with `#`), which frees its name for a new room at once and stops it counting
-- towards its creator's quota; housekeeping then deletes its messages in small batches, and
-- the room last, so its id is never reused while a message of it is left.
DROP TRIGGER forget_empty_rooms;
CREATE TRIGGER forget_empty_rooms AFTER DELETE ON memberships
WHEN NOT EXISTS (SELECT 1 FROM memberships WHERE room_id = OLD.room_id)
BEGIN
    UPDATE rooms SET name = '~' || id, created_by = NULL
    WHERE id = OLD.room_id AND name <> '#general' AND name < '~';
END;
