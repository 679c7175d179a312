use std::fmt;

/// The room every new account starts in.
pub const DEFAULT_ROOM: &str = "#general";
const MAX_NAME_CHARS: usize = 32;

/// Why a nickname or room name was refused; the text is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a nickname is 1-32 letters, digits, '_' or '-', starting with a letter")]
    BadNick,
    #[error("a room name is '#' and 1-32 of a-z, 0-9, '_' or '-'")]
    BadRoom,
}

/// A syntactically valid nickname, kept as the user typed it. Accounts are unique
/// case-insensitively; the store compares with `COLLATE NOCASE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nick(String);

impl Nick {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let mut chars = input.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let valid = starts_with_letter
            && input.len() <= MAX_NAME_CHARS
            && input
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(NameError::BadNick)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid room name, always lower-case and with its leading `#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Accepts any case and lower-cases it, as the contract says input is.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let Some(rest) = input.strip_prefix('#') else {
            return Err(NameError::BadRoom);
        };
        let lower = rest.to_ascii_lowercase();
        let valid = !lower.is_empty()
            && lower.len() <= MAX_NAME_CHARS
            && lower
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if valid {
            Ok(Self(format!("#{lower}")))
        } else {
            Err(NameError::BadRoom)
        }
    }

    pub fn general() -> Self {
        Self(DEFAULT_ROOM.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_rules() {
        for good in ["a", "Alice", "bob_2", "x-y", &"a".repeat(32)] {
            assert!(Nick::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "_a",
            "-a",
            "a b",
            "al!ce",
            "é",
            &"a".repeat(33),
            "#a",
        ] {
            assert_eq!(Nick::parse(bad), Err(NameError::BadNick), "{bad}");
        }
        assert_eq!(Nick::parse("Alice").unwrap().as_str(), "Alice");
    }

    #[test]
    fn room_rules() {
        assert_eq!(RoomName::parse("#Ops").unwrap().as_str(), "#ops");
        for good in ["#a", "#1", "#a_b-c", &format!("#{}", "z".repeat(32))] {
            assert!(RoomName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "#",
            "ops",
            "##a",
            "#a b",
            "#é",
            &format!("#{}", "z".repeat(33)),
        ] {
            assert_eq!(RoomName::parse(bad), Err(NameError::BadRoom), "{bad}");
        }
        assert_eq!(RoomName::general().as_str(), DEFAULT_ROOM);
    }
}
