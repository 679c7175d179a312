//! Property tests for the I/O-free protocol layer: the line codec, the command parser, the
//! server-line formatter and parser, and the name rules. Each property is checked against
//! the contract (`PROTOCOL.md`) or a small reference implementation written here.
//!
//! A failing case is shrunk by proptest and printed; proptest also records its seed in
//! `tests/properties.proptest-regressions` so the next run tries it first.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tokio_util::codec::Decoder;

use tlschat::net::{InboundLine, LineCodec};
use tlschat::protocol::{
    format_timestamp, has_forbidden_control, is_blank, parse_command, ByeReason, Command,
    ErrorCode, HistoryQuery, LeaveReason, NameError, Nick, RoomName, ServerLine, StoredMessage,
    DEFAULT_MAX_LINE, HISTORY_DEFAULT, HISTORY_MAX,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The characters forbidden in text wherever they appear: the contract's controls
/// (U+0000–U+001F except TAB, U+007F, U+0080–U+009F), and, settled in docs/PROTOCOL.md,
/// the bidi embeddings, overrides and isolates, the line and paragraph separators, the
/// deprecated format and interlinear annotation characters, and the language tag.
fn is_forbidden_char(c: char) -> bool {
    let c = c as u32;
    (c <= 0x1f && c != 0x09)
        || (0x7f..=0x9f).contains(&c)
        || (0x202a..=0x202e).contains(&c)
        || (0x2066..=0x2069).contains(&c)
        || c == 0x2028
        || c == 0x2029
        || (0x206a..=0x206f).contains(&c)
        || (0xfff9..=0xfffb).contains(&c)
        || c == 0xe0001
}

/// Tag characters: allowed only inside an emoji flag sequence.
fn is_tag_char(c: char) -> bool {
    ('\u{e0020}'..='\u{e007f}').contains(&c)
}

fn forbidden_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::char::range('\u{0}', '\u{8}'),
        prop::char::range('\u{a}', '\u{1f}'),
        prop::char::range('\u{7f}', '\u{9f}'),
        prop::char::range('\u{202a}', '\u{202e}'),
        prop::char::range('\u{2066}', '\u{2069}'),
        select(vec![
            '\u{2028}',
            '\u{2029}',
            '\u{206f}',
            '\u{fffb}',
            '\u{e0001}'
        ]),
    ]
}

/// Emoji sequences that must survive the check: joined families, variation selectors,
/// skin tones, tag-sequence flags, and the marks right-to-left text needs.
const EMOJI_SEQUENCES: &[&str] = &[
    "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
    "\u{2764}\u{fe0f}",
    "\u{263a}\u{fe0e}",
    "\u{1f44d}\u{1f3fd}",
    "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
    "\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
    "\u{1f1fa}\u{1f1e6}",
    "\u{5e9}\u{200f}!",
    "\u{200e}",
];

/// Characters that are awkward for parsers: Unicode whitespace, case-folding traps
/// (`ſ`, Kelvin sign, dotless/dotted i, fullwidth letters), zero-width characters, emoji.
const TRICKY_CHARS: &[char] = &[
    '\u{a0}',
    '\u{3000}',
    '\u{1680}',
    '\u{200b}',
    '\u{feff}',
    'é',
    'ß',
    'ſ',
    '\u{212a}',
    'ı',
    'İ',
    'Ａ',
    '🎉',
    '\u{10ffff}',
];

/// Any character the contract allows in text (no forbidden controls), biased towards the
/// ones the parsers care about: spaces, `/`, `#`, letters, digits.
fn clean_char() -> impl Strategy<Value = char> {
    prop_oneof![
        10 => prop::char::range('a', 'z'),
        3 => prop::char::range('A', 'Z'),
        3 => prop::char::range('0', '9'),
        6 => select(vec![' ', ' ', ' ', '/', '#', '_', '-', '\t', '.']),
        2 => select(TRICKY_CHARS),
        2 => any::<char>().prop_filter("no forbidden controls", |&c| !is_forbidden_char(c) && !is_tag_char(c)),
    ]
}

