//! Key presses, mouse wheel and pastes, turned into edits of the input line, switches,
//! scrolling, and lines to send.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use super::state::{Action, App};

/// Rows one turn of the mouse wheel scrolls.
const WHEEL_ROWS: isize = 3;

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
        // A pasted block becomes one line; its line breaks become spaces.
        Event::Paste(text) => {
            app.input.insert_str(&text.replace(['\r', '\n'], " "));
            Vec::new()
        }
        _ => Vec::new(),
    }
}

pub fn on_key(app: &mut App, key: KeyEvent, now: i64) -> Vec<Action> {
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let input = &mut app.input;
    match key.code {
        KeyCode::Enter => {
            let line = input.take();
            return app.submit(&line, now);
        }
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

    #[test]
    fn a_paste_is_one_line() {
        let mut app = app_in(&["#general"]);
        on_event(&mut app, Event::Paste("a\nb\r\nc".into()), 0);
        assert_eq!(app.input.text(), "a b  c");
    }
}
