use super::names::{Nick, RoomName};
use super::server_line::ErrorCode;
use super::text::{has_forbidden_control, is_blank};
use super::{HISTORY_DEFAULT, HISTORY_MAX};

/// One line from a logged-in client, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message: plain text goes to the current room (`room: None`), `/say` names one.
    Say {
        room: Option<RoomName>,
        text: String,
    },
    Join(RoomName),
    Part(Option<RoomName>),
    Msg {
        to: Nick,
        text: String,
    },
    /// One page of the room list: the rooms named after `after`, or the first.
    Rooms {
        after: Option<RoomName>,
    },
    Who(Option<RoomName>),
    History {
        room: Option<RoomName>,
        query: HistoryQuery,
    },
    Passwd {
        old: String,
        new: String,
    },
    /// Admins only: end every connection of `nick`.
    Kick {
        nick: Nick,
        reason: String,
    },
    Help,
    Quit,
}

/// Which stored messages a `/history` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The last `n`, oldest first.
    Last(u32),
    /// Up to `limit` with an id greater than `id`, oldest first.
    After { id: i64, limit: u32 },
}

/// A request the server refuses; it becomes one `ERR` line and the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {text}")]
pub struct CommandError {
    pub code: ErrorCode,
    pub text: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    fn usage(usage: &str) -> Self {
        Self::new(ErrorCode::BadArgs, format!("Usage: {usage}"))
    }
}

/// Parses one decoded line. `Ok(None)` is a blank line, which the protocol ignores.
pub fn parse_command(line: &str) -> Result<Option<Command>, CommandError> {
    if is_blank(line) {
        return Ok(None);
    }
    if has_forbidden_control(line) {
        return Err(CommandError::new(
            ErrorCode::BadText,
            "Control characters and invisible formatting characters (direction overrides, line separators) are not allowed",
        ));
    }
    let Some(after_slash) = line.strip_prefix('/') else {
        return Ok(Some(say(None, line)));
    };
    if after_slash.starts_with('/') {
        return Ok(Some(say(None, after_slash)));
    }
    let (name, rest) = split_word(after_slash);
    let command = match name.to_ascii_lowercase().as_str() {
        "join" => Command::Join(room_arg(single(rest, "/join #room")?)?),
        "part" => Command::Part(optional_room(rest, "/part [#room]")?),
        "say" => {
            let (room, text) = split_word(rest);
            if room.is_empty() || is_blank(text) {
                return Err(CommandError::usage("/say #room text"));
            }
            say(Some(room_arg(room)?), text)
        }
        "msg" => {
            let (nick, text) = split_word(rest);
            if nick.is_empty() || is_blank(text) {
                return Err(CommandError::usage("/msg nick text"));
            }
            let to = Nick::parse(nick)
                .map_err(|e| CommandError::new(ErrorCode::BadName, e.to_string()))?;
            Command::Msg {
                to,
                text: text.trim_end().to_owned(),
            }
        }
        "rooms" => match words(rest).as_slice() {
            [] => Command::Rooms { after: None },
            ["after", room] => Command::Rooms {
                after: Some(room_arg(room)?),
            },
            _ => return Err(CommandError::usage("/rooms [after #room]")),
        },
        "who" => Command::Who(optional_room(rest, "/who [#room]")?),
        "history" => parse_history(rest)?,
        "passwd" => parse_passwd(rest)?,
        "kick" => {
            let (nick, reason) = split_word(rest);
            if nick.is_empty() {
                return Err(CommandError::usage("/kick nick [reason]"));
            }
            Command::Kick {
                nick: Nick::parse(nick)
                    .map_err(|e| CommandError::new(ErrorCode::BadName, e.to_string()))?,
                reason: reason.trim().to_owned(),
            }
        }
        "help" => Command::Help,
        "quit" => Command::Quit,
        _ => {
            return Err(CommandError::new(
                ErrorCode::UnknownCommand,
                format!("Unknown command /{name}; type /help for the list"),
            ))
        }
    };
    Ok(Some(command))
}

fn say(room: Option<RoomName>, text: &str) -> Command {
    Command::Say {
        room,
        text: text.trim_end().to_owned(),
    }
}

/// Splits off the first space-separated word; the rest keeps its inner spacing.
fn split_word(input: &str) -> (&str, &str) {
    let input = input.trim_start_matches(' ');
    match input.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_start_matches(' ')),
        None => (input, ""),
    }
}

fn words(input: &str) -> Vec<&str> {
    input.split_whitespace().collect()
}

fn single<'a>(rest: &'a str, usage: &str) -> Result<&'a str, CommandError> {
    match words(rest).as_slice() {
        [one] => Ok(one),
        _ => Err(CommandError::usage(usage)),
    }
}

fn optional_room(rest: &str, usage: &str) -> Result<Option<RoomName>, CommandError> {
    match words(rest).as_slice() {
        [] => Ok(None),
        [room] => room_arg(room).map(Some),
        _ => Err(CommandError::usage(usage)),
    }
}