fn clean_string(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            20 => clean_char().prop_map(String::from),
            1 => select(EMOJI_SEQUENCES).prop_map(String::from),
        ],
        0..max,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Text as a user might type it, forbidden controls included.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        12 => clean_char(),
        1 => forbidden_char(),
        1 => any::<char>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// LineCodec
// ---------------------------------------------------------------------------------------------

/// Bytes the codec may keep beyond `max_len` for a partial line: one, for a CR that may be
/// followed by the LF.
const CODEC_SLACK: usize = 1;

/// Feeds `data` to a fresh codec in chunks whose sizes cycle through `sizes` (one chunk when
/// `sizes` is empty), draining it after each chunk as `FramedRead` does, then signals EOF.
/// Checks the memory bound after every step.
fn decode_chunked(max_len: usize, data: &[u8], sizes: &[usize]) -> Vec<InboundLine> {
    let mut codec = LineCodec::new(max_len);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut sizes = sizes.iter().copied().cycle();
    let mut rest = data;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        assert!(
            buf.len() <= max_len + CODEC_SLACK,
            "codec kept {} bytes between reads with max_len {max_len}",
            buf.len()
        );
        buf.extend_from_slice(chunk);
        while let Some(line) = codec.decode(&mut buf).expect("decode never errs") {
            out.push(line);
        }
        assert!(
            buf.len() <= max_len + CODEC_SLACK,
            "codec kept {} bytes after a {n}-byte read with max_len {max_len}",
            buf.len()
        );
    }
    while let Some(line) = codec.decode_eof(&mut buf).expect("decode_eof never errs") {
        out.push(line);
    }
    assert!(buf.is_empty(), "bytes left over after EOF: {buf:?}");
    out
}

/// The contract's framing, written directly: split at LF, drop one CR before it, a line
/// longer than `max_len` is `TooLong`, invalid UTF-8 is `BadUtf8`; an unterminated last line
/// still counts.
fn reference_decode(max_len: usize, data: &[u8]) -> Vec<InboundLine> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max_len {
                InboundLine::TooLong
            } else {
                match std::str::from_utf8(line) {
                    Ok(text) => InboundLine::Line(text.to_owned()),
                    Err(_) => InboundLine::BadUtf8,
                }
            }
        })
        .collect()
}

/// Wire bytes with structure: runs of text, multi-byte UTF-8, raw (often invalid) bytes,
/// and line endings, so that short lines, long lines and broken lines all occur.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => "[a-z ]{0,80}".prop_map(String::into_bytes),
        2 => vec(clean_char(), 0..8).prop_map(|cs| String::from_iter(cs).into_bytes()),
        1 => vec(any::<u8>(), 0..8),
        3 => Just(b"\n".to_vec()),
        2 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
    ];
    vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![3 => 1usize..8, 2 => 8usize..128, 1 => 128usize..2048],
        0..12,
    )
}

/// A line of valid UTF-8 without LF (it may contain and end with CR).
fn line_text() -> impl Strategy<Value = String> {
    vec(prop_oneof![12 => clean_char(), 1 => Just('\r')], 0..24).prop_map(String::from_iter)
}

fn strip_one_cr(text: &str) -> &str {
    text.strip_suffix('\r').unwrap_or(text)
}

/// Lines with their endings (`true` = CRLF), and a `max_len` that all of them fit, at most
/// two bytes to spare, so lines of exactly the limit are common.
fn fitting_lines() -> impl Strategy<Value = (Vec<(String, bool)>, usize)> {
    (vec((line_text(), any::<bool>()), 0..16), 0usize..3).prop_map(|(lines, spare)| {
        let longest = lines
            .iter()
            .map(|(text, crlf)| {
                if *crlf {
                    text.len()
                } else {
                    strip_one_cr(text).len()
                }
            })
            .max()
            .unwrap_or(0);
        (lines, longest + spare)
    })
}

fn encode_lines(lines: &[(String, bool)]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (text, crlf) in lines {
        wire.extend_from_slice(text.as_bytes());
        wire.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
    }
    wire
}

fn expected_lines(lines: &[(String, bool)]) -> Vec<InboundLine> {
    lines
        .iter()
        .map(|(text, crlf)| {
            // The CR of a CRLF is dropped; without one, a trailing CR of the text is.
            let text = if *crlf {
                text.as_str()
            } else {
                strip_one_cr(text)
            };
            InboundLine::Line(text.to_owned())
        })
        .collect()
}

