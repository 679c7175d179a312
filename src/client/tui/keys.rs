//! Key presses, mouse wheel and pastes, turned into edits of the input line, switches,
//! scrolling, and lines to send.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use super::state::{Action, App};

/// Rows one turn of the mouse wheel scrolls.
const WHEEL_ROWS: isize = 3;

/// Events that were waiting together. Keys that arrive all at once with more than one
/// Enter among them were not typed by a person: that is a paste from a terminal without
/// bracketed paste, and it is handled as one (so its lines are paced, and a large one asks
/// first) rather than as lines typed very fast.
pub fn on_events(app: &mut App, events: Vec<Event>, now: i64) -> Vec<Action> {
    if let Some(text) = unbracketed_paste(&events, app.pending_paste.is_some()) {
        return app.paste(&text, now);
    }
    events
        .into_iter()
        .flat_map(|event| on_event(app, event, now))
        .collect()
}

/// The text of a burst of plain key presses with line breaks, if that is what `events`
/// is. While a paste waits for its answer, any burst is more of it.
fn unbracketed_paste(events: &[Event], paste_pending: bool) -> Option<String> {
    if events.len() < 2 {
        return None;
    }
    let mut text = String::new();
    let mut breaks = 0;
    for event in events {
        let Event::Key(key) = event else { return None };
        if key.kind == KeyEventKind::Release {
            continue;
        }
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => {
                breaks += 1;
                text.push('\n');
            }
            KeyCode::Char('j') if control => {
                breaks += 1;
                text.push('\n');
            }
            KeyCode::Tab => text.push('\t'),
            KeyCode::Char(c) if !control && !key.modifiers.contains(KeyModifiers::ALT) => {
                text.push(c)
            }
            _ => return None,
        }
    }
    (breaks >= 2 || (paste_pending && !text.is_empty())).then_some(text)
}

pub fn on_event(app: &mut App, event: Event, now: i64) -> Vec<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => on_key(app, key, now),
        Event::Mouse(MouseEvent { kind, .. }) => {
            match kind {
                MouseEventKind::ScrollUp => app.scroll_by(WHEEL_ROWS),
                MouseEventKind::ScrollDown => app.scroll_by(-WHEEL_ROWS),
                _ => {}
            }
            Vec::new()
        }
        Event::Paste(text) => app.paste(&text, now),
        _ => Vec::new(),
    }
}

