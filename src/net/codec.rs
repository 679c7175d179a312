use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

/// One decoded line, or the reason a line could not be used. Bad input is an ordinary value,
/// never a codec error: a codec error ends a framed stream, and a user's mistake must not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundLine {
    /// A UTF-8 line without its LF (or CRLF).
    Line(String),
    /// A line longer than the limit; the codec drops the rest of it up to the next LF.
    TooLong,
    /// A line that is not valid UTF-8.
    BadUtf8,
}

/// LF-delimited lines of at most `max_len` bytes (not counting the line ending). Memory per
/// connection stays at about `max_len` plus one read, whatever the peer sends.
#[derive(Debug)]
pub struct LineCodec {
    max_len: usize,
    /// Bytes already searched for LF, so a slowly arriving line is not rescanned.
    scanned: usize,
    /// Inside an overlong line whose `TooLong` was already reported.
    discarding: bool,
}

impl LineCodec {
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
            discarding: false,
        }
    }

    fn finish_line(&self, mut line: BytesMut) -> InboundLine {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_len {
            return InboundLine::TooLong;
        }
        match String::from_utf8(line.to_vec()) {
            Ok(text) => InboundLine::Line(text),
            Err(_) => InboundLine::BadUtf8,
        }
    }
}

impl Decoder for LineCodec {
    type Item = InboundLine;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<InboundLine>, std::io::Error> {
        loop {
            let newline = buf[self.scanned..].iter().position(|&b| b == b'\n');
            match newline {
                Some(offset) => {
                    let end = self.scanned + offset;
                    self.scanned = 0;
                    let mut line = buf.split_to(end + 1);
                    if std::mem::take(&mut self.discarding) {
                        continue;
                    }
                    line.truncate(end);
                    return Ok(Some(self.finish_line(line)));
                }
                None if self.discarding => {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                // One byte of slack for a CR that may precede the LF.
                None if buf.len() > self.max_len + 1 => {
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(InboundLine::TooLong));
                }
                None => {
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<InboundLine>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        self.scanned = 0;
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        // A last line without its LF still counts: the peer meant it.
        let line = buf.split_to(buf.len());
        Ok(Some(self.finish_line(line)))
    }
}

/// Bytes read from the peer at a time. Clients send little; a small chunk keeps an idle
/// connection small.
const READ_CHUNK: usize = 512;

/// Reads [`LineCodec`] lines from a byte stream, holding as little memory as it can while
/// it waits: a read chunk, plus a partial line only while one is pending. (tokio-util's
/// `FramedRead` keeps 8 KiB per connection for good; with thousands of idle connections
/// that was a third of their memory.)
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    codec: LineCodec,
    pending: BytesMut,
    at_eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max_len: usize) -> Self {
        Self {
            reader,
            codec: LineCodec::new(max_len),
            pending: BytesMut::new(),
            at_eof: false,
        }
    }

    /// The next line, or `None` at the end of the stream. Cancel-safe: dropping the future
    /// loses no bytes, so it can race a timeout or a shutdown in `select!`.
    pub async fn next(&mut self) -> Option<std::io::Result<InboundLine>> {
        loop {
            if self.at_eof {
                return self.codec.decode_eof(&mut self.pending).transpose();
            }
            if let Some(line) = self.codec.decode(&mut self.pending).transpose() {
                return Some(line);
            }
            if self.pending.is_empty() {
                // Give the buffer back while waiting for the peer.
                self.pending = BytesMut::new();
            }
            let mut chunk = [0u8; READ_CHUNK];
            match self.reader.read(&mut chunk).await {
                Ok(0) => self.at_eof = true,
                Ok(read) => self.pending.extend_from_slice(&chunk[..read]),
                Err(error) => return Some(Err(error)),
            }
        }
    }

    pub fn into_inner(self) -> R {
        self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, chunks: &[&[u8]]) -> Vec<InboundLine> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                out.push(line);
            }
        }
        while let Some(line) = codec.decode_eof(&mut buf).unwrap() {
            out.push(line);
        }
        out
    }

    fn line(s: &str) -> InboundLine {
        InboundLine::Line(s.to_owned())
    }

    #[test]
    fn lines_crlf_and_partial_reads() {
        let mut codec = LineCodec::new(16);
        let out = decode_all(&mut codec, &[b"hel", b"lo\r\nwor", b"ld\n\n", b"last"]);
        assert_eq!(
            out,
            vec![line("hello"), line("world"), line(""), line("last")]
        );
    }

    #[test]
    fn overlong_line_is_reported_once_and_skipped() {
        let mut codec = LineCodec::new(8);
        let out = decode_all(&mut codec, &[b"0123456789", b"abcdef", b"ghij\nok\n"]);
        assert_eq!(out, vec![InboundLine::TooLong, line("ok")]);
        let out = decode_all(&mut codec, &[b"123456789\nexactly8\nexactly8\r\n"]);
        assert_eq!(
            out,
            vec![InboundLine::TooLong, line("exactly8"), line("exactly8")]
        );
    }

    #[test]
    fn buffer_stays_bounded_while_discarding() {
        let mut codec = LineCodec::new(8);
        let mut buf = BytesMut::new();
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[b'x'; 100]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(InboundLine::TooLong));
        for _ in 0..100 {
            buf.extend_from_slice(&[b'y'; 1000]);
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            assert!(buf.is_empty());
        }
        buf.extend_from_slice(b"zz\nfine\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(line("fine")));
    }

    #[test]
    fn invalid_utf8_is_a_value() {
        let mut codec = LineCodec::new(64);
        let out = decode_all(&mut codec, &[b"ok\n\xff\xfe\nstill ok\n"]);
        assert_eq!(
            out,
            vec![line("ok"), InboundLine::BadUtf8, line("still ok")]
        );
    }

    #[tokio::test]
    async fn line_reader_reads_across_chunks_and_keeps_a_last_line() {
        let long = "x".repeat(3 * READ_CHUNK);
        let mut input = Vec::new();
        input.extend_from_slice(b"one\r\n");
        input.extend_from_slice(long.as_bytes());
        input.extend_from_slice(b"\n\xffbad\n");
        input.extend_from_slice(&[b'y'; 4 * READ_CHUNK]);
        input.extend_from_slice(b"\nlast");
        let mut reader = LineReader::new(&input[..], 3 * READ_CHUNK);
        let mut out = Vec::new();
        while let Some(line) = reader.next().await {
            out.push(line.unwrap());
        }
        let expected = vec![
            line("one"),
            line(&long),
            InboundLine::BadUtf8,
            InboundLine::TooLong,
            line("last"),
        ];
        assert_eq!(out, expected);
        assert_eq!(reader.pending.capacity(), 0, "nothing held at the end");
    }

    #[test]
    fn stray_cr_inside_a_line_is_kept_for_the_text_check() {
        let mut codec = LineCodec::new(64);
        let out = decode_all(&mut codec, &[b"a\rb\r\n"]);
        assert_eq!(out, vec![line("a\rb")]);
    }
}