proptest! {
    /// No input makes the codec panic or err, the output follows the contract's framing, and
    /// it does not depend on how the bytes were split into reads.
    #[test]
    fn codec_matches_the_reference_whatever_the_chunking(
        max_len in 0usize..48,
        data in prop_oneof![3 => wire_bytes(), 1 => vec(any::<u8>(), 0..4096)],
        sizes in chunk_sizes(),
    ) {
        let whole = decode_chunked(max_len, &data, &[]);
        let chunked = decode_chunked(max_len, &data, &sizes);
        let bytewise = decode_chunked(max_len, &data, &[1]);
        prop_assert_eq!(&whole, &chunked);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(whole, reference_decode(max_len, &data));
    }

    /// Every complete line of valid UTF-8 within the limit comes out as its exact text minus
    /// one trailing CR.
    #[test]
    fn codec_returns_fitting_lines_exactly(
        (lines, max_len) in fitting_lines(),
        sizes in chunk_sizes(),
    ) {
        let out = decode_chunked(max_len, &encode_lines(&lines), &sizes);
        prop_assert_eq!(out, expected_lines(&lines));
    }

    /// A line over the limit yields exactly one `TooLong`, wherever the reads split it, and the
    /// lines around it are decoded as usual.
    #[test]
    fn codec_reports_an_overlong_line_once_and_recovers(
        (before, max_len) in fitting_lines(),
        after in vec((line_text(), any::<bool>()), 1..4),
        excess in prop_oneof![1usize..4, 4usize..10_000],
        fill in any::<u8>().prop_filter("not LF", |&b| b != b'\n'),
        overlong_crlf in any::<bool>(),
        sizes in chunk_sizes(),
    ) {
        // Keep the following lines within the limit too.
        let after: Vec<(String, bool)> = after
            .into_iter()
            .map(|(mut text, crlf)| {
                while text.len() > max_len {
                    text.pop();
                }
                (text, crlf)
            })
            .collect();
        let mut wire = encode_lines(&before);
        // Longer than the limit even after a trailing CR is dropped.
        wire.extend(std::iter::repeat_n(fill, max_len + excess + 1));
        wire.extend_from_slice(if overlong_crlf { b"\r\n" } else { b"\n" });
        wire.extend(encode_lines(&after));

        let mut expected = expected_lines(&before);
        expected.push(InboundLine::TooLong);
        expected.extend(expected_lines(&after));
        prop_assert_eq!(decode_chunked(max_len, &wire, &sizes), expected);
    }

    /// A peer that never sends LF cannot make the codec buffer more than the limit plus the
    /// current read: the overlong line is reported once and the next line still works.
    #[test]
    fn codec_memory_is_bounded_while_discarding(
        max_len in 0usize..256,
        reads in vec((any::<u8>().prop_filter("not LF", |&b| b != b'\n'), 1usize..8192), 1..32),
    ) {
        let mut codec = LineCodec::new(max_len);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut sent = Vec::new();
        for (byte, len) in reads {
            sent.extend(std::iter::repeat_n(byte, len));
            buf.extend(std::iter::repeat_n(byte, len));
            prop_assert!(buf.len() <= max_len + CODEC_SLACK + len);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                out.push(line);
            }
            prop_assert!(
                buf.len() <= max_len + CODEC_SLACK,
                "{} bytes buffered after {} bytes without LF (max_len {max_len})",
                buf.len(),
                sent.len()
            );
        }
        // The flood is one line: at most one TooLong for it, however many reads it took.
        prop_assert!(out.len() <= 1);
        let tail = b"\nstill here\r\n";
        sent.extend_from_slice(tail);
        buf.extend_from_slice(tail);
        while let Some(line) = codec.decode(&mut buf).unwrap() {
            out.push(line);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, reference_decode(max_len, &sent));
    }
}

// ---------------------------------------------------------------------------------------------
// parse_command
// ---------------------------------------------------------------------------------------------

