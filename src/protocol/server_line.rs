use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::DateTime;

use super::time::format_timestamp;

/// A room message as stored: the payload of `MSG` and `HIST` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Server-wide id from the store; increasing in acceptance order.
    pub id: i64,
    /// Milliseconds since the Unix epoch, set when the server accepted the message.
    pub time: i64,
    pub room: String,
    pub nick: String,
    pub text: String,
}

/// Every line the server sends. Formatting lives in one place (`Display`), and `parse` is its
/// inverse, used by the bundled client and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    NickPrompt,
    PassPrompt,
    NewPassPrompt,
    Welcome {
        nick: String,
        text: String,
    },
    Msg(StoredMessage),
    Hist(StoredMessage),
    Dm {
        id: i64,
        time: i64,
        from: String,
        to: String,
        text: String,
    },
    Join {
        room: String,
        time: i64,
        nick: String,
    },
    Leave {
        room: String,
        time: i64,
        nick: String,
        reason: LeaveReason,
    },
    Room {
        room: String,
        members: u64,
        online: u64,
    },
    Member {
        room: String,
        nick: String,
        online: bool,
    },
    End(String),
    Info(String),
    Err {
        code: ErrorCode,
        text: String,
    },
    Bye(ByeReason),
}

impl ServerLine {
    pub fn info(text: impl Into<String>) -> Self {
        Self::Info(text.into())
    }

    pub fn err(code: ErrorCode, text: impl Into<String>) -> Self {
        Self::Err {
            code,
            text: text.into(),
        }
    }

    pub fn end(what: &str) -> Self {
        Self::End(what.to_owned())
    }

    /// The wire form with its LF, ready to be shared by every recipient's queue.
    pub fn to_bytes(&self) -> Bytes {
        let mut line = self.to_string();
        line.push('\n');
        Bytes::from(line)
    }

    /// Parses one line without its line ending. `None` for anything not in the contract.
    pub fn parse(line: &str) -> Option<Self> {
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        let mut fields = Fields(rest);
        let parsed = match keyword {
            "NICK" if rest.is_empty() => Self::NickPrompt,
            "PASS" if rest.is_empty() => Self::PassPrompt,
            "NEWPASS" if rest.is_empty() => Self::NewPassPrompt,
            "WELCOME" => Self::Welcome {
                nick: fields.word()?,
                text: fields.rest(),
            },
            "MSG" | "HIST" => {
                let message = StoredMessage {
                    room: fields.word()?,
                    id: fields.number()?,
                    time: fields.time()?,
                    nick: fields.word()?,
                    text: fields.rest(),
                };
                if keyword == "MSG" {
                    Self::Msg(message)
                } else {
                    Self::Hist(message)
                }
            }
            "DM" => Self::Dm {
                id: fields.number()?,
                time: fields.time()?,
                from: fields.word()?,
                to: fields.word()?,
                text: fields.rest(),
            },
            "JOIN" => Self::Join {
                room: fields.word()?,
                time: fields.time()?,
                nick: fields.last_word()?,
            },
            "LEAVE" => Self::Leave {
                room: fields.word()?,
                time: fields.time()?,
                nick: fields.word()?,
                reason: fields.last_word()?.parse().ok()?,
            },
            "ROOM" => Self::Room {
                room: fields.word()?,
                members: fields.number()?,
                online: fields.last_word()?.parse().ok()?,
            },
            "MEMBER" => Self::Member {
                room: fields.word()?,
                nick: fields.word()?,
                online: match fields.last_word()?.as_str() {
                    "online" => true,
                    "offline" => false,
                    _ => return None,
                },
            },
            "END" => Self::End(fields.last_word()?),
            "INFO" => Self::Info(fields.rest()),
            "ERR" => Self::Err {
                code: fields.word()?.parse().ok()?,
                text: fields.rest(),
            },
            // The reason word may be followed by free text (`BYE kicked by alice: spam`).
            "BYE" => Self::Bye(ByeReason::parse(&fields.word()?, fields.rest())),
            _ => return None,
        };
        Some(parsed)
    }
}

/// Walks the space-separated fields of a line.
struct Fields<'a>(&'a str);

