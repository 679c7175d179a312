//! Feeds arbitrary bytes to `LineCodec` in reads whose sizes come from the input, and checks
//! that it never panics or errs, that its buffer stays within `max_len` plus one byte between
//! reads, and that the output does not depend on the read sizes and matches the contract's
//! framing (split at LF, drop one CR before it, too long or bad UTF-8 as values).
//!
//! Input layout: byte 0 is `max_len`, bytes 1..=4 are read sizes (each plus one, cycled), the
//! rest is what the peer sends.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tlschat::net::{InboundLine, LineCodec};
use tokio_util::codec::Decoder;

fn decode(max_len: usize, data: &[u8], sizes: &[usize]) -> Vec<InboundLine> {
    let mut codec = LineCodec::new(max_len);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut sizes = sizes.iter().copied().cycle();
    let mut rest = data;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(chunk);
        while let Some(line) = codec.decode(&mut buf).expect("decode never errs") {
            out.push(line);
        }
        assert!(
            buf.len() <= max_len + 1,
            "{} bytes buffered with max_len {max_len}",
            buf.len()
        );
    }
    while let Some(line) = codec.decode_eof(&mut buf).expect("decode_eof never errs") {
        out.push(line);
    }
    assert!(buf.is_empty());
    out
}

fn reference(max_len: usize, data: &[u8]) -> Vec<InboundLine> {
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

fuzz_target!(|data: &[u8]| {
    let Some((&max_len, rest)) = data.split_first() else {
        return;
    };
    let max_len = usize::from(max_len);
    let (sizes, payload) = rest.split_at(rest.len().min(4));
    let sizes: Vec<usize> = sizes.iter().map(|&b| usize::from(b) + 1).collect();

    let chunked = decode(max_len, payload, &sizes);
    let whole = decode(max_len, payload, &[]);
    assert_eq!(chunked, whole, "read sizes changed the output");
    assert_eq!(whole, reference(max_len, payload));
});