const COMMAND_WORDS: &[&str] = &[
    "join", "JOIN", "part", "say", "Say", "msg", "rooms", "who", "history", "passwd", "help",
    "quit", "frob", "", "/",
];

/// Argument-like fragments, so that the parser's deeper branches are reached.
fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        "#[A-Za-z0-9_-]{0,34}",
        "[A-Za-z][A-Za-z0-9_-]{0,33}",
        select(vec![
            "0",
            "1",
            "50",
            "500",
            "501",
            "-1",
            "after",
            "#",
            "##a",
            "9223372036854775807",
            "9223372036854775808",
            "99999999999999999999",
            "+5",
            "",
        ])
        .prop_map(str::to_owned),
        vec(any_char(), 0..12).prop_map(String::from_iter),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    select(vec![" ", " ", "  ", "\t", ""])
}

/// Input lines as a client might send them: free text, command-shaped lines, and large
/// lines up to a few KB.
fn command_line() -> impl Strategy<Value = String> {
    let command = (
        select(COMMAND_WORDS),
        vec((separator(), argument()), 0..5),
        separator(),
    )
        .prop_map(|(word, args, end)| {
            let mut line = format!("/{word}");
            for (sep, arg) in args {
                line.push_str(sep);
                line.push_str(&arg);
            }
            line.push_str(end);
            line
        });
    prop_oneof![
        4 => vec(any_char(), 0..64).prop_map(String::from_iter),
        4 => command,
        1 => vec(any_char(), 0..4096).prop_map(String::from_iter),
        1 => any::<String>(),
    ]
}

/// The texts in a parsed command that reach other users or the password store.
fn command_texts(command: &Command) -> Vec<&str> {
    match command {
        Command::Say { text, .. } | Command::Msg { text, .. } => vec![text],
        Command::Passwd { old, new } => vec![old, new],
        _ => vec![],
    }
}

/// A nickname by the contract's rule, `[A-Za-z][A-Za-z0-9_-]{0,31}`.
fn nick() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_-]{0,31}"
}

/// A room name by the contract's rule, `#[a-z0-9_-]{1,32}`.
fn room() -> impl Strategy<Value = String> {
    "#[a-z0-9_-]{1,32}"
}

/// A room name as a user may type it: any case.
fn typed_room() -> impl Strategy<Value = String> {
    "#[A-Za-z0-9_-]{1,32}"
}

fn say(room: Option<&str>, text: &str) -> Command {
    Command::Say {
        room: room.map(|r| RoomName::parse(r).unwrap()),
        text: text.to_owned(),
    }
}

