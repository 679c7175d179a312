//! The input line: a cursor, word editing and a history of what was sent, as readline and
//! irssi users expect. Positions are in characters, so multi-byte text edits cleanly.

use unicode_width::UnicodeWidthStr;

/// Lines kept for Up/Down.
const HISTORY: usize = 200;

#[derive(Debug, Default)]
pub struct Input {
    text: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down is in the history; `None` when editing a new line.
    browsing: Option<usize>,
    /// The new line being typed when browsing began, restored by Down past the newest.
    draft: Vec<char>,
}

impl Input {
    pub fn text(&self) -> String {
        self.text.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The cursor's column, in terminal cells from the start of the line.
    pub fn cursor_column(&self) -> usize {
        // The width of the text before the cursor as a string, so that emoji sequences
        // (a variation selector, joined families) count as the one picture they are.
        self.text[..self.cursor].iter().collect::<String>().width()
    }

    pub fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += 1;
    }

    pub fn insert_str(&mut self, text: &str) {
        for c in text.chars().filter(|c| !c.is_control()) {
            self.insert(c);
        }
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.len());
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Where the word before the cursor starts (skipping spaces right before it).
    fn word_start(&self) -> usize {
        let mut at = self.cursor;
        while at > 0 && self.text[at - 1].is_whitespace() {
            at -= 1;
        }
        while at > 0 && !self.text[at - 1].is_whitespace() {
            at -= 1;
        }
        at
    }

    /// Where the word after the cursor ends.
    fn word_end(&self) -> usize {
        let mut at = self.cursor;
        while at < self.text.len() && self.text[at].is_whitespace() {
            at += 1;
        }
        while at < self.text.len() && !self.text[at].is_whitespace() {
            at += 1;
        }
        at
    }

    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }

    pub fn word_right(&mut self) {
        self.cursor = self.word_end();
    }

    /// Ctrl+W: deletes the word before the cursor.
    pub fn delete_word_before(&mut self) {
        let start = self.word_start();
        self.text.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Alt+D: deletes the word after the cursor.
    pub fn delete_word_after(&mut self) {
        let end = self.word_end();
        self.text.drain(self.cursor..end);
    }

    /// Ctrl+U: deletes everything before the cursor.
    pub fn delete_to_start(&mut self) {
        self.text.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Ctrl+K: deletes everything from the cursor on.
    pub fn delete_to_end(&mut self) {
        self.text.truncate(self.cursor);
    }

    /// Enter: the line, now remembered in the history, and an empty input.
    pub fn take(&mut self) -> String {
        let line = self.text();
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        line
    }

    /// Enter on a line that must not be remembered (a password): the line, and an empty
    /// input.
    pub fn take_unremembered(&mut self) -> String {
        let line = self.text();
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
        line
    }

    /// Removes and returns the text before the cursor (a paste with line breaks joins it).
    pub fn take_before_cursor(&mut self) -> String {
        let before: String = self.text.drain(..self.cursor).collect();
        self.cursor = 0;
        before
    }

    /// The cursor's position, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Up: the previous line sent.
    pub fn older(&mut self) {
        let next = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(at) => at - 1,
        };
        self.browsing = Some(next);
        self.show(self.history[next].chars().collect());
    }

    /// Down: the next line sent, and past the newest the line being typed before.
    pub fn newer(&mut self) {
        let Some(at) = self.browsing else { return };
        if at + 1 < self.history.len() {
            self.browsing = Some(at + 1);
            self.show(self.history[at + 1].chars().collect());
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.show(draft);
        }
    }

    fn show(&mut self, text: Vec<char>) {
        self.text = text;
        self.cursor = self.text.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Input {
        let mut input = Input::default();
        input.insert_str(text);
        input
    }

    #[test]
    fn cursor_moves_and_edits_in_the_middle() {
        let mut input = typed("helo");
        input.left();
        input.insert('l');
        assert_eq!(input.text(), "hello");
        input.home();
        input.delete();
        input.insert('H');
        assert_eq!(input.text(), "Hello");
        input.end();
        input.backspace();
        assert_eq!(input.text(), "Hell");
    }

    #[test]
    fn words_are_deleted_and_skipped() {
        let mut input = typed("say hello  world");
        input.delete_word_before();
        assert_eq!(input.text(), "say hello  ");
        input.delete_word_before();
        assert_eq!(input.text(), "say ");
        let mut input = typed("one two three");
        input.home();
        input.word_right();
        assert_eq!(input.cursor, 3);
        input.delete_word_after();
        assert_eq!(input.text(), "one three");
        input.word_left();
        assert_eq!(input.cursor, 0);
        input.word_right();
        input.delete_to_end();
        assert_eq!(input.text(), "one");
        input.left();
        input.delete_to_start();
        assert_eq!(input.text(), "e");
    }

    #[test]
    fn wide_characters_count_two_cells_for_the_cursor() {
        let input = typed("a你好");
        assert_eq!(input.cursor_column(), 5);
        assert_eq!(typed("❤️").cursor_column(), 2);
        assert_eq!(typed("👨‍👩‍👧").cursor_column(), 2);
        let mut input = typed("ça va");
        input.word_left();
        input.backspace();
        assert_eq!(input.text(), "çava");
    }

    #[test]
    fn up_and_down_walk_the_history_and_restore_the_draft() {
        let mut input = Input::default();
        for line in ["first", "second", "second"] {
            input.insert_str(line);
            assert_eq!(input.take(), line);
        }
        input.insert_str("draft");
        input.older();
        assert_eq!(input.text(), "second");
        input.older();
        assert_eq!(input.text(), "first", "a repeated line is kept once");
        input.older();
        assert_eq!(input.text(), "first");
        input.newer();
        assert_eq!(input.text(), "second");
        input.newer();
        assert_eq!(input.text(), "draft");
        input.newer();
        assert_eq!(input.text(), "draft");
    }

    #[test]
    fn unremembered_lines_stay_out_of_the_history() {
        let mut input = typed("/say hi");
        input.take();
        input.insert_str("/passwd secret words");
        assert_eq!(input.take_unremembered(), "/passwd secret words");
        input.older();
        assert_eq!(input.text(), "/say hi");
        input.older();
        assert_eq!(input.text(), "/say hi");
    }

    #[test]
    fn blank_lines_are_not_remembered_and_control_characters_not_typed() {
        let mut input = typed("   ");
        input.take();
        input.older();
        assert!(input.is_empty());
        let input = typed("a\u{1b}[31mb\u{7}");
        assert_eq!(input.text(), "a[31mb");
    }
}
