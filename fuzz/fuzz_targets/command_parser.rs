//! Runs the client-line parser and the server-line parser on the (lossy UTF-8) input. Neither
//! may panic; an accepted client line never carries a forbidden control character; and a
//! parsed server line formats to a line that parses to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::protocol::{has_forbidden_control, is_blank, parse_command, ServerLine};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);

    match parse_command(&line) {
        Ok(None) => assert!(is_blank(&line)),
        Ok(Some(_)) => assert!(!has_forbidden_control(&line)),
        Err(_) => assert!(!is_blank(&line)),
    }

    if let Some(parsed) = ServerLine::parse(&line) {
        let wire = parsed.to_string();
        assert_eq!(ServerLine::parse(&wire), Some(parsed), "wire: {wire:?}");
    }
});