fn room_arg(word: &str) -> Result<RoomName, CommandError> {
    RoomName::parse(word).map_err(|e| CommandError::new(ErrorCode::BadName, e.to_string()))
}

const PASSWD_USAGE: &str = "/passwd old new, or with spaces in a password: \
/passwd \"old pass phrase\" \"new pass phrase\" (inside quotes, write \\\" for \" and \\\\ for \\)";

/// `/passwd OLD NEW`. Each password is a double-quoted string, in which `\"` and `\\` stand
/// for `"` and `\` (so any password can be written), or else: the old one a word, the new
/// one the rest of the line, as typed.
fn parse_passwd(rest: &str) -> Result<Command, CommandError> {
    let usage = || CommandError::usage(PASSWD_USAGE);
    let rest = rest.trim_start_matches(' ');
    let (old, rest) = match rest.strip_prefix('"') {
        Some(quoted) => unquote(quoted).ok_or_else(usage)?,
        None => {
            let (word, rest) = split_word(rest);
            (word.to_owned(), rest)
        }
    };
    let rest = rest.trim_start_matches(' ');
    let new = match rest.strip_prefix('"') {
        Some(quoted) => match unquote(quoted) {
            Some((new, after)) if after.trim().is_empty() => new,
            _ => return Err(usage()),
        },
        None => rest.to_owned(),
    };
    if old.is_empty() || new.is_empty() {
        return Err(usage());
    }
    Ok(Command::Passwd { old, new })
}

/// Reads a quoted string whose opening quote is already consumed: the unescaped text, and
/// what follows the closing quote (which must end the line or be followed by a space).
fn unquote(input: &str) -> Option<(String, &str)> {
    let mut text = String::new();
    let mut chars = input.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => text.push(escaped),
                _ => return None,
            },
            '"' => {
                let after = &input[at + 1..];
                return (after.is_empty() || after.starts_with(' ')).then_some((text, after));
            }
            other => text.push(other),
        }
    }
    None
}

