use chrono::{DateTime, Local};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

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

/// What starts every continuation row of a wrapped line in the plain client. Every line
/// of the plain client starts with a time, `--`, `!!` or spaces, never with this, and a
/// message's text never starts a row: so another person's text, however it is padded, can
/// never pass for a line of its own.
pub const CONTINUATION: &str = "     | ";

/// Wraps `text` into rows of at most `width` terminal cells: at spaces where possible, by
/// graphemes (as the terminal draws them) otherwise. Rows after the first start with
/// [`CONTINUATION`]; spaces at a wrap point are dropped, so a long run of spaces cannot
/// make an empty-looking row either. A tab is shown as a space, whose width is known.
pub fn wrap_rows(text: &str, width: usize) -> Vec<String> {
    let text = text.replace('\t', " ");
    let indent = CONTINUATION.width();
    if width <= indent + 1 {
        return vec![text];
    }
    let mut rows = vec![String::new()];
    let mut used = 0;
    let graphemes: Vec<&str> = text.graphemes(true).collect();
    let mut at = 0;
    while at < graphemes.len() {
        let is_space = graphemes[at] == " ";
        let end = graphemes[at..]
            .iter()
            .position(|g| (*g == " ") != is_space)
            .map_or(graphemes.len(), |n| at + n);
        let token = &graphemes[at..end];
        at = end;
        let token_width: usize = token.iter().map(|g| g.width()).sum();
        let row_start = if rows.len() == 1 { 0 } else { indent };
        if is_space {
            let starts_continuation = rows.len() > 1 && used == row_start;
            if used + token_width <= width && !starts_continuation {
                rows.last_mut().expect("a row").push_str(&token.concat());
                used += token_width;
            } else if used + token_width > width && used > row_start {
                continuation_row(&mut rows, &mut used);
            }
            continue;
        }
        if used + token_width > width && token_width <= width - indent && used > row_start {
            continuation_row(&mut rows, &mut used);
        }
        for grapheme in token {
            let grapheme_width = grapheme.width();
            let row_start = if rows.len() == 1 { 0 } else { indent };
            if used + grapheme_width > width && used > row_start {
                continuation_row(&mut rows, &mut used);
            }
            rows.last_mut().expect("a row").push_str(grapheme);
            used += grapheme_width;
        }
    }
    for row in &mut rows {
        row.truncate(row.trim_end().len());
    }
    rows
}

fn continuation_row(rows: &mut Vec<String>, used: &mut usize) {
    rows.push(CONTINUATION.to_owned());
    *used = CONTINUATION.width();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_cannot_make_a_fake_line() {
        // 80 columns: the spaces push the fake to the start of the next row.
        let text = format!("[12:00] #general <mallory> hi{}", " ".repeat(51))
            + "[12:01] #general <alice> send me your password";
        let rows = wrap_rows(&text, 80);
        assert_eq!(rows[0], "[12:00] #general <mallory> hi");
        for row in &rows[1..] {
            assert!(row.starts_with(CONTINUATION), "{row:?}");
        }
        // However long the padding: never an empty-looking row, nothing at column 0.
        let text = format!("[12:00] #general <mallory> hi{}x", " ".repeat(500));
        assert_eq!(
            wrap_rows(&text, 80),
            ["[12:00] #general <mallory> hi", "     | x"]
        );
    }

    #[test]
    fn rows_fit_the_width_by_cells() {
        let text =
            "[12:00] #general <bob> 你好世界 🎉 a-very-long-word-that-does-not-fit-at-all ok";
        let rows = wrap_rows(text, 20);
        for row in &rows {
            assert!(row.width() <= 20, "{row:?} in {rows:?}");
        }
        assert_eq!(
            rows.concat().replace(CONTINUATION, "").replace(' ', ""),
            text.replace(' ', "")
        );
        assert_eq!(wrap_rows("short\tline", 80), ["short line"]);
        assert_eq!(wrap_rows("   #a: 1 members", 80), ["   #a: 1 members"]);
    }
}
