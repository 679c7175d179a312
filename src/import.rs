//! The account list `chat-admin import` reads: one `NICK PASSWORD` a line, the password
//! being the rest of the line (spaces included, surrounding whitespace trimmed). Blank lines
//! and lines starting with `#` are skipped. The whole list is checked before anything is
//! created, and every bad line is reported; no message ever contains a password.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::io::BufRead;

use crate::auth::password_problem;
use crate::protocol::Nick;

/// One account to create.
pub struct NewAccount {
    /// Where it stands in the input, from 1.
    pub line: usize,
    pub nick: Nick,
    pub password: String,
}

/// Leaves the password out.
impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("line", &self.line)
            .field("nick", &self.nick)
            .finish_non_exhaustive()
    }
}

/// A line that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// What a whole input holds: the good lines and the bad ones.
#[derive(Debug, Default)]
pub struct AccountList {
    pub accounts: Vec<NewAccount>,
    pub problems: Vec<Problem>,
}

/// Reads and checks every line of `input`: the nickname rules, the password rule, and no
/// nickname twice (regardless of case). Only reading itself can fail.
pub fn read_accounts(mut input: impl BufRead) -> std::io::Result<AccountList> {
    let mut list = AccountList::default();
    // Lower-cased nickname -> the line it first stands on.
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut raw = Vec::new();
    let mut line = 0;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            return Ok(list);
        }
        line += 1;
        let mut problem = |message: String| list.problems.push(Problem { line, message });
        let Ok(text) = std::str::from_utf8(&raw) else {
            problem("not valid UTF-8".to_owned());
            continue;
        };
        let text = if line == 1 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        }
        .trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (nick, password) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let nick = match Nick::parse(nick) {
            Ok(nick) => nick,
            Err(e) => {
                problem(format!("invalid nickname {nick:?}: {e}"));
                continue;
            }
        };
        match first_line.entry(nick.as_str().to_ascii_lowercase()) {
            Entry::Occupied(first) => {
                problem(format!("{nick} is already on line {}", first.get()));
                continue;
            }
            Entry::Vacant(slot) => {
                slot.insert(line);
            }
        }
        let password = password.trim();
        if password.is_empty() {
            problem(format!("no password for {nick}"));
        } else if let Some(why) = password_problem(password) {
            problem(format!("{why} ({nick})"));
        } else {
            list.accounts.push(NewAccount {
                line,
                nick,
                password: password.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> AccountList {
        read_accounts(input).unwrap()
    }

    fn problems(list: &AccountList) -> Vec<(usize, &str)> {
        list.problems
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect()
    }

    #[test]
    fn good_lines_comments_and_blanks() {
        let list = read(
            b"\xef\xbb\xbf# team\n\nalice correct horse battery\r\n  bob\t  tab then spaces  \n\
              # carol later\ndave  12345678",
        );
        assert!(list.problems.is_empty(), "{:?}", list.problems);
        let accounts: Vec<(usize, &str, &str)> = list
            .accounts
            .iter()
            .map(|a| (a.line, a.nick.as_str(), a.password.as_str()))
            .collect();
        assert_eq!(
            accounts,
            [
                (3, "alice", "correct horse battery"),
                (4, "bob", "tab then spaces"),
                (6, "dave", "12345678"),
            ]
        );
    }

    #[test]
    fn every_bad_line_is_reported_without_its_password() {
        let list = read(
            b"9lives long-enough-1\nalice short\nbob\nAlice long-enough-2\n\
              carol long-enough-3\n\xff\xfe long-enough-4\nCAROL long-enough-5\n",
        );
        assert_eq!(
            problems(&list),
            [
                (
                    1,
                    "invalid nickname \"9lives\": a nickname is 1-32 letters, digits, '_' or \
                     '-', starting with a letter"
                ),
                (2, "A password needs at least 8 characters (alice)"),
                (3, "no password for bob"),
                (4, "Alice is already on line 2"),
                (6, "not valid UTF-8"),
                (7, "CAROL is already on line 5"),
            ]
        );
        assert_eq!(list.accounts.len(), 1);
        let shown = format!("{list:?}");
        assert!(!shown.contains("long-enough"), "{shown}");
        assert!(!shown.contains("short"), "{shown}");
    }
}
