-- Invite and reset codes are now stored as HMAC-SHA256 under a key kept in a file beside
-- the database (`chat.db.invite-key`), not in it: codes carry 60 bits and live for days,
-- and a plain SHA-256 in a stolen copy of the database could be searched offline for the
-- live ones. Codes stored before have only their plain hash, so they are withdrawn rather
-- than left open to that search: accounts keep their passwords (an invited account with
-- none yet shows "no password yet" in `chat-admin list`), and an admin issues a new code
-- with `chat-admin invite NICK` or `chat-admin passwd NICK --invite`.
DELETE FROM invites;
