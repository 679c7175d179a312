//! One benchmark connection: TLS, login and joining a room in either dialect, and the
//! payload that every benchmark message carries.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub type Tls = TlsStream<TcpStream>;

/// The protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// tlschat's own protocol (NICK/PASS prompts, `/say`).
    Tlschat,
    /// IRC (`NICK`/`USER`/`JOIN`/`PRIVMSG`), for ngIRCd and InspIRCd.
    Irc,
}

impl Dialect {
    /// Whether a sender receives its own messages (tlschat echoes them; IRC does not).
    pub fn echoes(self) -> bool {
        self == Self::Tlschat
    }

    /// Appends the line that sends a message to `room`; `payload` writes the text in place.
    pub fn push_message(self, out: &mut Vec<u8>, room: &str, payload: impl FnOnce(&mut Vec<u8>)) {
        let (command, separator, end): (&[u8], &[u8], &[u8]) = match self {
            Self::Tlschat => (b"/say ", b" ", b"\n"),
            Self::Irc => (b"PRIVMSG ", b" :", b"\r\n"),
        };
        out.extend_from_slice(command);
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(separator);
        payload(out);
        out.extend_from_slice(end);
    }

    /// The payload of a live room message, if `line` is one.
    pub fn live_payload(self, line: &[u8]) -> Option<&[u8]> {
        let marker = match self {
            Self::Tlschat if line.starts_with(b"MSG ") => &b" ~b"[..],
            Self::Irc
                if line.starts_with(b":") && memchr::memmem::find(line, b" PRIVMSG ").is_some() =>
            {
                &b" :~b"[..]
            }
            _ => return None,
        };
        let at = memchr::memmem::find(line, marker)?;
        Some(&line[at + marker.len() - 2..])
    }

    /// Whether `line` reports an error: tlschat's `ERR` and `BYE`, IRC's `ERROR` and error
    /// numerics (400–599).
    pub fn is_error(self, line: &[u8]) -> bool {
        match self {
            Self::Tlschat => line.starts_with(b"ERR ") || line.starts_with(b"BYE"),
            Self::Irc => {
                if line.starts_with(b"ERROR") {
                    return true;
                }
                let mut words = line.split(|&b| b == b' ');
                let _prefix = words.next();
                matches!(words.next(), Some([b'4' | b'5', _, _]))
            }
        }
    }

    /// The answer to a keep-alive probe, if `line` is one (IRC `PING`).
    pub fn pong(self, line: &[u8]) -> Option<Vec<u8>> {
        let token = line.strip_prefix(b"PING")?;
        (self == Self::Irc).then(|| [b"PONG".as_slice(), token, b"\r\n"].concat())
    }
}

/// Benchmark payloads: `~b<sender> <seq> <send time in µs> ` padded with `x` to a fixed
/// size, so every receiver can tell who sent it, whether anything is missing, and how long
/// it took.
pub fn write_payload(out: &mut Vec<u8>, sender: usize, seq: u64, sent_us: u64, size: usize) {
    let start = out.len();
    out.extend_from_slice(b"~b");
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(number.format(sender).as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.format(seq).as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.format(sent_us).as_bytes());
    out.push(b' ');
    let written = out.len() - start;
    out.resize(start + size.max(written), b'x');
}

