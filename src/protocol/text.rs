use std::borrow::Cow;
use std::ops::ControlFlow;

/// True when the text holds a character that must never reach another user's terminal.
pub fn has_forbidden_control(text: &str) -> bool {
    let mut found = false;
    for_each_forbidden(text, |_| {
        found = true;
        ControlFlow::Break(())
    });
    found
}

/// Characters refused wherever they appear:
/// - C0 controls except TAB, DEL, and the C1 controls (a CR inside a line is one of them);
/// - the bidirectional embeddings, overrides and isolates (U+202A–202E, U+2066–2069), which
///   reorder what follows them, so a line can show text in another order than it was
///   written ("Trojan Source");
/// - the line and paragraph separators U+2028/2029, which some terminals and editors break
///   a line at;
/// - the deprecated format characters U+206A–206F and the interlinear annotation characters
///   U+FFF9–FFFB, which can hide or rearrange text, and the language tag U+E0001.
///
/// The bidi *marks* (U+200E, U+200F, U+061C) stay allowed: they only set the direction of
/// the neutral characters next to them, and right-to-left writers need them. So do the
/// joiners (U+200C, U+200D) and variation selectors that emoji and many scripts depend on.
/// Tag characters (U+E0020–E007F) are allowed only inside an emoji flag sequence; that needs
/// their neighbours, see [`has_forbidden_control`].
pub fn is_forbidden_control(c: char) -> bool {
    (c.is_control() && c != '\t')
        || ('\u{80}'..='\u{9f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || c == '\u{2028}'
        || c == '\u{2029}'
        || ('\u{206a}'..='\u{206f}').contains(&c)
        || ('\u{fff9}'..='\u{fffb}').contains(&c)
        || c == '\u{e0001}'
}

const WAVING_BLACK_FLAG: char = '\u{1f3f4}';
const CANCEL_TAG: char = '\u{e007f}';

/// Calls `found` with the byte offset of each forbidden character, until it says stop:
/// [`is_forbidden_control`] ones, and tag characters outside an emoji tag sequence (a waving
/// black flag, tag characters U+E0020–E007E, the cancel tag U+E007F: the flags of England,
/// Scotland, Wales). Loose tag characters are invisible and could smuggle hidden text.
fn for_each_forbidden(text: &str, mut found: impl FnMut(usize) -> ControlFlow<()>) {
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if is_forbidden_control(c) || ('\u{e0020}'..=CANCEL_TAG).contains(&c) {
            if found(at).is_break() {
                return;
            }
        } else if c == WAVING_BLACK_FLAG {
            let mut ahead = chars.clone();
            let mut tags = 0;
            let end = loop {
                match ahead.next() {
                    Some((_, tag)) if ('\u{e0020}'..='\u{e007e}').contains(&tag) => tags += 1,
                    other => break other,
                }
            };
            if tags > 0 && matches!(end, Some((_, CANCEL_TAG))) {
                chars = ahead;
            }
        }
    }
}

/// The text with every forbidden character shown as U+FFFD, for displaying what a server
/// sent (it refuses them from users; this guards against one that does not).
pub fn replace_forbidden(text: &str) -> Cow<'_, str> {
    let mut positions = Vec::new();
    for_each_forbidden(text, |at| {
        positions.push(at);
        ControlFlow::Continue(())
    });
    if positions.is_empty() {
        return Cow::Borrowed(text);
    }
    let shown = text
        .char_indices()
        .map(|(at, c)| {
            if positions.binary_search(&at).is_ok() {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    Cow::Owned(shown)
}

/// Lines that are empty after trimming trailing whitespace are ignored by the server.
pub fn is_blank(line: &str) -> bool {
    line.trim_end().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGLAND: &str = "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";

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
    fn direction_overrides_and_separators_are_refused() {
        for c in ('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{2028}', '\u{2029}', '\u{206e}', '\u{fffa}', '\u{e0001}'])
        {
            assert!(has_forbidden_control(&format!("ok {c} ok")), "{c:?}");
        }
        // Right-to-left writing needs its marks; the neutral ones cannot reorder a line.
        assert!(!has_forbidden_control("שלום\u{200f}!\u{200e} ok \u{61c}"));
    }

    #[test]
    fn emoji_sequences_pass_and_loose_tags_do_not() {
        for good in [
            "👨\u{200d}👩\u{200d}👧",
            "❤\u{fe0f} ☺\u{fe0e}",
            ENGLAND,
            &format!("{ENGLAND}{ENGLAND} and text"),
            "\u{1f3f4}",
            "می\u{200c}خواهم",
        ] {
            assert!(!has_forbidden_control(good), "{good:?}");
        }
        for bad in [
            "hidden \u{e0068}\u{e0069}",
            // A flag that never ends, or a cancel tag on its own.
            "\u{1f3f4}\u{e0067}\u{e0062}",
            "\u{1f3f4}\u{e0067}x\u{e007f}",
            "x\u{e007f}",
            // A flag, then more tags after its end.
            &format!("{ENGLAND}\u{e0061}"),
        ] {
            assert!(has_forbidden_control(bad), "{bad:?}");
        }
    }

    #[test]
    fn replacing_shows_exactly_the_forbidden_characters() {
        assert_eq!(replace_forbidden(ENGLAND), ENGLAND);
        assert_eq!(
            replace_forbidden("a\u{1b}b\u{202e}c\u{e0041}"),
            "a\u{fffd}b\u{fffd}c\u{fffd}"
        );
    }

    #[test]
    fn blank_lines() {
        assert!(is_blank(""));
        assert!(is_blank("  \t "));
        assert!(!is_blank(" x"));
    }
}