/// The `/passwd` line that sets `new` in place of `old`, whatever characters they hold:
/// what the bundled client sends after asking for both without echo.
pub fn passwd_line(old: &str, new: &str) -> String {
    format!("/passwd {} {}", quote(old), quote(new))
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

const HISTORY_USAGE: &str =
    "/history [#room] [n]  or  /history [#room] after ID [n]  (n at most 500)";

fn parse_history(rest: &str) -> Result<Command, CommandError> {
    let mut args = words(rest);
    let room = match args.first() {
        Some(first) if first.starts_with('#') => {
            let room = room_arg(first)?;
            args.remove(0);
            Some(room)
        }
        _ => None,
    };
    let query = match args.as_slice() {
        [] => HistoryQuery::Last(HISTORY_DEFAULT),
        [n] => HistoryQuery::Last(count(n)?),
        ["after", id] => HistoryQuery::After {
            id: message_id(id)?,
            limit: HISTORY_MAX,
        },
        ["after", id, n] => HistoryQuery::After {
            id: message_id(id)?,
            limit: count(n)?,
        },
        _ => return Err(CommandError::usage(HISTORY_USAGE)),
    };
    Ok(Command::History { room, query })
}

fn count(word: &str) -> Result<u32, CommandError> {
    match word.parse::<u32>() {
        Ok(n) if (1..=HISTORY_MAX).contains(&n) => Ok(n),
        _ => Err(CommandError::usage(HISTORY_USAGE)),
    }
}

fn message_id(word: &str) -> Result<i64, CommandError> {
    match word.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(id),
        _ => Err(CommandError::usage(HISTORY_USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Command {
        parse_command(line).unwrap().unwrap()
    }

    fn code(line: &str) -> ErrorCode {
        parse_command(line).unwrap_err().code
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn plain_text_and_escapes() {
        assert_eq!(parse("hello  world  "), say(None, "hello  world"));
        assert_eq!(parse("//etc/passwd"), say(None, "/etc/passwd"));
        assert_eq!(parse("  indented"), say(None, "  indented"));
        assert_eq!(parse_command("   ").unwrap(), None);
        assert_eq!(parse_command("").unwrap(), None);
    }

    #[test]
    fn room_commands() {
        assert_eq!(parse("/join #Ops"), Command::Join(room("#ops")));
        assert_eq!(parse("/JOIN #ops"), Command::Join(room("#ops")));
        assert_eq!(parse("/part"), Command::Part(None));
        assert_eq!(parse("/part #ops"), Command::Part(Some(room("#ops"))));
        assert_eq!(
            parse("/say #ops hi there"),
            say(Some(room("#ops")), "hi there")
        );
        assert_eq!(parse("/rooms"), Command::Rooms { after: None });
        assert_eq!(
            parse("/rooms after #Ops"),
            Command::Rooms {
                after: Some(room("#ops"))
            }
        );
        assert_eq!(code("/rooms after"), ErrorCode::BadArgs);
        assert_eq!(code("/rooms after ops"), ErrorCode::BadName);
        assert_eq!(parse("/who"), Command::Who(None));
        assert_eq!(parse("/who #a"), Command::Who(Some(room("#a"))));
        assert_eq!(code("/join"), ErrorCode::BadArgs);
        assert_eq!(code("/join #a #b"), ErrorCode::BadArgs);
        assert_eq!(code("/join ops"), ErrorCode::BadName);
        assert_eq!(code("/say #ops"), ErrorCode::BadArgs);
        assert_eq!(code("/say"), ErrorCode::BadArgs);
        assert_eq!(code("/rooms x"), ErrorCode::BadArgs);
    }

    #[test]
    fn private_messages() {
        assert_eq!(
            parse("/msg Bob  hi  bob "),
            Command::Msg {
                to: Nick::parse("Bob").unwrap(),
                text: "hi  bob".into()
            }
        );
        assert_eq!(code("/msg bob"), ErrorCode::BadArgs);
        assert_eq!(code("/msg 9bob hi"), ErrorCode::BadName);
    }

    #[test]
    fn history_forms() {
        let h = |room: Option<&str>, query| Command::History {
            room: room.map(|r| RoomName::parse(r).unwrap()),
            query,
        };
        assert_eq!(parse("/history"), h(None, HistoryQuery::Last(50)));
        assert_eq!(parse("/history 7"), h(None, HistoryQuery::Last(7)));
        assert_eq!(parse("/history #a"), h(Some("#a"), HistoryQuery::Last(50)));
        assert_eq!(
            parse("/history #a 500"),
            h(Some("#a"), HistoryQuery::Last(500))
        );
        assert_eq!(
            parse("/history #a after 12"),
            h(Some("#a"), HistoryQuery::After { id: 12, limit: 500 })
        );
        assert_eq!(
            parse("/history #a after 12 3"),
            h(Some("#a"), HistoryQuery::After { id: 12, limit: 3 })
        );
        for bad in [
            "/history 0",
            "/history 501",
            "/history x",
            "/history #a after",
            "/history #a after -1",
            "/history #a 1 2",
        ] {
            assert_eq!(code(bad), ErrorCode::BadArgs, "{bad}");
        }
    }

    fn passwd(old: &str, new: &str) -> Command {
        Command::Passwd {
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn passwords_with_spaces_and_quotes_can_be_written() {
        assert_eq!(
            parse(r#"/passwd "correct horse battery" "a new one""#),
            passwd("correct horse battery", "a new one")
        );
        assert_eq!(
            parse(r#"/passwd "old pass" new pass phrase "#),
            passwd("old pass", "new pass phrase ")
        );
        assert_eq!(
            parse(r#"/passwd "say \"hi\" \\o/" "  spaced  ""#),
            passwd(r#"say "hi" \o/"#, "  spaced  ")
        );
        for bad in [
            r#"/passwd "unterminated new"#,
            r#"/passwd "old"x new"#,
            r#"/passwd "bad \escape" new"#,
            r#"/passwd "old" "new" extra"#,
            r#"/passwd "" new"#,
            r#"/passwd old """#,
        ] {
            assert_eq!(code(bad), ErrorCode::BadArgs, "{bad}");
        }
        for (old, new) in [
            ("plain", "plain two"),
            (r#"a "quoted" \ mess "#, r#"\"#),
            (" lead", "trail "),
        ] {
            assert_eq!(parse(&passwd_line(old, new)), passwd(old, new));
        }
    }

    #[test]
    fn other_commands_and_errors() {
        assert_eq!(
            parse("/passwd old new pass phrase"),
            Command::Passwd {
                old: "old".into(),
                new: "new pass phrase".into()
            }
        );
        assert_eq!(code("/passwd old"), ErrorCode::BadArgs);
        assert_eq!(code("/passwd"), ErrorCode::BadArgs);
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(
            parse("/kick Bob  spamming the room "),
            Command::Kick {
                nick: Nick::parse("Bob").unwrap(),
                reason: "spamming the room".into()
            }
        );
        assert_eq!(
            parse("/KICK bob"),
            Command::Kick {
                nick: Nick::parse("bob").unwrap(),
                reason: String::new()
            }
        );
        assert_eq!(parse_command("/kick").unwrap_err().code, ErrorCode::BadArgs);
        assert_eq!(
            parse_command("/kick b@d").unwrap_err().code,
            ErrorCode::BadName
        );
        assert_eq!(parse("/quit going home"), Command::Quit);
        assert_eq!(code("/frobnicate"), ErrorCode::UnknownCommand);
        assert_eq!(code("/"), ErrorCode::UnknownCommand);
        assert_eq!(code("hi \u{1b}[2J"), ErrorCode::BadText);
        assert_eq!(code("/say #a x\u{7}"), ErrorCode::BadText);
    }
}