/// (sender, sequence, send time in µs) of a payload written by [`write_payload`].
pub fn parse_payload(payload: &[u8]) -> Option<(usize, u64, u64)> {
    let rest = payload.strip_prefix(b"~b")?;
    let mut fields = rest.splitn(4, |&b| b == b' ');
    let mut number = || -> Option<u64> {
        let digits = fields.next()?;
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    let sender = usize::try_from(number()?).ok()?;
    Some((sender, number()?, number()?))
}

/// A read buffer that hands out complete lines without copying them.
pub struct LineBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

/// Longest server line accepted before the connection counts as broken.
const MAX_LINE: usize = 64 * 1024;

impl LineBuffer {
    pub fn new() -> Self {
        Self {
            data: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes; `Ok(0)` at the end of the stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            if self.data.len() >= MAX_LINE {
                return Err(std::io::Error::other("server line too long"));
            }
            self.data.resize(self.data.len() * 2, 0);
        }
        let read = reader.read(&mut self.data[self.end..]).await?;
        self.end += read;
        Ok(read)
    }

    /// The next complete line, without its line ending.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let pending = &self.data[self.start..self.end];
        let newline = memchr::memchr(b'\n', pending)?;
        let line = &self.data[self.start..self.start + newline];
        self.start += newline + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// Waits for the next complete line; an error at the end of the stream.
    pub async fn read_line<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> anyhow::Result<String> {
        loop {
            if let Some(line) = self.next_line() {
                return Ok(String::from_utf8_lossy(line).into_owned());
            }
            if self.fill(reader).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: Arc<ClientConfig>,
    pub dialect: Dialect,
}

/// The password `chat-bench users` gives a benchmark account. Only for benchmark servers:
/// anyone who knows the nickname knows the password.
pub fn bench_password(nick: &str) -> String {
    format!("{nick}-bench-password")
}

/// A logged-in connection that has joined its room, with what it has read but not used.
pub struct Connection {
    pub stream: Tls,
    pub buffer: LineBuffer,
}

impl Target {
    pub async fn open(&self) -> anyhow::Result<(Tls, LineBuffer)> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .context("connect")?;
        self.handshake(tcp).await
    }

    /// A TCP connection from the local address `from` (a loopback address other than
    /// 127.0.0.1, say, to act as another client address).
    pub async fn connect_from(&self, from: IpAddr) -> anyhow::Result<TcpStream> {
        let server = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .find(|addr| addr.is_ipv4() == from.is_ipv4())
            .with_context(|| format!("{} has no address of the family of {from}", self.host))?;
        let socket = match from {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket
            .bind(SocketAddr::new(from, 0))
            .with_context(|| format!("cannot bind {from}"))?;
        socket.connect(server).await.context("connect")
    }

    /// The TLS handshake on a connected socket.
    pub async fn handshake(&self, tcp: TcpStream) -> anyhow::Result<(Tls, LineBuffer)> {
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(self.host.clone())?;
        let stream = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        Ok((stream, LineBuffer::new()))
    }

    /// Connects, logs in as `nick` and joins `room`, within `timeout`.
    pub async fn join(
        &self,
        nick: &str,
        room: &str,
        timeout: Duration,
    ) -> anyhow::Result<Connection> {
        let attempt = async {
            let (mut stream, mut buffer) = self.open().await?;
            self.log_in(&mut stream, &mut buffer, nick).await?;
            self.join_room(&mut stream, &mut buffer, nick, room).await?;
            Ok(Connection { stream, buffer })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .with_context(|| format!("{nick} did not log in and join within {timeout:?}"))?
    }

    /// Logs in; returns once the server has welcomed `nick`.
    pub async fn log_in(
        &self,
        stream: &mut Tls,
        buffer: &mut LineBuffer,
        nick: &str,
    ) -> anyhow::Result<()> {
        match self.dialect {
            Dialect::Tlschat => loop {
                let line = buffer.read_line(stream).await?;
                match line.as_str() {
                    "NICK" => send(stream, format!("{nick}\n").as_bytes()).await?,
                    "PASS" => {
                        send(stream, format!("{}\n", bench_password(nick)).as_bytes()).await?
                    }
                    _ if line.starts_with("WELCOME ") => return Ok(()),
                    _ if line.starts_with("ERR ") || line.starts_with("BYE") => {
                        bail!("{nick}: {line}")
                    }
                    _ => {}
                }
            },
            Dialect::Irc => {
                send(
                    stream,
                    format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes(),
                )
                .await?;
                loop {
                    let line = buffer.read_line(stream).await?;
                    if let Some(pong) = self.dialect.pong(line.as_bytes()) {
                        send(stream, &pong).await?;
                    } else if irc_numeric(&line) == Some("001") {
                        return Ok(());
                    } else if self.dialect.is_error(line.as_bytes()) {
                        bail!("{nick}: {line}");
                    }
                }
            }
        }
    }

    /// Joins `room` (leaving tlschat's default room, so later runs don't announce every
    /// benchmark login there) and waits for the server to confirm it.
    async fn join_room(
        &self,
        stream: &mut Tls,
        buffer: &mut LineBuffer,
        nick: &str,
        room: &str,
    ) -> anyhow::Result<()> {
        match self.dialect {
            Dialect::Tlschat => {
                // Answers come in request order, so once the short history asked for last
                // has ended, the join is done and every room the login announced (`JOIN
                // #room time nick`, one per stored membership) has been seen.
                send(
                    stream,
                    format!("/join {room}\n/history {room} 1\n").as_bytes(),
                )
                .await?;
                let me = format!(" {nick}");
                let mut elsewhere = Vec::new();
                loop {
                    let line = buffer.read_line(stream).await?;
                    if line == "END history" {
                        break;
                    }
                    if line.starts_with("BYE") {
                        bail!("{nick}: {line}");
                    }
                    let joined = line.strip_prefix("JOIN ").filter(|_| line.ends_with(&me));
                    if let Some(other) = joined.and_then(|rest| rest.split(' ').next()) {
                        if other != room && !elsewhere.iter().any(|r| r == other) {
                            elsewhere.push(other.to_owned());
                        }
                    }
                }
                // Leave the rooms of earlier runs and the default room, so this run's
                // logins and messages reach only this run's room.
                let parts: String = elsewhere.iter().map(|r| format!("/part {r}\n")).collect();
                if !parts.is_empty() {
                    send(stream, parts.as_bytes()).await?;
                }
                Ok(())
            }
            Dialect::Irc => {
                send(stream, format!("JOIN {room}\r\n").as_bytes()).await?;
                loop {
                    let line = buffer.read_line(stream).await?;
                    if let Some(pong) = self.dialect.pong(line.as_bytes()) {
                        send(stream, &pong).await?;
                    } else if irc_numeric(&line) == Some("366") {
                        return Ok(());
                    } else if self.dialect.is_error(line.as_bytes()) {
                        bail!("{nick}: {line}");
                    }
                }
            }
        }
    }

    /// Says goodbye politely, so the server's log shows a quit rather than a reset.
    pub async fn quit<W: AsyncWrite + Unpin>(&self, writer: &mut W) {
        let line: &[u8] = match self.dialect {
            Dialect::Tlschat => b"/quit\n",
            Dialect::Irc => b"QUIT :done\r\n",
        };
        let _ = writer.write_all(line).await;
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    }
}

fn irc_numeric(line: &str) -> Option<&str> {
    let mut words = line.split(' ');
    words.next().filter(|prefix| prefix.starts_with(':'))?;
    words.next()
}

pub async fn send<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_at_a_fixed_size() {
        let mut out = Vec::new();
        write_payload(&mut out, 12, 345, 6_789_000, 64);
        assert_eq!(out.len(), 64);
        assert_eq!(parse_payload(&out), Some((12, 345, 6_789_000)));
        assert_eq!(parse_payload(b"~b1 2"), None);
        assert_eq!(parse_payload(b"hello"), None);
    }

    #[test]
    fn messages_in_both_dialects() {
        let mut out = Vec::new();
        Dialect::Tlschat.push_message(&mut out, "#r", |out| out.extend_from_slice(b"hi"));
        Dialect::Irc.push_message(&mut out, "#r", |out| out.extend_from_slice(b"hi"));
        assert_eq!(out, b"/say #r hi\nPRIVMSG #r :hi\r\n");
    }

    #[test]
    fn live_payloads_in_both_dialects() {
        let tlschat = b"MSG #bench 7 2026-11-21T12:00:00.000Z b1 ~b1 2 3 xx";
        assert_eq!(
            Dialect::Tlschat.live_payload(tlschat),
            Some(&b"~b1 2 3 xx"[..])
        );
        let replayed = b"HIST #bench 7 2026-11-21T12:00:00.000Z b1 ~b1 2 3 xx";
        assert_eq!(Dialect::Tlschat.live_payload(replayed), None);
        let irc = b":b1!b1@localhost PRIVMSG #bench :~b1 2 3 xx";
        assert_eq!(Dialect::Irc.live_payload(irc), Some(&b"~b1 2 3 xx"[..]));
        assert_eq!(Dialect::Irc.live_payload(b":srv NOTICE b1 :~b1 2 3"), None);
    }

    #[test]
    fn errors_and_pings() {
        assert!(Dialect::Tlschat.is_error(b"ERR rate-limited slow down"));
        assert!(Dialect::Tlschat.is_error(b"BYE too-slow"));
        assert!(!Dialect::Tlschat.is_error(b"INFO hello"));
        assert!(Dialect::Irc.is_error(b":srv 404 b1 #bench :Cannot send to channel"));
        assert!(Dialect::Irc.is_error(b"ERROR :Closing link"));
        assert!(!Dialect::Irc.is_error(b":srv 366 b1 #bench :End of NAMES list"));
        assert_eq!(
            Dialect::Irc.pong(b"PING :abc"),
            Some(b"PONG :abc\r\n".to_vec())
        );
        assert_eq!(Dialect::Tlschat.pong(b"PING :abc"), None);
    }
}
