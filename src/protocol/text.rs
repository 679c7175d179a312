/// True when the text holds a character that must never reach another user's terminal.
pub fn has_forbidden_control(text: &str) -> bool {
    text.chars().any(is_forbidden_control)
}

/// C0 controls except TAB, DEL, and the C1 controls. CR inside a line is one of them.
pub fn is_forbidden_control(c: char) -> bool {
    (c.is_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// Lines that are empty after trimming trailing whitespace are ignored by the server.
pub fn is_blank(line: &str) -> bool {
    line.trim_end().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters() {
        assert!(!has_forbidden_control("hello\tworld ünïcode 🎉"));
        for bad in [
            "\u{0}",
            "a\u{1b}[31m",
            "\r",
            "\u{7f}",
            "\u{85}",
            "\u{9f}",
            "\n",
        ] {
            assert!(has_forbidden_control(bad), "{bad:?}");
        }
        assert!(!has_forbidden_control("\u{a0}"));
    }

    #[test]
    fn blank_lines() {
        assert!(is_blank(""));
        assert!(is_blank("  \t "));
        assert!(!is_blank(" x"));
    }
}