impl Fields<'_> {
    fn word(&mut self) -> Option<String> {
        let (word, rest) = self.0.split_once(' ').unwrap_or((self.0, ""));
        if word.is_empty() {
            return None;
        }
        self.0 = rest;
        Some(word.to_owned())
    }

    fn last_word(&mut self) -> Option<String> {
        let word = self.word()?;
        self.0.is_empty().then_some(word)
    }

    fn number<T: FromStr>(&mut self) -> Option<T> {
        self.word()?.parse().ok()
    }

    fn time(&mut self) -> Option<i64> {
        Some(
            DateTime::parse_from_rfc3339(&self.word()?)
                .ok()?
                .timestamp_millis(),
        )
    }

    fn rest(&mut self) -> String {
        std::mem::take(&mut self.0).to_owned()
    }
}

impl fmt::Display for ServerLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NickPrompt => f.write_str("NICK"),
            Self::PassPrompt => f.write_str("PASS"),
            Self::NewPassPrompt => f.write_str("NEWPASS"),
            Self::Welcome { nick, text } => write!(f, "WELCOME {nick} {text}"),
            Self::Msg(m) => write_message(f, "MSG", m),
            Self::Hist(m) => write_message(f, "HIST", m),
            Self::Dm {
                id,
                time,
                from,
                to,
                text,
            } => write!(f, "DM {id} {} {from} {to} {text}", format_timestamp(*time)),
            Self::Join { room, time, nick } => {
                write!(f, "JOIN {room} {} {nick}", format_timestamp(*time))
            }
            Self::Leave {
                room,
                time,
                nick,
                reason,
            } => write!(
                f,
                "LEAVE {room} {} {nick} {reason}",
                format_timestamp(*time)
            ),
            Self::Room {
                room,
                members,
                online,
            } => write!(f, "ROOM {room} {members} {online}"),
            Self::Member { room, nick, online } => {
                let state = if *online { "online" } else { "offline" };
                write!(f, "MEMBER {room} {nick} {state}")
            }
            Self::End(what) => write!(f, "END {what}"),
            Self::Info(text) => write!(f, "INFO {text}"),
            Self::Err { code, text } => write!(f, "ERR {code} {text}"),
            Self::Bye(reason) => write!(f, "BYE {reason}"),
        }
    }
}

fn write_message(f: &mut fmt::Formatter<'_>, keyword: &str, m: &StoredMessage) -> fmt::Result {
    write!(
        f,
        "{keyword} {} {} {} {} {}",
        m.room,
        m.id,
        format_timestamp(m.time),
        m.nick,
        m.text
    )
}

/// Declares a closed set of protocol words with their wire spelling.
macro_rules! protocol_words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(word: &str) -> Result<Self, ()> {
                match word { $($word => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }
    };
}

protocol_words! {
    /// The code of an `ERR` line.
    ErrorCode {
        AuthFailed => "auth-failed",
        RateLimited => "rate-limited",
        LineTooLong => "line-too-long",
        BadUtf8 => "bad-utf8",
        BadText => "bad-text",
        UnknownCommand => "unknown-command",
        BadArgs => "bad-args",
        BadName => "bad-name",
        NoSuchRoom => "no-such-room",
        NoSuchUser => "no-such-user",
        NotInRoom => "not-in-room",
        Forbidden => "forbidden",
        ServerBusy => "server-busy",
        LimitReached => "limit-reached",
    }
}

protocol_words! {
    /// Why a `LEAVE` happened.
    LeaveReason {
        Part => "part",
        Quit => "quit",
        Disconnect => "disconnect",
        Kicked => "kicked",
        Timeout => "timeout",
    }
}

/// Why the server closes a connection (`BYE reason`). Unknown words from a newer server are
/// kept, so a client can still show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByeReason {
    Quit,
    AuthFailed,
    LoginTimeout,
    TooSlow,
    ServerShutdown,
    /// The server could not set up the session (its storage failed).
    ServerBusy,
    /// The client kept sending faster than flood control allows.
    Flooding,
    /// An admin's `/kick`; the text says who and why.
    Kicked(String),
    /// An admin locked the account.
    AccountLocked,
    /// An admin deleted the account.
    AccountDeleted,
    /// The password was changed elsewhere; log in with the new one.
    PasswordChanged,
    /// The account already has as many connections logged in as the server allows.
    TooManySessions,
    Other(String),
}

