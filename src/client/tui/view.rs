//! Drawing the client: the status bar on top, the conversation list on the left, the
//! messages of the current conversation, and the input line at the bottom. Lines wrap here
//! (by terminal cells, so wide characters and emoji keep the layout), which is also what
//! makes scrolling by rows exact.

use chrono::{DateTime, TimeZone};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::state::{App, Conversation, ConversationKey, Entry, EntryKind, Link};

/// Narrower terminals drop the conversation list (Ctrl+N/P still switch).
const SIDEBAR_MIN_TERMINAL_WIDTH: u16 = 50;
const SIDEBAR_WIDTH: u16 = 20;
/// `HH:MM `: continuation rows of a wrapped message start under its text.
const TIME_WIDTH: usize = 6;

const NICK_COLORS: [Color; 10] = [
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
];

/// The same color for a nickname everywhere and every time (FNV-1a of its lower case, not a
/// per-process random hash).
pub fn nick_color(nick: &str) -> Color {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in nick.to_lowercase().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    NICK_COLORS[hash as usize % NICK_COLORS.len()]
}

pub fn draw<Tz: TimeZone>(frame: &mut Frame, app: &mut App, zone: &Tz) {
    let [status, body, input] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let messages = if body.width >= SIDEBAR_MIN_TERMINAL_WIDTH {
        let [sidebar, messages] =
            Layout::horizontal([Constraint::Length(SIDEBAR_WIDTH), Constraint::Min(1)]).areas(body);
        draw_sidebar(frame, app, sidebar);
        messages
    } else {
        body
    };
    draw_messages(frame, app, messages, zone);
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let (link, link_style) = match &app.link {
        Link::Connected => ("connected".to_owned(), Style::new().fg(Color::Green)),
        Link::Connecting { attempt } => (
            format!("connecting (attempt {attempt})"),
            Style::new().fg(Color::Yellow),
        ),
        Link::Reconnecting {
            attempt,
            in_seconds,
        } => {
            // The key first: a long error may not fit.
            let error = app
                .last_error
                .as_ref()
                .map(|e| format!(" | last: {e}"))
                .unwrap_or_default();
            (
                format!("reconnecting in {in_seconds} s (attempt {attempt}) Ctrl+R: now{error}"),
                Style::new().fg(Color::Yellow),
            )
        }
        Link::Closed(reason) => (
            format!("ended: {reason} | Ctrl+C: quit"),
            Style::new().fg(Color::Red),
        ),
    };
    let bar = Style::new().bg(Color::DarkGray).fg(Color::White);
    let mut spans = vec![
        Span::styled(format!(" {link} "), link_style.bg(Color::DarkGray)),
        Span::raw(format!("| {} | {} ", app.server, app.nick)),
    ];
    if !app.outgoing.is_empty() {
        spans.push(Span::styled(
            format!("| {} lines to send ", app.outgoing.len()),
            Style::new().fg(Color::Yellow),
        ));
    }
    if let Some(conversation) = app.current() {
        spans.push(Span::raw(format!("| {} ", conversation.title)));
        if conversation.scroll > 0 {
            spans.push(Span::styled(
                "| scrolled back (End: live) ",
                Style::new().fg(Color::Yellow),
            ));
        }
        if conversation.key_is_room() && !conversation.online.is_empty() {
            spans.push(Span::raw(format!(
                "| online: {} ",
                conversation.online.join(", ")
            )));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

fn draw_sidebar(frame: &mut Frame, app: &App, area: Rect) {
    let lines: Vec<Line> = app
        .conversations
        .iter()
        .enumerate()
        .map(|(at, conversation)| {
            let number = if at < 9 {
                format!("{} ", at + 1)
            } else {
                "  ".to_owned()
            };
            let name = match conversation.key {
                ConversationKey::Room(_) => conversation.title.clone(),
                ConversationKey::Direct(_) => format!("@{}", conversation.title),
            };
            let mut style = Style::new();
            if conversation.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            if conversation.mentioned {
                style = style.fg(Color::Yellow);
            }
            if at == app.current {
                style = style.add_modifier(Modifier::REVERSED);
            }
            let mut spans = vec![
                Span::styled(number, Style::new().fg(Color::DarkGray)),
                Span::styled(name, style),
            ];
            if conversation.unread > 0 {
                let mark = if conversation.mentioned { "!" } else { "" };
                spans.push(Span::styled(
                    format!(" {}{mark}", conversation.unread),
                    Style::new().fg(if conversation.mentioned {
                        Color::Yellow
                    } else {
                        Color::Cyan
                    }),
                ));
            }
            Line::from(spans)
        })
        .collect();
    let block = Block::new()
        .borders(Borders::RIGHT)
        .border_style(Style::new().fg(Color::DarkGray));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_messages<Tz: TimeZone>(frame: &mut Frame, app: &mut App, area: Rect, zone: &Tz) {
    let height = usize::from(area.height);
    let width = usize::from(area.width).saturating_sub(1).max(1);
    app.page_rows = height.max(2) - 1;
    let current = app.current;
    let Some(conversation) = app.conversations.get_mut(current) else {
        // No rooms and no private conversations: what the server said, and what to do.
        let mut lines: Vec<Line> = app
            .orphans
            .iter()
            .flat_map(|entry| entry_rows(entry, width, zone))
            .collect();
        lines.push(Line::styled(
            "You are in no room. Type /join #room to start.",
            Style::new().fg(Color::DarkGray),
        ));
        let pane = Rect::new(
            area.x + 1,
            area.y,
            area.width.saturating_sub(1),
            area.height,
        );
        frame.render_widget(Paragraph::new(lines), pane);
        return;
    };
    let rows = last_rows(conversation, width, height + conversation.scroll, zone);
    // Scrolling stops at the oldest row.
    conversation.scroll = conversation.scroll.min(rows.len().saturating_sub(height));
    let end = rows.len() - conversation.scroll;
    let start = end.saturating_sub(height);
    let shown = rows[start..end].to_vec();
    // The newest row sits at the bottom, as in every chat.
    let top = area.y + area.height - shown.len() as u16;
    let pane = Rect::new(
        area.x + 1,
        top,
        area.width.saturating_sub(1),
        shown.len() as u16,
    );
    frame.render_widget(Paragraph::new(shown), pane);
}

/// The newest `wanted` rows of a conversation (fewer if it has fewer), oldest first.
fn last_rows<Tz: TimeZone>(
    conversation: &Conversation,
    width: usize,
    wanted: usize,
    zone: &Tz,
) -> Vec<Line<'static>> {
    let mut blocks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut count = 0;
    let entries = &conversation.entries;
    for at in (0..entries.len()).rev() {
        let entry = &entries[at];
        let mut rows = entry_rows(entry, width, zone);
        let day = local_day(entry.time, zone);
        let previous_day = at.checked_sub(1).map(|p| local_day(entries[p].time, zone));
        if previous_day.as_ref() != Some(&day) {
            rows.insert(0, day_separator(entry.time, width, zone));
        }
        count += rows.len();
        blocks.push(rows);
        if count >= wanted {
            break;
        }
    }
    blocks.into_iter().rev().flatten().collect()
}

/// `--- Saturday 21 November 2026 ---`, or a shorter form where that does not fit.
fn day_separator<Tz: TimeZone>(millis: i64, width: usize, zone: &Tz) -> Line<'static> {
    let text = local_day(millis, zone)
        .and_then(|day| {
            ["--- %A %-d %B %Y ---", "-- %a %-d %b %Y --", "%Y-%m-%d"]
                .iter()
                .map(|format| day.format(format).to_string())
                .find(|text| text.chars().count() <= width)
        })
        .unwrap_or_default();
    Line::styled(text, Style::new().fg(Color::DarkGray))
}

fn local_time<Tz: TimeZone>(millis: i64, zone: &Tz) -> Option<DateTime<Tz>> {
    DateTime::from_timestamp_millis(millis).map(|t| t.with_timezone(zone))
}

fn local_day<Tz: TimeZone>(millis: i64, zone: &Tz) -> Option<chrono::NaiveDate> {
    local_time(millis, zone).map(|t| t.date_naive())
}

fn hour_minute<Tz: TimeZone>(millis: i64, zone: &Tz) -> String {
    local_time(millis, zone)
        .map(|t| t.naive_local().format("%H:%M ").to_string())
        .unwrap_or_else(|| "--:-- ".into())
}

/// One entry as styled pieces, wrapped to `width` cells.
fn entry_rows<Tz: TimeZone>(entry: &Entry, width: usize, zone: &Tz) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let time = Span::styled(hour_minute(entry.time, zone), dim);
    let spans = match &entry.kind {
        EntryKind::Message {
            nick,
            text,
            replayed,
            own,
            mention,
        } => {
            let mut nick_style = Style::new().fg(nick_color(nick));
            let mut text_style = Style::new();
            if *own {
                nick_style = nick_style.add_modifier(Modifier::BOLD);
                text_style = text_style.fg(Color::Gray);
            }
            if *mention {
                text_style = text_style.fg(Color::Yellow).add_modifier(Modifier::BOLD);
            }
            if *replayed {
                nick_style = nick_style.add_modifier(Modifier::DIM);
                text_style = text_style.add_modifier(Modifier::DIM);
            }
            let marker = if *replayed { "~ " } else { "" };
            vec![
                time,
                Span::styled(marker, dim),
                Span::styled(format!("<{nick}>"), nick_style),
                Span::raw(" "),
                Span::styled(text.clone(), text_style),
            ]
        }
        EntryKind::Joined { nick } => vec![time, Span::styled(format!("--> {nick} is here"), dim)],
        EntryKind::Left { nick, reason } => vec![
            time,
            Span::styled(format!("<-- {nick} left ({reason})"), dim),
        ],
        EntryKind::Info(text) => vec![
            time,
            Span::styled(format!("-- {text}"), Style::new().fg(Color::Cyan)),
        ],
        EntryKind::Error(text) => vec![
            time,
            Span::styled(
                format!("!! {text}"),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
        ],
    };
    let indent = if width > TIME_WIDTH * 3 {
        TIME_WIDTH
    } else {
        0
    };
    wrap(&spans, width, indent)
}

/// Greedy word wrap by terminal cells, a grapheme at a time (as the terminal draws them: an
/// emoji with a variation selector or a joined family is one picture). Rows after the first
/// start with `indent` spaces; words longer than a row are cut; spaces at a wrap point are
/// dropped.
pub fn wrap(spans: &[Span<'_>], width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = indent.min(width - 1);
    let cells: Vec<(&str, Style)> = spans
        .iter()
        .flat_map(|span| {
            span.content
                .graphemes(true)
                .map(move |grapheme| (grapheme, span.style))
        })
        .collect();

    let mut rows: Vec<Vec<(&str, Style)>> = vec![Vec::new()];
    let mut used = 0;
    let mut at = 0;
    while at < cells.len() {
        // The next token: one space, or a run of non-spaces.
        let end = if cells[at].0 == " " {
            at + 1
        } else {
            cells[at..]
                .iter()
                .position(|(g, _)| *g == " ")
                .map_or(cells.len(), |n| at + n)
        };
        let token = &cells[at..end];
        let token_width: usize = token.iter().map(|(g, _)| g.width()).sum();
        let row_start = if rows.len() == 1 { 0 } else { indent };
        if used + token_width <= width {
            if !(token[0].0 == " " && used == row_start && rows.len() > 1) {
                rows.last_mut().expect("one row").extend_from_slice(token);
                used += token_width;
            }
            at = end;
            continue;
        }
        if token[0].0 == " " {
            // A space at the wrap point: the next row starts with the next word.
            new_row(&mut rows, &mut used, indent);
            at = end;
            continue;
        }
        if token_width <= width - indent && used > row_start {
            new_row(&mut rows, &mut used, indent);
            continue;
        }
        // A word longer than a row: as much as fits, then the rest on the next rows.
        for &(grapheme, style) in token {
            let w = grapheme.width();
            let row_start = if rows.len() == 1 { 0 } else { indent };
            if used + w > width && used > row_start {
                new_row(&mut rows, &mut used, indent);
            }
            rows.last_mut().expect("one row").push((grapheme, style));
            used += w;
        }
        at = end;
    }
    rows.into_iter().map(row_line).collect()
}

fn new_row(rows: &mut Vec<Vec<(&str, Style)>>, used: &mut usize, indent: usize) {
    rows.push(vec![(" ", Style::new()); indent]);
    *used = indent;
}

/// Joins a row's graphemes into spans of equal style.
fn row_line(cells: Vec<(&str, Style)>) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = None;
    for (grapheme, cell_style) in cells {
        if style.is_some_and(|s| s != cell_style) {
            spans.push(Span::styled(std::mem::take(&mut text), style.expect("set")));
        }
        style = Some(cell_style);
        text.push_str(grapheme);
    }
    if let Some(style) = style {
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

/// What the input line shows instead of what was typed, for passwords: nothing while
/// `/passwd` asks, and stars after a typed `/passwd `. With the cursor's column in it.
fn masked_input(app: &App) -> Option<(String, usize)> {
    if app.secret.is_some() {
        return Some((String::new(), 0));
    }
    let text = app.input.text();
    let command = text.get(..8)?;
    if !command.eq_ignore_ascii_case("/passwd ") {
        return None;
    }
    let stars = "*".repeat(text.chars().count() - 8);
    let cursor = app.input.cursor();
    Some((format!("{command}{stars}"), cursor))
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let prompt = if let Some(paste) = &app.pending_paste {
        format!(
            "Send {} pasted lines to {}? y: send, n: do not send ",
            paste.lines.len(),
            paste.title
        )
    } else if let Some(step) = &app.secret {
        step.prompt().to_owned()
    } else {
        match app.current() {
            Some(conversation) => match conversation.key {
                ConversationKey::Room(_) => format!("{}> ", conversation.title),
                ConversationKey::Direct(_) => format!("@{}> ", conversation.title),
            },
            None => "> ".to_owned(),
        }
    };
    let prompt_width = prompt.width();
    let room = usize::from(area.width)
        .saturating_sub(prompt_width + 1)
        .max(1);
    // Keep the cursor in view: drop whole pictures (graphemes) from the left as needed,
    // measured as the cursor is, so the two always agree.
    let (text, cursor) = match masked_input(app) {
        Some(masked) => masked,
        None if app.pending_paste.is_some() => (String::new(), 0),
        None => (app.input.text(), app.input.cursor_column()),
    };
    let mut skipped = 0;
    let mut first = 0;
    for grapheme in text.graphemes(true) {
        if cursor.saturating_sub(skipped) < room {
            break;
        }
        skipped += grapheme.width();
        first += grapheme.len();
    }
    let line = Line::from(vec![
        Span::styled(prompt, Style::new().fg(Color::Cyan)),
        Span::raw(&text[first..]),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    let column = area.x + (prompt_width + cursor.saturating_sub(skipped)) as u16;
    frame.set_cursor_position(Position::new(
        column.min(area.right().saturating_sub(1)),
        area.y,
    ));
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    use super::*;
    use crate::protocol::ServerLine;

    const T: &str = "2026-11-21T12:00:00.000Z";
    /// `T` in milliseconds: "now" for the notices.
    const NOW: i64 = 1_795_262_400_000;

    fn app() -> App {
        let mut app = App::new("chat.example.com:7777", "alice");
        let lines = [
            "WELCOME alice Logged in. You are in #general. Type /help for commands.".to_owned(),
            format!("JOIN #general {T} alice"),
            format!("HIST #general 1 {T} bob yesterday's news"),
            format!("JOIN #dev {T} alice"),
            "MEMBER #general alice online".into(),
            "MEMBER #general bob online".into(),
            "END who".into(),
            "MSG #general 2 2026-11-21T12:01:00.000Z bob hello alice, how are you?".into(),
            "MSG #general 3 2026-11-21T12:02:00.000Z alice fine, thanks".into(),
            format!("MSG #dev 4 {T} carol build is red"),
            format!("DM 5 {T} dave alice psst"),
        ];
        for line in lines {
            // Sent as the event loop would: the quiet `/who` is then expected.
            while app.next_line().is_some() {}
            app.apply(ServerLine::parse(&line).unwrap(), NOW);
        }
        app.input.insert_str("typing");
        app
    }

    fn render(app: &mut App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| draw(frame, app, &chrono::Utc))
            .unwrap();
        rows(terminal.backend().buffer())
    }

    fn rows(buffer: &Buffer) -> Vec<String> {
        let width = usize::from(buffer.area.width);
        buffer
            .content
            .chunks(width)
            .map(|row| row.iter().map(|cell| cell.symbol()).collect::<String>())
            .collect()
    }

    #[test]
    fn a_wide_terminal_shows_status_rooms_messages_and_input() {
        let mut app = app();
        let screen = render(&mut app, 80, 12);
        let expected = [
            " connected | chat.example.com:7777 | alice | #general | online: alice, bob      ",
            "1 #general         │                                                            ",
            "2 #dev 1           │                                                            ",
            "3 @dave 1!         │                                                            ",
            "                   │                                                            ",
            "                   │ --- Saturday 21 November 2026 ---                          ",
            "                   │ 12:00 -- Logged in. You are in #general. Type /help for    ",
            "                   │       commands.                                            ",
            "                   │ 12:00 ~ <bob> yesterday's news                             ",
            "                   │ 12:01 <bob> hello alice, how are you?                      ",
            "                   │ 12:02 <alice> fine, thanks                                 ",
            "#general> typing                                                                ",
        ];
        assert_eq!(screen, expected, "\n{}", screen.join("\n"));
    }

    #[test]
    fn a_narrow_terminal_drops_the_room_list_and_wraps_under_the_text() {
        let mut app = app();
        app.switch_to(1);
        app.apply(
            ServerLine::parse(&format!(
                "MSG #dev 6 {T} carol the deploy failed on step three of four"
            ))
            .unwrap(),
            0,
        );
        let screen = render(&mut app, 30, 7);
        let expected = [
            " connected | chat.example.com:",
            " -- Sat 21 Nov 2026 --        ",
            " 12:00 <carol> build is red   ",
            " 12:00 <carol> the deploy     ",
            "       failed on step three of",
            "       four                   ",
            "#dev> typing                  ",
        ];
        assert_eq!(screen, expected, "\n{}", screen.join("\n"));
    }

    #[test]
    fn the_status_bar_says_when_reconnecting_and_when_scrolled_back() {
        let mut app = app();
        app.connection_lost(2, 4, NOW);
        // Six rows of conversation in a four-row pane: back two hides the newest two.
        app.scroll_by(2);
        let screen = render(&mut app, 120, 6);
        assert!(
            screen[0].contains("reconnecting in 4 s (attempt 2)"),
            "{}",
            screen[0]
        );
        assert!(
            screen[0].contains("scrolled back (End: live)"),
            "{}",
            screen[0]
        );
        assert!(
            !screen.iter().any(|row| row.contains("fine, thanks")),
            "the newest row is scrolled off"
        );
    }

    #[test]
    fn the_status_bar_says_why_reconnecting_fails_and_why_a_session_ended() {
        let mut app = app();
        app.connection_lost(3, 8, NOW);
        app.reconnect_failed("cannot connect: connection refused".into(), false, NOW);
        let screen = render(&mut app, 160, 6);
        assert!(
            screen[0].contains(
                "reconnecting in 8 s (attempt 3) Ctrl+R: now | last: cannot connect: connection refused"
            ),
            "{}",
            screen[0]
        );
        assert!(
            !screen
                .iter()
                .any(|row| row.contains("refused") && row.contains("!!")),
            "failures are not lines in the conversation:\n{}",
            screen.join("\n")
        );
        let mut app = self::app();
        app.apply(ServerLine::parse("BYE kicked by bob: spam").unwrap(), NOW);
        let screen = render(&mut app, 160, 12);
        assert!(screen[0].contains("ended: you were kicked by bob: spam | Ctrl+C: quit"));
        assert!(
            !screen[0].contains("online:"),
            "the online list is forgotten"
        );
        assert!(
            screen.iter().any(|row| row.contains(
                "Session ended: you were kicked by bob: spam. Press Ctrl+R to log in again, or Ctrl+C to quit."
            )),
            "{}",
            screen.join("\n")
        );
    }

    #[test]
    fn passwords_are_never_on_screen() {
        let mut app = app();
        app.input.take();
        app.input.insert_str("/passwd old-secret new-secret");
        let screen = render(&mut app, 80, 6);
        assert_eq!(
            screen[5].trim_end(),
            "#general> /passwd *********************"
        );
        app.input.take();
        app.submit("/passwd", NOW);
        app.input.insert_str("hunter22");
        let screen = render(&mut app, 80, 6);
        assert_eq!(
            screen[5].trim_end(),
            "Current password (hidden; Esc cancels):"
        );
    }

    #[test]
    fn scrolling_stops_at_the_oldest_row() {
        let mut app = app();
        for id in 10..40 {
            let line = format!("MSG #general {id} {T} bob number {id}");
            app.apply(ServerLine::parse(&line).unwrap(), NOW);
        }
        app.scroll_by(1000);
        let screen = render(&mut app, 80, 12);
        assert!(screen[1].contains("--- Saturday"), "{}", screen.join("\n"));
        assert!(screen[10].contains("number 13"), "{}", screen.join("\n"));
        // 36 rows, 10 on screen.
        assert_eq!(app.current().unwrap().scroll, 26);
        app.scroll_by(-26);
        let screen = render(&mut app, 80, 12);
        assert!(screen[10].contains("number 39"), "{}", screen.join("\n"));
    }

    #[test]
    fn wide_characters_and_emoji_wrap_by_cells() {
        let spans = [Span::raw("你好世界 🎉🎉 ok")];
        let lines = wrap(&spans, 6, 0);
        let texts: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(texts, ["你好世", "界 ", "🎉🎉 ", "ok"]);
        for line in &lines {
            assert!(line.width() <= 6, "{line}");
        }
    }

    #[test]
    fn a_long_input_of_emoji_sequences_keeps_the_cursor_on_screen() {
        let mut app = app();
        app.input.delete_to_start();
        app.input.insert_str(&"👨‍👩‍👧 ".repeat(20));
        let mut terminal = Terminal::new(TestBackend::new(30, 6)).unwrap();
        terminal
            .draw(|frame| draw(frame, &mut app, &chrono::Utc))
            .unwrap();
        let cursor = terminal.get_cursor_position().unwrap();
        let buffer = terminal.backend().buffer();
        let screen = rows(buffer);
        let shown = screen[5].strip_prefix("#general> ").unwrap();
        // Whole pictures from the left edge on, and the cursor right after the last one
        // and its space.
        assert!(shown.starts_with("👨‍👩‍👧"), "{shown:?}");
        let last_picture = (0..30u16)
            .rev()
            .find(|&x| buffer[(x, 5)].symbol().starts_with('👨'))
            .unwrap();
        assert_eq!(cursor.x, last_picture + 3, "{shown:?}");
    }

    #[test]
    fn emoji_sequences_are_one_picture_wide() {
        // A heart with a variation selector is drawn two cells wide; a family joined with
        // zero-width joiners is one two-cell picture, not four.
        let spans = [Span::raw("ab❤️ 👨‍👩‍👧 cd")];
        let lines = wrap(&spans, 5, 0);
        let texts: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(texts, ["ab❤️ ", "👨‍👩‍👧 cd"]);
    }

    #[test]
    fn long_words_are_cut_and_continuation_rows_indented() {
        let spans = [Span::raw("12:00 "), Span::raw("abcdefghijklmnop end")];
        let texts: Vec<String> = wrap(&spans, 10, 6).iter().map(|l| l.to_string()).collect();
        assert_eq!(
            texts,
            [
                "12:00 abcd",
                "      efgh",
                "      ijkl",
                "      mnop",
                "      end"
            ]
        );
    }

    #[test]
    fn colors_are_stable_per_nickname_and_own_messages_look_different() {
        assert_eq!(nick_color("Bob"), nick_color("bob"));
        let mut app = app();
        let plain = format!("MSG #general 7 {T} bob plain words");
        app.apply(ServerLine::parse(&plain).unwrap(), NOW);
        let mut terminal = Terminal::new(TestBackend::new(80, 12)).unwrap();
        terminal
            .draw(|frame| draw(frame, &mut app, &chrono::Utc))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let cell = |row: &str, x: u16| {
            let y = rows(&buffer).iter().position(|r| r.contains(row)).unwrap() as u16;
            buffer[(x, y)].style()
        };
        // Text starts after the sidebar (20), the pane's margin (1), "HH:MM " and the nick.
        let bob_nick = cell("plain words", 21 + 6 + 1);
        let bob_text = cell("plain words", 21 + 6 + 6);
        let own_nick = cell("fine, thanks", 21 + 6 + 1);
        let own_text = cell("fine, thanks", 21 + 6 + 8);
        assert_eq!(bob_nick.fg, Some(nick_color("bob")));
        assert_ne!(bob_text, own_text, "own messages look different");
        assert!(own_nick.add_modifier.contains(Modifier::BOLD));
        assert!(!bob_nick.add_modifier.contains(Modifier::BOLD));
        let history = cell("yesterday", 21 + 6 + 8);
        assert!(history.add_modifier.contains(Modifier::DIM));
        assert!(!bob_text.add_modifier.contains(Modifier::DIM));
        let mention_row = cell("hello alice", 21 + 6 + 6);
        assert_eq!(mention_row.fg, Some(Color::Yellow), "a mention stands out");
    }
}
