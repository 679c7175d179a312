//! The wire protocol, with no I/O: what a client may send, what the server sends back, and the
//! rules for names and text. Every server line is built as a typed [`ServerLine`] and formatted
//! here exactly once; nothing else in the crate writes protocol text by hand.

mod command;
mod names;
mod server_line;
mod text;
mod time;

pub use command::{parse_command, passwd_line, Command, CommandError, HistoryQuery};
pub use names::{NameError, Nick, RoomName, DEFAULT_ROOM};
pub use server_line::{ByeReason, ErrorCode, LeaveReason, ServerLine, StoredMessage};
pub use text::{has_forbidden_control, is_blank, is_forbidden_control, replace_forbidden};
pub use time::{format_timestamp, now_millis};

/// Default maximum length of one line, in bytes, not counting the line ending.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Messages replayed per room on login and on `/join`.
pub const REPLAY_PER_ROOM: u32 = 20;
/// `/history` without a count.
pub const HISTORY_DEFAULT: u32 = 50;
/// The most `/history` returns in one answer.
pub const HISTORY_MAX: u32 = 500;
/// Failed logins on one connection before the server says `BYE`.
pub const MAX_LOGIN_ATTEMPTS: u32 = 3;
/// Shortest password `chat-admin`, `/passwd` and `NEWPASS` accept.
pub const MIN_PASSWORD_CHARS: usize = 8;