proptest! {
    /// The parser never panics, and whatever it accepts carries no forbidden control character
    /// and no blank or right-padded text.
    #[test]
    fn parse_command_never_panics(line in command_line()) {
        match parse_command(&line) {
            Ok(None) => prop_assert!(is_blank(&line)),
            Ok(Some(command)) => {
                prop_assert!(!has_forbidden_control(&line));
                for text in command_texts(&command) {
                    prop_assert!(!has_forbidden_control(text));
                    prop_assert!(!text.is_empty());
                }
                if let Command::Say { text, .. } | Command::Msg { text, .. } = &command {
                    prop_assert!(!is_blank(text));
                    prop_assert_eq!(text.as_str(), text.trim_end());
                }
            }
            Err(error) => {
                prop_assert!(!is_blank(&line));
                prop_assert_eq!(
                    error.code == ErrorCode::BadText,
                    has_forbidden_control(&line),
                    "{:?}",
                    error
                );
            }
        }
    }

    /// `has_forbidden_control` is exactly the list of forbidden characters, wherever they
    /// stand; clean text with emoji sequences passes.
    #[test]
    fn forbidden_controls_are_the_contracts(c in any::<char>(), text in clean_string(16)) {
        prop_assume!(!is_tag_char(c));
        prop_assert_eq!(has_forbidden_control(&c.to_string()), is_forbidden_char(c));
        prop_assert!(!has_forbidden_control(&text));
        prop_assert_eq!(has_forbidden_control(&format!("{text}{c}{text}")), is_forbidden_char(c));
    }

    /// A tag character is refused unless it is part of a whole flag sequence: on its own,
    /// after plain text, or appended to a complete flag.
    #[test]
    fn loose_tag_characters_are_refused(
        tag in prop::char::range('\u{e0020}', '\u{e007f}'),
        text in clean_string(16),
    ) {
        let flag = "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
        let loose = format!("{text}{tag}");
        let after_a_flag = format!("{text}{flag}{tag}");
        let whole_flag = format!("{text}{flag}{text}");
        prop_assert!(has_forbidden_control(&loose));
        prop_assert!(has_forbidden_control(&after_a_flag));
        prop_assert!(!has_forbidden_control(&whole_flag));
    }

    /// A line without forbidden controls that does not start with `/` is a message to the
    /// current room, its trailing whitespace trimmed; a blank one is ignored.
    #[test]
    fn plain_text_is_a_message(line in clean_string(200)) {
        prop_assume!(!line.starts_with('/'));
        let parsed = parse_command(&line);
        if is_blank(&line) {
            prop_assert_eq!(parsed, Ok(None));
        } else {
            prop_assert_eq!(parsed, Ok(Some(say(None, line.trim_end()))));
        }
    }

    /// Any forbidden control character, anywhere, in any kind of line, gives `bad-text`
    /// (a blank line is still just ignored).
    #[test]
    fn control_characters_are_bad_text(
        line in prop_oneof![clean_string(64), command_line()],
        controls in vec((any::<prop::sample::Index>(), forbidden_char()), 1..4),
    ) {
        let mut chars: Vec<char> = line.chars().collect();
        for (at, c) in controls {
            chars.insert(at.index(chars.len() + 1), c);
        }
        let line = String::from_iter(chars);
        let parsed = parse_command(&line);
        if is_blank(&line) {
            prop_assert_eq!(parsed, Ok(None));
        } else {
            prop_assert_eq!(parsed.map_err(|e| e.code), Err(ErrorCode::BadText));
        }
    }

    /// `//text` is the message `/text`.
    #[test]
    fn double_slash_escapes_a_message(text in clean_string(64)) {
        let line = format!("//{text}");
        let expected = format!("/{text}");
        prop_assert_eq!(parse_command(&line), Ok(Some(say(None, expected.trim_end()))));
    }

    /// Well-formed commands parse to what they say; the command word is case-insensitive and
    /// room names are lower-cased.
    #[test]
    fn well_formed_commands_parse(
        room in typed_room(),
        nick in nick(),
        text in clean_string(64).prop_filter("not blank", |t| !is_blank(t)),
        upper in any::<bool>(),
        n in 1u32..=HISTORY_MAX,
        id in 0i64..=i64::MAX,
    ) {
        let word = |w: &str| if upper { w.to_ascii_uppercase() } else { w.to_owned() };
        let lower = room.to_ascii_lowercase();
        let parse = |line: String| parse_command(&line);
        let history = |room: Option<&str>, query| Command::History {
            room: room.map(|r| RoomName::parse(r).unwrap()),
            query,
        };
        let room_name = RoomName::parse(&lower).unwrap();
        prop_assert_eq!(
            parse(format!("/{} {room}", word("join"))),
            Ok(Some(Command::Join(room_name.clone())))
        );
        prop_assert_eq!(
            parse(format!("/{} {room}", word("part"))),
            Ok(Some(Command::Part(Some(room_name))))
        );
        // Spaces after the room or nick separate it from the text, so the text loses its
        // leading spaces (and, like any message, its trailing whitespace).
        let sent = text.trim_start_matches(' ').trim_end();
        prop_assert_eq!(
            parse(format!("/{} {room} {text}", word("say"))),
            Ok(Some(say(Some(&lower), sent)))
        );
        prop_assert_eq!(
            parse(format!("/{} {nick} {text}", word("msg"))),
            Ok(Some(Command::Msg {
                to: Nick::parse(&nick).unwrap(),
                text: sent.to_owned(),
            }))
        );
        prop_assert_eq!(
            parse(format!("/{} {room} {n}", word("history"))),
            Ok(Some(history(Some(&lower), HistoryQuery::Last(n))))
        );
        prop_assert_eq!(
            parse(format!("/{}", word("history"))),
            Ok(Some(history(None, HistoryQuery::Last(HISTORY_DEFAULT))))
        );
        prop_assert_eq!(
            parse(format!("/{} {room} after {id}", word("history"))),
            Ok(Some(history(
                Some(&lower),
                HistoryQuery::After {
                    id,
                    limit: HISTORY_MAX
                }
            )))
        );
        prop_assert_eq!(
            parse(format!("/{} after {id} {n}", word("history"))),
            Ok(Some(history(None, HistoryQuery::After { id, limit: n })))
        );
        let too_many = HISTORY_MAX + n;
        prop_assert_eq!(
            parse(format!("/{} {too_many}", word("history"))).map_err(|e| e.code),
            Err(ErrorCode::BadArgs)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ServerLine
// ---------------------------------------------------------------------------------------------

/// Message ids are positive.
fn message_id() -> impl Strategy<Value = i64> {
    prop_oneof![1i64..1_000_000, 1i64..=i64::MAX]
}

/// Milliseconds since the epoch, 1970 to 2100.
fn millis() -> impl Strategy<Value = i64> {
    0i64..=4_102_444_800_000
}

/// Free text as the server sends it: anything without forbidden controls (TAB is allowed in
/// messages), including empty text and leading, trailing or repeated spaces.
fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => "[ ]{1,3}",
        8 => clean_string(80),
    ]
}

/// A word the server sends as `END what`.
fn end_word() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["rooms", "who", "history"]).prop_map(str::to_owned),
        "[a-z][a-z-]{0,15}",
    ]
}

