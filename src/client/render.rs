use chrono::{DateTime, Local};

use crate::protocol::{ByeReason, ServerLine, StoredMessage};

fn local_time(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.with_timezone(&Local).format("%H:%M").to_string())
        .unwrap_or_else(|| "--:--".into())
}

fn message(m: &StoredMessage, replayed: bool) -> String {
    let marker = if replayed { " (history)" } else { "" };
    format!(
        "[{}] {} <{}> {}{marker}",
        local_time(m.time),
        m.room,
        m.nick,
        m.text
    )
}

/// What a person reading the plain client sees for one server line. `None` for lines the
/// client handles itself (login prompts) or that carry nothing to show (`END`).
pub fn render_line(line: &ServerLine) -> Option<String> {
    let text = match line {
        ServerLine::NickPrompt | ServerLine::PassPrompt | ServerLine::NewPassPrompt => return None,
        ServerLine::End(_) => return None,
        ServerLine::Welcome { text, .. } => format!("-- {text}"),
        ServerLine::Msg(m) => message(m, false),
        ServerLine::Hist(m) => message(m, true),
        ServerLine::Dm {
            time,
            from,
            to,
            text,
            ..
        } => format!("[{}] [private] {from} -> {to}: {text}", local_time(*time)),
        ServerLine::Join { room, time, nick } => {
            format!("[{}] {room} * {nick} is here", local_time(*time))
        }
        ServerLine::Leave {
            room,
            time,
            nick,
            reason,
        } => format!("[{}] {room} * {nick} left ({reason})", local_time(*time)),
        ServerLine::Room {
            room,
            members,
            online,
        } => format!("   {room}: {members} members, {online} online"),
        ServerLine::Member { room, nick, online } => {
            format!(
                "   {room}: {nick} ({})",
                if *online { "online" } else { "offline" }
            )
        }
        ServerLine::Info(text) => format!("-- {text}"),
        ServerLine::Err { code, text } => format!("!! {text} ({code})"),
        ServerLine::Bye(reason) => format!("-- Disconnected by the server: {}", bye_words(reason)),
    };
    Some(text)
}

/// A `BYE` reason in words.
pub fn bye_words(reason: &ByeReason) -> String {
    match reason {
        ByeReason::Quit => "you quit".into(),
        ByeReason::AuthFailed => "too many failed logins".into(),
        ByeReason::LoginTimeout => "you did not log in in time".into(),
        ByeReason::TooSlow => "your connection could not keep up".into(),
        ByeReason::ServerShutdown => "the server is shutting down".into(),
        ByeReason::Flooding => "you sent too much, too fast".into(),
        ByeReason::ServerBusy => "the server could not set up your session; try again".into(),
        ByeReason::Kicked(text) if text.is_empty() => "you were kicked".into(),
        ByeReason::Kicked(text) => format!("you were kicked {text}"),
        ByeReason::AccountLocked => "an admin locked your account".into(),
        ByeReason::AccountDeleted => "an admin deleted your account".into(),
        ByeReason::PasswordChanged => {
            "your password was changed; log in again with the new one".into()
        }
        ByeReason::TooManySessions => {
            "your account already has as many connections as the server allows; close one".into()
        }
        ByeReason::Other(word) => word.clone(),
    }
}