pub fn on_key(app: &mut App, key: KeyEvent, now: i64) -> Vec<Action> {
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    if app.pending_paste.is_some() {
        // Only the answer, or quitting, while the question is on screen.
        return match key.code {
            KeyCode::Char('y' | 'Y') if !control => app.answer_paste(true, now),
            KeyCode::Char('n' | 'N') if !control => app.answer_paste(false, now),
            KeyCode::Esc => app.answer_paste(false, now),
            KeyCode::Char('c') if control => vec![Action::Send("/quit".into()), Action::Exit],
            _ => Vec::new(),
        };
    }
    let secret = app.secret.is_some();
    let input = &mut app.input;
    match key.code {
        // In raw mode a line feed arrives as Ctrl+J.
        KeyCode::Enter => return app.enter(now),
        KeyCode::Char('j') if control => return app.enter(now),
        KeyCode::Esc => return app.cancel(now),
        KeyCode::Char('r') if control => return app.reconnect_now(now),
        KeyCode::Up | KeyCode::Down if secret => {}
        KeyCode::Char('c') if control => return vec![Action::Send("/quit".into()), Action::Exit],
        KeyCode::Char('d') if control && input.is_empty() => {
            return vec![Action::Send("/quit".into()), Action::Exit]
        }
        KeyCode::Char('a') if control => input.home(),
        KeyCode::Char('e') if control => input.end(),
        KeyCode::Char('b') if control => input.left(),
        KeyCode::Char('f') if control => input.right(),
        KeyCode::Char('w') if control => input.delete_word_before(),
        KeyCode::Char('u') if control => input.delete_to_start(),
        KeyCode::Char('k') if control => input.delete_to_end(),
        KeyCode::Char('d') if control => input.delete(),
        KeyCode::Char('n') if control => app.switch_by(1),
        KeyCode::Char('p') if control => app.switch_by(-1),
        KeyCode::Char(digit @ '1'..='9') if alt => {
            app.switch_to(digit as usize - '1' as usize);
        }
        KeyCode::Char('b') if alt => input.word_left(),
        KeyCode::Char('f') if alt => input.word_right(),
        KeyCode::Char('d') if alt => input.delete_word_after(),
        KeyCode::Backspace if alt || control => input.delete_word_before(),
        KeyCode::Char(c) if !control && !alt => input.insert(c),
        KeyCode::Backspace => input.backspace(),
        KeyCode::Delete => input.delete(),
        KeyCode::Left if control || alt => input.word_left(),
        KeyCode::Right if control || alt => input.word_right(),
        KeyCode::Left => input.left(),
        KeyCode::Right => input.right(),
        KeyCode::Home => input.home(),
        KeyCode::End => {
            input.end();
            app.scroll_to_live();
        }
        KeyCode::Up => input.older(),
        KeyCode::Down => input.newer(),
        KeyCode::PageUp => app.scroll_by(app.page_rows as isize),
        KeyCode::PageDown => app.scroll_by(-(app.page_rows as isize)),
        _ => {}
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerLine;

    fn press(app: &mut App, code: KeyCode, modifiers: KeyModifiers) -> Vec<Action> {
        on_key(app, KeyEvent::new(code, modifiers), 0)
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    fn app_in(rooms: &[&str]) -> App {
        let mut app = App::new("localhost:7777", "alice");
        for room in rooms {
            let join = format!("JOIN {room} 2026-11-21T12:00:00.000Z alice");
            app.apply(ServerLine::parse(&join).unwrap(), 0);
        }
        app
    }

    #[test]
    fn enter_sends_typed_text_to_the_room_on_screen() {
        let mut app = app_in(&["#general", "#dev"]);
        type_text(&mut app, "hello");
        let actions = press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(actions, vec![Action::Send("/say #general hello".into())]);
        press(&mut app, KeyCode::Char('n'), KeyModifiers::CONTROL);
        type_text(&mut app, "hi");
        let actions = press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(actions, vec![Action::Send("/say #dev hi".into())]);
    }

    #[test]
    fn alt_digits_and_control_n_p_switch_conversations() {
        let mut app = app_in(&["#a", "#b", "#c"]);
        press(&mut app, KeyCode::Char('3'), KeyModifiers::ALT);
        assert_eq!(app.current, 2);
        press(&mut app, KeyCode::Char('n'), KeyModifiers::CONTROL);
        assert_eq!(app.current, 0, "Ctrl+N wraps around");
        press(&mut app, KeyCode::Char('p'), KeyModifiers::CONTROL);
        assert_eq!(app.current, 2);
        press(&mut app, KeyCode::Char('9'), KeyModifiers::ALT);
        assert_eq!(app.current, 2, "no ninth conversation: nothing changes");
    }

    #[test]
    fn page_keys_scroll_and_end_returns_to_live() {
        let mut app = app_in(&["#general"]);
        app.page_rows = 10;
        press(&mut app, KeyCode::PageUp, KeyModifiers::NONE);
        assert_eq!(app.current().unwrap().scroll, 10);
        press(&mut app, KeyCode::PageDown, KeyModifiers::NONE);
        press(&mut app, KeyCode::PageUp, KeyModifiers::NONE);
        press(&mut app, KeyCode::End, KeyModifiers::NONE);
        assert_eq!(app.current().unwrap().scroll, 0);
        on_event(
            &mut app,
            Event::Mouse(MouseEvent {
                kind: MouseEventKind::ScrollUp,
                column: 0,
                row: 0,
                modifiers: KeyModifiers::NONE,
            }),
            0,
        );
        assert_eq!(app.current().unwrap().scroll, 3);
    }

    #[test]
    fn control_c_quits_and_control_w_deletes_a_word() {
        let mut app = app_in(&["#general"]);
        type_text(&mut app, "one two");
        press(&mut app, KeyCode::Char('w'), KeyModifiers::CONTROL);
        assert_eq!(app.input.text(), "one ");
        let actions = press(&mut app, KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(actions, vec![Action::Send("/quit".into()), Action::Exit]);
    }

    fn sent(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(line) => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_small_paste_sends_a_message_per_line_and_keeps_the_unfinished_one() {
        let mut app = app_in(&["#general"]);
        type_text(&mut app, "say: ");
        let actions = on_event(&mut app, Event::Paste("a\n/etc/passwd\r\n\nc".into()), 0);
        assert_eq!(
            sent(&actions),
            ["/say #general say: a", "/say #general /etc/passwd"]
        );
        assert_eq!(app.input.text(), "c");
        // One line without a break goes into the input.
        on_event(&mut app, Event::Paste(" more".into()), 0);
        assert_eq!(app.input.text(), "c more");
    }

    #[test]
    fn a_large_paste_asks_first() {
        let mut app = app_in(&["#general"]);
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        assert_eq!(on_event(&mut app, Event::Paste(text.clone()), 0), vec![]);
        let pending = app.pending_paste.as_ref().unwrap();
        assert_eq!(
            (pending.title.as_str(), pending.lines.len()),
            ("#general", 30)
        );
        // Other keys do not answer, nor get typed.
        press(&mut app, KeyCode::Char('x'), KeyModifiers::NONE);
        assert!(app.pending_paste.is_some() && app.input.is_empty());
        let actions = press(&mut app, KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(sent(&actions).len(), 30);
        assert_eq!(sent(&actions)[29], "/say #general line 30");
        // No: nothing is sent, and that is said.
        on_event(&mut app, Event::Paste(text), 0);
        assert_eq!(
            press(&mut app, KeyCode::Char('n'), KeyModifiers::NONE),
            vec![]
        );
        assert!(app.pending_paste.is_none());
        let last = app.current().unwrap().entries.back().unwrap();
        assert!(
            format!("{last:?}").contains("not sent (30 lines)"),
            "{last:?}"
        );
    }

    #[test]
    fn keys_arriving_together_with_line_breaks_are_a_paste() {
        let mut app = app_in(&["#general"]);
        let keys = |text: &str| -> Vec<Event> {
            text.chars()
                .map(|c| match c {
                    '\r' => Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
                    c => Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
                })
                .collect()
        };
        // Typed by a person: one key (or a word and Enter) at a time.
        let actions = on_events(&mut app, keys("/who\r"), 0);
        assert_eq!(sent(&actions), ["/who #general"]);
        let actions = on_events(&mut app, keys("one\rtwo\r/three\rfour"), 0);
        assert_eq!(
            sent(&actions),
            [
                "/say #general one",
                "/say #general two",
                "/say #general /three"
            ]
        );
        assert_eq!(app.input.text(), "four");
    }

    #[test]
    fn an_overlong_line_stays_in_the_input() {
        let mut app = app_in(&["#general"]);
        on_event(&mut app, Event::Paste("x".repeat(5000)), 0);
        let actions = press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(actions, vec![]);
        assert_eq!(app.input.text().len(), 5000, "kept for editing");
        let last = app.current().unwrap().entries.back().unwrap();
        assert!(format!("{last:?}").contains("at most 4096"), "{last:?}");
        // Pasted as lines, it is cut to fit rather than refused.
        app.input.take();
        let actions = on_event(&mut app, Event::Paste(format!("{}\n", "y".repeat(5000))), 0);
        let lines = sent(&actions);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() <= 4096));
        assert_eq!(
            lines.concat().replace("/say #general ", "").len(),
            5000,
            "nothing lost"
        );
    }

    #[test]
    fn passwd_asks_without_echo_or_history() {
        let mut app = app_in(&["#general"]);
        type_text(&mut app, "/passwd");
        assert_eq!(press(&mut app, KeyCode::Enter, KeyModifiers::NONE), vec![]);
        assert!(app.secret.is_some());
        for (answer, expected) in [
            ("correct horse battery staple", vec![]),
            ("short", vec![]),
            ("a new pass phrase", vec![]),
            (
                "a new pass phrase",
                vec![Action::Send(
                    r#"/passwd "correct horse battery staple" "a new pass phrase""#.into(),
                )],
            ),
        ] {
            type_text(&mut app, answer);
            assert_eq!(
                press(&mut app, KeyCode::Enter, KeyModifiers::NONE),
                expected
            );
        }
        assert!(app.secret.is_none());
        // Up finds nothing of it.
        press(&mut app, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(app.input.text(), "");
        // The server's confirmation hands the new password to the reconnecting loop.
        let actions = app.apply(ServerLine::parse("INFO Password changed.").unwrap(), 0);
        assert_eq!(
            actions,
            vec![Action::PasswordChanged("a new pass phrase".into())]
        );
        // The one-line form is not remembered either; Esc cancels the questions.
        type_text(&mut app, "/passwd old-one new-one-x");
        press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
        type_text(&mut app, "/passwd");
        press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
        press(&mut app, KeyCode::Esc, KeyModifiers::NONE);
        assert!(app.secret.is_none());
        press(&mut app, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(app.input.text(), "");
    }

    #[test]
    fn a_pasted_password_is_answered_not_sent() {
        let mut app = app_in(&["#general"]);
        app.submit("/passwd", 0);
        let actions = on_event(&mut app, Event::Paste("my old pass phrase\n".into()), 0);
        assert_eq!(actions, vec![]);
        assert_eq!(
            app.secret,
            Some(super::super::state::SecretStep::New {
                old: "my old pass phrase".into()
            })
        );
        assert!(app.input.is_empty());
    }

    #[test]
    fn control_r_reconnects_now_only_when_not_connected() {
        let mut app = app_in(&["#general"]);
        assert_eq!(
            press(&mut app, KeyCode::Char('r'), KeyModifiers::CONTROL),
            vec![]
        );
        app.connection_lost(1, 30, 0);
        assert_eq!(
            press(&mut app, KeyCode::Char('r'), KeyModifiers::CONTROL),
            vec![Action::ReconnectNow]
        );
    }
}