const KNOWN_BYE: &[&str] = &[
    "quit",
    "auth-failed",
    "login-timeout",
    "too-slow",
    "server-shutdown",
    "server-busy",
    "flooding",
];

fn bye_reason() -> impl Strategy<Value = ByeReason> {
    prop_oneof![
        select(vec![
            ByeReason::Quit,
            ByeReason::AuthFailed,
            ByeReason::LoginTimeout,
            ByeReason::TooSlow,
            ByeReason::ServerShutdown,
            ByeReason::ServerBusy,
            ByeReason::Flooding,
        ]),
        // A word from a newer server; a known word always parses to its own variant.
        "[a-z][a-z-]{0,15}"
            .prop_filter("not a known reason", |w| !KNOWN_BYE.contains(&w.as_str()))
            .prop_map(ByeReason::Other),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    select(vec![
        ErrorCode::AuthFailed,
        ErrorCode::RateLimited,
        ErrorCode::LineTooLong,
        ErrorCode::BadUtf8,
        ErrorCode::BadText,
        ErrorCode::UnknownCommand,
        ErrorCode::BadArgs,
        ErrorCode::BadName,
        ErrorCode::NoSuchRoom,
        ErrorCode::NoSuchUser,
        ErrorCode::NotInRoom,
        ErrorCode::Forbidden,
        ErrorCode::ServerBusy,
    ])
}

fn leave_reason() -> impl Strategy<Value = LeaveReason> {
    select(vec![
        LeaveReason::Part,
        LeaveReason::Quit,
        LeaveReason::Disconnect,
        LeaveReason::Kicked,
        LeaveReason::Timeout,
    ])
}

fn stored_message() -> impl Strategy<Value = StoredMessage> {
    (message_id(), millis(), room(), nick(), free_text()).prop_map(
        |(id, time, room, nick, text)| StoredMessage {
            id,
            time,
            room,
            nick,
            text,
        },
    )
}

/// Every server line the contract describes, with valid fields.
fn server_line() -> impl Strategy<Value = ServerLine> {
    prop_oneof![
        select(vec![
            ServerLine::NickPrompt,
            ServerLine::PassPrompt,
            ServerLine::NewPassPrompt,
        ]),
        (nick(), free_text()).prop_map(|(nick, text)| ServerLine::Welcome { nick, text }),
        stored_message().prop_map(ServerLine::Msg),
        stored_message().prop_map(ServerLine::Hist),
        (message_id(), millis(), nick(), nick(), free_text()).prop_map(
            |(id, time, from, to, text)| ServerLine::Dm {
                id,
                time,
                from,
                to,
                text
            }
        ),
        (room(), millis(), nick()).prop_map(|(room, time, nick)| ServerLine::Join {
            room,
            time,
            nick
        }),
        (room(), millis(), nick(), leave_reason()).prop_map(|(room, time, nick, reason)| {
            ServerLine::Leave {
                room,
                time,
                nick,
                reason,
            }
        }),
        (room(), any::<u64>(), any::<u64>()).prop_map(|(room, members, online)| {
            ServerLine::Room {
                room,
                members,
                online,
            }
        }),
        (room(), nick(), any::<bool>()).prop_map(|(room, nick, online)| ServerLine::Member {
            room,
            nick,
            online
        }),
        end_word().prop_map(ServerLine::End),
        free_text().prop_map(ServerLine::Info),
        (error_code(), free_text()).prop_map(|(code, text)| ServerLine::Err { code, text }),
        bye_reason().prop_map(ServerLine::Bye),
    ]
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, checked character by character.
fn has_timestamp_shape(word: &str) -> bool {
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    word.len() == shape.len()
        && word.bytes().zip(shape).all(|(b, &s)| match s {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
}

proptest! {
    /// `parse` inverts `Display` for every valid line, and the wire form is one LF-terminated
    /// line without CR that starts with an upper-case keyword.
    #[test]
    fn server_lines_round_trip(line in server_line()) {
        let wire = line.to_string();
        prop_assert_eq!(ServerLine::parse(&wire), Some(line.clone()), "wire: {:?}", wire);

        let bytes = line.to_bytes();
        prop_assert_eq!(bytes.last(), Some(&b'\n'));
        prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert!(!bytes.contains(&b'\r'));
        prop_assert_eq!(&bytes[..bytes.len() - 1], wire.as_bytes());

        let keyword = wire.split(' ').next().unwrap_or_default();
        prop_assert!(!keyword.is_empty() && keyword.bytes().all(|b| b.is_ascii_uppercase()));
    }

    /// What the bundled client does with a line: frame it with the codec, then parse it.
    #[test]
    fn server_lines_survive_the_codec(line in server_line(), sizes in chunk_sizes()) {
        let out = decode_chunked(DEFAULT_MAX_LINE, &line.to_bytes(), &sizes);
        prop_assert_eq!(out.len(), 1);
        let InboundLine::Line(text) = &out[0] else {
            return Err(TestCaseError::fail(format!("not a line: {:?}", out[0])));
        };
        prop_assert_eq!(ServerLine::parse(text), Some(line));
    }

    /// Timestamps are RFC 3339 UTC with milliseconds.
    #[test]
    fn timestamps_have_the_contract_shape(time in millis()) {
        let stamp = format_timestamp(time);
        prop_assert!(has_timestamp_shape(&stamp), "{}", stamp);
    }

    /// `ServerLine::parse` never panics, whatever the server (or a man in the middle that
    /// TLS did not stop) sends.
    #[test]
    fn server_line_parse_never_panics(
        keyword in select(vec![
            "NICK", "PASS", "NEWPASS", "WELCOME", "MSG", "HIST", "DM", "JOIN", "LEAVE", "ROOM",
            "MEMBER", "END", "INFO", "ERR", "BYE", "nick", "",
        ]),
        fields in vec((separator(), prop_oneof![
            argument(),
            millis().prop_map(format_timestamp),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.+Z-]{0,20}",
        ]), 0..7),
        noise in any::<String>(),
    ) {
        let mut line = keyword.to_owned();
        for (sep, field) in fields {
            line.push_str(sep);
            line.push_str(&field);
        }
        let _ = ServerLine::parse(&line);
        let _ = ServerLine::parse(&noise);
        let _ = ServerLine::parse(&format!("{keyword} {noise}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

// The reference spells the alphabets out rather than calling the `is_ascii_*` helpers the
// implementation uses.
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

fn is_letter(c: char) -> bool {
    LOWER.contains(c) || UPPER.contains(c)
}

fn is_name_char(c: char) -> bool {
    is_letter(c) || DIGITS.contains(c) || c == '_' || c == '-'
}

fn to_lower(c: char) -> char {
    match UPPER.find(c) {
        Some(at) => LOWER[at..].chars().next().unwrap(),
        None => c,
    }
}

/// The contract's nickname rule: 1–32 of `A–Z a–z 0–9 _ -`, starting with a letter; kept as
/// typed.
fn reference_nick(input: &str) -> Option<String> {
    let chars: Vec<char> = input.chars().collect();
    let valid = (1..=32).contains(&chars.len())
        && is_letter(chars[0])
        && chars.iter().all(|&c| is_name_char(c));
    valid.then(|| input.to_owned())
}

/// The contract's room rule: `#` and 1–32 of `a–z 0–9 _ -`, input lower-cased first.
fn reference_room(input: &str) -> Option<String> {
    let rest: Vec<char> = input.strip_prefix('#')?.chars().collect();
    let valid = (1..=32).contains(&rest.len()) && rest.iter().all(|&c| is_name_char(c));
    valid.then(|| {
        std::iter::once('#')
            .chain(rest.iter().map(|&c| to_lower(c)))
            .collect()
    })
}

fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        10 => select(vec!['a', 'z', 'A', 'Z', 'm', 'Q', '0', '9', '_', '-']),
        4 => prop::char::range('!', '~'),
        2 => select(vec!['#', ' ', '\t', '\0', '\n']),
        2 => select(TRICKY_CHARS),
        1 => any::<char>(),
    ]
}

/// A name that follows the rules except for one character, which may look or case-fold
/// like a valid one (the Kelvin sign lower-cases to `k` under Unicode rules).
fn near_valid_name() -> impl Strategy<Value = String> {
    (
        prop_oneof!["[A-Za-z][A-Za-z0-9_-]{0,31}", "#[A-Za-z0-9_-]{1,32}"],
        any::<prop::sample::Index>(),
        prop_oneof![
            select(TRICKY_CHARS),
            prop::char::range('!', '~'),
            any::<char>()
        ],
    )
        .prop_map(|(name, at, c)| {
            let mut chars: Vec<char> = name.chars().collect();
            let at = at.index(chars.len());
            chars[at] = c;
            String::from_iter(chars)
        })
}

/// Short strings around the name rules: random ones, ones with a `#`, ones that follow the
/// rules except perhaps for the length (0 to 35 characters) or for one character.
fn name_input() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(name_char(), 0..40).prop_map(String::from_iter),
        vec(name_char(), 0..40).prop_map(|cs| format!("#{}", String::from_iter(cs))),
        "[A-Za-z][A-Za-z0-9_-]{0,34}",
        "#[A-Za-z0-9_-]{0,35}",
        "[A-Za-z0-9_#-]{0,35}",
        near_valid_name(),
        near_valid_name(),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// `Nick::parse` accepts exactly the contract's nicknames and keeps them as typed.
    #[test]
    fn nick_parse_matches_the_reference(input in name_input()) {
        let parsed = Nick::parse(&input);
        prop_assert_eq!(
            parsed.as_ref().map(|n| n.as_str().to_owned()).ok(),
            reference_nick(&input)
        );
        match parsed {
            Ok(nick) => {
                prop_assert_eq!(nick.to_string(), input);
                prop_assert_eq!(Nick::parse(nick.as_str()), Ok(nick.clone()));
            }
            Err(error) => prop_assert_eq!(error, NameError::BadNick),
        }
    }

    /// `RoomName::parse` accepts exactly the contract's room names, lower-cases them, and its
    /// output parses to itself.
    #[test]
    fn room_parse_matches_the_reference(input in name_input()) {
        let parsed = RoomName::parse(&input);
        prop_assert_eq!(
            parsed.as_ref().map(|r| r.as_str().to_owned()).ok(),
            reference_room(&input)
        );
        match parsed {
            Ok(room) => {
                let name = room.as_str();
                prop_assert!(!name.chars().any(|c| c.is_uppercase()), "{}", name);
                prop_assert_eq!(name.to_lowercase(), name);
                prop_assert_eq!(room.to_string(), name);
                prop_assert_eq!(RoomName::parse(name), Ok(room.clone()));
            }
            Err(error) => prop_assert_eq!(error, NameError::BadRoom),
        }
    }
}