impl ByeReason {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Quit => "quit",
            Self::AuthFailed => "auth-failed",
            Self::LoginTimeout => "login-timeout",
            Self::TooSlow => "too-slow",
            Self::ServerShutdown => "server-shutdown",
            Self::ServerBusy => "server-busy",
            Self::Flooding => "flooding",
            Self::Kicked(_) => "kicked",
            Self::AccountLocked => "account-locked",
            Self::AccountDeleted => "account-deleted",
            Self::PasswordChanged => "password-changed",
            Self::TooManySessions => "too-many-sessions",
            Self::Other(word) => word,
        }
    }

    fn parse(word: &str, text: String) -> Self {
        match word {
            "kicked" => Self::Kicked(text),
            "account-locked" => Self::AccountLocked,
            "account-deleted" => Self::AccountDeleted,
            "password-changed" => Self::PasswordChanged,
            "too-many-sessions" => Self::TooManySessions,
            "quit" => Self::Quit,
            "auth-failed" => Self::AuthFailed,
            "login-timeout" => Self::LoginTimeout,
            "too-slow" => Self::TooSlow,
            "server-shutdown" => Self::ServerShutdown,
            "server-busy" => Self::ServerBusy,
            "flooding" => Self::Flooding,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ByeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kicked(text) if !text.is_empty() => write!(f, "kicked {text}"),
            other => f.write_str(other.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_262_463_123;

    fn message() -> StoredMessage {
        StoredMessage {
            id: 42,
            time: T,
            room: "#general".into(),
            nick: "alice".into(),
            text: "hello  world".into(),
        }
    }

    #[test]
    fn formats_as_the_contract_writes() {
        let ts = format_timestamp(T);
        let cases = [
            (ServerLine::NickPrompt, "NICK".to_owned()),
            (
                ServerLine::Msg(message()),
                format!("MSG #general 42 {ts} alice hello  world"),
            ),
            (
                ServerLine::Hist(message()),
                format!("HIST #general 42 {ts} alice hello  world"),
            ),
            (
                ServerLine::Dm {
                    id: 7,
                    time: T,
                    from: "a".into(),
                    to: "b".into(),
                    text: "psst".into(),
                },
                format!("DM 7 {ts} a b psst"),
            ),
            (
                ServerLine::Leave {
                    room: "#x".into(),
                    time: T,
                    nick: "bob".into(),
                    reason: LeaveReason::Quit,
                },
                format!("LEAVE #x {ts} bob quit"),
            ),
            (
                ServerLine::Member {
                    room: "#x".into(),
                    nick: "bob".into(),
                    online: false,
                },
                "MEMBER #x bob offline".into(),
            ),
            (
                ServerLine::err(ErrorCode::NotInRoom, "nope"),
                "ERR not-in-room nope".into(),
            ),
            (ServerLine::Bye(ByeReason::TooSlow), "BYE too-slow".into()),
            (
                ServerLine::Bye(ByeReason::Kicked("by alice: spam".into())),
                "BYE kicked by alice: spam".into(),
            ),
            (
                ServerLine::Bye(ByeReason::Kicked(String::new())),
                "BYE kicked".into(),
            ),
            (
                ServerLine::Bye(ByeReason::AccountLocked),
                "BYE account-locked".into(),
            ),
            (
                ServerLine::Bye(ByeReason::PasswordChanged),
                "BYE password-changed".into(),
            ),
            (
                ServerLine::Bye(ByeReason::TooManySessions),
                "BYE too-many-sessions".into(),
            ),
        ];
        for (line, wire) in cases {
            assert_eq!(line.to_string(), wire);
            assert_eq!(ServerLine::parse(&wire), Some(line));
        }
        assert_eq!(&ServerLine::end("who").to_bytes()[..], b"END who\n");
    }

    #[test]
    fn rejects_what_is_not_in_the_contract() {
        for bad in [
            "",
            "HELLO",
            "MSG #a x 2026 bob hi",
            "JOIN #a",
            "NICK extra",
            "MEMBER #a b maybe",
        ] {
            assert_eq!(ServerLine::parse(bad), None, "{bad}");
        }
    }
}
